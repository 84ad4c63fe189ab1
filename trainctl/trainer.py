"""The training loop, in plain code: `train_one_epoch`, `evaluate`, and a `Trainer` that runs them.

The trainer knows nothing of YAML or registries: it gets built torch objects and prepared tensors.
The hot loop does no host synchronisation of its own; the running loss stays on the device and is
read once per epoch (and by the live view at most four times a second).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainctl import __version__
from trainctl.checkpoint import CheckpointWriter, load_checkpoint, load_model_state
from trainctl.components.metrics import compute, goal
from trainctl.data import PreparedData, Split, ordered_batches, shuffled_batches
from trainctl.loss_functions import logged_values
from trainctl.loss_report import loss_report
from trainctl.progress import QuietReporter, Reporter
from trainctl.runs import RunFolder
from trainctl.statistics import ConfusionMatrix, RegressionStatistics

EVAL_BATCH_SIZE = 1024  # evaluation holds no activations for backward, so it takes larger batches


@dataclass
class Evaluation:
    loss: float
    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)  # per class and confusion matrix

    def flat(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}/loss": self.loss, **{f"{prefix}/{k}": v for k, v in self.metrics.items()}}


def train_one_epoch(
    model: torch.nn.Module,
    split: Split,
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    batch_size: int,
    generator: torch.Generator,
    scheduler_per_step: Any | None,
    reporter: Reporter,
) -> float:
    """One pass over the shuffled training split; returns the mean training loss per sample."""
    model.train()
    loss_sum = torch.zeros((), device=split.inputs.device)
    samples = 0
    for step, index in enumerate(shuffled_batches(len(split), batch_size, generator, split.inputs.device), 1):
        loss = loss_fn(model(split.inputs[index]), split.targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler_per_step is not None:
            scheduler_per_step.step()
        loss_sum += loss.detach() * len(index)
        samples += len(index)
        reporter.step(step, loss_sum, samples)
    return loss_sum.item() / samples


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    split: Split,
    loss_fn: torch.nn.Module,
    data: PreparedData,
    metric_names: list[str],
    *,
    details: bool = False,
    worst: int = 0,
) -> Evaluation:
    """Mean loss and metrics over a whole split, computed from statistics summed over batches.

    With `details`, also per-class metrics, the confusion matrix and the loss report (with the
    `worst` highest-loss samples).
    """
    model.eval()
    device = split.inputs.device
    if data.task.kind == "classification":
        statistics: Any = ConfusionMatrix(data.task.num_classes, device)
    else:
        statistics = RegressionStatistics(data.task.num_targets, device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    all_outputs = []
    for inputs, targets, labels in ordered_batches(split, EVAL_BATCH_SIZE):
        outputs = model(inputs)
        loss_sum += loss_fn(outputs, targets).double() * len(inputs)
        statistics.update(data.predictions(outputs), labels)
        if details:
            all_outputs.append(outputs)
    result = statistics.result()
    evaluation = Evaluation(loss_sum.item() / len(split), compute(metric_names, result))
    if details:
        if data.task.kind == "classification":
            evaluation.details = ConfusionMatrix.details(result, data.task.class_names)
        evaluation.details["loss_report"] = loss_report(loss_fn, torch.cat(all_outputs), split, data, worst)
    return evaluation


def evaluate_checkpoint(
    model: torch.nn.Module,
    checkpoint_path: Path,
    split_name: str,
    loss_fn: torch.nn.Module,
    data: PreparedData,
    metric_names: list[str],
    worst: int = 10,
) -> dict[str, Any]:
    """Load a checkpoint into the model and evaluate one split: the record `summary.json` and `eval` share."""
    state = load_checkpoint(checkpoint_path)
    load_model_state(model, state, checkpoint_path)
    if state.get("loss"):
        load_model_state(loss_fn, {"model": state["loss"]}, checkpoint_path)
    model.to(data.train.inputs.device)
    result = evaluate(model, data.split(split_name), loss_fn, data, metric_names, details=True, worst=worst)
    record = {
        "split": split_name,
        "checkpoint": str(checkpoint_path),
        "epoch": state.get("epoch"),
        "loss": result.loss,
        **result.metrics,
        **result.details,
    }
    learned = logged_values(loss_fn)
    if learned:
        record["loss_parameters"] = learned
    return record


def is_improvement(value: float, best: float | None, mode: str) -> bool:
    if best is None:
        return True
    return value < best if mode == "min" else value > best


@dataclass
class FitResult:
    best_epoch: int
    best_value: float
    seconds: float


@dataclass
class Trainer:
    model: torch.nn.Module
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    data: PreparedData
    metrics: list[str]
    epochs: int
    batch_size: int
    monitor: str
    seed: int
    scheduler: Any | None = None
    scheduler_interval: str = "epoch"
    run: RunFolder | None = None
    config: dict[str, Any] = field(default_factory=dict)  # stored in checkpoints
    reporter: Reporter = field(default_factory=QuietReporter)

    def _checkpoint(self, epoch: int, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "loss": self.loss_fn.state_dict(),  # learned loss parameters (adaptive α and c, ...)
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": epoch,
            "metrics": row,
            "config": self.config,
            "trainctl_version": __version__,
        }

    def _step_epoch_scheduler(self, row: dict[str, Any]) -> None:
        if self.scheduler is None or self.scheduler_interval != "epoch":
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            value = row[self.monitor]
            self.scheduler.step(value if goal(self.monitor) == "min" else -value)
        else:
            self.scheduler.step()

    def fit(self) -> FitResult:
        generator = torch.Generator().manual_seed(self.seed)
        per_step = self.scheduler if self.scheduler_interval == "step" else None
        mode = goal(self.monitor)
        best_value: float | None = None
        best_epoch = 0
        started = time.perf_counter()
        writer = CheckpointWriter()
        self.reporter.start(self.epochs, -(-len(self.data.train) // self.batch_size))
        try:
            for epoch in range(1, self.epochs + 1):
                epoch_started = time.perf_counter()
                self.reporter.start_epoch(epoch)
                train_loss = train_one_epoch(
                    self.model,
                    self.data.train,
                    self.loss_fn,
                    self.optimizer,
                    batch_size=self.batch_size,
                    generator=generator,
                    scheduler_per_step=per_step,
                    reporter=self.reporter,
                )
                validation = evaluate(self.model, self.data.val, self.loss_fn, self.data, self.metrics)
                row = {
                    "epoch": epoch,
                    "train/loss": train_loss,
                    **validation.flat("val"),
                    "lr": self.optimizer.param_groups[0]["lr"],  # the rate this epoch ended with
                    **logged_values(self.loss_fn),
                }
                self._step_epoch_scheduler(row)
                row["seconds"] = time.perf_counter() - epoch_started
                improved = is_improvement(row[self.monitor], best_value, mode)
                if improved:
                    best_value, best_epoch = row[self.monitor], epoch
                if self.run is not None:
                    self.run.append_metrics(row)
                    best = self.run.checkpoint_path("best") if improved else None
                    writer.save(self._checkpoint(epoch, row), self.run.checkpoint_path("last"), also=best)
                self.reporter.end_epoch(row)
        finally:
            writer.close()
            self.reporter.finish()
        return FitResult(best_epoch, float(best_value), time.perf_counter() - started)
