"""Loss curves: the diagnosis of their shape, curves.png and `plot`, and `compare`."""

from __future__ import annotations

import json

import pytest

from conftest import read_jsonl, tiny_config
from trainctl.curves import plot_runs
from trainctl.diagnosis import diagnose
from trainctl.workflows import train

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def history(train_losses: list[float], val_losses: list[float]) -> list[dict]:
    return [{"epoch": i, "train/loss": t, "val/loss": v} for i, (t, v) in enumerate(zip(train_losses, val_losses), 1)]


@pytest.mark.parametrize("train_losses, val_losses, shape, says", [
    ([1.0, 0.6, 0.4, 0.3, 0.22, 0.16, 0.12, 0.09, 0.07], [1.1, 0.7, 0.5, 0.4, 0.3, 0.25, 0.2, 0.17, 0.15],
     "still-improving", "more epochs would likely help"),
    ([1.0, 0.5, 0.35, 0.3, 0.28, 0.27, 0.265, 0.26, 0.255], [1.0, 0.55, 0.4, 0.35, 0.33, 0.32, 0.315, 0.31, 0.305],
     "decreasing", "the run looks healthy"),
    ([1.0, 0.5, 0.4, 0.401, 0.4, 0.399, 0.4, 0.4, 0.3995], [1.0, 0.5, 0.45, 0.45, 0.45, 0.45, 0.45, 0.45, 0.45],
     "plateaued", "raise optimizer.lr or use a larger model"),
    ([1.0, 0.7, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05], [1.0, 0.8, 0.6, 0.55, 0.6, 0.7, 0.8, 0.9, 1.0],
     "overfitting", "stop earlier"),
    ([1.0, 0.3, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001], [1.0, 0.3, 0.1, 0.05, 0.048, 0.049, 0.05, 0.05, 0.051],
     "plateaued", "more epochs will not help"),
    ([1.0, 0.8, 0.9, 1.5, 3.0, 8.0], [1.0, 0.8, 1.0, 2.0, 4.0, 9.0], "diverging", "lower optimizer.lr"),
    ([1.0, 0.8, float("nan")], [1.0, 0.9, float("nan")], "diverging", "lower optimizer.lr"),
    ([1.0, 0.8], [1.0, 0.9], "too-short", "train for more epochs"),
])
def test_diagnosis_names_each_curve_shape(train_losses, val_losses, shape, says):
    diagnosis = diagnose(history(train_losses, val_losses))
    assert diagnosis.shape == shape
    assert says in diagnosis.hint


def test_overfitting_names_the_epoch_it_starts():
    diagnosis = diagnose(history([1.0, 0.7, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05],
                                 [1.0, 0.8, 0.6, 0.55, 0.6, 0.7, 0.8, 0.9, 1.0]))
    assert diagnosis.message.startswith("overfitting from epoch 5: validation loss rose 0.45 above its best (epoch 4)")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same tiny config at two learning rates."""
    folder = tmp_path_factory.mktemp("two")
    config = tiny_config(folder, trainer={"epochs": 4, "device": "cpu"})
    return [train(config, [f"optimizer.lr={lr}"], out=folder / f"lr{lr}", quiet=True) for lr in (0.001, 0.03)]


def test_every_run_writes_its_curves_and_diagnosis(two_runs):
    run = two_runs[0]
    assert (run.run.path / "curves.png").read_bytes().startswith(PNG_SIGNATURE)
    expected = diagnose(read_jsonl(run.run.metrics_path))
    assert run.summary["diagnosis"]["shape"] == expected.shape
    assert run.summary["diagnosis"]["message"] == expected.message


def test_plot_overlays_two_lines_of_loss_and_one_of_metric_per_run(two_runs, tmp_path):
    curves = [(r.run.path.name, read_jsonl(r.run.metrics_path), r.summary["monitor"]) for r in two_runs]
    figure = plot_runs(curves, tmp_path / "both.png")
    loss_axes, metric_axes = figure.axes
    assert len(loss_axes.get_lines()) == 4
    assert len(metric_axes.get_lines()) == 2
    val_line = loss_axes.get_lines()[1]
    assert list(val_line.get_ydata()) == [row["val/loss"] for row in curves[0][1]]
    assert (tmp_path / "both.png").read_bytes().startswith(PNG_SIGNATURE)


def test_plot_command_writes_the_image(cli, two_runs, tmp_path):
    out = tmp_path / "overlay.png"
    result = cli("plot", *(r.run.path for r in two_runs), "-o", out)
    assert result.exit_code == 0, result.output
    assert f"written: {out} (2 runs)" in result.stdout
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    result = cli("plot", two_runs[0].run.path, "-o", tmp_path / "overlay.jpg")
    assert result.exit_code == 2
    assert "unknown image type '.jpg'; allowed: .png, .svg, .pdf" in result.stderr


def test_compare_shows_differing_keys_and_marks_the_best(cli, two_runs):
    result = cli("compare", *(r.run.path for r in two_runs))
    assert result.exit_code == 0, result.output
    accuracies = [r.summary["test"]["accuracy"] for r in two_runs]
    lines = {r.run.path.name: next(line for line in result.stdout.splitlines() if r.run.path.name in line)
             for r in two_runs}
    assert "optimizer.lr" in result.stdout
    assert "trainer" not in result.stdout  # keys that are equal are left out
    best = two_runs[accuracies.index(max(accuracies))].run.path.name
    assert f"{max(accuracies):.4f}*" in lines[best]
    for run, accuracy in zip(two_runs, accuracies):
        assert f"{accuracy:.4f}" in lines[run.run.path.name]


def test_compare_of_a_folder_of_runs_and_of_a_non_run(cli, two_runs, tmp_path):
    parent = two_runs[0].run.path.parent
    result = cli("compare", parent)
    assert result.exit_code == 0
    assert all(r.run.path.name in result.stdout for r in two_runs)
    (tmp_path / "empty").mkdir()
    result = cli("compare", tmp_path / "empty")
    assert result.exit_code == 2
    assert "not a run folder or a folder of runs" in result.stderr
    summary = json.loads((two_runs[0].run.path / "summary.json").read_text())
    assert summary["epochs_trained"] == 4
