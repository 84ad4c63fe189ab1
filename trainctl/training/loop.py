"""One epoch of training, in plain code: `train_one_epoch` and the step it repeats.

What every step does is fixed when the trainer is built, in a `TrainingStep`: the forward pass
and loss (through DDP with several processes), the autocast context, and the update, either
`PlainUpdate` (float32, bfloat16) or `ScaledUpdate` (float16 with a GradScaler), chosen once
rather than tested on every step; with gradient accumulation (`trainer.accumulate: K` > 1) it is
wrapped in an `AccumulatedUpdate`.

Gradient accumulation: the epoch's micro-batches (`data.batch_size` each) are taken in groups of K
consecutive ones, the last group of an epoch possibly shorter; one optimizer step per group. Each
micro-batch's mean loss is weighted by its share of the samples of its whole group (all ranks
included), so the summed gradient is that of the group's mean loss: exactly the full batch's for
a loss that is a mean over samples, short groups and short micro-batches included. A loss whose
mean weighs samples unequally (class-weighted cross-entropy divides by the class weights of its
targets) is weighted by its share of the group's summed sample weights instead: exact too.
`StepEnd.loss()` sums the same weighted losses, so it is the loss of the step's whole batch.
Clipping, the non-finite skip, the step scheduler, the step-end handlers and the stop check act per optimizer
step; an interrupt therefore lands between groups, never inside one, and a resume starts a group. What changes from epoch to epoch (its number, the shuffle, a
resumed part, the skip budget, the stop request, the step-end handlers) is the `EpochContext`.

The hot loop does no host synchronisation of its own; the running loss stays on the device and is
read once per epoch (and by the live view at most four times a second).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from trainctl.data.prepare import Split, shuffled_batches
from trainctl.errors import UserError
from trainctl.nn.losses import sample_weights
from trainctl.ranks import SINGLE, Ranks
from trainctl.training.events import StepEnd
from trainctl.training.interrupts import StopRequest
from trainctl.training.settings import StepSettings


class NonFiniteLoss(UserError):
    """The loss became inf or NaN: the run stops and keeps its last good checkpoint."""


@dataclass
class EpochProgress:
    """How far an epoch got: each micro-batch's mean loss (on the device) and size, in order. Without
    gradient accumulation a micro-batch is a step.

    The epoch's loss is summed from these once, in one fixed order, so it is the same whether the
    epoch ran straight through or was interrupted and resumed, and however often it was displayed.
    """

    step_losses: torch.Tensor  # one slot per batch of the epoch; filled up to `steps`
    batch_sizes: torch.Tensor  # samples per batch, 0 for a skipped non-finite step
    steps: int  # micro-batches done in this epoch, including those before a resume
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

    def skip(self, step: int, budget: int, epoch: int, first: int | None = None) -> None:
        """Leave out an optimizer step whose loss is non-finite (its micro-batches `first` to `step`
        weigh 0), or stop when the budget is spent."""
        self.skipped += 1
        if self.skipped > budget:
            raise NonFiniteLoss(
                f"the training loss was non-finite at epoch {epoch}, step {step}, after as many "
                "skipped steps as trainer.max_skipped_steps allows"
            )
        first = step if first is None else first
        self.step_losses[first - 1 : step] = 0.0
        self.batch_sizes[first - 1 : step] = 0
        self.steps = step

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


class PlainUpdate:
    """float32 and bfloat16: backward, clip the gradients when asked, optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, parameters: list[torch.nn.Parameter], clip_norm: float | None):
        self.optimizer, self.parameters, self.clip_norm = optimizer, parameters, clip_norm

    def __call__(self, objective: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        self.apply()

    def backward(self, objective: torch.Tensor) -> None:
        objective.backward()

    def apply(self) -> None:
        """The optimizer step on the gradients the backward passes left."""
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.clip_norm)
        self.optimizer.step()

    def discard(self) -> None:
        """Drop gradients no step will apply (a skipped step's)."""
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any] | None:
        return None  # nothing of its own for a checkpoint

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class ScaledUpdate:
    """float16: the loss is scaled so small gradients do not underflow; the scaler skips a step
    whose gradients hold inf and lowers the scale. Clipping needs the true gradients: unscaled first."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        parameters: list[torch.nn.Parameter],
        clip_norm: float | None,
        scaler: torch.amp.GradScaler,
    ):
        self.optimizer, self.parameters, self.clip_norm, self.scaler = optimizer, parameters, clip_norm, scaler

    def __call__(self, objective: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(objective).backward()
        self.apply()

    def backward(self, objective: torch.Tensor) -> None:
        self.scaler.scale(objective).backward()

    def apply(self) -> None:
        """Unscale (when clipping), step unless the gradients hold inf, and adjust the scale."""
        if self.clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.parameters, self.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def discard(self) -> None:
        """Drop gradients no step will apply (a skipped step's)."""
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any] | None:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scaler.load_state_dict(state)


class AccumulatedUpdate:
    """Gradient accumulation: each micro-batch's backward pass adds to the gradients (scaled, with
    float16), and the last of a group applies them once (unscaled, clipped, stepped) and clears
    them, so every group starts from none."""

    def __init__(self, update: PlainUpdate | ScaledUpdate):
        self.update = update
        self.backward = update.backward

    def __call__(self, objective: torch.Tensor) -> None:
        self.update.backward(objective)
        self.update.apply()
        self.discard()

    def discard(self) -> None:
        """Drop a group's gradients: after its step, or when the group is skipped."""
        self.update.discard()

    def state_dict(self) -> dict[str, Any] | None:
        return self.update.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.update.load_state_dict(state)


@dataclass(frozen=True)
class TrainingStep:
    """What every step of a run does, fixed when the trainer is built."""

    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (inputs, targets) -> the batch's mean loss
    update: PlainUpdate | ScaledUpdate | AccumulatedUpdate
    autocast: Callable[[], AbstractContextManager[Any]]
    batch_size: int  # of a micro-batch
    scheduler: Any | None = None  # a schedule stepped after every optimizer step
    ranks: Ranks = SINGLE
    accumulate: int = 1  # micro-batches per optimizer step
    no_sync: Callable[[], AbstractContextManager[Any]] = nullcontext  # DDP's, around a group's leading micro-batches
    # Each sample's weight in the loss's mean, for targets (None: a mean over samples alike).
    sample_weights: Callable[[torch.Tensor], torch.Tensor | None] = lambda targets: None


def training_step(
    model: torch.nn.Module,
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    settings: StepSettings,
    *,
    scheduler: Any | None = None,
    ranks: Ranks = SINGLE,
) -> TrainingStep:
    """The step for these settings. With several processes the model and the loss run as one DDP
    module, so it also averages the gradients of learned loss parameters."""
    precision = settings.precision
    scaler = precision.grad_scaler() if precision is not None else None
    parameters = list(model.parameters())  # what clipping bounds: the model's, as before the loss's were learned
    single: PlainUpdate | ScaledUpdate = (
        PlainUpdate(optimizer, parameters, settings.grad_clip_norm)
        if scaler is None
        else ScaledUpdate(optimizer, parameters, settings.grad_clip_norm, scaler)
    )
    update = AccumulatedUpdate(single) if settings.accumulate > 1 else single
    no_sync: Callable[[], AbstractContextManager[Any]] = nullcontext
    if ranks.distributed:
        from trainctl.training.distributed import wrap

        ddp = wrap(model, loss_fn, parameters[0].device)
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = ddp
        no_sync = ddp.no_sync  # the gradients of a group's leading micro-batches stay local until its last
    else:

        def loss(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return loss_fn(model(inputs), targets)

    autocast = precision.autocast if precision is not None else nullcontext
    return TrainingStep(
        loss,
        update,
        autocast,
        settings.batch_size,
        scheduler,
        ranks,
        settings.accumulate,
        no_sync,
        lambda targets: sample_weights(loss_fn, targets),
    )


def micro_batch_weights(
    batches: Sequence[torch.Tensor],
    shares: Sequence[torch.Tensor],
    accumulate: int,
    ranks: Ranks,
    weigh: Callable[[], torch.Tensor | None] = lambda: None,
) -> list[float] | None:
    """What each micro-batch's mean loss is multiplied by before its backward pass: this process's
    share of the samples of its whole group (`accumulate` consecutive global batches, the epoch's
    last group possibly fewer), times the number of ranks since DDP averages their gradients. The
    weighted sum is then the mean over the group's samples. None: one process, one batch per step
    (the weight is 1).

    `weigh` gives each sample's weight in the loss's mean (by index into the split), or None when
    they weigh alike: then the shares are of the summed weights instead of the sample counts."""
    if accumulate == 1 and not ranks.distributed:
        return None
    per_sample = weigh()
    totals = _weight_totals(batches, per_sample)
    own = _weight_totals(shares, per_sample) if ranks.distributed else totals
    weights: list[float] = []
    for start in range(0, len(batches), accumulate):
        group = range(start, min(start + accumulate, len(batches)))
        whole = sum(totals[i] for i in group)
        weights += [own[i] * ranks.world_size / whole for i in group]
    return weights


def _weight_totals(batches: Sequence[torch.Tensor], per_sample: torch.Tensor | None) -> list[float]:
    """Each batch's summed sample weight: its size when samples weigh alike (read once per epoch otherwise)."""
    if per_sample is None:
        return [float(len(batch)) for batch in batches]
    return torch.stack([per_sample[batch].double().sum() for batch in batches]).tolist()


@dataclass(frozen=True)
class EpochContext:
    """What one pass over the training split needs beyond the step."""

    epoch: int
    generator: torch.Generator  # draws the epoch's shuffle
    skip_budget: int | None = None  # non-finite steps this epoch may skip; None: the first one stops it
    resume_from: dict[str, list[float]] | None = None  # the saved part of an interrupted epoch
    stop: StopRequest | None = None  # checked after every step
    step_end: Sequence[Callable[[StepEnd], None]] = ()


def train_one_epoch(model: torch.nn.Module, split: Split, step: TrainingStep, context: EpochContext) -> EpochProgress:
    """One pass over the shuffled training split (or the rest of one, after `context.resume_from`).

    The hot loop adds one device op per step to the training itself: storing the step's loss.
    Non-finite losses are found from those at the end of the epoch, without a host sync per step.
    Skipping them (up to `context.skip_budget` steps) needs a decision before each optimizer step,
    so that mode reads the loss every step.

    With several processes, each trains on its slice of every global batch; decisions every rank
    must share (stop, skip) are agreed on each step.

    With accumulation, a group's leading micro-batches only add their gradients (the branch a run
    without accumulation never enters); its last one does what a step does.
    """
    model.train()
    device, ranks, epoch, accumulate = split.device, step.ranks, context.epoch, step.accumulate
    batches = shuffled_batches(len(split), step.batch_size, context.generator, device)
    shares = [ranks.shard(batch) for batch in batches]
    weights = micro_batch_weights(batches, shares, accumulate, ranks, lambda: step.sample_weights(split.targets))
    budget = context.skip_budget
    group_finite = True  # every loss of the group so far was finite (tracked when skipping non-finite steps)
    progress = EpochProgress.empty([len(share) for share in shares], device)
    if context.resume_from is not None:
        progress.restore(context.resume_from, ranks)
    start_step = progress.steps
    samples = progress.samples  # a host-side count for the live view's mean loss and rate
    # A last batch smaller than the ranks leaves some without samples: they step too (DDP needs
    # all ranks), on one sample weighing 0.
    indices = [index if len(index) else batch[:1] for index, batch in zip(shares, batches)]
    inputs_of_steps = split.batch_inputs(indices[start_step:], epoch)
    handlers = tuple(context.step_end)
    for number, (index, inputs) in enumerate(zip(indices[start_step:], inputs_of_steps), start_step + 1):
        share = len(shares[number - 1])
        if accumulate > 1 and number % accumulate and number < len(batches):  # a group's leading micro-batch
            assert weights is not None
            with step.no_sync():
                with step.autocast():
                    loss = step.loss(inputs, split.targets[index])
                if budget is not None and not bool(torch.isfinite(loss)):
                    group_finite = False  # the group will be skipped: its gradients need not be added
                else:
                    step.update.backward(loss * weights[number - 1])
            progress.step_losses[number - 1] = loss.detach()
            progress.steps = number
            samples += share
            continue
        with step.autocast():
            loss = step.loss(inputs, split.targets[index])
        objective = loss
        if weights is not None:  # the share of the group's samples (DDP averages over ranks: times their number)
            objective = loss * weights[number - 1]
        if budget is not None and ranks.any(not (group_finite and bool(torch.isfinite(loss))), device):
            first = number - (number - 1) % accumulate  # the group's first micro-batch
            samples -= sum(len(leading) for leading in shares[first - 1 : number - 1])
            progress.skip(number, budget, epoch, first)
            step.update.discard()  # the leading micro-batches' gradients
            group_finite = True
            continue
        step.update(objective)
        progress.optimizer_steps += 1
        if step.scheduler is not None:
            step.scheduler.step()
        progress.step_losses[number - 1] = loss.detach()
        progress.steps = number
        samples += share
        if handlers:  # nothing is built for a loop without step-end handlers
            end = StepEnd(epoch, number, progress, samples, number - (number - 1) % accumulate, weights)
            for handler in handlers:
                handler(end)
        # After an epoch's last step there is nothing to interrupt: the epoch ends, and the trainer
        # stops at its end (a checkpoint inside an epoch must have a step left to resume at).
        if context.stop is not None and number < len(batches) and ranks.any(context.stop.requested, device):
            progress.interrupted = True
            progress.sum_over_ranks(ranks)
            return progress
    progress.sum_over_ranks(ranks)
    progress.totals = torch.stack([progress.loss_sum(), progress.batch_sizes.sum()]).tolist()  # the epoch's one sync
    bad = progress.first_nonfinite_step() if not math.isfinite(progress.totals[0]) else 0
    if bad:
        raise NonFiniteLoss(f"the training loss became non-finite at epoch {epoch}, step {bad}")
    return progress
