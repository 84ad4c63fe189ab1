"""Filesystem faults: one line naming the path and the OS reason, exit 2, nothing half-written left.

Read-only folders and full disks are real: read-only bind mounts and small tmpfs mounts (root with
CAP_SYS_ADMIN), and a permission drop through a user namespace (`unshare --user`), since root reads
any file whatever its mode. Where the machine does not allow them, those tests are skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from trainctl.output import Output
from trainctl.runs import LOCK_NAME

from helpers import TRAINCTL, write_config


def _can(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _can_mount() -> bool:
    with tempfile.TemporaryDirectory() as folder:
        if not _can(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", folder]):
            return False
        return _can(["umount", folder])


needs_mount = pytest.mark.skipif(
    os.geteuid() != 0 or not _can_mount(),
    reason="mounting a tmpfs or a read-only bind mount needs root with CAP_SYS_ADMIN",
)
needs_user_namespace = pytest.mark.skipif(
    os.geteuid() != 0 or not _can(["unshare", "--user", "true"]),
    reason="dropping root's permission bypass needs `unshare --user` run as root",
)


@contextlib.contextmanager
def mounted(target: Path, *arguments: str) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *arguments, str(target)], check=True, capture_output=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True, capture_output=True)


def read_only(source: Path) -> contextlib.AbstractContextManager[Path]:
    return mounted(source, "--bind", "-o", "ro", str(source))


def tmpfs(target: Path, size: str) -> contextlib.AbstractContextManager[Path]:
    return mounted(target, "-t", "tmpfs", "-o", f"size={size}", "tmpfs")


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0].removeprefix("error: ")


def test_out_that_is_a_file_under_a_file_or_a_dangling_link(cli, tmp_path):
    config = write_config(tmp_path)
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    assert one_error_line(cli("train", config, "--out", file)) == f"{file}: exists and is not a folder"
    assert one_error_line(cli("train", config, "--out", file / "run")) == f"{file / 'run'}: Not a directory"
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    assert one_error_line(cli("train", config, "--out", link)) == (
        f"{link}: a symbolic link to {tmp_path / 'gone'}, which does not exist"
    )
    assert file.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "notes.txt", "tiny.yaml"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    from trainctl.workflows import train

    folder = tmp_path_factory.mktemp("finished")
    return train(write_config(folder), out=folder / "run", output=Output(quiet=True)).run.path


@needs_mount
def test_read_only_output_folder_and_run_folder(cli, tmp_path, finished_run):
    config = write_config(tmp_path)
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    run = shelf / "run"
    shutil.copytree(finished_run, run)
    before = sorted(p.name for p in run.rglob("*"))
    with read_only(shelf):
        assert one_error_line(cli("train", config, "--out", shelf / "new")) == f"{shelf / 'new'}: Read-only file system"
        # eval writes the per-sample results first, then its record (eval-test-best.json)
        assert one_error_line(cli("eval", run)) == f"{run / 'test_predictions.csv'}: Read-only file system"
        assert one_error_line(cli("train", "--resume", run)) == f"{run}: Read-only file system"
    assert sorted(p.name for p in run.rglob("*")) == before
    assert sorted(p.name for p in shelf.iterdir()) == ["run"]


@needs_mount
def test_disk_full_at_start_leaves_no_run_folder(cli, tmp_path):
    config = write_config(tmp_path)
    with tmpfs(tmp_path / "disk", "64k") as disk:
        with contextlib.suppress(OSError), (disk / "filler").open("wb") as filler:
            filler.write(b"x" * 128 * 1024)
        line = one_error_line(cli("train", config, "--out", disk / "run"))
        assert line.startswith(f"{disk / 'run'}") and line.endswith(": No space left on device"), line
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]


@pytest.mark.slow
@pytest.mark.subprocess
@needs_mount
def test_disk_full_at_a_checkpoint_keeps_the_last_good_one_and_resumes(cli, tmp_path):
    """Room for about one and a half checkpoints: epoch 1's fits, epoch 2's does not."""
    config = write_config(tmp_path, model={"name": "mlp", "hidden": [256, 256]})  # about 0.8 MB a checkpoint
    with tmpfs(tmp_path / "disk", "1200k") as disk:
        run = disk / "run"
        line = one_error_line(cli("train", config, "--out", run))
        assert line == (
            f"{run / 'checkpoints' / 'last.pt'}: No space left on device; the run keeps its last good "
            f"checkpoint (epoch 1); resume with: trainctl train --resume {run}"
        )
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]  # no temporary
        assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
        assert not (run / LOCK_NAME).exists()
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        result = cli("train", "--resume", run, "--quiet")
        assert result.exit_code == 0, result.output
        assert [p.name for p in run.glob("summary.json")] == ["summary.json"]
        assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 3


@pytest.mark.subprocess
@needs_user_namespace
def test_an_unreadable_csv_is_named_and_leaves_nothing():
    # Outside the test's private temporary folder, which the unprivileged user could not enter.
    folder = Path(tempfile.mkdtemp(prefix="trainctl-unreadable-"))
    try:
        folder.chmod(0o777)
        (folder / "data.csv").write_text("a,y\n1,x\n2,z\n3,x\n4,z\n")
        (folder / "data.csv").chmod(0o000)
        config = write_config(folder, data={"name": "csv", "path": "data.csv", "target": "y", "batch_size": 2})
        config.chmod(0o644)
        result = subprocess.run(
            ["unshare", "--user", TRAINCTL, "train", str(config), "--out", str(folder / "run")],
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr == f"error: {folder / 'data.csv'}: Permission denied\n"
        assert sorted(p.name for p in folder.iterdir()) == ["data.csv", "tiny.yaml"]
    finally:
        shutil.rmtree(folder)
