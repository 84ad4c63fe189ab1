"""The trainer's events: what a handler is given at the end of a step, of an epoch and of a fit.

The trainer module's docstring says when each fires and in which order handlers run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from trainctl.training.loop import EpochProgress
    from trainctl.training.state import TrainingState


@dataclass(frozen=True)
class StepEnd:
    """A step whose optimizer update is done (skipped non-finite steps have none)."""

    epoch: int
    step: int  # in this epoch, from 1 (with trainer.accumulate, the group's last micro-batch)
    progress: EpochProgress  # the epoch's step losses, on the device: reading them syncs with it
    samples: int  # samples this process trained on in this epoch so far
    first: int = 0  # the optimizer step's first micro-batch in this epoch (0: `step`, no accumulation)
    loss_weights: Sequence[float] | None = None  # what each micro-batch's loss was multiplied by; None: 1

    def loss(self) -> torch.Tensor:
        """The optimizer step's loss, on the device (reading it syncs with it): its micro-batches'
        losses weighted as their backward passes were, so with trainer.accumulate the mean over the
        whole group's samples. With several processes this process's part: the mean over the ranks
        is the global batch's loss."""
        first = self.first or self.step
        losses = self.progress.step_losses[first - 1 : self.step]
        if self.loss_weights is None:
            return losses.sum()  # one micro-batch, weighing 1
        return (losses * losses.new_tensor(self.loss_weights[first - 1 : self.step])).sum()


@dataclass
class EpochEnd:
    """An epoch that finished training and validation, with its decisions made."""

    epoch: int
    row: dict[str, Any]  # its metrics.jsonl row; keys a handler adds are written with it
    state: TrainingState  # the counters the checkpoint saves
    improved: bool = False  # the best epoch so far by trainer.monitor: best.pt is written

    def stop(self) -> None:
        """End training after this epoch; the checkpoint records it, so a resume stops too."""
        self.state.stopped_early = True


@dataclass
class FitResult:
    best_epoch: int
    best_value: float
    seconds: float
    stopped_early: bool
    history: list[dict[str, Any]]  # the rows of the epochs this fit trained


@dataclass
class Events:
    """Handlers added to each event, called in the order they were added."""

    step_end: list[Callable[[StepEnd], None]] = field(default_factory=list)
    epoch_end: list[Callable[[EpochEnd], None]] = field(default_factory=list)
    fit_end: list[Callable[[FitResult], None]] = field(default_factory=list)
