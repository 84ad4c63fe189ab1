"""Sweep folders and storages shared or damaged: concurrent sweep processes, foreign folders, a
storage deleted under a running sweep."""

from __future__ import annotations

import csv
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from trainctl.errors import UserError
from trainctl.sweeps import folder as sweep_folder

from helpers import TRAINCTL, write_config

pytestmark = pytest.mark.subprocess  # every trial is a `trainctl train` process

GRID = ["--grid", "optimizer.lr=0.01,0.02", "--grid", "model.hidden=[8],[16]"]


def iris_config(directory: Path, epochs: int = 1) -> Path:
    return write_config(directory, trainer={"epochs": epochs, "device": "cpu"})


def read_leaderboard(folder: Path) -> list[dict]:
    with (folder / "leaderboard.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_two_sweep_processes_started_at_once_run_every_grid_point_once(tmp_path):
    """The README's way to share a sweep, on a fresh folder: both processes create the storage at
    the same moment. Trials are claimed under a lock, so on one machine each grid point runs in
    exactly one trial (Optuna's GridSampler alone may run a point twice when workers race)."""
    config, sweep = iris_config(tmp_path), tmp_path / "sweep"
    command = [TRAINCTL, "sweep", config, *GRID, "--out", sweep]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr
    assert sorted(p.name for p in sweep.glob("trial-*")) == ["trial-0000", "trial-0001", "trial-0002", "trial-0003"]
    rows = read_leaderboard(sweep)  # the last process to finish wrote it, with every trial done
    assert [row["status"] for row in rows] == ["done"] * 4
    points = sorted((row["optimizer.lr"], row["model.hidden"]) for row in rows)
    assert points == [("0.01", "[16]"), ("0.01", "[8]"), ("0.02", "[16]"), ("0.02", "[8]")]
    for row in rows:  # each folder trained the values its row names
        trained = yaml.safe_load((sweep / row["folder"] / "config.yaml").read_text())
        assert (trained["optimizer"]["lr"], trained["model"]["hidden"]) == (
            float(row["optimizer.lr"]),
            yaml.safe_load(row["model.hidden"]),
        )
    ran = sum(int(stdout.split(" run now")[0].rsplit("; ", 1)[1]) for stdout, _ in outputs)
    assert ran == 4  # between them, the two processes trained four trials: none twice


def test_a_folder_with_the_users_own_files_is_refused_and_left_alone(cli, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    own = {"base.yaml": "my: own config\n", "notes.txt": "keep me\n"}
    for name, text in own.items():
        (folder / name).write_text(text)
    result = cli("sweep", iris_config(tmp_path), *GRID, "--out", folder)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {folder}: holds files that a trainctl sweep did not write; a sweep folder "
        "must be new, empty or an earlier sweep's: choose another --out\n"
    )
    assert {p.name: p.read_text() for p in folder.iterdir()} == own


def test_a_file_as_the_sweep_folder_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(UserError, match="exists and is not a folder; choose another --out"):
        sweep_folder.check_claimable(path)


def test_claiming_marks_new_and_empty_folders_and_earlier_sweeps(tmp_path):
    assert sweep_folder.claim(tmp_path / "new") == sweep_folder.Claim(tmp_path / "new", created=True, marked=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert sweep_folder.claim(empty).created is False  # the user's folder: a failure must not remove it
    earlier = tmp_path / "earlier"  # written before the mark existed: only a sweep's own files
    (earlier / "trial-0000").mkdir(parents=True)
    for name in ("base.yaml", "sweep.db", "leaderboard.csv"):
        (earlier / name).write_text("")
    assert sweep_folder.claim(earlier) == sweep_folder.Claim(earlier, created=False, marked=True)
    for folder in (tmp_path / "new", empty, earlier):
        assert (folder / sweep_folder.MARKER).read_text() == sweep_folder.MARKER_TEXT
    assert sweep_folder.claim(tmp_path / "new") == sweep_folder.Claim(tmp_path / "new", created=False, marked=False)


def test_releasing_removes_only_what_the_claim_wrote(tmp_path):
    folder = tmp_path / "sweep"
    claim = sweep_folder.claim(folder)
    (folder / "sweep.db.lock").write_text("")
    (folder / "trial-0000").mkdir()  # another process sharing the sweep started a trial meanwhile
    sweep_folder.release(claim, folder / "sweep.db.lock")
    assert sorted(p.name for p in folder.iterdir()) == ["trial-0000"]
    fresh = tmp_path / "fresh"
    sweep_folder.release(sweep_folder.claim(fresh), fresh / "sweep.db.lock")
    assert not fresh.exists()


def test_a_storage_that_cannot_open_keeps_the_users_empty_folder(cli, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    result = cli("sweep", iris_config(tmp_path), *GRID, "--storage", "nosuchdb://x", "--out", folder)
    assert result.exit_code == 2
    assert "error: --storage nosuchdb://x: cannot open the sweep storage:" in result.stderr
    assert folder.is_dir() and list(folder.iterdir()) == []


@pytest.mark.slow
def test_the_storage_deleted_under_a_running_sweep_is_one_line(tmp_path):
    config, sweep = iris_config(tmp_path, epochs=10), tmp_path / "sweep"
    process = subprocess.Popen(
        [TRAINCTL, "sweep", config, "--grid", "optimizer.lr=0.01,0.02", "--out", sweep],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (sweep / "trial-0000" / "metrics.jsonl").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    (sweep / "sweep.db").unlink()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    assert stderr == (
        f"error: {sweep / 'sweep.db'}: the sweep's storage was deleted while the sweep ran; its trial "
        "folders are kept; start the sweep again with another --out\n"
    )
    assert (sweep / "trial-0000" / "config.yaml").is_file()  # the trial's run is kept
