"""Hostile configs: each gives one line saying what is wrong and where, never a traceback, a hang
or a crash after validation."""

from __future__ import annotations

import time

import pytest

from trainctl.config.loading import load_config
from trainctl.errors import UserError
from trainctl.runs import RunFolder
from trainctl.sweeps.plan import parse_values
from trainctl.yaml_source import MAX_DEPTH, read_yaml

from helpers import write_config

TAIL = "\nmodel: {name: mlp}\nloss: {name: cross_entropy}\noptimizer: {name: adam}\n"


def billion_laughs(levels: int = 9) -> str:
    """About 1 KB of YAML that stands for 9**levels strings."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [" + ",".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines) + TAIL


def error_of(path, overrides=None) -> str:
    with pytest.raises(UserError) as caught:
        load_config(path, overrides)
    (line,) = caught.value.lines()
    return line


# ---- denial of service in YAML ------------------------------------------------------------------


def test_billion_laughs_is_refused_by_the_size_budget(tmp_path):
    path = write_config(tmp_path, billion_laughs())
    assert len(path.read_text()) < 1200
    started = time.perf_counter()
    line = error_of(path)
    assert time.perf_counter() - started < 10  # unbounded, this walk takes minutes and gigabytes
    assert line.startswith(f"{path}:5:")  # l4 is where 9**5 values pass the budget of this small file
    assert "the document expands to more than" in line and "values through aliases" in line
    assert "the alias *l3 here repeats 7,381 values" in line


def test_aliases_within_the_budget_still_work(tmp_path):
    path = write_config(
        tmp_path,
        """
        name: anchors
        data: {name: iris}
        model: {name: mlp, hidden: &widths [16, 16]}
        loss: {name: cross_entropy}
        optimizer: {name: adam}
        sweep: {grid: {model.hidden: [*widths, [8]]}}
    """,
    )
    config = load_config(path)
    assert config.model.params["hidden"] == [16, 16]
    assert config.sweep.grid == {"model.hidden": [[16, 16], [8]]}


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path):
    path = write_config(
        tmp_path, "name: x\nmodel: &m {name: mlp, inner: [*m]}" + TAIL.replace("model: {name: mlp}\n", "")
    )
    line = error_of(path)
    assert line.startswith(f"{path}:2:")
    assert "the alias *m stands inside its own anchor &m" in line


def test_deep_nesting_is_one_line(tmp_path):
    path = write_config(tmp_path, "name: x\nmetrics: " + "[" * 3000 + "]" * 3000 + TAIL)
    line = error_of(path)
    assert line.startswith(f"{path}:2:")
    assert line.endswith(f"nested more than {MAX_DEPTH} levels deep; a config needs a handful")
    shallow = write_config(tmp_path, "name: x\nmetrics: " + "[" * 20 + "]" * 20 + TAIL, file="shallow.yaml")
    assert "metrics" in error_of(shallow)  # read, then refused by the schema: a list of lists is no metric


def test_the_run_folder_config_goes_through_the_same_loader(tmp_path):
    run = RunFolder(tmp_path)
    run.config_path.write_text(billion_laughs())
    with pytest.raises(UserError, match=rf"^{run.config_path}:5:\d+: the document expands to more than"):
        run.read_config()


def test_sweep_values_go_through_the_same_loader():
    with pytest.raises(UserError, match=r"^--grid model\.hidden: nested more than"):
        parse_values("[" * 100 + "]" * 100, "--grid model.hidden")
    assert parse_values("[64, 64],[128]", "--grid model.hidden") == ["[64, 64]", "[128]"]


def test_a_run_config_reads_back_what_was_written(tmp_path):
    """Strings that YAML 1.2 reads as numbers are quoted when written, so eval reads the same name."""
    run = RunFolder(tmp_path)
    run.write_config({"name": "1e5", "lr": 1e-05, "title": ".5", "note": "实验"})
    assert run.read_config() == {"name": "1e5", "lr": 1e-05, "title": ".5", "note": "实验"}


# ---- duplicate keys and unreadable scalars --------------------------------------------------------


def test_duplicate_keys_name_both_lines(tmp_path):
    path = write_config(
        tmp_path,
        """
        name: dup
        model: {name: mlp}
        loss: {name: cross_entropy}
        optimizer:
          name: adam
          lr: 0.1
          betas: [0.9, 0.99]
          lr: 0.001
    """,
    )
    assert error_of(path) == f"{path}:8: key 'lr' is given twice in one mapping (lines 6 and 8); keep one"


def test_a_merge_key_overridden_in_place_is_not_a_duplicate(tmp_path):
    text = "base: &b {lr: 0.1, name: adam}\nopt:\n  <<: *b\n  lr: 0.5\n"
    assert read_yaml(text, "x.yaml")[0]["opt"] == {"lr": 0.5, "name": "adam"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"run\\0name"', r"'run\x00name' holds a NUL character (\0), which no name or path can hold"),
        ('"x\\ud800"', r"'x\ud800' holds a lone surrogate (\ud800-\udfff), which is not a character"),
        ("2024-13-45", "invalid YAML: cannot read the value '2024-13-45': month must be in 1..12"),
        ("1" * 5000, "Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits"),
    ],
)
def test_values_no_config_can_hold_are_one_line(tmp_path, value, expected):
    path = write_config(tmp_path, f"name: {value}" + TAIL)
    line = error_of(path)
    assert line.startswith(f"{path}:1")
    assert expected in line
    assert len(line) < 400


# ---- values that pass a type check but crash later -------------------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (f"seed={2**64}", "--set seed: seed: Input should be less than or equal to 18446744073709551615"),
        ("seed=-1", "--set seed: seed: Input should be greater than or equal to 0 (got -1)"),
        ("data.split_seed=-5", "--set data.split_seed: data.split_seed: Input should be greater than or equal to 0"),
        (
            f"data.batch_size={2**70}",
            "--set data.batch_size: data.batch_size: Input should be less than or equal to 2147483647",
        ),
        (
            "model.hidden=[64, 2000000]",
            "--set model.hidden: model.hidden.1: Input should be less than or equal to 1048576",
        ),
        ("sweep.seed=4294967296", "--set sweep.seed: sweep.seed: Input should be less than 2147483648"),
        (
            f"data={{name: synthetic_regression, samples: {10**12}}}",
            "--set data: data.samples: Input should be less than",
        ),
    ],
)
def test_sizes_and_seeds_have_bounds_in_the_schema(tmp_path, override, expected):
    line = error_of(write_config(tmp_path), [override])
    assert line.startswith(expected)


@pytest.mark.parametrize("name", ["../..", "a/b", "x" * 300, ".hidden", "-flag", "", "a b"])
def test_a_run_name_is_a_name_not_a_path(tmp_path, name):
    line = error_of(write_config(tmp_path, name=name))
    assert ": name: must be a name of 1-50 letters, digits, '.', '_' or '-', not starting with '.' or '-'" in line
    assert len(line) < 400


def test_a_run_name_may_be_in_any_script(tmp_path):
    assert load_config(write_config(tmp_path, name="损失-对比_v1.2")).name == "损失-对比_v1.2"


@pytest.mark.parametrize(("stem", "expected"), [("x" * 200, "x" * 50), ("..", "run"), ("my run", "my-run")])
def test_the_default_name_from_the_file_stem_is_always_valid(tmp_path, stem, expected):
    path = write_config(tmp_path, TAIL.lstrip(), file=f"{stem}.yaml")
    assert load_config(path).name == expected


# ---- messages -------------------------------------------------------------------------------------


def test_a_huge_value_is_cut_in_the_message(tmp_path):
    path = write_config(
        tmp_path, "name: x\nmodel: {name: " + "m" * 1_000_000 + "}" + TAIL.replace("\nmodel: {name: mlp}", "")
    )
    line = error_of(path)
    assert line.startswith(f"{path}:2: model.name: unknown model 'mmmm")
    assert "… (1,000,002 characters); registered: mlp, cnn" in line
    assert len(line) < 2100


def test_a_problem_under_a_set_value_names_the_set(tmp_path):
    path = write_config(tmp_path)  # its model.hidden is [16], on a line of its own
    line = error_of(path, ["model.hidden=[abc]"])
    assert line.startswith("--set model.hidden: model.hidden.0: Input should be a valid integer")


def test_a_data_file_given_with_set_is_reported_at_the_set(tmp_path):
    csv = tmp_path / "table.csv"
    csv.write_text("x,y\n1,a\n2,b\n")
    path = write_config(tmp_path)
    assert error_of(path, ["data.name=csv", f"data.path={tmp_path / 'nope.csv'}", "data.target=y"]) == (
        f"--set data.path: data.path: {tmp_path / 'nope.csv'}: file not found"
    )
    assert error_of(path, ["data.name=csv", f"data.path={csv}", "data.target=z"]).startswith(
        f"--set data.target: data.target: no column 'z' in {csv}"
    )


def test_train_says_what_to_give(cli, tmp_path):
    nothing = cli("train")
    assert nothing.exit_code == 2
    assert "nothing to train: give a CONFIG file to start a run" in nothing.stderr
    assert "--resume RUN_DIR to continue one" in nothing.stderr
    both = cli("train", write_config(tmp_path), "--resume", tmp_path)
    assert both.exit_code == 2
    assert "give either CONFIG" in both.stderr and "not both" in both.stderr


def test_a_model_too_large_for_memory_is_refused_with_the_figure(cli, tmp_path):
    result = cli("validate", write_config(tmp_path), "--set", "model.hidden=[1000000, 1000000]")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: --set model.hidden: model: the 1,000,009,000,003 parameters of model 'mlp'")
    assert "need about 14.6 TiB of memory, but" in line


def test_a_dataset_too_large_for_memory_is_refused_with_the_figure(cli, tmp_path):
    path = write_config(
        tmp_path,
        data={"name": "synthetic_regression", "samples": 2_000_000_000, "features": 100_000},
        loss={"name": "mse"},
    )
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    assert (
        f"error: {path}:3: data: 2,000,000,000 samples × 100,000 features need about 2.8 PiB of memory" in result.stderr
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty"),
        (b"hello, this is text\n", "not a PyTorch checkpoint file: neither a zip archive nor a pickle"),
        (b"PK\x03\x04garbage", "PytorchStreamReader failed reading zip archive: not a ZIP archive"),
        (b"\x80\x02\x8a\x0a", "the file ends early: truncated"),
    ],
)
def test_an_unreadable_checkpoint_says_why_in_words(tmp_path, content, reason):
    from trainctl.training.checkpoint import load_checkpoint

    path = tmp_path / "last.pt"
    path.write_bytes(content)
    with pytest.raises(UserError) as caught:
        load_checkpoint(path)
    assert str(caught.value) == f"{path}: not a readable trainctl checkpoint ({reason})"


def test_a_combination_torch_refuses_is_the_configs_to_fix(cli, tmp_path):
    """Each value passes the schema; together SGD refuses them (found by the fuzz test)."""
    result = cli("validate", write_config(tmp_path), "--set", "optimizer={name: sgd, nesterov: true}")
    assert result.exit_code == 2, result.output
    assert (
        result.stderr == "error: --set optimizer: optimizer: Nesterov momentum requires a momentum and zero dampening\n"
    )


def test_a_duplicate_in_a_set_value_names_the_set(tmp_path):
    line = error_of(write_config(tmp_path), ["optimizer={name: adam, name: sgd}"])
    assert line == "--set optimizer: key 'name' is given twice in one mapping; keep one"


def test_a_first_step_torch_refuses_is_one_line(cli, tmp_path):
    """Found by the fuzz test: shapes or sizes that only meet in the forward pass."""
    overrides = ["data.batch_size=1", "model.batch_norm=true"]
    arguments = ["validate", write_config(tmp_path)] + [part for o in overrides for part in ("--set", o)]
    result = cli(*arguments)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: the first training step fails with this config (model 'mlp'")
    assert "a batch of 1): Expected more than 1 value per channel when training" in line


@pytest.mark.parametrize(
    ("override", "shown"),
    [
        ("trainer.epochs=yes", "True"),
        ("trainer.accumulate=2.0", "2.0"),
        ("data.batch_size=false", "False"),
        ("seed=true", "True"),
        ("model.hidden=[true]", "True"),
    ],
)
def test_a_boolean_or_a_float_where_a_whole_number_goes_is_refused(tmp_path, override, shown):
    """YAML's yes/true would otherwise be taken as 1 (one epoch, a batch of one) without a word."""
    key = override.split("=")[0]
    line = error_of(write_config(tmp_path), [override])
    located = f"{key}.0" if key == "model.hidden" else key
    assert line == f"--set {key}: {located}: Input should be a valid integer (got {shown})"
