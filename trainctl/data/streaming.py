"""Inputs read and transformed one sample at a time and batched by a DataLoader.

Image folders are read from their files as training goes, and in-memory images under random
augmentation are transformed per sample; every other split is a preloaded tensor (`trainctl.data.prepare`).
The trainer still decides the batches: a DataLoader is handed each epoch's batches of row indices,
so the shuffle, the split over processes and resuming inside an epoch work as on tensors.

A random transform draws its parameters from a generator seeded by (seed, epoch, row): a sample's
augmentation is the same whichever worker reads it, however many workers there are, and after a
resume. The training process's own random state is never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch

from trainctl.errors import UserError


class SampleReader(Protocol):
    def read(self, row: int) -> torch.Tensor:
        """Sample `row` of the dataset as a C×H×W float tensor in [0, 1]."""


@dataclass
class PixelRows:
    """Images held in memory as uint8 (MNIST, CIFAR): a quarter of the memory of float32."""

    pixels: torch.Tensor  # (N, C, H, W) uint8

    def read(self, row: int) -> torch.Tensor:
        return self.pixels[row].float().div_(255)


@dataclass
class ImageFiles:
    """Image files read when a batch needs them."""

    paths: list[str]
    channels: int
    size: tuple[int, int] | None  # resized to (H, W) on reading

    def read(self, row: int) -> torch.Tensor:
        from trainctl.data.images import read_image

        return torch.from_numpy(read_image(self.paths[row], self.channels, self.size))


@dataclass(frozen=True)
class LoaderSettings:
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False


@dataclass(frozen=True)
class LoadFailure:
    """A sample that could not be read, passed back from a worker as a value: the trainer raises
    it as one line, where an exception would cross the process boundary as a traceback."""

    message: str


def sample_seed(seed: int, epoch: int, row: int) -> int:
    """A seed for one sample's augmentation in one epoch (a fixed integer mix, stable across runs)."""
    mixed = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + row * 0x94D049BB133111EB) % (1 << 64)
    return (mixed ^ (mixed >> 31)) % (1 << 63)


class _Samples(torch.utils.data.Dataset):
    """What a DataLoader worker runs: a batch of (row, seed) keys in, one stacked batch out."""

    def __init__(self, reader: SampleReader, transform: Callable[[torch.Tensor], torch.Tensor], random: bool):
        self.reader, self.transform, self.random = reader, transform, random

    def one(self, row: int, seed: int) -> torch.Tensor:
        sample = self.reader.read(row)
        if self.random:  # v2 transforms draw from torch's global generator
            torch.random.default_generator.manual_seed(seed)
        return self.transform(sample)

    def __getitems__(self, keys: list[tuple[int, int]]) -> torch.Tensor | LoadFailure:
        try:
            # The global random state is put back after the batch: it matters when this runs in the
            # training process itself (num_workers: 0), where dropout draws from it.
            with torch.random.fork_rng(devices=[], enabled=self.random):
                return torch.stack([self.one(row, seed) for row, seed in keys])
        except UserError as error:
            return LoadFailure(str(error))


def _unchanged(batch: Any) -> Any:  # the dataset already stacks its batches
    return batch


class _EpochBatches:
    """The DataLoader's batch sampler: the trainer sets each epoch's batches before iterating,
    so one DataLoader (and its persistent workers) serves every epoch."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


@dataclass
class StreamedInputs:
    """The inputs of one split: `rows` of a dataset, read through `reader` and `transform`."""

    reader: SampleReader
    rows: np.ndarray  # the dataset rows of this split, in order
    transform: Callable[[torch.Tensor], torch.Tensor]
    random: bool  # the transform draws random parameters (augmentation)
    seed: int
    device: torch.device
    loader: LoaderSettings
    _data_loader: torch.utils.data.DataLoader | None = field(
        default=None, init=False, repr=False
    )  # made on first use, kept for persistent workers
    _epoch_batches: _EpochBatches = field(default_factory=_EpochBatches, init=False, repr=False)  # its batch sampler

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, positions: np.ndarray) -> StreamedInputs:
        return replace(self, rows=self.rows[positions])  # a loader of its own

    def take(self, count: int) -> torch.Tensor:
        """The first `count` inputs, read in this process (the preflight check's batch)."""
        samples = _Samples(self.reader, self.transform, self.random)
        batch = samples.__getitems__([(int(row), sample_seed(self.seed, 1, int(row))) for row in self.rows[:count]])
        return self._on_device(batch)

    def batches(self, positions: list[torch.Tensor], epoch: int) -> Iterator[torch.Tensor]:
        """The inputs of each batch of split positions, in order, on the training device."""
        if not positions:
            return
        rows = self.rows[torch.cat(positions).cpu().numpy()]
        seeds = [sample_seed(self.seed, epoch, int(row)) if self.random else 0 for row in rows]
        keys = list(zip(rows.tolist(), seeds))
        loader = self._loader()
        ends = np.cumsum([len(p) for p in positions])
        self._epoch_batches.batches = [keys[end - len(p) : end] for p, end in zip(positions, ends)]
        for batch in loader:
            yield self._on_device(batch)

    def _on_device(self, batch: torch.Tensor | LoadFailure) -> torch.Tensor:
        if isinstance(batch, LoadFailure):
            raise UserError(batch.message)
        return batch.to(self.device, non_blocking=self._pins)

    @property
    def _pins(self) -> bool:
        return self.loader.pin_memory and self.device.type == "cuda"  # pinning only speeds up copies to a GPU

    def _loader(self) -> torch.utils.data.DataLoader:
        if self._data_loader is None:
            workers = self.loader.num_workers
            self._data_loader = torch.utils.data.DataLoader(
                _Samples(self.reader, self.transform, self.random),
                batch_sampler=self._epoch_batches,
                num_workers=workers,
                collate_fn=_unchanged,
                pin_memory=self._pins,
                persistent_workers=self.loader.persistent_workers and workers > 0,
                # The loader draws its workers' base seed from this generator: a private one, so
                # the training process's random state (dropout) is the same with or without workers.
                generator=torch.Generator().manual_seed(self.seed),
            )
        return self._data_loader
