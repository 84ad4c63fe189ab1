"""A run folder belongs to one writer at a time: claimed atomically, locked while a run or resume
writes it, and free again when that process ends, however it ends."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from trainctl.errors import UserError
from trainctl.output import Output
from trainctl.runs import LOCK_NAME, RunFolder
from trainctl.workflows import resume

from helpers import TRAINCTL, read_jsonl, write_config


def slow_config(tmp_path: Path, epochs: int = 8) -> Path:
    """Digits in batches of 8: long enough (about 0.4 s an epoch) for a second process to meet it."""
    return write_config(
        tmp_path,
        data={"name": "digits", "batch_size": 8},
        model={"name": "mlp", "hidden": [32]},
        trainer={"epochs": epochs, "device": "cpu"},
    )


def in_use(path: Path, pid: int) -> str:
    return f"{path}: in use by another trainctl process (PID {pid}); wait for it to finish, or stop it"


def test_an_empty_folder_is_claimed_once(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    first = RunFolder.create(tmp_path, "x", folder)
    assert (folder / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    with pytest.raises(UserError) as caught:
        RunFolder.create(tmp_path, "x", folder)
    assert str(caught.value) == in_use(folder, os.getpid())
    (folder / "config.yaml").touch()
    with pytest.raises(UserError) as caught:
        RunFolder.open(folder).claim()  # as a resume does
    assert str(caught.value) == in_use(folder, os.getpid())
    first.release()
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml"]


def test_a_killed_runs_lock_file_is_not_in_the_way(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / LOCK_NAME).write_text("999999\n")  # what SIGKILL leaves: the file, without the lock
    run = RunFolder.create(tmp_path, "x", folder)
    assert (folder / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    run.release()
    assert list(folder.iterdir()) == []


def test_a_users_folder_with_files_is_refused_and_left_as_it_was(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists and is not empty; choose another --out"):
        RunFolder.create(tmp_path, "x", folder)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_runs_started_at_once_into_one_folder(tmp_path):
    """Both race for the same new folder: one trains, the other is refused naming the winner."""
    config, out = slow_config(tmp_path), tmp_path / "run"
    command = [TRAINCTL, "train", str(config), "--out", str(out), "--quiet"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p, *p.communicate(timeout=240)) for p in processes]
    codes = sorted(p.returncode for p, _, _ in results)
    assert codes == [0, 2], [(p.returncode, err) for p, _, err in results]
    winner = next(p for p, _, _ in results if p.returncode == 0)
    loser_stderr = next(err for p, _, err in results if p.returncode == 2)
    assert loser_stderr == f"error: {in_use(out, winner.pid)}\n"
    assert [row["epoch"] for row in read_jsonl(out / "metrics.jsonl")] == list(range(1, 9))
    assert not (out / LOCK_NAME).exists()


@pytest.mark.slow
@pytest.mark.subprocess
def test_resume_is_refused_while_a_run_writes_and_works_after_it_is_killed(tmp_path):
    config, run = slow_config(tmp_path, epochs=6), tmp_path / "run"
    process = subprocess.Popen(
        [TRAINCTL, "train", str(config), "--out", str(run), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / "last.pt").exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(UserError) as caught:
        resume(run, output=Output(quiet=True))
    assert str(caught.value) == in_use(run, process.pid)
    process.kill()
    process.wait(timeout=60)
    assert re.fullmatch(r"\d+\n", (run / LOCK_NAME).read_text())  # the file stays; the lock went with the process
    result = resume(run, output=Output(quiet=True))
    assert result.summary["epochs_trained"] == 6
    assert [row["epoch"] for row in read_jsonl(run / "metrics.jsonl")] == list(range(1, 7))
    assert not (run / LOCK_NAME).exists()
