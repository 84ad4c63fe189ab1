"""A warm sweep worker: one process that imports torch once and runs trials one after another.

`trainctl sweep` starts `--jobs` of them (`python -m trainctl.sweep_worker`; the pool's side is
`trainctl.sweeps.workers`) and talks to each through its standard streams, in JSON lines:

    sweep -> worker (stdin)   {"trial": {...}}        a trial to run (a TrialRequest)
                              {"prune": true|false}   the answer to a report
    worker -> sweep (stdout)  {"report": {"epoch": N, "value": V}}   after each epoch, when pruning
                              {"result": {...}}       how the trial ended (a TrialOutcome)

Whatever a trial prints goes to stderr (stdout carries the protocol alone); before each trial the
worker writes TRIAL_MARK there, so that the pool can name the last line a dying trial wrote.

Each trial starts from the state a fresh process has (`process_state`). While the worker waits for
a trial it ignores SIGINT and SIGTERM (the sweep decides when it stops, by closing stdin); during a
trial they act as in `trainctl train`: the first one lets the trial save its state and stop.
"""

from __future__ import annotations

import json
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from trainctl.errors import UserError
from trainctl.files import os_error_line, write_atomically
from trainctl.output import Output

if TYPE_CHECKING:
    from trainctl.training.events import EpochEnd

TRIAL_MARK = "--- trainctl sweep: trial starts ---"
PRUNED_FILE = "pruned.json"  # in a pruned trial's run folder: the epoch it stopped at and why


@dataclass(frozen=True)
class TrialRequest:
    """One trial for a worker: a new run of the sweep's base config, or the resume of an interrupted one."""

    run: str  # the trial's run folder
    config: str | None = None  # the base config of a new run; None: resume `run`
    overrides: tuple[str, ...] = ()  # the trial's values, as `--set key=value` gives them
    monitor: str = ""  # the metric reported after each epoch, when the sweep prunes
    report: bool = False  # report the monitored value each epoch and stop when told to

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> TrialRequest:
        return cls(**{**message, "overrides": tuple(message.get("overrides", ()))})


@dataclass(frozen=True)
class TrialOutcome:
    status: Literal["done", "failed", "interrupted"]
    error: str = ""  # for a failed trial: the line `trainctl train` would end with
    memory: int = 0  # the worker's resident bytes after the trial, for the pool's leak check


# What runs one trial, given the request, where its warnings go and the epoch-end handlers to add.
TrialRunner = Callable[[TrialRequest, Output, Sequence[Callable[[Any], None]]], None]


def serve(run_trial: TrialRunner, requests: TextIO, replies: TextIO) -> None:
    """Run the trials read from `requests` until it ends (the sweep closed it)."""
    from trainctl.sweeps.process_state import ProcessState, release_memory, resident_bytes

    wait_quietly()
    release_memory()  # freezes what the imports made: collections between trials skip it
    fresh = ProcessState.capture()
    channel = Channel(requests, replies)
    while (message := channel.receive()) is not None:
        request = TrialRequest.from_message(message["trial"])
        fresh.restore()
        print(TRIAL_MARK, file=sys.stderr, flush=True)
        outcome = run_one(run_trial, request, channel)
        release_memory()
        channel.send({"result": asdict(replace(outcome, memory=resident_bytes()))})


def run_one(run_trial: TrialRunner, request: TrialRequest, channel: Channel) -> TrialOutcome:
    handlers = [PruningReports(request, channel)] if request.report else []
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        run_trial(request, Output(quiet=True), handlers)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the trial saved what it had; the next sweep resumes it
        return TrialOutcome("interrupted")
    except BaseException as error:  # a trial's failure, whatever it is, ends the trial, not the worker
        return TrialOutcome("failed", error_line(error))
    finally:
        wait_quietly()
    return TrialOutcome("done")


def error_line(error: BaseException) -> str:
    """The line `trainctl train` ends with when it fails this way (without its `error: `): a user
    error's last line, a file error's path and reason, or the last line of a bug's traceback."""
    if isinstance(error, UserError):
        return error.lines()[-1]
    if isinstance(error, OSError) and error.filename is not None:
        return os_error_line(error)
    return traceback.format_exception_only(error)[-1].strip()


def wait_quietly() -> None:
    """Between trials the sweep alone decides when the worker stops: a Ctrl-C or SIGTERM meant for
    the trials does not kill an idle worker, which ends when its stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Channel:
    """The worker's ends of the protocol: JSON lines in, JSON lines out."""

    def __init__(self, requests: TextIO, replies: TextIO):
        self.requests = requests
        self.replies = replies

    def receive(self) -> dict[str, Any] | None:
        line = self.requests.readline()
        return json.loads(line) if line else None

    def send(self, message: dict[str, Any]) -> None:
        self.replies.write(json.dumps(message) + "\n")
        self.replies.flush()


class PruningReports:
    """An epoch_end handler: report the monitored value to the sweep and, when its pruner says so,
    end training after this epoch. The run is marked (PRUNED_FILE) before the epoch's checkpoint,
    which records the stop, so a resumed trial stops there too and the sweep knows it was pruned."""

    def __init__(self, request: TrialRequest, channel: Channel):
        self.request = request
        self.channel = channel

    def __call__(self, end: EpochEnd) -> None:
        value = end.row.get(self.request.monitor)
        if not isinstance(value, (int, float)):
            return
        self.channel.send({"report": {"epoch": end.epoch, "value": float(value)}})
        answer = self.channel.receive()
        if answer is None or not answer.get("prune"):
            return
        record = {"epoch": end.epoch, "monitor": self.request.monitor, "value": float(value)}
        write_atomically(json.dumps(record, indent=2).encode("utf-8"), Path(self.request.run) / PRUNED_FILE)
        end.stop()
