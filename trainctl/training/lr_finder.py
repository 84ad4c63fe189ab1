"""Running the learning-rate range test on a config's own model, loss and optimizer.

It trains a copy built from the config (the same initial weights and shuffle as `trainctl train`
with that seed), through the training loop's own step (`train_one_epoch`, `training_step`): the
config's loss, gradient accumulation (one rate per optimizer step), clipping and precision apply.
The config's scheduler does not: the sweep sets the rate before every step. torch.compile is not
used (its warm-up would cost more than the test). Nothing is written and nothing is restored into
anything: the model and optimizer are dropped at the end. The arithmetic is in `lr_range`.
"""

from __future__ import annotations

import copy
import math

import torch

from trainctl.config.loading import Config
from trainctl.errors import UserError
from trainctl.training.build import TrainingParts, build_model_parts, build_optimizer, refused_by_torch
from trainctl.training.events import StepEnd
from trainctl.training.interrupts import StopRequest
from trainctl.training.loop import EpochContext, train_one_epoch, training_step
from trainctl.training.lr_range import DivergenceCheck, RangeSettings, Sweep
from trainctl.training.settings import fit_settings

PROBE_RATES = (1.0, 2.0)  # two values of optimizer.lr: the groups whose rate follows it differ between them


def build_range_parts(config: Config) -> TrainingParts:
    """The model, loss and optimizer a run of `config` starts with, in one process, without its scheduler."""
    parts = build_model_parts(config)
    with config.errors_located(), refused_by_torch("optimizer"):
        optimizer = build_optimizer(config, parts)
    return TrainingParts(parts.data, parts.model, parts.loss_fn, parts.device, optimizer=optimizer)


def rate_key(config: Config) -> str:
    """The config key that sets the rate the test sweeps: a scheduler's own peak rate (onecycle's
    max_lr, which it gives every group), else optimizer.lr."""
    if config.scheduler is not None and "max_lr" in config.scheduler.params:
        return "scheduler.max_lr"
    if "lr" not in config.optimizer.params:
        raise UserError(f"optimizer {config.optimizer.name!r} has no lr parameter: there is no rate to sweep")
    return "optimizer.lr"


def configured_rate(config: Config) -> float:
    """The config's value at `rate_key`."""
    if rate_key(config) == "scheduler.max_lr":
        assert config.scheduler is not None
        return float(config.scheduler.params["max_lr"])
    return float(config.optimizer.params["lr"])


def swept_groups(config: Config, parts: TrainingParts) -> list[int]:
    """The optimizer groups whose rate the key of `rate_key` sets. With optimizer.lr, those of
    `optimizer.groups` with a rate of their own keep it during the test, as they would in the run."""
    if rate_key(config) == "scheduler.max_lr":
        return list(range(len(parts.optimizer.param_groups)))
    probes = []
    for rate in PROBE_RATES:
        probe_config = copy.deepcopy(config)
        probe_config.optimizer.params["lr"] = rate
        probes.append([group["lr"] for group in build_optimizer(probe_config, parts).param_groups])
    return [index for index, (first, second) in enumerate(zip(*probes)) if first != second]


class ExponentialSweep:
    """A schedule stepped after every optimizer step, as the loop steps a per-step scheduler: the
    swept groups get the schedule's next rate (past its end, they keep the last)."""

    def __init__(self, optimizer: torch.optim.Optimizer, groups: list[int], rates: list[float]):
        self.optimizer, self.groups, self.rates = optimizer, groups, rates
        self.index = 0
        self._apply()

    def step(self) -> None:
        self.index += 1
        self._apply()

    def _apply(self) -> None:
        rate = self.rates[min(self.index, len(self.rates) - 1)]
        for group in self.groups:
            self.optimizer.param_groups[group]["lr"] = rate


class SweepRecorder:
    """The step-end handler: pairs each optimizer step's loss with the rate of the update before it.

    The loss of step k is computed before step k's update, so it is the first to show the update of
    step k - 1; the first step's loss shows no update at all. Stops the loop when the schedule is
    measured through or the loss diverges."""

    def __init__(self, settings: RangeSettings, stop: StopRequest):
        self.rates, self.stop = settings.rates(), stop
        self.check = DivergenceCheck(settings.smoothing, settings.divergence)
        self.initial_loss: float | None = None
        self.losses: list[float] = []

    def __call__(self, end: StepEnd) -> None:
        loss = float(end.loss())  # the step's whole batch's; read on the host: the test decides after every step
        if self.initial_loss is None:
            self.initial_loss = loss
            if not math.isfinite(loss):
                self.stop.requested = True
            return
        if self.check.add(loss):
            self.stop.requested = True
            return
        self.losses.append(loss)
        if len(self.losses) == len(self.rates):
            self.stop.requested = True

    def sweep(self, settings: RangeSettings) -> Sweep:
        tested, initial = len(self.losses), self.initial_loss
        assert initial is not None  # the loop ran a step
        if self.check.reason:
            return Sweep(self.rates[:tested], self.losses, initial, settings, self.check.reason, self.rates[tested])
        return Sweep(self.rates[:tested], self.losses, initial, settings)


def run_range_test(config: Config, parts: TrainingParts, settings: RangeSettings) -> Sweep:
    """Train `parts` through the sweep, cycling over the training split as often as the steps need,
    in the order `trainctl train` shuffles it with the config's seed."""
    step_settings = fit_settings(config, parts, None).step
    schedule = ExponentialSweep(parts.optimizer, swept_groups(config, parts), settings.rates())
    step = training_step(parts.model, parts.loss_fn, parts.optimizer, step_settings, scheduler=schedule)
    stop = StopRequest()
    recorder = SweepRecorder(settings, stop)
    generator = torch.Generator().manual_seed(config.seed)
    epoch = 0
    while not stop.requested:
        epoch += 1
        context = EpochContext(epoch, generator, stop=stop, step_end=[recorder])
        train_one_epoch(parts.model, parts.data.train, step, context)
    if recorder.initial_loss is not None and not math.isfinite(recorder.initial_loss):
        raise UserError(
            f"the loss is {recorder.initial_loss} on the first batch, before any update: the model or the "
            "data give non-finite values; check the config with trainctl validate"
        )
    sweep = recorder.sweep(settings)
    if not sweep.losses and sweep.stop_reason:
        raise UserError(
            f"the loss became non-finite after the first update, at --min-lr {settings.min_lr:g}: the lr range "
            "starts too high; lower --min-lr"
        )
    return sweep
