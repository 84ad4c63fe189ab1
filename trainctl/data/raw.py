"""What a dataset builder returns: the whole table as numpy arrays with its task, before any split.

Splitting, standardising and moving to tensors happen once in `trainctl.data.prepare`, the same way
for every dataset; image datasets carry an `ImageSource` that `trainctl.data.image_pipeline` turns
into model inputs through the config's transforms, audio datasets an `AudioSource` that
`trainctl.data.audio_pipeline` turns into features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trainctl.data.task import Task
from trainctl.errors import UserError


@dataclass
class ImageSource:
    """Where an image dataset's pixels come from: arrays in memory, or files read as needed.

    `trainctl.data.image_pipeline` turns either into model inputs through the config's transforms.
    """

    pixels: Any = None  # numpy uint8 array (N, C, H, W): MNIST, CIFAR
    files: list[str] = field(default_factory=list)  # one image file per sample: image folders
    channels: int = 1
    size: tuple[int, int] | None = None  # files are resized to (height, width) on reading
    statistics: tuple[list[float], list[float]] | None = None  # the dataset's well-known mean and std per channel


@dataclass
class AudioSource:
    """An audio dataset's files and how to read them: `trainctl.data.audio_pipeline` decodes them,
    resamples, fits them to one length and turns them into features."""

    files: list[str]  # one audio file per sample
    sample_rate: int  # every file is resampled to this rate
    length: int  # samples per clip at sample_rate (data.duration): longer clips are cut, shorter padded
    features: dict[str, Any]  # data.features: {name: log_mel, n_mels: ...} or {name: waveform}


@dataclass
class RawData:
    x: Any  # numpy array, one row per sample
    y: Any  # numpy array: class indices, or real targets of shape (n, k)
    task: Task
    input_shape: tuple[int, ...]  # shape of one sample as the model sees it
    # Applied to the training split's targets only (e.g. gross outliers): val and test stay clean.
    corrupt_train_targets: Callable[[Any, Any], Any] | None = None
    # For tables whose encoding is fitted on the training rows (categories, means): given those
    # rows' indices, every row's model inputs and the encoding as plain data, saved with the run.
    fit_inputs: Callable[[Any], tuple[Any, dict[str, Any]]] | None = None
    test_rows: Any | None = None  # a dataset's own test split (MNIST's t10k files), kept as the test split
    val_rows: Any | None = None  # a dataset's own validation split (an image folder's val_root)
    images: ImageSource | None = None  # an image dataset: inputs come through the transforms
    audio: AudioSource | None = None  # an audio dataset: inputs are features of the decoded files
    files: list[str] | None = None  # each row's file (image and audio folders), named by `eval --worst`
    groups: Any | None = None  # each row's group (a csv dataset's data.group_column): one cv fold holds a whole group
    # (what is odd, what to do) about the data: warnings of the checks before training (validate, train)
    warnings: list[tuple[str, str]] = field(default_factory=list)


def classification_task(names: tuple[str, ...], source: str) -> Task:
    """The task of labelled data; refused before anything trains when all of it is one class."""
    if len(names) < 2:
        found = f"only class {names[0]!r}" if names else "no classes"
        raise UserError(f"{source} holds {found}; a classifier needs at least two classes to tell apart")
    return Task("classification", num_classes=len(names), class_names=names)
