"""What makes two configs the same run: the hash a checkpoint is checked against on a resume, the
keys a resume may change, and the dotted keys where two configs differ (for the messages of resume,
repeats, sweeps and compare). Plain data and no torch, so the commands that only read run folders
can say what differs without importing it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Keys a resumed run may change: the epochs, to extend it; how batches are loaded, which never
# changes what they hold (augmentation is seeded per sample, not per worker); and the whole logging
# section (a key without a dot), which only says where results are written besides the run folder.
MAY_CHANGE_ON_RESUME = ("trainer.epochs", "data.num_workers", "data.pin_memory", "data.persistent_workers", "logging")


def may_change_on_resume(key: str) -> bool:
    """Whether a dotted config key is one a resume may change (a section's name covers its keys)."""
    return any(key == allowed or key.startswith(allowed + ".") for allowed in MAY_CHANGE_ON_RESUME)


def config_hash(config: dict[str, Any]) -> str:
    """A hash of what a run's results depend on, leaving out what a resume may change."""
    trimmed = {section: dict(values) if isinstance(values, dict) else values for section, values in config.items()}
    for key in MAY_CHANGE_ON_RESUME:
        section, _, name = key.partition(".")
        if name:
            trimmed[section].pop(name, None)
        else:
            trimmed.pop(section, None)
    return hashlib.sha256(json.dumps(trimmed, sort_keys=True).encode()).hexdigest()


def differing_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new), key=lambda k: (k not in old, str(k)))
        return [d for k in keys for d in differing_keys(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]
