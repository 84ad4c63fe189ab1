"""Image datasets from pixels to model inputs, through the config's transforms.

Each split becomes either a preloaded tensor or streamed inputs (`trainctl.data.streaming`):
- in-memory pixels (MNIST, CIFAR) under a deterministic list are transformed once, in chunks,
  and keep the fast tensor path;
- a training split whose list is random (augmentation) is transformed per sample and epoch;
- image files (image folders) are read as training goes, through a DataLoader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from trainctl.data.images import v2
from trainctl.data.raw import ImageSource
from trainctl.data.streaming import (
    ImageFiles,
    LoaderSettings,
    PixelRows,
    SampleReader,
    StreamedInputs,
)
from trainctl.errors import UserError

DEFAULT_TRANSFORMS: list[dict[str, Any]] = [{"name": "normalize"}]
STATISTICS_SAMPLE = 1000  # image files: the dataset's statistics are estimated from this many training images
CHUNK = 1024  # in-memory images transformed at a time


class TransformBuilder(Protocol):
    """Turns a config's transform list into a pipeline: the transforms registry does this
    (`trainctl.components.transforms.BUILDER`); data only applies what it is given."""

    def compose(self, specs: list[dict[str, Any]], where: str) -> Any: ...

    def is_random(self, specs: list[dict[str, Any]]) -> bool: ...

    def steps(self, specs: list[dict[str, Any]], where: str) -> list[Any]: ...  # the built transforms, in a list


@dataclass(frozen=True)
class ImageOptions:
    transforms: dict[str, list[dict[str, Any]] | None] | None  # data.transforms: train and eval lists, None: default
    seed: int  # seeds each sample's augmentation, with the epoch and the row
    loader: LoaderSettings
    builder: TransformBuilder


@dataclass
class ImageInputs:
    train: torch.Tensor | StreamedInputs
    val: torch.Tensor | StreamedInputs
    test: torch.Tensor | StreamedInputs
    input_shape: tuple[int, ...]
    encoding: dict[str, Any]  # what predict needs to read an image file as the model saw them


def reader_of(source: ImageSource) -> SampleReader:
    if source.pixels is not None:
        return PixelRows(torch.from_numpy(np.ascontiguousarray(source.pixels)))
    return ImageFiles(source.files, source.channels, source.size)


def resolve_transforms(
    settings: dict[str, list[dict[str, Any]] | None] | None, statistics: Callable[[], tuple[list[float], list[float]]]
) -> dict[str, list[dict[str, Any]]]:
    """The train and eval lists, defaults filled in: a list left out is `[normalize]`, and a
    normalize without mean and std gets the dataset's (`statistics()`, called only if needed)."""
    resolved, known = {}, None
    for phase in ("train", "eval"):
        specs = (settings or {}).get(phase)
        specs = [dict(spec) for spec in (specs if specs is not None else DEFAULT_TRANSFORMS)]
        for spec in specs:
            if spec["name"] == "normalize" and (spec.get("mean") is None or spec.get("std") is None):
                known = known or statistics()
                spec["mean"] = spec.get("mean") or known[0]
                spec["std"] = spec.get("std") or known[1]
        resolved[phase] = specs
    return resolved


def _statistics(reader: SampleReader, source: ImageSource, train_rows: np.ndarray) -> tuple[list[float], list[float]]:
    """Mean and standard deviation per channel of the training images as read: the dataset's
    published values when it has them, else computed (from up to STATISTICS_SAMPLE files)."""
    if source.statistics is not None:
        return source.statistics
    rows = train_rows
    if source.pixels is None and len(rows) > STATISTICS_SAMPLE:  # evenly spaced: the same for every seed
        rows = rows[np.linspace(0, len(rows) - 1, STATISTICS_SAMPLE).astype(int)]
    total = torch.zeros(source.channels, dtype=torch.float64)
    squares = torch.zeros(source.channels, dtype=torch.float64)
    count = 0
    for start in range(0, len(rows), CHUNK):
        chunk = torch.stack([reader.read(int(row)) for row in rows[start : start + CHUNK]]).double()
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
        count += chunk[:, 0].numel()
    mean = total / count
    std = (squares / count - mean.square()).clamp(min=0).sqrt()
    std[std == 0] = 1.0  # a blank channel stays at zero
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def _output_shape(pipeline: Any, sample: torch.Tensor, phase: str) -> tuple[int, ...]:
    """The shape one image leaves the pipeline with, run step by step so a failing step is named.

    normalize is checked against the channels it meets: torch would broadcast a 3-channel mean
    over a 1-channel image and quietly make it RGB.
    """
    with torch.random.fork_rng(devices=[]):
        for index, step in enumerate(pipeline.transforms):
            where = f"data.transforms.{phase}.{index}"
            channels = sample.shape[0]
            if isinstance(step, v2().Normalize) and {len(step.mean), len(step.std)} != {channels}:
                raise UserError(
                    f"{where}: normalize has {len(step.mean)} means and {len(step.std)} standard "
                    f"deviations, for images of {channels} channel(s); give one per channel"
                )
            try:
                sample = step(sample)
            except (RuntimeError, ValueError, TypeError) as error:
                raise UserError(
                    f"{where}: fails on an image of {'×'.join(map(str, sample.shape))}: {str(error).splitlines()[0]}"
                ) from None
    return tuple(sample.shape)


def _transform_in_memory(reader: PixelRows, rows: np.ndarray, pipeline: Any, device: torch.device) -> torch.Tensor:
    """A whole split through a deterministic pipeline, in chunks (v2 transforms take batches)."""
    chunks = [
        pipeline(reader.pixels[rows[start : start + CHUNK]].float().div_(255)) for start in range(0, len(rows), CHUNK)
    ]
    return torch.cat(chunks).to(device)


def prepare_images(
    source: ImageSource, rows: tuple[np.ndarray, np.ndarray, np.ndarray], options: ImageOptions, device: torch.device
) -> ImageInputs:
    reader = reader_of(source)
    train_rows = rows[0]
    specs = resolve_transforms(options.transforms, lambda: _statistics(reader, source, train_rows))
    pipelines = {phase: options.builder.compose(specs[phase], f"data.transforms.{phase}") for phase in specs}
    sample = reader.read(int(train_rows[0]))
    shapes = {phase: _output_shape(pipelines[phase], sample, phase) for phase in pipelines}
    if shapes["train"] != shapes["eval"]:
        raise UserError(
            f"data.transforms: the train transforms give images of {'×'.join(map(str, shapes['train']))}, "
            f"the eval transforms {'×'.join(map(str, shapes['eval']))}; the model needs one size"
        )

    def inputs(split_rows: np.ndarray, phase: str) -> torch.Tensor | StreamedInputs:
        random = options.builder.is_random(specs[phase])
        if isinstance(reader, PixelRows) and not random:
            return _transform_in_memory(reader, split_rows, pipelines[phase], device)
        return StreamedInputs(reader, split_rows, pipelines[phase], random, options.seed, device, options.loader)

    encoding = {
        "image": {
            "channels": source.channels,
            "source_shape": list(sample.shape),
            "resize": list(source.size) if source.size is not None else None,
            "transforms": specs["eval"],
        }
    }
    return ImageInputs(
        inputs(rows[0], "train"), inputs(rows[1], "eval"), inputs(rows[2], "eval"), shapes["eval"], encoding
    )
