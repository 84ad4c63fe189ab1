"""The training loop, in plain code: `train_one_epoch`, `evaluate`, and a `Trainer` that runs them.

The trainer knows nothing of YAML or registries: it gets built torch objects and prepared tensors.
The hot loop does no host synchronisation of its own; the running loss stays on the device and is
read once per epoch (and by the live view at most four times a second).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainctl import __version__
from trainctl.components.metrics import compute, goal
from trainctl.data.prepare import PreparedData, Split, ordered_batches, shuffled_batches, steps_per_epoch
from trainctl.errors import UserError
from trainctl.nn.losses import logged_values
from trainctl.ranks import SINGLE, Ranks
from trainctl.runs import RunFolder
from trainctl.training.checkpoint import CheckpointWriter, load_checkpoint, load_model_state
from trainctl.training.interrupts import Interrupted, StopRequest
from trainctl.training.loss_report import loss_report
from trainctl.training.precision import Precision
from trainctl.training.progress import QuietReporter, Reporter
from trainctl.training.state import EarlyStopping, RandomStates, TrainingState, config_hash
from trainctl.training.statistics import ConfusionMatrix, RegressionStatistics

EVAL_BATCH_SIZE = 1024  # evaluation holds no activations for backward, so it takes larger batches


@dataclass
class Evaluation:
    loss: float
    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)  # per class and confusion matrix

    def flat(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}/loss": self.loss, **{f"{prefix}/{k}": v for k, v in self.metrics.items()}}


class NonFiniteLoss(UserError):
    """The loss became inf or NaN: the run stops and keeps its last good checkpoint."""


NONFINITE_HINT = (
    "Lower optimizer.lr, set trainer.grad_clip_norm, or set trainer.on_nonfinite: skip (with trainer.max_skipped_steps)"
)


@dataclass
class EpochProgress:
    """How far an epoch got: each step's mean loss (on the device) and batch size, in step order.

    The epoch's loss is summed from these once, in one fixed order, so it is the same whether the
    epoch ran straight through or was interrupted and resumed, and however often it was displayed.
    """

    step_losses: torch.Tensor  # one slot per batch of the epoch; filled up to `steps`
    batch_sizes: torch.Tensor  # samples per batch, 0 for a skipped non-finite step
    steps: int  # batches done in this epoch, including those before a resume
    optimizer_steps: int = 0  # optimizer steps taken in this call
    interrupted: bool = False
    skipped: int = 0  # non-finite steps skipped in this call
    totals: list[float] | None = None  # summed loss and samples of a finished epoch, read once on the host

    def sum_over_ranks(self, ranks: Ranks) -> None:
        """Make each step's loss and size those of the whole global batch (a no-op in one process)."""
        if not ranks.distributed:
            return
        totals = ranks.sum(torch.stack([self.step_losses * self.batch_sizes, self.batch_sizes]))
        self.batch_sizes = totals[1]
        self.step_losses = torch.where(totals[1] > 0, totals[0] / totals[1].clamp(min=1), 0.0)

    @classmethod
    def empty(cls, batch_sizes: list[int], device: torch.device) -> EpochProgress:
        sizes = torch.tensor(batch_sizes, dtype=torch.float32, device=device)
        return cls(torch.zeros(len(batch_sizes), device=device), sizes, steps=0)

    def mean_loss(self) -> float:
        """The finished epoch's mean training loss, from the totals `train_one_epoch` read."""
        if self.totals is None:
            raise RuntimeError("an interrupted epoch has no totals")
        return self.totals[0] / self.totals[1]

    def loss_sum(self) -> torch.Tensor:
        return (self.step_losses[: self.steps] * self.batch_sizes[: self.steps]).sum()

    def __float__(self) -> float:  # what the live view reads, at most four times a second
        return float(self.loss_sum())

    @property
    def samples(self) -> int:
        return int(self.batch_sizes[: self.steps].sum())

    def first_nonfinite_step(self) -> int:
        bad = (~torch.isfinite(self.step_losses[: self.steps])).nonzero()
        return int(bad[0]) + 1 if len(bad) else 0

    def saved(self) -> dict[str, list[float]]:
        """The part of an interrupted epoch a checkpoint keeps."""
        return {"losses": self.step_losses[: self.steps].tolist(), "sizes": self.batch_sizes[: self.steps].tolist()}

    def restore(self, saved: dict[str, list[float]], ranks: Ranks) -> None:
        """Continue an interrupted epoch. The saved steps are whole global batches: with several
        processes, rank 0 holds them and the others count them as zero, so summing stays right."""
        steps = len(saved["losses"])
        if ranks.is_main:
            self.step_losses[:steps] = torch.tensor(saved["losses"], dtype=self.step_losses.dtype)
            self.batch_sizes[:steps] = torch.tensor(saved["sizes"], dtype=self.batch_sizes.dtype)
        else:
            self.step_losses[:steps] = 0.0
            self.batch_sizes[:steps] = 0.0
        self.steps = steps


def train_one_epoch(
    model: torch.nn.Module,
    split: Split,
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    batch_size: int,
    generator: torch.Generator,
    scheduler_per_step: Any | None = None,
    reporter: Reporter | None = None,
    grad_clip_norm: float | None = None,
    skip_budget: int | None = None,
    resume_from: dict[str, list[float]] | None = None,
    stop: StopRequest | None = None,
    epoch: int = 0,
    precision: Precision | None = None,
    scaler: Any | None = None,
    ranks: Ranks = SINGLE,
    distributed_model: torch.nn.Module | None = None,
) -> EpochProgress:
    """One pass over the shuffled training split (or the rest of one, after `resume_from`).

    The hot loop adds one device op per step to the training itself: storing the step's loss.
    Non-finite losses are found from those at the end of the epoch, without a host sync per step.
    Skipping them (up to `skip_budget` steps) needs a decision before each optimizer step, so
    that mode reads the loss every step.

    With several processes, each trains on its slice of every global batch through
    `distributed_model` (DDP over the model and the loss); decisions every rank must share (stop,
    skip) are agreed on each step.
    """
    model.train()
    device = split.device
    reporter = reporter or QuietReporter()
    batches = shuffled_batches(len(split), batch_size, generator, device)
    shares = [ranks.shard(batch) for batch in batches]
    progress = EpochProgress.empty([len(share) for share in shares], device)
    if resume_from is not None:
        progress.restore(resume_from, ranks)
    start_step = progress.steps
    samples = progress.samples  # a host-side count for the live view's mean loss and rate
    autocast = precision.autocast if precision is not None else contextlib.nullcontext
    # A last batch smaller than the ranks leaves some without samples: they step too (DDP needs
    # all ranks), on one sample weighing 0.
    indices = [index if len(index) else batch[:1] for index, batch in zip(shares, batches)]
    inputs_of_steps = split.batch_inputs(indices[start_step:], epoch)
    for step, (batch, index, inputs) in enumerate(
        zip(batches[start_step:], indices[start_step:], inputs_of_steps), start_step + 1
    ):
        share = len(shares[step - 1])
        with autocast():
            if distributed_model is None:
                loss = loss_fn(model(inputs), split.targets[index])
            else:
                loss = distributed_model(inputs, split.targets[index])
        objective = loss
        if ranks.distributed:  # DDP averages over ranks; weigh each slice so that equals the global batch mean
            objective = loss * (share * ranks.world_size / len(batch))
        if skip_budget is not None and ranks.any(not bool(torch.isfinite(loss)), device):
            progress.skipped += 1
            if progress.skipped > skip_budget:
                raise NonFiniteLoss(
                    f"the training loss was non-finite at epoch {epoch}, step {step}, after as many "
                    "skipped steps as trainer.max_skipped_steps allows"
                )
            progress.batch_sizes[step - 1] = 0
            progress.steps = step
            continue
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            objective.backward()
            if grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
            optimizer.step()
        else:  # float16: scale the loss so small gradients do not underflow; steps with inf gradients are skipped
            scaler.scale(objective).backward()
            if grad_clip_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
            scaler.step(optimizer)
            scaler.update()
        progress.optimizer_steps += 1
        if scheduler_per_step is not None:
            scheduler_per_step.step()
        progress.step_losses[step - 1] = loss.detach()
        progress.steps = step
        samples += share
        reporter.step(step, progress, samples)
        if stop is not None and ranks.any(stop.requested, device):
            progress.interrupted = True
            progress.sum_over_ranks(ranks)
            return progress
    progress.sum_over_ranks(ranks)
    progress.totals = torch.stack([progress.loss_sum(), progress.batch_sizes.sum()]).tolist()  # the epoch's one sync
    bad = progress.first_nonfinite_step() if not math.isfinite(progress.totals[0]) else 0
    if bad:
        raise NonFiniteLoss(f"the training loss became non-finite at epoch {epoch}, step {bad}")
    return progress


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
    precision: Precision | None = None,
    ranks: Ranks = SINGLE,
) -> Evaluation:
    """Mean loss and metrics over a whole split, computed from statistics summed over batches.

    With `details`, also per-class metrics, the confusion matrix and the loss report (with the
    `worst` highest-loss samples).
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
        if details:
            all_outputs.append(outputs)
    if ranks.distributed:
        statistics.sum_over_ranks(ranks)
        ranks.sum(loss_sum)
    result = statistics.result()
    evaluation = Evaluation(loss_sum.item() / total, compute(metric_names, result))
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
    model.to(data.train.device)
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
    stopped_early: bool
    history: list[dict[str, Any]]


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
    early_stopping: EarlyStopping | None = None
    grad_clip_norm: float | None = None
    on_nonfinite: str = "stop"
    max_skipped_steps: int = 10
    stop: StopRequest = field(default_factory=StopRequest)
    resume_hint: str = ""
    epoch_callbacks: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)  # e.g. TensorBoard
    precision: Precision | None = None
    compiled_model: torch.nn.Module | None = None  # torch.compile of `model`: runs the steps, shares its weights
    ranks: Ranks = SINGLE

    def __post_init__(self) -> None:
        self._config_hash = config_hash(self.config) if self.config else ""
        self.scaler = self.precision.grad_scaler() if self.precision is not None else None
        self.forward_model = self.compiled_model or self.model
        self.distributed_model = None
        if self.ranks.distributed:
            from trainctl.training.distributed import wrap

            self.distributed_model = wrap(self.forward_model, self.loss_fn, self.data.train.device)

    def checkpoint(self, state: TrainingState, rng: RandomStates, row: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "loss": self.loss_fn.state_dict(),  # learned loss parameters (adaptive α and c, ...)
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "grad_scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": state.epoch,
            "state": state.to_dict(),
            "rng": rng.to_dict(),
            "metrics": row,
            "config": self.config,
            "config_hash": self._config_hash,
            "trainctl_version": __version__,
        }

    def load_checkpoint_state(self, checkpoint: dict[str, Any]) -> tuple[TrainingState, RandomStates]:
        """Restore model, loss, optimizer and scheduler from a checkpoint written by `checkpoint`."""
        self.model.load_state_dict(checkpoint["model"])
        self.loss_fn.load_state_dict(checkpoint.get("loss") or {})
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None and checkpoint.get("scheduler"):
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        if self.scaler is not None and checkpoint.get("grad_scaler"):
            self.scaler.load_state_dict(checkpoint["grad_scaler"])
        return TrainingState.from_dict(checkpoint["state"]), RandomStates.from_dict(checkpoint["rng"])

    def _what_is_kept(self, state: TrainingState) -> str:
        if self.run is None:
            return "training stopped"
        if state.epoch == 0 and state.step_in_epoch == 0:
            return "the run stopped before its first checkpoint"
        return f"the run stopped and keeps its last good checkpoint (epoch {state.epoch})"

    def _step_epoch_scheduler(self, row: dict[str, Any]) -> None:
        if self.scheduler is None or self.scheduler_interval != "epoch":
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            value = row[self.monitor]
            self.scheduler.step(value if goal(self.monitor) == "min" else -value)
        else:
            self.scheduler.step()

    def fit(self, state: TrainingState | None = None, rng: RandomStates | None = None) -> FitResult:
        """Train from the start, or from a checkpoint's `state` and `rng` (exactly where it stopped)."""
        state = state or TrainingState()
        generator = torch.Generator().manual_seed(self.seed)
        epoch_start_generator = generator.get_state()
        if rng is not None:
            rng.restore(generator)
            epoch_start_generator = rng.shuffle_at_epoch_start
        per_step = self.scheduler if self.scheduler_interval == "step" else None
        mode = goal(self.monitor)
        started = time.perf_counter()
        writer = CheckpointWriter()
        history: list[dict[str, Any]] = []
        self.reporter.start(
            self.epochs, steps_per_epoch(len(self.data.train), self.batch_size), first_epoch=state.epoch + 1
        )
        try:
            while state.epoch < self.epochs and not state.stopped_early:
                epoch = state.epoch + 1
                self.reporter.start_epoch(epoch)
                resuming = state.step_in_epoch > 0
                if resuming:  # draw the interrupted epoch's permutation again
                    generator.set_state(epoch_start_generator)
                else:
                    epoch_start_generator = generator.get_state()
                    state.epoch_started_seconds = 0.0
                epoch_started = time.perf_counter() - state.epoch_started_seconds
                skip_budget = self.max_skipped_steps - state.skipped_steps if self.on_nonfinite == "skip" else None
                try:
                    progress = train_one_epoch(
                        self.forward_model,
                        self.data.train,
                        self.loss_fn,
                        self.optimizer,
                        batch_size=self.batch_size,
                        generator=generator,
                        scheduler_per_step=per_step,
                        reporter=self.reporter,
                        grad_clip_norm=self.grad_clip_norm,
                        skip_budget=skip_budget,
                        resume_from=state.epoch_progress if resuming else None,
                        stop=self.stop,
                        epoch=epoch,
                        precision=self.precision,
                        scaler=self.scaler,
                        ranks=self.ranks,
                        distributed_model=self.distributed_model,
                    )
                except NonFiniteLoss as error:
                    raise NonFiniteLoss(f"{error}; {self._what_is_kept(state)}. {NONFINITE_HINT}") from None
                state.global_step += progress.optimizer_steps
                state.skipped_steps += progress.skipped
                if progress.interrupted:
                    state.step_in_epoch = progress.steps
                    state.epoch_progress = progress.saved()
                    state.epoch_started_seconds = time.perf_counter() - epoch_started
                    if self.run is not None:
                        rng_now = RandomStates.capture(generator, epoch_start_generator)
                        writer.save(self.checkpoint(state, rng_now, None), self.run.checkpoint_path("last"))
                        writer.wait()
                    raise Interrupted(self.resume_hint)
                state.step_in_epoch, state.epoch_progress = 0, None
                validation = evaluate(
                    self.forward_model,
                    self.data.val,
                    self.loss_fn,
                    self.data,
                    self.metrics,
                    precision=self.precision,
                    ranks=self.ranks,
                )
                row = {
                    "epoch": epoch,
                    "train/loss": progress.mean_loss(),
                    **validation.flat("val"),
                    "lr": self.optimizer.param_groups[0]["lr"],  # the rate this epoch ended with
                    **logged_values(self.loss_fn),
                }
                if state.skipped_steps:
                    row["skipped_steps"] = state.skipped_steps
                self._step_epoch_scheduler(row)
                row["seconds"] = time.perf_counter() - epoch_started
                state.epoch = epoch
                improved = is_improvement(row[self.monitor], state.best_value, mode)
                if improved:
                    state.best_value, state.best_epoch = row[self.monitor], epoch
                if self.early_stopping is not None:
                    state.stopped_early = self.early_stopping.update(state, row[self.early_stopping.monitor])
                history.append(row)
                for callback in self.epoch_callbacks:
                    callback(row)
                if self.run is not None:
                    self.run.append_metrics(row)
                    best = self.run.checkpoint_path("best") if improved else None
                    rng_now = RandomStates.capture(generator, generator.get_state())
                    writer.save(self.checkpoint(state, rng_now, row), self.run.checkpoint_path("last"), also=best)
                self.reporter.end_epoch(row)
        finally:
            writer.close()
            self.reporter.finish()
        if state.best_value is None:  # every fit ends at least one epoch, or resumes a run that did
            raise RuntimeError("training ended without a finished epoch")
        return FitResult(
            state.best_epoch, float(state.best_value), time.perf_counter() - started, state.stopped_early, history
        )
