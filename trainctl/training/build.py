"""Builders: the one place that knows both the config and torch.

Each function turns one section of a validated `Config` into torch objects through its registry.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from trainctl.components import transforms
from trainctl.components.losses import LossContext
from trainctl.components.losses import profile as loss_profile
from trainctl.components.models import ModelContext
from trainctl.components.registries import DATASETS, LOSSES, MODELS, OPTIMIZERS, SCHEDULERS
from trainctl.components.schedulers import SchedulerContext, interval_of
from trainctl.config.loading import Config
from trainctl.data.folds import Fold
from trainctl.data.image_pipeline import ImageOptions
from trainctl.data.prepare import PreparedData, prepare_data, steps_per_epoch
from trainctl.data.streaming import LoaderSettings
from trainctl.data.task import TargetPlan, Task, plan_targets
from trainctl.errors import UserError
from trainctl.limits import require_memory
from trainctl.ranks import SINGLE, Ranks
from trainctl.registry import Entry
from trainctl.training import distributed, finetune
from trainctl.training.averaging import check_ema_interval
from trainctl.training.settings import optimizer_steps_per_epoch


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; a device asked for by name must exist."""
    mps = getattr(torch.backends, "mps", None)
    mps_available = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"trainer.device: {name!r} asked for, but CUDA is not available here; use cpu or auto")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise UserError(
                f"trainer.device: {name!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    if name == "mps" and not mps_available:
        raise UserError("trainer.device: 'mps' asked for, but MPS is not available here; use cpu or auto")
    return torch.device(name)


def build_data(config: Config, device: torch.device) -> PreparedData:
    raw = DATASETS.get(config.dataset.name).build(None, config.dataset.params)
    loss = loss_profile(config.loss.name, config.loss.params)
    plan = plan_targets(loss.target, raw.task, loss.layout)
    data = prepare_data(
        raw,
        plan,
        val_fraction=config.data.val_fraction,
        test_fraction=config.data.test_fraction,
        split_seed=config.data.split_seed,
        fold=Fold.from_settings(config.data.fold),
        device=device,
        images=ImageOptions(
            config.data.transforms,
            config.seed,
            LoaderSettings(config.data.num_workers, config.data.pin_memory, config.data.persistent_workers),
            transforms.BUILDER,
        ),
    )
    if plan.layout == "log_rate" and bool((data.train.targets < 0).any()):
        raise UserError(
            f"loss {config.loss.name!r} models counts, but dataset {config.dataset.name!r} has negative targets; "
            "use a loss for real values such as mse or huber"
        )
    return data


# Training holds each parameter about four times: weights, gradients and an optimizer's two moments.
COPIES_IN_TRAINING = 4


def build_model(config: Config, data: PreparedData) -> torch.nn.Module:
    context = ModelContext(data.input_shape, data.plan.num_outputs, data.vocabulary_size)
    entry = MODELS.get(config.model.name)
    _require_model_memory(entry, context, config.model.params)
    # Seed right before initialisation so the same seed gives the same weights whatever ran before.
    torch.manual_seed(config.seed)
    with refused_by_torch("model"):
        model = entry.build(context, config.model.params)
    finetune.freeze(model, config.freeze, config.model.name)
    return model


@contextlib.contextmanager
def refused_by_torch(section: str) -> Iterator[None]:
    """torch refuses some combinations of values that each pass the schema (SGD's nesterov without
    momentum) with a ValueError: that is the config's to fix, at its section."""
    try:
        yield
    except ValueError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{section}: {reason}") from None


def _require_model_memory(entry: Entry, context: ModelContext, params: dict[str, Any]) -> None:
    """Refuse a model too large for this machine before allocating it: built on the meta device,
    a model has its parameters' shapes but no memory, whatever its widths."""
    try:
        # Only the shapes count here: torch's warnings about this throwaway copy (a weights file
        # loaded into meta tensors is a no-op, one warning per tensor) would reach the user's screen.
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shapes = entry.build(context, params)
    except (
        RuntimeError,
        NotImplementedError,
        TypeError,
        ValueError,
    ):  # a builder meta cannot run: the real one reports
        return
    count = sum(parameter.numel() for parameter in shapes.parameters())
    size = max((parameter.element_size() for parameter in shapes.parameters()), default=4)
    require_memory(
        count * size * COPIES_IN_TRAINING,
        f"model: the {count:,} parameters of model {entry.name!r}, with their gradients and optimizer state,",
    )


def build_loss(config: Config, data: PreparedData) -> torch.nn.Module:
    return loss_for_task(config, data.task, data.plan, data.class_counts())


def loss_for_task(config: Config, task: Task, plan: TargetPlan, class_counts: tuple[int, ...]) -> torch.nn.Module:
    """The config's loss for a task, weighing classes by the training split's counts where asked
    (`eval --data` builds it from a run's data.json, without the training data)."""
    context = LossContext(task, plan, class_counts)
    with refused_by_torch("loss"):
        return LOSSES.get(config.loss.name).build(context, config.loss.params)


@dataclass
class ModelParts:
    """What evaluation needs: the prepared data, the model and the loss, on one device."""

    data: PreparedData
    model: torch.nn.Module
    loss_fn: torch.nn.Module
    device: torch.device
    ranks: Ranks = SINGLE  # this process's place in a run of several


@dataclass
class TrainingParts(ModelParts):
    optimizer: torch.optim.Optimizer = field(kw_only=True)  # keyword-only: it follows fields with defaults
    scheduler: Any | None = None
    scheduler_interval: str = "epoch"


def build_model_parts(config: Config, ranks: Ranks = SINGLE) -> ModelParts:
    if config.trainer.threads is not None:
        torch.set_num_threads(config.trainer.threads)
    device = distributed.start(ranks, resolve_device(config.trainer.device), config.trainer.threads)
    with config.errors_located():
        data = build_data(config, device)
        model = build_model(config, data).to(device)
        loss_fn = build_loss(config, data).to(device)
    return ModelParts(data, model, loss_fn, device, ranks)


def build_optimizer(config: Config, parts: ModelParts) -> torch.optim.Optimizer:
    """The optimizer over the trainable parameters, in the groups of `optimizer.groups`. A loss with
    learned parameters (adaptive, uncertainty_sum) trains with the model, in the default group."""
    entry = OPTIMIZERS.get(config.optimizer.name)
    groups = finetune.parameter_groups(
        parts.model, list(parts.loss_fn.parameters()), config.optimizer_groups, config.model.name
    )
    first, *others = groups
    # Built on the top-level settings, so `optimizer.defaults` holds them as torch does (onecycle
    # scales each group's peak by its lr over the top-level one), whichever group comes first.
    optimizer = entry.build(first.parameters, config.optimizer.params)
    if first.settings:  # every trainable parameter is in a group: the first has its own settings
        optimizer.param_groups[0].update(_group_settings(entry, config, first))
    for group in others:
        optimizer.add_param_group({"params": group.parameters, **_group_settings(entry, config, group)})
    return optimizer


def _group_settings(entry: Entry, config: Config, group: finetune.ParameterGroup) -> dict[str, Any]:
    """A group's settings as torch holds them: the builder turns config values into torch's (betas
    as a tuple, a plugin's own names), so a probe is built on the group's settings."""
    probe = entry.build(group.parameters, {**config.optimizer.params, **group.settings})
    return {key: value for key, value in probe.param_groups[0].items() if key != "params"}


def optimizer_steps(config: Config, data: PreparedData) -> int:
    """Optimizer steps in one epoch: groups of trainer.accumulate micro-batches."""
    micro_batches = steps_per_epoch(len(data.train), config.data.batch_size)
    return optimizer_steps_per_epoch(micro_batches, config.trainer.accumulate)


def build_training(config: Config, ranks: Ranks = SINGLE) -> TrainingParts:
    parts = build_model_parts(config, ranks)
    with config.errors_located(), refused_by_torch("optimizer"):
        optimizer = build_optimizer(config, parts)
    steps = optimizer_steps(config, parts.data)  # what schedules and the EMA count
    if config.trainer.ema is not None:
        with config.errors_located():
            check_ema_interval(config.trainer.ema.every, steps)
    scheduler, interval = None, "epoch"
    if config.scheduler is not None:
        entry = SCHEDULERS.get(config.scheduler.name)
        context = SchedulerContext(optimizer, config.trainer.epochs, steps)
        with config.errors_located(), refused_by_torch("scheduler"):
            scheduler = entry.build(context, config.scheduler.params)
        interval = interval_of(entry.info.interval, config.scheduler.params)
    return TrainingParts(
        parts.data,
        parts.model,
        parts.loss_fn,
        parts.device,
        ranks,
        optimizer=optimizer,
        scheduler=scheduler,
        scheduler_interval=interval,
    )
