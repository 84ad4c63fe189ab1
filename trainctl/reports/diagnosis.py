"""One line on what a run's curves show, with what to do about it.

The verdict reads the monitored validation metric (its recent gain against its own epoch-to-epoch
noise), the training loss, the learning rate each epoch ended with, how the monitored metric
compares with chance, whether early stopping fired, and the warnings of the checks made before
training. Loss values are only ever compared by differences: a negative log-likelihood can be
negative, so ratios and signs of the loss mean nothing.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainctl.components.metrics import goal
from trainctl.data.task import Task

# The preflight checks whose findings hold learning back: fixing one comes before advice on epochs.
LEARNING_CHECKS = (
    "double-softmax",
    "double-sigmoid",
    "not-log-probabilities",
    "regression-loss-on-classes",
    "high-initial-loss",
)
RECENT_EPOCHS = (3, 10)  # the recent trend is judged over a quarter of the run, within these bounds
DECAYED_LR = 0.01  # a schedule whose last rate is below this fraction of its peak has ended
SMALL_GAIN = 0.05  # recent gain below this share of the run's whole gain: levelling off
NEAR_CHANCE = 0.05  # share of the way from chance to a perfect score below which a run learned nothing

DIVERGING_HINT = "lower optimizer.lr (try ×0.1) or set trainer.grad_clip_norm"


@dataclass(frozen=True)
class Diagnosis:
    # diverging | too-short | not-learning | stopped-early | overfitting | still-improving | levelling-off
    # | converged | plateaued
    shape: str
    message: str
    hint: str


def chance_levels(task: Task, val_labels: np.ndarray) -> dict[str, float]:
    """What a model that learned nothing scores on the validation split, per logged metric.

    Classification: accuracy of always answering the most common class, or of guessing uniformly
    (1/C), whichever is higher; macro recall of either is 1/C (and so, about, are macro precision
    and F1). Regression: the errors of predicting the split's mean (the median, for MAE); R² 0.
    """
    labels = np.asarray(val_labels)
    if len(labels) == 0:
        return {}
    if task.kind == "classification":
        classes = max(task.num_classes, 1)
        majority = np.bincount(labels.astype(np.int64).ravel(), minlength=classes).max() / len(labels)
        uniform = 1 / classes
        return {
            "val/accuracy": max(float(majority), uniform),
            "val/precision": uniform,
            "val/recall": uniform,
            "val/f1": uniform,
        }
    values = labels.reshape(len(labels), -1).astype(np.float64)
    return {
        "val/mse": float(values.var(axis=0).mean()),
        "val/rmse": float(values.std(axis=0).mean()),
        "val/mae": float(np.abs(values - np.median(values, axis=0)).mean(axis=0).mean()),
        "val/r2": 0.0,
    }


def diagnose(
    rows: list[dict[str, Any]],
    monitor: str = "val/loss",
    *,
    chance: dict[str, float] | None = None,
    warnings: Sequence[Any] = (),
    stopped_early: bool = False,
) -> Diagnosis:
    """The verdict on a run's metrics.jsonl rows.

    `monitor` is trainer.monitor; `chance` what a model that learned nothing scores (chance_levels);
    `warnings` the preflight findings (with .check and .fix); `stopped_early` whether early stopping fired.
    """
    verdict = _verdict(rows, monitor if rows and monitor in rows[0] else "val/loss", chance or {}, stopped_early)
    blocking = [w for w in warnings if getattr(w, "check", "") in LEARNING_CHECKS]
    if not blocking or verdict.shape == "diverging":
        return verdict
    checks = ", ".join(dict.fromkeys(w.check for w in blocking))
    return Diagnosis(
        verdict.shape,
        f"{verdict.message}; the checks before training warned: {checks}",
        f"fix that first: {blocking[0].fix}",
    )


def _verdict(rows: list[dict[str, Any]], monitor: str, chance: dict[str, float], stopped_early: bool) -> Diagnosis:
    train = [row["train/loss"] for row in rows]
    val = [row["val/loss"] for row in rows]
    broken = next(
        (row["epoch"] for row in rows if not all(map(math.isfinite, (row["train/loss"], row["val/loss"])))), None
    )
    if broken is not None:
        return Diagnosis("diverging", f"diverging: the loss became inf or NaN at epoch {broken}", DIVERGING_HINT)
    if len(rows) < 3:
        return Diagnosis("too-short", f"too few epochs ({len(rows)}) to judge the curve", "train for more epochs")
    recent = min(max(RECENT_EPOCHS[0], len(rows) // 4), RECENT_EPOCHS[1], len(rows) - 1)
    if _training_loss_rises(train, recent):
        return Diagnosis(
            "diverging",
            f"diverging: the training loss rose from {min(train):.4g} "
            f"(epoch {train.index(min(train)) + 1}) to {train[-1]:.4g}",
            DIVERGING_HINT,
        )
    # The monitored metric, oriented so that higher is better.
    sign = 1 if goal(monitor) == "max" else -1
    scores = [sign * row[monitor] for row in rows]
    best = max(range(len(scores)), key=scores.__getitem__)  # the first epoch with the best score
    level = _level(monitor, rows[best][monitor], best + 1, chance.get(monitor))
    skill = _skill(rows, monitor, chance)
    if skill is not None and skill[1] <= NEAR_CHANCE:
        key, _, value, level_of_chance = skill
        return Diagnosis(
            "not-learning",
            f"not learning: the best {key}, {value:.4g}, is "
            f"{'no better than' if skill[1] <= 0 else 'barely above'} chance ({level_of_chance:.4g})",
            "check that the inputs carry the labels' information, raise optimizer.lr, or choose a loss "
            "made for this task (trainctl list-losses)",
        )
    if stopped_early:
        return Diagnosis(
            "stopped-early",
            f"stopped early after epoch {len(rows)}; {level}",
            f"more epochs will not help: the best checkpoint (epoch {best + 1}) is kept; to do better, "
            "regularise (model.dropout, optimizer.weight_decay) or lower optimizer.lr",
        )
    gain = max(scores[-recent:]) - max(scores[:-recent])
    improving = gain > 0 and gain > 2 * _noise(scores)
    rise = _validation_rise(val, train)
    if rise is not None and not improving:
        lowest, amount = rise
        return Diagnosis(
            "overfitting",
            f"overfitting from epoch {lowest + 2}: validation loss rose {amount:.4g} above its best (epoch {lowest + 1}) "
            "while training loss kept falling",
            "stop earlier (trainer.early_stopping), or add regularisation (model.dropout, optimizer.weight_decay)",
        )
    decayed = _decayed_lr(rows)
    if decayed is not None:
        return Diagnosis(
            "converged",
            f"converged as the learning rate decayed to {decayed:.2g}; {level}",
            _converged_hint(best + 1, len(rows)),
        )
    whole = max(scores) - scores[0]
    if improving and gain >= SMALL_GAIN * whole:
        return Diagnosis(
            "still-improving",
            f"still improving: {monitor} improved by {gain:.3g} over the last {recent} epochs; {level}",
            "more epochs would likely help",
        )
    if improving:
        return Diagnosis(
            "levelling-off",
            f"levelling off: {monitor} improved by {gain:.3g} over the last {recent} "
            f"epochs, {100 * gain / whole:.2g}% of its improvement over the run; {level}",
            "more epochs would add little",
        )
    if _flat(train, recent):
        return Diagnosis(
            "plateaued",
            f"plateaued: neither the training loss nor {monitor} improved over the last {recent} epochs; {level}",
            "if that is too low, raise optimizer.lr or use a larger model; if not, fewer epochs would do",
        )
    since = (
        f"has not improved since epoch {best + 1}"
        if best < len(rows) - recent
        else f"moved within its epoch-to-epoch noise (±{_noise(scores):.2g}) over the last {recent} epochs"
    )
    return Diagnosis(
        "plateaued",
        f"plateaued: {monitor} {since} while training loss kept falling; {level}",
        "more epochs will not help: stop earlier (trainer.early_stopping), or add regularisation "
        "(model.dropout, optimizer.weight_decay)",
    )


def _level(monitor: str, value: float, epoch: int, chance: float | None) -> str:
    against = f"; chance {chance:.4g}" if chance is not None else ""
    return f"best {monitor} {value:.4g} at epoch {epoch}{against}"


def _noise(values: list[float]) -> float:
    """The epoch-to-epoch scatter of a curve in its second half, with its trend taken out: second
    differences remove a smooth trend, and their median absolute value is robust to single jumps."""
    part = values[len(values) // 2 :] if len(values) >= 6 else values
    second = [part[i + 1] - 2 * part[i] + part[i - 1] for i in range(1, len(part) - 1)]
    # For independent noise of deviation s, a second difference has deviation s·√6; 1.4826 turns a
    # median absolute value into a deviation.
    return 1.4826 * statistics.median(map(abs, second)) / math.sqrt(6) if second else 0.0


def _training_loss_rises(train: list[float], recent: int) -> bool:
    """The recent training loss stays well above the run's lowest: above half of what the run had
    gained by then, and beyond the early epochs' step-to-step changes (so a flat, noisy loss is not
    taken for a rising one)."""
    lowest = min(train)
    rise = min(train[-recent:]) - lowest
    early = train[: max(2, len(train) // 2)]
    step = statistics.median(abs(b - a) for a, b in itertools.pairwise(early))
    return rise > 0.5 * (train[0] - lowest) and rise > 1.5 * step


def _validation_rise(val: list[float], train: list[float]) -> tuple[int, float] | None:
    """(epoch index of the lowest validation loss, how far it rose since) when it rose by more than a
    tenth of what it had fallen and beyond its noise while the training loss kept falling."""
    lowest = min(range(len(val)), key=val.__getitem__)
    rise = val[-1] - val[lowest]
    fallen = val[0] - val[lowest]
    if lowest < len(val) - 2 and rise > 0.1 * fallen and rise > 2 * _noise(val) and train[-1] < train[lowest]:
        return lowest, rise
    return None


def _flat(train: list[float], recent: int) -> bool:
    """The training loss fell no more than its noise over the recent epochs (or a thousandth of its
    whole fall, for curves too smooth to show noise)."""
    fall = train[-recent - 1] - train[-1]
    return fall <= max(2 * _noise(train), 0.001 * (train[0] - min(train)))


def _decayed_lr(rows: list[dict[str, Any]]) -> float | None:
    """The last learning rate, when the schedule has brought it to about 0 (below 1% of its peak)."""
    rates = [row["lr"] for row in rows if isinstance(row.get("lr"), (int, float))]
    if not rates or max(rates) <= 0 or rates[-1] > DECAYED_LR * max(rates):
        return None
    return rates[-1]


def _converged_hint(best_epoch: int, epochs: int) -> str:
    if best_epoch <= epochs // 2 + 1:
        return (
            f"more epochs will not help; the best epoch was {best_epoch} of {epochs}, so a shorter schedule "
            "would likely do as well"
        )
    return "more epochs of this schedule will not help; to do better, change the model, the loss or optimizer.lr"


def _skill(
    rows: list[dict[str, Any]], monitor: str, chance: dict[str, float]
) -> tuple[str, float, float, float] | None:
    """How far the best epoch got from chance towards a perfect score, on the monitored metric or
    else the first logged validation metric with a known chance level: (key, share, best, chance)."""
    keys = [monitor] + [key for key in rows[0] if key.startswith("val/") and key != monitor]
    key = next((k for k in keys if k in chance), None)
    if key is None:
        return None
    values = [row[key] for row in rows]
    level = chance[key]
    if goal(key) == "max":  # accuracy, precision, recall, F1, R²: a perfect score is 1
        value = max(values)
        return key, (value - level) / (1 - level) if level < 1 else 1.0, value, level
    value = min(values)  # errors: a perfect score is 0
    return key, (level - value) / level if level > 0 else 1.0, value, level
