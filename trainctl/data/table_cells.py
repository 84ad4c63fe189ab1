"""One column of a table, parsed once into arrays: which cells are missing, which are numbers and
their values, and the text of the cells where text matters (categories, class names).

A cell is missing when, stripped of spaces, it is empty or one of MISSING (any case); it is a number
when Python's `float` reads it (so `1e3`, ` 2.5 ` and `inf` are numbers, `0x10` and `1,5` are not).
These are the rules of trainctl's first CSV reader, which went cell by cell; here they hold for whole
columns at once, with a Python object per distinct text at most, never per cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})


def missing_spellings() -> list[str]:
    """Every spelling of MISSING in any mix of upper and lower case ("Na", "NULL", ...): pyarrow
    compares a cell to its null values exactly."""
    spellings = {""}
    for word in MISSING:
        variants = [""]
        for char in word:
            variants = [start + option for start in variants for option in {char.lower(), char.upper()}]
        spellings.update(variants)
    return sorted(spellings)


def parse_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class CellTexts:
    """The stripped text of each cell, as an index per row into the distinct texts."""

    codes: np.ndarray  # int64 per row
    texts: list[str]  # distinct, in no particular order


@dataclass
class Cells:
    """A column's cells over every row read. `missing` and `number` are per row; `values` holds each
    number cell's value (NaN elsewhere). Text is made on demand by `text_source` (the distinct
    cells of a text column are known; a column of numbers has its text read back only for a message
    or a class name)."""

    missing: np.ndarray  # bool per row
    values: np.ndarray  # float64 per row
    number: np.ndarray | None  # bool per row: the cell is a number; None: every present cell is
    text_source: Callable[[], CellTexts]
    unsupported: str | None = None  # a Parquet column of a type trainctl does not read: named when used
    _texts: CellTexts | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.values)

    def numbers_at(self, rows: np.ndarray) -> np.ndarray:
        """Which of `rows` hold a number."""
        if self.number is None:
            return ~self.missing[rows]
        return self.number[rows]

    def numeric(self, rows: np.ndarray) -> bool:
        """Every present cell among `rows` is a number, and there is one."""
        present = ~self.missing[rows]
        if not present.any():
            return False
        return self.number is None or bool(np.all(self.number[rows][present]))

    def texts(self) -> CellTexts:
        if self._texts is None:
            self._texts = self.text_source()
        return self._texts

    def text_at(self, row: int) -> str:
        texts = self.texts()
        return texts.texts[texts.codes[row]]


def number_cells(values: np.ndarray, missing: np.ndarray, text_source: Callable[[], CellTexts]) -> Cells:
    """A column whose present cells are all numbers (NaN in `values` where missing)."""
    return Cells(missing, values, None, text_source)


def text_cells(codes: np.ndarray, distinct: list[str]) -> Cells:
    """A column given as each row's index into its distinct raw cells: stripped, classified once
    per distinct text (two raw cells that differ only in spaces become one text)."""
    texts: dict[str, int] = {}
    remap = np.empty(len(distinct), dtype=np.int64)
    for i, raw in enumerate(distinct):
        remap[i] = texts.setdefault(raw.strip(), len(texts))
    stripped = list(texts)
    missing_text = np.array([text.lower() in MISSING for text in stripped], dtype=bool)
    parsed = [None if gone else parse_number(text) for text, gone in zip(stripped, missing_text)]
    number_text = np.array([value is not None for value in parsed], dtype=bool)
    value_text = np.array([np.nan if value is None else value for value in parsed], dtype=np.float64)
    codes = remap[codes] if len(distinct) else codes.astype(np.int64)
    cell_texts = CellTexts(codes, stripped)
    return Cells(
        missing_text[codes] if len(stripped) else np.zeros(len(codes), dtype=bool),
        value_text[codes] if len(stripped) else np.zeros(len(codes)),
        number_text[codes] if len(stripped) else np.zeros(len(codes), dtype=bool),
        lambda: cell_texts,
        _texts=cell_texts,
    )


def unsupported_cells(rows: int, type_name: str) -> Cells:
    nothing = np.zeros(rows, dtype=bool)

    def no_text() -> CellTexts:
        raise AssertionError("an unsupported column is refused before its text is read")

    return Cells(nothing, np.zeros(rows), nothing, no_text, unsupported=type_name)
