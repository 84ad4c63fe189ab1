"""`trainctl train CONFIG --repeats N` (or `--seeds 0,1,2`): one config trained once per seed, each
run an ordinary run folder in a group folder (`trainctl.reports.groups` describes its files), then
the group's summary of every test metric over the seeds.

Each run is trained as `trainctl train` trains it, `--jobs` at a time, in the sweep's warm worker
processes (torch is imported once per job, not once per run). A run that fails is recorded with its error line and the others go on. Running the same command
again continues the group: finished runs are kept, interrupted ones resumed from their last
checkpoint, failed ones tried again; seeds not in the group yet are added to it. A group is one
config: a different one is refused, naming the keys that differ.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape

from trainctl.config.loading import read_config, validate
from trainctl.errors import EXIT_INTERRUPTED, UserError
from trainctl.files import write_atomically
from trainctl.output import Output
from trainctl.reports.groups import (
    BASE_CONFIG,
    GROUP_FILE,
    SUMMARY_FILE,
    GroupRecord,
    GroupRun,
    is_group,
    read_group,
    run_folder_name,
    summarise,
    test_metrics,
    write_json,
)
from trainctl.runs import LOCK_NAME, RunFolder
from trainctl.yaml_source import dump_yaml

MAX_SEEDS = 1000  # a group of more runs than this is a typo, not an experiment


def parse_seeds(text: str) -> list[int]:
    """`--seeds 0,1,2`: distinct non-negative integers, in the order given."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise UserError(f"--seeds {text}: {part!r} is not a seed; give non-negative integers, e.g. --seeds 0,1,2")
        if int(part) in seeds:
            raise UserError(f"--seeds {text}: seed {part} is given twice")
        seeds.append(int(part))
    return seeds


def choose_seeds(first: int, repeats: int | None, seeds: str | None) -> list[int]:
    """The seeds of --repeats N (first..first+N−1, first being the config's seed) or --seeds."""
    if repeats is not None and seeds is not None:
        raise UserError("give either --repeats N or --seeds LIST, not both")
    chosen = parse_seeds(seeds) if seeds is not None else list(range(first, first + (repeats or 0)))
    if not chosen:
        raise UserError("--repeats: give at least one run")
    if len(chosen) > MAX_SEEDS:
        raise UserError(f"--repeats {len(chosen)}: at most {MAX_SEEDS} runs in a group")
    return chosen


@dataclass
class RepeatSetup:
    """A checked group, ready to run: nothing has been written yet."""

    name: str
    folder: Path
    base: dict[str, Any]  # the config every run trains, as plain YAML data, without its seed
    seeds: list[int]
    monitor: str
    jobs: int = 1
    plugin_arguments: list[str] = field(default_factory=list)  # --plugin/--no-plugins, given to every run
    strict: bool = False  # each new run stops on the checks' warnings too


def prepare_repeats(
    config_path: str | Path,
    overrides: list[str],
    *,
    repeats: int | None,
    seeds: str | None,
    out: str | Path | None = None,
    jobs: int = 1,
    plugin_arguments: list[str] | None = None,
    strict: bool = False,
) -> RepeatSetup:
    """Read and check the config and the seeds, and that the folder can hold this group."""
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: must be at least 1")
    data, source = read_config(config_path, overrides)
    config = validate(copy.deepcopy(data), source)
    chosen = choose_seeds(config.seed, repeats, seeds)
    data.pop("seed", None)  # each run sets its own
    folder = Path(out) if out is not None else Path(config.output_dir) / f"{config.name}-repeats"
    setup = RepeatSetup(
        config.name, folder, data, chosen, config.trainer.monitor, jobs, list(plugin_arguments or []), strict
    )
    check_folder(setup)
    return setup


def check_folder(setup: RepeatSetup) -> GroupRecord | None:
    """The folder's group record when it holds this group already (None when new or empty);
    anything else there is refused before anything is written."""
    folder = setup.folder
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder; choose another --out")
    if not is_group(folder):
        if any(entry.name != LOCK_NAME for entry in folder.iterdir()):
            raise UserError(
                f"{folder}: holds files that a trainctl group did not write; a group folder must be new, "
                "empty or an earlier group's: choose another --out"
            )
        return None
    record = read_group(folder)
    if record.config != setup.base:
        from trainctl.config.identity import differing_keys

        raise UserError(
            f"{folder}: this group was started with a different config; these keys differ: "
            f"{', '.join(differing_keys(record.config, setup.base))}. Run it with the same config, "
            "or choose another --out"
        )
    return record


@dataclass
class RepeatOutcome:
    record: GroupRecord
    summary: dict[str, Any]
    ran: int  # runs trained (or resumed) by this invocation
    interrupted: bool

    @property
    def failed(self) -> list[GroupRun]:
        return [run for run in self.record.runs if run.status == "failed"]


def run_repeats(setup: RepeatSetup, output: Output) -> RepeatOutcome:
    """Train the group's runs that are not finished, then write summary.json.

    The first Ctrl-C lets running runs save their state (they get the terminal's signal; a
    SIGTERM is passed on to them) and starts no new ones; a second one stops them at once.
    """
    setup.folder.mkdir(parents=True, exist_ok=True)
    lock = RunFolder(setup.folder)
    lock.claim()  # a second process on the same group is refused, naming the first
    try:
        record = _start_record(setup)
        runner = _Runner(setup, record, output)
        runner.run_all()
        summary = summarise(setup.folder, record)
        write_json(setup.folder / SUMMARY_FILE, summary)
        return RepeatOutcome(record, summary, runner.ran, runner.interrupted)
    finally:
        lock.release()


def _start_record(setup: RepeatSetup) -> GroupRecord:
    """group.json as this invocation starts: the earlier record's runs (with this invocation's new
    seeds added), each marked done when its run finished and waiting otherwise."""
    earlier = check_folder(setup)  # again, now that the lock is held
    seeds = (earlier.seeds if earlier else []) + [s for s in setup.seeds if earlier is None or s not in earlier.seeds]
    runs = []
    for seed in seeds:
        folder = run_folder_name(seed)
        finished = (setup.folder / folder / "summary.json").is_file()
        kept = next((run for run in earlier.runs if run.seed == seed), None) if earlier else None
        runs.append(GroupRun(seed, folder, "done" if finished else "waiting", seconds=kept.seconds if kept else None))
    record = GroupRecord(setup.name, setup.base, runs)
    base = setup.folder / BASE_CONFIG
    if not base.is_file():
        write_atomically(dump_yaml(setup.base, sort_keys=False).encode("utf-8"), base)
    write_json(setup.folder / GROUP_FILE, record.to_dict())
    return record


@dataclass
class _Runner:
    """`--jobs` threads, each taking the next waiting run and training it, until none is left or a
    stop is requested. Each thread hands its runs to a warm worker of its own (the sweep's:
    `trainctl.sweeps.workers`), a process that imports torch once for all its runs; a worker that
    dies fails only its run, and the next run starts a new one. With --strict, which the workers
    do not take, each run is a `trainctl train --strict` process."""

    setup: RepeatSetup
    record: GroupRecord
    output: Output
    lock: threading.Lock = field(default_factory=threading.Lock)
    processes: set[subprocess.Popen] = field(default_factory=set)
    workers: list[Any] = field(default_factory=list)  # one WarmWorker (or None) per thread
    ran: int = 0
    interrupted: bool = False
    stopping: bool = False
    failure: BaseException | None = None  # what ended a thread early; raised in the main thread

    def run_all(self) -> None:
        from trainctl.training.interrupts import graceful_stop

        waiting = [run for run in self.record.runs if run.status == "waiting"]
        done = len(self.record.runs) - len(waiting)
        jobs = min(self.setup.jobs, len(waiting))
        self.output.message(
            f"group folder: {self.setup.folder}  ({len(self.record.runs)} runs, seeds "
            f"{_seed_list(self.record.seeds)}; {done} finished before, {len(waiting)} to run"
            + (f", {jobs} at a time)" if waiting else ")")
        )
        queue = list(waiting)

        def on_first_signal(name: str) -> None:
            self.output.notice(
                f"{name}: letting running runs save their state; starting no new ones "
                "(press Ctrl-C again to stop at once)"
            )
            self.stopping = True
            if name == "SIGTERM":  # Ctrl-C reaches the runs from the terminal; SIGTERM only reached us
                self.signal_runs(signal.SIGTERM)

        self.workers = [None] * jobs
        threads = [threading.Thread(target=self._work, args=(job, queue), name=f"repeat-{job}") for job in range(jobs)]
        try:
            with graceful_stop(on_first_signal) as stop:
                for thread in threads:
                    thread.start()
                try:
                    for thread in threads:
                        thread.join()
                except KeyboardInterrupt:  # the second Ctrl-C: stop the runs at once
                    self.stopping = True
                    self.signal_runs(signal.SIGKILL)
                    for thread in threads:
                        thread.join()
                self.interrupted = self.stopping or stop.requested
        finally:
            for job in range(jobs):
                self._retire_worker(job)
        if self.failure is not None:
            raise self.failure

    def _work(self, job: int, queue: list[GroupRun]) -> None:
        try:
            while not self.stopping and self.failure is None:
                with self.lock:
                    if not queue:
                        return
                    run = queue.pop(0)
                self._train(job, run)
        except BaseException as error:  # the main thread reports it; the other threads stop taking runs
            with self.lock:
                self.failure = self.failure or error
            self.stopping = True
            self.signal_runs(signal.SIGTERM)  # running runs save their state and stop

    def _train(self, job: int, run: GroupRun) -> None:
        started = time.perf_counter()
        path = self.setup.folder / run.folder
        resuming = (path / "checkpoints" / "last.pt").is_file()
        if not resuming and path.exists():
            shutil.rmtree(path)  # stopped before its first checkpoint: nothing in it to keep
        if self.setup.strict:
            status, error = self._run_command(run, resuming)
        else:
            status, error = self._run_in_worker(job, run, resuming)
        with self.lock:
            self.ran += 1
            run.seconds = round(time.perf_counter() - started, 3)
            run.status, run.error = ("interrupted", "") if self.stopping and status != "done" else (status, error)
            write_json(self.setup.folder / GROUP_FILE, self.record.to_dict())
            self.report(run)

    def _run_in_worker(self, job: int, run: GroupRun, resuming: bool) -> tuple[str, str]:
        from trainctl.sweeps.worker import TrialRequest
        from trainctl.sweeps.workers import WorkerDied

        path = str(self.setup.folder / run.folder)
        base = str(self.setup.folder / BASE_CONFIG)
        request = TrialRequest(path) if resuming else TrialRequest(path, base, (f"seed={run.seed}",))
        worker = self.workers[job] or self._start_worker(job)
        try:
            outcome = worker.run(request, lambda epoch, value: False)  # a group prunes nothing
        except WorkerDied as death:
            self._retire_worker(job)  # the run failed with it; the next run gets a new one
            return "failed", str(death)
        if worker.leaking(outcome):
            self._retire_worker(job)
        return outcome.status, outcome.error

    def _start_worker(self, job: int) -> Any:
        from trainctl.sweeps.workers import WarmWorker

        worker = WarmWorker(self.setup.plugin_arguments, self._environment())
        with self.lock:  # signal_runs reads the slots
            self.workers[job] = worker
        return worker

    def _retire_worker(self, job: int) -> None:
        with self.lock:
            worker, self.workers[job] = self.workers[job], None
        if worker is not None:
            worker.stop()

    def _run_command(self, run: GroupRun, resuming: bool) -> tuple[str, str]:
        trainctl = [sys.executable, "-m", "trainctl", *self.setup.plugin_arguments, "train"]
        path = str(self.setup.folder / run.folder)
        base = str(self.setup.folder / BASE_CONFIG)
        command = (
            [*trainctl, "--resume", path, "--quiet"]
            if resuming
            else [*trainctl, base, "--set", f"seed={run.seed}", "--out", path, "--quiet", "--strict"]
        )
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=self._environment()
        )
        with self.lock:
            self.processes.add(process)
        try:
            _, stderr = process.communicate()
        finally:
            with self.lock:
                self.processes.discard(process)
        if process.returncode == 0:
            return "done", ""
        if process.returncode == EXIT_INTERRUPTED:
            return "interrupted", ""
        return "failed", _last_error_line(stderr) or f"trainctl train exited with code {process.returncode}"

    def _environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        if self.setup.jobs > 1:  # parallel runs share the cores instead of each taking all of them
            environment.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.setup.jobs)))
        return environment

    def signal_runs(self, signum: int) -> None:
        """Signal every running run: its process, or its warm worker (an idle one ignores SIGINT and
        SIGTERM; SIGKILL ends it with its run)."""
        with self.lock:
            for process in self.processes:
                process.send_signal(signum)
            for worker in self.workers:
                if worker is not None:
                    worker.send_signal(signum)

    def report(self, run: GroupRun) -> None:
        """After each run: one line saying how it went."""
        seconds = f"  ({run.seconds:.1f}s)" if run.seconds is not None else ""
        if run.status == "done":
            metric = self.setup.monitor.removeprefix("val/")
            value = test_metrics(self.setup.folder / run.folder).get(metric)
            outcome = f"test/{metric} {value:.4f}" if value is not None else "done"
        elif run.status == "failed":
            outcome = f"[red]failed[/red]: {escape(run.error)}"
        else:
            outcome = "[yellow]interrupted[/yellow]"
        self.output.markup(f"{escape(run.folder)}  {outcome}{seconds}")


def _last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1].removeprefix("error: ") if lines else ""


def _seed_list(seeds: list[int]) -> str:
    """0-4 for a run of consecutive seeds, else the seeds one by one."""
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))
