"""MLflow tracking, for `logging.mlflow`: a run logged to an MLflow tracking store as it trains, where
`mlflow ui` shows it. mlflow is optional, and imported only when the setting is on
(`trainctl.training.mlflow_store` holds the store's side: URIs, records, params, client calls).

What a run logs (rank 0 alone, under --nproc):
- params: the resolved config, flattened (`model.hidden` = `[256, 256]`, values as YAML writes them);
  a value longer than MLflow takes is cut, and config.yaml, an artifact, holds it whole;
- metrics: each metrics.jsonl row at step = its epoch, under its own names (`train/loss`, `val/accuracy`,
  `lr`, ...); with logging.every_n_steps each step record at its optimizer step as `train_step/loss`
  and `train_step/lr` (TensorBoard's names); at the end the test split's scores as `test/<metric>` (the
  `val/` names' counterparts), at the step of the epoch they score;
- artifacts at the end: summary.json, config.yaml, curves.png (and reliability.png), checkpoints/best.pt;
- tags: trainctl.version, trainctl.run_folder and trainctl.status (running, finished, interrupted,
  failed), with MLflow's run status to match; a sweep's trial or a group's run also has
  mlflow.parentRunId (`logging.mlflow.parent_run_id`), and goes to its parent's experiment.

The run folder's mlflow.json records the store and the run, so `--resume` continues the same MLflow
run. MLflow cannot delete a metric's points, so a resume logs only what the MLflow run lacks: what
the folder holds past the run's last point first (all of it, for a run whose tracker failed before),
then the epochs and steps it trains. A run killed after logging an epoch but before its checkpoint
trains that epoch again, exactly as before, and logs it once.

The tracker never stops a run. The MLflow run is made (or reopened) before training starts: mlflow's
import takes seconds of Python, and done in a thread beside the training loop it slowed every step
(Python runs one thread at a time: the loop waited for the interpreter after each torch call). From
then on, training only queues points; a thread of the tracker's own (the writer) logs them, so the
loop does not wait for the store's writes (milliseconds each on SQLite, a round trip to a server),
and points go out together, at most one write per BATCH_SECONDS while the run trains. The first
failure (no mlflow, a store that cannot be reached or written, an error while logging) is one
warning line, and the tracker stops: the run goes on, and its folder is complete. The end of a run
waits for the writer, at most FINISH_SECONDS.

Sweeps, repeat groups and cross-validations (`GroupTracker`) log a parent run for the whole of
them, whose record (mlflow.json in their folder) each of their runs' configs gets through
`logging.mlflow.parent_run_id` (`mlflow_store.child_settings`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from trainctl import __version__
from trainctl.output import Output
from trainctl.training.mlflow_store import (
    NOT_INSTALLED,
    Points,
    Session,
    Status,
    experiment_name,
    first_line,
    flat_params,
    mlflow_installed,
    recorded_store,
    write_record,
)

if TYPE_CHECKING:
    from trainctl.config.loading import MlflowSettings
    from trainctl.runs import RunFolder
    from trainctl.training.events import EpochEnd
    from trainctl.training.step_records import StepRecord

# Points wait this long for more to go with them: a write costs the store milliseconds of Python, which
# the training loop waits for too (one thread runs at a time), so per-step points go in batches.
BATCH_SECONDS = 1.0
FINISH_SECONDS = 60.0  # how long the end of a run waits for the writer to log what is queued
EPOCH_METRIC = "train/loss"  # in every metrics.jsonl row: its last point is the last epoch a run logged
STEP_METRICS = {"loss": "train_step/loss", "lr": "train_step/lr"}  # a step record's values, as TensorBoard names them
ARTIFACTS = ("summary.json", "config.yaml", "curves.png", "reliability.png", "checkpoints/best.pt")


# ---- a training run -------------------------------------------------------------------------------


def epoch_points(row: dict[str, Any]) -> Points:
    """A metrics.jsonl row's numbers, as TensorBoard logs them."""
    values = {
        key: float(value)
        for key, value in row.items()
        if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    return Points("epoch", int(row["epoch"]), values)


def step_points(row: dict[str, Any]) -> Points:
    return Points("step", int(row["step"]), {name: float(row[key]) for key, name in STEP_METRICS.items()})


def test_points(summary: dict[str, Any]) -> Points:
    """summary.json's test scores (the loss and each metric), at the epoch of the checkpoint they score."""
    test = summary.get("test") or {}
    values = {
        f"test/{key}": float(value)
        for key, value in test.items()
        if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    return Points("final", int(test.get("epoch") or summary.get("best_epoch") or 0), values)


@dataclass(frozen=True)
class Resumed:
    """Where a resumed run starts again, and what its folder already holds up to there."""

    epoch: int
    step: int
    rows: list[Points]  # metrics.jsonl's rows through `epoch` and steps.jsonl's through `step`


def resumed_from(run: RunFolder, epoch: int, step: int) -> Resumed:
    """What a resume starts from; its folder's rows are read now, before training appends to them."""
    from trainctl.training.step_records import STEPS_FILE

    rows = [epoch_points(row) for row in _json_lines(run.metrics_path) if _whole(row.get("epoch"), epoch)]
    rows += [step_points(row) for row in _json_lines(run.path / STEPS_FILE) if _whole(row.get("step"), step)]
    return Resumed(epoch, step, rows)


def _whole(value: Any, through: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= through


def _json_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """A JSON-lines file's rows; a line that is not one (cut short by a kill) is left out."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if isinstance(row, dict):
                rows.append(row)
    return rows


class RunTracker:
    """One training run's MLflow run: opened when made; then the trainer's thread only queues, and
    the writer thread calls MLflow."""

    def __init__(
        self,
        settings: MlflowSettings,
        run: RunFolder,
        config: dict[str, Any],
        output: Output,
        resumed: Resumed | None = None,
    ):
        self.settings, self.run, self.config, self.output = settings, run, config, output
        self.resumed = resumed
        self.failure: str | None = None  # the first failure's warning line, set by the writer
        self.warned = False
        self.run_id: str | None = None
        self.logged_through = {"epoch": 0, "step": 0}  # points at these steps or before are in the run already
        self.tracking_uri = ""
        self._session: Session | None = None
        self._queue: queue.SimpleQueue[Points | Callable[[], None] | None] = queue.SimpleQueue()
        # Opened here, before training: mlflow's import and a new store's tables take seconds of
        # Python, which a thread beside the training loop would take from every step of it.
        self._guarded(self._open)
        self._warn_once()
        self._writer = threading.Thread(target=self._write, name="trainctl-mlflow", daemon=True)
        self._writer.start()

    # -- the trainer's side: queue, and say once when the writer failed --

    def log_epoch(self, end: EpochEnd) -> None:
        """An epoch_end handler: the epoch's metrics.jsonl row, at step = its epoch."""
        self._warn_once()
        if self.failure is None:
            self._queue.put(epoch_points(end.row))

    def log_step(self, record: StepRecord) -> None:
        """A step records' consumer: its loss and rate, at its optimizer step."""
        self._warn_once()
        if self.failure is None:
            self._queue.put(step_points(record.row()))

    def end(self, status: Status) -> None:
        """Log what the run's end has (a finished run: its test scores and files), set its status, and
        wait for the writer; a warning when it failed or did not finish in time."""
        if status == "finished":
            summary = _json_file(self.run.summary_path)
            if summary:
                self._queue.put(test_points(summary))
                self._queue.put(self._log_files)
        self._queue.put(functools.partial(self._end, status))
        self._queue.put(None)
        self._writer.join(FINISH_SECONDS)
        if self._writer.is_alive() and self.failure is None:
            self.failure = (
                f"logging.mlflow: {self.tracking_uri}: the store did not take the run's last records within "
                f"{FINISH_SECONDS:.0f} s; the run folder has them all"
            )
        self._warn_once()

    def _warn_once(self) -> None:
        if self.failure is not None and not self.warned:
            self.warned = True
            self.output.warn(self.failure)

    # -- the writer's side --

    def _write(self) -> None:
        """Take the queue in order until its end; points queued together go to MLflow in one batch."""
        while True:
            points: list[Points] = []
            for item in self._waiting():
                if isinstance(item, Points):
                    points.append(item)
                    continue
                self._guarded(functools.partial(self._log_points, points))
                points = []
                if item is None:
                    return
                self._guarded(item)
            self._guarded(functools.partial(self._log_points, points))

    def _waiting(self) -> list[Points | Callable[[], None] | None]:
        """What is queued: at least one item (waited for); points for up to BATCH_SECONDS more, unless
        a call or the end comes first."""
        items = [self._queue.get()]
        deadline = time.monotonic() + BATCH_SECONDS
        while isinstance(items[-1], Points) and (left := deadline - time.monotonic()) > 0:
            try:
                items.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        return items

    def _guarded(self, action: Callable[[], None]) -> None:
        """Run one MLflow action unless one failed before; keep the first failure as its warning."""
        if self.failure is not None:
            return
        try:
            action()
        except Exception as error:
            where = self.tracking_uri or "the tracking store"
            self.failure = f"logging.mlflow: {where}: {first_line(error)}; the run goes on without MLflow"

    def _log_files(self) -> None:
        if self._session is not None and self.run_id is not None:
            self._session.log_files(self.run_id, self.run.path, ARTIFACTS)

    def _end(self, status: Status) -> None:
        if self._session is not None and self.run_id is not None:
            self._session.end(self.run_id, status)

    def _open(self) -> None:
        """Connect, make the MLflow run or reopen the one the folder records, and log what it lacks."""
        settings = self.settings
        self.tracking_uri, recorded_run = recorded_store(self.run.path, settings)
        session = Session(self.tracking_uri)
        existing = session.reopen(recorded_run) if recorded_run is not None else None
        tags = {
            "trainctl.version": __version__,
            "trainctl.run_folder": str(self.run.path.resolve()),
            "trainctl.status": "running",
        }
        if existing is None:
            experiment = experiment_name(settings, str(self.config["name"]))
            name = settings.run_name or self.run.path.name
            self.run_id = session.create_run(experiment, name, settings.parent_run_id, tags)
            write_record(self.run.path, self.run_id, self.tracking_uri, settings.tracking_uri)
            logged_params: dict[str, str] = {}
        else:
            self.run_id = run_id = str(existing.info.run_id)
            session.set_tags(run_id, tags)
            self.logged_through = {
                "epoch": session.last_step(run_id, EPOCH_METRIC),
                "step": session.last_step(run_id, STEP_METRICS["loss"]),
            }
            logged_params = dict(existing.data.params)
        self._session = session
        # A param cannot change once logged: a resume logs the keys the run lacks (a config that
        # changed on resume is in config.yaml, logged again at the end).
        params = flat_params(self.config, session.param_limit)
        session.log(self.run_id, params={k: v for k, v in params.items() if k not in logged_params})
        if self.resumed is not None:
            self._log_points(self.resumed.rows)  # what the folder holds past the run's last point
            self.logged_through = {
                "epoch": max(self.logged_through["epoch"], self.resumed.epoch),
                "step": max(self.logged_through["step"], self.resumed.step),
            }

    def _log_points(self, points: list[Points]) -> None:
        """Log the points the MLflow run does not hold yet (after its last epoch and step)."""
        if self._session is None or self.run_id is None:
            return
        new = [p for p in points if p.kind == "final" or p.step > self.logged_through[p.kind]]
        self._session.log(self.run_id, new)


def start_tracking(
    settings: MlflowSettings, run: RunFolder, config: dict[str, Any], output: Output, resumed: Resumed | None = None
) -> RunTracker | None:
    """A run's tracker; None, after one warning line, when mlflow is not installed."""
    if not mlflow_installed():
        output.warn(NOT_INSTALLED)
        return None
    return RunTracker(settings, run, config, output, resumed)


@contextlib.contextmanager
def tracking(
    settings: MlflowSettings, run: RunFolder, config: dict[str, Any], output: Output, resumed: Resumed | None = None
) -> Iterator[RunTracker | None]:
    """Track the run while the block trains and tests it; its end sets the MLflow run's status."""
    tracker = start_tracking(settings, run, config, output, resumed)
    if tracker is None:
        yield None
        return
    try:
        yield tracker
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the run saved its state and stops
        tracker.end("interrupted")
        raise
    except BaseException:
        tracker.end("failed")
        raise
    tracker.end("finished")


# ---- the parent run of a sweep or a group of repeats ----------------------------------------------


def group_settings(base: dict[str, Any]) -> MlflowSettings | None:
    """logging.mlflow of a sweep's or group's base config (validated already, as a whole)."""
    from trainctl.config.loading import MlflowSettings

    logging_section = base.get("logging")
    raw = logging_section.get("mlflow") if isinstance(logging_section, dict) else None
    return None if raw is None else MlflowSettings.model_validate(raw)


def group_params(base: dict[str, Any], kind: str, varied: dict[str, str], limit: int) -> dict[str, str]:
    """A parent run's params: what its runs share (the base config, less the keys they vary), and
    how each varied key varies, as `<kind>.<key>` (`sweep.optimizer.lr`: `in 0.01, 0.1`)."""
    shared = {
        key: value
        for key, value in flat_params(base, limit).items()
        if not any(key == v or key.startswith(f"{v}.") for v in varied)
    }
    return {**shared, **{f"{kind}.{key}": how for key, how in varied.items()}}


class GroupTracker:
    """The parent MLflow run of a sweep or a group of repeats, whose runs nest under it.

    Made, or reopened from its folder's record, before the first run starts, so its calls are made
    in the caller's thread: a sweep's process waits for its trials and has the time. One that is
    off (logging.mlflow unset) or failed does nothing. Its first failure is one warning line."""

    def __init__(self, folder: Path, output: Output, enabled: bool = True):
        self.folder, self.output = folder, output
        self.enabled = enabled
        self.session: Session | None = None
        self.run_id: str | None = None
        self.tracking_uri = ""
        self.ended = False

    def _open(self, settings: MlflowSettings, name: str, kind: str, varied: dict[str, str], base: dict[str, Any]):
        self.tracking_uri, recorded_run = recorded_store(self.folder, settings)
        self.session = session = Session(self.tracking_uri)
        existing = session.reopen(recorded_run) if recorded_run is not None else None
        tags = {
            "trainctl.version": __version__,
            "trainctl.kind": kind,
            "trainctl.folder": str(self.folder.resolve()),
            "trainctl.status": "running",
        }
        if existing is not None:
            self.run_id = str(existing.info.run_id)
            session.set_tags(self.run_id, tags)
            return
        run_name = settings.run_name or self.folder.name
        self.run_id = session.create_run(experiment_name(settings, name), run_name, settings.parent_run_id, tags)
        write_record(self.folder, self.run_id, self.tracking_uri, settings.tracking_uri)
        session.log(self.run_id, params=group_params(base, kind, varied, session.param_limit))

    def finish(
        self,
        status: Status,
        *,
        metrics: dict[str, float] | None = None,
        tags: dict[str, str] | None = None,
        files: Sequence[str] = (),
    ) -> None:
        """Log what the sweep or group came to and end the run."""
        self.ended = True

        def log_end() -> None:
            if self.session is None or self.run_id is None:
                return
            self.session.log(self.run_id, [Points("final", 0, metrics or {})])
            if tags:
                self.session.set_tags(self.run_id, tags)
            self.session.log_files(self.run_id, self.folder, files)
            self.session.end(self.run_id, status)

        self._guarded(log_end)

    def finish_sweep(self, rows: Sequence[Any], monitor: str, interrupted: bool, files: Sequence[str]) -> None:
        """A sweep's end: the best trial (the leaderboard's first `rows`, ranked best first) as
        tags, and its monitored value as the parent's `monitor` metric."""
        done = [row for row in rows if row.status == "done"]
        tags = {"trainctl.trials_done": str(len(done)), "trainctl.trials": str(len(rows))}
        metrics = {}
        if done:
            best = done[0]
            tags["trainctl.best_trial"] = best.folder
            tags.update({f"trainctl.best.{key}": str(value) for key, value in best.params.items()})
            if best.value is not None:
                metrics[monitor] = float(best.value)
        self.finish("interrupted" if interrupted else "finished", metrics=metrics, tags=tags, files=files)

    def finish_group(self, summary: dict[str, Any], interrupted: bool, files: Sequence[str]) -> None:
        """A group's end: each test metric's mean and sd over the seeds, as `test/<metric>_mean` and `_sd`."""
        metrics = {}
        for name, stats in (summary.get("test") or {}).items():
            for statistic in ("mean", "sd"):
                if isinstance(stats.get(statistic), (int, float)):
                    metrics[f"test/{name}_{statistic}"] = float(stats[statistic])
        tags = {"trainctl.runs_done": str(len(summary.get("done", [])))}
        self.finish("interrupted" if interrupted else "finished", metrics=metrics, tags=tags, files=files)

    def _guarded(self, action: Callable[[], Any]) -> None:
        if not self.enabled:
            return
        try:
            action()
        except Exception as error:
            self.enabled = False
            where = self.tracking_uri or "the tracking store"
            self.output.warn(
                f"logging.mlflow: {where}: {first_line(error)}; the runs go on without a parent MLflow run"
            )


@contextlib.contextmanager
def group_tracking(
    base: dict[str, Any],
    folder: Path,
    name: str,
    kind: Literal["sweep", "repeats", "cv"],
    varied: dict[str, str],
    output: Output,
    lock: contextlib.AbstractContextManager[Any] | None = None,
) -> Iterator[GroupTracker]:
    """The parent run of the sweep or group in `folder` while the block runs its runs (made under
    `lock`, which the sweep processes sharing a folder hold in turn: one parent for them all). The
    block calls finish_sweep or finish_group; a block that raises ends the run interrupted or failed."""
    settings = group_settings(base)
    if settings is None or not mlflow_installed():
        if settings is not None:
            output.warn(NOT_INSTALLED)
        yield GroupTracker(folder, output, enabled=False)
        return
    tracker = GroupTracker(folder, output)
    with lock or contextlib.nullcontext():
        tracker._guarded(lambda: tracker._open(settings, name, kind, varied, base))
    try:
        yield tracker
    except KeyboardInterrupt:
        if not tracker.ended:
            tracker.finish("interrupted")
        raise
    except BaseException:
        if not tracker.ended:
            tracker.finish("failed")
        raise
