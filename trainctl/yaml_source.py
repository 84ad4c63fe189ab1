"""Reading config YAML safely, remembering the line each key stands on, and applying `--set`.

The loader is PyYAML's SafeLoader (no `!!python/...` tags) with one change: YAML 1.1 reads `1e-3`
as a string because it lacks a dot, while every user means the number, so floats follow YAML 1.2.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from trainctl.errors import UserError


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader that reads YAML 1.2 floats such as `1e-3` and `5E+2` as numbers."""


_FLOAT_1_2 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
ConfigLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))

Key = tuple[str | int, ...]


class SourceMap:
    """Where each dotted key of a config came from: `file:line`, or the `--set` that changed it."""

    def __init__(self, filename: str, lines: dict[Key, int]):
        self.filename = filename
        self._lines = lines
        self._overrides: dict[Key, str] = {}

    def mark_override(self, key: Key, text: str) -> None:
        self._overrides = {k: v for k, v in self._overrides.items() if k[: len(key)] != key}
        self._overrides[key] = text

    def where(self, key: Key) -> str:
        """The closest known place for `key`, walking up to its parents if it is not in the file."""
        for end in range(len(key), -1, -1):
            prefix = key[:end]
            if prefix in self._overrides:
                return self._overrides[prefix]
            if prefix in self._lines:
                return f"{self.filename}:{self._lines[prefix]}"
        return self.filename


def _record_lines(node: yaml.Node, key: Key, lines: dict[Key, int]) -> None:
    if key:  # the document itself has no line worth naming: a missing top-level key is in the file
        lines.setdefault(key, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = key + (key_node.value,)
            lines[child] = key_node.start_mark.line + 1
            _record_lines(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, key + (index,), lines)


def _yaml_error(filename: str, error: yaml.YAMLError) -> UserError:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
    problem = getattr(error, "problem", None) or str(error)
    if "python/" in str(error):
        problem += " (python tags are not allowed: a config names registered components only)"
    return UserError(f"{where}: invalid YAML: {problem}")


def load_config_file(path: str | Path) -> tuple[dict[str, Any], SourceMap]:
    path = Path(path)
    filename = str(path)
    if not path.is_file():
        raise UserError(f"{filename}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{filename}: cannot read config: {error}") from None
    try:
        node = yaml.compose(text, Loader=ConfigLoader)
        data = yaml.load(text, Loader=ConfigLoader)
    except yaml.YAMLError as error:
        raise _yaml_error(filename, error) from None
    if data is None:
        raise UserError(f"{filename}: the config is empty")
    if not isinstance(data, dict):
        raise UserError(f"{filename}:1: the config must be a mapping of keys to values")
    lines: dict[Key, int] = {}
    _record_lines(node, (), lines)
    return data, SourceMap(filename, lines)


def parse_scalar(text: str, origin: str) -> Any:
    """A `--set` value read as YAML, so `5`, `1e-3`, `true` and `[64, 64]` mean what they say."""
    try:
        return yaml.load(text, Loader=ConfigLoader) if text.strip() else ""
    except yaml.YAMLError as error:
        raise UserError(f"{origin}: invalid value {text!r}: {getattr(error, 'problem', error)}") from None


def apply_overrides(data: dict[str, Any], overrides: list[str], source: SourceMap) -> None:
    """Apply `key.path=value` overrides in order, creating mappings on the way as needed."""
    for override in overrides:
        origin = f"--set {override}"
        dotted, sep, text = override.partition("=")
        keys = dotted.strip().split(".")
        if not sep or not all(keys):
            raise UserError(f"{origin}: expected key.path=value, e.g. --set optimizer.lr=0.01")
        node = data
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                parent = ".".join(keys[: depth + 1])
                raise UserError(f"{origin}: {parent} is {child!r}, not a mapping, so it has no key {keys[depth + 1]!r}")
            node = child
        node[keys[-1]] = parse_scalar(text, origin)
        source.mark_override(tuple(keys), f"--set {dotted.strip()}")
