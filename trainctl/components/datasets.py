"""Datasets that ship with the install, so training works offline.

A dataset builder returns the whole table as numpy arrays with its task; splitting, standardising
and moving to tensors happen once in `trainctl.data`, the same way for every dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable

from pydantic import Field

from trainctl.components import sklearn_files
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
