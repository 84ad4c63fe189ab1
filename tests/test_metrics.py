"""trainctl's metrics equal scikit-learn's on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from trainctl.components.metrics import compute
from trainctl.training.statistics import ConfusionMatrix, RegressionStatistics


def classification_stats(labels, predictions, num_classes, batch=7):
    stats = ConfusionMatrix(num_classes, torch.device("cpu"))
    for start in range(0, len(labels), batch):  # batches add up to the whole split
        stats.update(
            torch.as_tensor(predictions[start : start + batch]), torch.as_tensor(labels[start : start + batch])
        )
    return stats.result()


@pytest.mark.parametrize("num_classes", [2, 3, 10])
def test_classification_metrics_match_sklearn(num_classes):
    rng = np.random.default_rng(num_classes)
    labels = rng.integers(0, num_classes, 200)
    predictions = np.where(rng.random(200) < 0.6, labels, rng.integers(0, num_classes, 200))
    confusion = classification_stats(labels, predictions, num_classes)
    ours = compute(["accuracy", "precision", "recall", "f1"], confusion)
    every_class = list(range(num_classes))
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(labels, predictions), abs=1e-12)
    for name, reference in [("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)]:
        expected = reference(labels, predictions, average="macro", labels=every_class, zero_division=0)
        assert ours[name] == pytest.approx(expected, abs=1e-12), name
    assert confusion.tolist() == skm.confusion_matrix(labels, predictions, labels=every_class).tolist()


def test_class_never_predicted_counts_as_zero_precision():
    labels = np.array([0, 0, 1, 1, 2, 2])
    predictions = np.array([0, 0, 1, 1, 1, 1])  # class 2 never predicted
    confusion = classification_stats(labels, predictions, 3)
    details = ConfusionMatrix.details(confusion, ("a", "b", "c"))
    assert details["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    expected = skm.precision_score(labels, predictions, average=None, zero_division=0)
    assert [details["per_class"][k]["precision"] for k in "abc"] == pytest.approx(expected.tolist())


@pytest.mark.parametrize("outputs", [1, 3])
def test_regression_metrics_match_sklearn(outputs):
    rng = np.random.default_rng(outputs)
    targets = (rng.normal(150, 60, (300, outputs))).astype(np.float32)  # far from zero, like diabetes
    predictions = (targets + rng.normal(0, 30, targets.shape)).astype(np.float32)
    stats = RegressionStatistics(outputs, torch.device("cpu"))
    for start in range(0, 300, 64):
        stats.update(torch.as_tensor(predictions[start : start + 64]), torch.as_tensor(targets[start : start + 64]))
    ours = compute(["mse", "rmse", "mae", "r2"], stats.result())
    t, p = targets.astype(np.float64), predictions.astype(np.float64)
    assert ours["mse"] == pytest.approx(skm.mean_squared_error(t, p), rel=1e-9)
    assert ours["mae"] == pytest.approx(skm.mean_absolute_error(t, p), rel=1e-9)
    assert ours["r2"] == pytest.approx(skm.r2_score(t, p), rel=1e-9)
    rmse = np.sqrt(((t - p) ** 2).mean(axis=0)).mean()  # per output, then averaged, like scikit-learn
    assert ours["rmse"] == pytest.approx(rmse, rel=1e-9)


def test_r2_of_constant_targets_follows_sklearn():
    stats = RegressionStatistics(1, torch.device("cpu"))
    stats.update(torch.full((5, 1), 2.0), torch.full((5, 1), 2.0))
    assert compute(["r2"], stats.result())["r2"] == skm.r2_score([2.0] * 5, [2.0] * 5) == 1.0
