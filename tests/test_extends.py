"""Config inheritance (`extends:`): the merge, where each value came from, and hostile chains."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import yaml

from trainctl.config.identity import config_hash
from trainctl.config.loading import load_config, load_config_data, read_config
from trainctl.errors import ConfigError, UserError
from trainctl.limits import MAX_EXTENDS_DEPTH
from trainctl.output import Output

from helpers import write_iris_csv

BASE = """\
seed: 3
data:
  name: iris
  batch_size: 16
model:
  name: mlp
  hidden: [16, 16]
  dropout: 0.1
loss:
  name: cross_entropy
optimizer:
  name: adam
  lr: 0.01
trainer:
  epochs: 2
  device: cpu
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def error_of(path: Path | dict, overrides: list[str] | None = None) -> str:
    """The one line a config's error gives."""
    with pytest.raises(UserError) as caught:
        load_config(path, overrides) if isinstance(path, Path) else load_config_data(path, overrides)
    (line,) = caught.value.lines()
    return line


@pytest.fixture
def base(tmp_path) -> Path:
    return write(tmp_path / "base.yaml", BASE)


# ---- the merge ------------------------------------------------------------------------------------


def test_a_child_merges_over_its_base_key_by_key_and_replaces_lists_whole(tmp_path, base):
    child = write(
        tmp_path / "exp" / "child.yaml",
        """
        extends: ../base.yaml
        model:
          hidden: [8]
        optimizer:
          lr: 0.02
        """,
    )
    data, _ = read_config(child)
    assert data == {
        "seed": 3,
        "data": {"name": "iris", "batch_size": 16},
        "model": {"name": "mlp", "hidden": [8], "dropout": 0.1},
        "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "adam", "lr": 0.02},
        "trainer": {"epochs": 2, "device": "cpu"},
        "name": "child",  # the child's file names the run, as for any config
    }


def test_each_value_names_the_file_and_line_it_came_from(tmp_path, base):
    child = write(
        tmp_path / "exp" / "child.yaml",
        """
        extends: ../base.yaml
        model:
          hidden: [8]
        """,
    )
    _, source = read_config(child, ["trainer.epochs=1"])
    base_file, child_file = str(base), os.path.normpath(child)
    assert source.where(("model", "name")) == f"{base_file}:6"
    assert source.where(("model", "dropout")) == f"{base_file}:8"
    assert source.where(("model", "hidden")) == f"{child_file}:3"
    assert source.where(("model", "hidden", 0)) == f"{child_file}:3"
    assert source.where(("model",)) == f"{child_file}:2"  # the child's mapping merged into the base's
    assert source.where(("model", "activation")) == f"{child_file}:2"  # not given: where it would go
    assert source.where(("trainer", "device")) == f"{base_file}:16"
    assert source.where(("trainer", "epochs")) == "--set trainer.epochs"


def test_validation_errors_name_the_base_line_for_inherited_values_and_the_child_line_for_overrides(tmp_path):
    base = write(tmp_path / "base.yaml", BASE.replace("dropout: 0.1", "dropout: 1.5"))
    child = write(
        tmp_path / "child.yaml",
        """
        extends: base.yaml
        optimizer:
          lr: -1
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(child)
    assert caught.value.lines() == [
        f"{base}:8: model.dropout: Input should be less than 1 (got 1.5)",
        f"{child}:3: optimizer.lr: Input should be greater than 0 (got -1)",
    ]


def test_replace_makes_a_section_replace_the_base_s_instead_of_merging(tmp_path, base):
    merged = write(tmp_path / "merged.yaml", "extends: base.yaml\nmodel:\n  name: rnn\n")
    # Merged, the base's mlp parameters stay, and the error points at the base's line of one.
    assert error_of(merged).startswith(f"{base}:7: model.hidden: model 'rnn' has no parameter 'hidden'")
    replaced = write(
        tmp_path / "replaced.yaml",
        """
        extends: base.yaml
        model:
          _replace_: true
          name: rnn
        """,
    )
    config = load_config(replaced)
    assert config.model.name == "rnn"
    assert "hidden" not in config.model.params and config.model.params["dropout"] == 0.0  # rnn's default, not 0.1
    assert config.to_dict()["loss"] == {"name": "cross_entropy", "label_smoothing": 0.0, "class_weight": None}


def test_replace_false_merges_and_a_value_that_is_not_a_boolean_is_refused(tmp_path, base):
    write(tmp_path / "false.yaml", "extends: base.yaml\nmodel: {_replace_: false, hidden: [4]}\n")
    assert load_config(tmp_path / "false.yaml").model.params["dropout"] == 0.1
    bad = write(tmp_path / "bad.yaml", "extends: base.yaml\nmodel:\n  _replace_: yes please\n  hidden: [4]\n")
    assert error_of(bad) == f"{bad}:3: model._replace_ must be true or false (got 'yes please')"


def test_null_removes_an_optional_section_of_the_base(tmp_path):
    write(tmp_path / "base.yaml", BASE + "scheduler:\n  name: cosine\n")
    child = write(tmp_path / "child.yaml", "extends: base.yaml\nscheduler: null\n")
    assert load_config(tmp_path / "base.yaml").scheduler is not None
    assert load_config(child).scheduler is None


def test_a_list_of_bases_applies_in_order_later_ones_winning(tmp_path, base):
    write(tmp_path / "fast.yaml", "optimizer: {lr: 0.05}\ntrainer: {epochs: 1}\n")
    write(tmp_path / "slow.yaml", "optimizer: {lr: 0.001}\n")
    child = write(
        tmp_path / "child.yaml",
        """
        extends:
          - base.yaml
          - fast.yaml
          - slow.yaml
        seed: 7
        """,
    )
    config = load_config(child)
    assert (config.seed, config.optimizer.params["lr"], config.trainer.epochs) == (7, 0.001, 1)
    assert config.source.where(("optimizer", "lr")) == f"{tmp_path / 'slow.yaml'}:1"
    assert config.source.where(("trainer", "epochs")) == f"{tmp_path / 'fast.yaml'}:2"


def test_a_complete_section_of_a_later_base_replaces_the_earlier_base_s(tmp_path, base):
    write(tmp_path / "plain_mlp.yaml", "model:\n  _replace_: true\n  name: mlp\n")
    write(tmp_path / "normed.yaml", "extends: plain_mlp.yaml\nmodel:\n  batch_norm: true\n")  # merges, stays complete
    child = write(tmp_path / "child.yaml", "extends: [base.yaml, normed.yaml]\n")
    params = load_config(child).model.params
    assert (params["hidden"], params["dropout"], params["batch_norm"]) == ([256, 256], 0.0, True)  # not base's


def test_a_chain_of_bases_in_other_folders_reads_data_paths_relative_to_the_file_that_gives_them(tmp_path):
    (tmp_path / "shared" / "data").mkdir(parents=True)
    data = write_iris_csv(tmp_path / "shared" / "data" / "iris.csv")
    write(
        tmp_path / "shared" / "root.yaml",
        BASE.replace("  name: iris\n", "  name: csv\n  path: data/iris.csv\n  target: species\n"),
    )
    write(tmp_path / "shared" / "family" / "mlp.yaml", "extends: ../root.yaml\nmodel: {hidden: [32]}\n")
    child = write(tmp_path / "exp" / "a" / "child.yaml", "extends: ../../shared/family/mlp.yaml\nseed: 5\n")
    config = load_config(child)
    assert config.dataset.params["path"] == str(data.resolve())
    assert (config.seed, config.model.params["hidden"]) == (5, [32])
    assert config.source.where(("model", "hidden")) == f"{tmp_path / 'shared' / 'family' / 'mlp.yaml'}:2"
    assert config.source.where(("data", "target")) == f"{tmp_path / 'shared' / 'root.yaml'}:5"


def test_a_diamond_reads_the_shared_base_once_and_later_bases_win(tmp_path, base):
    write(tmp_path / "left.yaml", "extends: base.yaml\noptimizer: {lr: 0.5}\n")
    write(tmp_path / "right.yaml", "extends: base.yaml\ntrainer: {epochs: 1}\n")
    config = load_config(write(tmp_path / "child.yaml", "extends: [left.yaml, right.yaml]\n"))
    # right.yaml brings the base's lr with it, laid over left's: later bases win, their inherited values too
    assert (config.optimizer.params["lr"], config.trainer.epochs) == (0.01, 1)


def test_set_overrides_apply_on_top_of_the_merged_config(tmp_path, base):
    child = write(tmp_path / "child.yaml", "extends: base.yaml\noptimizer: {lr: 0.02}\n")
    config = load_config(child, ["optimizer.lr=0.3", "model.hidden=[4]"])
    assert (config.optimizer.params["lr"], config.model.params["hidden"]) == (0.3, [4])
    assert (
        error_of(child, ["model.dropout=2"])
        == "--set model.dropout: model.dropout: Input should be less than 1 (got 2)"
    )


def test_an_absolute_path_and_a_home_path_are_allowed(tmp_path, base, monkeypatch):
    child = write(tmp_path / "elsewhere" / "child.yaml", f"extends: {base}\n")
    assert load_config(child).seed == 3
    monkeypatch.setenv("HOME", str(tmp_path))
    home = write(tmp_path / "elsewhere" / "home.yaml", "extends: ~/base.yaml\n")
    assert load_config(home).seed == 3


def test_the_python_api_extends_files_and_data_relative_to_the_working_folder(tmp_path, base, monkeypatch):
    import trainctl

    child = write(tmp_path / "child.yaml", "extends: base.yaml\nseed: 9\n")
    assert trainctl.load_config(child).seed == 9
    monkeypatch.chdir(tmp_path)
    config = trainctl.load_config({"extends": "base.yaml", "optimizer": {"lr": 0.2}})
    assert (config.seed, config.optimizer.params["lr"]) == (3, 0.2)
    assert config.source.where(("seed",)) == f"{base}:1"
    with pytest.raises(UserError) as caught:
        trainctl.load_config({"extends": "nope.yaml"})
    assert str(caught.value) == f"config dict: extends 'nope.yaml': {tmp_path / 'nope.yaml'}: base config not found"


def test_the_config_hash_is_the_resolved_config_s(tmp_path, base):
    child = write(tmp_path / "child.yaml", "extends: base.yaml\nname: child\noptimizer: {lr: 0.02}\n")
    flat = yaml.safe_load(BASE)
    flat["name"], flat["optimizer"]["lr"] = "child", 0.02
    assert config_hash(load_config(child).to_dict()) == config_hash(load_config_data(flat).to_dict())
    assert config_hash(load_config(child).to_dict()) != config_hash(load_config(base).to_dict())


def test_validate_takes_a_child(tmp_path, base, cli):
    child = write(tmp_path / "child.yaml", "extends: base.yaml\nmodel: {hidden: [8]}\n")
    result = cli("validate", child)
    assert result.exit_code == 0, result.stderr
    assert "parameters: 67" in result.stdout  # 4·8+8 + 8·3+3: the child's hidden layer, on the base's iris


def test_a_replace_tag_is_refused_with_the_key_to_write_instead(tmp_path, base):
    child = write(tmp_path / "child.yaml", "extends: base.yaml\nmodel: !replace {name: linear}\n")
    line = error_of(child)
    assert line.startswith(f"{child}:2:8: invalid YAML: could not determine a constructor for the tag '!replace'")
    assert line.endswith("write `_replace_: true` inside it)")


# ---- hostile chains: one line each, naming the file and the line of `extends` ----------------------


def test_a_missing_base_names_the_extends_line_and_suggests_a_close_name(tmp_path, base, cli):
    child = write(tmp_path / "child.yaml", "seed: 1\nextends: bsae.yaml\n")
    expected = (
        f"{child}:2: extends 'bsae.yaml': {tmp_path / 'bsae.yaml'}: base config not found (did you mean 'base.yaml'?)"
    )
    assert error_of(child) == expected
    result = cli("train", child)
    assert (result.exit_code, result.stderr) == (2, f"error: {expected}\n")


def test_an_item_of_a_list_of_bases_is_named_by_its_own_line(tmp_path, base):
    child = write(tmp_path / "child.yaml", "extends:\n  - base.yaml\n  - other.yaml\n")
    assert error_of(child).startswith(
        f"{child}:3: extends 'other.yaml': {tmp_path / 'other.yaml'}: base config not found"
    )


def test_a_config_that_extends_itself_is_refused(tmp_path):
    child = write(tmp_path / "child.yaml", "extends: ./child.yaml\nseed: 1\n")
    assert (
        error_of(child)
        == f"{child}:1: extends './child.yaml': that is this config itself; a config cannot extend itself"
    )


def test_a_cycle_of_bases_is_refused_with_the_cycle(tmp_path):
    a = write(tmp_path / "a.yaml", "extends: b.yaml\n")
    b = write(tmp_path / "b.yaml", "seed: 1\nextends: a.yaml\n")
    assert error_of(a) == (
        f"{b}:2: extends 'a.yaml': a cycle of bases ({a} -> {b} -> {a}); "
        "a config cannot extend itself through its bases"
    )


def test_a_symlink_to_the_config_itself_is_the_config_itself(tmp_path):
    child = write(tmp_path / "child.yaml", "extends: link.yaml\n")
    (tmp_path / "link.yaml").symlink_to(child)
    assert (
        error_of(child) == f"{child}:1: extends 'link.yaml': that is this config itself; a config cannot extend itself"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [("5", "5"), ("{a: 1}", "{'a': 1}"), ("[]", "[]"), ("''", "''"), ("null", "None"), ("true", "True")],
)
def test_extends_must_name_files(tmp_path, value, shown):
    child = write(tmp_path / "child.yaml", f"seed: 1\nextends: {value}\n")
    assert error_of(child) == (
        f"{child}:2: extends must name a base config file, or a list of them, e.g. extends: base.yaml (got {shown})"
    )


def test_a_list_item_that_is_not_a_file_name_is_refused_at_its_line(tmp_path, base):
    child = write(tmp_path / "child.yaml", "extends:\n  - base.yaml\n  - [x]\n")
    assert error_of(child) == (
        f"{child}:3: extends.1 must name a base config file, or a list of them, e.g. extends: base.yaml (got ['x'])"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("- 1\n- 2\n", "{base}:1: the config must be a mapping of keys to values"),
        ("# nothing here\n", "{base}: the config is empty"),
        ("seed: [1\n", "{base}:2:1: invalid YAML: expected ',' or ']', but got '<stream end>'"),
    ],
    ids=["a list", "empty", "invalid YAML"],
)
def test_a_base_that_holds_no_config_names_both_files(tmp_path, text, problem):
    base = write(tmp_path / "base.yaml", text)
    child = write(tmp_path / "child.yaml", "extends: base.yaml\n")
    assert error_of(child) == f"{child}:1: extends 'base.yaml': " + problem.format(base=base)


def test_a_base_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "configs").mkdir()
    child = write(tmp_path / "child.yaml", "extends: configs\n")
    assert error_of(child) == f"{child}:1: extends 'configs': {tmp_path / 'configs'}: is a folder, not a config file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_base_is_refused(tmp_path, base):
    base.chmod(0)
    child = write(tmp_path / "child.yaml", "extends: base.yaml\n")
    try:
        line = error_of(child)
    finally:
        base.chmod(0o644)
    assert line.startswith(
        f"{child}:1: extends 'base.yaml': {base}: cannot read config file: [Errno 13] Permission denied"
    )


def test_a_chain_deeper_than_the_bound_is_refused(tmp_path, base):
    write(tmp_path / "level0.yaml", "extends: base.yaml\n")
    for level in range(1, MAX_EXTENDS_DEPTH + 1):
        write(tmp_path / f"level{level}.yaml", f"extends: level{level - 1}.yaml\n")
    assert load_config(tmp_path / f"level{MAX_EXTENDS_DEPTH - 1}.yaml").seed == 3  # MAX_EXTENDS_DEPTH bases
    deepest = tmp_path / f"level{MAX_EXTENDS_DEPTH}.yaml"
    assert error_of(deepest) == (
        f"{tmp_path / 'level0.yaml'}:1: extends 'base.yaml': bases nested more than {MAX_EXTENDS_DEPTH} deep; "
        "merge some of them into one file"
    )


def test_extends_given_with_set_is_an_unknown_key(tmp_path, base):
    assert "extends: unknown key" in error_of(base, ["extends=other.yaml"])


# ---- the run folder holds the flat config -----------------------------------------------------------


@pytest.mark.slow
def test_a_run_saves_the_flat_config_and_ignores_later_edits_of_its_base(tmp_path, base):
    from trainctl.workflows import evaluate_run, resume, train

    child = write(
        tmp_path / "child.yaml",
        "extends: base.yaml\ntrainer: {epochs: 1}\nmodel: {_replace_: true, name: mlp, hidden: [4]}\n",
    )
    result = train(child, out=tmp_path / "run", output=Output(quiet=True))
    saved = yaml.safe_load((result.run.path / "config.yaml").read_text())
    assert "extends" not in saved and "_replace_" not in yaml.safe_dump(saved)
    assert (saved["model"]["hidden"], saved["model"]["dropout"]) == ([4], 0.0)  # replaced: not the base's 0.1
    assert (saved["seed"], saved["optimizer"]["lr"]) == (3, 0.01)
    base.write_text("seed: [broken\n")  # the run no longer needs its base
    _, record = evaluate_run(result.run.path, "best", "test", 0)
    assert record["epoch"] == 1
    resumed = resume(result.run.path, ["trainer.epochs=2"], output=Output(quiet=True))
    assert resumed.summary["epochs_trained"] == 2


def test_a_base_that_is_not_text_is_refused(tmp_path):
    (tmp_path / "base.yaml").write_bytes(b"seed: \xff\xfe\n")
    child = write(tmp_path / "child.yaml", "extends: base.yaml\n")
    assert error_of(child).startswith(
        f"{child}:1: extends 'base.yaml': {tmp_path / 'base.yaml'}: cannot read config file: 'utf-8' codec can't decode"
    )
