"""The sweep folder: claimed by one mark, shared by several sweep processes through a file lock.

A folder is a sweep folder when trainctl created it (or found it empty) and marked it; any other
folder with files in it is refused, so a sweep never trains or overwrites a user's own files.
Folders made by earlier versions of trainctl, before the mark, are recognised by holding nothing
but a sweep's own files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from trainctl.errors import UserError
from trainctl.runs import holds_earlier_output

MARKER = ".trainctl-sweep"
MARKER_TEXT = "a trainctl sweep folder: `trainctl sweep --out` continues the sweep kept here\n"
# What a sweep writes, for recognising a folder from before the mark.
_OWN_NAMES = re.compile(
    r"base\.yaml|sweep\.db(\.lock|-wal|-shm)?|leaderboard\.csv|\.(base\.yaml|leaderboard\.csv)\..*\.tmp|trial-\d{4,}"
)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on PATH (a directory, or a lock file created if missing) for the block.

    flock locks belong to the open file, so two threads of one process exclude each other as two
    processes do; the kernel lets go when the process dies, so a killed sweep leaves no stale lock.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY if path.is_dir() else os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise UserError(f"{path}: cannot open it to coordinate the sweep's processes: {error.strerror}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def check_claimable(folder: Path) -> None:
    """Refuse, before anything is written, a folder that is not a sweep folder and not empty."""
    holds_earlier_output(folder, lambda path: _is_marked(path) or _is_unmarked_sweep(path), "a trainctl sweep", "sweep")


@dataclass(frozen=True)
class Claim:
    """What `claim` did, so a sweep that fails to start undoes exactly that."""

    folder: Path
    created: bool  # the folder did not exist: only then may a failure remove it
    marked: bool  # the mark was written now (a new, empty or earlier folder)


def claim(folder: Path) -> Claim:
    """Make FOLDER this sweep's: create and mark it, or mark it when empty or from before the mark.

    Several processes claiming one new folder at once are serialised by a lock on its parent, so
    one creates it and the others find it marked.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    with locked(folder.parent):
        created = not folder.exists()
        if created:
            folder.mkdir()
        else:
            check_claimable(folder)
        marked = not _is_marked(folder)
        if marked:
            (folder / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
    return Claim(folder, created, marked)


def release(claim: Claim, lock_file: Path) -> None:
    """Undo a claim when the sweep could not start: remove the mark and the lock file it brought,
    and the folder if this claim created it and nothing else is in it (another sweep process may
    have started its trials there meanwhile)."""
    if not claim.marked:
        return
    with locked(claim.folder.parent):
        for path in (lock_file, claim.folder / MARKER):
            if path.parent == claim.folder:
                path.unlink(missing_ok=True)
        if claim.created:
            with contextlib.suppress(OSError):
                claim.folder.rmdir()  # fails when not empty: then it is no longer this process's alone


def _is_marked(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def _is_unmarked_sweep(folder: Path) -> bool:
    names = [entry.name for entry in folder.iterdir()]
    return (
        "base.yaml" in names
        and ("sweep.db" in names or "leaderboard.csv" in names)
        and all(_OWN_NAMES.fullmatch(name) for name in names)
    )
