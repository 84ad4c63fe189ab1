"""What the commands do, as functions the CLI and tests call: train a config, evaluate a run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from trainctl.config import Config, load_config
from trainctl.errors import UserError
from trainctl.runs import RunFolder


@dataclass
class TrainResult:
    run: RunFolder
    summary: dict[str, Any]


def train(
    config_path: str | Path,
    overrides: list[str] | None = None,
    *,
    out: str | Path | None = None,
    console: Console | None = None,
    quiet: bool = False,
    strict: bool = False,
) -> TrainResult:
    config = load_config(config_path, overrides)
    return train_config(config, out=out, console=console, quiet=quiet, strict=strict)


def validate(config_path: str | Path, overrides: list[str] | None = None) -> Any:
    """Build a config and check it with one forward and backward pass; returns the PreflightReport."""
    from trainctl.build import build_training
    from trainctl.preflight import preflight

    config = load_config(config_path, overrides)
    return preflight(config, build_training(config))


def train_config(
    config: Config,
    *,
    out: str | Path | None = None,
    console: Console | None = None,
    quiet: bool = False,
    strict: bool = False,
) -> TrainResult:
    # torch is imported here, not at the top, so commands that do not train start fast.
    from trainctl.build import build_training
    from trainctl.preflight import PreflightError, preflight
    from trainctl.progress import make_reporter
    from trainctl.trainer import Trainer, evaluate_checkpoint

    console = console or Console()
    # Everything is built and checked before the run folder exists: a bad config leaves nothing behind.
    parts = build_training(config)
    report = preflight(config, parts)
    if report.errors or (strict and report.warnings):
        raise PreflightError(report.errors + (report.warnings if strict else []))
    warn = Console(stderr=True, highlight=False)
    for finding in report.warnings:
        warn.print(f"[yellow]warning:[/yellow] {escape(str(finding))}", soft_wrap=True)
    run = RunFolder.create(config.output_dir, config.name, out)
    resolved = config.to_dict()
    run.write_config(resolved)
    if not quiet:
        console.print(f"run folder: {run.path}", highlight=False)
    trainer = Trainer(
        model=parts.model,
        loss_fn=parts.loss_fn,
        optimizer=parts.optimizer,
        data=parts.data,
        metrics=config.metrics,
        epochs=config.trainer.epochs,
        batch_size=config.data.batch_size,
        monitor=config.trainer.monitor,
        seed=config.seed,
        scheduler=parts.scheduler,
        scheduler_interval=parts.scheduler_interval,
        run=run,
        config=resolved,
        reporter=make_reporter(console, quiet),
    )
    fit = trainer.fit()
    test = evaluate_checkpoint(
        parts.model, run.checkpoint_path("best"), "test", parts.loss_fn, parts.data, config.metrics
    )
    test["checkpoint"] = "best"
    summary = {
        "name": config.name,
        "monitor": config.trainer.monitor,
        "best_epoch": fit.best_epoch,
        "best_value": fit.best_value,
        "epochs": config.trainer.epochs,
        "train_seconds": round(fit.seconds, 3),
        "device": str(parts.device),
        "test": test,
    }
    run.write_json("summary.json", summary)
    return TrainResult(run, summary)


def evaluate_run(
    run_dir: str | Path, checkpoint: str = "best", split: str = "test", worst: int = 10
) -> tuple[RunFolder, dict[str, Any]]:
    """Rebuild a run's model from its saved config, load a checkpoint and evaluate one split."""
    from trainctl.build import build_model_parts
    from trainctl.trainer import evaluate_checkpoint

    if split not in ("train", "val", "test"):
        raise UserError(f"--split: unknown split {split!r}; allowed: train, val, test")
    run = RunFolder.open(run_dir)
    config = load_config(run.config_path)
    parts = build_model_parts(config)
    path = run.checkpoint_path(checkpoint)
    record = evaluate_checkpoint(parts.model, path, split, parts.loss_fn, parts.data, config.metrics, worst)
    record["checkpoint"] = checkpoint
    run.write_json(f"eval-{split}-{Path(checkpoint).stem}.json", record)
    return run, record
