"""The command line, in-process with CliRunner and as the installed `trainctl` command."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import time

import pytest
import torch

from trainctl.cli import app

from helpers import CONFIGS, REPO, TRAINCTL, run_cli, write_config


def app_commands() -> list[str]:
    return [command.name or command.callback.__name__.replace("_", "-") for command in app.registered_commands]


def test_train_prints_epochs_and_test_table(cli, tmp_path):
    result = cli("train", write_config(tmp_path), "--out", tmp_path / "run", "--set", "trainer.epochs=2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"run folder: {tmp_path / 'run'}"
    assert lines[1].startswith("epoch 1/2  train/loss ")
    assert lines[2].startswith("epoch 2/2  train/loss ")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert f"accuracy  │ {summary['test']['accuracy']:.4f}" in result.stdout
    assert lines[3] == f"loss curve: {summary['diagnosis']['message']}. Train for more epochs."  # 2 are too few


def test_quiet_prints_only_the_run_folder(cli, tmp_path):
    result = cli("train", write_config(tmp_path), "--out", tmp_path / "run", "--quiet", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{tmp_path / 'run'}\n"
    assert "seed: 3\n" in (tmp_path / "run" / "config.yaml").read_text()


def test_config_errors_exit_2_with_one_line_each(cli, tmp_path):
    path = write_config(tmp_path, optimizer={"name": "adamm"}, model={"name": "mlp", "dropout": 2})
    result = cli("train", path)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    line_of = {text.strip(): number for number, text in enumerate(path.read_text().splitlines(), 1)}
    assert lines[0] == f"error: {path}:{line_of['dropout: 2']}: model.dropout: Input should be less than 1 (got 2)"
    assert lines[1].startswith(
        f"error: {path}:{line_of['name: adamm']}: optimizer.name: unknown optimizer 'adamm' (did you mean 'adam'"
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_missing_config_file_exits_2(cli, tmp_path):
    result = cli("train", tmp_path / "absent.yaml")
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'absent.yaml'}: config file not found\n"


def test_unavailable_device_is_an_error_not_a_fallback(cli, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = cli("train", write_config(tmp_path), "--device", "cuda")
    assert result.exit_code == 2
    assert "trainer.device: 'cuda' asked for, but CUDA is not available here" in result.stderr


def test_eval_of_folder_without_checkpoint(cli, tmp_path):
    (tmp_path / "run").mkdir()
    result = cli("eval", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'run'}: not a run folder (no config.yaml in it)\n"
    shutil.copy(CONFIGS / "digits_mlp.yaml", tmp_path / "run" / "config.yaml")
    result = cli("eval", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'run' / 'checkpoints' / 'best.pt'}: checkpoint not found\n"


def test_eval_rejects_unknown_split(cli, digits_run):
    result = cli("eval", digits_run.run.path, "--split", "holdout")
    assert result.exit_code == 2
    assert "--split: unknown split 'holdout'; allowed: train, val, test" in result.stderr


def test_eval_writes_output_file(cli, digits_run, tmp_path):
    result = cli("eval", digits_run.run.path, "--output", tmp_path / "metrics.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "metrics.json").read_text()) == digits_run.summary["test"]


def test_list_losses_filters_by_task(cli):
    result = cli("list-losses", "--task", "regression")
    assert result.exit_code == 0
    names = {line.split("│")[1].strip() for line in result.stdout.splitlines() if line.startswith("│")}
    assert {"mse", "l1", "huber", "smooth_l1"} <= names
    assert "cross_entropy" not in names
    assert "delta: float > 0 = 1.0" in result.stdout
    bad = cli("list-losses", "--task", "vision")
    assert bad.exit_code == 2
    assert "unknown task 'vision'; allowed: classification, distribution, regression" in bad.stderr


@pytest.mark.parametrize(
    "command, shows",
    [
        ("list-datasets", "synthetic_regression"),
        ("list-models", "hidden: [int, ...] = [256, 256]"),  # brackets shown, not taken for markup
        ("list-transforms", "random_crop"),
        ("list-optimizers", "nesterov"),
        ("list-schedulers", "reduce_on_plateau"),
        ("list-metrics", "Macro F1"),
    ],
)
def test_other_listings(cli, command, shows):
    result = cli(command)
    assert result.exit_code == 0
    assert shows in result.stdout


@pytest.mark.parametrize("command", app_commands())
def test_every_help_shows_an_example(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert f"Example: trainctl {command}" in result.stdout


@pytest.mark.parametrize("command", [[], *([name] for name in app_commands())])
def test_help_writes_values_as_a_person_types_them(cli, command):
    """No Python types (`<bool>` beside a flag, `<list[str]>`) in any help; flags show no value at all."""
    result = cli(*command, "--help")
    assert result.exit_code == 0
    for python_type in ("<bool>", "<list[", "<str>", "<path>", "<int", "<float", "<Path"):
        assert python_type not in result.stdout
    flag_lines = [line for line in result.stdout.splitlines() if "--help " in line]
    assert flag_lines and all(line.split("--help", 1)[1].split()[:2] == ["Show", "this"] for line in flag_lines)


@pytest.mark.parametrize("command", app_commands())
def test_help_text_wraps_to_80_columns_without_breaking_sentences(command):
    """A line of a help paragraph ends early only where the next word would not fit on it."""
    result = run_cli(command, "--help", columns=80)
    description = result.stdout.split("╭", 1)[0].splitlines()
    early = [
        (line.strip(), following.split()[0])
        for line, following in itertools.pairwise(description)
        if line.strip() and following.strip() and len(line.rstrip()) + 1 + len(following.split()[0]) <= 78
    ]
    assert early == []


def test_help_names_the_values_of_train_and_eval(cli):
    train = cli("train", "--help").stdout
    assert "--set     -s      KEY=VALUE" in train
    assert "--quiet   -q                 No progress output" in train
    assert "--nproc           N [x>=1]" in train
    assert "--checkpoint        best|last|PATH" in cli("eval", "--help").stdout
    assert "--grid                  KEY=V1,V2" in cli("sweep", "--help").stdout


@pytest.mark.subprocess
def test_version_is_the_package_version_and_imports_no_torch():
    import tomllib

    from trainctl import __version__ as expected

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]  # one source: the package's __version__
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "trainctl.__version__"}
    assert run_installed("--version").stdout == f"trainctl {expected}\n"
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom trainctl.cli import app\ntry:\n    app(['--version'])\n"
            "except SystemExit as done:\n    print(done.code, 'torch' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert probe.stdout == f"trainctl {expected}\n0 False\n", probe.stderr


def test_help_lists_every_command(cli):
    result = cli("--help")
    for name in app_commands():
        assert name in result.stdout


# ---- the installed command, in real subprocesses ----------------------------------------------


def run_installed(*args, cwd=None):
    return subprocess.run([TRAINCTL, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.subprocess
def test_installed_help_is_fast_and_torch_free():
    started = time.perf_counter()
    result = run_installed("--help")
    assert result.returncode == 0
    assert "Example: trainctl train configs/digits_mlp.yaml" in result.stdout
    # Not a timing assertion: the listing path must not import torch at all.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, trainctl.cli, trainctl.components.registries, trainctl.reports.listing; "
            "print('torch' in sys.modules, 'sklearn' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "False False"
    assert time.perf_counter() - started < 60  # only guards against a hang


@pytest.mark.slow
@pytest.mark.subprocess
def test_installed_train_then_eval(tmp_path):
    config = write_config(tmp_path)
    trained = run_installed("train", config, "--out", tmp_path / "run")
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout.splitlines()[1].startswith("epoch 1/3  train/loss")  # not a terminal: plain lines
    evaluated = run_installed("eval", tmp_path / "run")
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert json.loads((tmp_path / "run" / "eval-test-best.json").read_text()) == summary["test"]


@pytest.mark.subprocess
def test_installed_bad_yaml_has_no_traceback(tmp_path):
    path = write_config(tmp_path, "model: [unclosed\n")
    result = run_installed("train", path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}:2:")
    assert "Traceback" not in result.stderr
    debug = run_installed("--debug", "train", path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_list_losses_details(cli):
    result = cli("list-losses", "huber")
    assert result.exit_code == 0
    lines = [line.rstrip() for line in result.stdout.strip().splitlines()]
    assert lines[0] == "huber — Huber loss: quadratic near zero, linear beyond delta"
    assert "parameters    delta: float > 0 = 1.0" in lines
    assert lines[-3:] == ["loss:", "  name: huber", "  delta: 1.0"]
    assert cli("list-losses", "--details", "huber").stdout == result.stdout
    unknown = cli("list-losses", "hubber")
    assert unknown.exit_code == 2 and "unknown loss 'hubber' (did you mean 'huber'?)" in unknown.stderr


def test_every_loss_has_a_detail_page_with_a_valid_example(cli, tmp_path):
    """The example config of each loss's detail page validates as it is printed."""
    import yaml

    from trainctl.components.losses import profile
    from trainctl.components.registries import LOSSES

    for name in LOSSES.names():
        page = cli("list-losses", name).stdout
        snippet = yaml.safe_load(page[page.index("\nloss:") :])
        loss = snippet["loss"]
        assert loss["name"] == name
        LOSSES.get(name).params.model_validate({k: v for k, v in loss.items() if k != "name"})
        assert profile(name, loss).target in ("index", "value", "binary", "distribution")


def test_error_text_with_brackets_is_printed_as_is(cli, tmp_path):
    """Messages quote user input and library errors, which may hold [square brackets]."""
    result = cli("train", write_config(tmp_path), "--set", "model.name=a[/b]")
    assert result.exit_code == 2
    assert "unknown model 'a[/b]'" in result.stderr


def test_paths_and_names_with_brackets_are_printed_as_is(cli, tmp_path):
    """A folder called `run[lr]` or `[b]` is not rich markup: every line that names it shows it whole."""
    out = tmp_path / "[b]run[lr]"
    trained = cli("train", write_config(tmp_path), "--out", out, "--set", "trainer.epochs=1")
    assert trained.exit_code == 0, trained.output
    lines = trained.stdout.splitlines()
    assert lines[0] == f"run folder: {out}" and lines[-1] == f"run folder: {out}"
    quiet = cli("train", "--resume", out, "--set", "trainer.epochs=2", "--quiet")
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout == f"{out}\n"
    evaluated = cli("eval", out)
    assert evaluated.stdout.splitlines()[-1] == f"written: {out / 'eval-test-best.json'}"
