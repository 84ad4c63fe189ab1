"""Learning-rate schedulers. Each says whether it steps after every batch or every epoch.

A warm-up (`warmup_steps` or `warmup_epochs`, on step, cosine and linear) raises the rate linearly
from `warmup_start_factor` × lr to lr over its first optimizer steps, so a schedule with one steps
after every batch whatever its interval (`interval_of`). Such a schedule is a LambdaLR of closed
formulas of the step (as transformers' `get_*_schedule_with_warmup`): exact at every step, and its
state is its step count, so a resume mid-warm-up continues it bit for bit. onecycle warms up by
itself (pct_start); reduce_on_plateau decides per epoch from a metric, so neither takes a warm-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from trainctl.errors import UserError
from trainctl.registry import Registry


@dataclass(frozen=True, kw_only=True)
class SchedulerInfo:
    interval: Literal["epoch", "step"]  # when it steps: after every epoch, or after every batch


SCHEDULERS = Registry("scheduler", SchedulerInfo)


@dataclass(frozen=True)
class SchedulerContext:
    optimizer: Any
    epochs: int
    steps_per_epoch: int

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


# None: no warm-up. No upper bound here: a warm-up longer than the run is refused with the run's length.
WarmupLength = Annotated[int | None, Field(ge=1)]
# 0 (transformers' and timm's default): the first step trains at lr 0 and the rate reaches lr exactly
# when the warm-up ends; a factor of 1 would be no warm-up at all.
WarmupStartFactor = Annotated[float, Field(ge=0, lt=1)]
Factor = Callable[[int], float]  # the multiple of a group's initial lr after that many optimizer steps


def interval_of(interval: Literal["epoch", "step"], params: dict[str, Any]) -> Literal["epoch", "step"]:
    """When a built schedule steps: a warm-up rises per optimizer step, whatever the schedule's interval."""
    warmed = params.get("warmup_steps") is not None or params.get("warmup_epochs") is not None
    return "step" if warmed else interval


def warmup_length(context: SchedulerContext, warmup_steps: int | None, warmup_epochs: int | None) -> int:
    """The warm-up in optimizer steps (0: none), from whichever key was given; it fits in the run."""
    if warmup_steps is not None and warmup_epochs is not None:
        raise UserError("scheduler.warmup_epochs: give warmup_steps or warmup_epochs, not both")
    total = context.total_steps
    run = f"{total} steps ({context.epochs} epochs of {context.steps_per_epoch} steps)"
    if warmup_epochs is not None:
        steps = warmup_epochs * context.steps_per_epoch
        if steps > total:
            raise UserError(
                f"scheduler.warmup_epochs: {warmup_epochs} epochs ({steps} steps) is longer than the whole run, {run}"
            )
        return steps
    if warmup_steps is not None and warmup_steps > total:
        raise UserError(f"scheduler.warmup_steps: {warmup_steps} is longer than the whole run, {run}")
    return warmup_steps or 0


def warmed_up(decay: Factor, warmup: int, start_factor: float) -> Factor:
    """`decay` with its first `warmup` steps scaled linearly from start_factor up to 1."""
    if warmup == 0:
        return decay

    def factor(step: int) -> float:
        if step >= warmup:
            return decay(step)
        return (start_factor + (1 - start_factor) * step / warmup) * decay(step)

    return factor


def after_warmup(warmup: int, total: int) -> Callable[[int], float]:
    """The fraction of the decay done after `step`: 0 until the warm-up ends, 1 at the run's end."""
    return lambda step: min(1.0, max(0, step - warmup) / max(1, total - warmup))


def per_step_schedule(context: SchedulerContext, factors: Callable[[float], Factor]) -> Any:
    """A LambdaLR over the optimizer's groups; `factors` makes a group's formula from its initial lr."""
    import torch

    groups = context.optimizer.param_groups
    formulas = [factors(group.get("initial_lr", group["lr"])) for group in groups]
    return torch.optim.lr_scheduler.LambdaLR(context.optimizer, formulas)


@SCHEDULERS.register(
    "step",
    summary="Multiply the learning rate by gamma every step_size epochs (per batch with a warm-up)",
    interval="epoch",
)
def step(
    context: SchedulerContext,
    *,
    step_size: Annotated[int, Field(ge=1)] = 10,
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1,
    warmup_steps: WarmupLength = None,
    warmup_epochs: WarmupLength = None,
    warmup_start_factor: WarmupStartFactor = 0.0,
) -> Any:
    import torch

    warmup = warmup_length(context, warmup_steps, warmup_epochs)
    if warmup == 0:
        return torch.optim.lr_scheduler.StepLR(context.optimizer, step_size=step_size, gamma=gamma)
    # Stepped per batch for the warm-up; the decays stay at the run's epochs step_size, 2 × step_size, ...
    per_epoch = context.steps_per_epoch
    decay = warmed_up(lambda step: gamma ** (step // per_epoch // step_size), warmup, warmup_start_factor)
    return per_step_schedule(context, lambda initial: decay)


@SCHEDULERS.register(
    "cosine",
    summary="Cosine decay from the initial learning rate to eta_min over the whole run, per batch",
    interval="step",
)
def cosine(
    context: SchedulerContext,
    *,
    eta_min: Annotated[float, Field(ge=0)] = 0.0,
    warmup_steps: WarmupLength = None,
    warmup_epochs: WarmupLength = None,
    warmup_start_factor: WarmupStartFactor = 0.0,
) -> Any:
    import torch

    warmup = warmup_length(context, warmup_steps, warmup_epochs)
    if warmup == 0:
        return torch.optim.lr_scheduler.CosineAnnealingLR(context.optimizer, T_max=context.total_steps, eta_min=eta_min)
    done = after_warmup(warmup, context.total_steps)  # the cosine spans the steps after the warm-up

    def factors(initial: float) -> Factor:
        floor = eta_min / initial if initial else 0.0
        return warmed_up(
            lambda step: floor + (1 - floor) * (1 + math.cos(math.pi * done(step))) / 2, warmup, warmup_start_factor
        )

    return per_step_schedule(context, factors)


@SCHEDULERS.register(
    "linear",
    summary="Linear decay from the initial learning rate to end_factor × it over the whole run, per batch",
    interval="step",
)
def linear(
    context: SchedulerContext,
    *,
    end_factor: Annotated[float, Field(ge=0, le=1)] = 0.0,
    warmup_steps: WarmupLength = None,
    warmup_epochs: WarmupLength = None,
    warmup_start_factor: WarmupStartFactor = 0.0,
) -> Any:
    warmup = warmup_length(context, warmup_steps, warmup_epochs)
    done = after_warmup(warmup, context.total_steps)  # the decay spans the steps after the warm-up
    decay = warmed_up(lambda step: 1 - (1 - end_factor) * done(step), warmup, warmup_start_factor)
    return per_step_schedule(context, lambda initial: decay)


def group_peaks(optimizer: Any, max_lr: float) -> list[float]:
    """Each group's peak for onecycle: max_lr is the top-level optimizer.lr's, and a group of
    optimizer.groups peaks at max_lr × its lr / optimizer.lr, so the groups keep their ratios
    (OneCycleLR given one max_lr would set every group to it, discarding the groups' lr)."""
    top = optimizer.defaults.get("lr")  # the top-level rate, as the optimizer was built on it
    if not isinstance(top, (int, float)) or top <= 0:  # an optimizer without a plain rate: one peak for all
        return [max_lr] * len(optimizer.param_groups)
    return [max_lr if group["lr"] == top else max_lr * group["lr"] / top for group in optimizer.param_groups]


@SCHEDULERS.register(
    "onecycle",
    summary="One cycle: warm up to max_lr over pct_start of the run (its own warm-up), then anneal far below "
    "the start, per batch",
    interval="step",
)
def onecycle(
    context: SchedulerContext,
    *,
    max_lr: Annotated[float, Field(gt=0)] = 0.01,
    pct_start: Annotated[float, Field(gt=0, lt=1)] = 0.3,
    anneal_strategy: Literal["cos", "linear"] = "cos",
) -> Any:
    import torch

    return torch.optim.lr_scheduler.OneCycleLR(
        context.optimizer,
        max_lr=group_peaks(context.optimizer, max_lr),
        epochs=context.epochs,
        steps_per_epoch=context.steps_per_epoch,
        pct_start=pct_start,
        anneal_strategy=anneal_strategy,
    )


@SCHEDULERS.register(
    "reduce_on_plateau",
    summary="Multiply the learning rate by factor when the monitored metric stops improving",
    interval="epoch",
)
def reduce_on_plateau(
    context: SchedulerContext,
    *,
    factor: Annotated[float, Field(gt=0, lt=1)] = 0.1,
    patience: Annotated[int, Field(ge=0)] = 5,
    threshold: Annotated[float, Field(ge=0)] = 1e-4,
    min_lr: Annotated[float, Field(ge=0)] = 0.0,
) -> Any:
    import torch

    # The trainer passes the monitored value already oriented so that lower is better.
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        context.optimizer, mode="min", factor=factor, patience=patience, threshold=threshold, min_lr=min_lr
    )
