"""Loss curves: the diagnosis of their shape, curves.png and `plot`, and `compare`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainctl.data.task import Task
from trainctl.output import Output
from trainctl.reports.curves import BEST_EPOCH, curves_figure, plot_runs
from trainctl.reports.diagnosis import chance_levels, diagnose
from trainctl.reports.preflight import Finding
from trainctl.workflows import resume, train

import recorded_curves as recorded
from helpers import read_jsonl, write_config

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def history(train_losses: list[float], val_losses: list[float]) -> list[dict]:
    return [{"epoch": i, "train/loss": t, "val/loss": v} for i, (t, v) in enumerate(zip(train_losses, val_losses), 1)]


DIGITS_CHANCE = {"val/accuracy": 0.1, "val/precision": 0.1, "val/recall": 0.1, "val/f1": 0.1}  # 18 of 180 per class
ADAPTIVE_CHANCE = {"val/mae": 2.2635, "val/r2": 0.0}  # the clean validation targets of configs/robust/adaptive.yaml


# What the checks before training say about the seed's PyTorch example (`trainctl validate configs/seed_torch_ce.yaml`).
SEED_WARNINGS = [
    Finding(
        "warning",
        "double-softmax",
        "the model's outputs are already probabilities",
        "end the model without an activation (model.output_activation: none); cross_entropy takes logits",
    )
]


def test_a_negative_log_likelihood_that_falls_below_zero_is_not_diverging():
    # The adaptive loss fell from 1.46 to -0.65; the old verdict was "diverging: the training loss rises".
    diagnosis = diagnose(recorded.ROBUST_ADAPTIVE, "val/mae", chance=ADAPTIVE_CHANCE)
    assert diagnosis.shape == "plateaued"
    assert diagnosis.message == (
        "plateaued: neither the training loss nor val/mae improved over the last 10 epochs; "
        "best val/mae 0.1126 at epoch 96; chance 2.264"
    )


def test_the_double_softmax_example_names_its_warning_not_health():
    diagnosis = diagnose(recorded.SEED_TORCH_CE, "val/accuracy", chance=DIGITS_CHANCE, warnings=SEED_WARNINGS)
    assert diagnosis.message == (
        "still improving: val/accuracy improved by 0.117 over the last 3 epochs; best "
        "val/accuracy 0.5778 at epoch 4; chance 0.1; the checks before training warned: "
        "double-softmax"
    )
    assert diagnosis.hint == (
        "fix that first: end the model without an activation (model.output_activation: none); "
        "cross_entropy takes logits"
    )


@pytest.mark.parametrize("curve", [recorded.DIGITS_MLP_20, recorded.DIGITS_MLP_40])
def test_a_schedule_that_decayed_to_zero_has_converged(curve):
    # The default config: its cosine schedule ends at lr 0, and 40 epochs give the test accuracy of 20.
    diagnosis = diagnose(curve, "val/accuracy", chance=DIGITS_CHANCE)
    best = 11 if len(curve) == 20 else 8
    assert diagnosis.shape == "converged"
    assert diagnosis.message == (
        f"converged as the learning rate decayed to 0; best val/accuracy 0.9833 at epoch {best}; chance 0.1"
    )
    assert diagnosis.hint.startswith(f"more epochs will not help; the best epoch was {best} of {len(curve)}")
    assert "improving" not in diagnosis.message


def test_an_early_stopped_run_is_never_still_improving():
    diagnosis = diagnose(recorded.EARLY_STOPPED, "val/accuracy", chance=DIGITS_CHANCE, stopped_early=True)
    assert diagnosis.shape == "stopped-early"
    assert diagnosis.message == "stopped early after epoch 20; best val/accuracy 0.9833 at epoch 8; chance 0.1"
    assert diagnosis.hint.startswith("more epochs will not help: the best checkpoint (epoch 8) is kept")


def test_a_converged_weak_model_is_not_called_healthy():
    diagnosis = diagnose(recorded.NARROW_MLP, "val/accuracy", chance=DIGITS_CHANCE)
    assert (
        diagnosis.message
        == "converged as the learning rate decayed to 0; best val/accuracy 0.3833 at epoch 23; chance 0.1"
    )
    assert diagnosis.hint == (
        "more epochs of this schedule will not help; to do better, change the model, the loss or optimizer.lr"
    )


def test_an_improving_run_without_warnings_asks_for_more_epochs():
    diagnosis = diagnose(recorded.SEED_KERAS_MSE, "val/accuracy", chance=DIGITS_CHANCE)
    assert diagnosis.shape == "still-improving"
    assert diagnosis.message.startswith("still improving: val/accuracy improved by 0.122 over the last 3 epochs")
    assert diagnosis.hint == "more epochs would likely help"


def test_a_metric_at_chance_level_is_not_learning():
    rows = [
        {**row, "val/accuracy": accuracy} for row, accuracy in zip(recorded.SEED_TORCH_CE, [0.1, 0.1, 0.1056, 0.1, 0.1])
    ]
    diagnosis = diagnose(rows, "val/accuracy", chance=DIGITS_CHANCE)
    assert diagnosis.shape == "not-learning"
    assert diagnosis.message == "not learning: the best val/accuracy, 0.1056, is barely above chance (0.1)"
    regression = [{**row, "val/r2": r2} for row, r2 in zip(recorded.SEED_TORCH_CE, [-0.3, -0.1, -0.02, -0.01, -0.05])]
    diagnosis = diagnose(regression, "val/loss", chance={"val/r2": 0.0})
    assert diagnosis.message == "not learning: the best val/r2, -0.01, is no better than chance (0)"


def test_chance_levels_of_classes_and_of_values():
    labels = np.array([0, 0, 0, 1, 2, 2])  # three of six in class 0
    assert chance_levels(Task("classification", num_classes=4), labels) == {
        "val/accuracy": 0.5,
        "val/precision": 0.25,
        "val/recall": 0.25,
        "val/f1": 0.25,
    }
    levels = chance_levels(Task("regression"), np.array([1.0, 2.0, 3.0, 10.0]))
    assert levels["val/mse"] == pytest.approx(12.5)  # mean 4: (9 + 4 + 1 + 36) / 4
    assert levels["val/rmse"] == pytest.approx(12.5**0.5)
    assert levels["val/mae"] == pytest.approx(2.5)  # median 2.5: (1.5 + 0.5 + 0.5 + 7.5) / 4
    assert levels["val/r2"] == 0.0


@pytest.mark.parametrize(
    "train_losses, val_losses, shape, says",
    [
        (
            [1.0, 0.6, 0.4, 0.3, 0.22, 0.16, 0.12, 0.09, 0.07],
            [1.1, 0.7, 0.5, 0.4, 0.3, 0.25, 0.2, 0.17, 0.15],
            "still-improving",
            "more epochs would likely help",
        ),
        (
            [1.0, 0.5, 0.35, 0.3, 0.28, 0.27, 0.265, 0.26, 0.255],
            [1.0, 0.55, 0.4, 0.35, 0.33, 0.32, 0.3195, 0.319, 0.3188],
            "levelling-off",
            "more epochs would add little",
        ),
        (
            [1.0, 0.5, 0.4, 0.401, 0.4, 0.399, 0.4, 0.4, 0.3995],
            [1.0, 0.5, 0.45, 0.45, 0.45, 0.45, 0.45, 0.45, 0.45],
            "plateaued",
            "raise optimizer.lr or use a larger model",
        ),
        (
            [1.0, 0.7, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05],
            [1.0, 0.8, 0.6, 0.55, 0.6, 0.7, 0.8, 0.9, 1.0],
            "overfitting",
            "stop earlier",
        ),
        (
            [1.0, 0.3, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001],
            [1.0, 0.3, 0.1, 0.05, 0.048, 0.049, 0.05, 0.05, 0.051],
            "plateaued",
            "more epochs will not help",
        ),
        ([1.0, 0.8, 0.9, 1.5, 3.0, 8.0], [1.0, 0.8, 1.0, 2.0, 4.0, 9.0], "diverging", "lower optimizer.lr"),
        ([-1.0, -1.2, -1.1, -0.5, 1.0, 6.0], [-1.0, -1.2, -1.0, 0.0, 2.0, 7.0], "diverging", "lower optimizer.lr"),
        ([1.0, 0.8, float("nan")], [1.0, 0.9, float("nan")], "diverging", "lower optimizer.lr"),
        ([1.0, 0.8], [1.0, 0.9], "too-short", "train for more epochs"),
    ],
)
def test_diagnosis_names_each_curve_shape(train_losses, val_losses, shape, says):
    diagnosis = diagnose(history(train_losses, val_losses))
    assert diagnosis.shape == shape
    assert says in diagnosis.hint


@pytest.mark.parametrize("shift", [0.0, -5.0, 100.0])
def test_the_verdict_does_not_depend_on_where_the_loss_sits(shift):
    """A loss shifted by a constant (a negative log-likelihood's constant term) has the same curve."""
    rows = [
        {**row, "train/loss": row["train/loss"] + shift, "val/loss": row["val/loss"] + shift}
        for row in recorded.ROBUST_ADAPTIVE
    ]
    assert diagnose(rows, "val/mae", chance=ADAPTIVE_CHANCE) == diagnose(
        recorded.ROBUST_ADAPTIVE, "val/mae", chance=ADAPTIVE_CHANCE
    )


def test_overfitting_names_the_epoch_it_starts():
    diagnosis = diagnose(
        history([1.0, 0.7, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05], [1.0, 0.8, 0.6, 0.55, 0.6, 0.7, 0.8, 0.9, 1.0])
    )
    assert diagnosis.message.startswith("overfitting from epoch 5: validation loss rose 0.45 above its best (epoch 4)")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same tiny config at two learning rates."""
    folder = tmp_path_factory.mktemp("two")
    config = write_config(folder, trainer={"epochs": 4, "device": "cpu"})
    return [
        train(config, [f"optimizer.lr={lr}"], out=folder / f"lr{lr}", output=Output(quiet=True)) for lr in (0.001, 0.03)
    ]


def test_a_run_name_with_dollar_signs_is_drawn_as_written():
    """matplotlib reads text between two `$` as math; a run's name is drawn as written: its legend
    entry is as wide as the same characters drawn with math parsing off."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    name = "lr $0.1$ and $0.2$"
    rows = [{"epoch": 1, "train/loss": 1.0, "val/loss": 1.1, "val/accuracy": 0.5, "lr": 0.1}]
    figure = curves_figure([(name, rows, "val/accuracy")])
    renderer = FigureCanvasAgg(figure).get_renderer()
    drawn = figure.legends[0].get_texts()[0]
    as_written = figure.text(0, 0, name, parse_math=False, fontproperties=drawn.get_fontproperties())
    assert drawn.get_window_extent(renderer).width == as_written.get_window_extent(renderer).width


def test_logging_figures_false_draws_no_figures_and_plot_draws_them_later(cli, tmp_path):
    config = write_config(tmp_path, trainer={"epochs": 2, "device": "cpu"}, logging={"figures": False})
    run = train(config, out=tmp_path / "run", output=Output(quiet=True))
    assert not (run.run.path / "curves.png").exists()
    assert run.summary["diagnosis"]["message"]  # the diagnosis does not need the figure
    result = cli("plot", run.run.path, "-o", tmp_path / "later.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "later.png").read_bytes().startswith(PNG_SIGNATURE)


def test_every_run_writes_its_curves_and_diagnosis(two_runs):
    run = two_runs[0]
    assert (run.run.path / "curves.png").read_bytes().startswith(PNG_SIGNATURE)
    iris_validation = np.repeat([0, 1, 2], 5)  # 15 flowers, stratified: chance is 1/3
    expected = diagnose(
        read_jsonl(run.run.metrics_path),
        "val/accuracy",
        chance=chance_levels(Task("classification", num_classes=3), iris_validation),
    )
    assert "chance 0.3333" in expected.message
    assert run.summary["diagnosis"]["shape"] == expected.shape
    assert run.summary["diagnosis"]["message"] == expected.message


@pytest.mark.slow
def test_a_trained_run_with_a_warning_carries_it_into_its_diagnosis(tmp_path):
    config = write_config(tmp_path, model={"name": "mlp", "hidden": [16], "output_activation": "softmax"})
    result = train(config, out=tmp_path / "run", output=Output(quiet=True))
    message = result.summary["diagnosis"]["message"]
    assert message.endswith("; chance 0.3333; the checks before training warned: double-softmax")
    assert result.summary["diagnosis"]["hint"] == f"fix that first: {SEED_WARNINGS[0].fix}"


@pytest.mark.slow
def test_a_resumed_run_keeps_the_warning_in_its_diagnosis(tmp_path):
    config = write_config(
        tmp_path,
        model={"name": "mlp", "hidden": [16], "output_activation": "softmax"},
        trainer={"epochs": 2, "device": "cpu"},
    )
    first = train(config, out=tmp_path / "run", output=Output(quiet=True))
    assert first.summary["diagnosis"]["shape"] == "too-short"
    result = resume(first.run.path, ["trainer.epochs=4"], output=Output(quiet=True))
    assert result.summary["epochs_trained"] == 4
    assert result.summary["diagnosis"]["message"].endswith("; the checks before training warned: double-softmax")


def test_plot_overlays_two_lines_of_loss_and_one_of_metric_per_run(two_runs, tmp_path):
    curves = [(r.run.path.name, read_jsonl(r.run.metrics_path), r.summary["monitor"]) for r in two_runs]
    figure = plot_runs(curves, tmp_path / "both.png")
    loss_axes, metric_axes, _ = figure.axes
    assert len(loss_axes.get_lines()) == 4
    assert len([line for line in metric_axes.get_lines() if line.get_gid() != BEST_EPOCH]) == 2
    val_line = loss_axes.get_lines()[1]
    assert list(val_line.get_ydata()) == [row["val/loss"] for row in curves[0][1]]
    assert (tmp_path / "both.png").read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(
    "curve, loss_scale",
    [
        (recorded.DIGITS_MLP_20, "log"),  # 1.68 down to 0.0085: over two decades
        (recorded.SEED_TORCH_CE, "linear"),  # 2.29 down to 2.09
        (recorded.ROBUST_ADAPTIVE, "linear"),  # below zero: no logarithm
    ],
)
def test_losses_spanning_decades_are_drawn_on_a_log_axis(curve, loss_scale):
    monitor = "val/mae" if "val/mae" in curve[0] else "val/accuracy"
    loss_axes, metric_axes, _ = curves_figure([("run", curve, monitor)]).axes
    assert loss_axes.get_yscale() == loss_scale
    assert metric_axes.get_yscale() == "linear"


def test_the_legend_lies_outside_both_axes_and_names_runs_shortly():
    figure = curves_figure(
        [
            ("digits_mlp", recorded.DIGITS_MLP_20, "val/accuracy"),
            ("digits_mlp (trainer.epochs=40)", recorded.DIGITS_MLP_40, "val/accuracy"),
        ]
    )
    figure.draw_without_rendering()
    [legend] = figure.legends
    box = legend.get_window_extent()
    for axes in figure.axes:
        assert not box.overlaps(axes.get_window_extent())
        assert axes.get_legend() is None
    assert [text.get_text() for text in legend.get_texts()] == [
        "digits_mlp",
        "digits_mlp (trainer.epochs=40)",
        "train loss",
        "val loss",
        "best epoch",
    ]


@pytest.mark.parametrize(
    "curve, monitor, epoch, value",
    [
        (recorded.DIGITS_MLP_20, "val/accuracy", 11, 0.98333),  # the first epoch at the highest accuracy
        (recorded.ROBUST_ADAPTIVE, "val/mae", 96, 0.11261),  # the lowest error
    ],
)
def test_a_star_marks_the_best_epoch_of_the_monitored_metric(curve, monitor, epoch, value):
    _, metric_axes, _ = curves_figure([("run", curve, monitor)]).axes
    [marker] = [line for line in metric_axes.get_lines() if line.get_gid() == BEST_EPOCH]
    assert marker.get_marker() == "*"
    assert list(marker.get_xdata()) == [epoch]
    assert list(marker.get_ydata()) == [value]


def test_plot_command_writes_the_image(cli, two_runs, tmp_path):
    out = tmp_path / "overlay.png"
    result = cli("plot", *(r.run.path for r in two_runs), "-o", out)
    assert result.exit_code == 0, result.output
    assert f"written: {out} (2 runs)" in result.stdout
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    for suffix, signature in ((".svg", b"<?xml"), (".pdf", b"%PDF")):
        result = cli("plot", two_runs[0].run.path, "-o", tmp_path / f"overlay{suffix}")
        assert result.exit_code == 0, result.output
        assert (tmp_path / f"overlay{suffix}").read_bytes().startswith(signature)
    result = cli("plot", two_runs[0].run.path, "-o", tmp_path / "overlay.jpg")
    assert result.exit_code == 2
    assert "unknown image type '.jpg'; allowed: .png, .svg, .pdf" in result.stderr


def test_plot_help_names_every_image_type(cli):
    result = cli("plot", "--help")
    assert result.exit_code == 0
    assert "PNG" not in result.stdout
    assert "The image type follows the --output extension: .png, .svg or .pdf." in " ".join(result.stdout.split())


def test_compare_shows_differing_keys_and_marks_the_best(cli, two_runs):
    result = cli("compare", *(r.run.path for r in two_runs))
    assert result.exit_code == 0, result.output
    accuracies = [r.summary["test"]["accuracy"] for r in two_runs]
    lines = result.stdout.splitlines()
    assert "lr0.001" in lines[2] and "lr0.03" in lines[2]  # runs as columns, named by their folders
    assert any(line.startswith("│ optimizer.lr ") for line in lines)
    assert "trainer" not in result.stdout  # keys that are equal are left out
    row = next(line for line in lines if line.startswith("│ test/accuracy "))
    cells = [cell.strip() for cell in row.strip("│").split("│")[1:]]
    assert cells == [f"{a:.4f}*" if a == max(accuracies) else f"{a:.4f}" for a in accuracies]


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


@pytest.mark.parametrize("label", ["digits_mlp", "digits_mlp (optimizer.lr=0.01, model.hidden=[256, 256])"])
def test_the_legend_fits_inside_the_figure_whatever_the_label(label):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    rows = [{"epoch": e, "train/loss": 1 / e, "val/loss": 1.2 / e, "val/accuracy": 0.5 + e / 10} for e in (1, 2, 3)]
    figure = curves_figure([(label, rows, "val/accuracy")])
    FigureCanvasAgg(figure).draw()
    renderer = figure.canvas.get_renderer()
    legend = figure.legends[0].get_window_extent(renderer)
    assert 0 <= legend.x0 and legend.x1 <= figure.bbox.width  # nothing of it cut off at the edge
    for axes in figure.axes:
        assert axes.get_window_extent(renderer).x1 <= legend.x0  # and it covers no curve


def test_the_learning_rate_has_a_panel_of_its_own():
    figure = curves_figure([("digits_mlp", recorded.DIGITS_MLP_20, "val/accuracy")])
    [lr_axes] = [axes for axes in figure.axes if axes.get_ylabel() == "lr"]
    [line] = lr_axes.get_lines()
    assert list(line.get_xdata()) == list(range(1, 21))
    assert list(line.get_ydata()) == [row["lr"] for row in recorded.DIGITS_MLP_20]
    assert lr_axes.get_xlabel() == "epoch"
