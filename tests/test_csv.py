"""CSV tables: training from a real CSV file, predicting from the run folder alone, and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from trainctl.workflows import validate

from helpers import REPO, write_config


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def colour_table(path: Path, rows: int = 120, seed: int = 0) -> Path:
    """The class follows the colour exactly; size is noise."""
    rng = np.random.default_rng(seed)
    data = []
    for i in range(rows):
        colour = ["red", "green", "blue"][i % 3]
        data.append(
            [round(float(rng.normal(10, 2)), 2), colour, {"red": "cherry", "green": "lime", "blue": "berry"}[colour]]
        )
    return write_csv(path, ["size", "colour", "kind"], data)


def csv_config(directory: Path, data_path: Path, epochs: int = 15, **data) -> Path:
    return write_config(
        directory,
        name="table",
        data={"name": "csv", "path": data_path.name, "batch_size": 16, **data},
        optimizer={"name": "adam", "lr": 0.05},
        trainer={"epochs": epochs, "device": "cpu"},
    )


def test_a_csv_trains_and_its_run_predicts_without_the_data(cli, tmp_path):
    data = colour_table(tmp_path / "fruit.csv")
    config = csv_config(tmp_path, data, target="kind")
    result = cli("train", config, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "data.json").read_text())
    assert saved["task"]["class_names"] == ["berry", "cherry", "lime"]
    assert saved["table"]["categories"] == {"colour": ["blue", "green", "red"]}
    assert saved["input_shape"] == [4]  # size + three colours
    data.unlink()  # predict needs the run folder only
    new = write_csv(tmp_path / "new.csv", ["colour", "size"], [["green", 9.0], ["red", 12.5], ["blue", 10.0]])
    result = cli("predict", tmp_path / "run", new, "--checkpoint", "last", "-o", tmp_path / "out.json")
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "out.json").read_text())
    assert [r["prediction"] for r in records] == ["lime", "cherry", "berry"]
    assert [r["input"] for r in records] == [f"{new}:2", f"{new}:3", f"{new}:4"]
    for record in records:
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert record["probability"] == max(record["probabilities"].values()) > 0.5
    assert "lime" in result.stdout and f"{new.name}:2" in result.stdout


def test_a_numeric_target_with_many_values_is_regression_and_predicts_in_its_units(cli, tmp_path):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 10, 300)
    data = write_csv(tmp_path / "line.csv", ["x", "y"], [[round(a, 4), round(3 * a + 2, 4)] for a in x])
    config = write_config(
        tmp_path,
        data={"name": "csv", "path": data.name, "target": "y", "batch_size": 16},
        model={"name": "mlp", "hidden": [32]},
        loss={"name": "mse"},
        trainer={"epochs": 60, "device": "cpu"},
    )
    assert cli("train", config, "--out", tmp_path / "run", "--quiet").exit_code == 0
    new = write_csv(tmp_path / "new.csv", ["x"], [[1.0], [5.0], [9.0]])
    result = cli("predict", tmp_path / "run", new, "-o", tmp_path / "out.csv")
    assert result.exit_code == 0, result.output
    with (tmp_path / "out.csv").open() as handle:
        values = [float(row["prediction"]) for row in csv.DictReader(handle)]
    assert values == pytest.approx([5.0, 17.0, 29.0], abs=0.6)


def test_missing_values_are_named_or_dropped(cli, tmp_path):
    rows = [[1.0, "a", "x"], ["", "b", "y"], [2.0, "NA", "x"]] + [
        [float(i), "ab"[i % 2], "xy"[i % 2]] for i in range(40)
    ]
    data = write_csv(tmp_path / "holes.csv", ["n", "c", "t"], rows)
    result = cli("train", csv_config(tmp_path, data, target="t"), "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert (
        f"{data}: 2 rows have missing values: line 3 (n); line 4 (c). Fill them in, or set data.on_missing: drop"
        in result.stderr
    )
    assert not (tmp_path / "run").exists()
    result = cli(
        "train", csv_config(tmp_path, data, epochs=1, target="t", on_missing="drop"), "--out", tmp_path / "run", "-q"
    )
    assert result.exit_code == 0, result.output


def test_bad_tables_are_one_line_each(cli, tmp_path):
    data = colour_table(tmp_path / "fruit.csv")
    result = cli("train", csv_config(tmp_path, data, target="species"))
    assert result.exit_code == 2
    assert "data.target: no column 'species' in" in result.stderr and "its columns: size, colour, kind" in result.stderr
    result = cli("train", csv_config(tmp_path, tmp_path / "nowhere.csv", target="kind"))
    assert result.exit_code == 2 and "nowhere.csv: file not found" in result.stderr
    tiny = colour_table(tmp_path / "tiny.csv", rows=2)
    result = cli("train", csv_config(tmp_path, tiny, target="kind"))
    assert result.exit_code == 2 and "the training split would be empty" in result.stderr


def test_predict_refuses_unseen_categories_and_missing_columns(cli, tmp_path):
    data = colour_table(tmp_path / "fruit.csv")
    config = csv_config(tmp_path, data, epochs=1, target="kind")  # a run to read; how well it predicts is not asked
    assert cli("train", config, "--out", tmp_path / "run", "-q").exit_code == 0
    purple = write_csv(tmp_path / "purple.csv", ["size", "colour"], [[10, "red"], [11, "purple"]])
    result = cli("predict", tmp_path / "run", purple)
    assert result.exit_code == 2
    assert f"{purple}:3: column 'colour': 'purple' was never seen in training; known: blue, green, red" in result.stderr
    no_size = write_csv(tmp_path / "no_size.csv", ["colour"], [["red"]])
    result = cli("predict", tmp_path / "run", no_size)
    assert (
        result.exit_code == 2
        and "no column 'size', which the model was trained on; its columns: colour" in result.stderr
    )


def test_predict_on_a_run_of_bundled_data_says_what_it_reads(cli, digits_run, tmp_path):
    new = write_csv(tmp_path / "x.csv", ["a"], [[1]])
    result = cli("predict", digits_run.run.path, new)
    assert result.exit_code == 2
    # digits' inputs are rows of its 64 pixel values (issue 18: predict on the built-in datasets' inputs)
    assert result.stderr.strip() == f"error: {new}:2: 1 values; the model reads 64 features a row"


def test_the_shipped_csv_example_is_valid():
    report = validate(REPO / "examples" / "csv" / "fruit.yaml", ["trainer.device=cpu"])
    assert report.input_shape[-1] == 10  # 2 numbers + 4 colours + 4 origins
    assert report.errors == []


def test_a_missing_input_file_is_named_as_given(cli, tmp_path):
    data = colour_table(tmp_path / "fruit.csv")
    assert (
        cli("train", csv_config(tmp_path, data, epochs=1, target="kind"), "--out", tmp_path / "run", "-q").exit_code
        == 0
    )
    result = cli("predict", tmp_path / "run", "nowhere.csv")
    assert result.exit_code == 2
    assert result.stderr == "error: nowhere.csv: file not found\n"  # an argument, not a config key
