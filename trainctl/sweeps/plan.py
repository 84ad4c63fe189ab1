"""What a sweep varies: grid values and search spaces from `--grid`, `--space` and the `sweep:` section.

Every swept value travels as YAML text, exactly as a `--set key=value` would carry it, so a trial
is an ordinary `trainctl train CONFIG --set ...` and its values read the same everywhere.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from trainctl.config.loading import SweepSettings, validate
from trainctl.errors import UserError
from trainctl.yaml_source import SourceMap, apply_overrides, dump_yaml, read_yaml

SPACE_FORMS = "loguniform:LO:HI, uniform:LO:HI, int:LO:HI or choice:A,B,..."
PRUNERS = ("none", "median", "hyperband")


def yaml_text(value: Any) -> str:
    """One value as the YAML text a `--set` reads back to the same value."""
    if isinstance(value, float):
        return repr(value)
    return dump_yaml(value, default_flow_style=True, width=10_000, sort_keys=False).strip().removesuffix("...").strip()


def parse_values(text: str, where: str) -> list[str]:
    """`mse,huber` or `[64,64],[128]` as a list of value texts: the list is read as one YAML sequence."""
    values = read_yaml(f"[{text}]", where, lines_in_messages=False)[0]
    if not values:
        raise UserError(f"{where}: no values given; e.g. --grid optimizer.lr=0.001,0.01")
    return [yaml_text(value) for value in values]


@dataclass(frozen=True)
class Dimension:
    """One swept key: a list of values (grid or choice) or a numeric range."""

    key: str
    kind: str  # grid | choice | loguniform | uniform | int
    values: tuple[str, ...] = ()
    low: float = 0.0
    high: float = 0.0

    def candidates(self) -> list[str]:
        """The values a config must accept: every listed value, or both ends of a range."""
        if self.values:
            return list(self.values)
        return [yaml_text(int(v) if self.kind == "int" else v) for v in (self.low, self.high)]

    def suggest(self, trial: Any) -> str:
        """Ask an Optuna trial for this dimension's value, as YAML text."""
        if self.values:
            return trial.suggest_categorical(self.key, list(self.values))
        if self.kind == "int":
            return yaml_text(trial.suggest_int(self.key, int(self.low), int(self.high)))
        return yaml_text(trial.suggest_float(self.key, self.low, self.high, log=self.kind == "loguniform"))

    def describe(self) -> str:
        if self.values:
            return f"{self.key} in {', '.join(self.values)}"
        return f"{self.key} ~ {self.kind}({self.low:g}, {self.high:g})"


def parse_space(key: str, spec: str, where: str) -> Dimension:
    form, _, rest = spec.partition(":")
    if form == "choice":
        return Dimension(key, "choice", tuple(parse_values(rest, where)))
    if form not in ("loguniform", "uniform", "int"):
        raise UserError(f"{where}: unknown search space {spec!r}; allowed: {SPACE_FORMS}")
    parts = rest.split(":")
    try:
        low, high = (int(p) if form == "int" else float(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        low = high = None
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        raise UserError(
            f"{where}: expected {form}:LO:HI with two {'integers' if form == 'int' else 'numbers'}, got {spec!r}"
        )
    if not low < high:
        raise UserError(f"{where}: the range must have LO < HI, got {spec!r}")
    if form == "loguniform" and low <= 0:
        raise UserError(f"{where}: loguniform needs LO > 0, got {spec!r}")
    return Dimension(key, form, low=float(low), high=float(high))


def _split_option(option: str, flag: str, example: str) -> tuple[str, str]:
    key, sep, text = option.partition("=")
    if not sep or not key.strip() or not all(key.strip().split(".")):
        raise UserError(f"{flag} {option}: expected key.path=..., e.g. {flag} {example}")
    return key.strip(), text


@dataclass(frozen=True)
class Pruning:
    """Which of Optuna's pruners stops unpromising trials, judged on the monitored value each epoch."""

    pruner: str = "none"  # none | median | hyperband
    startup_trials: int = 5  # median: trials that finish before any is pruned
    min_epochs: int = 1  # epochs a trial trains before it may be pruned

    def make(self, epochs: int | str) -> Any:
        """The Optuna pruner; `epochs` (or "auto" when trials train for different numbers of
        epochs) is what Hyperband shares out. Steps are epochs, from 1."""
        import optuna

        if self.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=self.startup_trials, n_warmup_steps=self.min_epochs)
        if self.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=self.min_epochs, max_resource=epochs)
        return optuna.pruners.NopPruner()


@dataclass(frozen=True)
class SweepPlan:
    sampler: str  # grid | random | tpe
    trials: int  # the grid's size, or the number of random/tpe trials
    dimensions: tuple[Dimension, ...]
    seed: int
    pruning: Pruning = Pruning()  # not part of the definition: a sweep may continue with another pruner

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.dimensions]

    def grid_space(self) -> dict[str, list[str]]:
        return {d.key: list(d.values) for d in self.dimensions}

    def definition(self) -> dict[str, Any]:
        """Plain data that identifies the sweep: a rerun must match it to continue the same study."""
        return {
            "sampler": self.sampler,
            "trials": self.trials,
            "seed": self.seed,
            "dimensions": {
                d.key: {"kind": d.kind, "values": list(d.values), "low": d.low, "high": d.high} for d in self.dimensions
            },
        }


def make_plan(
    section: dict[str, Any] | None,
    grid: list[str],
    space: list[str],
    random_trials: int | None,
    tpe_trials: int | None,
    seed: int | None,
    pruner: str | None = None,
) -> SweepPlan:
    """The config's `sweep:` section with the command line's options laid over it.

    `--grid`/`--space` entries add to (or replace, key by key) the section's; `--random N` or
    `--tpe N` choose the sampler and the number of trials; `--pruner` the pruner.
    """
    settings = SweepSettings.model_validate(section or {})
    grids = {key: [yaml_text(v) for v in values] for key, values in settings.grid.items()}
    spaces = {key: parse_space(key, spec, f"sweep.space.{key}") for key, spec in settings.space.items()}
    for option in grid:
        key, text = _split_option(option, "--grid", "optimizer.lr=0.001,0.01")
        grids[key] = parse_values(text, f"--grid {option}")
        spaces.pop(key, None)
    for option in space:
        key, text = _split_option(option, "--space", "optimizer.lr=loguniform:1e-4:1e-1")
        spaces[key] = parse_space(key, text, f"--space {option}")
        grids.pop(key, None)
    if random_trials is not None and tpe_trials is not None:
        raise UserError("--random and --tpe: choose one sampler")
    sampler, trials = settings.sampler, settings.trials
    if random_trials is not None:
        sampler, trials = "random", random_trials
    elif tpe_trials is not None:
        sampler, trials = "tpe", tpe_trials
    if not grids and not spaces:
        raise UserError(
            "nothing to sweep: give --grid key=v1,v2 or --space key=loguniform:LO:HI "
            "(or a sweep: section with grid or space in the config)"
        )
    if sampler == "grid":
        if spaces:
            raise UserError(
                f"--space {next(iter(spaces))}: a search space needs --random N or --tpe N; "
                "a grid sweep takes --grid values only"
            )
        dimensions = tuple(Dimension(key, "grid", tuple(values)) for key, values in grids.items())
        trials = math.prod(len(d.values) for d in dimensions)
    else:
        if trials is None:
            raise UserError(f"sweep.sampler {sampler}: say how many trials, with --{sampler} N or sweep.trials")
        # A random or TPE sweep picks grid values as choices.
        dimensions = tuple(
            [Dimension(key, "choice", tuple(values)) for key, values in grids.items()] + list(spaces.values())
        )
    if pruner is not None and pruner not in PRUNERS:
        raise UserError(f"--pruner {pruner}: unknown pruner; allowed: {', '.join(PRUNERS)}")
    pruning = Pruning(pruner or settings.pruner, settings.startup_trials, settings.min_epochs)
    return SweepPlan(sampler, trials, dimensions, settings.seed if seed is None else seed, pruning)


def check_values(plan: SweepPlan, data: dict[str, Any], source: SourceMap, monitor: str) -> None:
    """Every value the sweep may set must make a valid config that monitors the same metric.

    Checked before the first trial, so a typo fails now rather than in every trial.
    """
    for dimension in plan.dimensions:
        for text in dimension.candidates():
            trial_data = copy.deepcopy(data)
            try:
                trial_source = copy.copy(source)
                apply_overrides(trial_data, [f"{dimension.key}={text}"], trial_source)
                config = validate(trial_data, trial_source)
            except UserError as error:
                raise UserError(f"sweep value {dimension.key}={text}: {'; '.join(error.lines())}") from None
            if config.trainer.monitor != monitor:
                raise UserError(
                    f"sweep value {dimension.key}={text}: changes the monitored metric from {monitor} to "
                    f"{config.trainer.monitor}; a sweep ranks trials by one metric, so set trainer.monitor"
                )
