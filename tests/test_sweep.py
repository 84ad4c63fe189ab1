"""Sweeps: every trial an ordinary run, failures recorded, reruns continue, a leaderboard best first."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml

from trainctl.errors import UserError
from trainctl.sweeps.plan import make_plan
from trainctl.sweeps.search import prepare_sweep

from helpers import REPO, TRAINCTL, read_jsonl, write_config

pytestmark = pytest.mark.subprocess  # every trial is a `trainctl train` process


def diabetes_config(directory: Path, epochs: int = 3, **extra) -> Path:
    return write_config(
        directory,
        data={"name": "diabetes", "batch_size": 32},
        model={"name": "mlp", "hidden": [8]},
        loss={"name": "mse"},
        optimizer={"name": "sgd", "lr": 0.01},
        trainer={"epochs": epochs, "device": "cpu"},
        **extra,
    )


def read_leaderboard(folder: Path) -> list[dict]:
    with (folder / "leaderboard.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory):
    """A 2×2 grid where the two trials at an absurd learning rate blow up; two trials at a time."""
    folder = tmp_path_factory.mktemp("sweep")
    config = diabetes_config(folder)
    command = [
        "sweep",
        config,
        "--grid",
        "optimizer.lr=0.01,1e5",
        "--grid",
        "model.hidden=[8],[16,16]",
        "--jobs",
        "2",
        "--out",
        folder / "grid",
    ]
    return folder / "grid", command


@pytest.mark.slow
def test_grid_sweep_runs_every_combination_and_ranks_them(cli, grid_sweep):
    sweep, command = grid_sweep
    result = cli(*command)
    assert result.exit_code == 0, result.output
    assert "4 run now" in result.stdout
    trials = sorted(p.name for p in sweep.glob("trial-*"))
    assert trials == ["trial-0000", "trial-0001", "trial-0002", "trial-0003"]
    rows = read_leaderboard(sweep)
    assert len(rows) == 4
    seen = set()
    for row in rows:
        config = yaml.safe_load((sweep / row["folder"] / "config.yaml").read_text())
        assert str(config["optimizer"]["lr"]) == str(float(row["optimizer.lr"]))  # the trial ran its values
        assert config["model"]["hidden"] == yaml.safe_load(row["model.hidden"])
        seen.add((row["optimizer.lr"], row["model.hidden"]))
    assert seen == {(lr, hidden) for lr in ("0.01", "100000.0") for hidden in ("[8]", "[16, 16]")}
    done = [row for row in rows if row["status"] == "done"]
    failed = [row for row in rows if row["status"] == "failed"]
    assert [row["optimizer.lr"] for row in done] == ["0.01", "0.01"]
    assert [row["rank"] for row in done] == ["1", "2"]
    for row in done:
        summary = json.loads((sweep / row["folder"] / "summary.json").read_text())
        assert float(row["val/loss"]) == summary["best_value"]
        config = yaml.safe_load((sweep / row["folder"] / "config.yaml").read_text())
        assert config["logging"]["figures"] is False  # trials leave their figures to `trainctl plot`
        assert not (sweep / row["folder"] / "curves.png").exists()
    assert float(done[0]["val/loss"]) <= float(done[1]["val/loss"])  # best (lowest loss) first
    assert len(failed) == 2
    assert all(row["error"].startswith("the training loss became non-finite at epoch 1") for row in failed)
    assert f"best: {sweep / done[0]['folder']}" in result.stdout


@pytest.mark.slow
def test_rerunning_a_finished_sweep_runs_nothing(cli, grid_sweep):
    sweep, command = grid_sweep
    before = read_leaderboard(sweep)
    stamps = {p: p.stat().st_mtime_ns for p in sweep.glob("trial-*/metrics.jsonl")}
    result = cli(*command)
    assert result.exit_code == 0, result.output
    assert "0 run now" in result.stdout
    assert read_leaderboard(sweep) == before
    assert {p: p.stat().st_mtime_ns for p in sweep.glob("trial-*/metrics.jsonl")} == stamps


@pytest.mark.slow
def test_a_sweep_goes_on_with_other_logging_settings(cli, grid_sweep):
    """logging.* may change when a sweep goes on, as on a resume: the study is the same sweep."""
    _, command = grid_sweep
    result = cli(*command, "--set", "logging.figures=true")
    assert result.exit_code == 0, result.output
    assert "0 run now" in result.stdout


@pytest.mark.slow
def test_compare_reads_a_sweep_folder(cli, grid_sweep):
    sweep, _ = grid_sweep
    result = cli("compare", sweep)
    assert result.exit_code == 0, result.output
    for name in ("trial-0000", "trial-0001", "trial-0002", "trial-0003"):
        assert name in result.stdout
    assert "model.hidden" in result.stdout and "optimizer.lr" in result.stdout


@pytest.mark.slow
def test_a_changed_sweep_is_not_mixed_into_the_old_one(cli, grid_sweep):
    _, command = grid_sweep
    changed = [arg if arg != "optimizer.lr=0.01,1e5" else "optimizer.lr=0.01,0.1" for arg in command]
    result = cli(*changed)
    assert result.exit_code == 2
    assert "this sweep was started with a different config or sweep; these differ: the swept values" in result.stderr


@pytest.mark.slow
def test_ctrl_c_saves_running_trials_and_the_rerun_continues_them(tmp_path):
    config = diabetes_config(tmp_path, epochs=40)
    sweep = tmp_path / "sweep"
    command = [TRAINCTL, "sweep", config, "--grid", "optimizer.lr=0.01,0.02", "--out", sweep]
    # A session of its own stands for a terminal: Ctrl-C reaches the sweep and its trials together.
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not list(sweep.glob("trial-0000/checkpoints/last.pt")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "sweep interrupted; run the same command again to continue it" in stderr
    assert [row["status"] for row in read_leaderboard(sweep)] == ["interrupted"]
    saved = torch_epoch(sweep / "trial-0000")
    assert 1 <= saved < 40
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    rows = read_leaderboard(sweep)
    assert len(rows) == 2 and "trial-0000" in [row["folder"] for row in rows]  # retried in its own folder
    assert sorted(row["optimizer.lr"] for row in rows) == ["0.01", "0.02"]
    assert all(row["status"] == "done" for row in rows)
    epochs = [row["epoch"] for row in read_jsonl(sweep / "trial-0000" / "metrics.jsonl")]
    assert epochs == list(range(1, 41))  # resumed where it stopped: every epoch once


def torch_epoch(run: Path) -> int:
    import torch

    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"]


def test_sweep_values_are_checked_before_anything_runs(tmp_path):
    config = diabetes_config(tmp_path)
    out = tmp_path / "sweep"
    cases = [
        (dict(grid=["optimizer.lr=0.01,-1"]), "sweep value optimizer.lr=-1: --set optimizer.lr: "),
        (dict(grid=["optimizer.momentun=0.9"]), "sweep value optimizer.momentun=0.9: "),
        (dict(space=["optimizer.lr=loguniform:1e-4:1e-1"]), "a search space needs --random N or --tpe N"),
        (dict(space=["optimizer.lr=gauss:0:1"], random_trials=3), "unknown search space 'gauss:0:1'; allowed: "),
        (dict(space=["optimizer.lr=loguniform:0:1"], random_trials=3), "loguniform needs LO > 0"),
        (dict(space=["optimizer.lr=uniform:1"], random_trials=3), "expected uniform:LO:HI with two numbers"),
        (dict(grid=["data.name=iris,diabetes"]), "changes the monitored metric from val/loss to val/accuracy"),
        (dict(), "nothing to sweep"),
    ]
    for options, message in cases:
        with pytest.raises(UserError) as caught:
            prepare_sweep(config, [], **{"grid": [], "space": [], **options}, out=out)
        assert message in str(caught.value), (options, str(caught.value))
    assert not out.exists()


def test_sweep_section_in_the_config_and_command_line_on_top(tmp_path):
    config = diabetes_config(
        tmp_path,
        sweep={
            "sampler": "random",
            "trials": 5,
            "seed": 3,
            "grid": {"model.hidden": [[8], [16, 16]]},
            "space": {"optimizer.lr": "loguniform:1e-4:1e-1"},
        },
    )
    setup = prepare_sweep(config, [], grid=[], space=["optimizer.momentum=uniform:0:0.9"])
    assert setup.folder == tmp_path / "runs" / "tiny-sweep"
    assert (setup.plan.sampler, setup.plan.trials, setup.plan.seed) == ("random", 5, 3)
    assert [d.describe() for d in setup.plan.dimensions] == [
        "model.hidden in [8], [16, 16]",
        "optimizer.lr ~ loguniform(0.0001, 0.1)",
        "optimizer.momentum ~ uniform(0, 0.9)",
    ]
    assert "sweep" not in setup.base  # trials train the config without its sweep section
    grid = prepare_sweep(config, [], grid=["optimizer.lr=0.001,0.01"], space=[], tpe_trials=4).plan
    assert (grid.sampler, grid.trials) == ("tpe", 4)


def test_random_search_draws_from_its_ranges():
    plan = make_plan(
        None,
        ["loss.name=mse,huber"],
        ["optimizer.lr=loguniform:1e-4:1e-1", "trainer.epochs=int:2:5"],
        random_trials=30,
        tpe_trials=None,
        seed=0,
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    draws = []
    for _ in range(30):
        trial = study.ask()
        draws.append({d.key: d.suggest(trial) for d in plan.dimensions})
        study.tell(trial, 0.0)
    assert {d["loss.name"] for d in draws} == {"mse", "huber"}
    rates = [float(d["optimizer.lr"]) for d in draws]
    assert all(1e-4 <= rate <= 1e-1 for rate in rates)
    assert min(rates) < 1e-3 < max(rates)  # spread over decades, as loguniform should be
    assert {int(d["trainer.epochs"]) for d in draws} <= {2, 3, 4, 5}


def test_a_storage_that_cannot_open_is_one_line_and_leaves_nothing(cli, tmp_path):
    result = cli(
        "sweep",
        diabetes_config(tmp_path),
        "--grid",
        "optimizer.lr=0.01,0.1",
        "--storage",
        "nosuchdb://x",
        "--out",
        tmp_path / "sweep",
    )
    assert result.exit_code == 2
    assert "error: --storage nosuchdb://x: cannot open the sweep storage:" in result.stderr
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(
    "text, reason",
    [
        ("{not json", "not valid JSON"),
        ('{"best_value": "high"}', "best_value is 'high', not a finite number"),
        ('{"best_value": NaN}', "best_value is nan, not a finite number"),
        ("[1, 2]", "not the object trainctl writes"),
    ],
)
def test_a_trials_damaged_summary_fails_the_trial_naming_the_file(tmp_path, text, reason):
    from trainctl.sweeps.search import TrialFailed, trial_result

    (tmp_path / "summary.json").write_text(text, encoding="utf-8")
    with pytest.raises(TrialFailed) as failure:
        trial_result(tmp_path)
    assert str(failure.value).startswith(str(tmp_path / "summary.json")) and reason in str(failure.value)


def test_a_trials_summary_gives_its_best_value(tmp_path):
    from trainctl.sweeps.search import trial_result

    (tmp_path / "summary.json").write_text('{"best_value": 0.875, "test": {}}', encoding="utf-8")
    assert trial_result(tmp_path) == 0.875


@pytest.mark.slow
def test_a_sweep_reads_data_paths_relative_to_its_config_as_train_does(cli, tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "fruit.csv").write_bytes((REPO / "examples" / "csv" / "fruit.csv").read_bytes())
    config = yaml.safe_load((REPO / "examples" / "csv" / "fruit.yaml").read_text())
    config.update(output_dir=str(tmp_path / "runs"), trainer={"epochs": 1, "device": "cpu"})
    (folder / "fruit.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    assert config["data"]["path"] == "fruit.csv"  # relative: to the config's folder, not the working one
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = cli("sweep", folder / "fruit.yaml", "--grid", "optimizer.lr=0.01", "--out", tmp_path / "sweep")
    assert result.exit_code == 0, result.output
    trial = yaml.safe_load((tmp_path / "sweep" / "trial-0000" / "config.yaml").read_text())
    assert trial["data"]["path"] == str((folder / "fruit.csv").resolve())
