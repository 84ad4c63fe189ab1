"""Cross-validation folds: which rows each fold holds out (`data.fold`, which `trainctl cv` sets
for each fold's run).

The folds partition the dataset's pool of rows: all of them, less a split the dataset keeps itself
(an image folder's val_root or test_root, MNIST's or CIFAR's test files). The partition is seeded
(`data.split_seed`), so every run of the same fold, a resumed one or `eval`, holds out the same rows:

- classification: stratified. Each class's rows, in a seeded random order, are dealt to the folds
  in turn, class after class, each class going on from the fold where the one before stopped: a
  fold holds each class's count to within one, and the folds' sizes differ by at most one.
- regression: the rows in a seeded random order, dealt the same way.
- grouped (a csv dataset's `data.group_column`): whole groups, largest first (equal sizes in a
  seeded order), each to the fold where it adds least to the classes that fold already holds
  most of, then to the smallest fold: no group is in two folds, and classes spread as evenly as
  whole groups allow.

numpy only (scikit-learn's import alone costs about 0.9 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trainctl.data.raw import RawData
from trainctl.errors import UserError


@dataclass(frozen=True)
class Fold:
    """`data.fold`: the run's test split is fold `index` (1 to count) of `count`."""

    count: int
    index: int

    @classmethod
    def from_settings(cls, settings: dict[str, Any] | None) -> Fold | None:
        return None if settings is None else cls(int(settings["count"]), int(settings["index"]))


def assign_folds(
    size: int,
    labels: np.ndarray | None,
    groups: np.ndarray | None,
    count: int,
    seed: int,
    *,
    class_names: tuple[str, ...] = (),
    what: str = "data.fold.count",
) -> np.ndarray:
    """Each of `size` rows' fold, 0 to count−1, for rows with these class indices (None: regression)
    and groups (None: each row its own). `what` names the setting in errors (`--folds 5` for cv)."""
    if count < 2:
        raise UserError(f"{what}: cross-validation needs at least 2 folds (got {count})")
    if groups is not None:
        return _grouped(labels, np.asarray(groups), count, seed, what)
    if size < count:
        raise UserError(f"{what}: cannot make {count} folds of {size} samples; use at most {size} folds")
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(size)
    else:
        classes, counts = np.unique(labels, return_counts=True)
        if counts.min() < count:
            smallest = int(classes[counts.argmin()])
            name = class_names[smallest] if smallest < len(class_names) else str(smallest)
            raise UserError(
                f"{what}: class {name!r} has only {counts.min()} samples, fewer than the {count} folds; "
                f"stratified folds hold each class in every fold: use at most {counts.min()} folds"
            )
        order = np.concatenate([rng.permutation(np.flatnonzero(labels == label)) for label in classes])
    folds = np.empty(size, dtype=np.int64)
    folds[order] = np.arange(size) % count
    return folds


def _grouped(labels: np.ndarray | None, groups: np.ndarray, count: int, seed: int, what: str) -> np.ndarray:
    names, group_of_row = np.unique(groups, return_inverse=True)
    if len(names) < count:
        raise UserError(
            f"{what}: data.group_column has {len(names)} groups, fewer than the {count} folds; "
            f"a group stays in one fold: use at most {len(names)} folds"
        )
    codes = np.zeros(len(groups), dtype=np.int64) if labels is None else np.unique(labels, return_inverse=True)[1]
    # Rows of each class in each group (one column for regression).
    per_group = np.zeros((len(names), int(codes.max()) + 1), dtype=np.int64)
    np.add.at(per_group, (group_of_row, codes), 1)
    sizes = per_group.sum(axis=1)
    shuffled = np.random.default_rng(seed).permutation(len(names))
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]  # largest first; equal sizes in the seeded order
    held = np.zeros((count, per_group.shape[1]), dtype=np.int64)
    fold_of_group = np.empty(len(names), dtype=np.int64)
    for group in order:
        # Adding the group to fold f raises the sum of squared class counts by 2·held[f]·group + const:
        # the fold holding least of this group's classes; then the smallest fold; then the first.
        overlap = held @ per_group[group]
        fold = np.lexsort((np.arange(count), held.sum(axis=1), overlap))[0]
        held[fold] += per_group[group]
        fold_of_group[group] = fold
    return fold_of_group[group_of_row]


def fold_pool(raw: RawData) -> np.ndarray:
    """The rows the folds partition: every row but those of a split the dataset keeps itself (an
    image folder's val_root and test_root, MNIST's or CIFAR's test files)."""
    kept = [np.asarray(rows) for rows in (raw.val_rows, raw.test_rows) if rows is not None]
    everything = np.arange(len(raw.x))
    return np.setdiff1d(everything, np.concatenate(kept)) if kept else everything


def pool_folds(raw: RawData, count: int, seed: int, what: str = "data.fold.count") -> tuple[np.ndarray, np.ndarray]:
    """The pool's rows and each one's fold (0 to count−1): stratified by class for classification,
    whole groups with data.group_column."""
    pool = fold_pool(raw)
    labels = raw.y[pool] if raw.task.kind == "classification" else None
    groups = np.asarray(raw.groups)[pool] if raw.groups is not None else None
    return pool, assign_folds(len(pool), labels, groups, count, seed, class_names=raw.task.class_names, what=what)


def fold_rows(raw: RawData, fold: Fold, seed: int) -> np.ndarray:
    """The rows fold `fold.index` holds out, in order."""
    pool, folds = pool_folds(raw, fold.count, seed)
    return np.sort(pool[folds == fold.index - 1])
