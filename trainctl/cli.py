"""The command line: parse arguments, call one function, turn a user error into one red line.

Heavy imports (torch, scikit-learn) happen inside the commands that train or evaluate, so
`trainctl --help` and the listings start in a fraction of a second.
"""

from __future__ import annotations

# First: a Tab in the shell is answered there, from the completion index, before typer loads.
import trainctl.completion_hook  # noqa: F401

# isort: split
import contextlib
import inspect
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from trainctl import completion
from trainctl.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, UserError
from trainctl.output import Output, closed_output_ends_quietly

app = typer.Typer(
    name="trainctl",
    help=(
        "Train PyTorch models from YAML configs: data, model, loss, optimizer, scheduler and epochs.\n\n"
        "Example: trainctl train configs/digits_mlp.yaml --set optimizer.lr=3e-4"
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

_state = {"debug": False}
# The command line's --plugin values and whether entry points load, set by main_options; kept as
# plain values so that commands which load no plugins never import the plugin machinery (pydantic).
_plugin_choice: dict[str, Any] = {"named": (), "entry_points": True}


def overrides_option(scope: str = "") -> Any:
    """`--set KEY=VALUE` (repeatable, completing config keys); `scope` says what it applies to."""
    return typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help=f"Override a config value{scope}: key.path=value (YAML). Repeatable.",
        autocompletion=completion.config_keys,
    )


# `--force` beside an --output file: the commands that write one never replace a file without it.
Force = Annotated[bool, typer.Option("--force", help="Replace the --output file if it exists.")]
# `--checkpoint` of the commands that load a run's model (eval, predict, export).
Checkpoint = Annotated[
    str,
    typer.Option(
        metavar="best|last|PATH",
        help="best, last, or a path to a checkpoint file.",
        autocompletion=completion.choices("best", "last"),
    ),
]


# What typer names a value's type, and what a person writes there instead.
_VALUE_WORDS = {
    "bool": "true|false",
    "path": "PATH",
    "str": "TEXT",
    "int": "INTEGER",
    "int range": "INTEGER",
    "float": "NUMBER",
    "float range": "NUMBER",
}


def _readable_value_type(label: str) -> str:
    """typer's `<list[str]>`, `<path>`, `<int range>` as PATH, TEXT, INTEGER (a choice stays `a|b`)."""
    inner = label.removeprefix("<").removesuffix(">")
    if inner.startswith("list[") and inner.endswith("]"):
        inner = inner[len("list[") : -1]  # a repeatable option's help says so: the type is one value's
    return _VALUE_WORDS.get(inner.lower(), inner)


def _value_as_written(typer_display: Callable[[Any, Any], str | None]) -> Callable[[Any, Any], str | None]:
    """What help shows beside a parameter: nothing for a flag (typer writes `<bool>`, though a flag
    takes no value), an option's own metavar (KEY=VALUE, best|last|PATH), else a plain word."""

    def display(param: Any, ctx: Any) -> str | None:
        if getattr(param, "is_flag", False):
            return None
        shown = typer_display(param, ctx)
        if shown is None or (param.metavar is not None and param.param_type_name == "option"):
            return shown
        suffix = "..." if shown.endswith("...") else ""
        return _readable_value_type(shown.removesuffix("...")) + suffix

    return display


def _show_values_as_written() -> None:
    from typer.core import TyperArgument, TyperOption

    for kind in (TyperOption, TyperArgument):
        typer_display = getattr(kind, "display_type_rich", None)
        if typer_display is not None:  # typer 0.29's hook; other versions keep their own display
            setattr(kind, "display_type_rich", _value_as_written(typer_display))  # noqa: B010 - a method, replaced


_show_values_as_written()


def _print_version(show: bool) -> None:
    if not show:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        number = version("trainctl")
    except PackageNotFoundError:  # run from a checkout that is not installed
        from trainctl import __version__ as number
    Output().line(f"trainctl {number}")
    raise typer.Exit()


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """User errors become red lines and exit code 2; Ctrl-C exits 130; bugs keep their traceback."""
    try:
        yield
    except UserError as error:
        if _state["debug"]:
            raise
        output = Output()
        for line in error.lines():
            output.error(line)
        raise typer.Exit(EXIT_USER_ERROR) from None
    except OSError as error:
        # A file the user named or a folder trainctl writes: missing, read-only, full, not a folder.
        # Errors naming no file are not the user's to fix: they keep their traceback.
        if error.filename is None or _state["debug"]:
            raise
        from trainctl.files import os_error_line

        Output().error(os_error_line(error))
        raise typer.Exit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt as interrupt:
        hint = getattr(interrupt, "resume_hint", "")
        saved = getattr(interrupt, "message", "") or "interrupted; state saved"
        Output().notice(f"{saved}. Resume with: {hint}" if hint else "interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for user errors too.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print trainctl's version and exit."),
    ] = False,
    plugin: Annotated[
        list[str] | None,
        typer.Option(
            "--plugin",
            metavar="PATH.py|MODULE",
            help="Load components from this Python file or module (before the command). Repeatable.",
        ),
    ] = None,
    no_plugins: Annotated[
        bool, typer.Option("--no-plugins", help="Do not load installed plugins (the trainctl.plugins entry points).")
    ] = False,
) -> None:
    _state["debug"] = debug
    _plugin_choice.update(named=tuple(plugin or ()), entry_points=not no_plugins)  # commands load them


def _plugin_options() -> Any:
    from trainctl.plugins import PluginOptions

    return PluginOptions(**_plugin_choice)


def _load_plugins() -> list[Any]:
    """Load the installed plugins and those --plugin names: only commands that build or list components call this."""
    from trainctl.plugins import load

    with user_errors():
        return load(_plugin_options())


def _check_run_plugins(run_dir: Path) -> None:
    """The plugins a run was trained with are loaded now (eval, predict, --resume); a plugin file
    edited since is a warning (its hashes), not an error: fixing a plugin's bug is a reason to edit it."""
    from trainctl.plugins import check_run

    with user_errors():
        changed = check_run(run_dir)
    for warning in changed:
        Output().warn(warning)


REPEATS_PANEL = "Several seeds (a group of runs)"
WEIGHTS_SHOWN = {"ema": "EMA weights", "swa": "SWA weights", "trained": "trained weights"}


def _print_metrics(output: Output, title: str, record: dict) -> None:
    from trainctl.reports.tables import Column, heading, table

    if record.get("weights") in WEIGHTS_SHOWN:  # a run that averages its weights: which ones these are
        title = f"{title}, {WEIGHTS_SHOWN[record['weights']]}"
    output.show(heading(title))
    metrics = [[key, f"{value:.4f}"] for key, value in record.items() if isinstance(value, float)]
    output.show(table([Column("metric"), Column("value", justify="right")], metrics))


@app.command()
def train(
    config: Annotated[Path | None, typer.Argument(help="YAML config file.", show_default=False)] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            metavar="RUN_DIR",
            autocompletion=completion.run_folders,
            help="Continue this run folder from checkpoints/last.pt (extend it with --set trainer.epochs=N).",
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        overrides_option(),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Run folder to create (must not exist or be empty); with --repeats, the group folder.",
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            metavar="DEVICE",
            help="auto, cpu, cuda, cuda:N or mps (sets trainer.device).",
            autocompletion=completion.choices("auto", "cpu", "cuda", "mps"),
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(metavar="N", help="Random seed (sets seed).")] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress output; print only the run folder.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Stop on warnings from the checks, not only on errors.")
    ] = False,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc", min=1, metavar="N", help="Train in N processes on this machine (torch.distributed, DDP)."
        ),
    ] = 1,
    repeats: Annotated[
        int | None,
        typer.Option(
            "--repeats",
            min=1,
            metavar="N",
            help="Train N runs, seeds SEED..SEED+N-1, in a group folder with a summary.",
            rich_help_panel=REPEATS_PANEL,
        ),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            "--seeds",
            metavar="S1,S2,...",
            help="Train one run per seed in a group folder.",
            rich_help_panel=REPEATS_PANEL,
        ),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            metavar="N",
            help="With --repeats or --seeds: runs in parallel.",
            rich_help_panel=REPEATS_PANEL,
        ),
    ] = 1,
) -> None:
    """Check the config (as `trainctl validate` does), train, then evaluate the best checkpoint on the test split.

    Writes a new run folder with config.yaml, metrics.jsonl, checkpoints/{best,last}.pt, curves.png
    and summary.json. The first Ctrl-C (or SIGTERM) finishes the current step, saves the run and
    prints the command that resumes it; a second one stops at once.

    Example: trainctl train configs/digits_mlp.yaml --set trainer.epochs=5 --set model.hidden=[64,64]

    Resume: trainctl train --resume runs/digits_mlp-20260101-120000 --set trainer.epochs=40

    Several processes: trainctl train configs/digits_mlp.yaml --nproc 2 (or: torchrun --nproc_per_node 2 -m trainctl train ...)

    Several seeds: trainctl train configs/digits_mlp.yaml --repeats 5 --jobs 2 writes runs/digits_mlp-repeats/
    with seed-0/ ... seed-4/ and summary.json (each test metric's mean, sd and 95% interval over the seeds);
    the same command continues an interrupted group.
    """
    from trainctl.config.loading import load_config
    from trainctl.runs import RunFolder
    from trainctl.workflows import resume as resume_training
    from trainctl.workflows import train as run_training

    _load_plugins()
    if repeats is not None or seeds is not None:
        _train_repeats(config, resume, overrides, out, device, seed, quiet, strict, nproc, repeats, seeds, jobs)
        return
    if jobs != 1:
        with user_errors():
            raise UserError("--jobs: runs the runs of --repeats or --seeds in parallel; give one of them too")
    with user_errors():
        source, resuming = _config_or_run(config, resume)
        if resuming and out is not None:
            raise UserError("--out: a resumed run continues in its own folder")
    if resuming:
        _check_run_plugins(source)
    settings = list(overrides or [])
    if device is not None:
        settings.append(f"trainer.device={device}")
    if seed is not None:
        settings.append(f"seed={seed}")
    if nproc > 1:
        from trainctl.training.distributed import launch

        with user_errors():
            # A bad config or run folder is reported once, before any process starts.
            load_config(RunFolder.open(source).config_path if resuming else source, settings)
            # Every process runs the command as the user typed it: no option is left behind.
            code = launch(without_option(sys.argv[1:], "--nproc"), nproc)
        raise typer.Exit(code)
    output = Output(quiet=quiet)
    with user_errors():
        if resuming:
            result = resume_training(source, settings, output=output)
        else:
            result = run_training(source, settings, out=out, output=output, strict=strict)
    if not result.summary:  # a process of rank > 0 in a run of several: rank 0 reports
        return
    if quiet:
        output.line(str(result.run.path))
        return
    summary = result.summary
    output.line(
        f"best epoch {summary['best_epoch']} ({summary['monitor']} {summary['best_value']:.4f}), "
        f"trained in {summary['train_seconds']:.1f}s on {summary['device']}"
    )
    _print_metrics(output, "test split, best checkpoint", summary["test"])
    output.line(f"run folder: {result.run.path}")


def _train_repeats(
    config: Path | None,
    resume: Path | None,
    overrides: list[str] | None,
    out: Path | None,
    device: str | None,
    seed: int | None,
    quiet: bool,
    strict: bool,
    nproc: int,
    repeats: int | None,
    seeds: str | None,
    jobs: int,
) -> None:
    """`train --repeats N` / `--seeds LIST`: a group of runs, one per seed, and their summary."""
    from trainctl.repeats import prepare_repeats, run_repeats
    from trainctl.reports.groups import GROUP_FILE

    settings = list(overrides or [])
    if device is not None:
        settings.append(f"trainer.device={device}")
    if seed is not None:
        settings.append(f"seed={seed}")
    output = Output(quiet=quiet)
    with user_errors():
        if resume is not None:
            raise UserError("--resume with --repeats: run the same train --repeats command again to continue a group")
        if config is None:
            raise UserError(
                "nothing to train: give a CONFIG file, e.g. trainctl train configs/digits_mlp.yaml --repeats 5"
            )
        if nproc > 1:
            raise UserError(
                "--nproc with --repeats: a group trains each run in one process; use --jobs for parallel runs"
            )
        setup = prepare_repeats(
            config,
            settings,
            repeats=repeats,
            seeds=seeds,
            out=out,
            jobs=jobs,
            plugin_arguments=_plugin_options().arguments(),  # every run loads the same plugins
            strict=strict,
        )
        outcome = run_repeats(setup, output)
    _report_collection(
        output,
        setup.folder,
        outcome,
        CollectionWords("seeds", "per_seed", "runs", "group", GROUP_FILE),
        quiet,
    )


@app.command("cv")
def cross_validate(
    config: Annotated[Path, typer.Argument(help="YAML config file every fold trains.", show_default=False)],
    folds: Annotated[
        int, typer.Option("--folds", "-k", metavar="K", help="Folds: each is held out once as a run's test split.")
    ],
    repeats: Annotated[
        int, typer.Option("--repeats", metavar="R", help="Split again with R split seeds (split_seed, +1, ...).")
    ] = 1,
    jobs: Annotated[int, typer.Option("--jobs", "-j", metavar="N", help="Folds trained in parallel.")] = 1,
    out: Annotated[Path | None, typer.Option(metavar="DIR", help="cv folder (default: OUTPUT_DIR/NAME-cv).")] = None,
    overrides: Annotated[
        list[str] | None,
        overrides_option(" for every fold"),
    ] = None,
    seed: Annotated[int | None, typer.Option(metavar="N", help="Random seed of every fold's run (sets seed).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output; print only the cv folder.")] = False,
) -> None:
    """Cross-validate: train the config once per fold, each fold's held-out rows its test split.

    Folds are stratified by class for classification, and keep whole groups when a csv dataset sets
    data.group_column. Each fold is an ordinary run folder (fold-1/ ..., repeat-1/fold-1/ ... with
    --repeats) trained as `trainctl train` trains it, with data.fold and data.split_seed set. The cv
    folder gets summary.json (each test metric's mean, sd and 95% interval over the folds) and
    oof.csv (every sample's out-of-fold prediction). The same command continues an interrupted cv;
    `trainctl compare` pairs two cv folders fold by fold.

    Example: trainctl cv configs/digits_mlp.yaml --folds 5 --jobs 2 --set trainer.epochs=10
    """
    from trainctl.reports.cross_validation import CV_FILE, OOF_FILE
    from trainctl.sweeps.cross_validation import prepare_cv, run_cv

    _load_plugins()
    settings = list(overrides or []) + ([f"seed={seed}"] if seed is not None else [])
    output = Output(quiet=quiet)
    with user_errors():
        setup = prepare_cv(
            config,
            settings,
            folds=folds,
            repeats=repeats,
            out=out,
            jobs=jobs,
            plugin_arguments=_plugin_options().arguments(),  # every fold loads the same plugins
        )
        outcome = run_cv(setup, output)
    more = [f"out-of-fold predictions: {setup.folder / OOF_FILE} ({outcome.oof_rows} rows)"]
    words = CollectionWords("folds", "per_fold", "folds", "cross-validation", CV_FILE)
    _report_collection(output, setup.folder, outcome, words, quiet, more)


@dataclass(frozen=True)
class CollectionWords:
    """How a group of seeds or a cross-validation's folds are named in what their command prints."""

    members: str  # seeds | folds: what the summary is over
    per: str  # the summary's key of each member's value
    runs: str  # runs | folds: what failed
    what: str  # group | cross-validation: what the same command continues
    record: str  # the file holding the failed runs' errors


def _report_collection(
    output: Output, folder: Path, outcome: Any, words: CollectionWords, quiet: bool, more: Sequence[str] = ()
) -> None:
    """The summary table over the members (only the folder with --quiet), then how it ended: exit 130
    when interrupted, 2 when a member failed, each with the command that continues."""
    from trainctl.reports.groups import SUMMARY_FILE, summary_table
    from trainctl.reports.tables import heading

    summary = outcome.summary
    if quiet:
        output.line(str(folder))
    elif summary["test"]:
        done, total = len(summary["done"]), len(outcome.record.runs)
        over = f"{done} {words.members}" if done == total else f"{done} of {total} {words.members}"
        output.show(heading(f"test metrics over {over}: mean ± sd, {summary['level']:.0%} interval of the mean (t)"))
        output.show(summary_table(summary, per=words.per, unit=words.members))
    if not quiet:
        output.line(f"written: {folder / SUMMARY_FILE}")
        for line in more:
            output.line(line)
    if outcome.interrupted:
        output.notice(f"interrupted; run the same command again to continue the {words.what}")
        raise typer.Exit(EXIT_INTERRUPTED)
    if outcome.failed:
        output.error(
            f"{len(outcome.failed)} of {len(outcome.record.runs)} {words.runs} failed (their errors are in "
            f"{folder / words.record}); run the same command again to try them again"
        )
        raise typer.Exit(EXIT_USER_ERROR)


def without_option(arguments: list[str], option: str) -> list[str]:
    """A command line without `option VALUE` and `option=VALUE`; after `--` every word is kept."""
    kept: list[str] = []
    words = iter(arguments)
    for word in words:
        if word == "--":
            kept += [word, *words]
        elif word == option:
            next(words, None)  # its value
        elif not word.startswith(f"{option}="):
            kept.append(word)
    return kept


def _config_or_run(config: Path | None, resume: Path | None) -> tuple[Path, bool]:
    """What `train` starts from: a config file, or a run folder to resume (True). Exactly one is given."""
    if resume is None and config is not None:
        return config, False
    if config is None and resume is not None:
        return resume, True
    if config is None:
        raise UserError(
            "nothing to train: give a CONFIG file to start a run (e.g. trainctl train "
            "configs/digits_mlp.yaml), or --resume RUN_DIR to continue one"
        )
    raise UserError(f"give either CONFIG ({config}) to start a run or --resume ({resume}) to continue one, not both")


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="YAML config file.", show_default=False)],
    overrides: Annotated[
        list[str] | None,
        overrides_option(),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 2 on warnings too, not only on errors.")] = False,
) -> None:
    """Build everything, run one forward and backward pass, and check for the classic loss mistakes.

    Prints the parameter count, input, output and target shapes, and the initial loss beside what a
    fresh model should give; then each problem found with what to do instead. Errors exit 2;
    warnings do too with --strict. `trainctl train` runs the same checks first.

    Example: trainctl validate configs/seed_torch_ce.yaml
    """
    from trainctl.workflows import validate as check

    _load_plugins()
    output = Output()
    with user_errors():
        report = check(config, overrides)
    for line in report.summary_lines():
        output.line(line)
    for finding in report.findings:
        colour = "red" if finding.level == "error" else "yellow"
        output.markup(f"[{colour}]{finding.level}:[/{colour}] {escape(str(finding))}")
    if report.errors or (strict and report.warnings):
        raise typer.Exit(EXIT_USER_ERROR)
    if not report.findings:
        output.markup("[green]no problems found[/green]")


@app.command("lr-find")
def lr_find(
    config: Annotated[Path, typer.Argument(help="YAML config file.", show_default=False)],
    overrides: Annotated[
        list[str] | None,
        overrides_option(),
    ] = None,
    min_lr: Annotated[float, typer.Option("--min-lr", metavar="LR", help="The first rate of the sweep.")] = 1e-7,
    max_lr: Annotated[float, typer.Option("--max-lr", metavar="LR", help="The last rate of the sweep.")] = 10.0,
    steps: Annotated[
        int, typer.Option(metavar="N", help="Optimizer steps (one rate each); the training split is cycled as needed.")
    ] = 100,
    seed: Annotated[int | None, typer.Option(metavar="N", help="Random seed (sets seed).")] = None,
    device: Annotated[
        str | None,
        typer.Option(
            metavar="DEVICE",
            help="auto, cpu, cuda, cuda:N or mps (sets trainer.device).",
            autocompletion=completion.choices("auto", "cpu", "cuda", "mps"),
        ),
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The plot to write: .png, .svg or .pdf.")] = Path(
        "lr_find.png"
    ),
    force: Force = False,
) -> None:
    """Learning-rate range test: train a copy of the config's model for a few steps while the rate rises exponentially, and suggest a rate.

    The loss is smoothed and the test stops when it diverges; the suggestion is the lower of the
    steepest descent of the smoothed loss and a tenth of the rate where it is lowest, printed as a
    --set line for optimizer.lr (for onecycle, scheduler.max_lr). Uses the config's model, loss,
    optimizer, batch size, trainer.accumulate, clipping and precision, with its seed; not its
    scheduler (the test sets the rate every step). Runs in one process and writes only the plot: no
    run folder, nothing a later `trainctl train` reads.

    Example: trainctl lr-find configs/digits_mlp.yaml --steps 200 -o digits_lr.png
    """
    from trainctl.training.lr_range import RangeSettings
    from trainctl.workflows import lr_find as find

    _load_plugins()
    settings = list(overrides or [])
    if device is not None:
        settings.append(f"trainer.device={device}")
    if seed is not None:
        settings.append(f"seed={seed}")
    shown = Output()
    with user_errors():
        result = find(config, settings, RangeSettings(min_lr, max_lr, steps), output, force=force, output=shown)
    sweep, suggestion, key = result.sweep, result.suggestion, result.rate_key
    ended = f"stopped at lr={sweep.stopped_at:.2g} ({sweep.stop_reason})" if sweep.stop_reason else "ran through"
    shown.line(
        f"lr range test: {len(sweep.rates)} of {steps} steps, lr {min_lr:g} to {max_lr:g}, {ended}; "
        f"seed {result.config.seed}, {result.seconds:.1f}s"
    )
    for line in suggestion.reasoning():
        shown.line(line)
    for note in suggestion.notes:
        shown.warn(note)
    assert suggestion.lr is not None  # no suggestion is a user error
    shown.line(
        f"the config has {key}={result.configured:g}: the suggestion is {suggestion.lr / result.configured:.2g}× that"
    )
    if result.config.scheduler is not None and key == "optimizer.lr":
        shown.line(
            f"the config's scheduler ({result.config.scheduler.name}) was not used in the test; it schedules from {key}"
        )
    shown.line(f"written: {result.plot}")
    shown.line(f"--set {key}={suggestion.lr:.2g}")


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    run_dir: Annotated[
        Path,
        typer.Argument(
            help="A run folder written by `trainctl train`.", show_default=False, autocompletion=completion.run_folders
        ),
    ],
    checkpoint: Checkpoint = "best",
    split: Annotated[
        str,
        typer.Option(
            metavar="test|val|train",
            help="test, val or train.",
            autocompletion=completion.choices("test", "val", "train"),
        ),
    ] = "test",
    output: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Also write the metrics JSON to this file.")
    ] = None,
    worst: Annotated[int, typer.Option(min=0, metavar="N", help="How many highest-loss samples to report.")] = 10,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace the --output file, and the records of an earlier --data, if they exist."),
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="FILE|DIR",
            help="Score a new labelled file instead of a split: a table with the run's columns and target "
            "(csv and text runs), or a folder of class sub-folders (image_folder and audio_folder runs).",
        ),
    ] = None,
) -> None:
    """Rebuild a run's model from its saved config, load a checkpoint and report metrics on a split.

    Also reports where the loss comes from: mean loss per class, quantiles of the per-sample loss,
    and the highest-loss samples (dataset row, target, prediction, loss, and the file of an image or
    audio folder's sample), where noisy labels and outliers show up. Everything is written to
    RUN_DIR/eval-SPLIT-CHECKPOINT.json (a checkpoint file from elsewhere adds a hash of its path to
    the name); on the test
    split with the best checkpoint and the default --worst it reproduces summary.json's test record.

    With --data, a new labelled file is encoded as the training data was (the run's data.json: columns,
    categories, vocabulary, normalisation, class names) and scored; the record is
    RUN_DIR/eval-data-NAME-CHECKPOINT.json (NAME: the file's), with its per-sample file beside it.

    Example: trainctl eval runs/digits_mlp-20260101-120000 --checkpoint last --split val

    Example: trainctl eval runs/fruit-20260101-120000 --data new_fruit.csv
    """
    from trainctl.files import check_output_path, new_output

    _load_plugins()
    _check_run_plugins(run_dir)
    shown = Output()
    with user_errors():
        if output is not None:
            check_output_path(output, "--output", force)  # before the work, not after it
        split_source = ctx.get_parameter_source("split")  # click's enum, as typer bundles it: by name
        if data is not None and split_source is not None and split_source.name != "DEFAULT":
            raise UserError("--split: scores a split of the run's own data; with --data the file is scored instead")
        if data is None:
            from trainctl.workflows import evaluate_run

            run, record = evaluate_run(run_dir, checkpoint, split, worst)
            written = run.path / run.eval_record_name(split, checkpoint)
        else:
            from trainctl.workflows import evaluate_data

            scored = evaluate_data(run_dir, data, checkpoint, worst, force)
            record, written = scored.record, scored.record_path
            for column in scored.unused_columns:
                shown.warn(f"--data {data}: column {column!r} is not one the model reads: left out")
    title = f"{data}, {checkpoint} checkpoint" if data is not None else f"{split} split, {checkpoint} checkpoint"
    _print_metrics(shown, f"{title} (epoch {record['epoch']})", record)
    if "temperature" in record.get("calibration", {}):
        from trainctl.workflows import calibration_line

        shown.line(calibration_line(record))
    _print_loss_report(shown, record["loss_report"])
    if output is not None:
        with user_errors(), new_output(output, "--output", force) as copy:
            copy.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    shown.line(f"written: {written}")


@app.command()
def predict(
    run_dir: Annotated[
        Path,
        typer.Argument(help="Run folder to predict with.", show_default=False, autocompletion=completion.run_folders),
    ],
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Input files: CSV tables with the training columns, image files, for a text run "
            "text files (one text per line) and CSV/TSV/Parquet tables with its text column, or for a built-in "
            "dataset (iris, digits, ...) CSV rows of its features.",
            show_default=False,
        ),
    ],
    checkpoint: Checkpoint = "best",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Also write the predictions: .csv or .json."),
    ] = None,
    force: Force = False,
) -> None:
    """Predict with a trained run: class and probability (or value) for every input row or image.

    Needs only the run folder: it holds the feature encoding or image statistics, class names and
    target scale. For tables, a column the model was trained on must be there; other columns (the
    target too) are ignored. For image runs (mnist, ...), each file is one image of the training size.
    For text runs, a .csv, .tsv or .tab file is read by the run's data.text_column (other columns, the
    label too, are ignored) and any other file as one text per line; a text with no word the model
    knows gets a warning. For a run on a built-in dataset (iris, wine, breast_cancer, diabetes, digits,
    ...), each row of a CSV is one sample: its features in the dataset's order, as scikit-learn's loader
    gives them (digits: the 64 pixel values), with or without a header row.

    Example: trainctl predict runs/fruit-20260101-120000 new_fruit.csv -o predictions.csv

    Example: trainctl predict runs/reviews-20260101-120000 my_reviews.txt
    """
    from trainctl.files import check_output_path, new_output
    from trainctl.prediction import predict as run_predict
    from trainctl.prediction import write_predictions

    _load_plugins()
    _check_run_plugins(run_dir)
    with user_errors():
        if output is not None and output.suffix.lower() not in (".csv", ".json"):
            raise UserError(f"--output {output}: unknown file type {output.suffix!r}; allowed: .csv, .json")
        if output is not None:
            check_output_path(output, "--output", force)  # the input file too: replaced only with --force
        predictions = run_predict(run_dir, inputs, checkpoint)
    from trainctl.reports.tables import Column, table

    columns = [Column("input", style="cyan", no_wrap=True), Column("prediction")]
    if any(p.score is not None for p in predictions):
        columns.append(Column("probability", justify="right"))
    rows = [
        [p.source, f"{p.label:.6g}" if isinstance(p.label, float) else str(p.label)]
        + ([f"{p.score:.4f}"] if p.score is not None else [])
        for p in predictions
    ]
    shown = Output()
    shown.show(table(columns, rows, title=f"predictions of {run_dir} ({checkpoint} checkpoint)"), wide=True)
    _print_prediction_warnings(shown, predictions)
    if output is not None:
        with user_errors(), new_output(output, "--output", force) as written:
            write_predictions(predictions, written)
        shown.line(f"written: {output}")


@app.command("export")
def export_model(
    run_dir: Annotated[
        Path,
        typer.Argument(
            help="A run folder written by `trainctl train`.", show_default=False, autocompletion=completion.run_folders
        ),
    ],
    format_name: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            metavar="safetensors|onnx|torchscript|exported-program",
            autocompletion=completion.choices("safetensors", "onnx", "torchscript", "exported-program"),
            help="safetensors (weights), onnx, torchscript or exported-program (torch.export, .pt2).",
            show_default=False,
        ),
    ],
    checkpoint: Checkpoint = "best",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="The file to write (default: RUN_DIR/model-CHECKPOINT.SUFFIX)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE and FILE.json if they exist.")] = False,
) -> None:
    """Export a run's model for use without trainctl: ONNX, TorchScript, a torch.export program, or
    its weights as safetensors, with FILE.json beside it (input shape and dtype, preprocessing, class
    names, how outputs become predictions).

    The weights are the checkpoint's that eval uses (EMA or SWA averages in a run that averages them).
    Before the file is written, it is loaded back with its own runtime (onnxruntime, torch.jit.load,
    torch.export.load, safetensors) and compared with the torch model on the run's test split, in
    batches of two sizes: the batch axis is dynamic. Needs the export extra for onnx and safetensors.

    Example: trainctl export runs/fruit-20260101-120000 --format onnx -o fruit.onnx
    """
    from trainctl.export import export_run

    _load_plugins()
    _check_run_plugins(run_dir)
    with user_errors():
        result = export_run(run_dir, format_name, checkpoint, output, force)
    shown = Output()
    check = result.check
    sizes = ", ".join(str(size) for size in check.batch_sizes[:-1]) + f" and {check.batch_sizes[-1]}"
    shown.line(
        f"checked: max |difference| {check.max_difference:.3g} from the torch model on {check.samples} test "
        f"samples (batches of {sizes}; allowed {check.tolerance:g})"
    )
    if result.format == "torchscript":
        shown.notice(
            "TorchScript is deprecated since torch 2.11: torch.jit.load warns; exported-program is its successor"
        )
    shown.line(f"written: {result.path}")
    shown.line(f"written: {result.sidecar}")


def _print_prediction_warnings(output: Output, predictions: list, shown: int = 10) -> None:
    """One line per doubtful input, up to `shown`; then how many more there are."""
    doubtful = [p for p in predictions if p.warning]
    for p in doubtful[:shown]:
        output.warn(f"{p.source}: {p.warning}")
    if len(doubtful) > shown:
        output.warn(f"{len(doubtful) - shown} more inputs like these ({len(doubtful)} of {len(predictions)} in all)")


@app.command()
def plot(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders (or sweep folders) to overlay.", show_default=False, autocompletion=completion.run_folders
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Image to write: .png, .svg or .pdf.")] = Path(
        "curves.png"
    ),
    force: Force = False,
) -> None:
    """Overlay the loss curves (train and val) and the monitored metric of several runs in one image.

    The image type follows the --output extension: .png, .svg or .pdf. Each run is named by what sets
    it apart (its folder name without the timestamp, or its config's name and the keys that differ);
    a star marks each run's best epoch.

    Example: trainctl plot runs/robust_mse-* runs/robust_huber-* -o robust.svg
    """
    from trainctl.files import new_output
    from trainctl.reports.compare import expand_runs, run_curves
    from trainctl.reports.curves import plot_runs

    with user_errors():
        if output.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise UserError(f"--output {output}: unknown image type {output.suffix!r}; allowed: .png, .svg, .pdf")
        with new_output(output, "--output", force) as image:
            folders = expand_runs(runs)
            curves = run_curves(folders)
            plot_runs(curves, image)
    Output().line(f"written: {output} ({len(curves)} runs)")


@app.command()
def report(
    folder: Annotated[
        Path,
        typer.Argument(
            help="A run folder, a group folder (train --repeats), a cv folder or a sweep folder.",
            show_default=False,
            autocompletion=completion.run_folders,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="The HTML file to write (default: FOLDER/report.html)."),
    ] = None,
    force: Force = False,
) -> None:
    """Write one self-contained HTML page about a run, a group of seeds, a cv or a sweep, to open in any browser.

    A run's page: the summary and test metrics, the curves, the confusion matrix as a heat map,
    per-class precision, recall and F1, the reliability diagram with its ECE (before and after
    temperature scaling when trainer.calibrate was used), the highest-loss test samples (thumbnails
    of image files) and the resolved config. A group's page: each metric's mean ± sd and 95% interval
    over the seeds, each seed's metrics and curves. A cv's page: the same over the folds, and the
    confusion matrix of the out-of-fold predictions. A sweep's page: the leaderboard and the best run.
    Figures are embedded in the file: it needs no network and no other file, so it can be mailed or
    archived as it is. Reads the folder's files only; nothing is trained or evaluated.

    Example: trainctl report runs/digits_mlp-20260101-120000   (writes runs/digits_mlp-20260101-120000/report.html)

    Example: trainctl report runs/digits_mlp-sweep -o sweep.html
    """
    from trainctl.files import check_output_path, new_output
    from trainctl.reports.html_report import default_output, folder_kind, report_page

    with user_errors():
        kind = folder_kind(folder)
        target = output if output is not None else default_output(folder)
        check_output_path(target, "--output", force)  # before the work, not after it
        text = report_page(folder, kind)
        with new_output(target, "--output", force) as written:
            written.write_bytes(text.encode("utf-8"))
    Output().line(f"written: {target} ({kind.name} report, {len(text.encode('utf-8')) // 1024} KiB)")


@app.command()
def compare(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders, a sweep folder, group folders or cv folders.",
            show_default=False,
            autocompletion=completion.run_folders,
        ),
    ],
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            metavar="table|csv|json|markdown",
            autocompletion=completion.choices("table", "csv", "json", "markdown"),
            help="table (laid out for the terminal's width), csv (one row per run), json or markdown.",
        ),
    ] = "table",
) -> None:
    """The runs side by side: the config keys that differ, the best epoch and the test metrics.

    The best value is marked only among comparable runs: a test loss against runs with the same loss
    config, a metric against runs on the same data and split.

    Two runs scored on the same test split also get each metric's difference with a 95% paired
    bootstrap interval over the test samples, said in words. Group folders (train --repeats) are
    compared by each metric's mean ± sd over their seeds; two groups get a paired t test over their
    seeds and the bootstrap of the seed-averaged difference. cv folders (trainctl cv) on the same folds
    are compared fold by fold: a paired t test over the folds.

    Example: trainctl compare runs/robust_mse-* runs/robust_adaptive-*

    Example: trainctl compare runs/digits_mlp-sweep --format csv > trials.csv

    Example: trainctl compare runs/cross_entropy runs/focal   (two groups of seeds)
    """
    from trainctl.reports.compare import (
        FORMATS,
        compare_runs,
        comparison_csv,
        comparison_json,
        comparison_markdown,
        comparison_tables,
        expand_runs,
    )
    from trainctl.reports.cross_validation import is_cv
    from trainctl.reports.groups import is_group

    with user_errors():
        if output_format not in FORMATS:
            raise UserError(f"--format: unknown format {output_format!r}; allowed: {', '.join(FORMATS)}")
        if all(is_group(path) for path in runs):
            _compare_groups(runs, output_format)
            return
        if all(is_cv(path) for path in runs):
            _compare_groups(runs, output_format, cv=True)
            return
        comparison = compare_runs(expand_runs(runs))
        pair = _paired_runs(comparison) if len(runs) == 2 and len(comparison.runs) == 2 else None
    output = Output()
    if output_format == "table":
        for renderable in comparison_tables(comparison, output.stdout.width):
            output.show(renderable)
        for line in [""] + pair.lines() if pair else []:
            output.line(line)
        return
    writers = {"csv": comparison_csv, "json": comparison_json, "markdown": comparison_markdown}
    text = writers[output_format](comparison)
    if pair and output_format == "json":
        text = json.dumps({**json.loads(text), "differences": pair.to_dict()}, indent=2) + "\n"
    elif pair and output_format == "markdown":
        text += "\n" + "\n".join(pair.lines()) + "\n"
    output.write(text)


def _paired_runs(comparison: Any) -> Any:
    """Two runs' differences with paired bootstrap intervals (`trainctl.reports.significance`)."""
    from trainctl.reports.significance import compare_two_runs

    folders = [run.folder for run in comparison.runs]
    return compare_two_runs(
        [folder.path for folder in folders],
        [folder.read_config() for folder in folders],
        [r.label for r in comparison.runs],
    )


def _compare_groups(folders: list[Path], output_format: str, cv: bool = False) -> None:
    """Groups of seeds, or cv folders (`cv`), side by side, and two of them paired."""
    from trainctl.reports.compare_cv import compare_cv
    from trainctl.reports.compare_groups import compare_groups, group_csv, group_json, group_markdown, group_tables

    comparison = compare_cv(folders) if cv else compare_groups(folders)
    output = Output()
    if output_format == "table":
        for renderable in group_tables(comparison, output.stdout.width):
            output.show(renderable)
        return
    writers = {"csv": group_csv, "json": group_json, "markdown": group_markdown}
    output.write(writers[output_format](comparison))


@app.command("label-issues")
def label_issues(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="RUN|CV_FOLDER|FILE",
            help="A run folder, a cross-validation folder (oof.csv) or a per-sample CSV file.",
            show_default=False,
            autocompletion=completion.run_folders,
        ),
    ],
    top: Annotated[int, typer.Option(min=1, metavar="K", help="How many samples to show, most likely first.")] = 20,
    rank_by: Annotated[
        str,
        typer.Option(
            "--rank-by",
            metavar="self-confidence|normalized-margin",
            autocompletion=completion.choices("self-confidence", "normalized-margin"),
            help="The score that orders the list, lowest first: the given label's probability, or it "
            "minus the most probable other class's.",
        ),
    ] = "self-confidence",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE.csv", help="Also write the whole list to this CSV file."),
    ] = None,
    force: Force = False,
) -> None:
    """List the samples whose given label looks wrong: confident learning (Northcutt et al. 2021) on
    the out-of-sample class probabilities of a run's test split (test_predictions.csv) or of a
    cross-validation's every sample (oof.csv).

    Each line: the sample's row in the dataset, its file (image and audio folders), the given label,
    the suggested one (the most probable class) and the given label's probability. A file without
    class probabilities (a run trained before trainctl kept them: run trainctl eval RUN) lists the
    misclassified samples by their loss instead, and says so.

    Example: trainctl label-issues runs/digits_mlp-20260101-120000 --top 10 -o suspects.csv
    """
    from trainctl.files import check_output_path, new_output
    from trainctl.reports.label_issue_report import label_issue_report, table_rows
    from trainctl.reports.label_issues import RANKINGS
    from trainctl.reports.samples import write_samples
    from trainctl.reports.tables import Column, table

    shown = Output()
    with user_errors():
        ranking = rank_by.replace("-", "_")
        if ranking not in RANKINGS:
            allowed = ", ".join(name.replace("_", "-") for name in RANKINGS)
            raise UserError(f"--rank-by: unknown score {rank_by!r}; allowed: {allowed}")
        if output is not None:
            check_output_path(output, "--output", force)  # before the work, not after it
        report = label_issue_report(source, ranking)
    for note in report.notes:
        shown.line(note)
    headers, rows = table_rows(report, top)
    if rows:
        right = {"row", "self-confidence", "normalized-margin", "loss"}
        shown.show(table([Column(h, justify="right" if h in right else "left") for h in headers], rows))
    shown.line(report.count_line())
    if len(report.order) > top and output is None:
        shown.line(f"the first {top} shown; --top {len(report.order)} shows all, -o FILE.csv writes them")
    if output is not None:
        with user_errors(), new_output(output, "--output", force) as written:
            write_samples(written, report.columns())
        shown.line(f"written: {output} ({len(report.order)} samples)")


@app.command()
def sweep(
    config: Annotated[Path, typer.Argument(help="YAML config file every trial starts from.", show_default=False)],
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            metavar="KEY=V1,V2",
            help="key=v1,v2,...: values to try (YAML). Repeatable.",
            autocompletion=completion.config_keys,
        ),
    ] = None,
    space: Annotated[
        list[str] | None,
        typer.Option(
            "--space",
            autocompletion=completion.config_keys,
            metavar="KEY=KIND:...",
            help="key=loguniform:LO:HI | uniform:LO:HI | int:LO:HI | choice:A,B. Repeatable.",
        ),
    ] = None,
    random: Annotated[
        int | None, typer.Option("--random", metavar="N", help="Random search with N trials.", min=1)
    ] = None,
    tpe: Annotated[
        int | None, typer.Option("--tpe", metavar="N", help="TPE (Bayesian) search with N trials.", min=1)
    ] = None,
    overrides: Annotated[
        list[str] | None,
        overrides_option(" for every trial"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Sweep folder (default: OUTPUT_DIR/NAME-sweep).")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Optuna storage URL shared by several sweep processes (default: SQLite in the sweep folder).",
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", metavar="N", help="Trials run in parallel processes.", min=1)
    ] = 1,
    sampler_seed: Annotated[
        int | None,
        typer.Option(metavar="N", help="Seed of the random and TPE samplers (sets sweep.seed).", min=0, max=2**31 - 1),
    ] = None,
    pruner: Annotated[
        str | None,
        typer.Option(
            metavar="none|median|hyperband",
            help="Stop unpromising trials after an epoch (sets sweep.pruner).",
            autocompletion=completion.choices("none", "median", "hyperband"),
        ),
    ] = None,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc", min=1, metavar="N", help="Train each trial in N processes (as trainctl train --nproc N)."
        ),
    ] = 1,
) -> None:
    """Search over config values: every trial is an ordinary run folder; a leaderboard ranks them.

    --grid runs every combination of its values; --random N and --tpe N draw N trials from --space
    ranges (and --grid values). The same can stand in the config's sweep: section. The study is kept
    in the sweep folder, so running the same command again continues an interrupted sweep and runs
    nothing that is done. Trials are ranked by the best value of trainer.monitor on the validation split.
    Trials run in --jobs warm worker processes that import torch once; --pruner median stops a trial
    whose monitored value after an epoch is worse than the median of the finished trials'.

    Example: trainctl sweep configs/digits_mlp.yaml --grid loss.name=cross_entropy,focal --grid optimizer.lr=1e-3,1e-2

    Example: trainctl sweep configs/robust/huber.yaml --random 20 --space optimizer.lr=loguniform:1e-4:1e-1 --space loss.delta=uniform:0.1:3
    """
    from trainctl.sweeps.search import leaderboard_table, prepare_sweep, run_sweep

    _load_plugins()
    output = Output()
    with user_errors():
        setup = prepare_sweep(
            config,
            list(overrides or []),
            grid=list(grid or []),
            space=list(space or []),
            random_trials=random,
            tpe_trials=tpe,
            seed=sampler_seed,
            out=out,
            storage=storage,
            jobs=jobs,
            plugin_arguments=_plugin_options().arguments(),  # every trial loads the same plugins
            nproc=nproc,
            pruner=pruner,
        )
        plan = setup.plan
        output.line(
            f"sweep folder: {setup.folder}  ({plan.sampler}, {plan.trials} trials: "
            f"{'; '.join(d.describe() for d in plan.dimensions)})"
        )
        outcome = run_sweep(setup, output)
    done = [row for row in outcome.rows if row.status == "done"]
    title = (
        f"leaderboard: {len(done)} of {plan.trials} trials done, best first by {setup.monitor} "
        f"(validation, best epoch); {outcome.ran} run now"
    )
    output.line(title)
    output.show(leaderboard_table(outcome.rows, plan.keys, setup.monitor), wide=True)
    output.line(f"written: {setup.folder / 'leaderboard.csv'}")
    if done:
        output.line(f"best: {setup.folder / done[0].folder}")
    if outcome.interrupted:
        output.notice("sweep interrupted; run the same command again to continue it")
        raise typer.Exit(EXIT_INTERRUPTED)


def _print_loss_report(output: Output, report: dict) -> None:
    from trainctl.reports.tables import Column, heading, table

    quantiles = "  ".join(f"{name} {value:.4g}" for name, value in report["quantiles"].items())
    output.line(f"per-sample loss: {quantiles}")
    if "per_class" in report:
        output.show(heading("mean loss per class"))
        by_class = sorted(report["per_class"].items(), key=lambda item: -(item[1] or 0))
        rows = [[str(name), "—" if value is None else f"{value:.4f}"] for name, value in by_class]
        output.show(table([Column("class"), Column("loss", justify="right")], rows))
    if report["worst"]:
        output.show(heading("highest-loss samples"))
        columns = [Column(name, justify="right") for name in ("row", "target", "prediction", "loss")]
        rows = [
            [*(_short(sample[key]) for key in ("row", "target", "prediction")), f"{sample['loss']:.4f}"]
            for sample in report["worst"]
        ]
        files = any("file" in sample for sample in report["worst"])  # image and audio folders: each sample's file
        if files:
            columns.append(Column("file", no_wrap=True))
            rows = [[*row, _shown_path(sample.get("file", ""))] for row, sample in zip(rows, report["worst"])]
        output.show(table(columns, rows), wide=files)


def _shown_path(path: str) -> str:
    """A data file's path as a table shows it: below the working folder, relative to it."""
    if not path:
        return path
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.4g}" for v in value) + "]"
    return str(value)


def _print_listing(key: str, task: str | None = None) -> None:
    from trainctl.components.registries import REGISTRIES
    from trainctl.reports.listing import LISTING_FIELDS, registry_table

    _load_plugins()
    registry = REGISTRIES[key]
    entries = list(registry)
    if task is not None:
        tasks = sorted({entry.info.task for entry in entries} - {"any"})
        if task not in tasks:
            with user_errors():
                raise UserError(f"--task: unknown task {task!r}; allowed: {', '.join(tasks)}")
        # Composites ("any") combine losses of whichever task, so they belong in every task's list.
        entries = [entry for entry in entries if entry.info.task in (task, "any")]
    Output().show(registry_table(key, registry, LISTING_FIELDS[key], entries), wide=True)


@app.command("list-losses")
def list_losses(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Show this loss in full, with an example config.", autocompletion=completion.registered("losses")
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            metavar="TASK",
            help="Only losses for this task: classification, regression or distribution.",
            autocompletion=completion.loss_tasks,
        ),
    ] = None,
    details: Annotated[
        str | None,
        typer.Option(
            "--details",
            metavar="NAME",
            help="Same as NAME.",
            show_default=False,
            autocompletion=completion.registered("losses"),
        ),
    ] = None,
) -> None:
    """List the registered losses: task, formula, target, expected model output, parameters, when to use.

    Example: trainctl list-losses --task regression   (or: trainctl list-losses huber)
    """
    name = name or details
    if name is None:
        _print_listing("losses", task)
        return
    from trainctl.components.registries import LOSSES
    from trainctl.reports.listing import loss_details

    _load_plugins()

    with user_errors():
        entry = LOSSES.get(name)
    Output().show(loss_details(entry), wide=True)


def _add_listing_command(key: str) -> None:
    def command() -> None:
        _print_listing(key)

    command.__doc__ = f"List the registered {key} and their parameters.\n\nExample: trainctl list-{key}"
    app.command(f"list-{key}")(command)


for _key in ("datasets", "optimizers", "schedulers", "metrics", "transforms"):
    _add_listing_command(_key)


@app.command("list-models")
def list_models(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Show this model's parameters: the names model.freeze and optimizer.groups select.",
            autocompletion=completion.registered("models"),
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(metavar="CONFIG", help="With NAME: build it on this config's dataset and model parameters."),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        overrides_option(" (with NAME)"),
    ] = None,
) -> None:
    """List the registered models and their parameters; with NAME, the model's layers (parameter names and shapes).

    The layers depend on the data, so NAME is built on the digits dataset with its defaults, or on a
    config's dataset and parameters with --config.

    Example: trainctl list-models   (or: trainctl list-models torchvision --config configs/my_resnet.yaml)
    """
    if name is None:
        _print_listing("models")
        return
    from trainctl.components.registries import MODELS
    from trainctl.reports.listing import model_layers

    _load_plugins()
    with user_errors():
        MODELS.get(name)
        layers = model_layers(name, config, list(overrides or []))
    Output().show(layers, wide=True)


@app.command("plugins")
def list_plugins() -> None:
    """List the loaded plugins (installed entry points and --plugin) and the components each registers.

    Example: trainctl plugins   (or: trainctl --plugin my_components.py plugins)
    """
    from trainctl.plugins import GROUP
    from trainctl.reports.tables import plugin_table

    loaded = _load_plugins()
    output = Output()
    if not loaded:
        output.line(f"no plugins loaded (install a package with a {GROUP} entry point, or give --plugin PATH.py)")
        return
    rows = [(str(plugin.source), [f"{kind} {name}" for kind, name in plugin.components]) for plugin in loaded]
    output.show(plugin_table(rows), wide=True)


@app.command("schema")
def write_schema(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write the schema to this file (default: print it)."),
    ] = None,
    force: Force = False,
) -> None:
    """Write the JSON Schema of the config file, for editors: completion and checks of every key, every
    registered name (plugins' too) and each component's parameters, with descriptions and defaults.

    A config follows it once its first line is `# yaml-language-server: $schema=PATH` (PATH relative
    to the config), which editors using the YAML language server read (VS Code's YAML extension, ...).

    Example: trainctl schema -o trainctl.schema.json
    """
    from trainctl.config.schema import config_schema, schema_text
    from trainctl.files import check_output_path, new_output

    _load_plugins()
    with user_errors():
        if output is not None:
            check_output_path(output, "--output", force)  # before the work, not after it
        text = schema_text(config_schema())
    if output is None:
        Output().write(text)
        return
    with user_errors(), new_output(output, "--output", force) as written:
        written.write_text(text, encoding="utf-8")
    Output().line(f"written: {output}")


@app.command("init")
def init_config(
    dataset: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="A registered dataset (trainctl list-datasets); the default: digits.",
            autocompletion=completion.registered("datasets"),
        ),
    ] = None,
    csv: Annotated[
        Path | None, typer.Option("--csv", metavar="FILE", help="A table (CSV, TSV or Parquet) with a header row.")
    ] = None,
    target: Annotated[str | None, typer.Option(metavar="COLUMN", help="With --csv: the column to predict.")] = None,
    images: Annotated[
        Path | None, typer.Option(metavar="DIR", help="A folder with one sub-folder of images per class.")
    ] = None,
    audio: Annotated[
        Path | None, typer.Option(metavar="DIR", help="A folder with one sub-folder of audio files per class.")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE", help="The config file to write.")] = Path(
        "trainctl.yaml"
    ),
    force: Force = False,
) -> None:
    """Write a commented starter config for your data that trains as it is: the task (classification or
    regression) is read from the data, and the loss, model, metrics and monitored metric follow from it.

    A CSV target column of text, or of whole numbers with at most 20 distinct values, is classes; other
    numbers are a regression target. Image and audio folders hold one sub-folder per class. Every section
    has a comment naming the listing of its alternatives.

    Example: trainctl init --csv fruit.csv --target fruit -o fruit.yaml && trainctl train fruit.yaml

    Example: trainctl init --images photos/   (photos/cat/*.jpg, photos/dog/*.jpg)
    """
    from trainctl.starter import init

    _load_plugins()  # a plugin's dataset can be named too
    with user_errors():
        written = init(output, dataset=dataset, csv=csv, target=target, images=images, audio=audio, force=force)
    shown = Output()
    shown.line(f"written: {written.path} ({written.summary()})")
    for note in written.found.notes:
        shown.warn(note)
    shown.line(f"train it: trainctl train {written.path}")


def _join_wrapped_lines(docstring: str) -> str:
    """Each paragraph of a docstring as one line. typer keeps the line breaks of every paragraph after
    the first, so text wrapped at 100 columns in the source would break mid-sentence at 80."""
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in inspect.cleandoc(docstring).split("\n\n"))


for _command in app.registered_commands:
    if _command.help is None and _command.callback is not None and _command.callback.__doc__:
        _command.help = _join_wrapped_lines(_command.callback.__doc__)


def main() -> None:
    completion.use_trainctl_scripts()  # what --show-completion and --install-completion write for bash
    completion.answer_if_asked(app)  # a Tab in the shell: the completions, then exit
    with closed_output_ends_quietly():
        app()


if __name__ == "__main__":
    main()
