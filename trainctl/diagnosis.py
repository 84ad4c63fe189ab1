"""One line on the shape of a run's loss curves, with what to do about it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Diagnosis:
    shape: str  # decreasing | still-improving | plateaued | overfitting | diverging | too-short
    message: str
    hint: str


def diagnose(rows: list[dict[str, Any]]) -> Diagnosis:
    train = [row["train/loss"] for row in rows]
    val = [row["val/loss"] for row in rows]
    if any(not math.isfinite(v) for v in train + val):
        return Diagnosis("diverging", "diverging: the loss became inf or NaN",
                         "lower optimizer.lr (try ×0.1) or set trainer.grad_clip_norm")
    if len(rows) < 3:
        return Diagnosis("too-short", f"too few epochs ({len(rows)}) to judge the curve", "train for more epochs")
    tail = max(2, len(rows) // 3)  # judge the trend on the last third of the run
    if train[-1] > train[0] or min(train[-tail:]) > 1.5 * min(train):
        return Diagnosis("diverging", "diverging: the training loss rises",
                         "lower optimizer.lr (try ×0.1) or set trainer.grad_clip_norm")
    best = min(range(len(val)), key=val.__getitem__)
    rise = val[-1] - val[best]
    if best < len(rows) - 2 and rise > 0.1 * abs(val[best]) + 1e-6 and train[-1] < train[best]:
        return Diagnosis(
            "overfitting",
            f"overfitting from epoch {best + 2}: validation loss rose {rise:.4g} above its best (epoch {best + 1}) "
            "while training loss kept falling",
            "stop earlier (trainer.early_stopping), or add regularisation (model.dropout, optimizer.weight_decay)",
        )
    start = train[-tail - 1]
    relative = (start - train[-1]) / max(abs(start), 1e-12)
    if relative < 0.01:
        return Diagnosis(
            "plateaued",
            f"plateaued: the training loss changed by {100 * relative:.2g}% over the last {tail} epochs",
            "if it is still too high, raise optimizer.lr or use a larger model; if not, fewer epochs would do",
        )
    if best < len(rows) - tail and train[-1] < train[best]:
        return Diagnosis(
            "plateaued",
            f"plateaued: validation loss has not improved since epoch {best + 1} ({val[best]:.4g}) while training "
            "loss kept falling",
            "more epochs will not help: stop earlier (trainer.early_stopping), or add regularisation "
            "(model.dropout, optimizer.weight_decay)",
        )
    if relative > 0.1:
        return Diagnosis("still-improving", f"decreasing steadily and still improving ({100 * relative:.2g}% over "
                         f"the last {tail} epochs)", "more epochs would likely help")
    return Diagnosis("decreasing", "decreasing steadily and levelling off", "the run looks healthy")
