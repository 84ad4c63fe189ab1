"""Loading plugins: code the user chose to trust, which registers components through `trainctl.register`.

Two ways in, both outside any config file (a config names registered components only):
- an installed distribution's entry point in the group `trainctl.plugins` (installing it is the
  trust decision), loaded unless `--no-plugins` is given;
- `--plugin PATH.py` or `--plugin package.module` on the command line.

Only the commands that build or list components load them, never `--help` or `--version`. A
plugin that fails to import is one UserError naming it (the original traceback stays chained for
`--debug`). Every component a plugin registers records the plugin as its source.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import json
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from trainctl.errors import UserError
from trainctl.registry import Source, registering_from

GROUP = "trainctl.plugins"


@dataclass(frozen=True)
class PluginOptions:
    """The command line's choice of plugins; passed on to every process that trains (sweep trials)."""

    named: tuple[str, ...] = ()  # --plugin values: PATH.py files or module names
    entry_points: bool = True  # False with --no-plugins

    def arguments(self) -> list[str]:
        """These options as a command line gives them; files as absolute paths, for any working folder."""
        words: list[str] = []
        for name in self.named:
            words += ["--plugin", str(Path(name).resolve()) if is_file_name(name) else name]
        return words + ([] if self.entry_points else ["--no-plugins"])


@dataclass
class LoadedPlugin:
    source: Source
    components: list[tuple[str, str]] = field(default_factory=list)  # (registry kind, name)


_loaded: dict[Source, LoadedPlugin] = {}
_done: set[str] = set()  # what was loaded already: "entry points", resolved files, module names


def is_file_name(name: str) -> bool:
    """A --plugin value is a file when it ends in .py or names a folder; else it is a module name."""
    return name.endswith(".py") or "/" in name or "\\" in name


def load(options: PluginOptions) -> list[LoadedPlugin]:
    """Import the chosen plugins, once per process (a second call loads only what is new)."""
    import trainctl.components.registries  # noqa: F401  the built-ins first: a clash names them

    if options.entry_points and "entry points" not in _done:
        _done.add("entry points")
        _load_entry_points()
    for name in options.named:
        if is_file_name(name):
            _load_file(name)
        elif name not in _done:
            _done.add(name)
            _import(Source("module", name), functools.partial(importlib.import_module, name))
    return loaded()


def loaded() -> list[LoadedPlugin]:
    return list(_loaded.values())


@dataclass(frozen=True)
class LoadingState:
    """What loading plugins changed in this process: the registries and the record of what is loaded."""

    registries: dict[str, dict[str, Any]]
    loaded: dict[Source, LoadedPlugin]
    done: frozenset[str]


def loading_state() -> LoadingState:
    """A copy of the registries and of the plugins loaded, for `restore_loading_state`."""
    from trainctl.components.registries import REGISTRIES

    return LoadingState(
        {key: registry.snapshot() for key, registry in REGISTRIES.items()},
        _copied(_loaded),
        frozenset(_done),
    )


def restore_loading_state(state: LoadingState) -> None:
    """Put the registries and the plugin record back as `state` holds them: a warm sweep worker does
    this before each trial, so a component a trial registered is gone for the next one."""
    from trainctl.components.registries import REGISTRIES

    for key, registry in REGISTRIES.items():
        registry.restore(state.registries[key])
    _loaded.clear()
    _loaded.update(_copied(state.loaded))
    _done.clear()
    _done.update(state.done)


def _copied(plugins: dict[Source, LoadedPlugin]) -> dict[Source, LoadedPlugin]:
    return {
        source: dataclasses.replace(plugin, components=list(plugin.components)) for source, plugin in plugins.items()
    }


def _load_entry_points() -> None:
    from importlib.metadata import entry_points

    for point in entry_points(group=GROUP):
        dist = point.dist
        source = (
            Source("distribution", dist.name, version=dist.version)
            if dist is not None
            else Source("module", point.value)
        )
        _import(source, point.load, what=f"plugin {source} (entry point {point.name} = {point.value})")


def _load_file(name: str) -> None:
    path = Path(name).expanduser().resolve()
    if str(path) in _done:
        return
    if not path.is_file():
        raise UserError(f"--plugin {name}: no such file" if not path.exists() else f"--plugin {name}: not a file")
    content = path.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    _done.add(str(path))
    # A unique module name: two plugin files called models.py never replace each other.
    module_name = f"trainctl_plugin_{digest[:16]}_{path.stem.replace('-', '_')}"

    def run_file() -> None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None  # a .py file always has a loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # as an import would: dataclasses and pickling look it up
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise

    _import(Source("file", str(path), sha256=digest), run_file)


def _import(source: Source, run: Callable[[], object], what: str | None = None) -> None:
    """Run a plugin's import with its registrations recorded under `source`; any failure is one line."""
    plugin = _loaded.setdefault(source, LoadedPlugin(source))
    what = what or f"plugin {source}"
    from trainctl.components.registries import REGISTRIES

    before = {key: set(registry.names()) for key, registry in REGISTRIES.items()}
    try:
        with registering_from(source):
            run()
    except UserError as error:
        raise UserError(f"{what}: {error}") from error
    except (Exception, SystemExit) as error:  # the plugin's own bug or a bad registration, in one line
        raise UserError(f"{what} failed to import{_where(error.__traceback__)}: {_one_line(error)}") from error
    finally:
        for key, registry in REGISTRIES.items():
            plugin.components += [(registry.kind, name) for name in registry.names() if name not in before[key]]


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _where(trace: TracebackType | None) -> str:
    """' (FILE line N)' of the innermost frame outside trainctl and the import machinery."""
    package = str(Path(__file__).resolve().parent)
    frames = [
        frame
        for frame in traceback.extract_tb(trace)
        if not frame.filename.startswith((package, "<frozen")) and "importlib" not in Path(frame.filename).parts
    ]
    return f" ({frames[-1].filename} line {frames[-1].lineno})" if frames else ""


# ---- the run folder's record: which plugin provided each component ---------------------------------

RUN_RECORD = "plugins.json"


def components_in(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Each plugin component the config names (a `name:` or a list item equal to one), with its source."""
    from trainctl.components.registries import REGISTRIES

    named = set(_strings(config))
    return [
        {"registry": registry.kind, "name": entry.name, "plugin": dataclasses.asdict(entry.source)}
        for registry in REGISTRIES.values()
        for entry in registry
        if not entry.source.is_builtin and entry.name in named
    ]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def check_run(run: Path) -> list[str]:
    """Every plugin component the run was trained with is loaded now, from the same plugin; else one
    line naming it and how to provide it. Reads the record as data: a run folder never imports code.
    Returns a warning line for each plugin file whose content changed since the run was trained."""
    from trainctl.components.registries import REGISTRIES

    path = run / RUN_RECORD
    if not path.is_file():  # trained with trainctl's own components only, or by an earlier version
        return []
    changed: dict[str, str] = {}  # file -> warning: one line per file, however many components it gave
    try:
        components = json.loads(path.read_text(encoding="utf-8"))["components"]
        registries = {registry.kind: registry for registry in REGISTRIES.values()}
        for component in components:
            registry = registries[component["registry"]]
            wanted = Source(**component["plugin"])
            name = component["name"]
            if name not in registry or not _same_plugin(registry.get(name).source, wanted):
                raise UserError(
                    f"{run}: {registry.kind} {name!r} comes from plugin {wanted}, which is not loaded; "
                    f"{_how_to_provide(wanted)}"
                )
            now = registry.get(name).source
            if wanted.kind == "file" and now.sha256 != wanted.sha256:
                changed[wanted.name] = (
                    f"{run}: plugin file {wanted.name} changed since the run was trained "
                    f"(sha256 {wanted.sha256} then, {now.sha256} now); its components may not behave as they did"
                )
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path}: not a plugin record trainctl wrote ({_one_line(error)})") from None
    return list(changed.values())


def _same_plugin(loaded: Source, wanted: Source) -> bool:
    """The same distribution or module, or a file at the same path (edited or not: its hash may differ)."""
    return (loaded.kind, loaded.name) == (wanted.kind, wanted.name)


def _how_to_provide(source: Source) -> str:
    if source.kind == "distribution":
        return f"install it (pip install '{source.name}=={source.version}')"
    return f"give --plugin {source.name} before the command"
