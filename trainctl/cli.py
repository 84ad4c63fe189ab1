"""The command line: parse arguments, call one function, turn a user error into one red line.

Heavy imports (torch, scikit-learn) happen inside the commands that train or evaluate, so
`trainctl --help` and the listings start in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from trainctl.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, UserError

app = typer.Typer(
    name="trainctl",
    help=(
        "Train PyTorch models from YAML configs: data, model, loss, optimizer, scheduler and epochs.\n\n"
        "Example: trainctl train configs/digits_mlp.yaml --set optimizer.lr=3e-4"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

_state = {"debug": False}


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """User errors become red lines and exit code 2; Ctrl-C exits 130; bugs keep their traceback."""
    try:
        yield
    except UserError as error:
        if _state["debug"]:
            raise
        err = Console(stderr=True, highlight=False)
        for line in error.lines():
            err.print(f"[red]error:[/red] {line}", markup=True, soft_wrap=True)
        raise typer.Exit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt:
        Console(stderr=True).print("[yellow]interrupted[/yellow]")
        raise typer.Exit(EXIT_INTERRUPTED) from None


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for user errors too.")] = False,
) -> None:
    _state["debug"] = debug


def _metrics_table(title: str, record: dict) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in record.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    return table


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML config file.", show_default=False)],
    overrides: Annotated[
        Optional[list[str]],
        typer.Option("--set", "-s", help="Override a config value: key.path=value (YAML). Repeatable."),
    ] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder to create (must not exist or be empty).")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N or mps (sets trainer.device).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (sets seed).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output; print only the run folder.")] = False,
) -> None:
    """Train the model a config describes, then evaluate its best checkpoint on the test split.

    Writes a new run folder with config.yaml, metrics.jsonl, checkpoints/{best,last}.pt and summary.json.

    Example: trainctl train configs/digits_mlp.yaml --set trainer.epochs=5 --set model.hidden=[64,64]
    """
    from trainctl.workflows import train as run_training

    settings = list(overrides or [])
    if device is not None:
        settings.append(f"trainer.device={device}")
    if seed is not None:
        settings.append(f"seed={seed}")
    console = Console(highlight=False)
    with user_errors():
        result = run_training(config, settings, out=out, console=console, quiet=quiet)
    if quiet:
        console.print(str(result.run.path))
        return
    summary = result.summary
    console.print(
        f"best epoch {summary['best_epoch']} ({summary['monitor']} {summary['best_value']:.4f}), "
        f"trained in {summary['train_seconds']:.1f}s on {summary['device']}"
    )
    console.print(_metrics_table("test split, best checkpoint", summary["test"]))
    console.print(f"run folder: {result.run.path}")


@app.command("eval")
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `trainctl train`.", show_default=False)],
    checkpoint: Annotated[str, typer.Option(help="best, last, or a path to a checkpoint file.")] = "best",
    split: Annotated[str, typer.Option(help="test, val or train.")] = "test",
    output: Annotated[Optional[Path], typer.Option(help="Also write the metrics JSON to this file.")] = None,
) -> None:
    """Rebuild a run's model from its saved config, load a checkpoint and report metrics on a split.

    The metrics are printed and written to RUN_DIR/eval-SPLIT-CHECKPOINT.json. On the test split with
    the best checkpoint they reproduce the test metrics in summary.json.

    Example: trainctl eval runs/digits_mlp-20260101-120000 --checkpoint last --split val
    """
    from trainctl.workflows import evaluate_run

    console = Console(highlight=False)
    with user_errors():
        run, record = evaluate_run(run_dir, checkpoint, split)
    console.print(_metrics_table(f"{split} metrics ({checkpoint} checkpoint, epoch {record['epoch']})", record))
    if output is not None:
        output.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    console.print(f"written: {run.path / f'eval-{split}-{Path(checkpoint).stem}.json'}")


def _print_listing(key: str, task: str | None = None) -> None:
    from trainctl.components import REGISTRIES
    from trainctl.listing import LISTING_FIELDS, registry_table

    registry = REGISTRIES[key]
    entries = list(registry)
    if task is not None:
        tasks = sorted({entry.info.get("task") for entry in entries} - {"any"})
        if task not in tasks:
            with user_errors():
                raise UserError(f"--task: unknown task {task!r}; allowed: {', '.join(tasks)}")
        # Composites ("any") combine losses of whichever task, so they belong in every task's list.
        entries = [entry for entry in entries if entry.info.get("task") in (task, "any")]
    console = Console()
    if not console.is_terminal:  # pipes and files get a width that keeps formulas on one line
        console = Console(width=120)
    console.print(registry_table(key, registry, LISTING_FIELDS[key], entries))


@app.command("list-losses")
def list_losses(
    task: Annotated[
        Optional[str], typer.Option(help="Only losses for this task: classification, regression or distribution.")
    ] = None,
) -> None:
    """List the registered losses: task, formula, expected model output, parameters, when to use.

    Example: trainctl list-losses --task regression
    """
    _print_listing("losses", task)


def _add_listing_command(key: str) -> None:
    def command() -> None:
        _print_listing(key)

    command.__doc__ = f"List the registered {key} and their parameters.\n\nExample: trainctl list-{key}"
    app.command(f"list-{key}")(command)


for _key in ("datasets", "models", "optimizers", "schedulers", "metrics"):
    _add_listing_command(_key)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
