"""Calibration: the expected calibration error against a hand-computed case, temperature scaling
recovering a known temperature, and a calibrated run end to end (summary, checkpoint, eval, predict)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from trainctl.config.loading import load_config
from trainctl.errors import ConfigError
from trainctl.output import Output
from trainctl.training.calibration import (
    class_probabilities,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)

from helpers import run_cli, write_config, write_iris_csv

# Six samples by hand: two at confidence 0.95 (one right), three at 0.65 (two right), one at 0.25
# (wrong). With 15 bins of width 1/15 they fall in (14/15, 1], (9/15, 10/15] and (3/15, 4/15]:
# ECE = 2/6·|0.5 − 0.95| + 3/6·|2/3 − 0.65| + 1/6·|0 − 0.25| = 0.15 + 0.008333 + 0.041667 = 0.2
CONFIDENCES = np.array([0.95, 0.95, 0.65, 0.65, 0.65, 0.25])
CORRECT = np.array([True, False, True, True, False, False])


def test_ece_of_a_hand_computed_case():
    assert expected_calibration_error(CONFIDENCES, CORRECT) == pytest.approx(0.2, abs=1e-12)


def test_reliability_bins_of_the_hand_computed_case():
    bins = reliability_bins(CONFIDENCES, CORRECT)
    assert len(bins) == 15
    filled = {index: (b["count"], b["confidence"], b["accuracy"]) for index, b in enumerate(bins) if b["count"]}
    assert filled == {
        3: (1, pytest.approx(0.25), 0.0),
        9: (3, pytest.approx(0.65), pytest.approx(2 / 3)),
        14: (2, pytest.approx(0.95), 0.5),
    }
    assert (bins[3]["lower"], bins[3]["upper"]) == (pytest.approx(0.2), pytest.approx(4 / 15))
    assert bins[0]["confidence"] is None and bins[0]["accuracy"] is None


def test_bins_are_closed_above_and_zero_and_one_are_kept():
    bins = reliability_bins(np.array([0.0, 1.0, 0.5]), np.array([False, True, True]))
    counts = [b["count"] for b in bins]
    assert counts[0] == 1 and counts[14] == 1 and counts[7] == 1  # 0.5 is in (7/15, 8/15]
    assert sum(counts) == 3


def test_a_calibrated_forecast_has_no_error():
    confidences = np.full(10, 0.8)
    correct = np.array([True] * 8 + [False] * 2)
    assert expected_calibration_error(confidences, correct) == pytest.approx(0.0, abs=1e-12)


def sampled_labels(true_logits: torch.Tensor, seed: int) -> torch.Tensor:
    """Labels drawn from the true model: the class probabilities are softmax(true_logits)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.multinomial(true_logits.softmax(dim=1), 1, generator=generator)[:, 0]


@pytest.mark.parametrize("scale", [3.0, 0.5])
def test_temperature_scaling_recovers_a_known_temperature(scale):
    """Logits that are the true logits × 3 (over-confident) are fixed by T ≈ 3; × 0.5 by T ≈ 0.5."""
    true_logits = torch.randn(10000, 5, generator=torch.Generator().manual_seed(0)) * 2
    labels = sampled_labels(true_logits, 1)
    temperature = fit_temperature(true_logits * scale, labels)
    assert temperature == pytest.approx(scale, rel=0.04)
    before = class_probabilities(true_logits * scale, "logits", "values")
    after = class_probabilities(true_logits * scale, "logits", "values", temperature)

    def ece(probabilities):
        confidence, predicted = probabilities.max(dim=1)
        return expected_calibration_error(confidence.numpy(), (predicted == labels).numpy())

    assert ece(after) < 0.02 < ece(before)


def test_temperature_scaling_of_one_binary_logit():
    true_logit = torch.randn(20000, 1, generator=torch.Generator().manual_seed(2)) * 2
    labels = (torch.rand(20000, generator=torch.Generator().manual_seed(3)) < torch.sigmoid(true_logit[:, 0])).long()
    assert fit_temperature(true_logit * 3, labels) == pytest.approx(3.0, rel=0.05)
    probabilities = class_probabilities(true_logit * 3, "logits", "values", 3.0)
    assert torch.allclose(probabilities[:, 1], torch.sigmoid(true_logit[:, 0]), atol=1e-6)


def test_log_probabilities_are_probabilities_and_scores_are_not():
    log_probabilities = torch.log_softmax(torch.tensor([[1.0, 2.0, 0.5]]), dim=1)
    assert torch.allclose(
        class_probabilities(log_probabilities, "log-probabilities", "values"), log_probabilities.exp()
    )
    assert class_probabilities(torch.tensor([[0.2, 0.9, 0.1]]), "values", "values") is None


# ---- the config ------------------------------------------------------------------------------------


def problems_of(path, overrides) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    return caught.value.lines()


def test_calibration_needs_a_classifier_reading_logits(tmp_path):
    path = write_config(tmp_path)
    (nll,) = problems_of(path, ["trainer.calibrate=temperature", "loss.name=nll"])
    assert nll.endswith(
        "trainer.calibrate: temperature scaling divides logits, and loss 'nll' reads log-probabilities; "
        "losses that read logits: cross_entropy, bce_with_logits, focal, multi_margin"
    )
    (regression,) = problems_of(
        path, ["trainer.calibrate=temperature", "data.name=diabetes", "loss.name=mse", "metrics=[mse]"]
    )
    assert regression.endswith("trainer.calibrate: calibrates a classifier's probabilities; this is a regression task")
    (unknown,) = problems_of(path, ["trainer.calibrate=platt"])
    assert "trainer.calibrate: Input should be 'temperature' (got 'platt')" in unknown
    assert load_config(path, ["trainer.calibrate=temperature"]).trainer.calibrate == "temperature"


# ---- a calibrated run ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    """Iris from a CSV (so predict can read it), 3 epochs, temperature scaling after training."""
    from trainctl.workflows import train

    directory = tmp_path_factory.mktemp("calibrated")
    data = write_iris_csv(directory / "iris.csv")
    config = write_config(
        directory,
        data={"name": "csv", "path": str(data), "target": "species", "batch_size": 16},
        trainer={"epochs": 3, "device": "cpu", "calibrate": "temperature"},
    )
    return train(config, out=directory / "run", output=Output(quiet=True)), data


def hand_ece(confidences: list[float], correct: list[bool]) -> float:
    """Guo et al.'s ECE written out again: bins (k/15, (k+1)/15], the first closed at 0."""
    total, error = len(confidences), 0.0
    for k in range(15):
        members = [i for i, c in enumerate(confidences) if k / 15 < c <= (k + 1) / 15 or (k == 0 and c == 0)]
        if members:
            accuracy = sum(correct[i] for i in members) / len(members)
            confidence = sum(confidences[i] for i in members) / len(members)
            error += len(members) / total * abs(accuracy - confidence)
    return error


@pytest.mark.slow
def test_a_calibrated_run_stores_its_temperature_and_ece_before_and_after(calibrated_run):
    result, _ = calibrated_run
    test = result.summary["test"]
    calibration = test["calibration"]
    checkpoint = torch.load(result.run.path / "checkpoints" / "best.pt", weights_only=True)
    assert checkpoint["calibration"] == {
        "method": "temperature",
        "temperature": calibration["temperature"],
        "fitted_on": "val",
    }
    assert calibration["temperature"] > 0
    with (result.run.path / "test_predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 30  # 20% of 150
    confidences = [float(row["confidence"]) for row in rows]
    correct = [row["target"] == row["prediction"] for row in rows]
    assert test["ece"] == pytest.approx(hand_ece(confidences, correct), abs=1e-6)  # confidences written as float32
    assert sum(b["count"] for b in calibration["reliability"]) == 30
    assert sum(b["count"] for b in calibration["reliability_before"]) == 30
    assert calibration["ece_before"] != test["ece"]
    assert (result.run.path / "reliability.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_eval_applies_the_temperature_and_reproduces_the_summary(calibrated_run):
    result, _ = calibrated_run
    evaluated = run_cli("eval", result.run.path)
    assert evaluated.exit_code == 0, evaluated.output
    calibration = result.summary["test"]["calibration"]
    assert json.loads((result.run.path / "eval-test-best.json").read_text()) == result.summary["test"]
    assert (
        f"calibration: temperature {calibration['temperature']:.3f} (fitted on the validation split); "
        f"test ECE {calibration['ece_before']:.4f} before, {result.summary['test']['ece']:.4f} after"
    ) in evaluated.stdout.replace("\n", " ")


@pytest.mark.slow
def test_predict_gives_the_calibrated_probabilities(calibrated_run, tmp_path):
    from trainctl.prediction import load_run_model, predict

    result, data = calibrated_run
    temperature = result.summary["test"]["calibration"]["temperature"]
    predictions = predict(result.run.path, [data])
    loaded = load_run_model(result.run.path)
    assert loaded.temperature == temperature
    with torch.no_grad():
        logits = loaded.module(torch.as_tensor(inputs_of(result.run.path, data)))
    expected = (logits / temperature).softmax(dim=1)
    got = torch.tensor([[p.scores[name] for name in ("setosa", "versicolor", "virginica")] for p in predictions])
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, logits.softmax(dim=1), atol=1e-3)  # the temperature changed them


def inputs_of(run, data):
    """The CSV's rows encoded as training encoded them (the run's data.json)."""
    from trainctl.data.tables import FeatureEncoding, read_table

    encoding = FeatureEncoding.from_dict(json.loads((run / "data.json").read_text())["table"])
    return encoding.transform(read_table(data, key=""), strict=True)


@pytest.mark.slow
def test_an_uncalibrated_classifier_gets_its_ece_and_no_temperature(tmp_path):
    from trainctl.workflows import train

    result = train(
        write_config(tmp_path, trainer={"epochs": 1, "device": "cpu"}), out=tmp_path / "run", output=Output(quiet=True)
    )
    test = result.summary["test"]
    assert set(test["calibration"]) == {"bins", "reliability"}
    assert 0 <= test["ece"] <= 1
    assert "calibration" not in torch.load(result.run.path / "checkpoints" / "best.pt", weights_only=True)


@pytest.mark.slow
def test_an_exported_calibrated_run_says_its_probabilities_divide_by_the_temperature(calibrated_run, tmp_path):
    pytest.importorskip("safetensors")
    from trainctl.export import export_run

    result, _ = calibrated_run
    temperature = result.summary["test"]["calibration"]["temperature"]
    exported = export_run(result.run.path, "safetensors", output=tmp_path / "model.safetensors")
    output = json.loads(exported.sidecar.read_text())["output"]
    assert output["temperature"] == temperature
    assert output["probabilities"] == f"softmax(output / {temperature!r})"
