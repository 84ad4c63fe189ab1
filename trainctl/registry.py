"""A registry is a dict of named builders plus the metadata the listings show.

A builder is a plain function. Its first positional parameter receives the build context (the
dataset's shapes, the optimizer, ...); its keyword-only parameters are what a config may set, and
their type hints and defaults are the single source of truth for validation, for the resolved
config and for `trainctl list-*`. Nothing here imports torch, so listings stay fast.

Each registry has its own metadata class, a frozen keyword-only dataclass (a loss's task, target
and formula; a scheduler's interval; ...). `register` builds it from its keyword arguments, so
mypy checks a registration against the class, and a registration that mypy never sees (a
plugin's) fails at import with a TypeError naming the field that is missing, unknown or invalid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Literal, ParamSpec, TypeVar

from pydantic import BaseModel, ConfigDict, create_model

from trainctl.errors import UserError, shown

Info = TypeVar("Info")  # a registry's metadata class: LossInfo, SchedulerInfo, ...
InfoFields = ParamSpec("InfoFields")  # its constructor's keyword arguments, which `register` takes
Builder = TypeVar("Builder", bound=Callable[..., Any])


@dataclass(frozen=True)
class Source:
    """Where a component comes from: trainctl itself, or the plugin that registered it."""

    kind: Literal["trainctl", "distribution", "file", "module"]
    name: str  # "trainctl", a distribution's name, a plugin file's absolute path, a module's name
    version: str | None = None  # a distribution's version
    sha256: str | None = None  # a plugin file's content hash

    @property
    def is_builtin(self) -> bool:
        return self.kind == "trainctl"

    def __str__(self) -> str:
        if self.kind == "distribution":
            return f"{self.name} {self.version}"
        if self.kind == "file":
            return f"{self.name} (sha256 {(self.sha256 or '')[:12]})"
        return self.name


BUILTIN = Source("trainctl", "trainctl")
_registering = [BUILTIN]  # the source of what registers now: a plugin while it is imported


@contextlib.contextmanager
def registering_from(source: Source) -> Iterator[None]:
    """Everything registered inside this block comes from `source` (a plugin being imported)."""
    _registering.append(source)
    try:
        yield
    finally:
        _registering.pop()


@dataclass(frozen=True)
class Entry(Generic[Info]):
    name: str
    builder: Callable[..., Any]
    params: type[BaseModel]  # validates the keyword-only parameters of `builder`
    summary: str
    info: Info  # the registry's metadata (task, formula, ...)
    source: Source = BUILTIN

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


class Registry(Generic[InfoFields, Info]):
    """Named builders of one kind (losses, models, ...), registered with a decorator.

    `Registry("loss", LossInfo)` is a `Registry[..., LossInfo]`: each entry's `info` is a LossInfo,
    and `register` takes LossInfo's fields as keyword arguments.
    """

    def __init__(self, kind: str, info_class: Callable[InfoFields, Info]):
        if not _is_dataclass_class(info_class):
            raise TypeError(f"the metadata of a {kind} registry must be a dataclass, not {info_class!r}")
        self.kind = kind
        self.info_class = info_class
        self._entries: dict[str, Entry[Info]] = {}

    def register(
        self, name: str, summary: str, *args: InfoFields.args, **info: InfoFields.kwargs
    ) -> Callable[[Builder], Builder]:
        metadata = self._metadata(name, args, info)

        def decorator(builder: Builder) -> Builder:
            source = _registering[-1]
            if source.is_builtin and not builder.__module__.startswith("trainctl."):
                # Registered by a script or notebook that imported trainctl.register itself: its
                # module is the source, so a run records it and eval asks for it by that name.
                source = Source("module", builder.__module__)
            existing = self._entries.get(name)
            if existing is not None:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered by {existing.source}; {source} registers it too"
                )
            self._entries[name] = Entry(name, builder, params_model(builder), summary, metadata, source)
            return builder

        return decorator

    def _metadata(self, name: str, args: tuple[Any, ...], given: dict[str, Any]) -> Info:
        """One registration's metadata object; a TypeError that names the field where it cannot be one."""
        where = f"{self.kind} {name!r}"
        fields = _fields_of(self.info_class)
        if args:
            raise TypeError(f"{where}: metadata fields are given by name ({fields.class_name}: {fields.listed()})")
        unknown = [key for key in given if key not in fields.names]
        if unknown:
            raise TypeError(
                f"{where}: unknown metadata field {unknown[0]!r}{suggest(unknown[0], fields.names)}; "
                f"{fields.class_name} has: {fields.listed()}"
            )
        missing = [key for key in fields.required if key not in given]
        if missing:
            raise TypeError(
                f"{where}: missing metadata field{'s' * (len(missing) > 1)} {', '.join(map(repr, missing))}; "
                f"{fields.class_name} requires: {', '.join(fields.required)}"
            )
        for key, value in given.items():
            allowed = fields.allowed.get(key)
            if allowed is not None and value not in allowed:
                raise TypeError(
                    f"{where}: metadata field {key!r} is {value!r}; allowed: {', '.join(map(repr, allowed))}"
                )
        try:
            return self.info_class(**given)  # type: ignore[call-arg]  # checked against the fields above
        except (TypeError, ValueError) as error:  # a rule between fields, which the class checks itself
            raise TypeError(f"{where}: {error}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> typing.Iterator[Entry[Info]]:
        return iter(self._entries.values())

    def names(self) -> list[str]:
        return list(self._entries)

    def snapshot(self) -> dict[str, Entry[Info]]:
        """The entries as they are now, for `restore`: a warm sweep worker puts them back before each
        trial, so that what one trial registered is gone for the next, as in a fresh process."""
        return dict(self._entries)

    def restore(self, entries: dict[str, Entry[Info]]) -> None:
        self._entries = dict(entries)

    def unknown_name_message(self, name: Any) -> str:
        return (
            f"unknown {self.kind} {shown(name)}{suggest(str(name), self._entries)}; "
            f"registered: {', '.join(self._entries)}"
        )

    def get(self, name: str) -> Entry[Info]:
        try:
            return self._entries[name]
        except KeyError:
            raise UserError(self.unknown_name_message(name)) from None


def _is_dataclass_class(info: object) -> bool:
    return isinstance(info, type) and dataclasses.is_dataclass(info)


@dataclass(frozen=True)
class _Fields:
    """What a metadata class accepts: its fields, the required ones, the values its Literal fields allow."""

    class_name: str
    names: list[str]
    required: list[str]
    allowed: dict[str, tuple[Any, ...]]

    def listed(self) -> str:
        return ", ".join(self.names) or "no fields"


@functools.cache
def _fields_of(info: Any) -> _Fields:
    fields = [field for field in dataclasses.fields(info) if field.init]
    hints = typing.get_type_hints(info)
    allowed = {field.name: values for field in fields if (values := _literal_values(hints[field.name])) is not None}
    required = [
        field.name
        for field in fields
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    ]
    return _Fields(info.__name__, [field.name for field in fields], required, allowed)


def _literal_values(hint: Any) -> tuple[Any, ...] | None:
    """The values `Literal[...]` or `Literal[...] | None` allows; None for any other type."""
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else ()
    if not options or not all(
        option is type(None) or typing.get_origin(option) is typing.Literal for option in options
    ):
        return None
    return tuple(
        value for option in options for value in (typing.get_args(option) if option is not type(None) else (None,))
    )
