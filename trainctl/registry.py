"""A registry is a dict of named builders plus the metadata the listings show.

A builder is a plain function. Its first positional parameter receives the build context (the
dataset's shapes, the optimizer, ...); its keyword-only parameters are what a config may set, and
their type hints and defaults are the single source of truth for validation, for the resolved
config and for `trainctl list-*`. Nothing here imports torch, so listings stay fast.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from trainctl.errors import UserError, shown


@dataclass(frozen=True)
class Entry:
    name: str
    builder: Callable[..., Any]
    params: type[BaseModel]  # validates the keyword-only parameters of `builder`
    summary: str
    info: dict[str, Any] = field(default_factory=dict)  # registry-specific metadata (task, formula, ...)

    def build(self, context: Any, params: dict[str, Any]) -> Any:
        return self.builder(context, **params)


def params_model(builder: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model of the builder's keyword-only parameters, unknown keys forbidden."""
    hints = typing.get_type_hints(builder, include_extras=True)
    fields: dict[str, Any] = {}
    for name, parameter in inspect.signature(builder).parameters.items():
        if parameter.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[name] = (hints.get(name, Any), default)
    # validate_default turns tuple defaults into lists, so a resolved config dumps as plain YAML.
    # allow_inf_nan=False: no parameter means anything at inf or NaN, and either would train to NaN.
    config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)
    return create_model(f"{builder.__name__}_params", __config__=config, **fields)


def suggest(name: str, choices: typing.Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choices, or ''."""
    if len(name) > 100:  # no registered name is that long, and comparing costs time
        return ""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


class Registry:
    """Named builders of one kind (losses, models, ...), registered with a decorator."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, *, summary: str, **info: Any) -> Callable:
        def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = Entry(name, builder, params_model(builder), summary, info)
            return builder

        return decorator

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> typing.Iterator[Entry]:
        return iter(self._entries.values())

    def names(self) -> list[str]:
        return list(self._entries)

    def unknown_name_message(self, name: Any) -> str:
        return (
            f"unknown {self.kind} {shown(name)}{suggest(str(name), self._entries)}; "
            f"registered: {', '.join(self._entries)}"
        )

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UserError(self.unknown_name_message(name)) from None
