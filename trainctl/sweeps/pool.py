"""Runs of `trainctl train`, `--jobs` at a time: what `sweep`, `train --repeats` and `cv` share.

Each job is a thread that hands its runs to a warm worker of its own (`trainctl.sweeps.workers`),
a process that imports torch once for all its runs; a worker that dies fails only its run, and
the job's next run starts a new one; a worker that leaked memory is replaced. A run that cannot
go to a warm worker (in several processes with `--nproc`, or checked with `--strict`, which the
workers do not take) is a `trainctl train` process of its own.

The first Ctrl-C or SIGTERM lets running runs save their state (Ctrl-C reaches them from the
terminal; a SIGTERM is passed on) and starts no new ones; a second one kills them at once. An
error in a job's own code (not a run's failure) stops the other jobs the same way and is raised
in the main thread once every job has ended.

What to run comes from the caller: `serve` takes the next item from a callable (a sweep claims
trials from its study there), and `run_planned` runs a list of planned runs, reporting each one's
outcome as it ends (repeats and cv).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from trainctl.errors import EXIT_INTERRUPTED
from trainctl.sweeps.worker import TrialOutcome, TrialRequest
from trainctl.sweeps.workers import WarmWorker, WorkerDied

Item = TypeVar("Item")


def never_prune(epoch: int, value: float) -> bool:
    return False


@dataclass
class RunPool:
    """`jobs` slots of warm workers, and the runs in flight, which signals reach."""

    jobs: int
    plugin_arguments: list[str] = field(default_factory=list)  # --plugin/--no-plugins, given to every run
    nproc: int = 1  # processes per run: more than one runs each as `trainctl train --nproc N`
    strict: bool = False  # each new run stops on the checks' warnings too (a command of its own)
    workers: list[WarmWorker | None] = field(init=False)
    processes: set[subprocess.Popen] = field(default_factory=set)  # runs in processes of their own
    lock: threading.Lock = field(default_factory=threading.Lock)
    ran: int = 0  # runs started by this pool (each run in a worker or a process)
    stop_requested: bool = False  # the first Ctrl-C or SIGTERM
    stopping: bool = False  # no new runs: a stop was requested, or a job failed
    failure: BaseException | None = None  # what ended a job's thread early; raised in the main thread

    def __post_init__(self) -> None:
        self.workers = [None] * self.jobs

    @property
    def warm(self) -> bool:
        """Runs go to warm workers, unless each needs a command of its own."""
        return self.nproc == 1 and not self.strict

    def environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        if self.jobs > 1:  # parallel runs share the cores instead of each taking all of them
            threads = max(1, (os.cpu_count() or 1) // (self.jobs * self.nproc))
            environment.setdefault("OMP_NUM_THREADS", str(threads))
        return environment

    # ---- the jobs ------------------------------------------------------------------------------

    def serve(
        self,
        take: Callable[[], Item | None],
        run: Callable[[int, Item], None],
        announce: Callable[[str], None],
        threads: int | None = None,
    ) -> bool:
        """Run `threads` jobs (default: one per slot), each calling `take()` for its next item and
        `run(job, item)` on it, until `take` has none left or a stop is requested. `announce(name)`
        tells the user what the first signal does. Returns whether the runs were interrupted."""
        from trainctl.training.interrupts import graceful_stop

        def on_first_signal(name: str) -> None:
            announce(name)
            self.stop_requested = self.stopping = True
            if name == "SIGTERM":  # Ctrl-C reaches the runs from the terminal; SIGTERM only reached us
                self.signal_runs(signal.SIGTERM)

        count = self.jobs if threads is None else threads
        jobs = [
            threading.Thread(target=self._work, args=(job, take, run), name=f"run-pool-{job}") for job in range(count)
        ]
        interrupted = False
        with graceful_stop(on_first_signal) as stop:
            for thread in jobs:
                thread.start()
            try:
                for thread in jobs:
                    thread.join()
            except KeyboardInterrupt:  # the second Ctrl-C: stop the runs at once
                interrupted = self.stopping = True
                self.signal_runs(signal.SIGKILL)
                for thread in jobs:
                    thread.join()
            interrupted = interrupted or stop.requested
        if self.failure is not None:
            raise self.failure
        return interrupted

    def _work(self, job: int, take: Callable[[], Item | None], run: Callable[[int, Item], None]) -> None:
        try:
            while not self.stopping and self.failure is None:
                item = take()
                if item is None:
                    return
                run(job, item)
        except BaseException as error:  # the main thread reports it; the other jobs stop taking runs
            with self.lock:
                self.failure = self.failure or error
            self.stopping = True
            self.signal_runs(signal.SIGTERM)  # running runs save their state and stop

    # ---- one run ---------------------------------------------------------------------------------

    def run(
        self, job: int, request: TrialRequest, on_report: Callable[[int, float], bool] = never_prune
    ) -> TrialOutcome:
        """Run one run in this job's warm worker, or as a command of its own; how it ended."""
        try:
            if self.warm:
                return self._run_in_worker(job, request, on_report)
            return self._run_command(self.command(request))
        finally:
            with self.lock:
                self.ran += 1

    def _run_in_worker(self, job: int, request: TrialRequest, on_report: Callable[[int, float], bool]) -> TrialOutcome:
        worker = self.workers[job] or self._replace_worker(job)
        try:
            outcome = worker.run(request, on_report)
        except WorkerDied as death:
            self.retire_worker(job)  # the run failed with it; the job's next run gets a new one
            return TrialOutcome("failed", str(death))
        if worker.leaking(outcome):
            self.retire_worker(job)
        return outcome

    def command(self, request: TrialRequest) -> list[str]:
        """The `trainctl train` command that runs the request as a process of its own."""
        trainctl = [sys.executable, "-m", "trainctl", *self.plugin_arguments, "train"]
        several = ["--nproc", str(self.nproc)] if self.nproc > 1 else []
        if request.config is None:
            return [*trainctl, "--resume", request.run, *several, "--quiet"]
        settings = [arg for setting in request.overrides for arg in ("--set", setting)]
        strict = ["--strict"] if self.strict else []
        return [*trainctl, request.config, *settings, "--out", request.run, *several, "--quiet", *strict]

    def _run_command(self, command: list[str]) -> TrialOutcome:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=self.environment()
        )
        with self.lock:
            self.processes.add(process)
        try:
            _, stderr = process.communicate()
        finally:
            with self.lock:
                self.processes.discard(process)
        if process.returncode == 0:
            return TrialOutcome("done")
        if process.returncode == EXIT_INTERRUPTED:
            return TrialOutcome("interrupted")
        return TrialOutcome(
            "failed", last_error_line(stderr) or f"trainctl train exited with code {process.returncode}"
        )

    # ---- the workers -----------------------------------------------------------------------------

    def start_workers(self) -> None:
        """Start every slot's worker now, to import torch while the caller prepares (each is in its
        slot as soon as it started, for close() to stop); none when runs are commands."""
        for job in range(self.jobs if self.warm else 0):
            self._replace_worker(job)

    def _replace_worker(self, job: int) -> WarmWorker:
        worker = WarmWorker(self.plugin_arguments, self.environment())
        with self.lock:  # signal_runs reads the slots
            self.workers[job] = worker
        return worker

    def retire_worker(self, job: int) -> None:
        """End this job's worker (dead, or grown by a leak); the job's next run starts a new one."""
        with self.lock:
            worker, self.workers[job] = self.workers[job], None
        if worker is not None:
            worker.stop()

    def close(self) -> None:
        for job in range(self.jobs):
            self.retire_worker(job)

    def signal_runs(self, signum: int) -> None:
        """Signal every running run: its process, or its warm worker (an idle one ignores SIGINT and
        SIGTERM; SIGKILL ends it with its run)."""
        with self.lock:
            for process in self.processes:
                process.send_signal(signum)
            for worker in self.workers:
                if worker is not None:
                    worker.send_signal(signum)


def last_error_line(stderr: str) -> str:
    """The line a failed `trainctl train` ended with, without its `error: `."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1].removeprefix("error: ") if lines else ""


def resuming(run: Path) -> bool:
    """Whether a run folder is resumed from its last checkpoint; one stopped before its first
    checkpoint holds nothing to keep, and is removed so that the run starts again."""
    if (run / "checkpoints" / "last.pt").is_file():
        return True
    if run.exists():
        shutil.rmtree(run)
    return False


# ---- a list of runs (repeats, cv) ------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedRun:
    """A run of a list: a new run of `config` with `overrides` in `folder`, or its resume."""

    folder: Path
    config: Path
    overrides: tuple[str, ...] = ()

    def request(self) -> TrialRequest:
        if resuming(self.folder):
            return TrialRequest(str(self.folder))
        return TrialRequest(str(self.folder), str(self.config), self.overrides)


@dataclass(frozen=True)
class RunEnd:
    """How one planned run ended: done, failed (with its error line) or interrupted."""

    index: int  # in the list given to run_planned
    status: str
    error: str
    seconds: float


def run_planned(
    pool: RunPool,
    runs: list[PlannedRun],
    on_end: Callable[[RunEnd], None],
    announce: Callable[[str], None],
) -> bool:
    """Run the list, `pool.jobs` at a time, in its order; `on_end` is called once per run that
    started, under the pool's lock (one call at a time), with how it ended. A run that did not
    finish while the pool was stopping is interrupted. Returns whether the runs were interrupted."""
    queue = list(enumerate(runs))

    def take() -> tuple[int, PlannedRun] | None:
        with pool.lock:
            return queue.pop(0) if queue else None

    def run(job: int, item: tuple[int, PlannedRun]) -> None:
        index, planned = item
        started = time.perf_counter()
        outcome = pool.run(job, planned.request())
        seconds = round(time.perf_counter() - started, 3)
        status, error = (
            ("interrupted", "") if pool.stopping and outcome.status != "done" else (outcome.status, outcome.error)
        )
        with pool.lock:
            on_end(RunEnd(index, status, error, seconds))

    try:
        return pool.serve(take, run, announce, threads=min(pool.jobs, len(runs)))
    finally:
        pool.close()


def end_line(run: Path, label: str, end: RunEnd, monitor: str) -> str:
    """After each run of a list: one line (rich markup) saying how it went: its test value of the
    monitored metric, or its error line."""
    from rich.markup import escape

    from trainctl.reports.groups import test_metrics

    if end.status == "done":
        metric = monitor.removeprefix("val/")
        value = test_metrics(run).get(metric)
        outcome = f"test/{metric} {value:.4f}" if value is not None else "done"
    elif end.status == "failed":
        outcome = f"[red]failed[/red]: {escape(end.error)}"
    else:
        outcome = "[yellow]interrupted[/yellow]"
    return f"{escape(label)}  {outcome}  ({end.seconds:.1f}s)"


def notice_of_first_signal(notice: Callable[[str], None], what: str) -> Callable[[str], None]:
    """What the first signal says: that running `what` (runs, trials, folds) save their state."""

    def announce(name: str) -> None:
        notice(
            f"{name}: letting running {what} save their state; starting no new ones "
            "(press Ctrl-C again to stop at once)"
        )

    return announce
