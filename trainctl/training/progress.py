"""What the user sees while a run trains: live bars on a terminal, one line per epoch elsewhere.

The trainer calls `step` after every batch. Reading the running loss forces the device to
synchronise, so the live view does it at most four times a second, not once per step.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from trainctl.output import Output

REFRESH_SECONDS = 0.25


class Reporter(Protocol):
    def start(self, epochs: int, steps_per_epoch: int, first_epoch: int = 1) -> None: ...
    def start_epoch(self, epoch: int) -> None: ...
    def step(self, step: int, loss_sum: Any, samples: int) -> None: ...
    def end_epoch(self, row: dict[str, Any]) -> None: ...
    def finish(self) -> None: ...


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def format_row(row: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}"]
    for key, value in row.items():
        if key in ("epoch", "seconds") or not isinstance(value, float):
            continue
        parts.append(f"{key} {value:.3e}" if key == "lr" else f"{key} {value:.4f}")
    parts.append(f"{row['seconds']:.1f}s")
    return "  ".join(parts)


class QuietReporter:
    def start(self, epochs: int, steps_per_epoch: int, first_epoch: int = 1) -> None:
        pass

    def start_epoch(self, epoch: int) -> None:
        pass

    def step(self, step: int, loss_sum: Any, samples: int) -> None:
        pass

    def end_epoch(self, row: dict[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass


class PlainReporter(QuietReporter):
    """One line per epoch, for logs, pipes and CI."""

    def __init__(self, console: Console):
        self.console = console
        self.epochs = 0

    def start(self, epochs: int, steps_per_epoch: int, first_epoch: int = 1) -> None:
        self.epochs = epochs

    def end_epoch(self, row: dict[str, Any]) -> None:
        self.console.print(format_row(row, self.epochs), highlight=False, soft_wrap=True)


class LiveReporter(PlainReporter):
    """An epoch bar and a step bar with live loss, samples/s and ETA; finished epochs print above.

    Every redraw costs about a millisecond of the training thread's time, so redraws (bars and
    epoch lines alike) happen at most once per REFRESH_SECONDS: short epochs print in small groups.
    """

    def __init__(self, console: Console):
        super().__init__(console)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=True,
            # Redrawn from the training thread when due, rather than by rich's own thread, which
            # would take the interpreter lock from the training loop at its own pace.
            auto_refresh=False,
        )
        self._last_refresh = 0.0
        self._started = 0.0
        self._epoch_started = 0.0
        self._steps_before_epoch = 0
        self._pending_lines: list[str] = []

    def _due(self) -> bool:
        now = time.perf_counter()
        if now - self._last_refresh < REFRESH_SECONDS:
            return False
        self._last_refresh = now
        return True

    def _redraw(self) -> None:
        if self._pending_lines:  # printing above the bars redraws them too
            self.progress.console.print("\n".join(self._pending_lines), highlight=False, soft_wrap=True)
            self._pending_lines.clear()
        else:
            self.progress.refresh()

    def start(self, epochs: int, steps_per_epoch: int, first_epoch: int = 1) -> None:
        super().start(epochs, steps_per_epoch)
        self.steps_per_epoch = steps_per_epoch
        self.first_epoch = first_epoch
        self._started = time.perf_counter()
        self.progress.start()
        self.epoch_task = self.progress.add_task("epoch", total=epochs, completed=first_epoch - 1, info="")
        self.step_task = self.progress.add_task("step", total=steps_per_epoch, info="")

    def start_epoch(self, epoch: int) -> None:
        # No redraw here (rich's reset() would force one): the next due step moves the bar back.
        self._epoch_started = time.perf_counter()
        self._steps_before_epoch = (epoch - self.first_epoch) * self.steps_per_epoch

    def step(self, step: int, loss_sum: Any, samples: int) -> None:
        if not self._due():
            return
        now = time.perf_counter()
        rate = samples / max(now - self._epoch_started, 1e-9)
        done = self._steps_before_epoch + step  # steps done in this process, for the rate
        total = (self.epochs - self.first_epoch + 1) * self.steps_per_epoch
        remaining = (now - self._started) / max(done, 1) * (total - done)
        info = f"loss {float(loss_sum) / samples:.4f}  {rate:,.0f} samples/s  ETA {_clock(remaining)}"
        self.progress.update(self.step_task, completed=step, info=info)
        self._redraw()

    def end_epoch(self, row: dict[str, Any]) -> None:
        self._pending_lines.append(format_row(row, self.epochs))
        self.progress.update(self.epoch_task, completed=row["epoch"])
        if self._due():
            self._redraw()

    def finish(self) -> None:
        self._redraw()
        self.progress.stop()


def make_reporter(output: Output) -> Reporter:
    """Live bars on a terminal, a line per epoch elsewhere, nothing when quiet or not rank 0."""
    if not output.talks:
        return QuietReporter()
    return LiveReporter(output.stdout) if output.stdout.is_terminal else PlainReporter(output.stdout)
