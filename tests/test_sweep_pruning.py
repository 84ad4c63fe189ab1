"""Pruning: trials report the monitored value after each epoch, and the pruner's verdict stops a
trial at that epoch's end; pruned trials keep their run folders, are marked in the leaderboard
and are not run again."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest

from trainctl.errors import UserError
from trainctl.sweeps.plan import Pruning
from trainctl.sweeps.search import prepare_sweep

from helpers import read_jsonl, write_config

pytestmark = pytest.mark.subprocess  # trials run in worker processes

GOOD, BAD = "0.01", "1e-06"  # Adam at 1e-6 leaves the digits MLP at chance for its few epochs


def digits_config(directory: Path) -> Path:
    return write_config(
        directory,
        data={"name": "digits", "batch_size": 64},
        model={"name": "mlp", "hidden": [32]},
        trainer={"epochs": 4, "device": "cpu"},
        sweep={"pruner": "median", "startup_trials": 1, "seed": 2},
    )


def read_leaderboard(folder: Path) -> list[dict]:
    with (folder / "leaderboard.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def expected_by_the_median_rule(rows: list[dict]) -> dict[str, str]:
    """What the median pruner must decide, from the order the trials ran in (one job). The `name`
    axis changes nothing that trains, so every good trial reports the same values, and every bad one
    too, far below: a bad trial is pruned at epoch 1 once finished trials exist and at least half
    of them are good (their median is then above it); a good one never is (it is the median or
    above it)."""
    finished = {GOOD: 0, BAD: 0}
    expected = {}
    for row in sorted(rows, key=lambda row: int(row["trial"])):
        lr = row["optimizer.lr"]
        pruned = lr == BAD and finished[GOOD] >= 1 and finished[GOOD] >= finished[BAD]
        expected[row["folder"]] = "pruned" if pruned else "done"
        if not pruned:
            finished[lr] += 1
    return expected


@pytest.mark.slow
def test_clearly_worse_trials_are_pruned_after_their_first_epoch_and_not_run_again(cli, tmp_path):
    config, sweep = digits_config(tmp_path), tmp_path / "sweep"
    command = ["sweep", config, "--grid", f"optimizer.lr={GOOD},{BAD}", "--grid", "name=a,b,c", "--out", sweep]
    result = cli(*command)
    assert result.exit_code == 0, result.output
    rows = read_leaderboard(sweep)
    statuses = {row["folder"]: row["status"] for row in rows}
    assert statuses == expected_by_the_median_rule(rows)
    pruned = [row for row in rows if row["status"] == "pruned"]
    assert len(pruned) >= 1  # sweep.seed 2 runs a good trial before a bad one
    for row in pruned:
        run = sweep / row["folder"]
        assert (row["optimizer.lr"], row["epochs"], row["rank"], row["val/accuracy"]) == (BAD, "1", "", "")
        assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1]  # stopped at its first epoch's end
        record = json.loads((run / "pruned.json").read_text())
        assert (record["epoch"], record["monitor"]) == (1, "val/accuracy")
        assert record["value"] == read_jsonl(run / "metrics.jsonl")[0]["val/accuracy"]
        summary = json.loads((run / "summary.json").read_text())
        assert (summary["stopped_early"], summary["epochs_trained"]) == (True, 1)  # an ordinary, finished run
        assert f"{row['folder']}" in result.stdout and "pruned at epoch 1" in result.stdout
    for row in rows:
        if row["status"] == "done":
            assert row["epochs"] == "4"
    rerun = cli(*command)
    assert rerun.exit_code == 0, rerun.output
    assert "0 run now" in rerun.stdout  # pruned trials are not retried
    assert read_leaderboard(sweep) == rows


def test_the_pruner_comes_from_the_sweep_section_or_the_command_line(tmp_path):
    config = digits_config(tmp_path)
    setup = prepare_sweep(config, [], grid=["optimizer.lr=0.01"], space=[])
    assert setup.plan.pruning == Pruning("median", startup_trials=1, min_epochs=1)
    assert setup.epochs == 4
    by_option = prepare_sweep(config, [], grid=["trainer.epochs=2,3"], space=[], pruner="hyperband")
    assert by_option.plan.pruning.pruner == "hyperband"
    assert by_option.epochs == "auto"  # trials train for different numbers of epochs
    with pytest.raises(UserError, match=r"^--pruner sometimes: unknown pruner; allowed: none, median, hyperband$"):
        prepare_sweep(config, [], grid=["optimizer.lr=0.01"], space=[], pruner="sometimes")


def test_a_bad_pruner_in_the_config_names_its_line(cli, tmp_path):
    config = write_config(tmp_path, sweep={"pruner": "sometimes", "grid": {"optimizer.lr": [0.01]}})
    result = cli("sweep", config, "--out", tmp_path / "sweep")
    assert result.exit_code == 2
    line = next(n for n, text in enumerate(config.read_text().splitlines(), 1) if "pruner: sometimes" in text)
    assert result.stderr.startswith(f"error: {config}:{line}: sweep.pruner: Input should be 'none', 'median' or")
    assert not (tmp_path / "sweep").exists()


def test_each_pruner_is_optunas_with_epochs_as_its_steps():
    median = Pruning("median", startup_trials=2, min_epochs=3).make(10)
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert (median._n_startup_trials, median._n_warmup_steps) == (2, 3)
    hyperband = Pruning("hyperband", min_epochs=2).make(10)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert (hyperband._min_resource, hyperband._max_resource) == (2, 10)
    assert isinstance(Pruning().make(10), optuna.pruners.NopPruner)
