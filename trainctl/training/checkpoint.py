"""Checkpoints are plain dicts of tensors and built-in values (nanoGPT's shape), including the config.

They load with `torch.load(weights_only=True)` and nothing else: a checkpoint that needs pickled
code to load is refused, never retried unsafely.
"""

from __future__ import annotations

import io
import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from trainctl.errors import UserError
from trainctl.files import write_atomically, write_temporary
from trainctl.training.state import check_checkpoint_contents


def serialize(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(serialize(state), path)


def _link_or_write(source: Path, target: Path, payload: bytes) -> None:
    """Make `target` hold what `source` holds now, atomically; a hard link costs no second write.

    When `source` is later replaced (os.replace gives it a new inode), `target` keeps the old data.
    """
    tmp = target.with_name(f".{target.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # a filesystem without hard links
        write_atomically(payload, target)
        return
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class CheckpointWriter:
    """Writes checkpoints on a background thread, so the disk write and fsync overlap training.

    `save` serialises the state before returning, so training can go on changing the live model
    and optimizer. One write is in flight at most; `wait` re-raises an error of the write.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending: Future | None = None

    def save(self, state: dict[str, Any], path: Path, also: Path | None = None) -> None:
        """Write `state` to `path` and, when given, make `also` a copy of it (best = this last).

        `also` is complete before `path` is replaced: a last.pt that names epoch k its best always
        has a best.pt that holds epoch k beside it, whenever the process is killed. (A best.pt newer
        than last.pt is harmless: resuming from last.pt trains that epoch again, identically.)"""
        payload = serialize(state)
        self.wait()
        self._pending = self._executor.submit(self._write, payload, path, also)

    @staticmethod
    def _write(payload: bytes, path: Path, also: Path | None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = write_temporary(payload, path)
        try:
            if also is not None:
                _link_or_write(tmp, also, payload)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._executor.shutdown(wait=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt, truncated, not a torch file, or needs unsafe unpickling
        raise UserError(f"{path}: not a readable trainctl checkpoint ({_unreadable_reason(path, error)})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"{path}: not a trainctl checkpoint (no model state in it)")
    check_checkpoint_contents(state, path)
    return state


def _unreadable_reason(path: Path, error: Exception) -> str:
    """Why torch.load failed, in words: its own message is sometimes a bare number (a pickle
    opcode read as a key) or a paragraph about `weights_only`."""
    with path.open("rb") as file:
        header = file.read(4)
    if not header:
        return "the file is empty"
    if not header.startswith((b"PK\x03\x04", b"\x80")):  # a zip archive (torch.save) or a pickle (older torch)
        return "not a PyTorch checkpoint file: neither a zip archive nor a pickle"
    if isinstance(error, EOFError):
        return "the file ends early: truncated"
    text = str(error)
    if "Weights only load failed" in text:
        refused = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        detail = refused.group(1).strip() if refused else ""
        if detail.startswith("Unsupported operand"):  # not a pickle torch wrote: damaged or something else
            return f"damaged, or not a PyTorch checkpoint: a pickle the safe loader cannot read ({detail[:100]})"
        return (
            f"it holds objects that need code to load, which trainctl never runs ({detail.split(' was not')[0][:200]})"
        )
    first = text.strip().split(". ")[0].splitlines()[0] if text.strip() else ""
    if not first or first.isdigit():
        return "damaged or truncated: not a complete PyTorch checkpoint"
    return first[:200]


def load_model_state(model: torch.nn.Module, state: dict[str, Any], path: Path) -> None:
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as error:
        first = str(error).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else (first[0] if first else "")
        raise UserError(f"{path}: checkpoint does not fit this model ({detail[:200]})") from None
