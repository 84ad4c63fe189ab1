"""The trainer's settings, in three typed groups, and the one function that reads them from a config.

`StepSettings` is what every training step needs, `Monitoring` what each epoch is judged by, and
`RunOutput` where the run is written. The command line and the benchmarks build them the same
way, through `fit_settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trainctl.config.identity import config_hash
from trainctl.runs import RunFolder
from trainctl.training.averaging import EmaSettings, SwaSettings
from trainctl.training.precision import Precision, check_precision
from trainctl.training.state import EarlyStopping

if TYPE_CHECKING:
    from trainctl.config.loading import Config
    from trainctl.training.build import TrainingParts


@dataclass(frozen=True)
class StepSettings:
    """What the loop needs on every step."""

    batch_size: int  # one micro-batch: what one forward and backward pass takes
    accumulate: int = 1  # micro-batches whose gradients add up to one optimizer step
    grad_clip_norm: float | None = None
    on_nonfinite: str = "stop"  # stop | skip
    max_skipped_steps: int = 10  # over the whole run, with on_nonfinite: skip
    precision: Precision | None = None  # None: float32 without autocast
    compile: bool = False  # run the steps through torch.compile of the model

    def skip_budget(self, skipped_so_far: int) -> int | None:
        """How many more non-finite steps may be skipped; None when the first one stops the run."""
        return self.max_skipped_steps - skipped_so_far if self.on_nonfinite == "skip" else None


@dataclass(frozen=True)
class Monitoring:
    """What each epoch is measured and judged by."""

    monitor: str  # the metric that picks the best epoch, e.g. val/accuracy
    metrics: tuple[str, ...] = ()  # computed on the validation split every epoch
    early_stopping: EarlyStopping | None = None


@dataclass(frozen=True)
class RunOutput:
    """Where the trainer writes. Without a run folder (ranks other than 0, benchmarks) it writes nothing."""

    run: RunFolder | None = None
    config: dict[str, Any] = field(default_factory=dict)  # stored in every checkpoint
    config_hash: str = ""  # what a resume checks the config against
    resume_hint: str = ""  # the command that resumes the run, shown when it is interrupted


@dataclass(frozen=True)
class FitSettings:
    epochs: int
    seed: int  # the shuffle order
    step: StepSettings
    monitoring: Monitoring
    output: RunOutput = RunOutput()
    averaging: EmaSettings | SwaSettings | None = None  # the weights evaluated and saved: an average of the trained


def optimizer_steps_per_epoch(micro_batches: int, accumulate: int) -> int:
    """Optimizer steps in an epoch of `micro_batches`: a last group of fewer than `accumulate` steps too."""
    return -(-micro_batches // accumulate)


def fit_settings(config: Config, parts: TrainingParts, run: RunFolder | None) -> FitSettings:
    """The trainer's settings from a validated config and the parts built from it.

    `run` is the run folder; with several processes rank 0 alone writes it, and every rank
    names it in the resume hint. None: a trainer that writes nothing."""
    settings = config.trainer
    stopping = settings.early_stopping
    as_dict = config.to_dict()
    return FitSettings(
        epochs=settings.epochs,
        seed=config.seed,
        step=StepSettings(
            batch_size=config.data.batch_size,
            accumulate=settings.accumulate,
            grad_clip_norm=settings.grad_clip_norm,
            on_nonfinite=settings.on_nonfinite,
            max_skipped_steps=settings.max_skipped_steps,
            precision=check_precision(settings.precision, parts.device),
            compile=settings.compile,
        ),
        monitoring=Monitoring(
            monitor=settings.monitor,
            metrics=tuple(config.metrics),
            early_stopping=None
            if stopping is None
            else EarlyStopping(stopping.monitor, stopping.mode, stopping.patience, stopping.min_delta),
        ),
        output=RunOutput(
            run=run if parts.ranks.is_main else None,
            config=as_dict,
            config_hash=config_hash(as_dict),
            resume_hint=f"trainctl train --resume {run.path}" if run is not None else "",
        ),
        averaging=averaging_settings(config),
    )


def averaging_settings(config: Config) -> EmaSettings | SwaSettings | None:
    ema, swa = config.trainer.ema, config.trainer.swa
    if ema is not None:
        return EmaSettings(ema.decay, ema.every)
    if swa is not None:
        return SwaSettings(swa.start_epoch, swa.lr, swa.anneal_epochs)
    return None
