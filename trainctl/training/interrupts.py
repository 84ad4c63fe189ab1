"""Graceful stop: the first Ctrl-C or SIGTERM lets the current step finish and the run save its
state; a second one stops at once."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator


class StopRequest:
    """Set by a signal; the training loop checks it after every step."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""


class Interrupted(KeyboardInterrupt):
    """Training stopped on request after saving its state; `resume_hint` says how to go on."""

    def __init__(self, resume_hint: str):
        super().__init__(resume_hint)
        self.resume_hint = resume_hint


@contextlib.contextmanager
def graceful_stop(on_first: Callable[[str], None] = lambda name: None) -> Iterator[StopRequest]:
    """Install SIGINT/SIGTERM handlers for the duration; outside the main thread, do nothing."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signum: int, frame: object) -> None:
        if stop.requested:  # the second signal: stop now
            raise KeyboardInterrupt
        stop.requested = True
        stop.signal_name = signal.Signals(signum).name
        on_first(stop.signal_name)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
