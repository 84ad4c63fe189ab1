"""The `list-*` tables: every name whole at 80 columns, and the registries' text shown as written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pytest
from pydantic import TypeAdapter
from rich.console import Console

from trainctl.components.registries import REGISTRIES
from trainctl.registry import Registry
from trainctl.reports.listing import (
    LISTING_FIELDS,
    describe_params,
    loss_details,
    registry_table,
)

from helpers import run_cli


def listing_at(columns: int, command: str):
    """`trainctl COMMAND` in-process with COLUMNS set, as a terminal of that width sets it."""
    return run_cli(command, columns=columns)


LISTINGS = ["losses", "datasets", "models", "optimizers", "schedulers", "metrics", "transforms"]


def cells_of(output: str) -> list[list[str]]:
    """The table's cells line by line: the text between the vertical rules, stripped."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines() if line.startswith("│")]


@pytest.mark.parametrize("key", LISTINGS)
def test_listing_at_80_columns_shows_every_name_whole(key):
    result = listing_at(80, f"list-{key}")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.stdout
    first_column = {row[0] for row in cells_of(result.stdout)}
    parameter_lines = [row[-1] for row in cells_of(result.stdout)]
    for entry in REGISTRIES[key]:
        assert entry.name in first_column, entry.name
        for parameter in entry.params.model_fields:
            # A parameter's name starts a line of the parameters column, whole, with its colon.
            assert any(line.startswith(f"{parameter}:") for line in parameter_lines), (entry.name, parameter)


@pytest.mark.parametrize("key", LISTINGS)
def test_listing_shows_each_summary_as_written(key):
    """Wide enough for no wrapping, every summary appears verbatim: brackets are text, not markup."""
    result = listing_at(400, f"list-{key}")
    assert result.exit_code == 0
    for entry in REGISTRIES[key]:
        assert entry.summary in result.stdout, entry.summary


def test_bracketed_transform_text_survives():
    result = listing_at(400, "list-transforms")
    assert "a random sigma in [sigma_min, sigma_max]" in result.stdout
    assert "random angle in [-degrees, degrees]" in result.stdout


def test_markup_in_a_plugins_registry_is_printed_as_is():
    @dataclass(frozen=True, kw_only=True)
    class ThingInfo:
        note: str

    registry = Registry("thing", ThingInfo)

    def builder(context, *, choice: str = "[bold]"):
        return choice

    registry.register("odd[name]", summary="Keeps [red]this[/red] and [b, c]", note="[dim]x[/dim]")(builder)
    console = Console(width=80, record=True)
    console.print(registry_table("things", registry, [("note", "note")]))
    text = console.export_text()
    assert "odd[name]" in text
    assert "Keeps [red]this[/red] and [b, c]" in text
    assert "note: [dim]x[/dim]" in text
    assert "choice: str = [bold]" in text


def test_loss_details_show_brackets():
    entry = REGISTRIES["losses"].get("cross_entropy")
    console = Console(width=200, record=True)
    console.print(loss_details(entry))
    text = console.export_text()
    assert text.startswith(f"cross_entropy — {entry.summary}")
    assert "label_smoothing: float" in text


def test_listing_fields_cover_every_registry():
    assert set(LISTING_FIELDS) == set(LISTINGS) == set(REGISTRIES)


@pytest.mark.parametrize("key", LISTINGS)
def test_listed_defaults_are_written_as_a_config_writes_them(key):
    """Each default as listed, read back as YAML, is a valid value equal to the default itself."""
    import yaml

    for entry in REGISTRIES[key]:
        for line, info in zip(describe_params(entry.params), entry.params.model_fields.values()):
            if info.is_required():
                continue
            field = TypeAdapter(Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation)
            listed = field.validate_python(yaml.safe_load(line.rsplit(" = ", 1)[1]))
            assert field.dump_python(listed, mode="json") == field.dump_python(
                field.validate_python(info.default), mode="json"
            ), line


def test_types_are_written_as_a_config_writes_them():
    models = describe_params(REGISTRIES["models"].get("mlp").params)
    assert "batch_norm: true|false = false" in models
    transforms = describe_params(REGISTRIES["transforms"].get("normalize").params)
    assert transforms[0] == "mean: [float, ...] or null = null"
