"""The output object: what quiet and other ranks print, and a closed pipe ending a command quietly."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from trainctl.output import EXIT_OUTPUT_CLOSED, Output, OutputClosed, PipeConsole, closed_output_ends_quietly
from trainctl.runs import LOCK_NAME
from trainctl.training.progress import LiveReporter, PlainReporter, QuietReporter, make_reporter

from helpers import TRAINCTL, write_config


def recorded(**settings: bool) -> tuple[Output, io.StringIO, io.StringIO]:
    stdout, stderr = io.StringIO(), io.StringIO()
    output = Output(stdout=Console(file=stdout, width=40), stderr=Console(file=stderr, width=40), **settings)
    return output, stdout, stderr


def say_everything(output: Output) -> None:
    output.line("result")
    output.message("what is happening")
    output.warn("careful")


def test_quiet_keeps_the_result_and_the_warnings_and_drops_the_messages():
    output, stdout, stderr = recorded(quiet=True)
    say_everything(output)
    assert stdout.getvalue() == "result\n"
    assert stderr.getvalue() == "warning: careful\n"
    assert make_reporter(output).__class__ is QuietReporter


def test_a_process_other_than_the_main_one_prints_nothing():
    output, stdout, stderr = recorded()
    say_everything(output.in_process(main=False))
    output.in_process(main=False).show("a table")
    assert (stdout.getvalue(), stderr.getvalue()) == ("", "")
    assert make_reporter(output.in_process(main=False)).__class__ is QuietReporter
    say_everything(output.in_process(main=True))
    assert stdout.getvalue() == "result\nwhat is happening\n"


def test_lines_are_shown_as_given_never_as_markup_or_wrapped():
    output, stdout, stderr = recorded()
    long = "a [bold]literal[/bold] line " + "x" * 60
    output.line(long)
    output.warn("[red]not red[/red]")
    assert stdout.getvalue() == long + "\n"  # wider than the console's 40 columns, still one line
    assert stderr.getvalue() == "warning: [red]not red[/red]\n"


def test_the_progress_view_is_live_on_a_terminal_and_one_line_per_epoch_elsewhere():
    terminal = Output(stdout=Console(file=io.StringIO(), force_terminal=True))
    assert type(make_reporter(terminal)) is LiveReporter
    assert type(make_reporter(recorded()[0])) is PlainReporter


def closed_pipe() -> io.TextIOWrapper:
    """The writing end of a pipe whose reader is already gone."""
    reading, writing = os.pipe()
    os.close(reading)
    return os.fdopen(writing, "w")


@pytest.mark.parametrize("how", ["line", "write"])
def test_writing_into_a_closed_pipe_ends_the_command_with_the_sigpipe_status(how):
    with closed_pipe() as stream:
        output = Output(stdout=PipeConsole(file=stream))
        with pytest.raises(SystemExit) as ended, closed_output_ends_quietly():
            getattr(output, how)("x" * 100)
        assert ended.value.code == EXIT_OUTPUT_CLOSED == 141
        output.line("after")  # the closed stream takes nothing more, and says nothing more
        assert os.path.samestat(os.fstat(stream.fileno()), os.stat(os.devnull))


def test_output_closed_is_no_error_an_except_exception_would_catch():
    assert not issubclass(OutputClosed, Exception)


def pipeline(command: list[str | Path], reader: list[str]) -> tuple[int, str, str]:
    """`command | reader` through a real pipe: the command's exit status and stderr, the reader's stdout."""
    writer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(reader, stdin=writer.stdout, stdout=subprocess.PIPE)
    assert writer.stdout is not None
    writer.stdout.close()  # the reader holds the only reading end: when it exits, the pipe is closed
    shown, _ = head.communicate(timeout=60)
    _, errors = writer.communicate(timeout=60)
    return writer.returncode, errors.decode(), shown.decode()


@pytest.mark.subprocess
def test_a_listing_piped_into_a_reader_that_has_gone_ends_quietly():
    # head -n 0 exits without reading, before trainctl has started: every write meets a closed pipe.
    # (A reader that leaves while the writer waits on a full pipe can be missed: some kernels, gVisor's
    # for one, complete that write as if it had been read.)
    status, errors, shown = pipeline([TRAINCTL, "list-losses"], ["head", "-n", "0"])
    assert (status, errors, shown) == (EXIT_OUTPUT_CLOSED, "", "")


@pytest.mark.subprocess
@pytest.mark.parametrize("command", [["--help"], ["train", "--help"]])
def test_help_piped_into_a_reader_that_has_gone_ends_quietly(command):
    """typer prints help itself, through rich's and click's closed-pipe handlers (both exit 1)."""
    status, errors, shown = pipeline([TRAINCTL, *command], ["head", "-n", "0"])
    assert (status, errors, shown) == (EXIT_OUTPUT_CLOSED, "", "")


def test_a_command_that_fails_while_printing_to_devnull_keeps_its_status():
    """Only a stream that became /dev/null on the way means a closed reader; one that was already
    /dev/null (`> /dev/null`) keeps the command's own status."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        with pytest.raises(SystemExit) as ended, closed_output_ends_quietly():
            raise SystemExit(1)
    assert ended.value.code == 1


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_training_piped_into_head_ends_quietly_and_releases_its_run(tmp_path):
    run = tmp_path / "run"
    status, errors, shown = pipeline([TRAINCTL, "train", write_config(tmp_path), "--out", run], ["head", "-1"])
    assert shown == f"run folder: {run}\n"
    # head is gone long before the summary (the test evaluation and curves.png come first), so
    # trainctl meets the closed pipe at the latest there.
    assert (status, errors) == (EXIT_OUTPUT_CLOSED, "")
    assert (run / "config.yaml").is_file()
    assert not (run / LOCK_NAME).exists()  # the stack unwound: the run folder is released
