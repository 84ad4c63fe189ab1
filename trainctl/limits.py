"""Bounds on config values that pass a plain type check but break later: in numpy, in torch, in
the file system or in the memory of the machine.

The bounds are pydantic types, so they validate, report and list like every other bound; the
memory check is one helper for every size that turns into an allocation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field

from trainctl.errors import UserError

# The whole-number types are strict: pydantic would otherwise take `true` as 1 and `2.5` as an
# error only after rounding checks, so `trainer.epochs: yes` would train one epoch.
# torch's generators take any unsigned 64-bit seed; numpy's refuse negative ones.
Seed = Annotated[int, Field(ge=0, le=2**64 - 1, strict=True)]
# Optuna's samplers seed numpy's RandomState (below 2**32) with this seed plus the trials run so far.
SamplerSeed = Annotated[int, Field(ge=0, lt=2**31, strict=True)]
# Sizes index tensors (int64) and are multiplied together: a bound well below 2**63 keeps products exact.
MAX_COUNT = 2**31 - 1
Count = Annotated[int, Field(ge=1, le=MAX_COUNT, strict=True)]
MAX_WIDTH = 2**20  # a layer or embedding wider than a million units does not fit any machine's memory twice
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH, strict=True)]
MAX_WORKERS = 256  # DataLoader worker processes: each one is a process of its own
MAX_THREADS = 1024  # torch.set_num_threads overflows beyond a C int; no machine has more cores
Layers = Annotated[int, Field(ge=1, le=1000, strict=True)]  # stacked layers: each one is built, so bound the count
MAX_EXTENDS_DEPTH = 16  # a config's `extends` chain (base of a base of ...); real ones are two or three deep

# A run name becomes part of a folder name: `NAME-YYYYmmdd-HHMMSS` inside output_dir. So it is a
# name, not a path: letters (any script), digits, `.`, `_` and `-`, not starting with `.` or `-`,
# and short enough that the folder name stays within 255 bytes even in 4-byte characters.
NAME_MAX_LENGTH = 50
NAME_PATTERN = r"^\w[\w.-]*$"
NAME_RULE = f"a name of 1-{NAME_MAX_LENGTH} letters, digits, '.', '_' or '-', not starting with '.' or '-'"
RunName = Annotated[str, Field(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN)]


def available_memory() -> int | None:
    """Bytes of memory this process can still get without swapping, or None where unknown."""
    meminfo = Path("/proc/meminfo")
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:,.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def require_memory(needed: int, what: str, available: int | None = None) -> None:
    """Refuse, before allocating it, a size the machine's memory cannot hold.

    `what` says what needs the memory and which setting decides it, e.g.
    "data.samples × data.features: 1,000,000,000 × 10 float32 values".
    """
    available = available_memory() if available is None else available
    if available is not None and needed > available:
        raise UserError(
            f"{what} need about {format_bytes(needed)} of memory, but {format_bytes(available)} is "
            "available; make it smaller"
        )
