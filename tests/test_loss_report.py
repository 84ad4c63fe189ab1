"""The loss report of eval, the robustness result, and learned loss parameters in a real run."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from trainctl.output import Output
from trainctl.workflows import evaluate_run, train

from helpers import CONFIGS, read_jsonl, write_config


def test_loss_report_points_at_real_samples(digits_run):
    report = digits_run.summary["test"]["loss_report"]
    worst = report["worst"]
    assert len(worst) == 10
    losses = [sample["loss"] for sample in worst]
    assert losses == sorted(losses, reverse=True)
    assert losses[0] == report["quantiles"]["max"]
    digits = load_digits()
    for sample in worst:  # row is the dataset row: its label is the reported target
        assert str(digits.target[sample["row"]]) == sample["target"]
    quantiles = list(report["quantiles"].values())
    assert quantiles == sorted(quantiles)


def test_per_class_loss_averages_to_the_split_loss(digits_run):
    test = digits_run.summary["test"]
    per_class = test["loss_report"]["per_class"]
    support = {name: stats["support"] for name, stats in test["per_class"].items()}
    weighted = sum(per_class[name] * support[name] for name in per_class) / sum(support.values())
    assert weighted == pytest.approx(test["loss"], rel=1e-5)


def test_eval_worst_option(cli, digits_run, tmp_path):
    result = cli("eval", digits_run.run.path, "--worst", "3", "--output", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    import json

    record = json.loads((tmp_path / "e.json").read_text())
    assert len(record["loss_report"]["worst"]) == 3
    assert record["loss_report"]["worst"] == digits_run.summary["test"]["loss_report"]["worst"][:3]
    assert "highest-loss samples" in result.stdout and "mean loss per class" in result.stdout


def test_regression_report_has_values(tmp_path):
    result = train(
        write_config(tmp_path, data={"name": "diabetes"}, loss={"name": "huber"}, metrics=["mae"]),
        out=tmp_path / "run",
        output=Output(quiet=True),
    )
    worst = result.summary["test"]["loss_report"]["worst"][0]
    assert isinstance(worst["target"], float) and isinstance(worst["prediction"], float)
    assert "per_class" not in result.summary["test"]["loss_report"]


@pytest.mark.slow
def test_robust_losses_beat_mse_on_outliers(tmp_path):
    """20% gross outliers in the training targets, clean test targets (a smaller, faster version
    of configs/robust/)."""
    fast = ["data.samples=600", "trainer.epochs=20", "trainer.device=cpu"]
    mae = {
        loss: train(CONFIGS / "robust" / f"{loss}.yaml", fast, out=tmp_path / loss, output=Output(quiet=True)).summary[
            "test"
        ]["mae"]
        for loss in ("mse", "huber", "adaptive")
    }
    assert mae["huber"] < mae["mse"]
    assert mae["adaptive"] < mae["mse"]


@pytest.mark.slow
def test_adaptive_parameters_learn_and_are_logged(tmp_path):
    result = train(
        CONFIGS / "robust" / "adaptive.yaml",
        ["data.samples=600", "trainer.epochs=8", "trainer.device=cpu"],
        out=tmp_path / "run",
        output=Output(quiet=True),
    )
    rows = read_jsonl(result.run.metrics_path)
    alphas = [row["loss/alpha"] for row in rows]
    scales = [row["loss/scale"] for row in rows]
    assert len(set(alphas)) == len(alphas) and len(set(scales)) == len(scales)  # they move every epoch
    assert all(0.001 <= a <= 1.999 for a in alphas)
    assert scales[-1] < scales[0]  # the outliers are few: the inlier scale shrinks
    best = rows[result.summary["best_epoch"] - 1]
    assert result.summary["test"]["loss_parameters"] == {
        "loss/alpha": best["loss/alpha"],
        "loss/scale": best["loss/scale"],
    }
    _, record = evaluate_run(result.run.path)
    assert record == result.summary["test"]  # the learned α and c are restored from the checkpoint


def test_balanced_class_weight_trains(tmp_path):
    result = train(
        write_config(tmp_path, loss={"name": "cross_entropy", "class_weight": "balanced"}),
        out=tmp_path / "run",
        output=Output(quiet=True),
    )
    assert result.summary["test"]["accuracy"] > 0.5
    assert np.isfinite(result.summary["test"]["loss"])
