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
        self.at_once: Interrupted | None = None  # raised by the first signal, once there is no step to finish

    def stop_at_once(self, interruption: Interrupted) -> None:
        """From now on the first signal raises `interruption`: the work left (the test evaluation)
        has no state to save, and waiting for it could take as long as an epoch."""
        self.at_once = interruption


class Interrupted(KeyboardInterrupt):
    """Training stopped on request after saving its state; `resume_hint` says how to go on, and
    `message` (when given) what was saved and what was left undone."""

    def __init__(self, resume_hint: str, message: str = ""):
        super().__init__(resume_hint)
        self.resume_hint = resume_hint
        self.message = message


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
        if stop.at_once is not None:
            raise stop.at_once
        stop.requested = True
        stop.signal_name = signal.Signals(signum).name
        on_first(stop.signal_name)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
