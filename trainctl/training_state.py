"""Everything a checkpoint must hold, besides weights, for a resumed run to be the run it would
have been: counters, best-metric and early-stopping tracking, a partly done epoch, and every
random state. All of it is plain data, so it loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch


@dataclass
class TrainingState:
    epoch: int = 0  # epochs completed
    global_step: int = 0  # optimizer steps taken (skipped non-finite steps not counted)
    best_value: float | None = None  # of trainer.monitor
    best_epoch: int = 0
    early_stopping_best: float | None = None  # of early_stopping.monitor
    bad_epochs: int = 0  # epochs since early_stopping.monitor last improved by min_delta
    stopped_early: bool = False
    skipped_steps: int = 0  # non-finite steps skipped (on_nonfinite: skip)
    # An epoch interrupted part-way (Ctrl-C, SIGTERM): how far it got, for an exact resume.
    step_in_epoch: int = 0
    epoch_progress: dict[str, list[float]] | None = None  # its steps' losses and batch sizes
    epoch_started_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class RandomStates:
    """The torch, numpy and python generators, the shuffle generator, and the shuffle generator as
    it was when the epoch in progress began (so its permutation can be drawn again)."""

    torch_cpu: torch.Tensor
    shuffle: torch.Tensor
    shuffle_at_epoch_start: torch.Tensor
    numpy: list[Any]  # numpy's (kind, keys, position, has_gauss, cached), keys as an int64 tensor
    python: list[Any]  # python's (version, internal state as an int64 tensor, gauss_next)
    torch_cuda: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def capture(cls, shuffle: torch.Generator, shuffle_at_epoch_start: torch.Tensor) -> RandomStates:
        kind, keys, position, has_gauss, cached = np.random.get_state()
        version, internal, gauss_next = random.getstate()
        return cls(
            torch_cpu=torch.get_rng_state(),
            shuffle=shuffle.get_state(),
            shuffle_at_epoch_start=shuffle_at_epoch_start,
            # Tensors rather than lists of 624 ints: one object each to pickle, not hundreds.
            numpy=[kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
            python=[version, torch.tensor(internal, dtype=torch.int64), gauss_next],
            torch_cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        )

    def restore(self, shuffle: torch.Generator) -> None:
        torch.set_rng_state(self.torch_cpu)
        shuffle.set_state(self.shuffle)
        kind, keys, position, has_gauss, cached = self.numpy
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
        version, internal, gauss_next = self.python
        random.setstate((version, tuple(internal.tolist()), gauss_next))
        if self.torch_cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self.torch_cuda)

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies every tensor, and these are fresh copies already.
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RandomStates:
        return cls(**data)


# Keys a resumed run may change: the epochs, to extend it, and how batches are loaded, which never
# changes what they hold (augmentation is seeded per sample, not per worker).
MAY_CHANGE_ON_RESUME = ("trainer.epochs", "data.num_workers", "data.pin_memory", "data.persistent_workers")


def config_hash(config: dict[str, Any]) -> str:
    """A hash of what a run's results depend on, leaving out what a resume may change."""
    trimmed = {section: dict(values) if isinstance(values, dict) else values for section, values in config.items()}
    for key in MAY_CHANGE_ON_RESUME:
        section, name = key.split(".")
        trimmed[section].pop(name, None)
    return hashlib.sha256(json.dumps(trimmed, sort_keys=True).encode()).hexdigest()


def differing_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new), key=lambda k: (k not in old, str(k)))
        return [d for k in keys for d in differing_keys(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]


class EarlyStopping:
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs."""

    def __init__(self, monitor: str, mode: str, patience: int, min_delta: float):
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta

    def update(self, state: TrainingState, value: float) -> bool:
        """Record one epoch's value; True when training should stop."""
        best = state.early_stopping_best
        improved = best is None or (
            value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta
        )
        if improved:
            state.early_stopping_best, state.bad_epochs = value, 0
        else:
            state.bad_epochs += 1
        return state.bad_epochs >= self.patience
