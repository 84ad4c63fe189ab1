"""Tables larger than memory: read in chunks, never whole.

A CSV is read block by block (pyarrow.csv.open_csv, every column as text, typed chunk by chunk) and
a Parquet file batch by batch (row group by row group). Each chunk becomes the same cells as a whole
table (`trainctl.data.table_files`), and the same rules and messages apply to it. Three kinds of pass:

1. the scan: the rows with missing values, the target's classes or values, which feature columns
   hold numbers only, and stray text in them;
2. the fit, over the training rows: each numeric column's mean and variance, combined chunk by
   chunk, and each text column's categories;
3. the encoding of one split, written chunk by chunk into a temporary file mapped into memory: the
   split's tensor is that file, which the operating system pages in and out as training reads it
   (the fast path of preloaded tensors, batches indexed by position, holds).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.data.raw import RawData, classification_task
from trainctl.data.table_files import (
    PARQUET_SUFFIXES,
    TSV_SUFFIXES,
    RowPlaces,
    TableFile,
    arrow,
    explain_failure,
    header_of,
    one_line,
    parquet_cells,
    parquet_names,
    place,
    release_parsing_memory,
    string_cells,
    without_blank_rows,
)
from trainctl.data.tables import (
    FLOAT32_MAX,
    MAX_CLASSES_FOR_INTEGER_TARGETS,
    STRAY_TEXT_SHARE,
    FeatureEncoding,
    Table,
    class_labels,
    column_numbers,
    require_columns,
)
from trainctl.data.task import Task
from trainctl.errors import UserError

CSV_BLOCK_BYTES = 16 << 20  # CSV text parsed at a time: its cells take a few times that
PARQUET_BATCH_ROWS = 1 << 16
MAX_TARGET_TEXTS = 100_000  # distinct target cells kept track of: far more classes than any classifier has


@dataclass
class TableChunks:
    """A table file read chunk by chunk: each chunk a Table of its rows (blank rows left out),
    `first` its first row's index among all the rows read."""

    path: Path
    text_columns: frozenset[str]
    only: str | None = None  # read this column only
    chunk_bytes: int = CSV_BLOCK_BYTES
    chunk_rows: int = PARQUET_BATCH_ROWS
    columns: list[str] = field(default_factory=list)  # the file's
    rows_read: int = -1  # known after a first pass

    def __post_init__(self) -> None:
        if self.parquet:
            try:
                self.columns = parquet_names(self.path, arrow().parquet.ParquetFile(self.path).schema_arrow.names)
            except (arrow().ArrowException, OSError) as error:
                raise UserError(f"{self.path}: cannot read as Parquet: {one_line(error)}") from None
        else:
            self.columns = [name.strip() for name in header_of(self.path, self.delimiter)]

    @property
    def parquet(self) -> bool:
        return self.path.suffix.lower() in PARQUET_SUFFIXES

    @property
    def delimiter(self) -> str:
        return "\t" if self.path.suffix.lower() in TSV_SUFFIXES else ","

    def __iter__(self) -> Iterator[tuple[int, Table]]:
        first = 0
        names = self.columns if self.only is None else [self.only]
        for batch in self._batches():
            if self.parquet:
                cells = [parquet_cells(batch.column(i), name, self.text_columns) for i, name in enumerate(names)]
            else:
                cells = [string_cells(arrow().chunked_array([batch.column(i)])) for i in range(len(names))]
            places = RowPlaces(self.path, self.unit, self.rows_read, first + np.arange(batch.num_rows), self.delimiter)
            read = without_blank_rows(TableFile(names, cells, places))
            yield first, Table(self.path, read.columns, read.cells, read.places, np.arange(len(read.places.kept)))
            first += batch.num_rows
        self.rows_read = first
        release_parsing_memory()

    def _batches(self) -> Iterator[Any]:
        pa = arrow()
        if self.parquet:
            file = pa.parquet.ParquetFile(self.path)
            columns = None if self.only is None else [file.schema_arrow.names[self.columns.index(self.only)]]
            try:
                yield from file.iter_batches(batch_size=self.chunk_rows, columns=columns)
            except (pa.ArrowException, OSError) as error:
                raise UserError(f"{self.path}: cannot read as Parquet: {one_line(error)}") from None
            return
        header = header_of(self.path, self.delimiter)
        include = None if self.only is None else [header[self.columns.index(self.only)]]
        try:
            reader = pa.csv.open_csv(
                self.path,
                read_options=pa.csv.ReadOptions(block_size=self.chunk_bytes),
                parse_options=pa.csv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True),
                convert_options=pa.csv.ConvertOptions(
                    column_types={name: pa.string() for name in header},
                    include_columns=include,
                    strings_can_be_null=False,
                ),
            )
            yield from reader
        except pa.ArrowInvalid as error:
            raise explain_failure(self.path, self.delimiter, error) from None

    @property
    def unit(self) -> str:
        return "row" if self.parquet else "line"

    def number(self, row: int) -> int:
        """The line (Parquet: the row number) of a row, by its index among all rows read."""
        return int(RowPlaces(self.path, self.unit, self.rows_read, np.array([row]), self.delimiter).numbers()[0])

    def place(self, row: int) -> str:
        """`path:line` (`path: row N`) of a row, by its index among all rows read."""
        return place(self.path, self.unit, self.number(row))

    def cell(self, row: int, column: str) -> str:
        """The text of one cell, by its row's index among all rows read (for a message: slow)."""
        index = self.columns.index(column)
        for _, chunk in self:
            local = np.flatnonzero(chunk.places.kept == row)
            if len(local):
                return chunk.cells[index].text_at(int(local[0]))
        raise AssertionError(f"row {row} not in {self.path}")


@dataclass
class ColumnScan:
    """What the scan learns of one column over the kept rows."""

    present: int = 0
    stray: int = 0  # present cells that are not numbers
    shown: list[tuple[int, str]] = field(default_factory=list)  # the first stray cells: (row, text)

    def add(self, chunk: Table, name: str) -> None:
        cells = chunk.cells_of(name)
        rows = chunk.rows
        present = ~cells.missing[rows]
        self.present += int(present.sum())
        if cells.number is None:
            return
        stray = rows[present & ~cells.number[rows]]
        self.stray += len(stray)
        for row in stray[: max(0, 3 - len(self.shown))]:
            self.shown.append((int(chunk.places.kept[row]), cells.text_at(int(row))))

    @property
    def numeric(self) -> bool:
        return self.present > 0 and self.stray == 0

    def warning(self, chunks: TableChunks, name: str) -> tuple[str, str] | None:
        if not self.stray or self.stray == self.present or self.stray > max(1, STRAY_TEXT_SHARE * self.present):
            return None
        shown = ", ".join(f"{text!r} at {chunks.unit} {chunks.number(row)}" for row, text in self.shown)
        more = f" and {self.stray - 3} more" if self.stray > 3 else ""
        return (
            f"{chunks.path}: column {name} is numeric except {shown}{more}: read as text (categories)",
            "correct the cell, or empty it and set data.on_missing: drop",
        )


@dataclass
class TargetScan:
    """The target's cells over the kept rows: values, and texts while they are few."""

    values: list[np.ndarray] = field(default_factory=list)  # float64 per kept row, NaN where not a number
    codes: list[np.ndarray] | None = field(default_factory=list)  # per kept row, into texts
    texts: dict[str, int] = field(default_factory=dict)

    def add(self, chunk: Table, name: str) -> None:
        cells = chunk.cells_of(name)
        rows = chunk.rows
        self.values.append(np.where(cells.numbers_at(rows), cells.values[rows], np.nan))
        if self.codes is None:
            return
        texts = cells.texts()
        known = np.array([self.texts.setdefault(text, len(self.texts)) for text in texts.texts] or [0], np.int64)
        self.codes.append(known[texts.codes[rows]])
        if len(self.texts) > MAX_TARGET_TEXTS:
            self.codes = None  # a regression target: its texts are not needed


def streamed_table_task(path: str, target: str, chunk_bytes: int = CSV_BLOCK_BYTES) -> str:
    """The task of a target column too large to read at once: classification for text, or for
    integers of at most MAX_CLASSES_FOR_INTEGER_TARGETS values; regression for other numbers."""
    chunks = TableChunks(Path(path), frozenset({target}), only=None, chunk_bytes=chunk_bytes)
    _check_columns(chunks, target, None)
    chunks.only = target
    scan, integers, distinct = ColumnScan(), True, set[float]()
    for _, chunk in chunks:
        scan.add(chunk, target)
        if scan.stray:
            return "classification"
        cells = chunk.cells_of(target)
        values = cells.values[chunk.rows][~cells.missing[chunk.rows]]
        integers = integers and bool(np.all(values == np.round(values)))
        if integers and len(distinct) <= MAX_CLASSES_FOR_INTEGER_TARGETS:
            distinct.update(np.unique(values).tolist())
    if not scan.numeric:
        return "classification"
    return "classification" if integers and len(distinct) <= MAX_CLASSES_FOR_INTEGER_TARGETS else "regression"


def streamed_table_data(
    path: str,
    target: str,
    features: list[str] | None,
    task: str,
    on_missing: str,
    chunk_bytes: int = CSV_BLOCK_BYTES,
    chunk_rows: int = PARQUET_BATCH_ROWS,
) -> RawData:
    """The `csv` dataset of a table too large to read at once (see `trainctl.data.tables.table_data`)."""
    chunks = TableChunks(Path(path), frozenset({target}), chunk_bytes=chunk_bytes, chunk_rows=chunk_rows)
    columns = features if features is not None else [name for name in chunks.columns if name != target]
    _check_columns(chunks, target, columns)
    used = [target, *columns]
    scans = {name: ColumnScan() for name in used}
    targets = TargetScan()
    kept: list[np.ndarray] = []  # per chunk, the kept rows' indices among all rows read
    rows, bad_count, bad_shown = 0, 0, list[tuple[int, list[str]]]()
    for _, chunk in chunks:
        rows += len(chunk)
        missing = np.stack([chunk.cells_of(name).missing[chunk.rows] for name in used])
        bad = np.flatnonzero(missing.any(axis=0))
        bad_count += len(bad)
        for row in bad[: max(0, 5 - len(bad_shown))]:
            bad_shown.append((int(chunk.places.kept[row]), [name for name, gone in zip(used, missing[:, row]) if gone]))
        chunk = chunk.take(np.flatnonzero(~missing.any(axis=0)))
        kept.append(chunk.places.kept[chunk.rows])
        targets.add(chunk, target)
        for name in used:
            scans[name].add(chunk, name)
    if rows == 0:
        raise UserError(f"{chunks.path}: no data rows below the header")
    if bad_count and on_missing == "error":
        shown = [f"{chunks.unit} {chunks.number(row)} ({', '.join(names)})" for row, names in bad_shown]
        more = f" and {bad_count - 5} more" if bad_count > 5 else ""
        raise UserError(
            f"{path}: {bad_count} rows have missing values: {'; '.join(shown)}{more}. "
            "Fill them in, or set data.on_missing: drop"
        )
    values = np.concatenate(targets.values)
    kind = _task_of(values, scans[target], task)
    if kind == "classification":
        if targets.codes is None:
            raise UserError(f"data.target: column {target!r} of {path} holds over {MAX_TARGET_TEXTS:,} classes")
        texts = list(targets.texts)
        codes = np.concatenate(targets.codes)
        seen = np.unique(codes)
        labels = class_labels([texts[code] for code in seen])
        position = {label: i for i, label in enumerate(labels)}
        index_of_text = np.full(len(texts), -1, dtype=np.int64)
        index_of_text[seen] = [position[texts[code]] for code in seen]
        y = index_of_text[codes]
        described = classification_task(tuple(labels), f"data.target: column {target!r} of {path}")
    else:
        if not scans[target].numeric:
            raise UserError(f"data.task: regression needs numbers in column {target!r} of {path}")
        _require_finite(chunks, np.concatenate(kept), target, values)
        y = values.astype("float32").reshape(-1, 1)
        described = Task("regression", num_targets=1)
    checked = [*columns, *([target] if task == "auto" else [])]
    warnings = [warning for name in checked if (warning := scans[name].warning(chunks, name))]
    numeric = [name for name in columns if scans[name].numeric]

    def fit_inputs(train_rows: Any) -> tuple[Any, dict[str, Any]]:
        encoding = _fit(chunks, kept, columns, numeric, np.asarray(train_rows))
        return StreamedRows(encoding, chunks, kept), {"table": encoding.to_dict()}

    return RawData(np.zeros((len(y), 0), dtype="float32"), y, described, (0,), fit_inputs=fit_inputs, warnings=warnings)


def _check_columns(chunks: TableChunks, target: str, columns: list[str] | None) -> None:
    """As for a table in memory: the target and the features are columns of the file, apart."""
    header = Table(chunks.path, chunks.columns, [], RowPlaces(chunks.path, chunks.unit, 0, np.arange(0)), np.arange(0))
    require_columns(header, {"data.target": target})
    if columns is None:
        return
    for name in columns:
        require_columns(header, {"data.features": name})
    if target in columns:
        raise UserError(f"data.features: the target column {target!r} cannot also be a feature")
    if not columns:
        raise UserError(f"data.features: {chunks.path} has no columns besides the target {target!r}")


def _task_of(values: np.ndarray, scan: ColumnScan, task: str) -> str:
    if task != "auto":
        return task
    if not scan.numeric:
        return "classification"
    integers = bool(np.all(values == np.round(values)))
    return "classification" if integers and len(np.unique(values)) <= MAX_CLASSES_FOR_INTEGER_TARGETS else "regression"


def _require_finite(chunks: TableChunks, kept: np.ndarray, name: str, values: np.ndarray) -> None:
    """A regression target's first cell that is not a finite number, named as in memory."""
    finite = np.abs(values) <= FLOAT32_MAX  # False for inf and NaN too
    if finite.all():
        return
    row = int(kept[np.argmin(finite)])
    raise UserError(
        f"{chunks.place(row)}: column {name!r}: {chunks.cell(row, name)!r} is not a finite number "
        f"(within ±{FLOAT32_MAX:.1e}); fix the cell, or empty it and set data.on_missing: drop"
    )


def _kept_part(chunk: Table, kept: np.ndarray) -> Table:
    """The chunk's kept rows (given by their indices among all rows read)."""
    return chunk.take(np.searchsorted(chunk.places.kept, kept))


def _fit(
    chunks: TableChunks, kept: list[np.ndarray], columns: list[str], numeric: list[str], train: np.ndarray
) -> FeatureEncoding:
    """The encoding fitted in one pass over the training rows: means and variances combined chunk
    by chunk (Chan et al.), categories gathered; every kept cell of a numeric column checked finite."""
    training = np.zeros(sum(len(rows) for rows in kept), dtype=bool)
    training[train] = True
    moments = {name: (0, 0.0, 0.0) for name in numeric}  # count, mean, sum of squared deviations
    categories: dict[str, set[str]] = {name: set() for name in columns if name not in numeric}
    start = 0
    for (_, chunk), rows in zip(chunks, kept):
        chunk = _kept_part(chunk, rows)
        in_training = np.flatnonzero(training[start : start + len(rows)])
        start += len(rows)
        for name in numeric:
            values = column_numbers(chunk, name)[in_training]
            moments[name] = _combined(moments[name], values)
        for name in categories:
            texts = chunk.cells_of(name).texts()
            categories[name].update(texts.texts[code] for code in np.unique(texts.codes[chunk.rows[in_training]]))
    encoding = FeatureEncoding(columns)
    for name in numeric:
        count, mean, squares = moments[name]
        std = math.sqrt(squares / count) if count else 0.0
        encoding.numeric[name] = (mean, std if std > 0 else 1.0)
    encoding.categories = {name: sorted(found) for name, found in categories.items()}
    return encoding


def _combined(moments: tuple[int, float, float], values: np.ndarray) -> tuple[int, float, float]:
    count, mean, squares = moments
    if not len(values):
        return moments
    part_mean = float(values.mean())
    part_squares = float(((values - part_mean) ** 2).sum())
    total = count + len(values)
    delta = part_mean - mean
    return total, mean + delta * len(values) / total, squares + part_squares + delta**2 * count * len(values) / total


@dataclass(frozen=True)
class StreamedRows:
    """The kept rows' model inputs, encoded when indexed into a temporary file mapped into memory."""

    encoding: FeatureEncoding
    chunks: TableChunks
    kept: list[np.ndarray]

    @property
    def shape(self) -> tuple[int, int]:
        return (sum(len(rows) for rows in self.kept), self.encoding.width)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, positions: Any) -> np.ndarray:
        """The rows at `positions` (among the kept rows), encoded chunk by chunk into the mapped file."""
        positions = np.asarray(positions)
        order = np.argsort(positions, kind="stable")
        ordered = positions[order]
        encoded = np.memmap(
            tempfile.TemporaryFile(), dtype=np.float32, mode="w+", shape=(len(positions), self.encoding.width)
        )
        start = 0
        for (_, chunk), rows in zip(self.chunks, self.kept):
            low, high = np.searchsorted(ordered, [start, start + len(rows)])
            if high > low:
                chunk = _kept_part(chunk, rows)
                encoded[order[low:high]] = self.encoding.encode(chunk, ordered[low:high] - start)
            start += len(rows)
        return encoded
