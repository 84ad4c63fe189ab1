"""Datasets that ship with the install, so training works offline.

A dataset builder returns the whole table as numpy arrays with its task; splitting, standardising
and moving to tensors happen once in `trainctl.data.prepare`, the same way for every dataset.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainctl.data import image_sources, sklearn_files
from trainctl.data.raw import RawData, classification_task
from trainctl.data.task import Task, TaskKind
from trainctl.limits import MAX_COUNT, Count, Seed, Width, require_memory
from trainctl.registry import Registry


@dataclass(frozen=True, kw_only=True)
class DatasetInfo:
    """What the listings and `trainctl validate` know of a dataset before reading it."""

    task: TaskKind | Literal["from the file"]
    input: str  # what one sample is, in words
    images: bool = False  # read as images, so `data.transforms` apply
    audio: bool = False  # read as audio clips, so the audio transforms apply
    # A file's dataset: its task from its parameters (read from the file if need be), before training.
    task_of: Callable[[dict[str, Any]], str] | None = None

    def __post_init__(self) -> None:
        if (self.task == "from the file") != (self.task_of is not None):
            raise TypeError("a dataset whose task is 'from the file' gives task_of, and only such a dataset")


DATASETS = Registry("dataset", DatasetInfo)


def _sklearn_classification(loader_name: str, input_shape: tuple[int, ...] | None = None) -> RawData:
    table = sklearn_files.load(loader_name)
    names = table.target_names or tuple(str(n) for n in sorted(set(table.target)))
    task = Task("classification", num_classes=len(names), class_names=names)
    x = table.data.astype("float32")
    return RawData(x, table.target.astype("int64"), task, input_shape or (x.shape[1],))


@DATASETS.register(
    "digits",
    summary="8×8 images of handwritten digits (1,797 samples, 10 classes), bundled with scikit-learn",
    task="classification",
    input="image 1×8×8",
)
def digits(context: Any) -> RawData:
    return _sklearn_classification("load_digits", input_shape=(1, 8, 8))


@DATASETS.register(
    "iris",
    summary="Iris flowers: 4 measurements, 3 species (150 samples)",
    task="classification",
    input="4 features",
)
def iris(context: Any) -> RawData:
    return _sklearn_classification("load_iris")


@DATASETS.register(
    "wine",
    summary="Wine chemistry: 13 features, 3 cultivars (178 samples)",
    task="classification",
    input="13 features",
)
def wine(context: Any) -> RawData:
    return _sklearn_classification("load_wine")


@DATASETS.register(
    "breast_cancer",
    summary="Breast tumour measurements: 30 features, malignant or benign (569 samples, binary)",
    task="classification",
    input="30 features",
)
def breast_cancer(context: Any) -> RawData:
    return _sklearn_classification("load_breast_cancer")


@DATASETS.register(
    "diabetes",
    summary="Diabetes progression after one year from 10 baseline variables (442 samples)",
    task="regression",
    input="10 features",
)
def diabetes(context: Any) -> RawData:
    table = sklearn_files.load("load_diabetes")
    x = table.data.astype("float32")
    y = table.target.astype("float32").reshape(-1, 1)
    return RawData(x, y, Task("regression", num_targets=1), (x.shape[1],))


@DATASETS.register(
    "synthetic_regression",
    summary="Linear targets with Gaussian noise and, optionally, gross outliers in the training targets",
    task="regression",
    input="`features` features",
)
def synthetic_regression(
    context: Any,
    *,
    samples: Annotated[int, Field(ge=10, le=MAX_COUNT)] = 2000,
    features: Width = 10,
    noise: Annotated[float, Field(ge=0)] = 0.1,
    outlier_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.0,  # of training targets only
    outlier_scale: Annotated[float, Field(gt=0)] = 20.0,  # outliers are offset by ±U(0.5, 1)·scale
    generator_seed: Seed = 0,  # the same data for every training seed
) -> RawData:
    import numpy as np

    # float64 draws, float32 copies, the split and its standardised copy: about 16 bytes a value at the peak
    require_memory(samples * (features + 1) * 16, f"data: {samples:,} samples × {features:,} features")

    rng = np.random.default_rng(generator_seed)
    x = rng.standard_normal((samples, features)).astype("float32")
    weights = rng.standard_normal(features).astype("float32")
    y = (x @ weights + noise * rng.standard_normal(samples)).astype("float32").reshape(-1, 1)

    def add_outliers(y_train: Any, rng: Any) -> Any:
        count = round(outlier_fraction * len(y_train))
        if count == 0:
            return y_train
        rows = rng.choice(len(y_train), size=count, replace=False)
        offsets = rng.uniform(0.5, 1.0, size=count) * rng.choice([-1.0, 1.0], size=count) * outlier_scale
        y_train = y_train.copy()
        y_train[rows, 0] += offsets.astype("float32")
        return y_train

    return RawData(x, y, Task("regression", num_targets=1), (features,), add_outliers)


def _csv_task(params: dict[str, Any]) -> str:
    """The task of a csv dataset, known before training from its `task` or its target column."""
    from trainctl.data.tables import table_task

    return table_task(params)


@DATASETS.register(
    "csv",
    summary="A CSV (or .tsv) file with a header row: numeric columns standardised, text columns one-hot encoded",
    task="from the file",
    task_of=_csv_task,
    input="the feature columns",
)
def csv_table(
    context: Any,
    *,
    path: str,
    target: str,
    features: list[str] | None = None,  # default: every column but the target
    task: Literal["auto", "classification", "regression"] = "auto",
    on_missing: Literal["drop", "error"] = "error",  # rows with an empty or NA cell in a used column
    group_column: str | None = None,  # rows with one value here stay in one cv fold; not a feature by default
) -> RawData:
    from trainctl.data.tables import table_data

    return table_data(path, target, features, task, on_missing, group_column)


def _register_standard_images(name: str, summary: str, shape: str, load: Callable[[str, bool], RawData]) -> None:
    """A dataset read from its standard files in data.root (`load(root, download)`)."""

    def builder(context: Any, *, root: str, download: bool = False) -> RawData:
        return load(root, download)

    builder.__name__ = name
    DATASETS.register(name, summary=summary, task="classification", input=f"image {shape}", images=True)(builder)


for _name, _class_name, _summary in (
    ("mnist", "MNIST", "Handwritten digits, 28×28 (60,000 + 10,000 test), from MNIST's IDX files in data.root"),
    ("fashion_mnist", "FashionMNIST", "Zalando clothing images, 28×28, 10 classes, from IDX files in data.root"),
    ("kmnist", "KMNIST", "Kuzushiji (cursive Japanese) characters, 28×28, 10 classes, from IDX files in data.root"),
):
    _register_standard_images(_name, _summary, "1×28×28", functools.partial(image_sources.mnist_family, _class_name))


_register_standard_images(
    "cifar10",
    "32×32 colour images of 10 classes (50,000 + 10,000 test), from the python batches in data.root",
    "3×32×32",
    functools.partial(image_sources.cifar, "CIFAR10", "labels"),
)
_register_standard_images(
    "cifar100",
    "32×32 colour images of 100 fine classes (50,000 + 10,000 test), from the python files in data.root",
    "3×32×32",
    functools.partial(image_sources.cifar, "CIFAR100", "fine_labels"),
)


@DATASETS.register(
    "image_folder",
    summary="Images in one sub-folder per class (PNG, JPEG, ...), through torchvision's ImageFolder, read as training goes",
    task="classification",
    input="images, channels × image_size",
    images=True,
)
def image_folder(
    context: Any,
    *,
    root: str,
    val_root: str | None = None,  # a folder of the same classes kept as the validation split
    test_root: str | None = None,  # the same, kept as the test split
    channels: Literal[1, 3] = 3,  # 1: grayscale, 3: RGB
    image_size: list[Width] | None = None,  # [height, width] to resize every image to; needed when sizes differ
) -> RawData:
    return image_sources.image_folder(root, val_root, test_root, channels, image_size)


@DATASETS.register(
    "text",
    summary="Labelled text from a CSV/TSV: a tokenizer and a vocabulary built on the training split",
    task="classification",
    input="token ids, padded to one length",
)
def text(
    context: Any,
    *,
    path: str,
    text_column: str = "text",
    label_column: str = "label",
    tokenizer: Literal["words", "chars"] = "words",  # words: lower-cased words and punctuation marks
    lowercase: bool = True,
    min_freq: Count = 1,  # tokens seen fewer times in training become <unk>
    max_size: Count | None = None,  # keep the most frequent tokens only
    max_length: Count = 200,  # tokens per example; longer ones are cut
) -> RawData:
    import numpy as np

    from trainctl.data.tables import class_labels, handle_missing, read_table, require_columns
    from trainctl.data.text import TextEncoding

    table = read_table(Path(path), text_columns=(text_column, label_column))
    require_columns(table, {"data.text_column": text_column, "data.label_column": label_column})
    table = handle_missing(table, [text_column, label_column], "drop")
    texts, cells = table.column(text_column), table.column(label_column)
    labels = class_labels(cells)
    task = classification_task(tuple(labels), f"data.label_column: column {label_column!r} of {path}")
    position = {label: i for i, label in enumerate(labels)}
    y = np.array([position[cell] for cell in cells], dtype="int64")

    def fit_inputs(train_rows: Any) -> tuple[Any, dict[str, Any]]:
        encoding = TextEncoding.fit(
            [texts[i] for i in train_rows], tokenizer, lowercase, min_freq, max_size, max_length
        )
        return encoding.transform(texts), {"text": encoding.to_dict()}

    return RawData(np.zeros((len(y), 0), dtype="float32"), y, task, (0,), fit_inputs=fit_inputs)


LOG_MEL_SETTINGS = ("n_mels", "n_fft", "hop_length", "f_min", "f_max")


class AudioFeatures(BaseModel):
    """data.features of an audio dataset: what the model reads of each clip."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: Literal["log_mel", "waveform"] = "log_mel"  # log_mel: 1×frames×n_mels; waveform: 1×samples
    n_mels: Annotated[int, Field(ge=1, le=512)] = 64
    n_fft: Annotated[int, Field(ge=8, le=65536)] = 400  # samples per STFT window (25 ms at 16 kHz)
    hop_length: Annotated[int, Field(ge=1, le=65536)] = 160  # samples between windows (10 ms at 16 kHz)
    f_min: Annotated[float, Field(ge=0)] = 0.0
    f_max: Annotated[float, Field(gt=0)] | None = None  # default: half the sample rate
    normalize: bool = True  # standardise each mel band (the waveform: as a whole) with the training split's statistics

    @model_validator(mode="after")
    def _log_mel_settings_for_log_mel_only(self) -> AudioFeatures:
        # Set to other values than their defaults, since a run's saved config holds every key.
        given = [key for key in LOG_MEL_SETTINGS if getattr(self, key) != type(self).model_fields[key].default]
        if self.name == "waveform" and given:
            raise ValueError(f"{', '.join(given)} set log-mel features; waveform features take only normalize")
        return self


@DATASETS.register(
    "audio_folder",
    summary="Audio files (WAV, FLAC, OGG, MP3) in one sub-folder per class, resampled to one rate and length",
    task="classification",
    input="log-mel frames 1×frames×n_mels, or the waveform 1×samples",
    audio=True,
)
def audio_folder(
    context: Any,
    *,
    root: str,
    val_root: str | None = None,  # a folder of the same classes kept as the validation split
    test_root: str | None = None,  # the same, kept as the test split
    sample_rate: Annotated[int, Field(ge=1000, le=384000)] = 16000,  # every file is resampled to this rate
    duration: Annotated[float, Field(gt=0, le=3600)] = 1.0,  # seconds per clip: longer ones cut, shorter padded
    features: AudioFeatures = AudioFeatures(),  # noqa: B008  builders never change their parameters
) -> RawData:
    from trainctl.data.audio import audio_folder as read_audio_folder

    # A config's parameters arrive as plain data (a mapping), as they are saved with the run.
    return read_audio_folder(root, val_root, test_root, sample_rate, duration, dict(features))
