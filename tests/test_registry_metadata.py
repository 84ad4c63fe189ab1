"""Registry metadata: one frozen dataclass per registry, built at registration, so a component with a
missing, unknown or disallowed field fails at import, and every registered one is complete."""

from __future__ import annotations

import dataclasses

import pytest

from trainctl.components.datasets import DatasetInfo
from trainctl.components.losses import LossInfo
from trainctl.components.registries import REGISTRIES
from trainctl.components.transforms import TransformInfo
from trainctl.registry import Registry
from trainctl.reports.listing import LISTING_FIELDS

# A complete regression loss; each test below spoils one thing in it.
LOSS = {
    "task": "regression",
    "target": "value",
    "input": "values",
    "formula": "mean(...)",
    "output": "values",
    "use_when": "...",
}


def register_loss(registry: Registry, **metadata) -> None:
    registry.register("my_loss", summary="A loss", **metadata)(lambda context: None)


def refused(**metadata) -> str:
    """The TypeError of registering `my_loss` with this metadata; the registry stays empty."""
    registry = Registry("loss", LossInfo)
    with pytest.raises(TypeError) as caught:
        register_loss(registry, **metadata)
    assert "my_loss" not in registry
    return str(caught.value)


def test_complete_metadata_is_kept_as_given():
    registry = Registry("loss", LossInfo)
    register_loss(registry, **LOSS, layout="log_rate")
    info = registry.get("my_loss").info
    assert (info.task, info.target, info.input, info.layout, info.expected) == (
        "regression",
        "value",
        "values",
        "log_rate",
        None,
    )
    assert info.target_text == "real values (one-hot vectors on a classification dataset)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.task = "classification"  # type: ignore[misc]


def test_a_missing_required_field_is_named():
    assert refused(**{k: v for k, v in LOSS.items() if k != "formula"}) == (
        "loss 'my_loss': missing metadata field 'formula'; LossInfo requires: task, formula, output, use_when"
    )
    assert refused(task="regression", target="value", input="values") == (
        "loss 'my_loss': missing metadata fields 'formula', 'output', 'use_when'; "
        "LossInfo requires: task, formula, output, use_when"
    )


def test_a_loss_without_its_target_is_refused_unless_composite():
    assert refused(**{k: v for k, v in LOSS.items() if k != "target"}) == (
        "loss 'my_loss': missing metadata field 'target' (every loss but a composite)"
    )
    composite = {**LOSS, "task": "any", "composite": True}
    assert refused(**composite) == (
        "loss 'my_loss': a composite loss takes its target and input from its terms: give neither"
    )
    assert refused(**{**LOSS, "task": "any"}) == (
        "loss 'my_loss': task 'any' is for composite losses, and a composite's task is 'any'"
    )


def test_an_unknown_field_is_named_with_the_closest():
    assert refused(**LOSS, targte="value") == (
        "loss 'my_loss': unknown metadata field 'targte' (did you mean 'target'?); LossInfo has: task, "
        "formula, output, use_when, target, input, layout, expected, composite, example"
    )


def test_a_value_outside_a_literal_field_is_refused_with_the_allowed_ones():
    assert refused(**{**LOSS, "task": "regresion"}) == (
        "loss 'my_loss': metadata field 'task' is 'regresion'; "
        "allowed: 'classification', 'regression', 'distribution', 'any'"
    )
    assert refused(**{**LOSS, "expected": "ln_3"}) == (
        "loss 'my_loss': metadata field 'expected' is 'ln_3'; allowed: 'ln_classes', 'ln_2', None"
    )


def test_a_transform_must_say_whether_it_is_random():
    # Left out, a random transform would pass for a fixed one and be allowed in `eval` lists.
    registry = Registry("transform", TransformInfo)
    with pytest.raises(TypeError, match=r"^transform 'jitter': missing metadata field 'random'; "):
        registry.register("jitter", summary="Jitter")(lambda context: None)


def test_a_dataset_of_a_file_gives_its_task_reader():
    registry = Registry("dataset", DatasetInfo)
    with pytest.raises(TypeError, match=r"^dataset 'table': a dataset whose task is 'from the file' gives task_of"):
        registry.register("table", summary="A table", task="from the file", input="columns")(lambda context: None)


def test_registry_metadata_must_be_a_dataclass():
    with pytest.raises(TypeError, match=r"^the metadata of a thing registry must be a dataclass, not <class 'dict'>"):
        Registry("thing", dict)


# ---- every registered component -------------------------------------------------------------------

TASKS = {"classification", "regression"}


def text(value) -> bool:
    return isinstance(value, str) and bool(value)


def complete_loss(info: LossInfo) -> bool:
    if info.composite:
        own = info.task == "any" and info.target is None and info.input is None
        own = own and info.target_text == "what the terms expect"
    else:
        own = info.task in TASKS | {"distribution"} and info.target in {"index", "value", "binary", "distribution"}
        own = own and info.input in {"logits", "log-probabilities", "values"}
    return (
        own
        and all(text(value) for value in (info.formula, info.output, info.use_when, info.target_text))
        and info.layout in {"values", "log_rate", "mean_variance"}
        and info.expected in {"ln_classes", "ln_2", None}
    )


def complete_dataset(info: DatasetInfo) -> bool:
    if info.task == "from the file":
        task = callable(info.task_of)
    else:
        task = info.task in TASKS and info.task_of is None
    return task and text(info.input) and isinstance(info.images, bool)


COMPLETE = {
    "losses": complete_loss,
    "datasets": complete_dataset,
    "metrics": lambda info: info.task in TASKS and info.goal in {"min", "max"},
    "models": lambda info: text(info.input),
    "optimizers": lambda info: dataclasses.asdict(info) == {},
    "schedulers": lambda info: info.interval in {"epoch", "step"},
    "transforms": lambda info: isinstance(info.random, bool),
}
COMPONENTS = [(key, entry.name) for key, registry in REGISTRIES.items() for entry in registry]


def test_every_registry_has_its_check():
    assert set(COMPLETE) == set(REGISTRIES)


@pytest.mark.parametrize(("key", "name"), COMPONENTS)
def test_every_registered_component_has_complete_metadata(key, name):
    registry = REGISTRIES[key]
    info = registry.get(name).info
    assert type(info) is registry.info_class
    assert COMPLETE[key](info), info


def test_transforms_named_random_are_marked_random():
    named = {entry.name: entry.info.random for entry in REGISTRIES["transforms"] if entry.name.startswith("random_")}
    assert named == {"random_crop": True, "random_resized_crop": True, "random_erasing": True}


@pytest.mark.parametrize("key", list(LISTING_FIELDS))
def test_listed_fields_are_fields_of_the_registrys_metadata(key):
    """The listing reads these by name: each must be a field or a property of the metadata class."""
    info = REGISTRIES[key].info_class
    readable = {field.name for field in dataclasses.fields(info)} | {
        name for name, value in vars(info).items() if isinstance(value, property)
    }
    assert {field for field, _label in LISTING_FIELDS[key]} <= readable
