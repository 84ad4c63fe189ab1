"""What `trainctl list-*` shows of each registered component (the tables are drawn by
reports/tables.py). Reads metadata only: no torch, except `list-models NAME`, which builds the model
to name its parameters (torch is imported there)."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from rich.console import Group
from rich.table import Table

from trainctl.errors import UserError
from trainctl.registry import Entry, Registry
from trainctl.reports.tables import Column, RegistryRow, detail_view, heading, table
from trainctl.reports.tables import registry_table as draw_registry_table

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
    if isinstance(value, BaseModel):  # a nested section's default, e.g. an audio dataset's features
        return "{" + ", ".join(f"{key}: {yaml_value(item)}" for key, item in value.model_dump().items()) + "}"
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
    Every text in it is the registry's own (a plugin's too), shown as it is."""
    entries = entries if entries is not None else list(registry)
    rows = []
    for entry in entries:
        task = getattr(entry.info, "task", None)  # the registries whose components have a task
        details = []
        for key, label in fields:
            value = getattr(entry.info, key)  # LISTING_FIELDS names fields of each registry's metadata
            if value is not None and value is not False:  # a flag that is off is not listed
                details.append((label, str(value)))
        source = None if entry.source.is_builtin else str(entry.source)
        rows.append(
            RegistryRow(
                entry.name, str(task) if task else None, entry.summary, details, describe_params(entry.params), source
            )
        )
    return draw_registry_table(title, rows)


LISTING_FIELDS: dict[str, list[tuple[str, str]]] = {
    "losses": [("formula", "formula"), ("target_text", "target"), ("output", "model output"), ("use_when", "use when")],
    "datasets": [("input", "input")],
    "models": [("input", "input")],
    "optimizers": [],
    "schedulers": [("interval", "steps every")],
    "metrics": [("goal", "better")],
    "transforms": [("random", "random per sample and epoch"), ("applies_to", "applies to")],
}


def loss_details(entry: Entry[LossInfo]) -> Group:
    """One loss in full, ending with a config snippet that uses it with its defaults."""
    import yaml

    info = entry.info
    example = info.example
    if example is None:
        example = {key: (list(v) if isinstance(v, tuple) else v) for key, v in _defaults(entry.params).items()}
    snippet = yaml.safe_dump({"loss": {"name": entry.name, **example}}, sort_keys=False, allow_unicode=True)
    fields = [
        ("task", info.task),
        ("formula", info.formula),
        ("target", info.target_text),
        ("model output", info.output),
        ("parameters", "\n".join(describe_params(entry.params)) or "none"),
        ("use when", info.use_when),
    ]
    if not entry.source.is_builtin:
        fields.append(("from plugin", str(entry.source)))
    return detail_view(entry.name, entry.summary, fields, snippet)


def _defaults(params: type[BaseModel]) -> dict[str, Any]:
    return {name: info.default for name, info in params.model_fields.items() if not info.is_required()}


# The model a plain `list-models NAME` builds: the default dataset (digits) and the model's defaults.
DEFAULT_LAYER_CONFIG: dict[str, Any] = {"loss": {"name": "cross_entropy"}, "optimizer": {"name": "adam"}}


def model_layers(name: str, config_path: Path | None = None, overrides: list[str] | None = None) -> Group:
    """Every parameter of model `name` as training builds it: qualified name (what model.freeze and
    optimizer.groups select), shape, size and whether it trains. The shapes depend on the data, so
    the model is built on the config's dataset and parameters, or without one on the default dataset
    with the model's defaults."""
    import torch

    from trainctl.config.loading import load_config, load_config_data
    from trainctl.training.build import build_data, build_model

    if config_path is None:
        config = load_config_data({**DEFAULT_LAYER_CONFIG, "model": {"name": name}}, overrides, "list-models")
    else:
        config = load_config(config_path, overrides)
        if config.model.name != name:
            raise UserError(f"--config: {config_path} trains model {config.model.name!r}, not {name!r}")
    with config.errors_located():
        data = build_data(config, torch.device("cpu"))
        model = build_model(config, data)
    rows = [
        [
            parameter,
            "×".join(map(str, tensor.shape)) or "scalar",
            f"{tensor.numel():,}",
            "yes" if tensor.requires_grad else "frozen",
        ]
        for parameter, tensor in model.named_parameters()
    ]
    trainable = sum(tensor.numel() for tensor in model.parameters() if tensor.requires_grad)
    total = sum(tensor.numel() for tensor in model.parameters())
    title = (
        f"model {name!r} on dataset {config.dataset.name!r} (input {'×'.join(map(str, data.input_shape))}, "
        f"{data.plan.num_outputs} outputs): {total:,} parameters, {trainable:,} trainable"
    )
    columns = [Column("parameter", no_wrap=True), Column("shape"), Column("size", justify="right"), Column("trains")]
    return Group(heading(title), table(columns, rows))
