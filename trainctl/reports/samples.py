"""test_predictions.csv: each test sample's result, written by `train` (the test split, best
checkpoint) and by `eval`, and read back for paired comparisons and label issues. Its columns are
described in `trainctl.training.samples`. No torch: compare reads it.

The reader takes any file with those columns: files written before the per-class probability
columns (prob_NAME) existed, and cross-validation's oof.csv (the folds' files one after the other,
with fold and repeat columns in front; columns the reader does not know are left alone).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.errors import UserError
from trainctl.files import write_atomically

SAMPLES_FILE = "test_predictions.csv"  # the test split scored with the best checkpoint
PROBABILITY_PREFIX = "prob_"  # prob_NAME: class NAME's probability (trainctl.training.samples writes it)


def samples_file_name(record_name: str) -> str:
    """The per-sample file beside eval's record `eval-SPLIT-CHECKPOINT.json`: test_predictions.csv
    for the test split's best checkpoint (what train writes), else eval-SPLIT-CHECKPOINT-predictions.csv."""
    if record_name == "eval-test-best.json":
        return SAMPLES_FILE
    return record_name.removesuffix(".json") + "-predictions.csv"


def write_samples(path: Path, columns: dict[str, list[Any]]) -> None:
    """The columns as CSV, floats at full precision (repr), atomically."""
    with io.StringIO(newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(list(columns))
        for row in zip(*columns.values()):
            writer.writerow([repr(value) if isinstance(value, float) else value for value in row])
        write_atomically(handle.getvalue().encode("utf-8"), path)


@dataclass
class SampleTable:
    """A run's per-sample test results, as arrays in the file's row order."""

    path: Path
    rows: np.ndarray  # dataset row of each sample
    targets: np.ndarray  # class indices (classification), or values (n, targets)
    predictions: np.ndarray
    confidences: np.ndarray | None  # the predicted class's probability
    losses: np.ndarray
    probabilities: np.ndarray | None = None  # (n, classes) in the run's class order; None in older files
    files: list[str] | None = None  # each sample's file (image and audio folders)


def read_samples(path: Path, class_names: list[str] | None) -> SampleTable:
    """A per-sample file, checked: classes are mapped to their indices by the run's class names
    (None for regression); a damaged file is one line naming it and the line."""
    header, body = _read_lines(path)
    where = {name: index for index, name in enumerate(header)}
    target_columns = _value_columns(header, "target")
    prediction_columns = _value_columns(header, "prediction")
    if not target_columns or len(target_columns) != len(prediction_columns):
        raise UserError(f"{path}: no matching target and prediction columns; the file is damaged")
    index = {name: k for k, name in enumerate(class_names)} if class_names is not None else None
    probability_columns = _probability_columns(path, header, class_names)
    rows, targets, predictions, confidences, losses, probabilities = [], [], [], [], [], []
    for number, fields in enumerate(body, 2):
        if len(fields) != len(header):
            raise UserError(f"{path}:{number}: {len(fields)} fields for {len(header)} columns; the file is damaged")
        try:
            rows.append(int(fields[where["row"]]))
            targets.append([_value(fields[where[c]], index) for c in target_columns])
            predictions.append([_value(fields[where[c]], index) for c in prediction_columns])
            losses.append(_number(fields[where["loss"]]))
            if "confidence" in where:
                confidences.append(_number(fields[where["confidence"]]))
            if probability_columns:
                probabilities.append([_probability(fields[where[c]]) for c in probability_columns])
        except ValueError as error:
            raise UserError(f"{path}:{number}: {error}; the file is damaged") from None
    shape = np.asarray(targets).reshape(len(body), -1)
    return SampleTable(
        path,
        np.asarray(rows, dtype=np.int64),
        shape[:, 0].astype(np.int64) if index is not None else shape.astype(np.float64),
        _column_array(predictions, index is not None),
        np.asarray(confidences, dtype=np.float64) if "confidence" in where else None,
        np.asarray(losses, dtype=np.float64),
        np.asarray(probabilities, dtype=np.float64).reshape(len(body), -1) if probability_columns else None,
        [fields[where["file"]] for fields in body] if "file" in where else None,
    )


def _read_lines(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of a per-sample file, which has at least the row and loss columns."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read the per-sample results: {error}") from None
    lines = list(csv.reader(io.StringIO(text)))
    if not lines or "row" not in lines[0] or "loss" not in lines[0]:
        raise UserError(f"{path}: no header with row and loss columns; the file is damaged (train and eval write it)")
    if len(lines) == 1:
        raise UserError(
            f"{path}: a header and no samples; the file is damaged (train and eval write one line a sample)"
        )
    return lines[0], lines[1:]


def file_class_names(path: Path) -> list[str] | None:
    """The classes of a per-sample file read without its run (no data.json beside it): the
    probability columns' names in their order, which is the run's class order; a file without them
    gives the class names it holds, sorted (enough to list samples, not to map them to outputs).
    None for a file of several targets (target_0, target_1, ...): a regression run's."""
    header, body = _read_lines(path)
    named = [column.removeprefix(PROBABILITY_PREFIX) for column in header if column.startswith(PROBABILITY_PREFIX)]
    if named:
        return named
    if "target" not in header:
        return None
    where = [header.index(column) for column in ("target", "prediction") if column in header]
    return sorted({fields[k] for fields in body if len(fields) == len(header) for k in where})


def _probability_columns(path: Path, header: list[str], class_names: list[str] | None) -> list[str]:
    """The prob_NAME columns in the run's class order; none in a file written before they existed
    or in a regression run's. Columns for other classes than the run's mean a damaged file."""
    present = [column for column in header if column.startswith(PROBABILITY_PREFIX)]
    if class_names is None or not present:
        return []
    expected = [f"{PROBABILITY_PREFIX}{name}" for name in class_names]
    if sorted(present) != sorted(expected):
        raise UserError(
            f"{path}: probability columns {', '.join(present)} do not match the run's classes "
            f"({', '.join(class_names)}); the file is damaged"
        )
    return expected


def _value_columns(header: list[str], name: str) -> list[str]:
    if name in header:
        return [name]
    return [column for column in header if column.startswith(f"{name}_") and column[len(name) + 1 :].isdigit()]


def _value(text: str, classes: dict[str, int] | None) -> float:
    if classes is None:
        return _number(text)
    if text not in classes:
        raise ValueError(f"class {text!r} is not one of the run's classes")
    return classes[text]


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def _probability(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"probability {text!r} is not between 0 and 1")
    return value


def _column_array(values: list[list[float]], classes: bool) -> np.ndarray:
    array = np.asarray(values).reshape(len(values), -1)
    return array[:, 0].astype(np.int64) if classes else array.astype(np.float64)
