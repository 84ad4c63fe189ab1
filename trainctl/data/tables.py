"""CSV tables as model inputs: reading, column types, missing values, and the feature encoding.

Numeric columns are standardised with the training split's mean and standard deviation; text
columns are one-hot encoded with the categories seen in training (a category first seen in
validation or test data encodes as all zeros). The fitted encoding is plain data, saved with the
run, so `trainctl predict` encodes new rows exactly as training did, without the training data.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.errors import UserError

MISSING = {"", "na", "n/a", "nan", "null", "none"}
MAX_CLASSES_FOR_INTEGER_TARGETS = 20  # integer targets with few distinct values are taken as classes


@dataclass
class Table:
    path: Path
    columns: list[str]
    rows: list[list[str]]  # cells as text, one list per data row
    lines: list[int]  # each row's line in the file, for messages

    def column(self, name: str) -> list[str]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


def read_table(path: Path, key: str = "data.path") -> Table:
    """A CSV (or TSV, by extension) with a header row; cells kept as text. `key` is what errors
    name as the source of the path (a config key, or nothing for a command-line argument)."""
    if not path.is_file():
        raise UserError(f"{key + ': ' if key else ''}{path}: file not found")
    stat = path.stat()
    # Validation reads the target column and the dataset builder the whole table: one read serves both.
    table = _read_table(path.resolve(), stat.st_mtime_ns, stat.st_size)
    return replace(table, path=path)  # messages name the file as it was given


@functools.lru_cache(maxsize=4)
def _read_table(path: Path, mtime_ns: int, size: int) -> Table:
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            columns = [name.strip() for name in next(reader, [])]
            rows, lines = [], []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue  # blank lines
                if len(row) != len(columns):
                    raise UserError(
                        f"{path}:{reader.line_num}: {len(row)} cells, but the header names {len(columns)} columns"
                    )
                rows.append([cell.strip() for cell in row])
                lines.append(reader.line_num)
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{path}: cannot read as CSV: {error}") from None
    if not columns:
        raise UserError(f"{path}: empty file (a CSV needs a header row)")
    if not rows:
        raise UserError(f"{path}: no data rows below the header")
    return Table(path, columns, rows, lines)


def require_columns(table: Table, keys: dict[str, str]) -> None:
    """Each config key's column must be in the table; the error lists the columns it has."""
    for key, name in keys.items():
        if name not in table.columns:
            raise UserError(f"{key}: no column {name!r} in {table.path}; its columns: {', '.join(table.columns)}")


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def numeric(cells: list[str]) -> bool:
    present = [cell for cell in cells if not is_missing(cell)]
    return bool(present) and all(_is_number(cell) for cell in present)


STRAY_TEXT_SHARE = 0.05  # a column this much text at most, the rest numbers, is likely a typo, not categories
FLOAT32_MAX = float(np.finfo(np.float32).max)  # models compute in float32: a larger value becomes inf


def stray_text_warning(table: Table, name: str) -> tuple[str, str] | None:
    """A column of numbers but for a few cells of text is read as text (one-hot categories): say so,
    naming the cells, since one typo otherwise silently turns a measurement into categories."""
    cells = table.column(name)
    present = [(line, cell) for line, cell in zip(table.lines, cells) if not is_missing(cell)]
    stray = [(line, cell) for line, cell in present if not _is_number(cell)]
    if not stray or len(stray) == len(present) or len(stray) > max(1, STRAY_TEXT_SHARE * len(present)):
        return None
    shown = ", ".join(f"{cell!r} at line {line}" for line, cell in stray[:3])
    more = f" and {len(stray) - 3} more" if len(stray) > 3 else ""
    return (
        f"{table.path}: column {name} is numeric except {shown}{more}: read as text (categories)",
        "correct the cell, or empty it and set data.on_missing: drop",
    )


def column_numbers(table: Table, name: str, trained: bool = False) -> np.ndarray:
    """Every cell of a numeric column as a float64; a cell that is not a finite number is named by
    file, line and column (inf or 1e400 would make the loss or the predictions NaN)."""
    cells = table.column(name)
    try:
        values = np.array([float(cell) for cell in cells], dtype=np.float64)
    except ValueError:
        row = next(i for i, cell in enumerate(cells) if not _is_number(cell))
        why = "the model was trained on numbers there" if trained else "the column's other cells are numbers"
        raise UserError(
            f"{table.path}:{table.lines[row]}: column {name!r}: {cells[row]!r} is not a number, and {why}"
        ) from None
    finite = np.abs(values) <= FLOAT32_MAX  # False for inf and NaN too
    if not finite.all():
        row = int(np.argmin(finite))
        raise UserError(
            f"{table.path}:{table.lines[row]}: column {name!r}: {cells[row]!r} is not a finite number "
            f"(within ±{FLOAT32_MAX:.1e}); fix the cell, or empty it and set data.on_missing: drop"
        )
    return values


def handle_missing(table: Table, used: list[str], on_missing: str) -> Table:
    """Drop rows with a missing value in a used column, or name them in an error."""
    indices = [table.columns.index(name) for name in used]
    bad = [i for i, row in enumerate(table.rows) if any(is_missing(row[j]) for j in indices)]
    if not bad:
        return table
    if on_missing == "error":
        shown = [
            f"line {table.lines[i]} ({', '.join(table.columns[j] for j in indices if is_missing(table.rows[i][j]))})"
            for i in bad[:5]
        ]
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise UserError(
            f"{table.path}: {len(bad)} rows have missing values: {'; '.join(shown)}{more}. "
            "Fill them in, or set data.on_missing: drop"
        )
    dropped = set(bad)
    keep = [i for i in range(len(table.rows)) if i not in dropped]
    return Table(table.path, table.columns, [table.rows[i] for i in keep], [table.lines[i] for i in keep])


@dataclass
class FeatureEncoding:
    """How each feature column becomes model inputs; fitted on the training rows."""

    columns: list[str]
    numeric: dict[str, tuple[float, float]] = field(default_factory=dict)  # column: (mean, std)
    categories: dict[str, list[str]] = field(default_factory=dict)  # column: categories seen in training

    @classmethod
    def fit(cls, table: Table, columns: list[str], train_rows: np.ndarray) -> FeatureEncoding:
        encoding = cls(columns)
        for name in columns:
            column = table.column(name)
            if numeric(column):
                values = column_numbers(table, name)[train_rows]
                std = float(values.std())
                encoding.numeric[name] = (float(values.mean()), std if std > 0 else 1.0)
            else:
                encoding.categories[name] = sorted({column[i] for i in train_rows})
        return encoding

    @property
    def width(self) -> int:
        return sum(len(self.categories[name]) if name in self.categories else 1 for name in self.columns)

    def transform(self, table: Table, strict: bool = False) -> np.ndarray:
        """Encode every row; with `strict` (predict), a category not seen in training is an error."""
        blocks = []
        for name in self.columns:
            if name not in table.columns:
                raise UserError(
                    f"{table.path}: no column {name!r}, which the model was trained on; "
                    f"its columns: {', '.join(table.columns)}"
                )
            cells = table.column(name)
            if name in self.numeric:
                mean, std = self.numeric[name]
                values = column_numbers(table, name, trained=True)
                blocks.append(((values - mean) / std)[:, None])
                continue
            known = self.categories[name]
            index = {category: i for i, category in enumerate(known)}
            block = np.zeros((len(cells), len(known)))
            for row, cell in enumerate(cells):
                if cell in index:
                    block[row, index[cell]] = 1.0
                elif strict:
                    raise UserError(
                        f"{table.path}:{table.lines[row]}: column {name!r}: {cell!r} was never seen in "
                        f"training; known: {', '.join(known)}"
                    )
            blocks.append(block)
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "numeric": {k: list(v) for k, v in self.numeric.items()},
            "categories": self.categories,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureEncoding:
        return cls(data["columns"], {k: tuple(v) for k, v in data["numeric"].items()}, data["categories"])


def infer_task(cells: list[str], task: str) -> str:
    """classification or regression: as asked, or from the target's values."""
    if task != "auto":
        return task
    if not numeric(cells):
        return "classification"
    values = np.array([float(cell) for cell in cells])
    integers = bool(np.all(values == np.round(values)))
    return "classification" if integers and len(set(values)) <= MAX_CLASSES_FOR_INTEGER_TARGETS else "regression"


def class_labels(cells: list[str]) -> list[str]:
    """Classes in a stable order: numerically for numbers, alphabetically otherwise."""
    distinct = set(cells)
    if all(_is_number(cell) for cell in distinct):
        return sorted(distinct, key=float)
    return sorted(distinct)
