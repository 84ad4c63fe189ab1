"""Metrics, computed from summary statistics gathered over a whole split.

Classification metrics read a confusion matrix; regression metrics read sums of errors and
targets. Both are additive, so batches (and, later, processes) combine by adding their statistics.
Averages over classes are macro averages over every class of the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from trainctl.data.task import TaskKind
from trainctl.registry import Registry


@dataclass(frozen=True, kw_only=True)
class MetricInfo:
    task: TaskKind  # the datasets it applies to
    goal: Literal["min", "max"]  # which way is better


METRICS = Registry("metric", MetricInfo)


@dataclass
class RegressionSums:
    count: int
    squared_error: np.ndarray  # per output
    absolute_error: np.ndarray
    target_sum: np.ndarray
    target_squared_sum: np.ndarray


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # A class never predicted has precision 0, as scikit-learn reports with zero_division=0.
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def per_class(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class; rows are true classes, columns predictions."""
    true_positive = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    return {
        "precision": _safe_divide(true_positive, predicted),
        "recall": _safe_divide(true_positive, actual),
        "f1": _safe_divide(2 * true_positive, predicted + actual),
        "support": actual,
    }


def _register_classification(name: str, summary: str):
    return METRICS.register(name, summary=summary, task="classification", goal="max")


@_register_classification("accuracy", "Fraction of samples whose predicted class is the true class")
def accuracy(confusion: np.ndarray) -> float:
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else 0.0


@_register_classification("precision", "Macro precision: of the samples predicted as a class, how many are")
def precision(confusion: np.ndarray) -> float:
    return float(per_class(confusion)["precision"].mean())


@_register_classification("recall", "Macro recall: of the samples of a class, how many are found")
def recall(confusion: np.ndarray) -> float:
    return float(per_class(confusion)["recall"].mean())


@_register_classification("f1", "Macro F1: harmonic mean of precision and recall, per class then averaged")
def f1(confusion: np.ndarray) -> float:
    return float(per_class(confusion)["f1"].mean())


def _register_regression(name: str, summary: str, goal: Literal["min", "max"] = "min"):
    return METRICS.register(name, summary=summary, task="regression", goal=goal)


@_register_regression("mse", "Mean squared error, averaged over outputs")
def mse(sums: RegressionSums) -> float:
    return float((sums.squared_error / sums.count).mean())


@_register_regression("rmse", "Root mean squared error, averaged over outputs")
def rmse(sums: RegressionSums) -> float:
    return float(np.sqrt(sums.squared_error / sums.count).mean())


@_register_regression("mae", "Mean absolute error, averaged over outputs")
def mae(sums: RegressionSums) -> float:
    return float((sums.absolute_error / sums.count).mean())


@_register_regression("r2", "Coefficient of determination: 1 − SSE/SST, averaged over outputs", goal="max")
def r2(sums: RegressionSums) -> float:
    total = sums.target_squared_sum - sums.target_sum**2 / sums.count
    # Constant targets: scikit-learn's convention, 1 for a perfect fit and 0 otherwise.
    scores = np.where(total > 0, 1 - sums.squared_error / np.where(total > 0, total, 1), 0.0)
    scores = np.where((total <= 0) & (sums.squared_error == 0), 1.0, scores)
    return float(scores.mean())


DEFAULT_METRICS: dict[str, list[str]] = {
    "classification": ["accuracy", "precision", "recall", "f1"],
    "regression": ["mse", "rmse", "mae", "r2"],
}


def goal(key: str) -> Literal["min", "max"]:
    """'min' or 'max' for a logged key such as 'val/loss' or 'val/accuracy'."""
    name = key.split("/")[-1]
    return METRICS.get(name).info.goal if name in METRICS else "min"


def compute(names: list[str], statistics: Any) -> dict[str, float]:
    return {name: METRICS.get(name).build(statistics, {}) for name in names}
