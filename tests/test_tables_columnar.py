"""Tables read into typed columns (pyarrow): the same inputs, targets, classes, encodings, splits and
messages as the cell-by-cell reader they replace, on the same tables; Parquet read as its CSV is.

`reference_*` below is that former reader, cell by cell in Python strings, kept here as the
reference the columnar path is held to."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trainctl.data.prepare import prepare_data
from trainctl.data.raw import RawData
from trainctl.data.tables import read_table, table_data, table_task
from trainctl.data.task import Task, plan_targets
from trainctl.errors import UserError

from helpers import write_config

# -- the former reader ---------------------------------------------------------------------------------

MISSING = {"", "na", "n/a", "nan", "null", "none"}


def reference_rows(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    delimiter = "\t" if path.suffix in (".tsv", ".tab") else ","
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            columns = [name.strip() for name in next(reader, [])]
            rows, lines = [], []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
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
    return columns, rows, lines


def is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def reference_dataset(path: Path, target: str, on_missing: str = "error") -> dict:
    """What the csv dataset made of a file: every row's encoded inputs, targets, classes, encoding."""
    columns, rows, lines = reference_rows(path)
    features = [name for name in columns if name != target]
    used = [columns.index(name) for name in [target, *features]]
    bad = [i for i, row in enumerate(rows) if any(row[j].lower() in MISSING for j in used)]
    if bad and on_missing == "error":
        shown = "; ".join(
            f"line {lines[i]} ({', '.join(columns[j] for j in used if rows[i][j].lower() in MISSING)})" for i in bad[:5]
        )
        raise UserError(
            f"{path}: {len(bad)} rows have missing values: {shown}. Fill them in, or set data.on_missing: drop"
        )
    rows = [row for i, row in enumerate(rows) if i not in set(bad)]
    cell = {name: [row[columns.index(name)] for row in rows] for name in columns}
    targets = cell[target]
    numeric_target = all(is_number(c) for c in targets)
    values = [float(c) for c in targets] if numeric_target else []
    if (numeric_target and all(v == round(v) for v in values) and len(set(values)) <= 20) or not numeric_target:
        classes = sorted(set(targets), key=lambda c: (float(c), c)) if numeric_target else sorted(set(targets))
        y = np.array([classes.index(c) for c in targets])
    else:
        classes, y = None, np.array(values, dtype=np.float32).reshape(-1, 1)
    return {"columns": features, "cells": cell, "classes": classes, "y": y}


def reference_inputs(dataset: dict, train_rows: np.ndarray) -> tuple[np.ndarray, dict]:
    """The encoding fitted on the training rows, and every row encoded with it."""
    blocks, numeric, categories = [], {}, {}
    for name in dataset["columns"]:
        cells = dataset["cells"][name]
        if all(is_number(c) for c in cells):
            values = np.array([float(c) for c in cells])
            mean, std = float(values[train_rows].mean()), float(values[train_rows].std())
            numeric[name] = [mean, std if std > 0 else 1.0]
            blocks.append(((values - mean) / numeric[name][1])[:, None])
        else:
            categories[name] = sorted({cells[i] for i in train_rows})
            blocks.append(np.array([[float(c == k) for k in categories[name]] for c in cells]))
    encoding = {"columns": dataset["columns"], "numeric": numeric, "categories": categories}
    return np.concatenate(blocks, axis=1).astype(np.float32), encoding


# -- tables to read -------------------------------------------------------------------------------------


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def fruit_text(rows: int = 30) -> str:
    """Numbers (one with spaces, one hexadecimal-looking text column), a category with stray spaces,
    a class target; a blank line, a row of empty cells and a quoted cell across two lines."""
    rng = np.random.default_rng(3)
    lines = ["weight_g, colour ,code,fruit"]
    for i in range(rows):
        colour = ["red", " green", "green ", "yellow"][i % 4]
        lines.append(
            f"{100 + 10 * (i % 3) + rng.normal(0, 5):.2f},{colour},0x{i % 3},{['apple', 'pear', 'plum'][i % 3]}"
        )
    lines.insert(5, "")
    lines.insert(9, ",,,")
    lines.insert(12, '101.5,"red\nish",0x1,apple')
    return "\n".join(lines) + "\n"


def prepared(raw: RawData):
    return prepare_data(
        raw,
        plan_targets("index" if raw.task.kind == "classification" else "value", raw.task),
        val_fraction=0.2,
        test_fraction=0.2,
        split_seed=0,
        device=torch.device("cpu"),
    )


def reference_raw(dataset: dict) -> RawData:
    if dataset["classes"] is None:
        task = Task("regression", num_targets=1)
    else:
        task = Task("classification", num_classes=len(dataset["classes"]), class_names=tuple(dataset["classes"]))

    def fit_inputs(train_rows):
        x, encoding = reference_inputs(dataset, train_rows)
        return x, {"table": encoding}

    return RawData(np.zeros((len(dataset["y"]), 0), np.float32), dataset["y"], task, (0,), fit_inputs=fit_inputs)


@pytest.mark.parametrize(
    ("text", "target", "on_missing"),
    [
        (fruit_text(), "fruit", "error"),
        (fruit_text().replace("0x1,apple", "0x1,NA", 1), "fruit", "drop"),  # a missing class: the row dropped
        (
            "x,kind,y\n" + "".join(f"{i * 0.37:.3f},{'ab'[i % 2]},{3 * i * 0.37 + 1:.4f}\n" for i in range(40)),
            "y",
            "error",
        ),
        (
            "size\tshade\tlabel\n"
            + "".join(f"{i % 7}\t{'xy'[i % 2]}\t{'+7' if i % 3 else '007'}\n" for i in range(24)),
            "label",
            "error",
        ),
        (
            "n,day,t\n"
            + "".join(f"{i},2024-01-{i % 3 + 1:02},{'pq'[i % 3 % 2]}\n" for i in range(20))
            + "   \n5,2024-01-02,q\n",
            "t",
            "error",
        ),
    ],
    ids=["classes", "dropped-row", "regression", "tsv-equal-numbers", "dates-and-a-line-of-spaces"],
)
def test_the_columnar_path_gives_the_tensors_of_the_former_reader(tmp_path, text, target, on_missing):
    path = write_csv(tmp_path / ("t.tsv" if "\t" in text else "t.csv"), text)
    new = prepared(table_data(str(path), target, None, "auto", on_missing))
    old = prepared(reference_raw(reference_dataset(path, target, on_missing)))
    assert new.task == old.task
    assert new.encoding == old.encoding
    for split in ("train", "val", "test"):
        assert np.array_equal(new.split(split).rows, old.split(split).rows)
        assert torch.equal(new.split(split).inputs, old.split(split).inputs)
        assert torch.equal(new.split(split).labels, old.split(split).labels)
        assert torch.equal(new.split(split).targets, old.split(split).targets)


def test_the_table_of_the_fruit_example_is_read_as_written(tmp_path):
    """Hand-checked: the stripped categories, the class order, the hexadecimal-looking text kept as
    text, and each row's line past a blank line, a row of empty cells and a two-line cell."""
    path = write_csv(tmp_path / "fruit.csv", fruit_text())
    raw = table_data(str(path), "fruit", None, "auto", "error")
    assert raw.task.class_names == ("apple", "pear", "plum")
    table = read_table(path, text_columns=("fruit",))
    assert table.columns == ["weight_g", "colour", "code", "fruit"]
    assert sorted(set(table.column("colour"))) == ["green", "red", "red\nish", "yellow"]
    assert sorted(set(table.column("code"))) == ["0x0", "0x1", "0x2"]
    assert table.lines[:12] == [2, 3, 4, 5, 7, 8, 9, 11, 12, 14, 15, 16]  # line 6 blank, 10 empty cells, 13-14 one row


def parquet_of(csv_path: Path, parquet_path: Path) -> Path:
    """The same table as Parquet, typed as a dataframe library would write it: numbers as
    float64/int64, text as strings, empty cells as nulls."""
    import pyarrow.csv
    import pyarrow.parquet

    table = pyarrow.csv.read_csv(csv_path, convert_options=pyarrow.csv.ConvertOptions(null_values=[""]))
    pyarrow.parquet.write_table(table, parquet_path)
    return parquet_path


@pytest.mark.parametrize("target", ["fruit", "weight_g"])
def test_parquet_gives_what_the_same_csv_gives(tmp_path, target):
    text = "weight_g,colour,fruit,sweet\n" + "".join(
        f"{100 + 7 * i % 23}.5,{['red', 'green', 'yellow'][i % 3]},{['apple', 'pear'][i % 2]},{i % 4}\n"
        for i in range(30)
    )
    path = write_csv(tmp_path / "fruit.csv", text)
    from_csv = prepared(table_data(str(path), target, None, "auto", "error"))
    from_parquet = prepared(
        table_data(str(parquet_of(path, tmp_path / "fruit.parquet")), target, None, "auto", "error")
    )
    assert from_parquet.task == from_csv.task and from_parquet.encoding == from_csv.encoding
    for split in ("train", "val", "test"):
        assert torch.equal(from_parquet.split(split).inputs, from_csv.split(split).inputs)
        assert torch.equal(from_parquet.split(split).labels, from_csv.split(split).labels)


# -- messages ---------------------------------------------------------------------------------------------


def message_of(call) -> str:
    with pytest.raises(UserError) as raised:
        call()
    return str(raised.value)


@pytest.mark.parametrize(
    "text",
    [
        'a,b,t\n1,x,p\n\n2,"y\nz",q\n3,x,p,extra\n',  # too many cells, on the line after a two-line cell
        "a,b,t\n1,x,p\n2,y\n",  # too few
        "\na,b,t\n1,x,p\n",  # no header (a blank first line)
        "",  # an empty file
        "a,b,t\n\n , , \n",  # a header only, and blank rows
        "a,b,t\n1,x,p\nNA,y,q\n\n,z,\n3,x,p\n4,y,q\n",  # missing values, past a blank line
    ],
    ids=["too-many-cells", "too-few-cells", "blank-first-line", "empty", "header-only", "missing"],
)
def test_bad_tables_get_the_messages_of_the_former_reader(tmp_path, text):
    path = write_csv(tmp_path / "t.csv", text)
    expected = message_of(lambda: reference_dataset(path, "t"))
    assert message_of(lambda: table_data(str(path), "t", None, "auto", "error")) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a,b,t\n1,x,p\n2,"y\n",q\ninf,x,p\n4,y,q\n', ":5: column 'a': 'inf' is not a finite number"),
        ("a,b,t\n1,x,p\n1e39,y,q\n3,x,p\n4,y,q\n", ":3: column 'a': '1e39' is not a finite number (within ±3.4e+38)"),
        ("a,b,t\n1,x,p\n -nan ,y,q\n3,x,p\n4,y,q\n", ":3: column 'a': '-nan' is not a finite number"),
    ],
    ids=["inf-past-a-two-line-cell", "beyond-float32", "nan-not-written-as-missing"],
)
def test_a_number_cell_that_is_not_finite_is_named_by_its_line(tmp_path, text, expected):
    """Read by pyarrow as numbers, so the cell's text is read back for the message."""
    path = write_csv(tmp_path / "t.csv", text)
    raw = table_data(str(path), "t", None, "auto", "error")
    assert message_of(lambda: raw.fit_inputs(np.arange(2))).startswith(f"{path}{expected}")


def test_bytes_that_are_not_utf8_are_named_as_before(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("a,b,t\n1,x,p\n2,café,q\n".encode("latin-1"))
    expected = message_of(lambda: reference_rows(path))
    assert message_of(lambda: read_table(path)) == expected
    assert "cannot read as CSV: 'utf-8' codec can't decode byte 0xe9" in expected


def test_a_numeric_target_with_a_missing_cell_has_its_task_from_the_other_cells(tmp_path):
    """The former reader stopped on the empty cell with a traceback (float(''))."""
    path = write_csv(tmp_path / "t.csv", "x,y\n" + "".join(f"{i},{i * 1.5}\n" for i in range(30)) + "31,\n")
    assert table_task({"path": str(path), "target": "y"}) == "regression"


def test_parquet_cells_are_named_by_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet

    path = tmp_path / "t.parquet"
    pyarrow.parquet.write_table(pa.table({"n": [1.0, None, 3.0, float("inf")], "t": ["p", "q", "p", "q"]}), path)
    assert message_of(lambda: table_data(str(path), "t", None, "auto", "error")) == (
        f"{path}: 1 rows have missing values: row 2 (n). Fill them in, or set data.on_missing: drop"
    )
    raw = table_data(str(path), "t", None, "auto", "drop")
    assert message_of(lambda: raw.fit_inputs(np.arange(2))).startswith(
        f"{path}: row 4: column 'n': 'inf' is not a finite number"
    )


def test_a_parquet_column_of_an_unsupported_type_is_one_line(cli, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet

    path = tmp_path / "t.parquet"
    when = pa.array(np.arange(40).astype("datetime64[ms]"))
    pyarrow.parquet.write_table(pa.table({"n": np.arange(40.0), "when": when, "t": ["p", "q"] * 20}), path)
    config = write_config(
        tmp_path,
        data={"name": "csv", "path": str(path), "target": "t", "batch_size": 8},
        trainer={"epochs": 1, "device": "cpu"},
    )
    result = cli("validate", config)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {path}: column 'when' holds timestamp[ms] values, which trainctl does not read (numbers, text and "
        "booleans are read); convert it, or leave it out of data.features"
    ]
    config = write_config(
        tmp_path,
        data={"name": "csv", "path": str(path), "target": "t", "features": ["n"], "batch_size": 8},
        trainer={"epochs": 1, "device": "cpu"},
    )
    assert cli("validate", config).exit_code == 0


@pytest.mark.slow
def test_a_run_trained_on_parquet_predicts_a_csv_and_a_parquet_file_alike(cli, tmp_path):
    text = "size,colour,kind\n" + "".join(
        f"{10 + (i % 5) * 0.5},{['red', 'green', 'blue'][i % 3]},{['cherry', 'lime', 'berry'][i % 3]}\n"
        for i in range(60)
    )
    data = parquet_of(write_csv(tmp_path / "fruit.csv", text), tmp_path / "fruit.parquet")
    config = write_config(
        tmp_path,
        data={"name": "csv", "path": str(data), "target": "kind", "batch_size": 16},
        trainer={"epochs": 2, "device": "cpu"},
    )
    assert cli("train", config, "--out", tmp_path / "run", "-q").exit_code == 0
    new_csv = write_csv(tmp_path / "new.csv", "colour,size\ngreen,9.0\nred,12.5\n")
    new_parquet = parquet_of(new_csv, tmp_path / "new.parquet")
    outputs = {}
    for new in (new_csv, new_parquet):
        result = cli("predict", tmp_path / "run", new, "-o", tmp_path / f"{new.suffix[1:]}.json")
        assert result.exit_code == 0, result.output
        outputs[new.suffix] = json.loads((tmp_path / f"{new.suffix[1:]}.json").read_text())
    assert [r["input"] for r in outputs[".csv"]] == [f"{new_csv}:2", f"{new_csv}:3"]
    assert [r["input"] for r in outputs[".parquet"]] == [f"{new_parquet}:1", f"{new_parquet}:2"]
    assert [r["probabilities"] for r in outputs[".csv"]] == [r["probabilities"] for r in outputs[".parquet"]]


@pytest.mark.subprocess
def test_listings_and_help_do_not_import_pyarrow():
    code = (
        "import sys\n"
        "from trainctl.cli import main\n"
        "for args in (['--help'], ['list-datasets'], ['train', '--help']):\n"
        "    sys.argv = ['trainctl', *args]\n"
        "    try:\n        main()\n    except SystemExit as done:\n        assert not done.code, done.code\n"
        "print('pyarrow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"


# -- tables too large for memory, read in chunks -----------------------------------------------------


def streamed(path: Path, target: str, on_missing: str = "error", task: str = "auto") -> RawData:
    """The chunked reading of a table, in chunks of a few rows (as a table larger than memory is)."""
    from trainctl.data.table_stream import streamed_table_data

    return streamed_table_data(str(path), target, None, task, on_missing, chunk_bytes=200, chunk_rows=5)


CHUNKED_TABLES = {
    "classes": (fruit_text(), "fruit", "error"),
    "dropped-rows": (fruit_text().replace("0x1,apple", "0x1,NA", 1).replace("0x2,plum", ",plum", 1), "fruit", "drop"),
    "regression": (
        "x,kind,y\n" + "".join(f"{i * 0.37:.3f},{'ab'[i % 2]},{3 * i * 0.37 + 1:.4f}\n" for i in range(40)),
        "y",
        "error",
    ),
}


@pytest.mark.parametrize("name", [*CHUNKED_TABLES, "parquet"])
def test_a_table_read_in_chunks_gives_what_it_gives_whole(tmp_path, name):
    text, target, on_missing = CHUNKED_TABLES.get(name, CHUNKED_TABLES["classes"])
    path = write_csv(tmp_path / "t.csv", text.replace("0x", "") if name == "parquet" else text)
    if name == "parquet":
        path = parquet_of(path, tmp_path / "t.parquet")
    whole_raw, chunked_raw = table_data(str(path), target, None, "auto", on_missing), streamed(path, target, on_missing)
    assert chunked_raw.warnings == whole_raw.warnings
    whole, chunked = prepared(whole_raw), prepared(chunked_raw)
    assert chunked.task == whole.task
    assert chunked.encoding["table"]["categories"] == whole.encoding["table"]["categories"]
    for column, (mean, std) in whole.encoding["table"]["numeric"].items():  # combined chunk by chunk
        assert chunked.encoding["table"]["numeric"][column] == pytest.approx([mean, std], rel=1e-12)
    for split in ("train", "val", "test"):
        assert np.array_equal(chunked.split(split).rows, whole.split(split).rows)
        assert torch.equal(chunked.split(split).labels, whole.split(split).labels)
        assert torch.allclose(chunked.split(split).inputs, whole.split(split).inputs, atol=1e-6)


def test_a_split_read_in_chunks_lives_in_a_mapped_file(tmp_path):
    path = write_csv(tmp_path / "t.csv", CHUNKED_TABLES["regression"][0])
    raw = streamed(path, "y")
    inputs, _ = raw.fit_inputs(np.arange(30))
    part = inputs[np.arange(30, 40)]
    assert isinstance(part, np.memmap) and part.shape == (10, 3)


@pytest.mark.parametrize(
    ("text", "target", "task"),
    [
        ("a,b,t\n1,x,p\nNA,y,q\n\n,z,\n" + "3,x,p\n" * 8 + ",x,p\n" * 4, "t", "auto"),  # missing values, 7 rows
        ("n,c,t\n" + "".join(f"{i},{'ab'[i % 2]},{'pq'[i % 2]}\n" for i in range(20)) + "inf,a,q\n", "t", "auto"),
        ("n,c,t\n" + "".join(f"{i},{'ab'[i % 2]},{i * 1.1}\n" for i in range(20)) + "3,a,1e39\n", "t", "regression"),
        ("n,c,t\n" + "".join(f"{i},{'ab'[i % 2]},{i * 1.1}\n" for i in range(20)) + "3,a,x\n", "t", "regression"),
        ("n,c,t\n\n , , \n", "t", "auto"),
    ],
    ids=["missing", "inf-feature", "target-beyond-float32", "regression-on-text", "no-rows"],
)
def test_a_table_read_in_chunks_is_refused_as_it_is_whole(tmp_path, text, target, task):
    path = write_csv(tmp_path / "t.csv", text)

    def fitted(raw: RawData) -> RawData:
        raw.fit_inputs(np.arange(3))
        return raw

    expected = message_of(lambda: fitted(table_data(str(path), target, None, task, "error")))
    assert message_of(lambda: fitted(streamed(path, target, task=task))) == expected


def test_a_stray_word_is_warned_about_alike_in_chunks(tmp_path):
    text = "n,c,t\n" + "".join(f"{i},{'ab'[i % 2]},{'pq'[i % 2]}\n" for i in range(40)) + "abc,a,q\n"
    path = write_csv(tmp_path / "t.csv", text)
    assert streamed(path, "t").warnings == table_data(str(path), "t", None, "auto", "error").warnings
    assert "column n is numeric except 'abc' at line 42" in streamed(path, "t").warnings[0][0]


def test_a_table_is_read_in_chunks_when_reading_it_whole_would_not_fit(tmp_path):
    from trainctl.data.tables import CSV_READING_BYTES_PER_FILE_BYTE, fits_in_memory

    path = write_csv(tmp_path / "t.csv", CHUNKED_TABLES["regression"][0])
    need = path.stat().st_size * CSV_READING_BYTES_PER_FILE_BYTE
    assert fits_in_memory(path, available=int(need) + 1)
    assert not fits_in_memory(path, available=int(need) - 1)


@pytest.mark.subprocess
def test_reading_tables_does_not_import_pandas(tmp_path):
    """pyarrow's conversions to numpy import pandas where it is installed: half a second and 30 MiB
    a process for nothing; the columns are read from their buffers instead."""
    path = write_csv(tmp_path / "t.csv", fruit_text())
    parquet = parquet_of(
        write_csv(tmp_path / "p.csv", "n,flag,t\n1,true,p\n2,false,q\n3,,p\n4,true,q\n"), tmp_path / "p.parquet"
    )
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from trainctl.data.tables import table_data\n"
        f"for path, target in (({str(path)!r}, 'fruit'), ({str(parquet)!r}, 't')):\n"
        "    raw = table_data(path, target, None, 'auto', 'drop')\n"
        "    raw.fit_inputs(np.arange(2))[0][np.arange(2)]\n"
        "print('pandas' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
