"""The trainer's events: what a handler is given at the end of a step, of an epoch and of a fit.

The trainer module's docstring says when each fires and in which order handlers run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainctl.training.loop import EpochProgress
    from trainctl.training.state import TrainingState


@dataclass(frozen=True)
class StepEnd:
    """A step whose optimizer update is done (skipped non-finite steps have none)."""

    epoch: int
    step: int  # in this epoch, from 1
    progress: EpochProgress  # the epoch's step losses, on the device: reading them syncs with it
    samples: int  # samples this process trained on in this epoch so far


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
