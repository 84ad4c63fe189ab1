"""Table files read with pyarrow into typed columns: CSV and TSV (multithreaded, one pass, no Python
object per cell) and Parquet.

pyarrow types each CSV column by its cells: numbers become float64 arrays, everything else text.
Its typing is a little wider than trainctl's rules (`trainctl.data.table_cells`): it reads `0x10` as
a number and `2024-01-31` as a date, which trainctl reads as text; those columns are read again as
text. Columns whose text matters whatever they hold (a target's class names) are read as text.

pyarrow knows the rows of a file but not their lines, and its errors name no line. Line numbers are
found only when a message or a prediction needs them: counted (one row a line), or, for a file with
blank lines or line breaks inside quotes, read back with Python's `csv` module, which also explains
a file pyarrow refuses (a row with too many cells, bytes that are not UTF-8) as trainctl always has.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.data.table_cells import (
    Cells,
    CellTexts,
    missing_spellings,
    number_cells,
    text_cells,
    unsupported_cells,
)
from trainctl.errors import UserError

PARQUET_SUFFIXES = (".parquet", ".pq")
TSV_SUFFIXES = (".tsv", ".tab")
BLOCK_BYTES = 16 << 20  # how much of a file is counted or scanned at a time


def arrow() -> Any:
    """pyarrow with its csv, compute and parquet modules, imported where tables are read (listings
    and --help do not pay for it)."""
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.csv
        import pyarrow.parquet
    except ImportError:
        raise UserError(
            "reading tables needs pyarrow, a dependency of trainctl missing here: pip install 'pyarrow>=14'"
        ) from None
    return pyarrow


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


# pyarrow's own conversions to numpy and from Python values import pandas where it is installed
# (half a second and 30 MiB, for nothing here): arrays are read from and made of their buffers.


def numbers_of(column: Any, dtype: Any = np.float64) -> np.ndarray:
    """A chunked array of fixed-width values (float64, int32, ...) as one numpy array; a null reads
    as NaN (as 0 in integers)."""
    dtype = np.dtype(dtype)
    parts = []
    for chunk in column.chunks:
        data = chunk.buffers()[1]
        if data is None:  # the null type: no values at all
            parts.append(np.full(len(chunk), np.nan if dtype.kind == "f" else 0, dtype))
            continue
        values = np.frombuffer(data, dtype, count=len(chunk), offset=chunk.offset * dtype.itemsize)
        parts.append(
            np.where(_valid(chunk), values, np.nan if dtype.kind == "f" else 0) if chunk.null_count else values
        )
    return np.concatenate(parts) if parts else np.empty(0, dtype)


def nulls_of(column: Any) -> np.ndarray:
    """Which cells of a chunked array are null."""
    parts = [np.zeros(len(chunk), bool) if not chunk.null_count else ~_valid(chunk) for chunk in column.chunks]
    return np.concatenate(parts) if parts else np.empty(0, bool)


def _valid(chunk: Any) -> np.ndarray:
    validity = chunk.buffers()[0]
    if validity is None:  # no bitmap: all null (the null type), or none
        return np.full(len(chunk), chunk.null_count == 0)
    bits = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")
    return bits[chunk.offset : chunk.offset + len(chunk)].astype(bool)


def text_array(*texts: str) -> Any:
    """A pyarrow string array of `texts`, made of its buffers."""
    pa = arrow()
    encoded = [text.encode() for text in texts]
    offsets = np.cumsum([0, *map(len, encoded)], dtype=np.int32)
    return pa.StringArray.from_buffers(len(texts), pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(encoded)))


@dataclass(frozen=True)
class TableFile:
    """What was read of a file: its column names and cells, and where each row stands in it."""

    columns: list[str]
    cells: list[Cells]
    places: RowPlaces


# -- where rows are ---------------------------------------------------------------------------------


@dataclass
class RowPlaces:
    """Each row's place in its file, for messages: a CSV line (found when first asked for) or a
    Parquet row number."""

    path: Path
    unit: str  # "line" or "row"
    read: int  # rows as pyarrow read them (blank rows of a CSV included)
    kept: np.ndarray  # of those, the rows of the table
    delimiter: str = ","
    _numbers: np.ndarray | None = None  # per row of the table

    def numbers(self) -> np.ndarray:
        if self._numbers is None:
            if self.unit == "row":
                self._numbers = self.kept + 1
            else:
                self._numbers = csv_lines(self.path, self.delimiter, self.read, self.kept)
        return self._numbers


def place(path: Path, unit: str, number: int) -> str:
    """Where a row is, for a message: `path:line` in a CSV, `path: row N` in a Parquet file."""
    return f"{path}:{number}" if unit == "line" else f"{path}: row {number}"


def physical_lines(path: Path) -> int:
    """Lines in a file as Python's text reading counts them: ended by \\n, \\r\\n or \\r alone, a
    last line without an ending included."""
    lines, last, previous = 0, b"", b""
    with path.open("rb") as handle:
        while block := handle.read(BLOCK_BYTES):
            lines += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")
            lines -= previous == b"\r" and block[:1] == b"\n"  # a \r\n across two blocks
            previous = last = block[-1:]
    return lines + (last not in (b"", b"\n", b"\r"))


def csv_lines(path: Path, delimiter: str, read: int, rows: np.ndarray) -> np.ndarray:
    """The lines of `rows` (of the `read` rows pyarrow read), as the `csv` module numbers them (the
    line a row ends on)."""
    if physical_lines(path) == read + 1:  # a header line, then one row a line: nothing to look up
        return rows + 2
    lines = np.array([line for line, _, _ in python_rows(path, delimiter)], dtype=np.int64)
    if len(lines) != read:
        raise UserError(f"{path}: cannot read as CSV: its quoting leaves the rows ambiguous ({read} or {len(lines)})")
    return lines[rows]


# -- the csv module: the reference for lines and messages ---------------------------------------------


def python_records(path: Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Every record of a CSV with the line it ends on, read by Python's `csv` module (slowly: for
    messages only). utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the first cell."""
    limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)  # pyarrow reads cells of any length; so must the reference
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            for record in reader:
                yield reader.line_num, record
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{path}: cannot read as CSV: {error}") from None
    finally:
        csv.field_size_limit(limit)


def is_blank(record: list[str]) -> bool:
    return not any(cell.strip() for cell in record)


def python_rows(path: Path, delimiter: str) -> Iterator[tuple[int, list[str], bool]]:
    """The rows pyarrow reads, as (line, stripped cells, blank): empty lines and blank rows of the
    wrong length are left out, as pyarrow leaves them out."""
    records = python_records(path, delimiter)
    header = next(records, (0, []))[1]
    for line, record in records:
        blank = is_blank(record)
        if not record or (blank and len(record) != len(header)):
            continue
        yield line, [cell.strip() for cell in record], blank


def explain_failure(path: Path, delimiter: str, error: Exception) -> UserError:
    """Why pyarrow refused a CSV, in trainctl's words where the `csv` module finds the problem."""
    records = python_records(path, delimiter)
    header = next(records, (0, []))[1]
    for line, record in records:  # raises the message of bytes that are not UTF-8
        if not is_blank(record) and len(record) != len(header):
            return UserError(f"{path}:{line}: {len(record)} cells, but the header names {len(header)} columns")
    return UserError(f"{path}: cannot read as CSV: {one_line(error)}")


def header_of(path: Path, delimiter: str) -> list[str]:
    """The header's cells, as written. A file whose first line is empty has a header of no
    columns: its first row is named as one of too many cells, as the csv module reads it."""
    first = next(python_records(path, delimiter), (0, []))[1]
    if not first:
        problem = explain_failure(path, delimiter, ValueError("no header"))
        if "cells, but the header names" in str(problem):
            raise problem
        raise UserError(f"{path}: empty file (a CSV needs a header row)")
    return first


# -- CSV ----------------------------------------------------------------------------------------------


def read_csv(path: Path, text_columns: frozenset[str]) -> TableFile:
    """A CSV (TSV by its suffix) with a header row, every column typed by its cells, except
    `text_columns`, whose text is kept."""
    delimiter = "\t" if path.suffix.lower() in TSV_SUFFIXES else ","
    header = header_of(path, delimiter)
    names = [name.strip() for name in header]
    pa = arrow()
    forced = {raw for raw, name in zip(header, names) if name in text_columns}
    table = _arrow_csv(path, delimiter, forced, None)
    if table.num_columns != len(header):
        raise explain_failure(path, delimiter, ValueError(f"{table.num_columns} columns, not {len(header)}"))
    # pyarrow's wider typing (dates, times, 0x hexadecimal): those columns again, as text
    kinds = table.schema.types
    hexadecimal = any(pa.types.is_integer(kind) for kind in kinds) and _mentions_hexadecimal(path)
    again = [
        raw
        for raw, kind in zip(header, kinds)
        if not (pa.types.is_floating(kind) or pa.types.is_null(kind) or pa.types.is_string(kind))
        and (hexadecimal or not pa.types.is_integer(kind))
    ]
    if again:
        retyped = _arrow_csv(path, delimiter, set(again), again)
        for raw in set(again):
            for i in (i for i, name in enumerate(header) if name == raw):
                table = table.set_column(i, table.field(i).name, retyped.column(raw))
    rows = table.num_rows
    cells = []
    for i in range(len(header)):
        column, table = table.column(0), table.remove_column(0)  # each column's memory goes once converted
        cells.append(_csv_cells(path, delimiter, column, i))
        del column
    places = RowPlaces(path, "line", rows, np.arange(rows), delimiter)
    read = without_blank_rows(TableFile(names, cells, places))
    release_parsing_memory()
    return read


def release_parsing_memory() -> None:
    """Give back to the system what pyarrow's allocator keeps of a read it is done with: the parse
    takes about twice the parsed columns, and the encoding allocates elsewhere (numpy)."""
    arrow().default_memory_pool().release_unused()


def _arrow_csv(path: Path, delimiter: str, text: set[str], only: list[str] | None) -> Any:
    pa = arrow()
    options = {
        "parse_options": pa.csv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        "convert_options": pa.csv.ConvertOptions(
            column_types={name: pa.string() for name in text},
            include_columns=only,
            null_values=missing_spellings(),  # in numbers; text keeps its cells, classified after
            strings_can_be_null=False,
            true_values=[],  # "true" is text, as it always was
            false_values=[],
        ),
    }
    try:
        return pa.csv.read_csv(path, **options)
    except pa.ArrowInvalid as error:
        rewritten = _without_blank_records(path, delimiter, error)
    try:
        return pa.csv.read_csv(pa.BufferReader(rewritten), **options)
    except pa.ArrowInvalid as error:
        raise UserError(f"{path}: cannot read as CSV: {one_line(error)}") from None


def _without_blank_records(path: Path, delimiter: str, error: Exception) -> bytes:
    """A file pyarrow refused, written again without its rows of blank cells of the wrong length
    (a line of spaces): the csv module skips them, pyarrow counts their cells. Slow, and only for
    such files; any other problem is raised in trainctl's words. (pyarrow's invalid_row_handler,
    a Python callback, would skip them in place, but it can abort the process at exit beside torch.)"""
    records = python_records(path, delimiter)
    header = next(records, (0, []))[1]
    kept, skipped = io.StringIO(), False
    writer = csv.writer(kept, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    for line, record in records:
        blank = is_blank(record)
        if len(record) != len(header) and not blank:
            raise UserError(f"{path}:{line}: {len(record)} cells, but the header names {len(header)} columns")
        skipped |= bool(record) and blank and len(record) != len(header)
        if record and not (blank and len(record) != len(header)):
            writer.writerow(record)
    if not skipped:
        raise UserError(f"{path}: cannot read as CSV: {one_line(error)}")
    return kept.getvalue().encode()


def _mentions_hexadecimal(path: Path) -> bool:
    """Whether `0x` or `0X` appears anywhere: only then can pyarrow have read hexadecimal integers."""
    previous = b""
    with path.open("rb") as handle:
        while block := handle.read(BLOCK_BYTES):
            joined = previous + block
            if b"0x" in joined or b"0X" in joined:
                return True
            previous = block[-1:]
    return False


def _csv_cells(path: Path, delimiter: str, column: Any, index: int) -> Cells:
    pa = arrow()
    if pa.types.is_string(column.type):
        return string_cells(column)
    values = numbers_of(column.cast(pa.float64()))  # a null reads as NaN
    missing = nulls_of(column)

    def read_back() -> CellTexts:  # the text of a column of numbers: for a message or a class name
        rows = python_rows(path, delimiter)
        texts = [cells[index] for _, cells, _ in rows]
        return _distinct(texts)

    return number_cells(values, missing, read_back)


def string_cells(column: Any) -> Cells:
    """Text cells, classified once per distinct text; a column of numbers written as text (a target
    read as text) is parsed by pyarrow as a whole, its text kept for class names."""
    pa = arrow()
    try:
        values = numbers_of(pa.compute.cast(column, pa.float64()))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        values = None
    if values is not None and not np.isnan(values).any():  # NaN: a "nan" cell, which is missing
        return number_cells(values, np.zeros(len(values), dtype=bool), lambda: _arrow_texts(column))
    texts = _arrow_texts(column)
    return text_cells(texts.codes, texts.texts)


def _arrow_texts(column: Any) -> CellTexts:
    """Each cell's index into the distinct cells, as written (stripped later, per distinct cell)."""
    pa = arrow()
    distinct = pa.compute.unique(column)
    codes = numbers_of(pa.compute.index_in(column, value_set=distinct), np.int32).astype(np.int64)
    return CellTexts(codes, distinct.to_pylist())


def _distinct(texts: list[str]) -> CellTexts:
    index: dict[str, int] = {}
    codes = np.array([index.setdefault(text, len(index)) for text in texts], dtype=np.int64)
    return CellTexts(codes, list(index))


def without_blank_rows(table: TableFile) -> TableFile:
    """Rows whose every cell is blank are left out, as the csv module's reader always did. A CSV's
    column of numbers reads an empty cell and an NA cell alike (null): where such a row is missing
    throughout, the file's text decides."""
    candidates = np.ones(len(table.places.kept), dtype=bool)
    for cells in table.cells:
        candidates &= cells.missing
        if cells.number is not None and candidates.any():  # text: its blank cells are known
            texts = cells.texts()
            blank_text = np.array([text == "" for text in texts.texts], dtype=bool)
            candidates &= blank_text[texts.codes]
        if not candidates.any():
            return table
    places = table.places
    if places.unit == "line" and any(cells.number is None for cells in table.cells):
        candidates = np.array([blank for _, _, blank in python_rows(places.path, places.delimiter)], dtype=bool)
    kept = np.flatnonzero(~candidates)
    kept_cells = [_take(cells, kept) for cells in table.cells]
    return TableFile(
        table.columns, kept_cells, RowPlaces(places.path, places.unit, places.read, places.kept[kept], places.delimiter)
    )


def _take(cells: Cells, rows: np.ndarray) -> Cells:
    texts = cells._texts

    def text_source() -> CellTexts:
        all_texts = cells.texts()
        return CellTexts(all_texts.codes[rows], all_texts.texts)

    return Cells(
        cells.missing[rows],
        cells.values[rows],
        None if cells.number is None else cells.number[rows],
        text_source,
        cells.unsupported,
        None if texts is None else CellTexts(texts.codes[rows], texts.texts),
    )


# -- Parquet ------------------------------------------------------------------------------------------


def read_parquet(path: Path, text_columns: frozenset[str]) -> TableFile:
    """A Parquet file: numbers (integers, floats, decimals) and text (strings, booleans as
    "true"/"false") are read as the same cells of a CSV would be; a null or a float NaN is missing."""
    pa = arrow()
    try:
        table = pa.parquet.ParquetFile(path).read()
    except (pa.ArrowException, OSError) as error:
        raise UserError(f"{path}: cannot read as Parquet: {one_line(error)}") from None
    names = parquet_names(path, table.column_names)
    cells = [parquet_cells(table.column(i), name, text_columns) for i, name in enumerate(names)]
    places = RowPlaces(path, "row", table.num_rows, np.arange(table.num_rows))
    del table
    read = without_blank_rows(TableFile(names, cells, places))
    release_parsing_memory()
    return read


def parquet_names(path: Path, names: list[str]) -> list[str]:
    if not names:
        raise UserError(f"{path}: empty file (a Parquet file with no columns)")
    return [name.strip() for name in names]


def parquet_cells(column: Any, name: str, text_columns: frozenset[str]) -> Cells:
    """One Parquet column (or a batch of it) as cells."""
    pa = arrow()
    column = column if isinstance(column, pa.ChunkedArray) else pa.chunked_array([column])
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_boolean(kind) or (name in text_columns and not pa.types.is_string(kind)):
        column, kind = _parquet_text(column), pa.string()
    if pa.types.is_large_string(kind) or str(kind) == "string_view":
        column, kind = column.cast(pa.string()), pa.string()
    if pa.types.is_string(kind):
        return string_cells(pa.compute.fill_null(column, text_array("")[0]))
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = numbers_of(column.cast(pa.float64()))

        def formatted() -> CellTexts:
            return _distinct([repr(float(value)) for value in values])

        return number_cells(values, np.isnan(values), formatted)  # a null reads as NaN
    if pa.types.is_null(kind):
        return text_cells(np.zeros(len(column), dtype=np.int64), [""])
    return unsupported_cells(len(column), str(kind))


def _parquet_text(column: Any) -> Any:
    """Booleans and numbers as the text a CSV writer gives them (true, false, 3, 2.5)."""
    pa = arrow()
    if pa.types.is_boolean(column.type):
        true, false = text_array("true", "false")
        return pa.compute.if_else(column, true, false)
    return column.cast(pa.string())
