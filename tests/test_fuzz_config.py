"""Fuzzing configs and `--set` values drawn from the schema: whatever the values, `trainctl validate`
exits 0 or 2 with one line per problem, never 1 with a traceback.

Keys come from the schema itself (the file's sections and every registered component's
parameters), values are valid ones and hostile ones of every type. Part of the draws go into the
file, part into `--set`. Derandomized, so CI sees the same examples every run.
"""

from __future__ import annotations

import math
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainctl.components.registries import DATASETS, LOSSES, MODELS, OPTIMIZERS, SCHEDULERS
from trainctl.config.loading import (
    EarlyStoppingSettings,
    EmaSettings,
    LoggingSettings,
    SwaSettings,
    SweepSettings,
    TrainerSettings,
    _Data,
    _File,
    load_config,
)
from trainctl.errors import LINE_LENGTH, UserError
from trainctl.sweeps.plan import yaml_text

from helpers import run_cli

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Values that would make a valid config slow or reach outside the test, not wrong: the fuzzer
# leaves them alone (downloads, compiling, scanning folders given as paths).
FIXED = {"data.download": False, "trainer.compile": False}
PATH_KEYS = {"path", "root", "val_root", "test_root", "weights"}
# Small enough that a valid draw trains in milliseconds; hostile sizes are far past every bound.
SMALL_INTS = st.integers(min_value=-3, max_value=40)
HOSTILE_INTS = st.sampled_from([-(2**63) - 1, -(2**31), 2**31, 2**53 + 1, 2**63, 2**64, 10**30, 10**400])
FLOATS = st.one_of(
    st.floats(min_value=-10, max_value=10),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 1e-3, 0.5, 0.999]),
)
TEXTS = st.one_of(
    st.text(max_size=12),  # any unicode, NUL included
    st.sampled_from(
        [
            "",
            "\0",
            "a\0b",
            "\ud800",
            "x" * 5000,
            "../..",
            "a/b",
            "名前",
            "🙂",
            "nan",
            "1e5",
            "relu",
            "auto",
            "cpu",
            "cuda",
            "val/loss",
            "val/accuracy",
            "32",
            "bf16",
        ]
    ),
)
PATHS = st.sampled_from(["", "nope.csv", "missing/folder", "\0", "x" * 300, "名前.csv", "a\nb", 5, None, [1]])


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), SMALL_INTS, HOSTILE_INTS, FLOATS, TEXTS)


def values() -> st.SearchStrategy[Any]:
    """Any value a YAML file can hold: scalars, lists (nested), mappings with unknown keys."""
    return st.recursive(
        scalars(),
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXTS, inner, max_size=3)),
        max_leaves=8,
    )


def _fields(model: Any, prefix: str) -> list[str]:
    return [f"{prefix}{name}" for name in model.model_fields]


def schema_keys() -> list[str]:
    """Every dotted key the schema knows, with every registered component's parameters."""
    keys = _fields(_File, "")
    keys += _fields(_Data, "data.") + _fields(TrainerSettings, "trainer.") + _fields(LoggingSettings, "logging.")
    keys += _fields(EarlyStoppingSettings, "trainer.early_stopping.") + _fields(SweepSettings, "sweep.")
    keys += _fields(EmaSettings, "trainer.ema.") + _fields(SwaSettings, "trainer.swa.")
    keys += ["data.transforms.train", "data.transforms.eval", "loss.terms"]
    for section, registry in {
        "data": DATASETS,
        "model": MODELS,
        "loss": LOSSES,
        "optimizer": OPTIMIZERS,
        "scheduler": SCHEDULERS,
    }.items():
        keys += [f"{section}.{name}" for entry in registry for name in entry.params.model_fields]
    return sorted(set(keys) - set(FIXED))


KEYS = schema_keys()
NAMES = {
    "data": [e.name for e in DATASETS if not e.info.images] + ["digts", ""],
    "model": [e.name for e in MODELS if e.name != "torchvision"] + ["mpl"],
    "loss": [e.name for e in LOSSES] + ["cross_entropi"],
    "optimizer": [e.name for e in OPTIMIZERS] + ["adma"],
    "scheduler": [e.name for e in SCHEDULERS] + ["cosin"],
}


@st.composite
def settings_for(draw: Any, key: str) -> Any:
    """A value for `key`: often one of its kind (a name, a small number), often anything at all."""
    leaf = key.rsplit(".", 1)[-1]
    section = key.split(".", 1)[0]
    if leaf in PATH_KEYS:
        return draw(PATHS)
    if leaf == "name" and section in NAMES:
        return draw(st.one_of(st.sampled_from(NAMES[section]), values()))
    return draw(st.one_of(SMALL_INTS.filter(lambda n: n > 0), FLOATS, TEXTS, values()))


def _of_type(annotation: Any) -> st.SearchStrategy[Any]:
    """Values of a parameter's declared type, small ones: these reach the builders and torch."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _of_type(args[0])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_of_type(arg) for arg in args))
    if origin is list:
        return st.lists(_of_type(args[0]) if args else st.integers(1, 8), max_size=3)
    simple = {
        bool: st.booleans(),
        int: st.integers(1, 24),
        float: st.floats(0.0, 0.99),
        str: st.sampled_from(["auto", "x"]),
        type(None): st.none(),
    }
    return simple.get(annotation, values())


@st.composite
def typed_component(draw: Any, section: str) -> dict[str, Any]:
    """A registered component of `section` with a few of its parameters set to values of their type."""
    registry = {"data": DATASETS, "model": MODELS, "loss": LOSSES, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS}[
        section
    ]
    entry = registry.get(draw(st.sampled_from([name for name in NAMES[section] if name in registry])))
    fields = {
        name: info
        for name, info in entry.params.model_fields.items()
        if f"{section}.{name}" not in FIXED and name not in PATH_KEYS and name != "terms"
    }
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True)) if fields else []
    return {"name": entry.name, **{name: draw(_of_type(fields[name].annotation)) for name in chosen}}


@st.composite
def typed_configs(draw: Any) -> tuple[dict[str, Any], list[str]]:
    """Configs of registered components with parameters of the right types: they pass the schema
    more often, so the builders, torch and the checks meet the values."""
    config: dict[str, Any] = {"name": "typed", "trainer": {"epochs": 1, "device": "cpu"}}
    for section in ("data", "model", "loss", "optimizer"):
        config[section] = draw(typed_component(section))
    if draw(st.booleans()):
        config["scheduler"] = draw(typed_component("scheduler"))
    config["data"]["batch_size"] = draw(st.integers(1, 64))
    return config, []


@st.composite
def hostile_configs(draw: Any) -> tuple[dict[str, Any], list[str]]:
    """A small valid config, then a few keys changed in the file and a few given with --set."""
    config: dict[str, Any] = {
        "name": "fuzz",
        "data": {"name": "iris", "batch_size": 16},
        "model": {"name": "mlp", "hidden": [8]},
        "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "adam", "lr": 0.01},
        "trainer": {"epochs": 1, "device": "cpu"},
    }
    for section in ("data", "model", "loss", "optimizer", "scheduler"):
        if draw(st.booleans()) and draw(st.booleans()):
            config[section] = {**config.get(section, {}), "name": draw(st.sampled_from(NAMES[section]))}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=3)):
        _put(config, key, draw(settings_for(key)))
    if draw(st.booleans()):
        config[draw(st.sampled_from(["mdoel", "x", "trainer"]))] = draw(values())  # an unknown or broken section
    overrides = []
    for key in draw(
        st.lists(st.one_of(st.sampled_from(KEYS), st.sampled_from(["model.nope", "a.b.c", "seed.x"])), max_size=3)
    ):
        overrides.append(f"{key}={yaml_text(draw(settings_for(key)))}")
    for key in FIXED:
        if key.split(".")[0] in config and isinstance(config[key.split(".")[0]], dict):
            config[key.split(".")[0]].pop(key.split(".")[1], None)
    return config, overrides


def _put(config: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[leaf] = value


def _write(config: dict[str, Any], folder: Path) -> Path:
    path = folder / "fuzz.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=False), encoding="utf-8")
    return path


def _one_line_problems(lines: list[str]) -> None:
    for line in lines:
        assert "Traceback" not in line
        assert len(line) <= LINE_LENGTH + 20, line[:200]


@pytest.mark.slow
@FUZZ
@given(st.one_of(hostile_configs(), typed_configs()))
def test_config_loading_never_raises_anything_but_a_user_error(case):
    """The layer where validate's exit code is decided, in-process: a Config or a UserError."""
    config, overrides = case
    with tempfile.TemporaryDirectory() as folder:
        path = _write(config, Path(folder))
        try:
            load_config(path, overrides)
        except UserError as error:
            _one_line_problems(error.lines())


@pytest.mark.slow
@settings(FUZZ, max_examples=80)
@given(st.one_of(hostile_configs(), typed_configs()))
def test_validate_exits_0_or_2_and_never_shows_a_traceback(case):
    """The real command: build, one forward and backward pass, the checks; through the CLI."""
    config, overrides = case
    with tempfile.TemporaryDirectory() as folder:
        path = _write(config, Path(folder))
        arguments = ["validate", str(path)]
        for override in overrides:
            arguments += ["--set", override]
        result = run_cli(*arguments)
    assert result.exit_code in (0, 2), f"exit {result.exit_code} for {arguments}: {result.exception!r}"
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert errors or "error:" in result.stdout
        _one_line_problems(errors)
