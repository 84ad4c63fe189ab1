"""`trainctl sweep`: an Optuna study whose trials are ordinary `trainctl train` runs.

Trials run in the shared run pool (`trainctl.sweeps.pool`): `--jobs` warm worker processes, each
importing torch once and running trials one after another from a fresh state; a trial in several
processes (`--nproc N`) runs as its own `trainctl train --nproc N` process instead. The pool runs
and signals the trials; this module claims them from the study, prunes them and records them.

The study lives in a SQLite file in the sweep folder (or at `--storage`), so a sweep stopped by
Ctrl-C, a crash or a reboot continues when the same command runs again, and several processes or
machines can share one sweep through one storage URL.

    SWEEP/.trainctl-sweep  marks the folder as one trainctl created: no other folder is taken over
    SWEEP/base.yaml        the config every trial starts from (--set applied, sweep: removed)
    SWEEP/sweep.db         the Optuna study, unless --storage names another
    SWEEP/sweep.db.lock    serialises the sweep processes' storage creation and trial claims
    SWEEP/trial-0000/ ...  one ordinary run folder per trial
    SWEEP/leaderboard.csv  the trials, best first

A trial that fails (its training ends with an error, or its worker process dies) is recorded with
that error and the sweep goes on. A trial that was interrupted (Ctrl-C, or its sweep process died)
is run again on the next invocation: resumed from its last checkpoint when it has one. With a
pruner (`sweep.pruner`), trials report the monitored value after each epoch and a trial the pruner
stops ends after that epoch: its run folder is kept, marked (`pruned.json`), and not run again.

Sweep processes sharing a storage claim each trial under a file lock beside the SQLite file (or in
the sweep folder, for a database server), so on one machine every grid point and every random or
TPE trial runs exactly once, however many processes start at the same moment.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.markup import escape

from trainctl.components.metrics import goal
from trainctl.config.loading import read_config, validate
from trainctl.errors import UserError
from trainctl.files import write_atomically
from trainctl.output import Output
from trainctl.run_contents import read_summary
from trainctl.sweeps import folder as sweep_folder
from trainctl.sweeps.plan import SweepPlan, check_values, make_plan
from trainctl.sweeps.pool import RunPool, notice_of_first_signal, resuming
from trainctl.sweeps.worker import PRUNED_FILE, TrialRequest
from trainctl.training.mlflow_store import child_settings
from trainctl.yaml_source import dump_yaml

BASE_CONFIG = "base.yaml"
STORAGE_FILE = "sweep.db"
LEADERBOARD_FILE = "leaderboard.csv"
HEARTBEAT_SECONDS = 10  # a sweep process marks its running trials alive this often
GRACE_SECONDS = 60  # a running trial unmarked for this long belongs to a process that died: it is retried


class TrialFailed(Exception):
    """The trial's training exited with an error; the error is recorded on the trial."""


class TrialInterrupted(Exception):
    """The sweep was stopped while this trial ran; the next run of the sweep retries it."""


class TrialPruned(Exception):
    """The pruner stopped the trial after an epoch; its run folder says which (PRUNED_FILE)."""

    def __init__(self, epoch: int):
        super().__init__(f"pruned at epoch {epoch}")
        self.epoch = epoch


@dataclass
class SweepSetup:
    """A checked sweep, ready to run: nothing has been written yet."""

    name: str
    folder: Path
    base: dict[str, Any]  # the config every trial starts from, as plain YAML data
    plan: SweepPlan
    monitor: str
    storage_url: str
    jobs: int
    plugin_arguments: list[str] = field(default_factory=list)  # --plugin/--no-plugins, given to every trial
    nproc: int = 1  # processes per trial: more than one runs each trial as `trainctl train --nproc N`
    epochs: int | str = "auto"  # what each trial trains, for Hyperband; "auto" when the sweep varies it

    @property
    def direction(self) -> Literal["minimize", "maximize"]:
        return "minimize" if goal(self.monitor) == "min" else "maximize"

    def definition(self) -> dict[str, Any]:
        return {"base": self.base, "plan": self.plan.definition()}

    @property
    def storage_file(self) -> Path | None:
        """The SQLite file the study lives in; None for a database server."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(self.storage_url)
        except ArgumentError:  # not a URL at all: opening the storage says so in its own words
            return None
        if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
            return None
        return Path(url.database)

    @property
    def lock_file(self) -> Path:
        """The lock every process of this sweep takes to create the storage and to claim a trial:
        beside the SQLite file, so processes in different folders sharing one file agree."""
        storage_file = self.storage_file
        if storage_file is None:
            return self.folder / f"{STORAGE_FILE}.lock"
        return storage_file.with_name(f"{storage_file.name}.lock")


def prepare_sweep(
    config_path: str | Path,
    overrides: list[str],
    *,
    grid: list[str],
    space: list[str],
    random_trials: int | None = None,
    tpe_trials: int | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
    storage: str | None = None,
    jobs: int = 1,
    plugin_arguments: list[str] | None = None,
    nproc: int = 1,
    pruner: str | None = None,
) -> SweepSetup:
    """Read the config and the sweep options and check every value the sweep may try."""
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: must be at least 1")
    data, source = read_config(config_path, overrides)
    config = validate(copy.deepcopy(data), source)
    section = data.pop("sweep", None)
    _trials_draw_no_figures(data)
    plan = make_plan(section, grid, space, random_trials, tpe_trials, seed, pruner)
    check_values(plan, data, source, config.trainer.monitor)
    if nproc > 1 and plan.pruning.pruner != "none":
        raise UserError(
            f"--nproc {nproc}: a trial in several processes runs as its own `trainctl train --nproc`, "
            f"which cannot report its epochs to the pruner; drop --nproc or set sweep.pruner: none"
        )
    folder = Path(out) if out is not None else Path(config.output_dir) / f"{config.name}-sweep"
    sweep_folder.check_claimable(folder)
    url = storage or f"sqlite:///{(folder / STORAGE_FILE).resolve()}"
    epochs = "auto" if {"trainer", "trainer.epochs"} & set(plan.keys) else config.trainer.epochs
    return SweepSetup(
        config.name, folder, data, plan, config.trainer.monitor, url, jobs, list(plugin_arguments or []), nproc, epochs
    )


def _trials_draw_no_figures(data: dict[str, Any]) -> None:
    """Trials are many and short: their figures (0.4 s of a warm digits trial's 0.8 s) are left to
    `trainctl plot` unless the config asks for them with logging.figures."""
    logging = data.get("logging")
    if not isinstance(logging, dict):  # absent: validation refused anything but a mapping
        logging = data["logging"] = {}
    logging.setdefault("figures", False)


@dataclass
class LeaderboardRow:
    trial: int
    folder: str
    params: dict[str, Any]
    value: float | None
    status: str  # done | failed | pruned | interrupted | running | waiting
    seconds: float | None
    error: str = ""
    epochs: int | None = None  # epochs trained: for a pruned trial, the epoch it stopped at


@dataclass
class SweepOutcome:
    rows: list[LeaderboardRow]
    ran: int  # trials run by this invocation
    interrupted: bool


class StorageLost(UserError):
    """The study's storage failed under a running sweep (deleted, replaced or unreachable)."""


@dataclass
class _Runner:
    """Runs one sweep's trials in the shared run pool (`trainctl.sweeps.pool`): `--jobs N` jobs,
    each claiming a trial, running it in its warm worker (or as a `trainctl train --nproc` process)
    and recording its result, until the study needs no more."""

    setup: SweepSetup
    output: Output
    study: Any
    pool: RunPool

    def run_all(self) -> bool:
        """Run the jobs until every trial is claimed (by this or another process) and run, or a
        stop is requested; a second Ctrl-C kills the running trials and waits for their jobs to
        record them as interrupted. Returns whether the sweep was interrupted."""

        def announce(text: str) -> None:
            self.output.stdout.print(f"[yellow]{escape(text)}[/yellow]", highlight=False)

        def run_claimed(job: int, claimed: tuple[Any, dict[str, str]]) -> None:
            self._run_trial(job, *claimed)

        return self.pool.serve(self._claim, run_claimed, notice_of_first_signal(announce, "trials"))

    def _claim(self) -> tuple[Any, dict[str, str]] | None:
        """The next trial this process runs and its values, or None when the study needs no more.

        Deciding, creating and drawing the values happen under the sweep's lock, so two processes
        never take the last grid point (or the last random trial) both, a retry is queued once, and
        trial N draws from the sampler seeded for trial N whichever process or thread runs it.
        """
        import optuna

        with self.storage_errors(), sweep_folder.locked(self.setup.lock_file):
            optuna.storages.fail_stale_trials(self.study)
            _enqueue_retries(self.study)
            if _trials_to_run(self.study, self.setup.plan) == 0:
                return None
            self.study.sampler = _sampler(self.setup.plan, len(self.study.get_trials(deepcopy=False)))
            trial = self.study.ask()
            # A trial without a heartbeat is never found stale: record one before the lock goes.
            self.study._storage.record_heartbeat(trial._trial_id)
            params = {d.key: d.suggest(trial) for d in self.setup.plan.dimensions}
        return trial, params

    def _run_trial(self, job: int, trial: Any, params: dict[str, str]) -> None:
        from optuna.trial import TrialState

        stop_heartbeat = threading.Event()
        heartbeat = threading.Thread(target=self._beat, args=(trial, stop_heartbeat), daemon=True)
        heartbeat.start()
        try:
            value, state = self.objective(job, trial, params), TrialState.COMPLETE
        except TrialFailed as failure:
            with self.storage_errors():
                trial.set_user_attr("error", str(failure))
            value, state = None, TrialState.FAIL
        except TrialInterrupted:
            value, state = None, TrialState.FAIL
        except TrialPruned as pruned:
            with self.storage_errors():
                trial.set_user_attr("epochs", pruned.epoch)
            value, state = None, TrialState.PRUNED
        except BaseException:
            with self.storage_errors():
                self.study.tell(trial, state=TrialState.FAIL)
            raise
        finally:
            stop_heartbeat.set()
            heartbeat.join()
        with self.storage_errors():
            finished = self.study.tell(trial, value, state=state)
        self.report(finished)

    def _beat(self, trial: Any, stop: threading.Event) -> None:
        """Mark a running trial alive, as Optuna's optimize does, so another process can tell a trial
        whose sweep died (and retry it) from one that is still running."""
        while not stop.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(Exception):  # a missed beat only matters after GRACE_SECONDS of them
                self.study._storage.record_heartbeat(trial._trial_id)

    @contextlib.contextmanager
    def storage_errors(self) -> Iterator[None]:
        """A storage that fails under a running sweep is one line naming it, not Optuna's internals."""
        storage_file = self.setup.storage_file
        if storage_file is not None and not storage_file.is_file():
            raise StorageLost(
                f"{storage_file}: the sweep's storage was deleted while the sweep ran; its trial "
                f"folders are kept; start the sweep again with another --out"
            )
        try:
            yield
        except (StorageLost, TrialFailed, TrialInterrupted, TrialPruned):
            raise
        except Exception as error:
            if not _is_storage_error(error):
                raise
            detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            raise StorageLost(
                f"{self.setup.storage_url}: the sweep's storage failed while the sweep ran "
                f"({detail}); its trial folders are kept"
            ) from None

    def objective(self, job: int, trial: Any, params: dict[str, str]) -> float:
        folder_name = trial.user_attrs.get("folder") or f"trial-{trial.number:04d}"
        trial.set_user_attr("folder", folder_name)
        if self.pool.stop_requested:
            raise TrialInterrupted()
        run = self.setup.folder / folder_name
        if (run / "summary.json").is_file():  # a retried trial whose run had finished after all
            return self._finished(trial, run)
        request = self._request(run, params, resuming(run))
        outcome = self.pool.run(job, request, lambda epoch, value: self._should_prune(trial, epoch, value))
        if outcome.status == "interrupted" or self.pool.stop_requested:
            raise TrialInterrupted()
        if outcome.status == "failed":
            raise TrialFailed(outcome.error)
        return self._finished(trial, run)

    def _finished(self, trial: Any, run: Path) -> float:
        """A finished trial's value (TrialPruned when the pruner stopped it), its epochs recorded."""
        raise_if_pruned(run)
        value = trial_result(run)
        epochs = read_summary(run / "summary.json").get("epochs_trained")
        if isinstance(epochs, int):
            with self.storage_errors():
                trial.set_user_attr("epochs", epochs)
        return value

    def _request(self, run: Path, params: dict[str, str], resuming: bool) -> TrialRequest:
        reporting = self.setup.plan.pruning.pruner != "none"
        if resuming:
            return TrialRequest(str(run), monitor=self.setup.monitor, report=reporting)
        settings = (*(f"{key}={value}" for key, value in params.items()), *child_settings(self.setup.folder))
        config = str(self.setup.folder / BASE_CONFIG)
        return TrialRequest(str(run), config, settings, self.setup.monitor, reporting)

    def _should_prune(self, trial: Any, epoch: int, value: float) -> bool:
        with self.storage_errors():
            trial.report(value, epoch)
            return bool(trial.should_prune())

    def report(self, trial: Any) -> None:
        """After each trial: one line saying how it went."""
        values = "  ".join(f"{key}={_short(value)}" for key, value in trial.params.items())
        row = _row(trial)
        if row.status == "done":
            outcome = f"{self.setup.monitor} {row.value:.4f}"
        elif row.status == "failed":
            outcome = f"[red]failed[/red]: {escape(_first_clause(row.error))}"
        elif row.status == "pruned":
            outcome = f"[yellow]pruned[/yellow] at epoch {row.epochs}"
        else:
            outcome = "[yellow]interrupted[/yellow]"
        seconds = f" ({row.seconds:.1f}s)" if row.seconds is not None else ""
        self.output.markup(f"{escape(row.folder)}  {escape(values)}  {outcome}{seconds}")


def raise_if_pruned(run: Path) -> None:
    """TrialPruned when the pruner stopped this trial: its run folder says so, and at which epoch."""
    marker = run / PRUNED_FILE
    if not marker.is_file():
        return
    try:
        epoch = json.loads(marker.read_text(encoding="utf-8"))["epoch"]
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise TypeError(epoch)
    except (OSError, ValueError, KeyError, TypeError):
        raise TrialFailed(f"{marker}: not the record of a pruned trial trainctl wrote; the file is damaged") from None
    raise TrialPruned(epoch)


def trial_result(run: Path) -> float:
    """A finished trial's monitored best value; a damaged summary fails the trial with the file named."""
    path = run / "summary.json"
    try:
        value = read_summary(path).get("best_value")
    except UserError as error:
        raise TrialFailed(str(error)) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TrialFailed(f"{path}: best_value is {value!r}, not a finite number; the file is damaged")
    return float(value)


def _is_storage_error(error: Exception) -> bool:
    """An error of the database layer: SQLAlchemy's and Optuna's storage errors, and the assertions
    Optuna's storage makes about rows that went missing under it."""
    import traceback

    import optuna
    import sqlalchemy.exc

    if isinstance(error, (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)):
        return True
    innermost = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    return isinstance(error, (AssertionError, KeyError)) and any(
        f"{os.sep}optuna{os.sep}storages{os.sep}" in frame.filename for frame in innermost
    )


def _first_clause(error: str) -> str:
    """What went wrong without the advice that follows it (the CSV keeps the whole message)."""
    return re.split(r"; |\. ", error, maxsplit=1)[0]


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _status(trial: Any) -> str:
    from optuna.trial import TrialState

    if trial.state == TrialState.COMPLETE:
        return "done"
    if trial.state == TrialState.FAIL:
        return "failed" if "error" in trial.user_attrs else "interrupted"
    return trial.state.name.lower()


def _row(trial: Any) -> LeaderboardRow:
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    return LeaderboardRow(
        trial=trial.number,
        folder=trial.user_attrs.get("folder", f"trial-{trial.number:04d}"),
        params=dict(trial.params or trial.system_attrs.get("fixed_params", {})),  # queued trials: fixed
        value=trial.value if _status(trial) == "done" else None,
        status=_status(trial),
        seconds=duration,
        error=trial.user_attrs.get("error", ""),
        epochs=trial.user_attrs.get("epochs"),
    )


def _current_trials(study: Any) -> list[Any]:
    """Every trial except those replaced by a retry."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    return [t for t in trials if t.number not in retried]


def _enqueue_retries(study: Any) -> None:
    """Interrupted trials run again, with the same values and in the same folder."""
    for trial in _current_trials(study):
        if _status(trial) == "interrupted":
            attrs = {"retry_of": trial.number, "folder": trial.user_attrs.get("folder", f"trial-{trial.number:04d}")}
            if "grid_id" in trial.system_attrs:
                attrs["grid_id"] = trial.system_attrs["grid_id"]
            study.enqueue_trial(dict(trial.params), user_attrs=attrs)


def _trials_to_run(study: Any, plan: SweepPlan) -> int:
    """Queued retries plus the new trials the plan still asks for."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    if plan.sampler == "grid":
        started = len({t.system_attrs["grid_id"] for t in trials if "grid_id" in t.system_attrs})
    else:
        started = sum("retry_of" not in t.user_attrs for t in trials)
    return waiting + max(0, plan.trials - started)


def _grid_sampler(plan: SweepPlan) -> Any:
    import optuna

    class RetryingGridSampler(optuna.samplers.GridSampler):
        """Optuna's GridSampler, with a retried trial put back on the grid point it retries.

        GridSampler leaves enqueued trials without a grid point, and its after_trial then fails
        when that trial is the last one; the attributes set here are the ones it sets itself.
        The sweep decides itself when the grid is done (`_trials_to_run`), so after_trial does not
        stop the study, which only works inside Optuna's optimize.
        """

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            pass

        def before_trial(self, study: Any, trial: Any) -> None:
            super().before_trial(study, trial)
            if "grid_id" in trial.user_attrs and "grid_id" not in trial.system_attrs:
                study._storage.set_trial_system_attr(trial._trial_id, "search_space", self._search_space)
                study._storage.set_trial_system_attr(trial._trial_id, "grid_id", trial.user_attrs["grid_id"])

    return RetryingGridSampler(plan.grid_space(), seed=plan.seed)


def _sampler(plan: SweepPlan, trials_so_far: int) -> Any:
    import optuna

    if plan.sampler == "grid":
        return _grid_sampler(plan)
    # Offset by the trials so far: a continued sweep does not draw its first values again, and two
    # processes sharing the sweep draw different values for their trials.
    seed = plan.seed + trials_so_far
    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _open_study(setup: SweepSetup) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trainctl reports each trial itself
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # The sweep records heartbeats itself (_Runner._beat), around ask and tell instead of optimize.
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    try:
        storage = optuna.storages.RDBStorage(
            setup.storage_url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS
        )
        if setup.storage_file is not None:
            _write_ahead(storage.engine)
        study = optuna.create_study(
            storage=storage,
            study_name=setup.name,
            direction=setup.direction,
            load_if_exists=True,
            pruner=setup.plan.pruning.make(setup.epochs),
        )
    except Exception as error:  # optuna and the database drivers raise their own kinds for a bad URL
        raise UserError(f"--storage {setup.storage_url}: cannot open the sweep storage: {error}") from None
    definition = json.loads(json.dumps(setup.definition()))
    saved = study.user_attrs.get("definition")
    if saved is None:
        study.set_user_attr("definition", definition)
    elif saved != definition:
        from trainctl.config.identity import differing_keys, may_change_on_resume

        changed = [key for key in differing_keys(saved["base"], definition["base"]) if not may_change_on_resume(key)]
        if saved["plan"] != definition["plan"]:
            changed.append("the swept values")
        if not changed:  # only keys a resumed trial may change (logging): go on with them
            study.set_user_attr("definition", definition)
            return study
        raise UserError(
            f"{setup.folder}: this sweep was started with a different config or sweep; these differ: "
            f"{', '.join(changed)}. Rerun it with the same command, or choose another --out"
        )
    return study


def _write_ahead(engine: Any) -> None:
    """SQLite in write-ahead-log mode, synced at checkpoints rather than at every commit.

    Each trial writes a dozen small transactions (ask, values, heartbeats, reports, tell); with
    SQLite's default rollback journal each one waits for the disk twice, which on a busy machine
    cost more than a small trial trains. A write-ahead log keeps the database consistent after a
    crash of any process, and after a power cut loses at most the last commits (a trial whose
    result was not recorded runs again, finding its finished run folder). Every process that
    shares the file must be on this machine, as the sweep's claim lock already requires.
    """
    import sqlalchemy

    def on_connect(connection: Any, _: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    sqlalchemy.event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened while the storage was created reconnect with these settings


def run_sweep(setup: SweepSetup, output: Output) -> SweepOutcome:
    """Run the trials the study still needs, then write the leaderboard.

    The first Ctrl-C lets running trials save their state (they get the terminal's signal; a
    SIGTERM is passed on to them) and starts no new ones; a second one stops everything at once.
    """
    claim = sweep_folder.claim(setup.folder)
    pool = RunPool(setup.jobs, setup.plugin_arguments, setup.nproc)
    try:
        try:
            pool.start_workers()  # they import torch while the study opens
            with sweep_folder.locked(setup.lock_file):  # Optuna's schema creation is not safe to race
                study = _open_study(setup)
                _write_base_config(setup)
        except BaseException:
            sweep_folder.release(
                claim, setup.lock_file
            )  # a sweep that could not start leaves the folder as it found it
            raise
        with _mlflow_parent(setup, output) as parent:
            outcome = _run_trials(setup, output, study, pool)
            parent.finish_sweep(outcome.rows, setup.monitor, outcome.interrupted, [LEADERBOARD_FILE])
        return outcome
    finally:
        pool.close()


def _mlflow_parent(setup: SweepSetup, output: Output) -> contextlib.AbstractContextManager[Any]:
    """With logging.mlflow, the sweep's parent MLflow run, under which each trial nests."""
    from trainctl.training.mlflow_tracker import group_tracking

    varied = {d.key: d.describe().removeprefix(f"{d.key} ") for d in setup.plan.dimensions}
    lock = sweep_folder.locked(setup.lock_file)  # sweep processes sharing the folder share one parent
    return group_tracking(setup.base, setup.folder, setup.name, "sweep", varied, output, lock)


def _run_trials(setup: SweepSetup, output: Output, study: Any, pool: RunPool) -> SweepOutcome:
    runner = _Runner(setup, output, study, pool)
    interrupted = runner.run_all()
    with runner.storage_errors(), sweep_folder.locked(setup.lock_file):  # one writer of the leaderboard at a time
        rows = leaderboard(study, setup.direction)
        write_leaderboard(setup.folder / LEADERBOARD_FILE, rows, setup.plan.keys, setup.monitor)
    return SweepOutcome(rows, pool.ran, interrupted)


def _write_base_config(setup: SweepSetup) -> None:
    """The config the trials train, written once (the study's definition guards that it matches)."""
    path = setup.folder / BASE_CONFIG
    if not path.is_file():
        write_atomically(dump_yaml(setup.base, sort_keys=False).encode("utf-8"), path)


def leaderboard(study: Any, direction: str) -> list[LeaderboardRow]:
    rows = [_row(trial) for trial in _current_trials(study)]
    sign = -1.0 if direction == "maximize" else 1.0
    # A done trial always has its value (optuna's complete trials do); one without would sort last.
    done = sorted(
        (r for r in rows if r.status == "done"),
        key=lambda r: (sign * r.value if r.value is not None else math.inf, r.trial),
    )
    return done + [r for r in rows if r.status != "done"]


def write_leaderboard(path: Path, rows: list[LeaderboardRow], keys: list[str], monitor: str) -> None:
    import csv
    import io

    with io.StringIO(newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "trial", "folder", *keys, monitor, "status", "epochs", "seconds", "error"])
        for rank, row in enumerate(rows, 1):
            writer.writerow(
                [
                    rank if row.status == "done" else "",
                    row.trial,
                    row.folder,
                    *(row.params.get(k, "") for k in keys),
                    "" if row.value is None else repr(row.value),
                    row.status,
                    "" if row.epochs is None else row.epochs,
                    "" if row.seconds is None else f"{row.seconds:.2f}",
                    row.error,
                ]
            )
        write_atomically(handle.getvalue().encode("utf-8"), path)


def leaderboard_table(rows: list[LeaderboardRow], keys: list[str], monitor: str) -> Any:
    from trainctl.reports.tables import Column, table

    columns = [
        Column("trial", style="cyan", no_wrap=True),
        *(Column(key) for key in keys),
        Column(monitor, justify="right"),
        Column("seconds", justify="right"),
        Column("status"),
    ]
    cells = [
        [
            row.folder,
            *(_short(row.params.get(k, "—")) for k in keys),
            "—" if row.value is None else f"{row.value:.4f}",
            "—" if row.seconds is None else f"{row.seconds:.1f}",
            _status_cell(row),
        ]
        for row in rows
    ]
    return table(columns, cells)


def _status_cell(row: LeaderboardRow) -> str:
    if row.error:
        return f"failed: {_first_clause(row.error)}"
    if row.status == "pruned":
        return f"pruned at epoch {row.epochs}"
    return row.status
