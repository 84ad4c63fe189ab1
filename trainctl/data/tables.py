"""Tables as model inputs: CSV, TSV and Parquet files, their checks, and the feature encoding.

Files are read into typed columns by `trainctl.data.table_files` (pyarrow); a table here is those
columns and the rows kept of them (rows with missing values can be dropped without copying a column).

Numeric columns are standardised with the training split's mean and standard deviation; text
columns are one-hot encoded with the categories seen in training (a category first seen in
validation or test data encodes as all zeros). The fitted encoding is plain data, saved with the
run, so `trainctl predict` encodes new rows exactly as training did, without the training data.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.data.raw import RawData, classification_task
from trainctl.data.table_cells import MISSING, Cells
from trainctl.data.table_files import PARQUET_SUFFIXES, RowPlaces, TableFile, arrow, place, read_csv, read_parquet
from trainctl.data.task import Task
from trainctl.errors import UserError
from trainctl.limits import available_memory, format_bytes, require_memory

MAX_CLASSES_FOR_INTEGER_TARGETS = 20  # integer targets with few distinct values are taken as classes
STRAY_TEXT_SHARE = 0.05  # a column this much text at most, the rest numbers, is likely a typo, not categories
FLOAT32_MAX = float(np.finfo(np.float32).max)  # models compute in float32: a larger value becomes inf
# Reading a CSV holds its parsed columns and pyarrow's buffers at once: about twice the file at the
# peak; a Parquet file holds its columns uncompressed. Checked before reading, against free memory.
CSV_READING_BYTES_PER_FILE_BYTE = 2.5


@dataclass(frozen=True)
class Table:
    path: Path  # as given, for messages
    columns: list[str]
    cells: list[Cells]  # one per column, over the rows read
    places: RowPlaces
    rows: np.ndarray  # the rows of this table among those read

    def __len__(self) -> int:
        return len(self.rows)

    def cells_of(self, name: str) -> Cells:
        """The cells of a column (the first, if two share the name)."""
        cells = self.cells[self.columns.index(name)]
        if cells.unsupported is not None:
            raise UserError(
                f"{self.path}: column {name!r} holds {cells.unsupported} values, which trainctl does not read "
                "(numbers, text and booleans are read); convert it, or leave it out of data.features"
            )
        return cells

    def column(self, name: str) -> list[str]:
        """The cells of a column as text, stripped (one Python string per cell: for text data)."""
        texts = self.cells_of(name).texts()
        return [texts.texts[code] for code in texts.codes[self.rows]]

    @property
    def lines(self) -> list[int]:
        """Each row's line in a CSV (its row number in a Parquet file), for messages."""
        return self.places.numbers()[self.rows].tolist()

    def at(self, row: int) -> str:
        """Where a row is, for a message: `path:line`, or `path: row N` in a Parquet file."""
        return place(self.path, self.places.unit, int(self.places.numbers()[self.rows[row]]))

    def take(self, positions: np.ndarray) -> Table:
        return replace(self, rows=self.rows[positions])


def read_table(path: Path, key: str = "data.path", text_columns: Iterable[str] = ()) -> Table:
    """A CSV (TSV by its suffix) with a header row, or a Parquet file. `key` is what errors name as
    the source of the path (a config key, or nothing for a command-line argument). The cells of
    `text_columns` keep their text whatever they hold (a target's class names are its cells)."""
    if not path.is_file():
        raise UserError(f"{key + ': ' if key else ''}{path}: file not found")
    stat = path.stat()
    # Validation reads the target column and the dataset builder the whole table: one read serves both.
    read = _read_file(path.resolve(), stat.st_mtime_ns, stat.st_size, frozenset(text_columns))
    return Table(path, read.columns, read.cells, read.places, np.arange(len(read.places.kept)))


@functools.lru_cache(maxsize=4)
def _read_file(path: Path, mtime_ns: int, size: int, text_columns: frozenset[str]) -> TableFile:
    require_memory(reading_bytes(path), f"data: reading {path} ({format_bytes(size)}) at once would")
    read = read_parquet(path, text_columns) if path.suffix.lower() in PARQUET_SUFFIXES else read_csv(path, text_columns)
    if len(read.places.kept) == 0:
        raise UserError(f"{path}: no data rows below the header")
    return read


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


def stray_text_warning(table: Table, name: str) -> tuple[str, str] | None:
    """A column of numbers but for a few cells of text is read as text (one-hot categories): say so,
    naming the cells, since one typo otherwise silently turns a measurement into categories."""
    cells = table.cells_of(name)
    if cells.number is None:  # every present cell is a number
        return None
    present = np.flatnonzero(~cells.missing[table.rows])
    stray = present[~cells.number[table.rows[present]]]
    if not len(stray) or len(stray) == len(present) or len(stray) > max(1, STRAY_TEXT_SHARE * len(present)):
        return None
    unit = table.places.unit
    shown = ", ".join(
        f"{cells.text_at(table.rows[row])!r} at {unit} {table.places.numbers()[table.rows[row]]}" for row in stray[:3]
    )
    more = f" and {len(stray) - 3} more" if len(stray) > 3 else ""
    return (
        f"{table.path}: column {name} is numeric except {shown}{more}: read as text (categories)",
        "correct the cell, or empty it and set data.on_missing: drop",
    )


def column_numbers(table: Table, name: str, trained: bool = False, positions: np.ndarray | None = None) -> np.ndarray:
    """Every cell of a numeric column (of the rows at `positions`, default all) as a float64; a cell
    that is not a finite number is named by file, line and column (inf or 1e400 would make the loss
    or the predictions NaN)."""
    cells = table.cells_of(name)
    positions = np.arange(len(table)) if positions is None else positions
    rows = table.rows[positions]
    numbers = cells.numbers_at(rows)
    if not numbers.all():
        row = int(np.argmin(numbers))
        why = "the model was trained on numbers there" if trained else "the column's other cells are numbers"
        raise UserError(
            f"{table.at(positions[row])}: column {name!r}: {cells.text_at(rows[row])!r} is not a number, and {why}"
        )
    values = cells.values[rows]
    finite = np.abs(values) <= FLOAT32_MAX  # False for inf and NaN too
    if not finite.all():
        row = int(np.argmin(finite))
        raise UserError(
            f"{table.at(positions[row])}: column {name!r}: {cells.text_at(rows[row])!r} is not a finite number "
            f"(within ±{FLOAT32_MAX:.1e}); fix the cell, or empty it and set data.on_missing: drop"
        )
    return values


def handle_missing(table: Table, used: list[str], on_missing: str) -> Table:
    """Drop rows with a missing value in a used column, or name them in an error."""
    indices = [table.columns.index(name) for name in used]
    missing = np.stack([table.cells_of(table.columns[j]).missing[table.rows] for j in indices])
    bad = np.flatnonzero(missing.any(axis=0))
    if not len(bad):
        return table
    if on_missing == "error":
        unit = table.places.unit
        shown = [
            f"{unit} {table.places.numbers()[table.rows[i]]} "
            f"({', '.join(table.columns[j] for j, gone in zip(indices, missing[:, i]) if gone)})"
            for i in bad[:5]
        ]
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise UserError(
            f"{table.path}: {len(bad)} rows have missing values: {'; '.join(shown)}{more}. "
            "Fill them in, or set data.on_missing: drop"
        )
    return table.take(np.flatnonzero(~missing.any(axis=0)))


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
            cells = table.cells_of(name)
            if cells.numeric(table.rows):
                values = column_numbers(table, name)[train_rows]
                std = float(values.std())
                encoding.numeric[name] = (float(values.mean()), std if std > 0 else 1.0)
            else:
                texts = cells.texts()
                seen = np.unique(texts.codes[table.rows[train_rows]])
                encoding.categories[name] = sorted({texts.texts[code] for code in seen})
        return encoding

    @property
    def width(self) -> int:
        return sum(len(self.categories[name]) if name in self.categories else 1 for name in self.columns)

    def transform(self, table: Table, strict: bool = False) -> np.ndarray:
        """Encode every row; with `strict` (predict), a category not seen in training is an error."""
        return self.encode(table, np.arange(len(table)), strict)

    def encode(self, table: Table, positions: np.ndarray, strict: bool = False) -> np.ndarray:
        """The float32 inputs of the rows at `positions`, written column by column into one array."""
        require_memory(
            len(positions) * self.width * 4,
            f"data: {len(positions):,} rows × {self.width:,} inputs (a number column is one input, "
            "a text column one per category)",
        )
        encoded = np.zeros((len(positions), self.width), dtype=np.float32)
        start = 0
        for name in self.columns:
            if name not in table.columns:
                raise UserError(
                    f"{table.path}: no column {name!r}, which the model was trained on; "
                    f"its columns: {', '.join(table.columns)}"
                )
            if name in self.numeric:
                mean, std = self.numeric[name]
                encoded[:, start] = (column_numbers(table, name, trained=True, positions=positions) - mean) / std
                start += 1
                continue
            known = self.categories[name]
            slots = self._category_slots(table, name, positions, strict)
            hits = np.flatnonzero(slots >= 0)
            encoded[hits, start + slots[hits]] = 1.0
            start += len(known)
        return encoded

    def _category_slots(self, table: Table, name: str, positions: np.ndarray, strict: bool) -> np.ndarray:
        """Each row's category among those known (-1: not seen in training)."""
        known = self.categories[name]
        index = {category: i for i, category in enumerate(known)}
        cells = table.cells_of(name)
        texts = cells.texts()
        slot_of_text = np.array([index.get(text, -1) for text in texts.texts] or [-1], dtype=np.int64)
        slots = slot_of_text[texts.codes[table.rows[positions]]]
        if strict and (slots < 0).any():
            row = int(np.argmax(slots < 0))
            raise UserError(
                f"{table.at(positions[row])}: column {name!r}: {cells.text_at(table.rows[positions[row]])!r} was "
                f"never seen in training; known: {', '.join(known)}"
            )
        return slots

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "numeric": {k: list(v) for k, v in self.numeric.items()},
            "categories": self.categories,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureEncoding:
        return cls(data["columns"], {k: tuple(v) for k, v in data["numeric"].items()}, data["categories"])


@dataclass(frozen=True)
class EncodedRows:
    """A table's model inputs, encoded when indexed: `rows[train]`, `rows[val]`, `rows[test]` each
    encode their rows only, so the whole table is never held encoded besides its splits."""

    encoding: FeatureEncoding
    table: Table

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.table), self.encoding.width)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, positions: np.ndarray) -> np.ndarray:
        return self.encoding.encode(self.table, np.asarray(positions))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        encoded = self.encoding.transform(self.table)
        return encoded if dtype is None else encoded.astype(dtype)


def infer_task(table: Table, target: str, task: str) -> str:
    """classification or regression: as asked, or from the target's values (its present cells)."""
    if task != "auto":
        return task
    cells = table.cells_of(target)
    if not cells.numeric(table.rows):
        return "classification"
    present = table.rows[~cells.missing[table.rows]]
    values = cells.values[present]
    integers = bool(np.all(values == np.round(values)))
    return "classification" if integers and len(np.unique(values)) <= MAX_CLASSES_FOR_INTEGER_TARGETS else "regression"


def class_labels(cells: list[str]) -> list[str]:
    """Classes in a stable order: numerically for numbers (equal numbers written differently, such
    as 7 and 007, by their text; a NaN such as -nan last), alphabetically otherwise."""
    distinct = set(cells)
    if all(_is_number(cell) for cell in distinct):
        return sorted(distinct, key=_number_order)
    return sorted(distinct)


def _number_order(cell: str) -> tuple[bool, float, str]:
    value = float(cell)
    return (value != value, 0.0 if value != value else value, cell)


def class_indices(table: Table, target: str) -> tuple[list[str], np.ndarray]:
    """The classes of a target column (`class_labels`) and each row's class index."""
    texts = table.cells_of(target).texts()
    codes = texts.codes[table.rows]
    seen = np.unique(codes)
    labels = class_labels([texts.texts[code] for code in seen])
    position = {label: i for i, label in enumerate(labels)}
    index_of_text = np.full(len(texts.texts), -1, dtype=np.int64)
    index_of_text[seen] = [position[texts.texts[code]] for code in seen]
    return labels, index_of_text[codes]


def reading_bytes(path: Path) -> int:
    """About the memory reading a whole table file takes at its peak: CSV_READING_BYTES_PER_FILE_BYTE
    times a CSV's size, twice a Parquet file's uncompressed size (0 for a file that is not Parquet:
    the reader names it)."""
    if path.suffix.lower() not in PARQUET_SUFFIXES:
        return int(path.stat().st_size * CSV_READING_BYTES_PER_FILE_BYTE)
    pa = arrow()
    try:
        metadata = pa.parquet.ParquetFile(path).metadata
    except (pa.ArrowException, OSError):
        return 0
    return 2 * sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))


def fits_in_memory(path: Path, available: int | None = None) -> bool:
    """Whether a whole table file can be read at once (yes where the memory available is unknown);
    a table that cannot is read in chunks."""
    available = available_memory() if available is None else available
    return available is None or not path.is_file() or reading_bytes(path) <= available


def table_task(params: dict[str, Any]) -> str:
    """The task of a table dataset, known before training from its `task` or its target column."""
    if params.get("task", "auto") != "auto":
        return params["task"]
    if not fits_in_memory(Path(params["path"])):
        from trainctl.data.table_stream import streamed_table_task

        return streamed_table_task(params["path"], params["target"])
    table = read_table(Path(params["path"]), text_columns=(params["target"],))
    require_columns(table, {"data.target": params["target"]})
    return infer_task(table, params["target"], "auto")


def table_data(
    path: str, target: str, features: list[str] | None, task: str, on_missing: str, group_column: str | None = None
) -> RawData:
    """The `csv` dataset: the target's classes or values, and the feature columns' encoding fitted
    on the training rows once the split is drawn. A table too large to read at once is read in
    chunks (`trainctl.data.table_stream`). `group_column` gives each row's group for cv folds."""
    if not fits_in_memory(Path(path)):
        if group_column is not None:
            raise UserError(
                f"data.group_column: {path} is too large to read at once and is read in chunks, which "
                "keep no groups; leave data.group_column out, or use a smaller table"
            )
        from trainctl.data.table_stream import streamed_table_data

        return streamed_table_data(path, target, features, task, on_missing)
    table = read_table(Path(path), text_columns=(target,))
    set_apart = {target, group_column}
    columns = features if features is not None else [name for name in table.columns if name not in set_apart]
    require_columns(table, {"data.target": target})
    if group_column is not None:
        require_columns(table, {"data.group_column": group_column})
        if group_column == target:
            raise UserError(f"data.group_column: the target column {target!r} cannot also be the group column")
    for name in columns:
        require_columns(table, {"data.features": name})
    if target in columns:
        raise UserError(f"data.features: the target column {target!r} cannot also be a feature")
    if not columns:
        raise UserError(f"data.features: {path} has no columns besides the target {target!r}")
    table = handle_missing(table, [target, *columns, *([group_column] if group_column else [])], on_missing)
    kind = infer_task(table, target, task)
    if kind == "classification":
        labels, y = class_indices(table, target)
        described = classification_task(tuple(labels), f"data.target: column {target!r} of {path}")
    else:
        if not table.cells_of(target).numeric(table.rows):
            raise UserError(f"data.task: regression needs numbers in column {target!r} of {path}")
        y = column_numbers(table, target).astype("float32").reshape(-1, 1)
        described = Task("regression", num_targets=1)
    checked = [*columns, *([target] if task == "auto" else [])]  # an "auto" target is typed by its cells too
    warnings = [warning for name in checked if (warning := stray_text_warning(table, name))]

    def fit_inputs(train_rows: Any) -> tuple[Any, dict[str, Any]]:
        encoding = FeatureEncoding.fit(table, columns, train_rows)
        return EncodedRows(encoding, table), {"table": encoding.to_dict()}

    groups = table.cells_of(group_column).texts().codes[table.rows] if group_column is not None else None
    placeholder = np.zeros((len(y), 0), dtype="float32")  # the width is known once fitted on training rows
    return RawData(placeholder, y, described, (0,), fit_inputs=fit_inputs, warnings=warnings, groups=groups)
