"""Everything a checkpoint must hold, besides weights, for a resumed run to be the run it would
have been: counters, best-metric and early-stopping tracking, a partly done epoch, and every
random state. All of it is plain data, so it loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainctl.errors import UserError


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
        # legacy=True is numpy's default, given because numpy's stub defaults it to False.
        numpy_state = np.random.get_state(legacy=True)
        if isinstance(numpy_state, dict):  # only for a generator other than MT19937 set with set_bit_generator
            raise TypeError("numpy's global random generator is not MT19937, whose state a checkpoint keeps")
        kind, keys, position, has_gauss, cached = numpy_state
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


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs.

    The counters live in `TrainingState`, so they are saved with every checkpoint."""

    monitor: str
    mode: str  # min | max
    patience: int
    min_delta: float

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


# ---- checking what a checkpoint holds before anything of it is used ------------------------------
# A checkpoint that loads with weights_only=True can still hold anything made of tensors, numbers,
# strings, lists and dicts: a hand-edited or foreign one would otherwise fail deep inside torch,
# mid-run. Every check names the key, so the one-line error says what is wrong with the file.


class CheckpointContentError(ValueError):
    """What is wrong inside a checkpoint, by key; the caller adds the file's path."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    text = repr(value)
    return f"{type(value).__name__} {text[:40] + '…' if len(text) > 40 else text}"


def _check_tensors(saved: Any, expected: dict[str, torch.Tensor], key: str) -> None:
    """`saved` must hold exactly `expected`'s names, each a tensor of the same shape."""
    if not isinstance(saved, dict):
        raise CheckpointContentError(f"{key!r} is {_describe(saved)}, not a mapping of tensors")
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected), key=str)
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:5])}"] if missing else []) + (
            [f"unexpected {', '.join(map(str, unexpected[:5]))}"] if unexpected else []
        )
        raise CheckpointContentError(f"{key!r} does not fit this run's {key}: {'; '.join(parts)}")
    for name, tensor in expected.items():
        value = saved[name]
        if not isinstance(value, torch.Tensor) or value.shape != tensor.shape:
            raise CheckpointContentError(
                f"{key}.{name} is {_describe(value)}; this run's {key} needs shape {list(tensor.shape)}"
            )


def check_checkpoint_contents(checkpoint: dict[str, Any], path: Path) -> None:
    """What every use of a checkpoint reads (eval, predict, resume): weights and the epoch."""
    with _naming(path, "damaged or foreign checkpoint"):
        _check_common_contents(checkpoint)


def _check_common_contents(checkpoint: dict[str, Any]) -> None:
    for key in ("model", "loss"):
        value = checkpoint.get(key)
        if key == "loss" and value is None:
            continue
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
        ):
            raise CheckpointContentError(f"{key!r} is {_describe(value)}, not a mapping of names to tensors")
    if checkpoint.get("epoch") is not None and not _is_count(checkpoint["epoch"]):
        raise CheckpointContentError(f"'epoch' is {_describe(checkpoint['epoch'])}, not a count of epochs")


def _check_training_state(data: Any) -> TrainingState:
    if not isinstance(data, dict):
        raise CheckpointContentError(f"'state' is {_describe(data)}, not a mapping")
    if "epoch" not in data:
        raise CheckpointContentError("'state' has no epoch")
    counts = ("epoch", "global_step", "best_epoch", "bad_epochs", "skipped_steps", "step_in_epoch")
    for name in (f.name for f in fields(TrainingState) if f.name in data):
        value = data[name]
        good = (
            _is_count(value)
            if name in counts
            else isinstance(value, bool)
            if name == "stopped_early"
            else value is None or _is_number(value)
            if name in ("best_value", "early_stopping_best")
            else _is_number(value) and value >= 0
            if name == "epoch_started_seconds"
            else True
        )
        if not good:
            raise CheckpointContentError(f"state.{name} is {_describe(value)}")
    state = TrainingState.from_dict(data)
    if state.epoch > 0 and (state.best_value is None or not 1 <= state.best_epoch <= state.epoch):
        raise CheckpointContentError(
            f"state.best_epoch {state.best_epoch} and state.best_value {state.best_value} "
            f"do not fit {state.epoch} epochs trained"
        )
    progress = state.epoch_progress
    if state.step_in_epoch and progress is None:
        raise CheckpointContentError(f"state.step_in_epoch is {state.step_in_epoch} but state.epoch_progress is empty")
    if progress is not None:
        lists = [progress.get(k) if isinstance(progress, dict) else None for k in ("losses", "sizes")]
        if not all(isinstance(v, list) and len(v) == state.step_in_epoch and all(map(_is_number, v)) for v in lists):
            raise CheckpointContentError(f"state.epoch_progress is not {state.step_in_epoch} losses and batch sizes")
    return state


def _check_random_states(data: Any) -> None:
    """Each state is set on a throwaway generator of its kind, which checks it as the real one would."""
    if not isinstance(data, dict):
        raise CheckpointContentError(f"'rng' is {_describe(data)}, not a mapping of random states")
    for name in ("torch_cpu", "shuffle", "shuffle_at_epoch_start", "numpy", "python"):
        if name not in data:
            raise CheckpointContentError(f"'rng' has no {name} state")
    try:
        states = RandomStates.from_dict({k: v for k, v in data.items() if k in {f.name for f in fields(RandomStates)}})
        for name in ("torch_cpu", "shuffle", "shuffle_at_epoch_start"):
            torch.Generator().set_state(getattr(states, name))
        kind, keys, position, has_gauss, cached = states.numpy
        np.random.RandomState().set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
        version, internal, gauss_next = states.python
        random.Random().setstate((version, tuple(internal.tolist()), gauss_next))
    except (TypeError, ValueError, RuntimeError, AttributeError, OverflowError) as error:
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise CheckpointContentError(f"'rng' holds a random state that cannot be restored ({reason})") from None
    cuda = states.torch_cuda
    if not isinstance(cuda, list) or not all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8 for t in cuda):
        raise CheckpointContentError(f"rng.torch_cuda is {_describe(cuda)}, not a list of CUDA random states")
    if cuda and torch.cuda.is_available() and len(cuda) > torch.cuda.device_count():
        raise CheckpointContentError(
            f"rng.torch_cuda holds {len(cuda)} GPU states; this machine has {torch.cuda.device_count()} GPUs"
        )


def _same_kind(saved: Any, current: Any) -> bool:
    """Whether a saved setting can stand where the current one stands (numbers for numbers, ...)."""
    if isinstance(current, bool):
        return isinstance(saved, bool)
    if _is_number(current):
        return _is_number(saved)
    if current is None:
        return saved is None or isinstance(saved, bool) or _is_number(saved)
    if isinstance(current, (list, tuple)):
        return isinstance(saved, (list, tuple)) and len(saved) == len(current) and all(map(_same_kind, saved, current))
    if isinstance(current, dict):
        return (
            isinstance(saved, dict)
            and set(saved) >= set(current)
            and all(_same_kind(saved[k], v) for k, v in current.items())
        )
    if isinstance(current, torch.Tensor):
        return isinstance(saved, torch.Tensor) and saved.shape == current.shape
    return type(saved) is type(current)


def _check_settings(saved: Any, current: dict[str, Any], key: str) -> None:
    """A scheduler's or grad scaler's saved state: every current setting there, and of its kind."""
    if not isinstance(saved, dict):
        raise CheckpointContentError(f"{key!r} is {_describe(saved)}, not a mapping")
    for name, value in current.items():
        if name not in saved:
            raise CheckpointContentError(f"{key!r} has no {name}: not the state of this run's {key}")
        if not _same_kind(saved[name], value):
            raise CheckpointContentError(f"{key}.{name} is {_describe(saved[name])}, where {_describe(value)} belongs")


def _reference_step_state(optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """What one step of this optimizer's kind keeps per parameter, shown on a one-element parameter:
    the state a checkpoint of this optimizer must hold (None when the kind cannot be stepped so)."""
    parameter = torch.zeros(1, requires_grad=True)
    try:
        probe = type(optimizer)([parameter], **optimizer.defaults)
        parameter.grad = torch.zeros(1)
        probe.step()
    except Exception:
        return None
    return dict(probe.state[parameter])


def _check_optimizer_state(saved: Any, optimizer: torch.optim.Optimizer) -> None:
    kind = type(optimizer).__name__
    if (
        not isinstance(saved, dict)
        or not isinstance(saved.get("state"), dict)
        or not isinstance(saved.get("param_groups"), list)
    ):
        raise CheckpointContentError(f"'optimizer' is {_describe(saved)}, not an optimizer's state")
    groups, current_groups = saved["param_groups"], optimizer.param_groups
    sizes = [len(g["params"]) if isinstance(g, dict) and isinstance(g.get("params"), list) else None for g in groups]
    if sizes != [len(g["params"]) for g in current_groups]:
        raise CheckpointContentError(
            f"'optimizer' holds parameter groups of {sizes} parameters; this run's {kind} "
            f"has {[len(g['params']) for g in current_groups]}"
        )
    for index, (group, current) in enumerate(zip(groups, current_groups)):
        for name, value in current.items():
            if name == "params":
                continue
            if name not in group:
                raise CheckpointContentError(f"'optimizer' has no {name} in group {index}: not the state of {kind}")
            if not _same_kind(group[name], value):
                raise CheckpointContentError(
                    f"optimizer group {index} {name} is {_describe(group[name])}, where {_describe(value)} belongs"
                )
    parameters = {
        pid: p for group, current in zip(groups, current_groups) for pid, p in zip(group["params"], current["params"])
    }
    reference = _reference_step_state(optimizer)
    for pid, entry in saved["state"].items():
        if pid not in parameters or not isinstance(entry, dict):
            raise CheckpointContentError(f"'optimizer' state {pid!r} belongs to no parameter of this model")
        if reference is not None and entry and set(entry) != set(reference):
            raise CheckpointContentError(
                f"'optimizer' state holds {', '.join(sorted(map(str, entry)))}; "
                f"{kind} keeps {', '.join(sorted(reference)) or 'nothing'}"
            )
        for name, value in entry.items():
            _check_parameter_state(name, value, (reference or {}).get(name), parameters[pid], pid)


def _check_parameter_state(name: str, value: Any, reference: Any, parameter: torch.Tensor, pid: Any) -> None:
    """A per-parameter value: a step count, or a tensor shaped like its parameter."""
    counter = isinstance(reference, torch.Tensor) and reference.dim() == 0
    if counter and (_is_number(value) or (isinstance(value, torch.Tensor) and value.dim() == 0)):
        return
    if value is None and not counter:
        return
    if isinstance(value, torch.Tensor) and value.shape == parameter.shape and value.is_floating_point():
        return
    raise CheckpointContentError(
        f"optimizer state {pid} {name} is {_describe(value)}; its parameter has shape {list(parameter.shape)}"
    )


@contextlib.contextmanager
def _naming(path: Path, what: str) -> Iterator[None]:
    try:
        yield
    except CheckpointContentError as error:
        raise UserError(f"{path}: {what}: {error}") from None


def check_resumable(checkpoint: dict[str, Any], trainer: Any, path: Path) -> None:
    """Everything a resume restores, checked against the run as rebuilt before any of it is loaded:
    weights, optimizer, scheduler and grad scaler states, counters and random states."""
    with _naming(path, "cannot resume from this checkpoint"):
        _check_resume_contents(checkpoint, trainer)


def _check_averaging(saved: Any, method: str, parts: Any) -> None:
    """A weight-averaging run's `averaging`: the count, the trained weights when `model` is the
    average, and the counter (EMA) or SWALR state (SWA) its method keeps."""
    if not isinstance(saved, dict):
        raise CheckpointContentError(f"'averaging' is {_describe(saved)}; a run with trainer.{method} resumes from it")
    count = saved.get("n_averaged")
    if not _is_count(count):
        raise CheckpointContentError(f"averaging.n_averaged is {_describe(count)}, not a count")
    if count:
        _check_tensors(saved.get("trained_model"), parts.model.state_dict(), "averaging.trained_model")
    if method == "ema" and not _is_count(saved.get("optimizer_steps")):
        raise CheckpointContentError(
            f"averaging.optimizer_steps is {_describe(saved.get('optimizer_steps'))}, not a count"
        )
    if method == "swa" and saved.get("lr_schedule") is not None:
        _check_settings(saved["lr_schedule"], _swalr_state(len(parts.optimizer.param_groups)), "averaging.lr_schedule")


def _swalr_state(groups: int) -> dict[str, Any]:
    """What SWALR keeps, shown on a throwaway optimizer of `groups` parameter groups."""
    from torch.optim.swa_utils import SWALR

    optimizer = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)]} for _ in range(groups)], lr=1.0)
    return SWALR(optimizer, swa_lr=1.0).state_dict()


def _check_resume_contents(checkpoint: dict[str, Any], trainer: Any) -> None:
    for key in ("state", "rng", "optimizer"):
        if key not in checkpoint:
            raise CheckpointContentError(f"no {key!r} in it: it cannot be resumed from")
    parts = trainer.parts
    _check_tensors(checkpoint["model"], parts.model.state_dict(), "model")
    _check_tensors(checkpoint.get("loss") or {}, parts.loss_fn.state_dict(), "loss")
    _check_optimizer_state(checkpoint["optimizer"], parts.optimizer)
    if trainer.averaging.method is not None:
        _check_averaging(checkpoint.get("averaging"), trainer.averaging.method, parts)
    scheduler = parts.scheduler.state_dict() if parts.scheduler is not None else None
    for key, current in (("scheduler", scheduler), ("grad_scaler", trainer.step.update.state_dict())):
        if current is not None and checkpoint.get(key):
            _check_settings(checkpoint[key], current, key)
    state = _check_training_state(checkpoint["state"])
    _check_random_states(checkpoint["rng"])
    from trainctl.data.prepare import steps_per_epoch

    steps = steps_per_epoch(len(parts.data.train), trainer.settings.step.batch_size)
    if state.step_in_epoch >= steps:
        raise CheckpointContentError(f"state.step_in_epoch is {state.step_in_epoch}, but an epoch has {steps} steps")
