"""What a dataset asks of a model, and how a loss's targets are made from the dataset's labels.

A dataset declares its task; a loss declares the kind of target it compares against. Pairing the
two decides the model's output size and the target tensor the loss sees, once, before training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TaskKind = Literal["classification", "regression"]

# The kinds of target a loss compares its input against.
#   index:        class indices (cross_entropy, nll, ...)
#   value:        real values; on a classification dataset, one-hot vectors (MSE on labels)
#   binary:       0/1 per output; one output on a binary dataset, one-vs-rest on more classes
#   distribution: probability vectors; on a classification dataset, one-hot vectors
TargetKind = Literal["index", "value", "binary", "distribution"]
# Regression only. values: outputs are predictions; log_rate: exp(output) is (Poisson);
# mean_variance: the first half of the outputs are predictions, the second half variances.
OutputLayout = Literal["values", "log_rate", "mean_variance"]

LOSS_TASKS: dict[TargetKind, tuple[TaskKind, ...]] = {
    "index": ("classification",),
    "value": ("regression", "classification"),
    "binary": ("classification",),
    "distribution": ("classification",),
}


@dataclass(frozen=True)
class Task:
    kind: TaskKind
    num_classes: int = 0  # classification only
    num_targets: int = 1  # regression only
    class_names: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "classification":
            return f"classification with {self.num_classes} classes"
        return f"regression with {self.num_targets} output(s)"


TARGET_DESCRIPTIONS: dict[TargetKind, str] = {
    "index": "class index",
    "value": "real values (one-hot vectors on a classification dataset)",
    "binary": "0/1 per output (one output on a binary dataset)",
    "distribution": "probability vectors (one-hot on a classification dataset)",
}


@dataclass(frozen=True)
class TargetPlan:
    """How a loss meets a task: the model's output size, how targets are encoded, how outputs
    become predictions."""

    num_outputs: int
    encoding: Literal["index", "value", "one_hot", "binary_column"]
    layout: OutputLayout = "values"

    @property
    def scale_targets(self) -> bool:
        """Regression targets are standardised for learning, except counts for a Poisson rate."""
        return self.encoding == "value" and self.layout != "log_rate"


def incompatibility(loss_name: str, target: TargetKind, dataset_name: str, task_kind: TaskKind) -> str | None:
    """Why this loss cannot train on this dataset, or None when the pairing has a clear meaning."""
    allowed = LOSS_TASKS[target]
    if task_kind in allowed:
        return None
    return (
        f"loss {loss_name!r} expects a {' or '.join(allowed)} task, but dataset {dataset_name!r} is a {task_kind} task"
    )


def plan_targets(target: TargetKind, task: Task, layout: OutputLayout = "values") -> TargetPlan:
    if task.kind == "regression":
        outputs = task.num_targets * (2 if layout == "mean_variance" else 1)
        return TargetPlan(outputs, "value", layout)
    if target == "index":
        return TargetPlan(task.num_classes, "index")
    if target == "binary" and task.num_classes == 2:
        return TargetPlan(1, "binary_column")
    # A regression loss on classes fits one-hot vectors: one target per class, with a variance each
    # for a loss that predicts one.
    return TargetPlan(task.num_classes * (2 if layout == "mean_variance" else 1), "one_hot", layout)
