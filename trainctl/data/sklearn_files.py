"""scikit-learn's bundled datasets read straight from the files it ships.

`import sklearn.datasets` costs about 0.9 s on a small machine (it pulls in scipy and more), longer
than loading any of these tables takes. The files are small CSVs in a layout scikit-learn has kept
for a decade; they are found without importing sklearn. Where a file is not where it is expected,
the loaders fall back to scikit-learn's own functions, which give the same arrays (a test checks
that they agree).
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import NamedTuple

import numpy as np


class Table(NamedTuple):
    data: np.ndarray
    target: np.ndarray
    target_names: tuple[str, ...]


def data_file(name: str) -> Path | None:
    """A file in sklearn/datasets/data, located without importing sklearn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    return path if path.is_file() else None


def _labelled_csv(name: str) -> Table | None:
    """iris.csv, wine_data.csv, breast_cancer.csv: a header `n_samples,n_features,class names...`,
    then one row per sample, the features and the class index last."""
    path = data_file(name)
    if path is None:
        return None
    with path.open(encoding="utf-8") as handle:
        header = next(csv.reader(handle))
        table = np.loadtxt(handle, delimiter=",", dtype=np.float64, ndmin=2)
    return Table(table[:, :-1], table[:, -1].astype(int), tuple(header[2:]))


def load(loader_name: str) -> Table:
    """The table that `sklearn.datasets.<loader_name>()` returns (data, target, target names)."""
    table = _read(loader_name)
    if table is not None:
        return table
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader_name)()
    names = tuple(str(n) for n in getattr(bunch, "target_names", ()))
    return Table(bunch.data, bunch.target, names)


def _read(loader_name: str) -> Table | None:
    if loader_name in ("load_iris", "load_wine", "load_breast_cancer"):
        file = {"load_iris": "iris.csv", "load_wine": "wine_data.csv", "load_breast_cancer": "breast_cancer.csv"}
        return _labelled_csv(file[loader_name])
    if loader_name == "load_digits":
        path = data_file("digits.csv.gz")
        if path is None:
            return None
        table = np.loadtxt(path, delimiter=",")
        return Table(table[:, :-1], table[:, -1].astype(int), tuple(str(i) for i in range(10)))
    if loader_name == "load_diabetes":
        data_path, target_path = data_file("diabetes_data_raw.csv.gz"), data_file("diabetes_target.csv.gz")
        if data_path is None or target_path is None:
            return None
        data = np.loadtxt(data_path)
        # load_diabetes(scaled=True): each column centred, scaled to unit variance, then divided by sqrt(n).
        data = (data - data.mean(axis=0)) / data.std(axis=0) / np.sqrt(data.shape[0])
        return Table(data, np.loadtxt(target_path), ())
    return None
