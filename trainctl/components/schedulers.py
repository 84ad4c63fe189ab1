"""Learning-rate schedulers. Each says whether it steps after every batch or every epoch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

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


@SCHEDULERS.register("step", summary="Multiply the learning rate by gamma every step_size epochs", interval="epoch")
def step(
    context: SchedulerContext,
    *,
    step_size: Annotated[int, Field(ge=1)] = 10,
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1,
) -> Any:
    import torch

    return torch.optim.lr_scheduler.StepLR(context.optimizer, step_size=step_size, gamma=gamma)


@SCHEDULERS.register(
    "cosine",
    summary="Cosine decay from the initial learning rate to eta_min over the whole run, per batch",
    interval="step",
)
def cosine(context: SchedulerContext, *, eta_min: Annotated[float, Field(ge=0)] = 0.0) -> Any:
    import torch

    total = context.epochs * context.steps_per_epoch
    return torch.optim.lr_scheduler.CosineAnnealingLR(context.optimizer, T_max=total, eta_min=eta_min)


@SCHEDULERS.register(
    "onecycle",
    summary="One cycle: warm up to max_lr, then anneal far below the start, per batch",
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
        max_lr=max_lr,
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
