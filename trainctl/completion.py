"""Shell completion for bash, zsh and fish: commands and options (typer and click), config keys after
--set (and --grid, --space), registered names, and run folders.

A Tab starts a new trainctl process, so completion must answer within a keystroke's patience. It
imports no torch and not even the registries (numpy, pydantic and every builder's parameter model:
about 0.3 s): names, config keys and the command line's shape come from an index built once from the
registries, the config model and the click command, kept in the user's cache folder, and built again
when a file of trainctl's changes (their paths, sizes and modification times are the index's key).
With the index at hand, `trainctl.completion_hook` answers a Tab for a command name, a registered
name, a config key or a run folder before typer loads (its parsing imports pydantic): about 0.05 s
instead of 0.25 s. The rest (option names, a first Tab after an upgrade) goes through typer and click,
whose answers these are; a test holds the two to the same answers. Plugins' components are not in the
index: loading plugins runs their code, which a Tab should not.

bash splits words at `=` and `:` (COMP_WORDBREAKS), so `--set loss.name=fo` would reach a completer as
three words; trainctl's bash script passes the line itself, and the answers are cut to the word bash
replaces. After a key (`optimizer.lr=`), a key's prefix (`trainer.`) or a folder (`runs/`), no space.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

PROG_NAME = "trainctl"
COMPLETE_VAR = "_TRAINCTL_COMPLETE"
LINE_VAR = "_TRAINCTL_COMPLETE_LINE"  # bash: the line up to the cursor, unsplit at `=`
WORDBREAKS_VAR = "_TRAINCTL_COMPLETE_WORDBREAKS"
INDEX_FORMAT = 3  # raised when the index's shape changes, so an old cache is built again
CONTINUED = ("=", ".", "/")  # an answer ending so is continued by more typing: no space after it
SECTION_REGISTRIES = {
    "data": "datasets",
    "model": "models",
    "loss": "losses",
    "optimizer": "optimizers",
    "scheduler": "schedulers",
}
RUN_FILE = "config.yaml"  # what makes a folder a run folder (RunFolder.open)

BASH_SCRIPT = """
%(complete_func)s() {
    local IFS=$'\\n'
    COMPREPLY=( $( env COMP_WORDS="${COMP_WORDS[*]}" \\
                   COMP_CWORD=$COMP_CWORD \\
                   _TRAINCTL_COMPLETE_LINE="${COMP_LINE:0:$COMP_POINT}" \\
                   _TRAINCTL_COMPLETE_WORDBREAKS="$COMP_WORDBREAKS" \\
                   %(autocomplete_var)s=complete_bash $1 ) )
    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *[=./] ]]; then
        compopt -o nospace 2>/dev/null
    fi
    return 0
}

complete -o default -F %(complete_func)s %(prog_name)s
"""

Answer = tuple[str, "str | None"]  # a completion and its help (shown by zsh and fish)


# ---- the index of names, keys and the command line -------------------------------------------------


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trainctl" / "completion.json"


def source_fingerprint() -> str:
    """A hash of the path, size and modification time of each of trainctl's Python files, and of
    its version: any edit, install or upgrade changes it."""
    import hashlib

    from trainctl import __version__

    package = Path(__file__).resolve().parent
    digest = hashlib.sha256(f"{INDEX_FORMAT} {__version__} {package}".encode())
    for folder, folders, files in os.walk(package):
        folders[:] = sorted(name for name in folders if name != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                stat = os.stat(os.path.join(folder, name))
                digest.update(f"{folder}/{name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cached_index() -> dict[str, Any] | None:
    """The cached index if it was built from trainctl's files as they are now, else None."""
    try:
        cached = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(cached, dict) and cached.get("fingerprint") == source_fingerprint():
        return cached
    return None


def load_index() -> dict[str, Any]:
    """The index from the cache, or built now (and cached) when it is missing, damaged or stale."""
    index = cached_index()
    if index is not None:
        return index
    index = {"fingerprint": source_fingerprint(), **build_index()}
    try:
        from trainctl.files import write_atomically

        cache_path().parent.mkdir(parents=True, exist_ok=True)
        write_atomically(json.dumps(index).encode("utf-8"), cache_path())
    except OSError:  # a read-only home: completion still answers, through typer
        pass
    return index


def build_index() -> dict[str, Any]:
    """Every registered name (with its summary), the loss tasks, every config key with the values it
    allows where they are a few words (choices, true/false, registered names), and the commands."""
    from typer._click.utils import make_default_short_help

    from trainctl.components.registries import LOSSES, REGISTRIES
    from trainctl.config.loading import COMPONENT_SECTIONS, COMPONENT_SETTINGS, _Data, _File

    # Summaries shortened as click shortens a command's help beside its name: a longer one would be
    # wrapped where typer renders it for zsh and fish.
    names = {
        kind: [[entry.name, make_default_short_help(entry.summary)] for entry in registry]
        for kind, registry in REGISTRIES.items()
    }
    keys: dict[str, list[str]] = {}
    for field, info in _File.model_fields.items():
        if field not in COMPONENT_SECTIONS:
            keys.update(_field_keys(field, info.annotation))
            continue
        keys[field] = []
        keys[f"{field}.name"] = [name for name, _ in names[SECTION_REGISTRIES[field]]]
        if field == "data":
            keys.update(_model_keys(_Data, "data", skip={"name"}))
        else:
            keys.update({f"{field}.{setting}": [] for setting in COMPONENT_SETTINGS.get(field, ())})
    components = {
        section: {entry.name: _model_keys(entry.params, "") for entry in registry}
        for section, registry in COMPONENT_SECTIONS.items()
    }
    tasks = sorted({str(entry.info.task) for entry in LOSSES} - {"any"})
    return {"names": names, "loss_tasks": tasks, "keys": keys, "components": components, "cli": _command_tree()}


def _field_keys(key: str, annotation: Any) -> dict[str, list[str]]:
    """A field's key and its choices; a section (a model) adds its own keys below it."""
    model = _model_in(annotation)
    if model is None:
        return {key: _choices(annotation)}
    return {key: [], **_model_keys(model, key)}


def _model_keys(model: Any, prefix: str, skip: set[str] | frozenset[str] = frozenset()) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for field, info in model.model_fields.items():
        if field not in skip:
            keys.update(_field_keys(f"{prefix}.{field}" if prefix else field, info.annotation))
    return keys


def _model_in(annotation: Any) -> Any:
    """The pydantic model an annotation holds (`X`, `X | None`), or None."""
    import typing

    from pydantic import BaseModel

    for option in (annotation, *typing.get_args(annotation)):
        if isinstance(option, type) and issubclass(option, BaseModel):
            return option
    return None


def _choices(annotation: Any) -> list[str]:
    """The values a field allows, as YAML writes them, where they are a few words; else none."""
    import types
    import typing

    from trainctl.reports.listing import yaml_value

    if annotation is bool:
        return ["true", "false"]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return [yaml_value(value) for value in typing.get_args(annotation)]
    if origin is typing.Annotated:
        return _choices(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        options = [_choices(option) for option in typing.get_args(annotation) if option is not type(None)]
        if options and all(options):
            return [value for choices in options for value in choices] + ["null"]
    return []


def _command_tree() -> dict[str, Any]:
    """The command line's shape as click sees it: each command's options (which take a value) and
    arguments, and which of this module's completers answers for each; the group's too."""
    import typer
    import typer.main

    from trainctl.cli import app

    group = typer.main.get_command(app)
    context = typer.Context(group)
    commands = {}
    for name in group.list_commands(context):  # type: ignore[attr-defined]  # a group's
        command = group.get_command(context, name)  # type: ignore[attr-defined]
        if command is not None and not command.hidden:
            commands[name] = {"help": command.get_short_help_str(), **_params_of(command, context)}
    return {"root": _params_of(group, context), "commands": commands}


def _params_of(command: Any, context: Any) -> dict[str, Any]:
    import typing

    original = getattr(command.callback, "__wrapped__", command.callback)
    hints = typing.get_type_hints(original, include_extras=True) if original is not None else {}
    options, arguments = {}, []
    for param in command.get_params(context):
        spec = _spec_of(hints.get(param.name))
        if param.param_type_name == "argument":
            arguments.append({"name": param.name, "nargs": param.nargs, "spec": spec})
            continue
        takes_value = not (param.is_flag or param.count)
        # What click offers for `-`: typer's options (not click's --help), unless hidden or given once already.
        offered = type(param).__name__ == "TyperOption" and not param.hidden
        for option in [*param.opts, *param.secondary_opts]:
            options[option] = {
                "name": param.name,
                "value": takes_value,
                "spec": spec,
                "offered": offered,
                "multiple": param.multiple,
            }
    return {"options": options, "arguments": arguments}


def _spec_of(hint: Any) -> list[Any] | None:
    """Which completer a parameter's typer.Option or typer.Argument names (its `spec`), if any."""
    for meta in getattr(hint, "__metadata__", ()):
        spec = getattr(getattr(meta, "autocompletion", None), "spec", None)
        if spec is not None:
            return list(spec)
    return None


# ---- what completes where: typer's completers, and the answers behind them ------------------------


def answers(spec: list[Any], incomplete: str, given: dict[str, Any], index: dict[str, Any]) -> list[Answer]:
    """A completer's answers for what is typed: `given` holds the command's parameters parsed so far
    (its config file and --set values narrow the config keys)."""
    kind = spec[0]
    if kind == "names":
        found = [(name, summary) for name, summary in index["names"][spec[1]]]
    elif kind == "choices":
        found = [(value, None) for value in spec[1]]
    elif kind == "tasks":
        found = [(task, None) for task in index["loss_tasks"]]
    elif kind == "keys":
        found = [(key, None) for key in config_keys_below(incomplete, given, index)]
    else:
        found = [(folder, None) for folder in run_folders_below(incomplete)]
    return [(value, help) for value, help in found if value.startswith(incomplete)]


def _completer(spec: list[Any], takes_context: bool = False) -> Callable[..., list[Answer]]:
    """A typer `autocompletion` callback for a spec; the spec rides along for the command tree."""

    def with_context(ctx: Any, incomplete: str) -> list[Answer]:
        return answers(spec, incomplete, getattr(ctx, "params", None) or {}, load_index())

    def without(incomplete: str) -> list[Answer]:
        return answers(spec, incomplete, {}, load_index())

    complete = with_context if takes_context else without
    complete.spec = spec  # type: ignore[union-attr]  # read back by _spec_of
    return complete


def registered(kind: str) -> Callable[..., list[Answer]]:
    """Completes the names of a registry (losses, models, datasets, ...), each with its summary."""
    return _completer(["names", kind])


def choices(*values: str) -> Callable[..., list[Answer]]:
    """Completes a fixed list of words (an option that also takes a path: the shell's files besides)."""
    return _completer(["choices", list(values)])


loss_tasks = _completer(["tasks"])
run_folders = _completer(["runs"])
config_keys = _completer(["keys"], takes_context=True)


def config_keys_below(incomplete: str, given: dict[str, Any], index: dict[str, Any]) -> list[str]:
    """`--set KEY=VALUE`: the keys one level at a time (`optimizer.` lists `optimizer.lr=`, ...), then
    a key's values where it has a few. The components the config (and earlier --set values) name
    narrow a section's keys to that component's parameters; otherwise every component's are offered."""
    keys = dict(index["keys"])
    chosen = _chosen_names(given)
    for section, components in index["components"].items():
        for component in [chosen[section]] if chosen.get(section) in components else components:
            for parameter, values in components[component].items():
                keys.setdefault(f"{section}.{parameter}", values)
    if "=" in incomplete:
        key, _, typed = incomplete.partition("=")
        return [f"{key}={value}" for value in keys.get(key, []) if value.startswith(typed)]
    return _next_level(keys, incomplete)


def _next_level(keys: dict[str, list[str]], incomplete: str) -> list[str]:
    """The keys below what is typed, one level deeper: `trainer.` for trainer's keys, `seed=` for a
    leaf; a section typed whole is offered as `section=` too (`scheduler=null`)."""
    offered = set()
    for key in keys:
        if not key.startswith(incomplete):
            continue
        rest = key[len(incomplete) :]
        dot = rest.find(".")
        if dot >= 0:
            offered.add(key[: len(incomplete) + dot + 1])
        elif key == incomplete or not any(other.startswith(key + ".") for other in keys):
            offered.add(key + "=")
    return sorted(offered)


def _chosen_names(given: dict[str, Any]) -> dict[str, str]:
    """The component names the command line's config file and its earlier --set values give each section."""
    chosen: dict[str, str] = {}
    config = given.get("config")
    if config is not None:
        chosen.update(_names_in_file(Path(config)))
    for setting in given.get("overrides") or ():
        key, _, value = str(setting).partition("=")
        section, _, name = key.partition(".")
        if name == "name" and value:
            chosen[section] = value.strip()
    return chosen


def _names_in_file(path: Path) -> dict[str, str]:
    """Each section's `name` in a config file (safely loaded; a file that cannot be read gives none)."""
    import yaml

    try:
        if path.stat().st_size > 1_000_000:
            return {}
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        section: value["name"]
        for section in SECTION_REGISTRIES
        if isinstance(value := data.get(section), dict) and isinstance(value.get("name"), str)
    }


def run_folders_below(incomplete: str) -> list[str]:
    """Run folders (holding config.yaml) below what is typed, and folders that hold runs (`runs/`,
    a sweep, a group) with a slash, to go on into them."""
    folder, slash, start = incomplete.rpartition("/")
    prefix = folder + slash
    try:
        entries = sorted(os.scandir(Path(prefix or ".").expanduser()), key=lambda entry: entry.name)
    except OSError:
        return []
    found = []
    for entry in entries:
        hidden = entry.name.startswith(".") and not start.startswith(".")
        if hidden or not entry.name.startswith(start) or not _is_folder(entry):
            continue
        if os.path.isfile(os.path.join(entry.path, RUN_FILE)):
            found.append(prefix + entry.name)
        elif _holds_runs(Path(entry.path)):
            found.append(prefix + entry.name + "/")
    return found


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _holds_runs(folder: Path, depth: int = 2, limit: int = 500) -> bool:
    """Whether a run folder lies within `depth` levels below (looking at `limit` folders at most)."""
    for count, child in enumerate(_subfolders(folder)):
        if count >= limit:
            return False
        if (child / RUN_FILE).is_file() or (depth > 1 and _holds_runs(child, depth - 1, limit)):
            return True
    return False


def _subfolders(folder: Path) -> Iterator[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    yield from (Path(entry.path) for entry in entries if not entry.name.startswith(".") and _is_folder(entry))


# ---- answering from the index alone, before typer loads --------------------------------------------


def quick_answers(
    index: dict[str, Any], args: list[str], incomplete: str, option_names: bool = True
) -> list[Answer] | None:
    """What click would answer for `args` and the word being typed, read from the index's command
    tree, or None where the index does not know (an unknown option, `--opt=...` typed whole; option
    names without `option_names`, whose help typer renders): typer answers those."""
    tree = index["cli"]
    if incomplete.startswith("-") and ("=" in incomplete or not option_names):
        return None
    root = _parsed(tree["root"], args, interspersed=False)
    if root is None or root.pending is not None:
        return None
    if not root.positionals:
        if incomplete.startswith("-"):
            return _option_names(tree["root"], root, incomplete)
        return [(name, command["help"]) for name, command in tree["commands"].items() if name.startswith(incomplete)]
    command = tree["commands"].get(root.positionals[0])
    if command is None:
        return None
    parsed = _parsed(command, args[root.consumed + 1 :], interspersed=True)
    if parsed is None:
        return None
    if incomplete.startswith("-") and parsed.pending is None and "--" not in args:
        return _option_names(command, parsed, incomplete)
    if parsed.pending is not None:
        spec = parsed.pending["spec"]
    else:
        spec = _argument_spec(command["arguments"], len(parsed.positionals))
    if spec is None:
        return None
    return answers(spec, incomplete, parsed.given, index)


def _option_names(shape: dict[str, Any], parsed: _Parsed, incomplete: str) -> list[Answer]:
    """A command's options that start with what is typed, as click offers them (no help: bash only)."""
    return [
        (name, None)
        for name, option in shape["options"].items()
        if option["offered"]
        and (option["multiple"] or option["name"] not in parsed.given)
        and name.startswith(incomplete)
    ]


class _Parsed:
    def __init__(self) -> None:
        self.positionals: list[str] = []
        self.given: dict[str, Any] = {}  # parameter name: value (a list for repeated options)
        self.pending: dict[str, Any] | None = None  # an option whose value is the word being typed
        self.consumed = 0  # words read before the first positional (a group's own)


def _parsed(shape: dict[str, Any], words: list[str], interspersed: bool) -> _Parsed | None:
    """Options and positionals as click reads them; None at what this reading does not know. Without
    `interspersed` (a group), reading stops at the first positional: the command's name."""
    parsed = _Parsed()
    options, arguments = shape["options"], shape["arguments"]
    position = 0
    only_positionals = False
    while position < len(words):
        word = words[position]
        if only_positionals or not word.startswith("-") or word == "-":
            if not interspersed:
                parsed.consumed = position
                parsed.positionals = words[position:]
                return parsed
            parsed.positionals.append(word)
            index = len(parsed.positionals) - 1
            if index < len(arguments) and arguments[index]["nargs"] == 1:
                parsed.given[arguments[index]["name"]] = word
        elif word == "--":
            only_positionals = True
        elif word in options:
            option = options[word]
            if not option["value"]:
                parsed.given[option["name"]] = True
            elif position + 1 == len(words):
                parsed.pending = option
                break
            else:
                position += 1
                parsed.given.setdefault(option["name"], []).append(words[position])
        else:
            return None  # `--opt=value`, clustered short flags, a misspelt option: typer reads those
        position += 1
    parsed.consumed = len(words)
    return parsed


def _argument_spec(arguments: list[dict[str, Any]], given: int) -> list[Any] | None:
    """The completer of the argument the next positional word fills."""
    for argument in arguments:
        if argument["nargs"] == -1:
            return argument["spec"]
        if given == 0:
            return argument["spec"]
        given -= 1
    return None


def answer_from_index() -> None:
    """Answer the shell's request and exit, when the cached index can; else return, for typer."""
    asked = _quick_answers_now(cached_index())
    if asked is None:
        return
    shell, found, incomplete = asked
    if shell == "fish" and os.environ.get("_TYPER_COMPLETE_FISH_ACTION") == "is-args":
        os._exit(0 if found else 1)  # typer's fish script asks first whether there are answers (else: files)
    sys.stdout.write(SHELLS[shell](found, incomplete) + "\n")
    sys.stdout.flush()
    os._exit(0)  # nothing else to run: not even the interpreter's shutdown


def quick_output(index: dict[str, Any]) -> str | None:
    """What the shell asking now (_TRAINCTL_COMPLETE and its script's variables) gets from the index,
    or None where typer must answer."""
    asked = _quick_answers_now(index)
    return None if asked is None else SHELLS[asked[0]](asked[1], asked[2])


def _quick_answers_now(index: dict[str, Any] | None) -> tuple[str, list[Answer], str] | None:
    """The asking shell, the index's answers and the word being typed; None where typer must answer."""
    shell = os.environ.get(COMPLETE_VAR, "").removeprefix("complete_")
    if index is None or shell not in SHELLS:
        return None
    if shell == "fish" and os.environ.get("_TYPER_COMPLETE_FISH_ACTION") not in FISH_ACTIONS:
        return None
    args, incomplete = _shell_words(shell)
    found = quick_answers(index, args, incomplete, option_names=shell == "bash")  # zsh and fish show help
    return None if found is None else (shell, found, incomplete)


def _shell_words(shell: str) -> tuple[list[str], str]:
    """The words before the cursor and the word being typed, as each shell's script passes them."""
    import shlex

    if shell == "bash" and LINE_VAR not in os.environ:  # a script typer installed: bash's own words
        words = _split(os.environ.get("COMP_WORDS", ""), shlex)
        current = int(os.environ.get("COMP_CWORD", "0"))
        return words[1:current], words[current] if current < len(words) else ""
    line = os.environ.get(LINE_VAR if shell == "bash" else "_TYPER_COMPLETE_ARGS", "")
    words = _split(line, shlex)[1:]
    if not words or line[-1:].isspace():
        return words, ""
    return words[:-1], words[-1]


def _split(line: str, shlex: Any) -> list[str]:
    """Words as click's split_arg_string makes them: shell quoting, an unclosed quote closed."""
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    words: list[str] = []
    try:
        for word in lexer:
            words.append(word)
    except ValueError:
        words.append(lexer.token)  # the quote is still open: the word typed so far
    return words


def _bash(found: list[Answer], incomplete: str) -> str:
    """The part of each answer that replaces bash's current word: after the last word-break
    character (`=`, `:`) of what is typed, when trainctl's script passed the whole line."""
    breaks = os.environ.get(WORDBREAKS_VAR, "") if LINE_VAR in os.environ else ""
    cut = max((incomplete.rfind(char) for char in breaks if not char.isspace()), default=-1) + 1
    return "\n".join(value[cut:] for value, _ in found)


def _zsh(found: list[Answer], incomplete: str) -> str:
    if not found:
        return "_files"
    if all(value.endswith(CONTINUED) for value, _ in found):
        import shlex

        return "compadd -S '' -- " + " ".join(shlex.quote(value) for value, _ in found)
    items = [
        f'"{_zsh_escape(value)}":"{_zsh_escape(help)}"' if help else f'"{_zsh_escape(value)}"' for value, help in found
    ]
    return "_arguments '*: :((" + "\n".join(items) + "))'"


def _zsh_escape(text: str) -> str:
    """As typer's zsh completion escapes a completion and its help."""
    return text.replace('"', '""').replace("'", "''").replace("$", "\\$").replace("`", "\\`").replace(":", r"\\:")


def _fish(found: list[Answer], incomplete: str) -> str:
    import re

    return "\n".join(f"{value}\t{re.sub(WHITESPACE, ' ', help)}" if help else value for value, help in found)


SHELLS: dict[str, Callable[[list[Answer], str], str]] = {"bash": _bash, "zsh": _zsh, "fish": _fish}
FISH_ACTIONS = ("get-args", "is-args")
WHITESPACE = r"\s"  # each whitespace character of a help text becomes a space, as typer writes it for fish


# ---- answering through typer and click -------------------------------------------------------------


def use_trainctl_scripts() -> None:
    """`--show-completion bash` and `--install-completion bash` write trainctl's bash script (typer
    keeps its scripts in a table; its own for zsh and fish are kept)."""
    from typer import _completion_shared

    scripts = getattr(_completion_shared, "_completion_scripts", None)
    if isinstance(scripts, dict):
        scripts["bash"] = BASH_SCRIPT


def answer_if_asked(app: Any) -> None:
    """When the shell asks for completions (the _TRAINCTL_COMPLETE variable), answer and exit."""
    instruction = os.environ.get(COMPLETE_VAR)
    if instruction:
        _answer(app, instruction)


def _answer(app: Any, instruction: str) -> NoReturn:
    from typer._click.shell_completion import add_completion_class
    from typer.completion import shell_complete
    from typer.main import get_command

    command = get_command(app)  # registers typer's shell classes; trainctl's replace two of them
    bash, zsh = _shell_classes()
    add_completion_class(bash, "bash")
    add_completion_class(zsh, "zsh")
    sys.exit(shell_complete(command, {}, PROG_NAME, COMPLETE_VAR, instruction))


def _shell_classes() -> tuple[type, type]:
    import shlex

    from typer._completion_classes import BashComplete, ZshComplete

    class TrainctlBash(BashComplete):
        """Reads the line up to the cursor (unsplit at `=`), and answers with the part of each
        completion that replaces bash's current word."""

        def get_completion_args(self) -> tuple[list[str], str]:
            if LINE_VAR not in os.environ:  # a script typer installed: bash's own words
                return tuple(super().get_completion_args())  # type: ignore[return-value]
            return _shell_words("bash")

        def complete(self) -> str:
            args, incomplete = self.get_completion_args()
            return _bash([(item.value, None) for item in self.get_completions(args, incomplete)], incomplete)

    class TrainctlZsh(ZshComplete):
        """Answers that go on (`optimizer.lr=`, `trainer.`, `runs/`) are added without a space after them."""

        def complete(self) -> str:
            args, incomplete = self.get_completion_args()
            values = [item.value for item in self.get_completions(args, incomplete)]
            if values and all(value.endswith(CONTINUED) for value in values):
                return "compadd -S '' -- " + " ".join(shlex.quote(value) for value in values)
            return str(super().complete())

    return TrainctlBash, TrainctlZsh
