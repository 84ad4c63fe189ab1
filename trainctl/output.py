"""Where a command's lines go: one object that knows the stdout and stderr consoles, whether the
user asked for quiet, and whether this process prints at all (of several processes, rank 0 alone).

A closed pipe ends the command quietly: `trainctl list-losses | head -1` stops writing when `head`
has read its line and exits with EXIT_OUTPUT_CLOSED, with nothing on stderr. Only rich here, never
torch: the listings print through this too.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property

from rich.console import Console, RenderableType
from rich.markup import escape

# 128 + SIGPIPE (13): what a shell shows for `cat`, `git log` or `yes` when the reader of their pipe
# goes away. Without `set -o pipefail` a pipeline's status is its last command's, so `trainctl ... |
# head` is quiet; with it, a script learns that the output was cut short, as for any other tool.
EXIT_OUTPUT_CLOSED = 141
WIDE_PIPE_COLUMNS = 120  # listings in pipes and files: wide enough to keep a loss's formula on one line


class OutputClosed(BaseException):
    """The reader of stdout (or stderr) went away. A BaseException, like KeyboardInterrupt: a request
    to stop, which no `except Exception` in the commands turns into a failure or a traceback; the
    stack unwinds (run folders are released) and `closed_output_ends_quietly` exits."""


class PipeConsole(Console):
    """A rich console whose closed pipe raises OutputClosed. rich's own handler raises SystemExit(1),
    which would end the command at once with the status of a failure."""

    def on_broken_pipe(self) -> None:
        self.quiet = True  # later prints of this console are dropped, not retried
        _discard_further_writes(self.file)
        raise OutputClosed()


def _discard_further_writes(stream: object) -> None:
    """Point the stream's file descriptor at the null device, so the interpreter's last flush of what
    is still buffered for the closed pipe does not fail again (as Python's docs on SIGPIPE advise)."""
    with contextlib.suppress(AttributeError, OSError, ValueError):  # a stream with no descriptor
        descriptor = stream.fileno()  # type: ignore[attr-defined]
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, descriptor)
        os.close(null)


@contextlib.contextmanager
def closed_output_ends_quietly() -> Iterator[None]:
    """Around a whole command: a closed stdout or stderr ends it with EXIT_OUTPUT_CLOSED and no message."""
    streams, devnull_before = (sys.stdout, sys.stderr), _writes_to_devnull(sys.stdout)
    try:
        yield
    except OutputClosed:
        raise SystemExit(EXIT_OUTPUT_CLOSED) from None
    except SystemExit as exit:
        # Help and usage text are printed by typer, not through Output. When their reader is gone,
        # rich points the stream at /dev/null and exits with 1, and click swaps in stream wrappers
        # that swallow the error and exits with 1: the same closed reader, so the same status.
        closed = (sys.stdout, sys.stderr) != streams or (_writes_to_devnull(sys.stdout) and not devnull_before)
        if exit.code == 1 and closed:
            raise SystemExit(EXIT_OUTPUT_CLOSED) from None
        raise


def _writes_to_devnull(stream: object) -> bool:
    try:
        written, devnull = os.fstat(stream.fileno()), os.stat(os.devnull)  # type: ignore[attr-defined]
    except (OSError, AttributeError, ValueError):
        return False
    return (written.st_dev, written.st_ino) == (devnull.st_dev, devnull.st_ino)


def _stdout() -> Console:
    return PipeConsole(highlight=False)


def _stderr() -> Console:
    return PipeConsole(stderr=True, highlight=False)


@dataclass(frozen=True)
class Output:
    """What a command prints and where. `quiet` drops the messages and the progress view (what is
    happening), not the command's result; `prints` False (processes other than rank 0) drops all."""

    stdout: Console = field(default_factory=_stdout)
    stderr: Console = field(default_factory=_stderr)
    quiet: bool = False
    prints: bool = True

    def in_process(self, main: bool) -> Output:
        """This output for one process of a run: those other than the main one print nothing."""
        return self if main else replace(self, prints=False)

    @property
    def talks(self) -> bool:
        """Whether messages and the progress view are shown."""
        return self.prints and not self.quiet

    def line(self, text: str) -> None:
        """A line of the command's result, exactly as given (no markup, never wrapped)."""
        if self.prints:
            self.stdout.print(text, markup=False, highlight=False, soft_wrap=True)

    def message(self, text: str) -> None:
        """A line saying what is happening, as given; none when quiet."""
        if self.talks:
            self.line(text)

    def markup(self, text: str) -> None:
        """A line in rich markup (colours); the caller escapes what is not markup."""
        if self.prints:
            self.stdout.print(text, highlight=False, soft_wrap=True)

    def show(self, renderable: RenderableType, *, wide: bool = False) -> None:
        """A table or another rich renderable. `wide`: in a pipe or file, WIDE_PIPE_COLUMNS wide
        rather than rich's 80, unless COLUMNS asks for another width."""
        if self.prints:
            (self._wide_stdout if wide else self.stdout).print(renderable)

    def write(self, text: str) -> None:
        """Text as it is (CSV, JSON, markdown): no markup, no wrapping, tabs kept."""
        if not self.prints:
            return
        stream = self.stdout.file
        try:
            stream.write(text)
            stream.flush()
        except BrokenPipeError:
            self.stdout.on_broken_pipe()

    def warn(self, text: str) -> None:
        self._to_stderr(f"[yellow]warning:[/yellow] {escape(text)}")

    def notice(self, text: str) -> None:
        """A yellow line on stderr: an interruption and what to do about it."""
        self._to_stderr(f"[yellow]{escape(text)}[/yellow]")

    def error(self, text: str) -> None:
        self._to_stderr(f"[red]error:[/red] {escape(text)}")

    def _to_stderr(self, markup: str) -> None:
        if self.prints:
            self.stderr.print(markup, highlight=False, soft_wrap=True)

    @cached_property
    def _wide_stdout(self) -> Console:
        if self.stdout.is_terminal or os.environ.get("COLUMNS"):
            return self.stdout
        # Listings keep rich's default highlighting, as they always printed.
        return PipeConsole(file=self.stdout.file, width=WIDE_PIPE_COLUMNS)
