"""Turning a dataset into train/val/test tensors that live on the training device.

Small datasets are split once, standardised with statistics of the training split only, encoded
for the loss once, and moved to the device once. An epoch is then a seeded permutation of indices:
indexing preloaded tensors is 10–100× faster than a DataLoader collating one sample at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trainctl.data.folds import Fold, fold_rows
from trainctl.data.image_pipeline import ImageOptions, prepare_images
from trainctl.data.raw import RawData
from trainctl.data.streaming import StreamedInputs
from trainctl.data.task import TargetPlan, Task
from trainctl.errors import UserError
from trainctl.ranks import Ranks


@dataclass
class Split:
    inputs: torch.Tensor | StreamedInputs  # preloaded on the device, or read per batch (image files, augmentation)
    labels: torch.Tensor  # what metrics compare against: class indices or values in the data's units
    targets: torch.Tensor  # what the loss compares against, encoded for it (one-hot, standardised, ...)
    rows: np.ndarray | None = None  # each sample's row in the dataset, for reports that point at samples
    lengths: torch.Tensor | None = None  # text: tokens per sample (on the CPU); batches are cut to their longest

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def device(self) -> torch.device:
        return self.labels.device

    @property
    def streamed(self) -> bool:
        return isinstance(self.inputs, StreamedInputs)

    def batch_inputs(self, positions: list[torch.Tensor], epoch: int) -> Iterator[torch.Tensor]:
        """The inputs of each batch of positions, in order: indexed from the preloaded tensor, or
        read and transformed (by DataLoader workers, when data.num_workers is set)."""
        if isinstance(self.inputs, StreamedInputs):
            return self.inputs.batches(positions, epoch)
        if self.lengths is not None:  # padded per batch: to the longest text in it, found for all batches at once
            widths = batch_widths(self.lengths, positions)
            return (self.inputs[index, :width] for index, width in zip(positions, widths))
        return (self.inputs[index] for index in positions)

    def first_inputs(self, count: int) -> torch.Tensor:
        if isinstance(self.inputs, StreamedInputs):
            return self.inputs.take(count)
        return self.inputs[:count]

    def shard(self, ranks: Ranks) -> Split:
        """This process's contiguous part of the split (for evaluation over several processes)."""
        if not ranks.distributed:
            return self
        if isinstance(self.inputs, StreamedInputs):
            inputs: torch.Tensor | StreamedInputs = self.inputs.subset(ranks.shard(torch.arange(len(self))).numpy())
        else:
            inputs = ranks.shard(self.inputs)
        lengths = ranks.shard(self.lengths) if self.lengths is not None else None
        return Split(inputs, ranks.shard(self.labels), ranks.shard(self.targets), lengths=lengths)


def batch_widths(lengths: torch.Tensor, positions: list[torch.Tensor]) -> list[int]:
    """Each batch's longest text, read with one copy to the host for the whole epoch."""
    if not positions:
        return []
    per_batch = lengths[torch.cat(positions).cpu()].split([len(index) for index in positions])
    return [int(part.max()) for part in per_batch]


@dataclass
class PreparedData:
    train: Split
    val: Split
    test: Split
    task: Task
    plan: TargetPlan
    input_shape: tuple[int, ...]
    # Regression models learn standardised targets (see TargetPlan.scale_targets); predictions
    # are mapped back with these, so metrics are in the data's units.
    target_mean: torch.Tensor | None = None
    target_std: torch.Tensor | None = None
    encoding: dict[str, Any] | None = None  # how raw rows become inputs, for predict (tables, images, text, features)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # the dataset's (what is odd, what to do)
    files: list[str] | None = None  # each dataset row's file (image and audio folders), for reports on samples

    @property
    def vocabulary_size(self) -> int:
        """For token-id inputs (text), how many ids there are; 0 otherwise."""
        return len(self.encoding["text"]["vocabulary"]) if self.encoding and "text" in self.encoding else 0

    def class_counts(self) -> tuple[int, ...]:
        """Training samples per class (empty for regression): what `class_weight: balanced` weighs by."""
        if self.task.kind != "classification":
            return ()
        return tuple(torch.bincount(self.train.labels.cpu(), minlength=self.task.num_classes).tolist())

    def description(self) -> dict[str, Any]:
        """What `predict` and `eval --data` need to rebuild the model, its loss and its outputs,
        without the training data."""
        return {
            "task": {
                "kind": self.task.kind,
                "num_classes": self.task.num_classes,
                "num_targets": self.task.num_targets,
                "class_names": list(self.task.class_names),
            },
            "input_shape": list(self.input_shape),
            "class_counts": list(self.class_counts()) or None,
            "target_mean": None if self.target_mean is None else self.target_mean.tolist(),
            "target_std": None if self.target_std is None else self.target_std.tolist(),
            "table": None,
            "image": None,
            "text": None,
            "audio": None,
            "standardization": None,  # built-in numeric datasets: each feature's training mean and std
            **(self.encoding or {}),
        }

    def split(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs_to_predictions(outputs, self.task, self.plan.layout, self.target_mean, self.target_std)


def outputs_to_predictions(
    outputs: torch.Tensor, task: Task, layout: str, target_mean: torch.Tensor | None, target_std: torch.Tensor | None
) -> torch.Tensor:
    """Model outputs as predictions in the labels' terms: class indices or values in data units."""
    outputs = predicting_outputs(outputs, layout)
    if task.kind == "regression":
        if layout == "log_rate":
            return outputs.exp()
        if target_mean is None or target_std is None:  # targets learned in the data's units
            return outputs
        return outputs * target_std + target_mean
    if outputs.shape[-1] == 1:  # one logit for a binary task
        return (outputs[:, 0] > 0).long()
    return outputs.argmax(dim=-1)


def predicting_outputs(outputs: torch.Tensor, layout: str) -> torch.Tensor:
    """The outputs that predict the targets: with a mean_variance layout the first half; the second
    half are the variances."""
    return outputs[:, : outputs.shape[-1] // 2] if layout == "mean_variance" else outputs


def split_indices(
    raw: RawData, val_fraction: float, test_fraction: float, seed: int, fold: Fold | None = None
) -> tuple[np.ndarray, ...]:
    """Seeded train/val/test indices, stratified by class for classification: each class is split
    in the same proportions, the counts rounded so the splits have exactly their share overall.
    With `fold` (data.fold, set by `trainctl cv`), the test split is that fold's held-out rows.

    Written out here rather than taken from scikit-learn, whose import alone costs about 0.9 s.
    """
    rng = np.random.default_rng(seed)
    size = len(raw.x)
    if fold is not None:
        return _fold_split(raw, val_fraction, fold, seed, rng)
    if raw.test_rows is not None or raw.val_rows is not None:
        return _split_with_given_rows(raw, val_fraction, test_fraction, rng, raw.val_rows, raw.test_rows)
    n_test, n_val = math.ceil(test_fraction * size), math.ceil(val_fraction * size)  # rounded up, as scikit-learn does
    for name, count in (("training", size - n_test - n_val), ("validation", n_val), ("test", n_test)):
        if count < 1:
            raise UserError(
                f"data: cannot split {size} samples with val_fraction {val_fraction} and test_fraction "
                f"{test_fraction}: the {name} split would be empty"
            )
    if raw.task.kind == "classification":
        groups = [np.flatnonzero(raw.y == label) for label in np.unique(raw.y)]
    else:
        groups = [np.arange(size)]
    sizes = np.array([len(group) for group in groups])
    test_counts = _shares(n_test, sizes)
    val_counts = _shares(n_val, sizes - test_counts)
    parts: tuple[list[np.ndarray], ...] = ([], [], [])
    for group, tests, vals in zip(groups, test_counts, val_counts):
        order = rng.permutation(group)
        parts[2].append(order[:tests])
        parts[1].append(order[tests : tests + vals])
        parts[0].append(order[tests + vals :])
    train, val, test = (np.sort(np.concatenate(chunks)) for chunks in parts)
    return train, val, test


def _fold_split(
    raw: RawData, val_fraction: float, fold: Fold, seed: int, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """data.fold: the fold's held-out rows are the test split, and the validation split is drawn,
    stratified, from the other rows of the pool (a dataset's own validation split is kept). A test
    split the dataset keeps itself is not used: the folds hold out their own."""
    test = fold_rows(raw, fold, seed)
    return _split_with_given_rows(raw, val_fraction, 0.0, rng, raw.val_rows, test, unused=raw.test_rows)


def _split_with_given_rows(
    raw: RawData,
    val_fraction: float,
    test_fraction: float,
    rng: np.random.Generator,
    val_rows: Any | None,
    test_rows: Any | None,
    unused: Any | None = None,
) -> tuple[np.ndarray, ...]:
    """A dataset with its own test (or validation) split keeps it, such as MNIST's t10k files or an
    image folder's test_root; a split not given is drawn, stratified, from the training rows."""
    given = [np.asarray(rows) for rows in (val_rows, test_rows, unused) if rows is not None]
    pool = np.setdiff1d(np.arange(len(raw.x)), np.concatenate(given))
    drawn: dict[str, np.ndarray] = {}
    for name, rows, fraction in (("test", test_rows, test_fraction), ("validation", val_rows, val_fraction)):
        if rows is not None:
            drawn[name] = np.sort(np.asarray(rows))
            continue
        count = math.ceil(fraction * len(pool))
        if count >= len(pool):
            raise UserError(f"data: cannot draw a {name} split of {fraction} from {len(pool)} training rows")
        if raw.task.kind == "classification":
            labels = raw.y[pool]
            groups = [pool[labels == label] for label in np.unique(labels)]
        else:
            groups = [pool]
        counts = _shares(count, np.array([len(group) for group in groups]))
        taken = [rng.permutation(group)[:n] for group, n in zip(groups, counts)]
        drawn[name] = np.sort(np.concatenate(taken))
        pool = np.setdiff1d(pool, drawn[name])
    if len(drawn["test"]) == 0 or len(drawn["validation"]) == 0:
        raise UserError("data: the given test or validation folder has no images")
    return pool, drawn["validation"], drawn["test"]


def _shares(total: int, sizes: np.ndarray) -> np.ndarray:
    """`total` divided among groups in proportion to their sizes, as whole numbers summing to it
    (largest remainders first), never more than a group has."""
    quotas = total * sizes / sizes.sum()
    counts = np.minimum(np.floor(quotas).astype(int), sizes)
    for index in np.argsort(-(quotas - counts), kind="stable")[: total - counts.sum()]:
        counts[index] += counts[index] < sizes[index]
    return counts


def _statistics(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation of the training split."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0  # constant features (digits' blank corners) stay at zero
    return mean, std


def encode_targets(labels: torch.Tensor, plan: TargetPlan, task: Task) -> torch.Tensor:
    if plan.encoding == "one_hot":
        return torch.nn.functional.one_hot(labels, task.num_classes).float()
    if plan.encoding == "binary_column":
        return labels.float().unsqueeze(1)
    return labels


def prepare_data(
    raw: RawData,
    plan: TargetPlan,
    *,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    device: torch.device,
    images: ImageOptions | None = None,
    fold: Fold | None = None,
) -> PreparedData:
    train_idx, val_idx, test_idx = split_indices(raw, val_fraction, test_fraction, split_seed, fold)

    def to_tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype).to(device)

    input_shape, encoding = raw.input_shape, None
    if raw.images is not None or raw.audio is not None:  # through the transforms: tensors, or streamed
        if images is None:
            raise ValueError("image and audio data need ImageOptions: the transforms to apply and how to build them")
        options, rows = images, (train_idx, val_idx, test_idx)
        if raw.audio is not None:
            from trainctl.data.audio_pipeline import prepare_audio  # audio's modules load for audio data only

            prepared = prepare_audio(raw.audio, rows, options, device)
        elif raw.images is not None:
            prepared = prepare_images(raw.images, rows, options, device)
        inputs: tuple[torch.Tensor | StreamedInputs, ...] = (prepared.train, prepared.val, prepared.test)
        input_shape, encoding = prepared.input_shape, prepared.encoding
    else:
        if raw.fit_inputs is not None:  # a table or text: encoded by what the training rows show
            x, encoding = raw.fit_inputs(train_idx)
            input_shape = (x.shape[1],)
            parts = (x[train_idx], x[val_idx], x[test_idx])
        else:
            mean, std = _statistics(raw.x[train_idx])
            parts = tuple((raw.x[rows] - mean) / std for rows in (train_idx, val_idx, test_idx))
            # Saved with the run: what predict and export apply to a raw row (one value per feature)
            encoding = {"standardization": {"mean": mean.tolist(), "std": std.tolist()}}
        inputs = tuple(to_tensor(part.reshape(len(part), *input_shape), torch.float32) for part in parts)
    y_train, y_val, y_test = raw.y[train_idx], raw.y[val_idx], raw.y[test_idx]
    if raw.corrupt_train_targets is not None:
        y_train = raw.corrupt_train_targets(y_train, np.random.default_rng(split_seed))

    target_scale: tuple[torch.Tensor, torch.Tensor] | None = None  # regression only: the targets' mean and std
    if raw.task.kind == "regression" and not plan.scale_targets:
        target_scale = (
            to_tensor(np.zeros(raw.task.num_targets), torch.float32),
            to_tensor(np.ones(raw.task.num_targets), torch.float32),
        )
    elif raw.task.kind == "regression":
        spread = y_train.std(axis=0)
        target_scale = (
            to_tensor(y_train.mean(axis=0), torch.float32),
            to_tensor(np.where(spread > 0, spread, 1.0), torch.float32),
        )
    target_mean, target_std = target_scale if target_scale is not None else (None, None)

    def make_split(x: torch.Tensor | StreamedInputs, y: np.ndarray, rows: np.ndarray) -> Split:
        lengths = None
        # Text: token ids padded with 0 on the right (text is never streamed).
        if isinstance(x, torch.Tensor) and encoding is not None and "text" in encoding:
            lengths = (x != 0).sum(dim=1).clamp(min=1).cpu()
        if target_scale is None:  # classification
            labels = to_tensor(y, torch.int64)
            return Split(x, labels, encode_targets(labels, plan, raw.task), rows, lengths)
        labels = to_tensor(y, torch.float32)
        mean, std = target_scale
        return Split(x, labels, (labels - mean) / std, rows, lengths)

    return PreparedData(
        train=make_split(inputs[0], y_train, train_idx),
        val=make_split(inputs[1], y_val, val_idx),
        test=make_split(inputs[2], y_test, test_idx),
        task=raw.task,
        plan=plan,
        input_shape=input_shape,
        encoding=encoding,
        target_mean=target_mean,
        target_std=target_std,
        warnings=list(raw.warnings),
        files=raw.files,
    )


def steps_per_epoch(size: int, batch_size: int) -> int:
    """How many batches `shuffled_batches` makes of `size` samples."""
    steps = -(-size // batch_size)
    return steps - 1 if steps > 1 and size % batch_size == 1 else steps


def shuffled_batches(
    size: int, batch_size: int, generator: torch.Generator, device: torch.device
) -> list[torch.Tensor]:
    """Index tensors of one epoch in a seeded random order; the last batch may be smaller.

    A last batch of a single sample joins the one before it: batch norm cannot train on one sample.
    """
    order = torch.randperm(size, generator=generator).to(device)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def ordered_batches(split: Split, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    starts = range(0, len(split), batch_size)
    if isinstance(split.inputs, StreamedInputs):
        positions = [torch.arange(start, min(start + batch_size, len(split))) for start in starts]
        batches = split.batch_inputs(positions, epoch=0)
    elif split.lengths is not None:  # text: each batch cut to its longest (the lengths live on the CPU)
        batches = (
            split.inputs[start : start + batch_size, : int(split.lengths[start : start + batch_size].max())]
            for start in starts
        )
    else:  # slices of a preloaded tensor are views: nothing is copied
        batches = (split.inputs[start : start + batch_size] for start in starts)
    for start, inputs in zip(starts, batches):
        end = start + batch_size
        yield inputs, split.targets[start:end], split.labels[start:end]
