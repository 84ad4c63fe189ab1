"""Config inheritance: `extends:` names the base configs a config starts from.

`extends: base.yaml`, or a list of files applied in order (later ones win), names files relative
to the config that names them (an absolute path or `~/...` works too); a base may extend others.
Each base is resolved with its own bases first, then merged: mappings key by key at every depth,
anything else (a list, a number, a name, null) replaced whole. The config's own keys go on top.

A mapping that holds `_replace_: true` is complete: it replaces the same mapping of whatever it is
laid over (its file's bases, and the bases listed before its file by a config that extends it)
instead of merging into it, e.g. a model section whose `name` changes. It is a key rather than a
YAML tag (`!replace`) so that every YAML tool reads the file as it is: an editor's YAML language
server reports an unknown tag as an error, and trainctl's loader stays PyYAML's safe one.

Every value keeps the file and line it was written on, so an error names a base's line for an
inherited value and the config's line for an override; `--set` applies afterwards, on the merged
result. What comes out is flat (no `extends`, no `_replace_`): a run folder saves exactly that, so
editing a base later changes no run.

`${path.to.value}` interpolation is left out: YAML anchors already repeat a value within a file,
the merge repeats a base's across files, and a second evaluation step would hide from `--set` and
sweeps which value a key really has.
"""

from __future__ import annotations

import difflib
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainctl.errors import UserError, shown
from trainctl.limits import MAX_EXTENDS_DEPTH
from trainctl.yaml_source import Key, SourceMap, read_config_file

EXTENDS = "extends"
REPLACE = "_replace_"
_Place = tuple[str, int]  # file, line


@dataclass(frozen=True)
class _Layer:
    """A config's data with the file and line of each key path, and the mappings marked complete."""

    data: dict[str, Any]
    places: dict[Key, _Place]
    complete: frozenset[Key] = frozenset()


@dataclass(frozen=True)
class _Reading:
    """The config files being resolved, outermost first: a base among them makes a cycle."""

    files: tuple[tuple[Path, str], ...] = ()  # resolved path, the name messages give it
    depth: int = 0  # extends followed so far


def load_config_with_bases(path: str | Path) -> tuple[dict[str, Any], SourceMap]:
    """A config file with everything it extends merged in, and where each key was written."""
    data, lines = read_config_file(path)
    name = str(path)
    return merge_bases(data, lines, name, Path(path).parent, _Reading(((Path(path).resolve(), name),)))


def merge_bases(
    data: dict[str, Any], lines: dict[Key, int], origin: str, folder: Path, reading: _Reading | None = None
) -> tuple[dict[str, Any], SourceMap]:
    """`data` (named `origin` in messages) with its bases merged in: the flat config and its SourceMap.
    Base paths are relative to `folder`."""
    layer = _Resolver().resolve(data, lines, origin, folder, reading or _Reading())
    files = {key: file for key, (file, _) in layer.places.items() if file != origin}
    return layer.data, SourceMap(origin, {key: line for key, (_, line) in layer.places.items()}, files)


def _at(origin: str, lines: dict[Key, int], key: Key) -> str:
    return f"{origin}:{lines[key]}" if key in lines else origin


class _Resolver:
    """Resolves one config's bases; a base named twice (a diamond) is read and resolved once."""

    def __init__(self) -> None:
        self._resolved: dict[Path, _Layer] = {}

    def resolve(
        self, data: dict[str, Any], lines: dict[Key, int], origin: str, folder: Path, reading: _Reading
    ) -> _Layer:
        bases = _base_names(data, lines, origin)
        own = _own_layer(data, lines, origin)
        merged: _Layer | None = None
        for name, where in bases:
            base = self._base(name, where, folder, reading)
            merged = base if merged is None else _merge(merged, base)
        return own if merged is None else _merge(merged, own)

    def _base(self, name: str, where: str, folder: Path, reading: _Reading) -> _Layer:
        prefix = f"{where}: extends {shown(name)}"
        try:
            path = folder / Path(name).expanduser()  # an absolute path stays as it is
            identity = path.resolve()
            found = path.exists() or path.is_symlink()
        except (OSError, RuntimeError) as error:  # an unknown ~user, a symlink loop, a name too long
            raise UserError(f"{prefix}: cannot resolve the path: {error}") from None
        shown_path = os.path.normpath(path)
        _refuse_cycle(identity, shown_path, prefix, reading)
        if reading.depth >= MAX_EXTENDS_DEPTH:
            raise UserError(
                f"{prefix}: bases nested more than {MAX_EXTENDS_DEPTH} deep; merge some of them into one file"
            )
        if identity in self._resolved:
            return self._resolved[identity]
        if not found:
            raise UserError(f"{prefix}: {shown_path}: base config not found{_close_files(path)}")
        try:
            data, lines = read_config_file(path)
        except UserError as error:  # unreadable, a folder, invalid YAML, empty, not a mapping
            raise UserError(f"{prefix}: {error}") from None
        deeper = _Reading((*reading.files, (identity, shown_path)), reading.depth + 1)
        layer = self.resolve(data, lines, shown_path, path.parent, deeper)
        self._resolved[identity] = layer
        return layer


def _close_files(path: Path, looked_at: int = 1000) -> str:
    """' (did you mean 'base.yaml'?)' for YAML files beside `path` whose names are close to its own.
    Compared without the suffix, which every candidate shares and which would make any name close."""
    if not path.parent.is_dir():
        return ""
    names = {found.stem: found.name for found in itertools.islice(path.parent.glob("*.y*ml"), looked_at)}
    close = difflib.get_close_matches(path.stem, list(names), n=3, cutoff=0.6)
    return " (did you mean " + " or ".join(repr(names[stem]) for stem in close) + "?)" if close else ""


def _refuse_cycle(identity: Path, shown_path: str, prefix: str, reading: _Reading) -> None:
    identities = [path for path, _ in reading.files]
    if identity not in identities:
        return
    if identity == identities[-1]:
        raise UserError(f"{prefix}: that is this config itself; a config cannot extend itself")
    trail = " -> ".join([name for _, name in reading.files[identities.index(identity) :]] + [shown_path])
    raise UserError(f"{prefix}: a cycle of bases ({trail}); a config cannot extend itself through its bases")


def _base_names(data: dict[str, Any], lines: dict[Key, int], origin: str) -> list[tuple[str, str]]:
    """The files `extends` names, each with the place it is named at (file:line)."""
    if EXTENDS not in data:
        return []
    value = data[EXTENDS]
    where = _at(origin, lines, (EXTENDS,))
    rule = "must name a base config file, or a list of them, e.g. extends: base.yaml"
    if isinstance(value, str) and value.strip():
        return [(value, where)]
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: extends {rule} (got {shown(value)})")
    names = []
    for index, item in enumerate(value):
        item_where = _at(origin, lines, (EXTENDS, index))
        if not isinstance(item, str) or not item.strip():
            raise UserError(f"{item_where}: extends.{index} {rule} (got {shown(item)})")
        names.append((item, item_where))
    return names


def _own_layer(data: dict[str, Any], lines: dict[Key, int], origin: str) -> _Layer:
    """A config file's own keys (without `extends`) and their lines, its `_replace_` marks taken out."""
    complete: set[Key] = set()
    own = {key: value for key, value in data.items() if key != EXTENDS}
    stripped = _without_marks(own, (), lines, origin, complete)
    places = {key: (origin, line) for key, line in lines.items() if key[0] != EXTENDS and key[-1] != REPLACE}
    return _Layer(stripped, places, frozenset(complete))


def _without_marks(value: Any, key: Key, lines: dict[Key, int], origin: str, complete: set[Key]) -> Any:
    """`value` with every `_replace_` key taken out (into new containers: YAML aliases share theirs);
    the key paths of the mappings marked true are added to `complete`."""
    if isinstance(value, list):
        return [_without_marks(item, (*key, index), lines, origin, complete) for index, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if REPLACE in value:
        mark = value[REPLACE]
        if not isinstance(mark, bool):
            dotted = ".".join(map(str, (*key, REPLACE)))
            raise UserError(
                f"{_at(origin, lines, (*key, REPLACE))}: {dotted} must be true or false (got {shown(mark)})"
            )
        if mark:
            complete.add(key)
    return {k: _without_marks(v, (*key, k), lines, origin, complete) for k, v in value.items() if k != REPLACE}


@dataclass
class _Merge:
    """One layer merged over another: the places of the result, and where `over` replaced whole."""

    under: _Layer
    over: _Layer
    places: dict[Key, _Place] = field(default_factory=dict)
    replaced: list[Key] = field(default_factory=list)

    def value(self, under: Any, over: Any, key: Key) -> Any:
        if key in self.over.complete or not (isinstance(under, dict) and isinstance(over, dict)):
            self.replaced.append(key)
            self.copy_places(self.over.places, over, key)
            return over
        if key in self.over.places:
            self.places[key] = self.over.places[key]
        merged = {}
        for name, value in under.items():  # in the order of `under`, keys only `over` has after them
            if name in over:
                merged[name] = self.value(value, over[name], (*key, name))
            else:
                merged[name] = value
                self.copy_places(self.under.places, value, (*key, name))
        for name, value in over.items():
            if name not in under:
                merged[name] = value
                self.copy_places(self.over.places, value, (*key, name))
        return merged

    def copy_places(self, places: dict[Key, _Place], value: Any, key: Key) -> None:
        """The places of `value` at `key` and of everything in it."""
        if key in places:
            self.places[key] = places[key]
        children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for name, child in children:
            self.copy_places(places, child, (*key, name))


def _merge(under: _Layer, over: _Layer) -> _Layer:
    """`over` laid on `under`: mappings merged key by key, anything else and complete mappings replaced."""
    merge = _Merge(under, over)
    data = merge.value(under.data, over.data, ())
    replaced = set(merge.replaced)
    # A complete mapping of `under` stays complete where `over` only merged into it.
    kept = {key for key in under.complete if not any(key[:end] in replaced for end in range(len(key) + 1))}
    return _Layer(data, merge.places, frozenset(kept | over.complete))
