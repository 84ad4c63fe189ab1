"""Datasets that ship with the install, so training works offline.

A dataset builder returns the whole table as numpy arrays with its task; splitting, standardising
and moving to tensors happen once in `trainctl.data`, the same way for every dataset.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from trainctl.components import sklearn_files
from trainctl.errors import UserError
from trainctl.limits import MAX_COUNT, Count, Seed, Width, require_memory
from trainctl.registry import Registry
from trainctl.task import Task

DATASETS = Registry("dataset")


@dataclass
class ImageSource:
    """Where an image dataset's pixels come from: arrays in memory, or files read as needed.

    `trainctl.image_pipeline` turns either into model inputs through the config's transforms.
    """

    pixels: Any = None  # numpy uint8 array (N, C, H, W): MNIST, CIFAR
    files: list[str] = field(default_factory=list)  # one image file per sample: image folders
    channels: int = 1
    size: tuple[int, int] | None = None  # files are resized to (height, width) on reading
    statistics: tuple[list[float], list[float]] | None = None  # the dataset's well-known mean and std per channel


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
    # (what is odd, what to do) about the data: warnings of the checks before training (validate, train)
    warnings: list[tuple[str, str]] = field(default_factory=list)


def classification_task(names: tuple[str, ...], source: str) -> Task:
    """The task of labelled data; refused before anything trains when all of it is one class."""
    if len(names) < 2:
        found = f"only class {names[0]!r}" if names else "no classes"
        raise UserError(f"{source} holds {found}; a classifier needs at least two classes to tell apart")
    return Task("classification", num_classes=len(names), class_names=names)


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
    from trainctl.tables import infer_task, read_table, require_columns

    if params.get("task", "auto") != "auto":
        return params["task"]
    table = read_table(Path(params["path"]))
    require_columns(table, {"data.target": params["target"]})
    return infer_task(table.column(params["target"]), "auto")


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
) -> RawData:
    import numpy as np

    from trainctl.tables import (
        FeatureEncoding,
        class_labels,
        column_numbers,
        handle_missing,
        infer_task,
        numeric,
        read_table,
        require_columns,
        stray_text_warning,
    )

    table = read_table(Path(path))
    columns = features if features is not None else [name for name in table.columns if name != target]
    require_columns(table, {"data.target": target})
    for name in columns:
        require_columns(table, {"data.features": name})
    if target in columns:
        raise UserError(f"data.features: the target column {target!r} cannot also be a feature")
    if not columns:
        raise UserError(f"data.features: {path} has no columns besides the target {target!r}")
    table = handle_missing(table, [target, *columns], on_missing)
    cells = table.column(target)
    kind = infer_task(cells, task)
    if kind == "classification":
        labels = class_labels(cells)
        described = classification_task(tuple(labels), f"data.target: column {target!r} of {path}")
        position = {label: i for i, label in enumerate(labels)}
        y = np.array([position[cell] for cell in cells], dtype="int64")
    else:
        if not numeric(cells):
            raise UserError(f"data.task: regression needs numbers in column {target!r} of {path}")
        y = column_numbers(table, target).astype("float32").reshape(-1, 1)
        described = Task("regression", num_targets=1)
    checked = [*columns, *([target] if task == "auto" else [])]  # an "auto" target is typed by its cells too
    warnings = [warning for name in checked if (warning := stray_text_warning(table, name))]

    def fit_inputs(train_rows: Any) -> tuple[Any, dict[str, Any]]:
        encoding = FeatureEncoding.fit(table, columns, train_rows)
        return encoding.transform(table), {"table": encoding.to_dict()}

    placeholder = np.zeros((len(y), 0), dtype="float32")  # the width is known once fitted on training rows
    return RawData(placeholder, y, described, (0,), fit_inputs=fit_inputs, warnings=warnings)


MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# Mean and standard deviation of each dataset's training images (the values published with them),
# what `normalize` uses when a config gives neither.
STATISTICS = {
    "MNIST": ([0.1307], [0.3081]),
    "FashionMNIST": ([0.2860], [0.3530]),
    "KMNIST": ([0.1918], [0.3483]),
    "CIFAR10": ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
    "CIFAR100": ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
}


IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # unsigned bytes: images (3 dimensions), labels (1 dimension)


def _idx_count(path: Path, dimensions: int) -> int:
    """The number of items an MNIST IDX file holds, after checking its header against its size:
    torchvision's own checks are bare asserts, which give an empty reason."""
    with path.open("rb") as handle:
        header = handle.read(4 + 4 * dimensions)
    kind = "images" if dimensions == 3 else "labels"
    magic = int.from_bytes(header[:4], "big") if len(header) >= 4 else None
    if magic != IDX_MAGIC[dimensions] or len(header) < 4 + 4 * dimensions:
        found = "a file too short for a header" if magic is None else f"magic number {magic:#010x}"
        raise UserError(
            f"data.root: {path}: not an MNIST-format {kind} file: {found}, expected "
            f"{IDX_MAGIC[dimensions]:#010x} (an uncompressed IDX file; .gz files must be unpacked)"
        )
    sizes = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions)]
    expected = len(header) + math.prod(sizes)
    actual = path.stat().st_size
    if actual != expected:
        raise UserError(
            f"data.root: {path}: the header describes {' × '.join(map(str, sizes))} bytes of {kind} "
            f"({expected} bytes in all), but the file has {actual} bytes: it is truncated or damaged"
        )
    return sizes[0]


def _check_mnist_files(folder: Path) -> None:
    for part in ("train", "t10k"):
        images = _idx_count(folder / f"{part}-images-idx3-ubyte", 3)
        labels = _idx_count(folder / f"{part}-labels-idx1-ubyte", 1)
        if images != labels:
            raise UserError(
                f"data.root: {folder}: {part}-images-idx3-ubyte holds {images} images but "
                f"{part}-labels-idx1-ubyte {labels} labels"
            )


def _mnist_family(class_name: str, root: str, download: bool) -> RawData:
    """An MNIST-format dataset through torchvision, from root/<class_name>/raw in torchvision's layout."""
    import numpy as np

    folder = Path(root) / class_name / "raw"
    missing = [name for name in MNIST_FILES if not (folder / name).is_file()]
    if missing and not download:
        raise UserError(
            f"data.root: {folder} lacks {', '.join(missing)}; put the {class_name} files there uncompressed "
            "(torchvision's layout), or set data.download: true on a machine that can reach the internet"
        )
    from trainctl.images import torchvision

    dataset_class = getattr(torchvision(f"data.name: {class_name}").datasets, class_name)
    if not missing:
        _check_mnist_files(folder)
    try:
        train = dataset_class(root, train=True, download=download)
        test = dataset_class(root, train=False, download=download)
    except Exception as error:  # torchvision raises plain RuntimeError/ValueError for bad files
        reason = str(error).strip() or type(error).__name__
        raise UserError(f"data.root: {folder}: cannot read the {class_name} files: {reason}") from None
    pixels = np.concatenate([train.data.numpy(), test.data.numpy()])[:, None]
    labels = np.concatenate([train.targets.numpy(), test.targets.numpy()]).astype("int64")
    names = tuple(str(name) for name in train.classes)
    return _in_memory_images(pixels, labels, names, class_name, test_rows=np.arange(len(train.data), len(pixels)))


def _in_memory_images(pixels: Any, labels: Any, names: tuple[str, ...], statistics: str, test_rows: Any) -> RawData:
    import numpy as np

    task = Task("classification", num_classes=len(names), class_names=names)
    source = ImageSource(pixels=pixels, channels=pixels.shape[1], statistics=STATISTICS[statistics])
    return RawData(
        np.zeros((len(pixels), 0), dtype="float32"),
        labels,
        task,
        tuple(pixels.shape[1:]),
        test_rows=test_rows,
        images=source,
    )


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
    _register_standard_images(_name, _summary, "1×28×28", functools.partial(_mnist_family, _class_name))


def _cifar(class_name: str, labels_key: str, root: str, download: bool) -> RawData:
    """CIFAR-10/100 from the official python batches in root/<base folder>, torchvision's layout.

    torchvision's own CIFAR datasets unpickle the batches unrestricted; they are read here with an
    unpickler that builds arrays, lists and strings only (`trainctl.pickled_arrays`).
    """
    import numpy as np

    from trainctl import pickled_arrays
    from trainctl.images import torchvision

    vision = torchvision(f"data.name: {class_name.lower()}")
    spec = getattr(vision.datasets, class_name)  # the layout: folder, batch files, metadata file, where to get it
    folder = Path(root) / spec.base_folder
    train_files = [name for name, _ in spec.train_list]
    test_files = [name for name, _ in spec.test_list]
    expected = [*train_files, *test_files, spec.meta["filename"]]
    if any(not (folder / name).is_file() for name in expected) and download:
        vision.datasets.utils.download_and_extract_archive(spec.url, root, filename=spec.filename, md5=spec.tgz_md5)
    missing = [name for name in expected if not (folder / name).is_file()]
    if missing:
        raise UserError(
            f"data.root: {folder} lacks {', '.join(missing)}; extract {spec.filename} (from {spec.url}) into "
            f"{root}, or set data.download: true on a machine that can reach the internet"
        )

    def batch(name: str) -> tuple[Any, Any]:
        entry = pickled_arrays.load(folder / name)
        data = entry.get("data") if isinstance(entry, dict) else None
        labels = entry.get(labels_key) if isinstance(entry, dict) else None
        if (
            not isinstance(data, np.ndarray)
            or data.ndim != 2
            or data.shape[1] != 3072
            or labels is None
            or len(labels) != len(data)
        ):
            raise UserError(
                f"data.root: {folder / name} is not a {class_name} batch: expected 'data' of N×3072 "
                f"pixels and {len(data) if isinstance(data, np.ndarray) else 'N'} '{labels_key}'"
            )
        return data.astype("uint8").reshape(-1, 3, 32, 32), np.asarray(labels, dtype="int64")

    parts = [batch(name) for name in [*train_files, *test_files]]
    meta = pickled_arrays.load(folder / spec.meta["filename"])
    if not isinstance(meta, dict) or spec.meta["key"] not in meta:
        raise UserError(f"data.root: {folder / spec.meta['filename']} has no {spec.meta['key']!r} list")
    names = tuple(str(name) for name in meta[spec.meta["key"]])
    pixels = np.concatenate([p for p, _ in parts])
    labels = np.concatenate([y for _, y in parts])
    if labels.min() < 0 or labels.max() >= len(names):
        raise UserError(
            f"data.root: {folder}: labels run from {labels.min()} to {labels.max()}, "
            f"but {spec.meta['filename']} names {len(names)} classes"
        )
    train_count = sum(len(p) for p, _ in parts[: len(train_files)])
    return _in_memory_images(pixels, labels, names, class_name, test_rows=np.arange(train_count, len(pixels)))


_register_standard_images(
    "cifar10",
    "32×32 colour images of 10 classes (50,000 + 10,000 test), from the python batches in data.root",
    "3×32×32",
    functools.partial(_cifar, "CIFAR10", "labels"),
)
_register_standard_images(
    "cifar100",
    "32×32 colour images of 100 fine classes (50,000 + 10,000 test), from the python files in data.root",
    "3×32×32",
    functools.partial(_cifar, "CIFAR100", "fine_labels"),
)


def _find_images(root: str, classes: list[str] | None) -> tuple[list[str], list[int], list[str]]:
    """The image files below root/<class>/ and their classes, through torchvision's ImageFolder
    (which lists the files without reading them)."""
    from trainctl.images import torchvision

    datasets = torchvision("data.name: image_folder").datasets
    if not Path(root).is_dir():
        raise UserError(f"data: {root}: folder not found")
    try:
        found = datasets.ImageFolder(root)
    except (FileNotFoundError, RuntimeError) as error:
        raise UserError(f"data: {root}: {error} (expected one sub-folder of images per class)") from None
    if classes is not None and found.classes != classes:
        raise UserError(
            f"data: {root}: class folders {', '.join(found.classes)} differ from the training "
            f"folder's {', '.join(classes)}"
        )
    return [path for path, _ in found.samples], list(found.targets), found.classes


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
    import numpy as np

    from trainctl.images import image_sizes

    if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
        raise UserError(f"data.image_size: expected [height, width], got {image_size}")
    paths, labels, classes = _find_images(root, None)
    task = classification_task(tuple(classes), f"data.root: {root} (one sub-folder per class)")
    given: dict[str, np.ndarray] = {}
    for key, folder in (("val_rows", val_root), ("test_rows", test_root)):
        if folder is not None:
            more, more_labels, _ = _find_images(folder, classes)
            given[key] = np.arange(len(paths), len(paths) + len(more))
            paths, labels = paths + more, labels + more_labels
    sizes = image_sizes(paths)  # reads each file's header: unreadable files are named before training
    if image_size is None and len(set(sizes)) > 1:
        listed = ", ".join(f"{width}×{height}" for width, height in sorted(set(sizes))[:4])
        raise UserError(f"data: the images under {root} have different sizes ({listed}); set data.image_size: [H, W]")
    height, width = image_size if image_size is not None else sizes[0][::-1]
    source = ImageSource(files=paths, channels=channels, size=(height, width) if image_size is not None else None)
    return RawData(
        np.zeros((len(paths), 0), dtype="float32"),
        np.array(labels, dtype="int64"),
        task,
        (channels, height, width),
        images=source,
        val_rows=given.get("val_rows"),
        test_rows=given.get("test_rows"),
    )


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

    from trainctl.tables import class_labels, handle_missing, read_table, require_columns
    from trainctl.text import TextEncoding

    table = read_table(Path(path))
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
