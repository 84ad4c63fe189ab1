"""`trainctl cv CONFIG --folds K [--repeats R]`: K-fold cross-validation, each fold an ordinary run
folder in a cv folder (`trainctl.reports.cross_validation` describes its files).

Fold i's run is the config trained as `trainctl train` trains it, with `data.fold: {count: K,
index: i}` and the repeat's `data.split_seed` added: its test split is the fold's held-out rows
(`trainctl.data.folds`: stratified by class, whole groups with a csv dataset's data.group_column),
and its validation split is drawn from the other rows as usual (val_fraction). `--repeats R`
splits again with split seeds split_seed, split_seed+1, ... A fold's run folder resumes, `eval`s
and compares like any run.

The folds run `--jobs` at a time in the shared run pool (`trainctl.sweeps.pool`). A fold that
fails is recorded with its error line and the others go on. Running the same command again
continues: finished folds are kept, interrupted ones resumed from their last checkpoint, failed
ones tried again. A cv folder is one config, fold count and repeat count: another is refused,
naming what differs.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.config.identity import differing_keys
from trainctl.config.loading import Config, read_config, validate
from trainctl.errors import ConfigError, Problem, UserError
from trainctl.files import write_atomically
from trainctl.output import Output
from trainctl.reports.cross_validation import (
    BASE_CONFIG,
    CV_FILE,
    OOF_FILE,
    SUMMARY_FILE,
    CvRecord,
    FoldRun,
    fold_folder,
    is_cv,
    read_cv,
    write_oof,
    write_summary,
)
from trainctl.reports.groups import write_json
from trainctl.runs import RunFolder, holds_earlier_output
from trainctl.yaml_source import dump_yaml

MAX_REPEATS = 100  # a cross-validation repeated more often than this is a typo


@dataclass
class CvSetup:
    """A checked cross-validation, ready to run: nothing has been written yet."""

    name: str
    folder: Path
    base: dict[str, Any]  # the config every fold trains, as plain YAML data (without data.fold)
    folds: int
    repeats: int
    split_seeds: list[int]  # one per repeat
    monitor: str
    jobs: int = 1
    plugin_arguments: list[str] = field(default_factory=list)  # --plugin/--no-plugins, given to every fold
    notes: list[str] = field(default_factory=list)  # what the user should know about the folds

    @property
    def record(self) -> CvRecord:
        """A new cv.json: every fold waiting."""
        runs = [
            FoldRun(repeat, fold, seed, fold_folder(repeat, fold, self.repeats), "waiting")
            for repeat, seed in enumerate(self.split_seeds, 1)
            for fold in range(1, self.folds + 1)
        ]
        return CvRecord(self.name, self.folds, self.repeats, self.split_seeds, self.base, runs)


def prepare_cv(
    config_path: str | Path,
    overrides: list[str],
    *,
    folds: int,
    repeats: int = 1,
    out: str | Path | None = None,
    jobs: int = 1,
    plugin_arguments: list[str] | None = None,
) -> CvSetup:
    """Read and check the config, that its data can be split into the folds, and that the folder
    can hold this cross-validation."""
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: must be at least 1")
    if not 1 <= repeats <= MAX_REPEATS:
        raise UserError(f"--repeats {repeats}: give 1 to {MAX_REPEATS} repeats of the split")
    data, source = read_config(config_path, overrides)
    if isinstance(data.get("data"), dict) and "fold" in data["data"]:
        message = "trainctl cv sets it for each fold; leave it out of the config"
        raise ConfigError([Problem(source.where(("data", "fold")), "data.fold", message)])
    config = validate(copy.deepcopy(data), source)
    split_seeds = [config.data.split_seed + repeat for repeat in range(repeats)]
    notes = _check_folds(config, folds, split_seeds[0])
    folder = Path(out) if out is not None else Path(config.output_dir) / f"{config.name}-cv"
    setup = CvSetup(
        config.name,
        folder,
        data,
        folds,
        repeats,
        split_seeds,
        config.trainer.monitor,
        jobs,
        list(plugin_arguments or []),
        notes,
    )
    check_folder(setup)
    return setup


def _check_folds(config: Config, folds: int, split_seed: int) -> list[str]:
    """The dataset read once, here, so that folds it cannot give are one line before anything runs
    (too few samples of a class or too few groups); returns what the user should know."""
    from trainctl.components.registries import DATASETS
    from trainctl.data.folds import pool_folds

    with config.errors_located():
        raw = DATASETS.get(config.dataset.name).build(None, config.dataset.params)
        pool, assigned = pool_folds(raw, folds, split_seed, what=f"--folds {folds}")
    sizes = np.bincount(assigned, minlength=folds)
    spread = f"{sizes.min()}" if sizes.min() == sizes.max() else f"{sizes.min()} to {sizes.max()}"
    how = (
        "whole groups of data.group_column"
        if raw.groups is not None
        else ("stratified by class" if raw.task.kind == "classification" else "at random")
    )
    notes = [f"{folds} folds of {len(pool)} samples, {how}: {spread} held out per fold"]
    if raw.test_rows is not None:
        notes.append(
            f"dataset {config.dataset.name!r} keeps its own test split ({len(raw.test_rows)} samples): the folds "
            "split the other samples, and that test split is not used"
        )
    if raw.val_rows is not None:
        notes.append(
            f"dataset {config.dataset.name!r} keeps its own validation split ({len(raw.val_rows)} samples): "
            "every fold validates on it"
        )
    return notes


def check_folder(setup: CvSetup) -> CvRecord | None:
    """The folder's cv record when it holds this cross-validation already (None when new or
    empty); anything else there is refused before anything is written."""
    folder = setup.folder
    if not holds_earlier_output(folder, is_cv, "trainctl cv", "cv"):
        return None
    record = read_cv(folder)
    differences = [
        f"{name} ({was} before, {now} now)"
        for name, was, now in (("folds", record.folds, setup.folds), ("repeats", record.repeats, setup.repeats))
        if was != now
    ]
    differences += differing_keys(record.config, setup.base)
    if differences:
        raise UserError(
            f"{folder}: this cross-validation was started with a different config; these differ: "
            f"{', '.join(differences)}. Run it with the same command, or choose another --out"
        )
    return record


@dataclass
class CvOutcome:
    record: CvRecord
    summary: dict[str, Any]
    oof_rows: int  # rows written to oof.csv
    ran: int  # folds trained (or resumed) by this invocation
    interrupted: bool

    @property
    def failed(self) -> list[FoldRun]:
        return [run for run in self.record.runs if run.status == "failed"]


def run_cv(setup: CvSetup, output: Output) -> CvOutcome:
    """Train the folds that are not finished, then write summary.json and oof.csv.

    The first Ctrl-C lets running folds save their state and starts no new ones; a second one
    stops them at once (`trainctl.sweeps.pool`).
    """
    setup.folder.mkdir(parents=True, exist_ok=True)
    lock = RunFolder(setup.folder)
    lock.claim()  # a second process on the same folder is refused, naming the first
    try:
        record = _start_record(setup)
        with _mlflow_parent(setup, output) as parent:
            ran, interrupted = _run_waiting(setup, record, output)
            summary = write_summary(setup.folder, record)
            oof_rows = write_oof(setup.folder, record)
            parent.finish_group(summary, interrupted, [SUMMARY_FILE, CV_FILE, OOF_FILE])
        return CvOutcome(record, summary, oof_rows, ran, interrupted)
    finally:
        lock.release()


def _mlflow_parent(setup: CvSetup, output: Output) -> contextlib.AbstractContextManager[Any]:
    """With logging.mlflow, the cv folder's parent MLflow run, under which each fold's run nests."""
    from trainctl.training.mlflow_tracker import group_tracking

    varied = {"data.fold": f"{setup.folds} folds", "data.split_seed": ", ".join(map(str, setup.split_seeds))}
    return group_tracking(setup.base, setup.folder, setup.name, "cv", varied, output)


def _start_record(setup: CvSetup) -> CvRecord:
    """cv.json as this invocation starts: each fold done when its run finished, waiting otherwise."""
    check_folder(setup)  # again, now that the lock is held
    record = setup.record
    for run in record.runs:
        if (setup.folder / run.folder / "summary.json").is_file():
            run.status = "done"
    base = setup.folder / BASE_CONFIG
    if not base.is_file():
        write_atomically(dump_yaml(setup.base, sort_keys=False).encode("utf-8"), base)
    write_json(setup.folder / CV_FILE, record.to_dict())
    return record


def fold_settings(run: FoldRun, folds: int) -> tuple[str, ...]:
    """What a fold's run adds to the base config (as `trainctl train --set` takes it)."""
    return (f"data.fold.count={folds}", f"data.fold.index={run.fold}", f"data.split_seed={run.split_seed}")


def _run_waiting(setup: CvSetup, record: CvRecord, output: Output) -> tuple[int, bool]:
    """Train the folds not finished yet through the shared run pool, recording each in cv.json as
    it ends; how many ran, and whether they were interrupted."""
    from trainctl.sweeps.pool import PlannedRun, RunEnd, RunPool, end_line, notice_of_first_signal, run_planned
    from trainctl.training.mlflow_store import child_settings

    waiting = [run for run in record.runs if run.status == "waiting"]
    done = len(record.runs) - len(waiting)
    repeats = f" × {setup.repeats} repeats (split seeds {', '.join(map(str, setup.split_seeds))})"
    output.message(
        f"cv folder: {setup.folder}  ({setup.folds} folds{repeats if setup.repeats > 1 else ''}; "
        f"{done} finished before, {len(waiting)} to run"
        + (f", {min(setup.jobs, len(waiting))} at a time)" if waiting else ")")
    )
    for note in setup.notes:
        output.message(note)
    base = setup.folder / BASE_CONFIG
    parent = child_settings(setup.folder)  # nest each new run under the cv folder's MLflow run, when it has one
    planned = [
        PlannedRun(setup.folder / run.folder, base, (*fold_settings(run, setup.folds), *parent)) for run in waiting
    ]
    pool = RunPool(setup.jobs, setup.plugin_arguments)

    def on_end(end: RunEnd) -> None:
        run = waiting[end.index]
        run.seconds, run.status, run.error = end.seconds, end.status, end.error
        write_json(setup.folder / CV_FILE, record.to_dict())
        output.markup(end_line(setup.folder / run.folder, run.folder, end, setup.monitor))

    interrupted = run_planned(pool, planned, on_end, notice_of_first_signal(output.notice, "folds"))
    return pool.ran, interrupted
