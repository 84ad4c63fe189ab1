"""Writing files so that a failure or a kill never leaves half of one, and never replaces a user's file
unasked: a temporary file in the same folder, then one rename (or one hard link, which refuses an
existing name) makes it appear whole.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from trainctl.errors import UserError

TEMPORARY_SUFFIX = ".tmp"


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp makes files readable by their owner alone; the files written here get the modes any
# other new file of the user's gets.
FILE_MODE = 0o666 & ~_read_umask()


def _make_temporary(path: Path, suffix: str) -> tuple[int, Path]:
    """A new hidden file beside `path`, open for writing, with the user's usual file mode."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as error:  # named by the file the user will look for, not by the temporary one
        raise OSError(error.errno, error.strerror, str(path)) from None
    os.fchmod(fd, FILE_MODE)
    return fd, Path(name)


def with_filename(error: OSError, path: Path) -> OSError:
    """A failed write (ENOSPC, EIO) names no file; the user needs to know which one."""
    if error.filename is not None or error.errno is None:
        return error
    return OSError(error.errno, error.strerror or os.strerror(error.errno), str(path))


def write_temporary(payload: bytes, path: Path) -> Path:
    """`payload` in a new hidden temporary file beside `path`, flushed and fsynced; the caller renames it."""
    fd, tmp = _make_temporary(path, TEMPORARY_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise with_filename(error, path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_atomically(payload: bytes, path: Path) -> None:
    """Replace `path` with `payload`: a reader (or a run resumed after a kill) sees the old file or
    the new one, never half of one."""
    tmp = write_temporary(payload, path)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files a killed writer left in `folder`; only call this while no other
    process writes there (the run folder's lock is held)."""
    removed = []
    for path in folder.glob(".*"):
        # `.NAME.XXXX.tmp`, or `.NAME.XXXX.tmp.png` where the writer goes by the suffix
        if TEMPORARY_SUFFIX in path.suffixes[-2:] and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def check_output_path(path: Path, option: str, force: bool) -> None:
    """Refuse, before any work, an output file that cannot be written or would replace a file."""
    if not path.parent.is_dir():
        raise UserError(f"{option} {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a file name")
    if (path.exists() or path.is_symlink()) and not force:
        raise UserError(f"{option} {path}: already exists; add --force to replace it")


@contextlib.contextmanager
def new_output(path: Path, option: str, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path (with `path`'s suffix, so writers that go by it still do) to write into;
    when the block ends without error, it becomes `path`. An existing `path` is refused, unless
    `force`, also when it appeared while the output was written."""
    check_output_path(path, option, force)
    fd, tmp = _make_temporary(path, f"{TEMPORARY_SUFFIX}{path.suffix}")
    os.close(fd)
    try:
        yield tmp
        with tmp.open("rb") as written:
            os.fsync(written.fileno())
        _commit(tmp, path, option, force)
    finally:
        tmp.unlink(missing_ok=True)


def _commit(tmp: Path, path: Path, option: str, force: bool) -> None:
    if force:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if `path` exists: no window in which another file could be replaced
    except FileExistsError:
        raise UserError(f"{option} {path}: already exists; add --force to replace it") from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if path.exists():  # a filesystem without hard links: check, then rename
            raise UserError(f"{option} {path}: already exists; add --force to replace it") from None
        os.replace(tmp, path)


def os_error_line(error: OSError) -> str:
    """`PATH: REASON` (`PATH -> PATH2: REASON` for a rename), as the CLI prints any file error."""
    where = str(error.filename)
    if error.filename2 is not None:
        where += f" -> {error.filename2}"
    return f"{where}: {error.strerror or error}"
