"""`trainctl compare`: runs as columns that fit 80 columns, ranks of comparable values only, labels,
and the csv / json / markdown formats. The run folders are written as training writes them."""

from __future__ import annotations

import copy
import csv
import io
import json

import pytest
from rich.console import Console

from trainctl.reports.compare import compare_runs, comparison_tables, expand_runs, run_labels
from trainctl.runs import RunFolder

from helpers import run_cli

BASE = {
    "name": "digits_mlp",
    "seed": 0,
    "data": {"name": "digits", "batch_size": 64, "val_fraction": 0.1, "test_fraction": 0.2, "split_seed": 0},
    "model": {"name": "mlp", "hidden": [256, 256], "activation": "relu"},
    "loss": {"name": "cross_entropy", "label_smoothing": 0.0},
    "optimizer": {"name": "adam", "lr": 0.001},
    "scheduler": {"name": "cosine", "eta_min": 0.0},
    "trainer": {"epochs": 20, "device": "cpu", "monitor": "val/accuracy"},
    "metrics": ["accuracy", "precision", "recall", "f1"],
    "output_dir": "runs",
}


def write_run(parent, folder: str, changes: dict, test: dict, best_epoch: int = 11) -> RunFolder:
    """A finished run folder: the resolved config with `changes` ({"section.key": value}) and its summary."""
    config = copy.deepcopy(BASE)
    for key, value in changes.items():
        section, name = key.split(".")
        if name == "*":
            config[section] = value
        else:
            config[section][name] = value
    run = RunFolder(parent / folder)
    run.path.mkdir(parents=True)
    run.write_config(config)
    run.write_json(
        "summary.json",
        {
            "name": config["name"],
            "monitor": "val/accuracy",
            "best_epoch": best_epoch,
            "test": {"split": "test", "checkpoint": "best", "epoch": best_epoch, **test},
        },
    )
    return run


def metrics(loss: float, accuracy: float) -> dict:
    return {
        "loss": loss,
        "accuracy": accuracy,
        "precision": accuracy - 0.01,
        "recall": accuracy + 0.002,
        "f1": accuracy - 0.004,
    }


@pytest.fixture
def four_runs(tmp_path):
    """Four runs of the default config with timestamped folder names: two learning rates, a focal
    loss (whose loss value cannot be ranked against cross-entropy's), and a label-smoothed one."""
    return [
        write_run(tmp_path, "digits_mlp-20260101-120000", {}, metrics(0.1107, 0.9667)),
        write_run(tmp_path, "digits_mlp-20260101-120502", {"optimizer.lr": 0.01}, metrics(0.0912, 0.9611)),
        write_run(
            tmp_path, "digits_mlp-20260101-121013", {"loss.*": {"name": "focal", "gamma": 2.0}}, metrics(0.0123, 0.9722)
        ),
        write_run(tmp_path, "digits_mlp-20260101-121518", {"loss.label_smoothing": 0.1}, metrics(0.3012, 0.9694)),
    ]


def render(renderables, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    for renderable in renderables:
        console.print(renderable)
    return console.export_text()


def header_labels(text: str) -> list[str]:
    """Each run column's header of the first table in rendered text, its wrapped lines joined
    (compared without spaces, since a label wraps at its spaces)."""
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    rows = [line.strip("┃").split("┃") for line in lines[top + 1 :] if line.startswith("┃")]
    return ["".join(row[column].strip() for row in rows) for column in range(1, len(rows[0]))]


def without_spaces(labels: list[str]) -> list[str]:
    return [label.replace(" ", "") for label in labels]


def test_four_runs_fit_80_columns_and_no_cell_is_cut(four_runs):
    text = render(comparison_tables(compare_runs(four_runs), 80), 80)
    assert "…" not in text
    assert max(map(len, text.splitlines())) <= 80
    # The four runs side by side in one table, each under its whole label.
    assert header_labels(text) == without_spaces([run.label for run in compare_runs(four_runs).runs])
    for value in ("0.1107", "0.0912", "0.0123", "0.3012", "0.9667", "0.9611", "0.9722*", "0.9694"):
        assert value in text
    for key in ("optimizer.lr", "loss.name", "loss.label_smoothing", "loss.gamma", "test/accuracy"):
        assert f"│ {key} " in text


def test_the_command_at_80_columns_cuts_nothing(four_runs):
    result = run_cli("compare", *(run.path for run in four_runs), columns=80)
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    assert max(map(len, result.stdout.splitlines())) <= 80
    assert "loss: not ranked across runs with different loss configs or data" in result.stdout


def test_a_loss_is_ranked_only_against_the_same_loss(four_runs):
    comparison = compare_runs(four_runs)
    best = {run.folder.path.name: run.best for run in comparison.runs}
    # 0.0123 (focal) and 0.3012 (label smoothing) are the lowest and highest, but each is alone with its loss.
    assert "loss" in best["digits_mlp-20260101-120502"]  # 0.0912 < 0.1107, both plain cross-entropy
    assert "loss" not in best["digits_mlp-20260101-121013"]
    assert "loss" not in best["digits_mlp-20260101-121518"]
    # Metrics are on the same data and split for all four: the best accuracy is marked across them.
    assert [name for name, marks in best.items() if "accuracy" in marks] == ["digits_mlp-20260101-121013"]
    assert comparison.notes == ["loss: not ranked across runs with different loss configs or data"]


def test_metrics_are_not_ranked_across_different_data(tmp_path):
    runs = [
        write_run(tmp_path, "a", {}, metrics(0.11, 0.96)),
        write_run(tmp_path, "b", {"data.batch_size": 32}, metrics(0.12, 0.95)),  # same samples
        write_run(tmp_path, "c", {"data.split_seed": 1}, metrics(0.05, 0.99)),
    ]  # another split
    comparison = compare_runs(runs)
    assert [run.best for run in comparison.runs] == [["loss", "accuracy", "precision", "recall", "f1"], [], []]
    assert "accuracy: not ranked across runs with different data or splits" in comparison.notes


def test_labels_drop_the_timestamp_or_name_what_differs(four_runs, tmp_path):
    configs = [run.read_config() for run in four_runs]
    assert run_labels(four_runs, configs) == [
        "digits_mlp",  # the values the other runs depart from
        "digits_mlp (optimizer.lr=0.01)",
        "digits_mlp (loss.name=focal, loss.gamma=2.0)",
        "digits_mlp (loss.label_smoothing=0.1)",
    ]
    unique = [
        write_run(tmp_path / "u", "digits_mlp-20260101-120000", {}, metrics(0.1, 0.9)),
        write_run(tmp_path / "u", "robust_mse-20260101-120000", {}, metrics(0.2, 0.8)),
    ]
    assert run_labels(unique, [run.read_config() for run in unique]) == ["digits_mlp", "robust_mse"]
    same = [
        write_run(tmp_path / "s", "digits_mlp-20260101-120000", {}, metrics(0.1, 0.9)),
        write_run(tmp_path / "s", "digits_mlp-20260101-130000", {}, metrics(0.1, 0.9)),
    ]
    assert run_labels(same, [run.read_config() for run in same]) == [
        "s/digits_mlp-20260101-120000",
        "s/digits_mlp-20260101-130000",
    ]


def test_sweep_trials_are_labelled_by_their_parameters(tmp_path):
    sweep = tmp_path / "sweep"
    for number, lr in enumerate((0.001, 0.01, 0.1)):
        write_run(sweep, f"trial-{number:04d}", {"optimizer.lr": lr}, metrics(0.1 + number, 0.9 - number / 10))
    (sweep / "base.yaml").write_text("name: digits_mlp\n")
    comparison = compare_runs(expand_runs([sweep]))
    assert [run.label for run in comparison.runs] == [
        "trial-0000 (optimizer.lr=0.001)",
        "trial-0001 (optimizer.lr=0.01)",
        "trial-0002 (optimizer.lr=0.1)",
    ]
    text = render(comparison_tables(comparison, 80), 80)
    assert "…" not in text
    assert header_labels(text) == without_spaces([run.label for run in comparison.runs])


def test_csv_has_one_row_per_run_with_full_precision(four_runs):
    result = run_cli("compare", *(run.path for run in four_runs), "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["run"] for row in rows] == [run.path.name for run in four_runs]
    for row, run in zip(rows, four_runs):
        test = json.loads(run.summary_path.read_text())["test"]
        assert float(row["test/loss"]) == test["loss"]
        assert float(row["test/accuracy"]) == test["accuracy"]
        assert row["best_epoch"] == "11"
    assert [row["optimizer.lr"] for row in rows] == ["0.001", "0.01", "0.001", "0.001"]
    assert [row["loss.gamma"] for row in rows] == ["", "", "2.0", ""]
    assert rows[1]["best"] == "loss"
    assert rows[2]["best"] == "accuracy;precision;recall;f1"


def test_json_holds_labels_configs_metrics_and_ranks(four_runs):
    result = run_cli("compare", *(run.path for run in four_runs), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["keys"] == ["loss.name", "loss.label_smoothing", "optimizer.lr", "loss.gamma"]
    assert [run["run"] for run in data["runs"]] == [run.path.name for run in four_runs]
    assert data["runs"][2]["config"] == {
        "loss.name": "focal",
        "loss.label_smoothing": None,
        "optimizer.lr": 0.001,
        "loss.gamma": 2.0,
    }
    assert data["runs"][1]["test"]["loss"] == 0.0912
    assert data["runs"][1]["best"] == ["loss"]
    assert data["not_ranked"] == ["loss: not ranked across runs with different loss configs or data"]


def test_markdown_is_a_table_with_runs_as_columns(four_runs):
    result = run_cli("compare", *(run.path for run in four_runs), "-f", "markdown")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| |"))
    assert header == (
        "| | digits_mlp | digits_mlp (optimizer.lr=0.01) | digits_mlp (loss.name=focal, loss.gamma=2.0) "
        "| digits_mlp (loss.label_smoothing=0.1) |"
    )
    assert "|---|---:|---:|---:|---:|" in lines
    accuracy = next(line for line in lines if line.startswith("| test/accuracy |"))
    assert accuracy == "| test/accuracy | 0.9667 | 0.9611 | **0.9722** | 0.9694 |"


def test_an_unknown_format_is_a_user_error(four_runs):
    result = run_cli("compare", four_runs[0].path, "--format", "xml")
    assert result.exit_code == 2
    assert "--format: unknown format 'xml'; allowed: table, csv, json, markdown" in result.stderr
