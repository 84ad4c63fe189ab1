"""The registry: lookups with suggestions, duplicate checks, parameter models, listings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pytest
from pydantic import Field, ValidationError

from trainctl.components.registries import REGISTRIES
from trainctl.errors import UserError
from trainctl.registry import Registry
from trainctl.reports.listing import describe_params


@dataclass(frozen=True, kw_only=True)
class WidgetInfo:
    """A widget's metadata: none."""


def make_registry() -> Registry:
    registry = Registry("widget", WidgetInfo)

    @registry.register("spinner", summary="spins")
    def spinner(context, *, speed: Annotated[float, Field(gt=0)] = 1.0, sizes: list[int] = (1, 2)):
        return context, speed, sizes

    return registry


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UserError) as caught:
        make_registry().get("spiner")
    assert str(caught.value) == "unknown widget 'spiner' (did you mean 'spinner'?); registered: spinner"


def test_duplicate_registration_is_refused():
    registry = make_registry()
    with pytest.raises(ValueError, match="widget 'spinner' is already registered"):
        registry.register("spinner", summary="again")(lambda context: None)


def test_parameters_come_from_the_builder_signature():
    entry = make_registry().get("spinner")
    assert entry.params.model_validate({}).model_dump() == {"speed": 1.0, "sizes": [1, 2]}
    with pytest.raises(ValidationError):
        entry.params.model_validate({"speed": 0})
    with pytest.raises(ValidationError):
        entry.params.model_validate({"colour": "red"})
    assert entry.build("ctx", {"speed": 2.0, "sizes": [3]}) == ("ctx", 2.0, [3])
    assert describe_params(entry.params) == ["speed: float > 0 = 1.0", "sizes: [int, ...] = [1, 2]"]


def test_registries_hold_the_agreed_components():
    assert {name: REGISTRIES[name].names() for name in ("datasets", "optimizers", "schedulers")} == {
        "datasets": [
            "digits",
            "iris",
            "wine",
            "breast_cancer",
            "diabetes",
            "synthetic_regression",
            "csv",
            "mnist",
            "fashion_mnist",
            "kmnist",
            "cifar10",
            "cifar100",
            "image_folder",
            "text",
            "audio_folder",
        ],
        "optimizers": ["sgd", "adam", "adamw", "rmsprop"],
        "schedulers": ["step", "cosine", "linear", "onecycle", "reduce_on_plateau"],
    }
    assert {"mse", "l1", "huber", "smooth_l1", "cross_entropy", "nll", "bce_with_logits", "kl_div"} <= set(
        REGISTRIES["losses"].names()
    )
    assert {"mlp", "cnn", "rnn", "embedding_bag"} <= set(REGISTRIES["models"].names())
    assert {"resize", "center_crop", "random_crop", "horizontal_flip", "normalize"} <= set(
        REGISTRIES["transforms"].names()
    )


@pytest.mark.parametrize("name", REGISTRIES["losses"].names())
def test_every_loss_documents_itself(name):
    info = REGISTRIES["losses"].get(name).info
    assert info.formula and info.output and info.use_when
    if info.composite:
        assert info.task == "any"
        return
    assert info.task in ("classification", "regression", "distribution")
    assert info.target in ("index", "value", "binary", "distribution")
    assert info.input in ("logits", "log-probabilities", "values")
