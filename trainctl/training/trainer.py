"""The trainer: `Trainer.fit` runs `train_one_epoch` and `evaluate` epoch after epoch, and the
duties of each epoch's end run as handlers of the trainer's events.

The trainer knows nothing of YAML or registries: it gets built torch objects, prepared tensors and
its settings (`trainctl.training.settings`).

Events (`trainer.events`; `trainctl.training.events` holds what each handler is given). Handlers
are called in the order they were added; they add behaviour without changing the loop (an EMA of
the weights, gradient-accumulation reports, pruning reports, experiment trackers plug in here):

- `step_end(StepEnd)`: after each optimizer step, with the epoch, the step, the samples so far
  and the epoch's losses on the device. With `trainer.accumulate: K`, the step is counted in
  micro-batches (the last of the group; the live view shows micro-batches too), and
  `TrainingState.global_step` counts optimizer steps. A handler that reads a loss syncs with the device, so the
  live view (the first handler, when the progress bars are on) does it at most four times a
  second. The weight averaging's handler (trainer.ema) runs before the added ones, so they see
  the step's average. With no handlers nothing is built or called per step.
- `epoch_end(EpochEnd)`: after an epoch is trained and validated. The trainer's own duties are
  handlers of this event, run in a fixed order around the added ones:
    1. the epoch scheduler steps (ReduceLROnPlateau on trainer.monitor), or SWALR in its place
       from trainer.swa.start_epoch on;
    2. best tracking: the state's best epoch and value, and `EpochEnd.improved`;
    3. early stopping updates its counters and may stop the run;
    4. the row joins the fit's history;
    5. the added handlers: they see the epoch's final state, may add keys to the row or call
       `EpochEnd.stop()`, and what they change is written below;
    6. metrics.jsonl gets the row;
    7. the checkpoints: best.pt (when improved) is complete before last.pt is replaced;
    8. the progress view shows the row.
  Steps 6 and 7 need a run folder (rank 0 alone writes one).
- `fit_end(FitResult)`: once, after the last epoch, when the fit ended without an error.

An interrupted epoch (Ctrl-C, SIGTERM) ends no epoch: it saves last.pt and raises `Interrupted`.

Weight averaging (`trainctl.training.averaging`, trainer.ema or trainer.swa): validation, the
checkpoints' `model` and so the test evaluate the average once it holds one; SWA adds its epoch's
weights to the average, and recomputes its batch-norm statistics, between training and validation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from trainctl import __version__
from trainctl.components.metrics import compute, goal
from trainctl.data.prepare import PreparedData, Split, ordered_batches, steps_per_epoch
from trainctl.nn.losses import logged_values
from trainctl.ranks import SINGLE, Ranks
from trainctl.training.averaging import make_averaging
from trainctl.training.calibration import calibration_record, checkpoint_temperature, class_probabilities
from trainctl.training.checkpoint import CheckpointWriter, load_checkpoint, load_model_state
from trainctl.training.events import EpochEnd, Events, FitResult, StepEnd
from trainctl.training.interrupts import Interrupted, StopRequest
from trainctl.training.loop import (
    EpochContext,
    EpochProgress,
    NonFiniteLoss,
    TrainingStep,
    train_one_epoch,
    training_step,
)
from trainctl.training.loss_report import loss_report, per_sample_losses
from trainctl.training.precision import Precision
from trainctl.training.progress import QuietReporter, Reporter
from trainctl.training.samples import sample_columns
from trainctl.training.settings import FitSettings
from trainctl.training.state import RandomStates, TrainingState
from trainctl.training.statistics import ConfusionMatrix, RegressionStatistics

if TYPE_CHECKING:
    from trainctl.training.build import TrainingParts

EVAL_BATCH_SIZE = 1024  # evaluation holds no activations for backward, so it takes larger batches

NONFINITE_HINT = (
    "Lower optimizer.lr, set trainer.grad_clip_norm, or set trainer.on_nonfinite: skip (with trainer.max_skipped_steps)"
)


@dataclass
class Evaluation:
    loss: float
    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)  # per class and confusion matrix
    outputs: torch.Tensor | None = None  # every sample's model output, in the split's order (details, keep_outputs)
    sample_losses: np.ndarray | None = None  # every sample's loss (details)

    def flat(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}/loss": self.loss, **{f"{prefix}/{k}": v for k, v in self.metrics.items()}}


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    split: Split,
    loss_fn: torch.nn.Module,
    data: PreparedData,
    metric_names: Sequence[str],
    *,
    details: bool = False,
    worst: int = 0,
    precision: Precision | None = None,
    ranks: Ranks = SINGLE,
    keep_outputs: bool = False,
) -> Evaluation:
    """Mean loss and metrics over a whole split, computed from statistics summed over batches.

    With `details`, also per-class metrics, the confusion matrix, the loss report (with the
    `worst` highest-loss samples), and every sample's output and loss; with `keep_outputs`, the outputs.
    """
    model.eval()
    device = split.device
    if data.task.kind == "classification":
        statistics: Any = ConfusionMatrix(data.task.num_classes, device)
    else:
        statistics = RegressionStatistics(data.task.num_targets, device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    all_outputs = []
    autocast = precision.autocast if precision is not None else contextlib.nullcontext
    total = len(split)
    if ranks.distributed:  # each rank evaluates a slice; the statistics are summed below
        split = split.shard(ranks)
    for inputs, targets, labels in ordered_batches(split, EVAL_BATCH_SIZE):
        with autocast():
            outputs = model(inputs)
            loss_sum += loss_fn(outputs, targets).double() * len(inputs)
        outputs = outputs.float()
        statistics.update(data.predictions(outputs), labels)
        if details or keep_outputs:
            all_outputs.append(outputs)
    if ranks.distributed:
        statistics.sum_over_ranks(ranks)
        ranks.sum(loss_sum)
    result = statistics.result()
    evaluation = Evaluation(loss_sum.item() / total, compute(list(metric_names), result))
    if not (details or keep_outputs):
        return evaluation
    evaluation.outputs = every_output = torch.cat(all_outputs)
    if details:
        if data.task.kind == "classification":
            evaluation.details = ConfusionMatrix.details(result, data.task.class_names)
        evaluation.sample_losses = losses = per_sample_losses(loss_fn, every_output, split.targets)
        evaluation.details["loss_report"] = loss_report(losses, every_output, split, data, worst)
    return evaluation


@dataclass
class CheckpointEvaluation:
    record: dict[str, Any]  # what summary.json's test record and eval's JSON hold
    samples: dict[str, list[Any]]  # one column per field of test_predictions.csv, a row per sample


def evaluate_checkpoint(
    model: torch.nn.Module,
    checkpoint_path: Path,
    split_name: str,
    loss_fn: torch.nn.Module,
    data: PreparedData,
    metric_names: Sequence[str],
    worst: int = 10,
    output_kind: str = "",
) -> CheckpointEvaluation:
    """Load a checkpoint into the model and evaluate one split: the record `summary.json` and `eval`
    share, and each sample's result. `output_kind` (the loss's: logits, log-probabilities, values)
    says how outputs become probabilities, for the calibration of a classifier."""
    state = load_checkpoint(checkpoint_path)
    load_model_state(model, state, checkpoint_path)
    if state.get("loss"):
        load_model_state(loss_fn, {"model": state["loss"]}, checkpoint_path)
    model.to(data.train.device)
    split = data.split(split_name)
    result = evaluate(model, split, loss_fn, data, metric_names, details=True, worst=worst)
    assert result.outputs is not None and result.sample_losses is not None  # details keeps them
    temperature = checkpoint_temperature(state, checkpoint_path)
    probabilities = None
    if data.task.kind == "classification":
        probabilities = class_probabilities(result.outputs, output_kind, data.plan.layout, temperature)
    calibration: dict[str, Any] = {}
    if probabilities is not None:
        uncalibrated = class_probabilities(result.outputs, output_kind, data.plan.layout) if temperature else None
        calibration = calibration_record(probabilities, split.labels, temperature, uncalibrated)
    record = {
        "split": split_name,
        "checkpoint": str(checkpoint_path),
        "epoch": state.get("epoch"),
        **evaluated_weights(state),
        "loss": result.loss,
        **result.metrics,
        **calibration,
        **result.details,
    }
    learned = logged_values(loss_fn)
    if learned:
        record["loss_parameters"] = learned
    samples = sample_columns(result.outputs, split, data, result.sample_losses, probabilities)
    return CheckpointEvaluation(record, samples)


def evaluated_weights(checkpoint: dict[str, Any]) -> dict[str, str]:
    """For a run that averages its weights: which weights the checkpoint's model holds (ema, swa, or
    trained before SWA began); nothing for other runs, whose records stay as they were."""
    averaging = checkpoint.get("averaging")
    if not isinstance(averaging, dict):
        return {}
    return {"weights": str(averaging.get("weights", "trained"))}


def is_improvement(value: float, best: float | None, mode: str) -> bool:
    if best is None:
        return True
    return value < best if mode == "min" else value > best


class ShuffleOrder:
    """The generator that shuffles every epoch, and its state when the epoch in progress began, so
    that an interrupted epoch's permutation can be drawn again."""

    def __init__(self, seed: int, rng: RandomStates | None):
        self.generator = torch.Generator().manual_seed(seed)
        self.at_epoch_start = self.generator.get_state()
        if rng is not None:  # a resume: every random state as the checkpoint left it
            rng.restore(self.generator)
            self.at_epoch_start = rng.shuffle_at_epoch_start

    def start_epoch(self, resuming: bool) -> torch.Generator:
        if resuming:  # draw the interrupted epoch's permutation again
            self.generator.set_state(self.at_epoch_start)
        else:
            self.at_epoch_start = self.generator.get_state()
        return self.generator

    def mid_epoch(self) -> RandomStates:
        return RandomStates.capture(self.generator, self.at_epoch_start)

    def after_epoch(self) -> RandomStates:
        return RandomStates.capture(self.generator, self.generator.get_state())


EpochHandler = Callable[[EpochEnd], None]


@dataclass
class Trainer:
    parts: TrainingParts  # data, model, loss, optimizer, scheduler, device and ranks
    settings: FitSettings
    reporter: Reporter = field(default_factory=QuietReporter)
    events: Events = field(default_factory=Events)

    def __post_init__(self) -> None:
        parts = self.parts
        # torch.compile of a Module returns an OptimizedModule, a Module sharing its weights; its stub
        # types the result only as a callable, so the cast restores what it is.
        self.forward_model = (
            cast(torch.nn.Module, torch.compile(parts.model)) if self.settings.step.compile else parts.model
        )
        self.step = training_step(
            self.forward_model,
            parts.loss_fn,
            parts.optimizer,
            self.settings.step,
            scheduler=parts.scheduler if parts.scheduler_interval == "step" else None,
            ranks=parts.ranks,
        )
        settings = self.settings
        self.averaging = make_averaging(
            settings.averaging,
            parts.model,
            parts.optimizer,
            parts.data.train,
            settings.step.batch_size,
            settings.step.precision.autocast if settings.step.precision is not None else contextlib.nullcontext,
        )

    def checkpoint(self, state: TrainingState, rng: RandomStates, row: dict[str, Any] | None) -> dict[str, Any]:
        parts, output = self.parts, self.settings.output
        return {
            **self.averaging.checkpoint_entries(),  # the model evaluated, and the average's own state
            "loss": parts.loss_fn.state_dict(),  # learned loss parameters (adaptive α and c, ...)
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict() if parts.scheduler is not None else None,
            "grad_scaler": self.step.update.state_dict(),
            "epoch": state.epoch,
            "state": state.to_dict(),
            "rng": rng.to_dict(),
            "metrics": row,
            "config": output.config,
            "config_hash": output.config_hash,
            "trainctl_version": __version__,
        }

    def load_checkpoint_state(self, checkpoint: dict[str, Any]) -> tuple[TrainingState, RandomStates]:
        """Restore model, loss, optimizer, scheduler and grad scaler (and the weight average) from a
        checkpoint written by `checkpoint`."""
        parts = self.parts
        parts.model.load_state_dict(self.averaging.load(checkpoint))  # before the optimizer: see StochasticAverage.load
        parts.loss_fn.load_state_dict(checkpoint.get("loss") or {})
        parts.optimizer.load_state_dict(checkpoint["optimizer"])
        if parts.scheduler is not None and checkpoint.get("scheduler"):
            parts.scheduler.load_state_dict(checkpoint["scheduler"])
        if checkpoint.get("grad_scaler"):
            self.step.update.load_state_dict(checkpoint["grad_scaler"])
        return TrainingState.from_dict(checkpoint["state"]), RandomStates.from_dict(checkpoint["rng"])

    def fit(
        self, state: TrainingState | None = None, rng: RandomStates | None = None, stop: StopRequest | None = None
    ) -> FitResult:
        """Train from the start, or from a checkpoint's `state` and `rng` (exactly where it stopped).
        `stop` is checked after every step: when set, the run saves its place and stops."""
        state = state or TrainingState()
        stop = stop or StopRequest()
        shuffle = ShuffleOrder(self.settings.seed, rng)
        started = time.perf_counter()
        writer = CheckpointWriter()
        history: list[dict[str, Any]] = []
        epoch_end = self._epoch_end_handlers(history, writer, shuffle)
        steps = steps_per_epoch(len(self.parts.data.train), self.settings.step.batch_size)
        self.reporter.start(self.settings.epochs, steps, first_epoch=state.epoch + 1)
        try:
            while state.epoch < self.settings.epochs and not state.stopped_early:
                end = self._train_epoch(state, shuffle, writer, stop)
                for handler in epoch_end:
                    handler(end)
                if self._stop_between_epochs(state, stop):
                    raise Interrupted(self.settings.output.resume_hint)  # last.pt is this epoch's end
        finally:
            writer.close()
            self.reporter.finish()
        if state.best_value is None:  # every fit ends at least one epoch, or resumes a run that did
            raise RuntimeError("training ended without a finished epoch")
        result = FitResult(
            state.best_epoch, float(state.best_value), time.perf_counter() - started, state.stopped_early, history
        )
        for fit_handler in self.events.fit_end:
            fit_handler(result)
        return result

    def _train_epoch(
        self, state: TrainingState, shuffle: ShuffleOrder, writer: CheckpointWriter, stop: StopRequest
    ) -> EpochEnd:
        """Train and validate the next epoch (or the rest of an interrupted one)."""
        epoch = state.epoch + 1
        self.reporter.start_epoch(epoch)
        resuming = state.step_in_epoch > 0
        if not resuming:
            state.epoch_started_seconds = 0.0
        self.averaging.begin_epoch(epoch)
        context = EpochContext(
            epoch,
            shuffle.start_epoch(resuming),
            skip_budget=self.settings.step.skip_budget(state.skipped_steps),
            resume_from=state.epoch_progress if resuming else None,
            stop=stop,
            step_end=self._step_end_handlers(),
        )
        epoch_started = time.perf_counter() - state.epoch_started_seconds
        try:
            progress = train_one_epoch(self.forward_model, self.parts.data.train, self._step_for(epoch), context)
        except NonFiniteLoss as error:
            raise NonFiniteLoss(f"{error}; {self._what_is_kept(state)}. {NONFINITE_HINT}") from None
        state.global_step += progress.optimizer_steps
        state.skipped_steps += progress.skipped
        if progress.interrupted:
            self._save_interrupted(state, progress, shuffle.mid_epoch(), writer, epoch_started)
        state.step_in_epoch, state.epoch_progress = 0, None
        self.averaging.epoch_trained(epoch)
        row = self._epoch_row(epoch, progress, state)
        row["seconds"] = time.perf_counter() - epoch_started
        state.epoch = epoch
        return EpochEnd(epoch, row, state)

    def _stop_between_epochs(self, state: TrainingState, stop: StopRequest) -> bool:
        """A stop requested during an epoch's last step, when epochs are left (every rank agrees)."""
        more = state.epoch < self.settings.epochs and not state.stopped_early
        return more and self.parts.ranks.any(stop.requested, self.parts.data.train.device)

    def _step_for(self, epoch: int) -> TrainingStep:
        """The step, less its per-step schedule in the epochs whose rate the weight averaging sets (SWA)."""
        if self.step.scheduler is None or not self.averaging.sets_lr(epoch):
            return self.step
        return dataclasses.replace(self.step, scheduler=None)

    def _epoch_row(self, epoch: int, progress: EpochProgress, state: TrainingState) -> dict[str, Any]:
        """The epoch's metrics.jsonl row, less its seconds: training loss, validation, rate, learned loss values."""
        parts = self.parts
        validation = evaluate(
            self.averaging.evaluated(self.forward_model),
            parts.data.val,
            parts.loss_fn,
            parts.data,
            self.settings.monitoring.metrics,
            precision=self.settings.step.precision,
            ranks=parts.ranks,
        )
        row = {
            "epoch": epoch,
            "train/loss": progress.mean_loss(),
            **validation.flat("val"),
            "lr": parts.optimizer.param_groups[0]["lr"],  # the rate this epoch ended with
            **logged_values(parts.loss_fn),
        }
        if state.skipped_steps:
            row["skipped_steps"] = state.skipped_steps
        row.update(self.averaging.row_entries())  # n_averaged: how many updates the validated average holds
        return row

    def _save_interrupted(
        self,
        state: TrainingState,
        progress: EpochProgress,
        rng: RandomStates,
        writer: CheckpointWriter,
        epoch_started: float,
    ) -> None:
        """Save how far the interrupted epoch got to last.pt, so a resume continues at its next step."""
        state.step_in_epoch = progress.steps
        state.epoch_progress = progress.saved()
        state.epoch_started_seconds = time.perf_counter() - epoch_started
        run = self.settings.output.run
        if run is not None:
            writer.save(self.checkpoint(state, rng, None), run.checkpoint_path("last"))
            writer.wait()
        raise Interrupted(self.settings.output.resume_hint)

    def _what_is_kept(self, state: TrainingState) -> str:
        if self.settings.output.run is None:
            return "training stopped"
        if state.epoch == 0 and state.step_in_epoch == 0:
            return "the run stopped before its first checkpoint"
        return f"the run stopped and keeps its last good checkpoint (epoch {state.epoch})"

    # ---- the duties of each step's and epoch's end, as event handlers -------------------------------

    def _step_end_handlers(self) -> list[Callable[[StepEnd], None]]:
        # The quiet and plain reporters draw nothing per step: no handler, so a quiet loop calls nothing.
        live = type(self.reporter).step is not QuietReporter.step
        duties = [self._show_step] if live else []
        return [*duties, *self.averaging.step_handlers(), *self.events.step_end]

    def _show_step(self, end: StepEnd) -> None:
        self.reporter.step(end.step, end.progress, end.samples)

    def _epoch_end_handlers(
        self, history: list[dict[str, Any]], writer: CheckpointWriter, shuffle: ShuffleOrder
    ) -> list[EpochHandler]:
        """The epoch's duties around the added handlers, in the order the module docstring gives."""
        decisions: list[EpochHandler] = [
            self._step_epoch_scheduler,
            self._track_best,
            self._update_early_stopping,
            lambda end: history.append(end.row),
        ]
        records: list[EpochHandler] = []
        run = self.settings.output.run
        if run is not None:

            def save_checkpoints(end: EpochEnd) -> None:
                best = run.checkpoint_path("best") if end.improved else None
                writer.save(
                    self.checkpoint(end.state, shuffle.after_epoch(), end.row), run.checkpoint_path("last"), also=best
                )

            records += [lambda end: run.append_metrics(end.row), save_checkpoints]
        records.append(lambda end: self.reporter.end_epoch(end.row))
        return [*decisions, *self.events.epoch_end, *records]

    def _step_epoch_scheduler(self, end: EpochEnd) -> None:
        if self.averaging.sets_lr(end.epoch):  # SWALR in the configured scheduler's place
            self.averaging.step_lr()
            return
        scheduler, monitor = self.parts.scheduler, self.settings.monitoring.monitor
        if scheduler is None or self.parts.scheduler_interval != "epoch":
            return
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            value = end.row[monitor]
            scheduler.step(value if goal(monitor) == "min" else -value)
        else:
            scheduler.step()

    def _track_best(self, end: EpochEnd) -> None:
        monitor, state = self.settings.monitoring.monitor, end.state
        end.improved = is_improvement(end.row[monitor], state.best_value, goal(monitor))
        if end.improved:
            state.best_value, state.best_epoch = end.row[monitor], end.epoch

    def _update_early_stopping(self, end: EpochEnd) -> None:
        stopping = self.settings.monitoring.early_stopping
        if stopping is not None:
            end.state.stopped_early = stopping.update(end.state, end.row[stopping.monitor])
