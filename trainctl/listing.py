"""Registries printed as tables, for `trainctl list-*`. Reads metadata only: no torch."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from rich.console import Group
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from trainctl.registry import Registry

_BOUNDS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"))


def type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return "|".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("none" if a is type(None) else type_name(a) for a in args)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "{" + ", ".join(annotation.model_fields) + ", ...}"
    if origin in (list, tuple):
        inner = type_name(args[0]) if args else "any"
        return f"[{inner}, ...]" if origin is list else f"({', '.join(type_name(a) for a in args)})"
    return getattr(annotation, "__name__", str(annotation))


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
            default = info.default
            text += f" = {list(default) if isinstance(default, tuple) else default}"
        lines.append(text)
    return lines


def registry_table(title: str, registry: Registry, fields: list[tuple[str, str]], entries: list | None = None) -> Table:
    """A table of `registry`: name, task, a details column built from `fields`, and the parameters."""
    has_task = any(entry.info.get("task") for entry in registry)
    table = Table(title=title, show_lines=True, title_justify="left", expand=True)
    table.add_column("name", style="bold cyan", no_wrap=True)
    if has_task:
        table.add_column("task", no_wrap=True)
    table.add_column("details", ratio=3)
    table.add_column("parameters", ratio=2)
    for entry in entries if entries is not None else list(registry):
        details = [entry.summary]
        for key, label in fields:
            if entry.info.get(key) is not None:
                details.append(f"[dim]{label}:[/dim] {escape(str(entry.info[key]))}")
        row = [entry.name, *([str(entry.info.get("task", ""))] if has_task else [])]
        row += ["\n".join(details), escape("\n".join(describe_params(entry.params))) or "—"]  # "[int, ...]" is not markup
        table.add_row(*row)
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


def loss_details(entry: Any) -> Group:
    """One loss in full, ending with a config snippet that uses it with its defaults."""
    import yaml

    info = entry.info
    example = info.get("example")
    if example is None:
        example = {key: (list(v) if isinstance(v, tuple) else v) for key, v in _defaults(entry.params).items()}
    snippet = yaml.safe_dump({"loss": {"name": entry.name, **example}}, sort_keys=False, allow_unicode=True)
    rows = Table.grid(padding=(0, 2))
    rows.add_column(style="bold")
    rows.add_column()
    for label, value in (
        ("task", info.get("task")),
        ("formula", info.get("formula")),
        ("target", info.get("target_text")),
        ("model output", info.get("output")),
        ("parameters", "\n".join(describe_params(entry.params)) or "none"),
        ("use when", info.get("use_when")),
    ):
        rows.add_row(label, escape(str(value)))
    return Group(f"[bold cyan]{entry.name}[/bold cyan] — {escape(entry.summary)}", rows, "", "[bold]example[/bold]",
                 Syntax(snippet, "yaml", theme="ansi_dark", background_color="default"))


def _defaults(params: type[BaseModel]) -> dict[str, Any]:
    return {name: info.default for name, info in params.model_fields.items() if not info.is_required()}
