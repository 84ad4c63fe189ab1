"""The run folder: everything a run leaves behind, and nothing an earlier run had is overwritten.

config.yaml          the resolved config: exactly what ran, defaults filled in
metrics.jsonl        one JSON object per epoch
checkpoints/last.pt  after every epoch
checkpoints/best.pt  the best epoch by trainer.monitor
summary.json         test metrics of the best checkpoint, best epoch, timings (written last)
.trainctl.lock       while a process writes the run: its PID, and the lock it holds (flock)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainctl.errors import UserError
from trainctl.files import remove_temporaries, with_filename, write_atomically
from trainctl.yaml_source import dump_yaml

CHECKPOINTS = ("best", "last")


LOCK_NAME = ".trainctl.lock"  # holds the PID of the process writing the run; gone when it ends


class RunFolder:
    """A run folder, and while a run or resume writes it, the exclusive claim on it (`claim`)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock_fd: int | None = None
        self.created = False  # made by this process (removed whole if the run never trains)

    @classmethod
    def create(cls, output_dir: str | Path, name: str, out: str | Path | None = None) -> RunFolder:
        """A new, empty run folder, claimed by this process: `out` exactly (created, or an existing
        empty folder), or `output_dir/name-YYYYmmdd-HHMMSS[-N]`."""
        if out is not None:
            run = cls(Path(out))
            run.created = _make_folder(run.path)
            try:
                run._claim_empty()
            except OSError:
                if run.created:
                    shutil.rmtree(run.path, ignore_errors=True)
                raise
            return run
        base = Path(output_dir) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        _make_folder(base.parent)
        for attempt in range(1000):
            path = base if attempt == 0 else base.with_name(f"{base.name}-{attempt}")
            try:
                path.mkdir()  # fails if taken: two runs in the same second get different folders
            except FileExistsError:
                continue
            run = cls(path)
            run.created = True
            try:
                run.claim()
            except OSError:
                shutil.rmtree(run.path, ignore_errors=True)
                raise
            return run
        raise UserError(f"{base}: could not find a free run folder name")

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"{path}: run folder not found")
        if not (path / "config.yaml").is_file():
            raise UserError(f"{path}: not a run folder (no config.yaml in it)")
        return cls(path)

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    def _claim_empty(self) -> None:
        """Claim a folder that must be empty. The lock decides between processes that found it
        empty at once, and emptiness is checked while holding it: a loser is refused naming the
        winner, and one that comes later finds the winner's files. A killed run's lock file alone
        does not count."""
        self.claim()
        if any(entry.name != LOCK_NAME for entry in self.path.iterdir()):
            self.release()
            raise UserError(f"{self.path}: already exists and is not empty; choose another --out")

    def claim(self) -> None:
        """Hold the run's lock until `release` or the process ends (the OS drops it even after
        SIGKILL, so a killed run's lock file is never in the way); a second writer is refused."""
        import fcntl

        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:  # a read-only or vanished folder: name the run, not the lock file
                raise OSError(error.errno, error.strerror, str(self.path)) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise UserError(
                    f"{self.path}: in use by another trainctl process{f' (PID {holder})' if holder else ''}; "
                    "wait for it to finish, or stop it"
                ) from None
            if _same_file(fd, self.lock_path):
                self._hold(fd)
                return
            os.close(fd)  # the holder released and removed the file after we opened it: try again

    def _hold(self, fd: int) -> None:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as error:  # a full disk
            os.close(fd)
            self.lock_path.unlink(missing_ok=True)
            raise with_filename(error, self.path) from None
        self._lock_fd = fd

    def release(self) -> None:
        """Remove the lock file, then drop the lock (in this order, so that no one can lock a file
        that is about to vanish while another process locks its successor)."""
        if self._lock_fd is None:
            return
        with contextlib.suppress(OSError):
            self.lock_path.unlink()
        os.close(self._lock_fd)
        self._lock_fd = None

    def remove_temporaries(self) -> None:
        """What a killed writer left half-written: `.NAME.*.tmp` files (call while holding the lock)."""
        remove_temporaries(self.path)
        if (self.path / "checkpoints").is_dir():
            remove_temporaries(self.path / "checkpoints")

    def discard(self) -> None:
        """Undo a run that never trained: remove the folder this process made, or empty the one it
        was given; then release it."""
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            for entry in self.path.iterdir():
                if entry.name == LOCK_NAME:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        self.release()

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    def checkpoint_path(self, which: str) -> Path:
        """`best` or `last` within the run, or any other path as given."""
        if which in CHECKPOINTS:
            return self.path / "checkpoints" / f"{which}.pt"
        return Path(which)

    def eval_record_name(self, split: str, checkpoint: str) -> str:
        """`eval-SPLIT-best.json` for the run's own checkpoints (by name or by path); any other
        checkpoint file gets its name and a hash of its full path, so it never replaces those."""
        for which in CHECKPOINTS:
            if checkpoint == which or _same_path(Path(checkpoint), self.checkpoint_path(which)):
                return f"eval-{split}-{which}.json"
        path = Path(checkpoint)
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
        return f"eval-{split}-{path.stem}-{digest}.json"

    def read_config(self) -> dict[str, Any]:
        from trainctl.run_contents import read_run_config

        return read_run_config(self.config_path)

    def write_config(self, config: dict[str, Any]) -> None:
        header = "# Resolved config written by trainctl: exactly what ran, defaults filled in.\n"
        write_atomically((header + dump_yaml(config, sort_keys=False)).encode("utf-8"), self.config_path)

    def append_metrics(self, row: dict[str, Any]) -> None:
        try:
            with self.metrics_path.open("a", encoding="utf-8") as file:
                file.write(json.dumps(row) + "\n")
        except OSError as error:  # a full disk names no file by itself
            raise with_filename(error, self.metrics_path) from None

    def keep_metrics_through(self, epoch: int) -> None:
        """Drop rows after `epoch`: after a crash, epochs past the last checkpoint are trained again."""
        rows = [row for row in self.read_metrics() if row["epoch"] <= epoch]
        write_atomically("".join(json.dumps(row) + "\n" for row in rows).encode("utf-8"), self.metrics_path)

    def read_metrics(self) -> list[dict[str, Any]]:
        """Each epoch's row; a line torn by a kill mid-write is left out (that epoch is trained again)."""
        from trainctl.run_contents import read_metrics_rows

        return read_metrics_rows(self.metrics_path)

    def write_json(self, name: str, data: dict[str, Any]) -> Path:
        path = self.path / name
        write_atomically((json.dumps(data, indent=2) + "\n").encode("utf-8"), path)
        return path


def holds_earlier_output(folder: Path, is_kind: Callable[[Path], bool], writer: str, kind: str) -> bool:
    """Whether an --out folder holds an earlier output of this kind (a group, a cv, a sweep) to go on
    with; False when it is new or empty (a lock file aside). Anything else there is refused, before
    anything is written, so no one's files are taken over."""
    if not folder.exists():
        return False
    if not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder; choose another --out")
    if is_kind(folder):
        return True
    if any(entry.name != LOCK_NAME for entry in folder.iterdir()):
        raise UserError(
            f"{folder}: holds files that {writer} did not write; a {kind} folder must be new, empty or "
            f"an earlier {kind}'s: choose another --out"
        )
    return False


def _make_folder(path: Path) -> bool:
    """Create `path` and its parents; True when this call made `path` itself."""
    if path.is_symlink() and not path.exists():
        raise UserError(f"{path}: a symbolic link to {os.readlink(path)}, which does not exist")
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a folder")
    try:
        path.mkdir(parents=True)
        return True
    except FileExistsError as error:
        if path.is_dir():
            return False  # there already, or made by another process just now: the claim decides
        raise UserError(f"{error.filename or path}: exists and is not a folder") from None


def _read_pid(fd: int) -> str:
    """The holder's PID; a holder that has only just created the file may not have written it yet."""
    for _ in range(50):
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text:
            return text
        time.sleep(0.01)
    return ""


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
