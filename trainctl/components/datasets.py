"""Datasets that ship with the install, so training works offline.

A dataset builder returns the whole table as numpy arrays with its task; splitting, standardising
and moving to tensors happen once in `trainctl.data`, the same way for every dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

from pydantic import Field

from trainctl.components import sklearn_files
from trainctl.errors import UserError
from trainctl.registry import Registry
from trainctl.task import Task

DATASETS = Registry("dataset")


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
    image: bool = False  # inputs are images: predict reads image files for such runs
    image_size: tuple[int, int] | None = None  # images were resized to (height, width); predict does too


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
    samples: Annotated[int, Field(ge=10)] = 2000,
    features: Annotated[int, Field(ge=1)] = 10,
    noise: Annotated[float, Field(ge=0)] = 0.1,
    outlier_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.0,  # of training targets only
    outlier_scale: Annotated[float, Field(gt=0)] = 20.0,  # outliers are offset by ±U(0.5, 1)·scale
    generator_seed: int = 0,  # the same data for every training seed
) -> RawData:
    import numpy as np

    rng = np.random.default_rng(generator_seed)
    x = rng.standard_normal((samples, features)).astype("float32")
    weights = rng.standard_normal(features).astype("float32")
    y = (x @ weights + noise * rng.standard_normal(samples)).astype("float32").reshape(-1, 1)

    def add_outliers(y_train: Any, rng: Any) -> Any:
        count = int(round(outlier_fraction * len(y_train)))
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

    from trainctl.tables import FeatureEncoding, class_labels, handle_missing, infer_task, read_table, require_columns

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
        position = {label: i for i, label in enumerate(labels)}
        y = np.array([position[cell] for cell in cells], dtype="int64")
        described = Task("classification", num_classes=len(labels), class_names=tuple(labels))
    else:
        try:
            y = np.array([float(cell) for cell in cells], dtype="float32").reshape(-1, 1)
        except ValueError:
            raise UserError(f"data.task: regression needs numbers in column {target!r} of {path}") from None
        described = Task("regression", num_targets=1)

    def fit_inputs(train_rows: Any) -> tuple[Any, dict[str, Any]]:
        encoding = FeatureEncoding.fit(table, columns, train_rows)
        return encoding.transform(table), {"table": encoding.to_dict()}

    placeholder = np.zeros((len(y), 0), dtype="float32")  # the width is known once fitted on training rows
    return RawData(placeholder, y, described, (0,), fit_inputs=fit_inputs)


MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


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
    try:
        train = dataset_class(root, train=True, download=download)
        test = dataset_class(root, train=False, download=download)
    except Exception as error:  # torchvision raises plain RuntimeError/ValueError for bad files
        raise UserError(f"data.root: {folder}: cannot read the {class_name} files: {error}") from None
    images = np.concatenate([train.data.numpy(), test.data.numpy()]).astype("float32") / 255.0
    labels = np.concatenate([train.targets.numpy(), test.targets.numpy()]).astype("int64")
    names = tuple(str(name) for name in train.classes)
    task = Task("classification", num_classes=len(names), class_names=names)
    height, width = images.shape[1:]
    return RawData(images.reshape(len(images), -1), labels, task, (1, height, width),
                   test_rows=np.arange(len(train.data), len(images)), image=True)


def _register_mnist(name: str, class_name: str, summary: str) -> None:
    def builder(context: Any, *, root: str, download: bool = False) -> RawData:
        return _mnist_family(class_name, root, download)

    builder.__name__ = name
    DATASETS.register(name, summary=summary, task="classification", input="image 1×28×28")(builder)


_register_mnist("mnist", "MNIST", "Handwritten digits, 28×28 (60,000 + 10,000 test), from MNIST's IDX files in data.root")
_register_mnist("fashion_mnist", "FashionMNIST", "Zalando clothing images, 28×28, 10 classes, from IDX files in data.root")
_register_mnist("kmnist", "KMNIST", "Kuzushiji (cursive Japanese) characters, 28×28, 10 classes, from IDX files in data.root")


def _load_image_folder(root: str, channels: int, size: tuple[int, int] | None, classes: list[str] | None) -> tuple:
    """Every image below root/<class>/ as an array, through torchvision's ImageFolder (which finds
    the classes and the image files)."""
    import numpy as np

    from trainctl.images import read_image, torchvision

    datasets = torchvision("data.name: image_folder").datasets
    if not Path(root).is_dir():
        raise UserError(f"data: {root}: folder not found")
    try:
        found = datasets.ImageFolder(root)
    except (FileNotFoundError, RuntimeError) as error:
        raise UserError(f"data: {root}: {error} (expected one sub-folder of images per class)") from None
    if classes is not None and found.classes != classes:
        raise UserError(f"data: {root}: class folders {', '.join(found.classes)} differ from the training "
                        f"folder's {', '.join(classes)}")
    images = [read_image(path, channels, size) for path, _ in found.samples]
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        listed = ", ".join(f"{shape[2]}×{shape[1]}" for shape in sorted(shapes)[:4])
        raise UserError(f"data: {root}: the images have different sizes ({listed}); set data.image_size: [H, W]")
    return np.stack(images), np.array(found.targets, dtype="int64"), found.classes


@DATASETS.register(
    "image_folder",
    summary="Images in one sub-folder per class (PNG, JPEG, ...), through torchvision's ImageFolder",
    task="classification",
    input="images, channels × image_size",
)
def image_folder(
    context: Any,
    *,
    root: str,
    val_root: str | None = None,  # a folder of the same classes kept as the validation split
    test_root: str | None = None,  # the same, kept as the test split
    channels: Literal[1, 3] = 3,  # 1: grayscale, 3: RGB
    image_size: list[int] | None = None,  # [height, width] to resize every image to; default: as they are
) -> RawData:
    import numpy as np


    if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
        raise UserError(f"data.image_size: expected [height, width], got {image_size}")
    size = tuple(image_size) if image_size is not None else None
    images, labels, classes = _load_image_folder(root, channels, size, None)
    parts, given = [images], {}
    for key, folder in (("val_rows", val_root), ("test_rows", test_root)):
        if folder is None:
            continue
        more, more_labels, _ = _load_image_folder(folder, channels, size or images.shape[2:], classes)
        if more.shape[1:] != images.shape[1:]:
            raise UserError(f"data.{key[:-5]}_root: its images are {more.shape[3]}×{more.shape[2]}, the training "
                            f"images {images.shape[3]}×{images.shape[2]}; set data.image_size: [H, W]")
        start = sum(len(part) for part in parts)
        given[key] = np.arange(start, start + len(more))
        parts.append(more)
        labels = np.concatenate([labels, more_labels])
    x = np.concatenate(parts)
    task = Task("classification", num_classes=len(classes), class_names=tuple(classes))
    return RawData(x.reshape(len(x), -1), labels, task, tuple(x.shape[1:]), image=True,
                   image_size=size, **given)


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
    min_freq: Annotated[int, Field(ge=1)] = 1,  # tokens seen fewer times in training become <unk>
    max_size: Annotated[int, Field(ge=1)] | None = None,  # keep the most frequent tokens only
    max_length: Annotated[int, Field(ge=1)] = 200,  # tokens per example; longer ones are cut
) -> RawData:
    import numpy as np

    from trainctl.tables import class_labels, handle_missing, read_table, require_columns
    from trainctl.text import TextEncoding

    table = read_table(Path(path))
    require_columns(table, {"data.text_column": text_column, "data.label_column": label_column})
    table = handle_missing(table, [text_column, label_column], "drop")
    texts, cells = table.column(text_column), table.column(label_column)
    labels = class_labels(cells)
    position = {label: i for i, label in enumerate(labels)}
    y = np.array([position[cell] for cell in cells], dtype="int64")

    def fit_inputs(train_rows: Any) -> tuple[Any, dict[str, Any]]:
        encoding = TextEncoding.fit([texts[i] for i in train_rows], tokenizer, lowercase, min_freq, max_size, max_length)
        return encoding.transform(texts), {"text": encoding.to_dict()}

    task = Task("classification", num_classes=len(labels), class_names=tuple(labels))
    return RawData(np.zeros((len(y), 0), dtype="float32"), y, task, (0,), fit_inputs=fit_inputs)
