"""Registries printed as tables, for `trainctl list-*`. Reads metadata only: no torch."""

from __future__ import annotations

import types
import typing
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from trainctl.registry import Entry, Registry

if TYPE_CHECKING:
    from trainctl.components.losses import LossInfo

_BOUNDS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"))


def type_name(annotation: Any) -> str:
    """A parameter's type as a config writes its values: `true|false`, `[int, ...] or null`."""
    if annotation is bool:
        return "true|false"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return "|".join(yaml_value(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else type_name(a) for a in args)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "{" + ", ".join(annotation.model_fields) + ", ...}"
    if origin in (list, tuple):
        inner = type_name(args[0]) if args else "any"
        return f"[{inner}, ...]" if origin is list else f"({', '.join(type_name(a) for a in args)})"
    return getattr(annotation, "__name__", str(annotation))


def yaml_value(value: Any) -> str:
    """A value as YAML writes it: true, null, [0.08, 1.0] (Python would say True, None, (0.08, 1.0))."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(item) for item in value) + "]"
    return str(value)


def _bounds(metadata: list[Any]) -> str:
    parts = []
    for item in metadata:
        for attribute, symbol in _BOUNDS:
            value = getattr(item, attribute, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
    return " and ".join(parts)


def describe_params(params: type[BaseModel]) -> list[str]:
    """One line per parameter: `name: type (bounds) = default`."""
    lines = []
    for name, info in params.model_fields.items():
        text = f"{name}: {type_name(info.annotation)}"
        bounds = _bounds(info.metadata)
        if bounds:
            text += f" {bounds}"
        if not info.is_required():
            text += f" = {yaml_value(info.default)}"
        lines.append(text)
    return lines


def registry_table(title: str, registry: Registry, fields: list[tuple[str, str]], entries: list | None = None) -> Table:
    """A table of `registry`: name and task, a details column built from `fields`, and the parameters.

    Every text in it is the registry's own (a plugin's too) and goes in as `Text`, never as rich
    markup, which would swallow "in [sigma_min, sigma_max]" as an unknown tag. Names are never cut:
    their column is as wide as the longest name; details and parameters wrap beside it.
    """
    entries = entries if entries is not None else list(registry)
    table = Table(title=title, show_lines=True, title_justify="left", expand=True)
    # The task goes under the name rather than in a column of its own: at 80 columns every column counts.
    table.add_column("name", no_wrap=True, min_width=max((len(e.name) for e in entries), default=4))
    table.add_column("details", ratio=3, overflow="fold")
    table.add_column("parameters", ratio=2, overflow="fold")
    for entry in entries:
        name = Text(entry.name, style="bold cyan")
        task = getattr(entry.info, "task", None)  # the registries whose components have a task
        if task:
            name.append(f"\n{task}", style="default")
        details = Text(entry.summary)
        for key, label in fields:
            value = getattr(entry.info, key)  # LISTING_FIELDS names fields of each registry's metadata
            if value is not None and value is not False:  # a flag that is off is not listed
                details.append(f"\n{label}: ", style="dim")
                details.append(str(value))
        table.add_row(name, details, Text("\n".join(describe_params(entry.params)) or "—"))
    return table


LISTING_FIELDS: dict[str, list[tuple[str, str]]] = {
    "losses": [("formula", "formula"), ("target_text", "target"), ("output", "model output"), ("use_when", "use when")],
    "datasets": [("input", "input")],
    "models": [("input", "input")],
    "optimizers": [],
    "schedulers": [("interval", "steps every")],
    "metrics": [("goal", "better")],
    "transforms": [("random", "random per sample and epoch")],
}


def loss_details(entry: Entry[LossInfo]) -> Group:
    """One loss in full, ending with a config snippet that uses it with its defaults."""
    import yaml

    info = entry.info
    example = info.example
    if example is None:
        example = {key: (list(v) if isinstance(v, tuple) else v) for key, v in _defaults(entry.params).items()}
    snippet = yaml.safe_dump({"loss": {"name": entry.name, **example}}, sort_keys=False, allow_unicode=True)
    rows = Table.grid(padding=(0, 2))
    rows.add_column(style="bold")
    rows.add_column()
    for label, value in (
        ("task", info.task),
        ("formula", info.formula),
        ("target", info.target_text),
        ("model output", info.output),
        ("parameters", "\n".join(describe_params(entry.params)) or "none"),
        ("use when", info.use_when),
    ):
        rows.add_row(label, Text(str(value)))
    return Group(
        Text.assemble((entry.name, "bold cyan"), f" — {entry.summary}"),
        rows,
        "",
        "[bold]example[/bold]",
        Syntax(snippet, "yaml", theme="ansi_dark", background_color="default"),
    )


def _defaults(params: type[BaseModel]) -> dict[str, Any]:
    return {name: info.default for name, info in params.model_fields.items() if not info.is_required()}
