"""The sweep's side of its warm workers (`trainctl.sweeps.worker` has the protocol).

A worker is a plain subprocess, `python -m trainctl.sweep_worker`, not a fork of the sweep: the
sweep runs threads (one per job, heartbeats), and a fork of a threaded process may inherit a lock
held by another thread; a subprocess starts clean, gets the sweep's environment and plugins as a
`trainctl train` process does, is in the terminal's process group (Ctrl-C reaches it as it reaches
a trial process), and its death is seen at once, as the end of its stdout and its exit status.

A worker that dies during a trial (a segfault, `os._exit`, the kernel's out-of-memory killer)
takes only that trial with it: the trial fails with the last line the worker wrote on stderr, or
the signal or exit code that ended it, and the next trial starts a new worker. A worker whose
memory after a trial has grown by more than LEAK_ALLOWANCE since its first trial is replaced
before the next one, so a trial that leaks cannot starve the trials after it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from trainctl.sweeps.worker import TRIAL_MARK, TrialOutcome, TrialRequest

WORKER_MODULE = "trainctl.sweep_worker"
LEAK_ALLOWANCE = 1 << 30  # bytes a worker may grow by after its first trial before it is replaced
STOP_SECONDS = 30  # how long a worker told to stop may take before it is killed
STDERR_LINES = 50  # the tail of a worker's stderr kept to name why it died


class WorkerDied(Exception):
    """The worker process ended during a trial; the message says how (one line)."""


class WarmWorker:
    """One worker process, given one trial at a time by one of the sweep's threads."""

    def __init__(self, plugin_arguments: list[str], environment: dict[str, str]):
        self.process = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, *plugin_arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=environment,
        )
        self.trials = 0
        self.memory_after_first: int | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._stderr_reader = threading.Thread(target=self._read_stderr, name="sweep-worker-stderr", daemon=True)
        self._stderr_reader.start()

    def run(self, request: TrialRequest, on_report: Callable[[int, float], bool]) -> TrialOutcome:
        """Run one trial; `on_report(epoch, value)` answers whether to prune it. Raises WorkerDied."""
        assert self.process.stdin is not None and self.process.stdout is not None  # both are pipes
        self.trials += 1
        try:
            self._send({"trial": asdict(request)})
            while line := self.process.stdout.readline():
                message = json.loads(line)
                if "result" in message:
                    outcome = TrialOutcome(**message["result"])
                    if self.memory_after_first is None:
                        self.memory_after_first = outcome.memory
                    return outcome
                report = message["report"]
                self._send({"prune": on_report(int(report["epoch"]), float(report["value"]))})
        except (BrokenPipeError, ValueError, KeyError, TypeError):  # gone, or a line cut off by its death
            pass
        raise WorkerDied(self._why_it_died())

    def leaking(self, outcome: TrialOutcome) -> bool:
        return self.memory_after_first is not None and outcome.memory > self.memory_after_first + LEAK_ALLOWANCE

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if line.strip() == TRIAL_MARK:
                self._stderr.clear()  # what earlier trials wrote says nothing about this one
            elif line.strip():
                self._stderr.append(line.strip())

    def _why_it_died(self) -> str:
        code = self.process.wait()
        self._stderr_reader.join(timeout=5)  # the rest of what it wrote
        last = self._stderr[-1].removeprefix("error: ") if self._stderr else ""
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            hint = (
                " (the system's out-of-memory killer sends it when memory runs out)" if -code == signal.SIGKILL else ""
            )
            return f"the trial's worker process was killed by {name}{hint}"
        return last or f"the trial's worker process exited with code {code}"

    def send_signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signum)

    def stop(self) -> None:
        """End the worker: a worker that ran trials is waiting for the next and ends when its stdin
        closes; one still starting (it ran none) is killed rather than waited for."""
        if self.trials == 0:
            self.process.kill()
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._stderr_reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
