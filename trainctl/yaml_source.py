"""Reading YAML safely and within bounds, remembering the line each key stands on, and applying `--set`.

Every YAML trainctl reads (config files, `--set` values, sweep values, a run folder's config.yaml)
goes through `read_yaml`. The loader is PyYAML's SafeLoader (no `!!python/...` tags) with these
changes:
- floats follow YAML 1.2: YAML 1.1 reads `1e-3` as a string because it lacks a dot, while every
  user means the number;
- the work is bounded by the document's size: aliases may not expand it beyond a budget
  proportional to its length ("billion laughs"), an alias may not stand inside its own anchor, and
  nesting stops at MAX_DEPTH, so no input ends in a RecursionError or fills the memory;
- a key given twice in one mapping is an error naming both lines, not silently the last one;
- a string may not hold a NUL character or a lone surrogate, which no file name, name or printout
  can carry.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from trainctl.errors import UserError, shown

Key = tuple[str | int, ...]

MAX_DEPTH = 64  # nesting levels; a config needs about five
MIN_VALUE_BUDGET = 10_000  # values any document may expand to through aliases ...
VALUES_PER_CHARACTER = 4  # ... and this many more per character of the document
MERGE_TAG = "tag:yaml.org,2002:merge"


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


class ConfigDumper(yaml.SafeDumper):
    """SafeDumper that quotes the strings ConfigLoader would read as floats (`"1e5"`), so what
    trainctl writes reads back the same."""


ConfigDumper.yaml_implicit_resolvers = ConfigLoader.yaml_implicit_resolvers


def dump_yaml(data: Any, **options: Any) -> str:
    return yaml.dump(data, Dumper=ConfigDumper, allow_unicode=True, **options)


class RefusedYAML(yaml.MarkedYAMLError):
    """Valid YAML that trainctl will not read: too large through aliases, recursive or too deep."""


class BoundedLoader(ConfigLoader):
    """ConfigLoader whose work is bounded by the length of the document it reads.

    Aliases let a 1 KB document stand for billions of values: PyYAML shares the node, but every
    walk over the data afterwards (line records, validation, dumping) pays for each copy. So
    composition counts the values each anchor expands to and stops at a budget proportional to the
    document's length. A self-containing alias and very deep nesting are refused here too, before
    any recursive walk meets them.
    """

    def __init__(self, text: str):
        super().__init__(text)
        self.characters = len(text)
        self.value_budget = MIN_VALUE_BUDGET + VALUES_PER_CHARACTER * len(text)
        self._values = 0  # values composed so far, an alias counting all its anchor expands to
        self._depth = 0
        self._anchor_sizes: dict[str, int] = {}
        self._open_anchors: set[str] = set()  # anchors whose node is still being composed

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            return self._compose_alias(parent, index, event)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise RefusedYAML(
                None, None, f"nested more than {MAX_DEPTH} levels deep; a config needs a handful", event.start_mark
            )
        anchor, before = event.anchor, self._values
        self._count(1, event)
        if anchor is not None:
            self._open_anchors.add(anchor)
        node = super().compose_node(parent, index)
        if anchor is not None:
            self._open_anchors.discard(anchor)
            self._anchor_sizes[anchor] = self._values - before
        self._depth -= 1
        return node

    def _compose_alias(self, parent: yaml.Node | None, index: Any, event: yaml.AliasEvent) -> yaml.Node:
        if event.anchor in self._open_anchors:
            raise RefusedYAML(
                None,
                None,
                f"the alias *{event.anchor} stands inside its own anchor &{event.anchor}, which makes a "
                "recursive structure; a config is a tree, so repeat the values instead",
                event.start_mark,
            )
        node = super().compose_node(parent, index)  # an undefined alias is PyYAML's error
        self._count(self._anchor_sizes.get(event.anchor, 1), event)
        return node

    def _count(self, values: int, event: yaml.Event) -> None:
        self._values += values
        if self._values > self.value_budget:
            alias = (
                f"the alias *{event.anchor} here repeats {values:,} values; "
                if isinstance(event, yaml.AliasEvent)
                else ""
            )
            raise RefusedYAML(
                None,
                None,
                f"the document expands to more than {self.value_budget:,} values through aliases "
                f"({alias}a document of {self.characters:,} characters may expand to {self.value_budget:,})",
                event.start_mark,
            )

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as error:  # e.g. a date 2024-13-45, an int of 5,000 digits
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read the value {shown(node.value)}: {str(error).split(';')[0]}", node.start_mark
            ) from None


def _where(origin: str, mark: Any, lines: bool, column: bool = True) -> str:
    if not lines or mark is None:
        return origin
    return f"{origin}:{mark.line + 1}:{mark.column + 1}" if column else f"{origin}:{mark.line + 1}"


def _yaml_error(origin: str, error: yaml.YAMLError, lines: bool) -> UserError:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if isinstance(error, RefusedYAML):
        return UserError(f"{_where(origin, mark, lines)}: {problem}")
    if "python/" in str(error):
        problem += " (python tags are not allowed: a config names registered components only)"
    elif "!replace" in str(error):  # the spelling some tools use; trainctl's is a key, which every YAML tool reads
        problem += " (to replace a base config's mapping instead of merging into it, write `_replace_: true` inside it)"
    return UserError(f"{_where(origin, mark, lines)}: invalid YAML: {problem}")


class Place:
    """Where a node stands, as messages name it: `file:line`, or only the origin of a `--set`."""

    def __init__(self, origin: str, numbered: bool):
        self.origin, self.numbered = origin, numbered

    def __call__(self, node: yaml.Node) -> str:
        return _where(self.origin, node.start_mark, self.numbered, column=False)

    def both_lines(self, first: int, second: int) -> str:
        if not self.numbered:
            return ""
        return f" (lines {first} and {second})" if first != second else f" (both on line {first})"


def _check_tree(node: yaml.Node, key: Key, lines: dict[Key, int], place: Place, merged: bool = False) -> None:
    """Record the line of every key path and refuse what no config can hold: repeated keys,
    NUL characters and lone surrogates. The walk follows aliases, which the loader has bounded."""
    if key and not merged:  # the document itself has no line worth naming: a missing top-level key is in the file
        lines.setdefault(key, node.start_mark.line + 1)
    if isinstance(node, yaml.ScalarNode):
        _check_text(node, place)
    elif isinstance(node, yaml.MappingNode):
        _check_mapping(node, key, lines, place, merged)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_tree(item, key + (index,), lines, place, merged)


def _check_mapping(node: yaml.MappingNode, key: Key, lines: dict[Key, int], place: Place, merged: bool) -> None:
    seen: dict[tuple[str, str], int] = {}
    for key_node, value_node in node.value:
        _check_tree(key_node, key, {}, place, merged=True)
        if key_node.tag == MERGE_TAG:  # `<<: *defaults`: its keys count where this mapping lacks them
            for source in value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]:
                _check_tree(source, key, lines, place, merged=True)
            continue
        line = key_node.start_mark.line + 1
        if isinstance(key_node, yaml.ScalarNode):
            identity = (key_node.tag, key_node.value)
            if identity in seen:
                raise UserError(
                    f"{place(key_node)}: key {shown(key_node.value)} is given twice in one mapping"
                    f"{place.both_lines(seen[identity], line)}; keep one"
                )
            seen[identity] = line
        child = key + (key_node.value if isinstance(key_node, yaml.ScalarNode) else line,)
        if merged:
            lines.setdefault(child, line)
        else:
            lines[child] = line
        _check_tree(value_node, child, lines, place, merged)


def _check_text(node: yaml.ScalarNode, place: Place) -> None:
    where = place(node)
    if "\0" in node.value:
        raise UserError(f"{where}: {shown(node.value)} holds a NUL character (\\0), which no name or path can hold")
    try:
        node.value.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(
            f"{where}: {shown(node.value)} holds a lone surrogate (\\ud800-\\udfff), "
            "which is not a character; write the character itself"
        ) from None


def read_yaml(text: str, origin: str, *, lines_in_messages: bool = True) -> tuple[Any, dict[Key, int]]:
    """Any YAML trainctl reads: the data, and the line each key path stands on.

    `origin` names the text in messages: a file name (problems then name its line) or, with
    `lines_in_messages` false, a `--set KEY` whose one line is not worth numbering.
    """
    loader = BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[Key, int] = {}
        _check_tree(node, (), lines, Place(origin, lines_in_messages))
        return loader.construct_document(node), lines
    except yaml.YAMLError as error:
        raise _yaml_error(origin, error, lines_in_messages) from None
    except RecursionError:  # not reached within MAX_DEPTH; kept so no input can show a traceback
        raise UserError(f"{origin}: the YAML is nested too deeply to read") from None
    finally:
        loader.dispose()


def read_yaml_file(path: str | Path, what: str = "file") -> tuple[Any, dict[Key, int]]:
    """A YAML file through `read_yaml`; a missing or unreadable file, or a folder, is a one-line error too."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a {what}")
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read {what}: {error}") from None
    return read_yaml(text, str(path))


class SourceMap:
    """Where each dotted key of a config came from: `file:line` (a base config's line for a value
    the config inherits through `extends`), or the `--set` that changed it."""

    def __init__(self, filename: str, lines: dict[Key, int], files: dict[Key, str] | None = None):
        self.filename = filename
        self._lines = lines
        self._files = files or {}  # the file of each line that is not in `filename`: a base config's
        self._overrides: dict[Key, str] = {}

    def mark_override(self, key: Key, text: str) -> None:
        self._overrides = {k: v for k, v in self._overrides.items() if k[: len(key)] != key}
        self._overrides[key] = text

    def where(self, key: Key) -> str:
        """The `--set` that gave `key`, one of its parents or (for a section) the last of its
        children; else the closest line of the file that gave it."""
        override = self._override_of(key)
        if override is not None:
            return override
        line = self._closest_line(key)
        if line is None:
            return self.filename
        return f"{self._files.get(line, self.filename)}:{self._lines[line]}"

    def file_of(self, key: Key) -> str | None:
        """The file whose line gave `key` (a base config, for an inherited value); None when a
        `--set` gave it or no line is known."""
        if self._override_of(key) is not None:
            return None
        line = self._closest_line(key)
        return None if line is None else self._files.get(line, self.filename)

    def _override_of(self, key: Key) -> str | None:
        for end in range(len(key), -1, -1):  # a --set replaces everything under its key, lines of the file included
            if key[:end] in self._overrides:
                return self._overrides[key[:end]]
        within = [text for k, text in self._overrides.items() if key and k[: len(key)] == key]
        return within[-1] if within else None  # e.g. a model too large after --set model.hidden=[...]

    def _closest_line(self, key: Key) -> Key | None:
        """`key` or its closest parent that has a line."""
        for end in range(len(key), -1, -1):
            if key[:end] in self._lines:
                return key[:end]
        return None


def read_config_file(path: str | Path) -> tuple[dict[str, Any], dict[Key, int]]:
    """A config file's mapping and the line of each key path; an empty file or one that holds no
    mapping is a one-line error."""
    data, lines = read_yaml_file(path, "config file")
    if data is None:
        raise UserError(f"{path}: the config is empty")
    if not isinstance(data, dict):
        raise UserError(f"{path}:1: the config must be a mapping of keys to values")
    return data, lines


def load_config_file(path: str | Path) -> tuple[dict[str, Any], SourceMap]:
    data, lines = read_config_file(path)
    return data, SourceMap(str(path), lines)


def parse_scalar(text: str, origin: str) -> Any:
    """A `--set` value read as YAML, so `5`, `1e-3`, `true` and `[64, 64]` mean what they say."""
    if not text.strip():
        return ""
    return read_yaml(text, origin, lines_in_messages=False)[0]


def apply_overrides(data: dict[str, Any], overrides: list[str], source: SourceMap) -> None:
    """Apply `key.path=value` overrides in order, creating mappings on the way as needed."""
    for override in overrides:
        dotted, sep, text = override.partition("=")
        keys = dotted.strip().split(".")
        origin = f"--set {dotted.strip()}"
        if not sep or not all(keys):
            raise UserError(
                f"--set {shown(override, quote=False)}: expected key.path=value, e.g. --set optimizer.lr=0.01"
            )
        node = data
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                parent = ".".join(keys[: depth + 1])
                raise UserError(
                    f"{origin}: {parent} is {shown(child)}, not a mapping, so it has no key {keys[depth + 1]!r}"
                )
            node = child
        node[keys[-1]] = parse_scalar(text, origin)
        source.mark_override(tuple(keys), origin)
