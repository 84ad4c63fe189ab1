"""Weight averaging: the weights a run validates, tests and saves can be an average of those it trains.

- `trainer.ema`: an exponential moving average, updated after every `every`-th optimizer step, as a
  step-end handler (skipped non-finite steps end no step; with gradient accumulation a step is a
  whole group). Batch-norm statistics are averaged with the weights (AveragedModel's `use_buffers`
  for EMA); integer buffers (batch norm's counter) are copied.
- `trainer.swa`: stochastic weight averaging (Izmailov et al. 2018). From `start_epoch` on, SWALR
  sets the learning rate (annealed to `lr` over `anneal_epochs` epochs, stepped per epoch) and the
  configured scheduler stops stepping, as Lightning's StochasticWeightAveraging replaces it. The
  weights each of these epochs ends with join an equal-weight mean (AveragedModel), whose
  batch-norm statistics are then recomputed over the training split (`update_bn`) before it is
  validated.

The average is what is evaluated once it holds one (before SWA's start epoch, the trained weights
are), and a checkpoint's `model` is what was evaluated: `best.pt` is the evaluated best, and eval,
predict and every other reader of `model` get the average unchanged. A checkpoint of an averaging
run also holds `averaging`: which weights `model` is, `n_averaged`, the trained weights (when
`model` is the average) and the counters and SWALR state a resume needs to continue exactly.

A run without averaging gets `NoAveraging`: no step-end handler, nothing per step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn, update_bn

from trainctl.data.prepare import Split, ordered_batches
from trainctl.errors import UserError
from trainctl.training.events import StepEnd


@dataclass(frozen=True)
class EmaSettings:
    decay: float = 0.999  # the share of the average kept at each update
    every: int = 1  # optimizer steps between updates


@dataclass(frozen=True)
class SwaSettings:
    start_epoch: int  # the first epoch whose final weights join the average
    lr: float  # the learning rate SWALR anneals to
    anneal_epochs: int = 0  # 0: the rate switches to lr when start_epoch begins


StepHandler = Callable[[StepEnd], None]


class Averaging:
    """What the trainer asks of the weights it evaluates. The defaults are those of a method that
    adds nothing per step and leaves the learning rate to the configured scheduler."""

    method: str | None = None  # "ema", "swa", or None without averaging

    def step_handlers(self) -> list[StepHandler]:
        return []

    def sets_lr(self, epoch: int) -> bool:  # the configured scheduler does not step in this epoch
        return False

    def begin_epoch(self, epoch: int) -> None:
        pass

    def epoch_trained(self, epoch: int) -> None:  # after training, before validation
        pass

    def step_lr(self) -> None:  # at the end of an epoch it sets the rate of
        raise RuntimeError(f"{type(self).__name__} does not set the learning rate")

    def evaluated(self, trained: torch.nn.Module) -> torch.nn.Module:
        raise NotImplementedError

    def row_entries(self) -> dict[str, Any]:  # what the epoch's metrics row notes
        raise NotImplementedError

    def checkpoint_entries(self) -> dict[str, Any]:  # `model`, and `averaging` when averaging
        raise NotImplementedError

    def load(self, checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:  # the trained weights
        raise NotImplementedError


class NoAveraging(Averaging):
    """The trained weights are evaluated and saved."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def evaluated(self, trained: torch.nn.Module) -> torch.nn.Module:
        return trained

    def row_entries(self) -> dict[str, Any]:
        return {}

    def checkpoint_entries(self) -> dict[str, Any]:
        return {"model": self.model.state_dict()}

    def load(self, checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
        return checkpoint["model"]


class AveragedCopy:
    """The trained model and its AveragedModel, and how the pair goes into a checkpoint.

    The AveragedModel's `n_averaged` stays on the CPU (the module's copy is on the model's
    device), so counting updates never waits for the device."""

    def __init__(self, model: torch.nn.Module, method: str):
        self.trained, self.method = model, method
        self.averaged = AveragedModel(model, use_buffers=method == "ema")

    @property
    def count(self) -> int:
        return int(self.averaged.n_averaged)

    def evaluated(self, trained: torch.nn.Module) -> torch.nn.Module:
        return self.averaged.module if self.count else trained

    def checkpoint_entries(self, **resume: Any) -> dict[str, Any]:
        averaged = self.count > 0
        return {
            "model": (self.averaged.module if averaged else self.trained).state_dict(),
            "averaging": {
                "weights": self.method if averaged else "trained",  # what `model` holds
                "n_averaged": self.count,
                "trained_model": self.trained.state_dict() if averaged else None,
                **resume,
            },
        }

    def load(self, checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
        saved = checkpoint["averaging"]
        if saved["n_averaged"]:
            self.averaged.module.load_state_dict(checkpoint["model"])
        self.averaged.n_averaged.fill_(saved["n_averaged"])
        return saved["trained_model"] if saved["n_averaged"] else checkpoint["model"]


class AveragedWeights(Averaging):
    """A method whose average (`copy`) is evaluated once it holds one."""

    copy: AveragedCopy

    def evaluated(self, trained: torch.nn.Module) -> torch.nn.Module:
        return self.copy.evaluated(trained)

    def row_entries(self) -> dict[str, Any]:
        return {"n_averaged": self.copy.count}


class ExponentialAverage(AveragedWeights):
    """trainer.ema: W_avg ← decay · W_avg + (1 − decay) · W after every `every`-th optimizer step,
    starting from a copy of the weights at the first update (AveragedModel's rule).

    The update runs torch's EMA function (get_ema_multi_avg_fn, one foreach lerp) over tensor lists
    made once, rather than AveragedModel.update_parameters, which reads `n_averaged` on the host:
    on a GPU that would wait for the device after every step."""

    method = "ema"

    def __init__(self, model: torch.nn.Module, settings: EmaSettings):
        self.copy = AveragedCopy(model, self.method)
        self.every = settings.every
        self.optimizer_steps = 0  # since the run began, for `every`
        self.average = get_ema_multi_avg_fn(settings.decay)
        averaged = [*self.copy.averaged.module.parameters(), *self.copy.averaged.module.buffers()]
        trained = [*model.parameters(), *model.buffers()]
        self.pairs = [(a.detach(), t.detach()) for a, t in zip(averaged, trained, strict=True)]
        floats = [(a, t) for a, t in self.pairs if a.is_floating_point()]
        self.averaged_floats, self.trained_floats = [a for a, _ in floats], [t for _, t in floats]
        self.counters = [(a, t) for a, t in self.pairs if not a.is_floating_point()]  # batch norm's num_batches_tracked

    def step_handlers(self) -> list[StepHandler]:
        return [self.after_step]

    @torch.no_grad()
    def after_step(self, end: StepEnd) -> None:
        self.optimizer_steps += 1
        if self.optimizer_steps % self.every:
            return
        if self.copy.count == 0:
            for averaged, trained in self.pairs:
                averaged.copy_(trained)
        else:
            if self.averaged_floats:
                self.average(self.averaged_floats, self.trained_floats, None)
            for averaged, trained in self.counters:
                averaged.copy_(trained)
        self.copy.averaged.n_averaged += 1

    def checkpoint_entries(self) -> dict[str, Any]:
        return self.copy.checkpoint_entries(optimizer_steps=self.optimizer_steps)

    def load(self, checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
        self.optimizer_steps = checkpoint["averaging"]["optimizer_steps"]
        return self.copy.load(checkpoint)


class StochasticAverage(AveragedWeights):
    """trainer.swa: from `start_epoch` on, SWALR sets the rate and each epoch's final weights join
    the mean; its batch-norm statistics are recomputed over the training split before validation."""

    method = "swa"

    def __init__(
        self,
        model: torch.nn.Module,
        settings: SwaSettings,
        optimizer: torch.optim.Optimizer,
        train: Split,
        batch_size: int,
        autocast: Callable[[], AbstractContextManager[Any]],
    ):
        self.copy = AveragedCopy(model, self.method)
        self.settings, self.optimizer = settings, optimizer
        self.train, self.batch_size, self.autocast = train, batch_size, autocast
        self.lr_schedule: SWALR | None = None  # made when start_epoch begins (or a resume past it)
        self.batch_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())

    def step_handlers(self) -> list[StepHandler]:
        return []

    def sets_lr(self, epoch: int) -> bool:
        return epoch >= self.settings.start_epoch

    def begin_epoch(self, epoch: int) -> None:
        if self.sets_lr(epoch) and self.lr_schedule is None:
            self.lr_schedule = self._make_lr_schedule()

    def _make_lr_schedule(self) -> SWALR:
        # Made, it sets the rate it starts from at once: the current one, or lr without annealing.
        return SWALR(self.optimizer, swa_lr=self.settings.lr, anneal_epochs=self.settings.anneal_epochs)

    def epoch_trained(self, epoch: int) -> None:
        if epoch < self.settings.start_epoch:
            return
        self.copy.averaged.update_parameters(self.copy.trained)  # buffers: copied, then recomputed
        if self.batch_norm:
            self._recompute_batch_norm()

    def _recompute_batch_norm(self) -> None:
        """Batch-norm statistics of the averaged weights, from one pass over the training split in
        order, on every rank alike. The pass runs in training mode (dropout on, as torch's update_bn
        does) on a fork of the random state, so training's random draws are those of a run without it."""
        device = self.train.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), self.autocast():
            update_bn(self._training_inputs(), self.copy.averaged.module)

    def _training_inputs(self) -> Iterator[torch.Tensor]:
        return (inputs for inputs, _, _ in ordered_batches(self.train, self.batch_size))

    def step_lr(self) -> None:
        assert self.lr_schedule is not None, "begin_epoch makes the schedule before any epoch it sets"
        self.lr_schedule.step()

    def checkpoint_entries(self) -> dict[str, Any]:
        schedule = self.lr_schedule.state_dict() if self.lr_schedule is not None else None
        return self.copy.checkpoint_entries(lr_schedule=schedule)

    def load(self, checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Restore the average, and SWALR when the run had made it. The trainer loads the optimizer's
        state after this: making SWALR changes the optimizer's rate, which that state then sets back."""
        saved = checkpoint["averaging"]
        if saved.get("lr_schedule") is not None:
            self.lr_schedule = self._make_lr_schedule()
            self.lr_schedule.load_state_dict(saved["lr_schedule"])
        return self.copy.load(checkpoint)


def make_averaging(
    settings: EmaSettings | SwaSettings | None,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Split,
    batch_size: int,
    autocast: Callable[[], AbstractContextManager[Any]],
) -> Averaging:
    if isinstance(settings, EmaSettings):
        return ExponentialAverage(model, settings)
    if isinstance(settings, SwaSettings):
        return StochasticAverage(model, settings, optimizer, train, batch_size, autocast)
    return NoAveraging(model)


def check_ema_interval(every: int, optimizer_steps_per_epoch: int) -> None:
    """Each epoch's validation needs an average: the first epoch must hold an update."""
    if every > optimizer_steps_per_epoch:
        raise UserError(
            f"trainer.ema.every: {every} is more than the {optimizer_steps_per_epoch} optimizer steps of an "
            f"epoch, so the first epoch would end with no average to validate; allowed: 1 to "
            f"{optimizer_steps_per_epoch}"
        )


def ema_horizon_problem(decay: float, updates: int) -> str | None:
    """Why an EMA over a run of `updates` updates stays near its start, or None. An EMA spans about
    1/(1 − decay) updates; its first update's weights keep decay^(updates − 1) of the final average."""
    span = 1 / (1 - decay)
    if updates >= span:
        return None
    kept = decay ** max(updates - 1, 0)
    return (
        f"trainer.ema.decay {decay:g} averages over about {span:,.0f} updates, but the run makes {updates}: "
        f"the weights of its first update keep {kept:.0%} of the final average"
    )
