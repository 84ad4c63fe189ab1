"""The config schema and its validation: raw YAML data in, a resolved `Config` or every problem out.

Validation runs in two layers. Pydantic checks the shape of the file (sections, trainer settings,
split fractions). Each component's parameters are then checked against the keyword-only parameters
of the builder its `name` selects. Every problem is collected with the file and line it stands on,
so a config with three mistakes is fixed in one round, not three.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Set
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from trainctl.components.losses import LossInfo
from trainctl.components.losses import profile as loss_profile
from trainctl.components.metrics import DEFAULT_METRICS
from trainctl.components.metrics import goal as metric_goal
from trainctl.components.registries import DATASETS, LOSSES, METRICS, MODELS, OPTIMIZERS, SCHEDULERS, TRANSFORMS
from trainctl.config.inheritance import load_config_with_bases, merge_bases
from trainctl.data.task import TaskKind, incompatibility
from trainctl.errors import ConfigError, Problem, UserError, shown
from trainctl.limits import (
    MAX_COUNT,
    MAX_THREADS,
    MAX_WORKERS,
    NAME_MAX_LENGTH,
    NAME_RULE,
    Count,
    RunName,
    SamplerSeed,
    Seed,
)
from trainctl.registry import Registry, suggest
from trainctl.yaml_source import Key, SourceMap, apply_overrides, dump_yaml, read_yaml

Fraction = Annotated[float, Field(gt=0, lt=1)]
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"


# ---- the shape of the file, as pydantic sees it -------------------------------------------------


class _Component(BaseModel):
    """`name` plus the component's own parameters, which are checked against its builder."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    name: str


class TransformLists(BaseModel):
    """data.transforms: image or audio transforms for training and for evaluation (val, test, predict)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    train: list[_Component] | None = None  # default: [normalize] (the dataset's mean and std)
    eval: list[_Component] | None = None  # default: [normalize]; must not be random


class FoldSettings(BaseModel):
    """data.fold: this run's test split is one fold of a cross-validation (`trainctl cv` sets it per fold)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    count: Annotated[int, Field(ge=2, le=MAX_COUNT)]  # folds the pool of rows is split into (seeded by split_seed)
    index: Annotated[int, Field(ge=1, le=MAX_COUNT)]  # the fold held out as the test split, 1 to count

    @model_validator(mode="after")
    def _index_is_a_fold(self) -> FoldSettings:
        if self.index > self.count:
            raise ValueError(f"index must be 1 to count ({self.count}), got {self.index}")
        return self


class _Data(_Component):
    name: str = "digits"
    batch_size: Count = 64
    val_fraction: Fraction = 0.1
    test_fraction: Fraction = 0.2
    split_seed: Seed = 0  # the split stays the same when only `seed` changes, so runs compare fairly
    # How streamed splits (image folders, random transforms) go through a DataLoader; in-memory
    # datasets are batched from preloaded tensors and need none of it.
    num_workers: Annotated[int, Field(ge=0, le=MAX_WORKERS)] = 0
    pin_memory: bool = False
    persistent_workers: bool = False  # keep the workers between epochs (needs num_workers > 0)
    transforms: TransformLists | None = None  # image and audio datasets only
    # The test split is this fold's held-out rows; val is drawn from the rest; test_fraction is unused.
    fold: FoldSettings | None = None

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> _Data:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction must be below 1 to leave training data "
                f"(got {self.val_fraction} + {self.test_fraction})"
            )
        if self.persistent_workers and self.num_workers == 0:
            raise ValueError("persistent_workers keeps DataLoader workers alive, so it needs num_workers > 0")
        return self


class EarlyStoppingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    monitor: str | None = None  # default: trainer.monitor
    mode: Literal["auto", "min", "max"] = "auto"  # auto: lower is better for losses and errors
    patience: Count = 5  # epochs without improvement before stopping
    min_delta: Annotated[float, Field(ge=0)] = 0.0  # smaller changes do not count as improvement


class EmaSettings(BaseModel):
    """trainer.ema: an exponential moving average of the weights, evaluated and saved in their place."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    decay: Annotated[float, Field(gt=0, lt=1)] = 0.999  # the average keeps this share of itself at each update
    every: Count = 1  # optimizer steps between updates


class SwaSettings(BaseModel):
    """trainer.swa: stochastic weight averaging, the mean of the weights each epoch from start_epoch ends with."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    start_epoch: Count  # the first epoch whose weights join the average (1 = the first epoch)
    lr: Annotated[float, Field(gt=0)]  # the learning rate from start_epoch on, in place of the scheduler's
    anneal_epochs: Annotated[int, Field(ge=0, le=MAX_COUNT)] = 0  # epochs to anneal to lr (0: switch at once)


class TrainerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    epochs: Count = 20
    device: Annotated[str, Field(pattern=DEVICE_PATTERN)] = "auto"  # auto: cuda, then mps, then cpu
    monitor: str | None = None  # which epoch is "best"; default val/accuracy or val/loss by task
    early_stopping: EarlyStoppingSettings | None = None
    accumulate: Count = 1  # micro-batches (of data.batch_size each) per optimizer step
    grad_clip_norm: Annotated[float, Field(gt=0)] | None = None  # clip the gradient's total norm
    on_nonfinite: Literal["stop", "skip"] = "stop"  # an inf/NaN loss stops the run, or skips the step
    max_skipped_steps: Annotated[int, Field(ge=0, le=MAX_COUNT)] = 10  # with skip: stop after more than this many
    precision: Literal["32", "bf16", "16-mixed"] = "32"  # bf16: autocast; 16-mixed: float16 autocast + grad scaler
    compile: bool = False  # torch.compile the model (the first steps pay for compiling)
    threads: Annotated[int, Field(ge=1, le=MAX_THREADS)] | None = (
        None  # CPU threads per process; default torch's, 1 when distributed
    )
    ema: EmaSettings | None = None  # evaluate and save an exponential moving average of the weights
    swa: SwaSettings | None = None  # evaluate and save a stochastic weight average (not with ema)
    calibrate: Literal["temperature"] | None = None  # after training, fit a temperature on the val split (logits)

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value  # `precision: 32`


class ResolvedEarlyStopping(EarlyStoppingSettings):
    """early_stopping as a validated config holds it: its monitor and mode filled in."""

    monitor: str
    mode: Literal["min", "max"]


class ResolvedTrainerSettings(TrainerSettings):
    """trainer as a validated config holds it: the monitor and early stopping resolved."""

    monitor: str
    early_stopping: ResolvedEarlyStopping | None = None


TrackingUri = Annotated[str, Field(min_length=1)]
# MLflow's own limits on these names (mlflow.utils.validation), checked here so that a name MLflow
# would refuse is a config error before training rather than a tracker failure during it.
ExperimentName = Annotated[str, Field(min_length=1, max_length=500)]
MlflowRunName = Annotated[str, Field(min_length=1, max_length=250)]
MlflowRunId = Annotated[str, Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")]


class MlflowSettings(BaseModel):
    """logging.mlflow: log the run to MLflow as it trains (pip install mlflow); `{}` takes every default."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    # Where runs go: a database, a server (http://...) or a folder. A relative path is resolved against
    # the folder trainctl starts in, and the resolved URI is recorded in the run folder (mlflow.json).
    tracking_uri: TrackingUri | None = None  # default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: ExperimentName | None = (
        None  # the MLflow experiment; default: $MLFLOW_EXPERIMENT_NAME, else the config's name
    )
    run_name: MlflowRunName | None = None  # the MLflow run's name; default: the run folder's name
    parent_run_id: MlflowRunId | None = (
        None  # nest the run under this MLflow run, in its experiment (sweeps and repeats set it)
    )


class LoggingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    tensorboard: bool = False  # also write TensorBoard event files (pip install tensorboard)
    # Every N optimizer steps, the step's training loss and lr: to steps.jsonl, and TensorBoard when on.
    every_n_steps: Count | None = None  # null: off, and nothing is added to a step
    # curves.png (and reliability.png) at the end of a run: about 0.4 s of matplotlib. A sweep's
    # trials default to false, as they are many and short; `trainctl plot RUN` draws them later.
    figures: bool = True
    mlflow: MlflowSettings | None = None  # null: off; {}: on, to MLflow's default local store


class SweepSettings(BaseModel):
    """What `trainctl sweep` varies; `train` ignores it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    sampler: Literal["grid", "random", "tpe"] = "grid"
    trials: Count | None = None  # random and tpe: how many trials in all
    grid: dict[str, list[Any]] = {}  # dotted key: values (the cartesian product is run)
    space: dict[str, str] = {}  # dotted key: loguniform:LO:HI | uniform:LO:HI | int:LO:HI | choice:A,B,...
    seed: SamplerSeed = 0  # the sampler's seed
    pruner: Literal["none", "median", "hyperband"] = "none"  # stop unpromising trials after an epoch (Optuna's)
    startup_trials: Annotated[int, Field(ge=0, le=MAX_COUNT)] = 5  # median: trials that finish before any is pruned
    min_epochs: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 1  # epochs a trial trains before it may be pruned


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: RunName = "run"  # default: the config file's stem; part of the run folder's name
    seed: Seed = 0  # model initialisation, dropout and shuffling
    data: _Data = _Data()
    model: _Component
    loss: _Component
    optimizer: _Component
    scheduler: _Component | None = None
    trainer: TrainerSettings = TrainerSettings()
    metrics: list[str] | None = None  # default: by task (accuracy, precision, recall, f1 / mse, rmse, mae, r2)
    output_dir: str = "runs"
    logging: LoggingSettings = LoggingSettings()
    sweep: SweepSettings | None = None


DATA_SETTINGS = tuple(name for name in _Data.model_fields if name != "name")
# Keys beside a component's own parameters that trainctl handles for every component of a section.
COMPONENT_SETTINGS: dict[str, set[str]] = {"data": set(DATA_SETTINGS), "model": {"freeze"}, "optimizer": {"groups"}}
COMPONENT_SECTIONS: dict[str, Registry] = {
    "data": DATASETS,
    "model": MODELS,
    "loss": LOSSES,
    "optimizer": OPTIMIZERS,
    "scheduler": SCHEDULERS,
}


# ---- the resolved config the rest of trainctl uses ------------------------------------------------


@dataclass(frozen=True)
class Component:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSettings:
    batch_size: int
    val_fraction: float
    test_fraction: float
    split_seed: int
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    transforms: dict[str, list[dict[str, Any]] | None] | None = None  # {train: [{name, ...}], eval: [...]}
    fold: dict[str, int] | None = None  # {count, index}: the test split is this cross-validation fold


@dataclass(frozen=True)
class Config:
    name: str
    seed: int
    data: DataSettings
    dataset: Component
    model: Component
    loss: Component
    optimizer: Component
    scheduler: Component | None
    trainer: ResolvedTrainerSettings
    metrics: list[str]
    output_dir: str
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    sweep: SweepSettings | None = None
    freeze: list[str] = field(default_factory=list)  # model.freeze: name patterns (training/finetune.py)
    optimizer_groups: list[dict[str, Any]] = field(default_factory=list)  # optimizer.groups: {params: [...], ...}
    source: SourceMap | None = field(default=None, compare=False, repr=False)  # where each key was given

    @contextlib.contextmanager
    def errors_located(self) -> Iterator[None]:
        """A builder's error about a key (`data.root: ...`) names where that key was given."""
        try:
            yield
        except ConfigError:
            raise
        except UserError as error:
            problem = located_problem(error, self.source) if self.source is not None else None
            if problem is None:
                raise
            raise ConfigError([problem]) from None

    def _data_settings(self) -> dict[str, Any]:
        """data's own settings; `fold` only in a cross-validation fold's run (the runs before it have none)."""
        settings = asdict(self.data)
        if settings["fold"] is None:
            del settings["fold"]
        return settings

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data, in the shape of the YAML file: exactly what runs."""

        def section(component: Component | None, extra: dict[str, Any] | None = None) -> dict[str, Any] | None:
            if component is None:
                return None
            return {"name": component.name, **(extra or {}), **component.params}

        return {
            "name": self.name,
            "seed": self.seed,
            "data": section(self.dataset, self._data_settings()),
            "model": section(self.model, {"freeze": list(self.freeze)} if self.freeze else None),
            "loss": section(self.loss),
            "optimizer": section(self.optimizer, {"groups": self.optimizer_groups} if self.optimizer_groups else None),
            "scheduler": section(self.scheduler),
            "trainer": self.trainer.model_dump(),
            "metrics": list(self.metrics),
            "output_dir": self.output_dir,
            "logging": self.logging.model_dump(),
            "sweep": self.sweep.model_dump() if self.sweep is not None else None,
        }


# ---- validation ---------------------------------------------------------------------------------


def _allowed_keys(loc: Key) -> list[str]:
    """The keys allowed at the mapping that holds `loc`, for 'did you mean' on an unknown key."""
    parent = loc[:-1]
    if parent == ():
        return list(_File.model_fields)
    sections: dict[Key, type[BaseModel]] = {
        ("trainer",): TrainerSettings,
        ("trainer", "early_stopping"): EarlyStoppingSettings,
        ("trainer", "ema"): EmaSettings,
        ("trainer", "swa"): SwaSettings,
        ("logging",): LoggingSettings,
        ("logging", "mlflow"): MlflowSettings,
        ("sweep",): SweepSettings,
        ("data", "transforms"): TransformLists,
        ("data", "fold"): FoldSettings,
    }
    if parent in sections:
        return list(sections[parent].model_fields)
    return []


def _message(error: ErrorDetails, loc: Key) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc)
        return f"unknown key{suggest(str(loc[-1]), allowed)}; allowed: {', '.join(allowed)}"
    if kind == "missing":
        if isinstance(loc[-1], int):
            return f"too few items: item {loc[-1]} is missing"
        return "required key is missing"
    if kind in ("model_type", "dict_type"):
        component = loc[-1] in COMPONENT_SECTIONS or isinstance(loc[-1], int)  # a section or a list item
        example = " with a name, e.g. {name: ...}" if component else ""
        if loc == ("logging", "mlflow"):
            example = ", e.g. {} for MLflow's defaults or {experiment: NAME}"
        return f"must be a mapping{example} (got {shown(error['input'])})"
    message = error["msg"].removeprefix("Value error, ")
    if kind == "string_pattern_mismatch" and loc[-1] == "device":
        message = "must be auto, cpu, mps, cuda or cuda:N"
    if kind.startswith("string_") and loc == ("name",):
        message = f"must be {NAME_RULE}: it names the run's folder, so it is a name, not a path"
    if kind.startswith("model_") or kind == "value_error":
        return message
    return f"{message} (got {shown(error['input'])})"


@overload
def located_problem(error: UserError, source: SourceMap, default: Key) -> Problem: ...
@overload
def located_problem(error: UserError, source: SourceMap, default: None = None) -> Problem | None: ...
def located_problem(error: UserError, source: SourceMap, default: Key | None = None) -> Problem | None:
    """A builder's error as a problem at its place: the `--set` or the line of the config key its
    message starts with (`data.target: no column ...`), else of `default` (None: no place known)."""
    message = str(error)
    match = re.match(r"^((\w+)(?:\.\w+)*): (.*)$", message, re.S)
    if match is None or match.group(2) not in _File.model_fields:
        return None if default is None else Problem(source.where(default), ".".join(map(str, default)), message)
    dotted, _, rest = match.groups()
    loc = tuple(int(part) if part.isdigit() else part for part in dotted.split("."))
    return Problem(source.where(loc), dotted, rest)


def _pydantic_problems(error: ValidationError, source: SourceMap, prefix: Key = ()) -> list[Problem]:
    problems = []
    for item in error.errors():
        loc = prefix + tuple(item["loc"])
        problems.append(Problem(source.where(loc), ".".join(str(k) for k in loc), _message(item, loc)))
    return problems


def _check_component(
    loc: Key, raw: Any, registry: Registry, source: SourceMap, problems: list[Problem], skip: Set[str] = frozenset()
) -> Component | None:
    """The component at `loc`, its parameters validated and defaults filled; None on problems.

    `skip` names keys that sit beside the parameters but belong to the caller (data settings,
    a composite term's weight).
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        return None  # already reported by the shape check
    dotted = ".".join(str(k) for k in loc)
    name = raw["name"]
    if name not in registry:
        problems.append(Problem(source.where((*loc, "name")), f"{dotted}.name", registry.unknown_name_message(name)))
        return None
    entry = registry.get(name)
    params = {key: value for key, value in raw.items() if key not in {"name", *skip}}
    try:
        validated = entry.params.model_validate(params).model_dump(mode="json")  # tuples become lists, as in YAML
    except ValidationError as error:
        allowed = list(entry.params.model_fields)
        for item in error.errors():
            item_loc = (*loc, *item["loc"])
            if item["type"] == "extra_forbidden" and len(item["loc"]) == 1:
                key = str(item["loc"][-1])
                accepted = ", ".join(allowed) if allowed else "no parameters"
                message = (
                    f"{registry.kind} {name!r} has no parameter {key!r}{suggest(key, allowed)}; it accepts: {accepted}"
                )
            elif item["type"] == "extra_forbidden" and (nested := _nested_keys(entry.params, item["loc"][:-1])):
                key = str(item["loc"][-1])  # in a mapping of parameters, e.g. an audio dataset's features
                message = f"unknown key{suggest(key, nested)}; allowed: {', '.join(nested)}"
            else:
                message = _message(item, item_loc)
            problems.append(Problem(source.where(item_loc), ".".join(str(k) for k in item_loc), message))
        return None
    if isinstance(entry.info, LossInfo) and entry.info.composite:
        validated["terms"] = _check_terms(loc, raw["terms"], registry, source, problems)
        if validated["terms"] is None:
            return None
    return Component(name, validated)


def _nested_keys(model: type[BaseModel], path: tuple[int | str, ...]) -> list[str]:
    """The keys a mapping nested in a component's parameters accepts (path: where it sits)."""
    for key in path:
        field = model.model_fields.get(str(key))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return list(model.model_fields)


def _check_terms(
    loc: Key, raw_terms: list, registry: Registry[..., LossInfo], source: SourceMap, problems: list[Problem]
) -> list | None:
    """Each term of a composite loss, validated like a loss of its own, with its weight kept."""
    terms = []
    for index, raw in enumerate(raw_terms):
        term_loc = (*loc, "terms", index)
        if raw.get("name") in registry and registry.get(raw["name"]).info.composite:
            where = source.where((*term_loc, "name"))
            problems.append(Problem(where, ".".join(map(str, term_loc)) + ".name", "composite losses cannot be nested"))
            return None
        term = _check_component(term_loc, raw, registry, source, problems, skip={"weight"})
        if term is None:
            return None
        terms.append({"name": term.name, "weight": raw.get("weight", 1.0), **term.params})
    return terms


def _check_pairings(
    shape: _File, dataset: Component, loss: Component, source: SourceMap
) -> tuple[list[str], str, list[Problem]]:
    """Loss, metrics and monitor against the dataset's task; returns the resolved metrics and monitor."""
    problems = []
    task_kind = _task_kind(dataset)
    try:
        reason = incompatibility(loss.name, loss_profile(loss.name, loss.params).target, dataset.name, task_kind)
    except UserError as error:
        reason = str(error)
    if reason:
        problems.append(Problem(source.where(("loss", "name")), "loss.name", reason))

    metrics = shape.metrics if shape.metrics is not None else DEFAULT_METRICS[task_kind]
    for index, metric in enumerate(metrics):
        loc = ("metrics", index)
        if metric not in METRICS:
            problems.append(Problem(source.where(loc), f"metrics.{index}", METRICS.unknown_name_message(metric)))
        elif METRICS.get(metric).info.task != task_kind:
            allowed = ", ".join(DEFAULT_METRICS[task_kind])
            problems.append(
                Problem(
                    source.where(loc),
                    f"metrics.{index}",
                    f"metric {metric!r} is for {METRICS.get(metric).info.task}, but dataset "
                    f"{dataset.name!r} is {task_kind}; use one of: {allowed}",
                )
            )

    monitor = shape.trainer.monitor
    if monitor is None:
        monitor = "val/accuracy" if task_kind == "classification" and "accuracy" in metrics else "val/loss"
    allowed_monitors = ["val/loss", *(f"val/{m}" for m in metrics)]
    stopping = shape.trainer.early_stopping
    watched: list[tuple[tuple[str, ...], str]] = [(("trainer", "monitor"), monitor)]
    if stopping is not None and stopping.monitor is not None:
        watched.append((("trainer", "early_stopping", "monitor"), stopping.monitor))
    for monitor_loc, value in watched:
        if value not in allowed_monitors:
            problems.append(
                Problem(
                    source.where(monitor_loc),
                    ".".join(monitor_loc),
                    f"cannot monitor {value!r}{suggest(value, allowed_monitors)}; allowed: {', '.join(allowed_monitors)}",
                )
            )
    if shape.trainer.calibrate is not None:
        problems += _check_calibration(task_kind, loss, source)
    return list(metrics), monitor, problems


def _task_kind(dataset: Component) -> TaskKind:
    entry = DATASETS.get(dataset.name)
    # A file's dataset has its task resolved by validate(), in its parameters.
    return entry.info.task if entry.info.task != "from the file" else dataset.params["task"]


def _check_calibration(task_kind: TaskKind, loss: Component, source: SourceMap) -> list[Problem]:
    """trainer.calibrate: temperature divides logits, so it needs a classifier whose loss reads logits."""
    where = source.where(("trainer", "calibrate"))
    if task_kind != "classification":
        return [
            Problem(where, "trainer.calibrate", f"calibrates a classifier's probabilities; this is a {task_kind} task")
        ]
    reads = loss_profile(loss.name, loss.params).input
    if reads != "logits":
        logits = ", ".join(e.name for e in LOSSES if e.info.input == "logits" and e.info.task == "classification")
        return [
            Problem(
                where,
                "trainer.calibrate",
                f"temperature scaling divides logits, and loss {loss.name!r} reads {reads}; "
                f"losses that read logits: {logits}",
            )
        ]
    return []


def validate(data: dict[str, Any], source: SourceMap) -> Config:
    problems: list[Problem] = []
    shape: _File | None = None
    try:
        shape = _File.model_validate(data)
    except ValidationError as error:
        problems += _pydantic_problems(error, source)

    raw_sections = {section: data.get(section) for section in COMPONENT_SECTIONS}
    if isinstance(raw_sections["data"], dict) or raw_sections["data"] is None:
        raw_sections["data"] = {"name": _Data().name, **(raw_sections["data"] or {})}
    components = {
        section: _check_component(
            (section,),
            raw_sections[section],
            registry,
            source,
            problems,
            COMPONENT_SETTINGS.get(section, set()),
        )
        for section, registry in COMPONENT_SECTIONS.items()
    }
    dataset, model, loss, optimizer = (components[section] for section in ("data", "model", "loss", "optimizer"))
    # A required section checks to None only with a problem reported; the tests below narrow the types.
    if problems or shape is None or dataset is None or model is None or loss is None or optimizer is None:
        raise ConfigError(problems)

    transforms = _check_transforms(shape.data.transforms, data.get("data") or {}, dataset, source, problems)
    problems += _check_averaging(shape.trainer, source)
    freeze = _check_patterns(("model", "freeze"), data["model"].get("freeze", []), source, problems)
    groups = _check_groups(data["optimizer"].get("groups", []), optimizer, source, problems)
    if problems:
        raise ConfigError(problems)
    entry = DATASETS.get(dataset.name)
    if entry.info.task_of is not None and dataset.params.get("task", "auto") == "auto":
        # A file's dataset: its task is read from the file once, and saved resolved with the run.
        try:
            kind = entry.info.task_of(dataset.params)
        except UserError as error:
            raise ConfigError([located_problem(error, source, ("data", "path"))]) from None
        dataset = Component(dataset.name, {**dataset.params, "task": kind})
    metrics, monitor, pairing_problems = _check_pairings(shape, dataset, loss, source)
    if pairing_problems:
        raise ConfigError(pairing_problems)

    data_settings = shape.data
    return Config(
        name=shape.name,
        seed=shape.seed,
        data=DataSettings(
            **{key: getattr(data_settings, key) for key in DATA_SETTINGS if key not in ("transforms", "fold")},
            transforms=transforms,
            fold=data_settings.fold.model_dump() if data_settings.fold is not None else None,
        ),
        dataset=dataset,
        model=model,
        loss=loss,
        optimizer=optimizer,
        scheduler=components["scheduler"],
        trainer=_resolve_trainer(shape.trainer, monitor),
        metrics=metrics,
        output_dir=shape.output_dir,
        logging=shape.logging,
        sweep=shape.sweep,
        freeze=freeze,
        optimizer_groups=groups,
        source=source,
    )


def _check_averaging(trainer: TrainerSettings, source: SourceMap) -> list[Problem]:
    """trainer.ema and trainer.swa: one average at most (a run evaluates and saves one set of
    weights), and SWA starting within the run."""
    if trainer.ema is not None and trainer.swa is not None:
        message = (
            "trainer.ema and trainer.swa both replace the evaluated and saved weights by an average; "
            "a run keeps one: remove one of them"
        )
        return [Problem(source.where(("trainer", "swa")), "trainer.swa", message)]
    if trainer.swa is not None and trainer.swa.start_epoch > trainer.epochs:
        loc = ("trainer", "swa", "start_epoch")
        message = (
            f"{trainer.swa.start_epoch} is after the run's last epoch; allowed: 1 to trainer.epochs ({trainer.epochs})"
        )
        return [Problem(source.where(loc), "trainer.swa.start_epoch", message)]
    return []


def _check_patterns(loc: Key, raw: Any, source: SourceMap, problems: list[Problem]) -> list[str]:
    """A list of parameter-name patterns (one pattern alone is a list of one), each a non-empty text."""
    patterns = [raw] if isinstance(raw, str) else raw
    dotted = ".".join(map(str, loc))
    if not isinstance(patterns, list):
        problems.append(
            Problem(source.where(loc), dotted, f"must be a list of parameter-name patterns (got {shown(raw)})")
        )
        return []
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern.strip():
            where = loc if isinstance(raw, str) else (*loc, index)
            problems.append(
                Problem(
                    source.where(where),
                    ".".join(map(str, where)),
                    f"must be a parameter name, module prefix or glob such as layer4 or layer[1-3] (got {shown(pattern)})",
                )
            )
    return [pattern for pattern in patterns if isinstance(pattern, str)]


def _check_groups(raw: Any, optimizer: Component, source: SourceMap, problems: list[Problem]) -> list[dict[str, Any]]:
    """optimizer.groups: each a mapping of `params` (patterns) and settings of the optimizer's own
    parameters, validated by its builder's schema; only the settings a group gives are kept."""
    loc: Key = ("optimizer", "groups")
    if not isinstance(raw, list):
        problems.append(
            Problem(
                source.where(loc), "optimizer.groups", f"must be a list of {{params: PATTERN, ...}} (got {shown(raw)})"
            )
        )
        return []
    entry = OPTIMIZERS.get(optimizer.name)
    allowed = ["params", *entry.params.model_fields]
    groups = []
    for index, group in enumerate(raw):
        group_loc: Key = (*loc, index)
        dotted = ".".join(map(str, group_loc))
        if not isinstance(group, dict) or "params" not in group:
            message = f"must be a mapping with params, e.g. {{params: layer4, lr: 1.0e-4}} (got {shown(group)})"
            problems.append(Problem(source.where(group_loc), dotted, message))
            continue
        unknown = [key for key in group if key not in allowed]
        for key in unknown:
            problems.append(
                Problem(
                    source.where((*group_loc, key)),
                    f"{dotted}.{key}",
                    f"optimizer {optimizer.name!r} has no parameter {key!r}{suggest(str(key), allowed)}; "
                    f"a group accepts: {', '.join(allowed)}",
                )
            )
        settings = {key: value for key, value in group.items() if key != "params" and key not in unknown}
        try:
            checked = entry.params.model_validate({**optimizer.params, **settings}).model_dump(mode="json")
        except ValidationError as error:
            problems += _pydantic_problems(error, source, group_loc)
            continue
        if group["params"] == []:  # a group of no parameters would silently set nothing
            message = "must name at least one parameter, module prefix or glob such as layer4 (got [])"
            problems.append(Problem(source.where((*group_loc, "params")), f"{dotted}.params", message))
            continue
        patterns = _check_patterns((*group_loc, "params"), group["params"], source, problems)
        groups.append({"params": patterns, **{key: checked[key] for key in settings}})
    return groups


def _check_transforms(
    lists: TransformLists | None, raw: dict[str, Any], dataset: Component, source: SourceMap, problems: list[Problem]
) -> dict[str, list[dict[str, Any]] | None] | None:
    """data.transforms, each item checked against the transform it names; None when not set."""
    if lists is None:
        return None
    info = DATASETS.get(dataset.name).info
    reads = "images" if info.images else "audio" if info.audio else None
    if reads is None:
        images = ", ".join(entry.name for entry in DATASETS if entry.info.images)
        audio = ", ".join(entry.name for entry in DATASETS if entry.info.audio)
        problems.append(
            Problem(
                source.where(("data", "transforms")),
                "data.transforms",
                f"dataset {dataset.name!r} is not read as images; transforms apply to: {images}; "
                f"audio transforms to: {audio}",
            )
        )
        return None
    resolved: dict[str, list[dict[str, Any]] | None] = {}
    for phase in ("train", "eval"):
        items = raw["transforms"].get(phase)
        if items is None:
            resolved[phase] = None
            continue
        checked: list[dict[str, Any]] = []
        resolved[phase] = checked
        for index, item in enumerate(items):
            loc = ("data", "transforms", phase, index)
            component = _check_component(loc, item, TRANSFORMS, source, problems)
            if component is None:
                continue
            applies_to = TRANSFORMS.get(component.name).info.applies_to
            if applies_to != reads:
                fitting = ", ".join(entry.name for entry in TRANSFORMS if entry.info.applies_to == reads)
                problems.append(
                    Problem(
                        source.where((*loc, "name")),
                        f"data.transforms.{phase}.{index}.name",
                        f"{component.name!r} transforms {applies_to}, and dataset {dataset.name!r} reads "
                        f"{reads}; its transforms: {fitting}",
                    )
                )
                continue
            if phase == "eval" and TRANSFORMS.get(component.name).info.random:
                problems.append(
                    Problem(
                        source.where((*loc, "name")),
                        f"data.transforms.eval.{index}.name",
                        f"{component.name!r} is random; evaluation must see the same images every "
                        "time, so random transforms belong in data.transforms.train",
                    )
                )
            checked.append({"name": component.name, **component.params})
    return resolved


def _resolve_trainer(trainer: TrainerSettings, monitor: str) -> ResolvedTrainerSettings:
    """Fill in what defaults to something else: the monitor, and early stopping's monitor and mode."""
    stopping = None
    if trainer.early_stopping is not None:
        settings = trainer.early_stopping
        watched = settings.monitor or monitor
        mode = settings.mode if settings.mode != "auto" else metric_goal(watched)
        stopping = ResolvedEarlyStopping.model_validate({**settings.model_dump(), "monitor": watched, "mode": mode})
    return ResolvedTrainerSettings.model_validate(
        {**trainer.model_dump(), "monitor": monitor, "early_stopping": stopping}
    )


def default_run_name(config_path: str | Path) -> str:
    """The config file's stem as a run name: what a name may not hold becomes `-`, cut to length."""
    name = re.sub(r"[^\w.-]+", "-", Path(config_path).stem).lstrip(".-")[:NAME_MAX_LENGTH]
    return name or "run"


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, override and validate a config file. Raises UserError (ConfigError) on any problem."""
    return validate(*read_config(path, overrides))


def read_config(path: str | Path, overrides: list[str] | None = None) -> tuple[dict[str, Any], SourceMap]:
    """A config file as a command takes it, before validation: read with the bases it extends,
    named, overridden, its data paths anchored to the folder of the file that gives them. Every
    command that takes a config reads it here."""
    data, source = load_config_with_bases(path)
    data.setdefault("name", default_run_name(path))
    apply_overrides(data, overrides or [], source)
    _anchor_data_paths(data, source)
    return data, source


def load_config_data(data: dict[str, Any], overrides: list[str] | None = None, origin: str = "config dict") -> Config:
    """A config given as data rather than a file (the Python API): extended, overridden and
    validated as a file is, its problems named by `origin` and key path. With no file, data paths
    and the bases it extends are relative to the working folder. The data goes through the YAML
    reader once, so it gets a file's checks (no NUL characters, bounded depth) and the caller's
    dict is never changed."""
    copied, _ = read_yaml(dump_yaml(data), origin, lines_in_messages=False)
    copied, source = merge_bases(copied, {}, origin, Path.cwd())
    apply_overrides(copied, overrides or [], source)
    _anchor_data_paths(copied, source)
    return validate(copied, source)


def _anchor_data_paths(data: dict[str, Any], source: SourceMap) -> None:
    """data.path and data.root (val_root, test_root) written in a config are relative to the folder
    of the file that gives them (a base config's, for an inherited one; given with --set or as data,
    to the working folder), and are stored absolute so a run's saved config works anywhere."""
    section = data.get("data")
    if not isinstance(section, dict):
        return
    for key in ("path", "root", "val_root", "test_root"):
        value = section.get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            given_in = source.file_of(("data", key))
            base = Path.cwd() if given_in is None else Path(given_in).parent
            section[key] = str((base / Path(value).expanduser()).resolve())
        elif isinstance(value, str) and value:
            section[key] = str(Path(value).expanduser())
