"""One run's section of an HTML report, from the files of its folder alone (no torch, no data set):
the summary and test metrics, the curves, the confusion matrix and per-class metrics, calibration,
the highest-loss test samples (thumbnails of image files), and the resolved config.

A classification run's confusion matrix is summary.json's; a run whose summary lacks it gets it
counted from test_predictions.csv. Per-class precision, recall and F1 are computed from the matrix
the page shows, so the two always agree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.components.metrics import per_class
from trainctl.errors import UserError
from trainctl.reports.html_page import (
    Html,
    element,
    format_number,
    join,
    number_cell,
    paragraph,
    png_image,
    preformatted,
    section,
    table,
)
from trainctl.reports.samples import SAMPLES_FILE, SampleTable, read_samples
from trainctl.run_contents import monitor_of, read_data_description, read_summary
from trainctl.runs import RunFolder

WORST_SHOWN = 12  # highest-loss test samples listed


@dataclass
class RunFiles:
    """What a run folder holds, read and checked."""

    folder: RunFolder
    config: dict[str, Any]
    config_text: str
    metrics: list[dict[str, Any]]
    monitor: str
    summary: dict[str, Any]  # {} while the run has not finished
    class_names: list[str] | None  # classification runs
    samples: SampleTable | None  # test_predictions.csv
    files: list[str] | None  # each test sample's file (image and audio folders)

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.folder.path.name)

    @property
    def test(self) -> dict[str, Any]:
        return self.summary.get("test", {})


def read_run(path: Path) -> RunFiles:
    folder = RunFolder.open(path)
    config = folder.read_config()
    summary = read_summary(folder.summary_path)
    class_names = class_names_of(path, summary)
    samples_path = path / SAMPLES_FILE
    samples = read_samples(samples_path, class_names) if samples_path.is_file() else None
    return RunFiles(
        folder,
        config,
        folder.config_path.read_text(encoding="utf-8"),
        folder.read_metrics(),
        monitor_of(config, folder.config_path),
        summary,
        class_names,
        samples,
        samples.files if samples is not None else None,
    )


def class_names_of(path: Path, summary: dict[str, Any]) -> list[str] | None:
    """data.json's class names; for a run from before data.json, the per-class record's (in class order)."""
    if (path / "data.json").is_file():
        task = read_data_description(path / "data.json")["task"]
        return list(task["class_names"]) if task["kind"] == "classification" else None
    recorded = summary.get("test", {}).get("per_class")
    return list(recorded) if isinstance(recorded, dict) and recorded else None


# ---- what the page shows, computed from the files --------------------------------------------------


def confusion_matrix(run: RunFiles) -> np.ndarray | None:
    """Counts, rows true classes and columns predicted ones: summary.json's, else counted from the samples."""
    if run.class_names is None:
        return None
    n = len(run.class_names)
    stored = run.test.get("confusion_matrix")
    if stored is not None:
        matrix = np.asarray(stored, dtype=object)
        if matrix.shape != (n, n) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in matrix.flat
        ):
            raise UserError(
                f"{run.folder.summary_path}: test.confusion_matrix is not a {n}×{n} matrix of counts; the file is damaged"
            )
        return matrix.astype(np.int64)
    if run.samples is None:
        return None
    return counted_confusion(run.samples.targets, run.samples.predictions, n)


def counted_confusion(targets: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    return np.bincount(targets * classes + predictions, minlength=classes * classes).reshape(classes, classes)


def highest_loss(samples: SampleTable, count: int = WORST_SHOWN) -> np.ndarray:
    """Positions in the file of the `count` highest losses, highest first (ties in file order)."""
    return np.argsort(-samples.losses, kind="stable")[:count]


def finished_at(run: RunFiles) -> str:
    """When the run last wrote its results: summary.json's time, else its last epoch's."""
    for path in (run.folder.summary_path, run.folder.metrics_path):
        if path.is_file():
            return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(path.stat().st_mtime)).strip()
    return "unknown"


# ---- the section ---------------------------------------------------------------------------------


def run_section(path: Path, level: int = 2, title: str | None = None) -> Html:
    """The whole section of one run; `level` is its heading's (h2 on a run's page, deeper inside others)."""
    from trainctl.reports.report_figures import curves_png

    run = read_run(path)
    parts: list[Any] = [paragraph(_run_line(run), class_="meta")]
    parts.append(_summary_part(run, level + 1))
    if run.metrics:
        curves = curves_png([(run.name, run.metrics, run.monitor)])
        parts.append(section("curves", element("figure", png_image(curves, f"curves of {run.name}")), level=level + 1))
    confusion = confusion_matrix(run)
    if confusion is not None and run.class_names is not None:
        parts.append(classes_part(confusion, run.class_names, level + 1))
    if isinstance(run.test.get("calibration"), dict):
        parts.append(_calibration_part(run, level + 1))
    if run.samples is not None and len(run.samples.losses):
        parts.append(_highest_loss_part(run, level + 1))
    parts.append(section("config (resolved, as it ran)", preformatted(run.config_text), level=level + 1))
    return section(title or f"run {run.name}", *parts, level=level, id_="run")


def _run_line(run: RunFiles) -> str:
    summary = run.summary
    if not summary:
        return (
            f"folder {run.folder.path.name}; no summary.json yet: the run has not finished or was "
            f"interrupted ({len(run.metrics)} epochs written, the last at {finished_at(run)})"
        )
    trained = f"trained {len(run.metrics)} epochs"
    if isinstance(summary.get("train_seconds"), (int, float)):
        trained += f" in {summary['train_seconds']:.1f} s"
    if isinstance(summary.get("device"), str):
        trained += f" on {summary['device']}"
    return f"folder {run.folder.path.name}; finished {finished_at(run)}; {trained}"


def _summary_part(run: RunFiles, level: int) -> Html:
    summary = run.summary
    lines: list[Any] = []
    if summary.get("best_epoch") is not None:
        value = summary.get("best_value")
        shown = f" ({run.monitor} {format_number(value)})" if isinstance(value, (int, float)) else ""
        lines.append(paragraph(f"best epoch {summary['best_epoch']}{shown}, the checkpoint the test scores"))
    if summary.get("stopped_early"):
        lines.append(paragraph("stopped early (trainer.early_stopping)"))
    diagnosis = summary.get("diagnosis")
    if isinstance(diagnosis, dict) and diagnosis.get("message"):
        hint = f"; {diagnosis['hint']}" if diagnosis.get("hint") else ""
        lines.append(paragraph(f"curves: {diagnosis['message']}{hint}", class_="note"))
    metrics = [(key, value) for key, value in run.test.items() if isinstance(value, float)]
    if metrics:
        caption = (
            f"test metrics ({run.test.get('split', 'test')} split, {run.test.get('checkpoint', 'best')} checkpoint)"
        )
        rows = [[key, number_cell(value)] for key, value in metrics]
        lines.append(table(["metric", "value"], rows, caption=caption, class_="test-metrics"))
    return section("summary", *lines, level=level)


def classes_part(confusion: np.ndarray, class_names: list[str], level: int) -> Html:
    """The confusion matrix as a heat map (its counts behind a fold) and the per-class metrics."""
    from trainctl.reports.report_figures import confusion_png

    counts_table = table(
        ["true \\ predicted", *class_names],
        [[name, *(number_cell(int(count)) for count in row)] for name, row in zip(class_names, confusion)],
        class_="confusion-counts",
    )
    stats = per_class(confusion)
    rows = [
        [
            name,
            *(number_cell(float(stats[key][k])) for key in ("precision", "recall", "f1")),
            number_cell(int(stats["support"][k])),
        ]
        for k, name in enumerate(class_names)
    ]
    return join(
        [
            section(
                "confusion matrix",
                element("figure", png_image(confusion_png(confusion, class_names), "confusion matrix heat map")),
                element("details", element("summary", "the counts as a table"), counts_table),
                level=level,
            ),
            section(
                "per-class metrics",
                table(["class", "precision", "recall", "F1", "support"], rows, class_="per-class"),
                level=level,
            ),
        ]
    )


def _calibration_part(run: RunFiles, level: int) -> Html:
    from trainctl.reports.report_figures import reliability_png

    record = run.test
    problem = _calibration_problem(record)
    if problem:
        raise UserError(f"{run.folder.summary_path}: {problem}; the file is damaged")
    calibration = record["calibration"]
    if "temperature" in calibration:
        line = (
            f"expected calibration error (ECE, {calibration['bins']} bins): {format_number(calibration['ece_before'])} "
            f"before temperature scaling, {format_number(record['ece'])} after it "
            f"(T = {calibration['temperature']:.3f}, fitted on the validation split; trainer.calibrate)"
        )
    else:
        line = f"expected calibration error (ECE, {calibration['bins']} bins): {format_number(record['ece'])}"
    figure = element(
        "figure", png_image(reliability_png(record, run.name), "reliability diagram"), class_="reliability"
    )
    return section("calibration", paragraph(line, class_="ece"), figure, level=level)


def _calibration_problem(record: dict[str, Any]) -> str | None:
    calibration = record["calibration"]
    keys = ["reliability"] + (["reliability_before"] if "temperature" in calibration else [])
    if not isinstance(calibration.get("bins"), int) or not isinstance(record.get("ece"), float):
        return "test.calibration has no bins count or test has no ece"
    if "temperature" in calibration and not all(
        isinstance(calibration.get(k), (int, float)) for k in ("temperature", "ece_before")
    ):
        return "test.calibration has a temperature but no ece_before"
    bin_keys = ("lower", "upper", "count", "confidence", "accuracy")
    for key in keys:
        bins = calibration.get(key)
        if not isinstance(bins, list) or not all(isinstance(b, dict) and all(k in b for k in bin_keys) for b in bins):
            return f"test.calibration.{key} is not a list of bins"
    return None


def _highest_loss_part(run: RunFiles, level: int) -> Html:
    from trainctl.reports.report_figures import thumbnail_png

    samples = run.samples
    assert samples is not None
    header = ["row", "target", "prediction"] + (["confidence"] if samples.confidences is not None else []) + ["loss"]
    if run.files is not None:
        header += ["image", "file"]
    rows = []
    for position in highest_loss(samples):
        row: list[Any] = [
            number_cell(int(samples.rows[position])),
            _value_text(samples.targets[position], run.class_names),
            _value_text(samples.predictions[position], run.class_names),
        ]
        if samples.confidences is not None:
            row.append(number_cell(float(samples.confidences[position])))
        row.append(number_cell(float(samples.losses[position])))
        if run.files is not None:
            file = run.files[position]
            thumbnail = thumbnail_png(Path(file))
            row.append(png_image(thumbnail, f"row {samples.rows[position]}", class_="thumbnail") if thumbnail else "—")
            row.append(element("code", file))
        rows.append(row)
    shown = min(WORST_SHOWN, len(samples.losses))
    note = paragraph(
        f"the {shown} test samples with the highest loss of {len(samples.losses)} ({SAMPLES_FILE}); "
        "row is the sample's row in the data set: mislabelled samples and outliers show up here",
        class_="note",
    )
    return section("highest-loss test samples", note, table(header, rows, class_="highest-loss"), level=level)


def _value_text(value: Any, class_names: list[str] | None) -> str:
    if class_names is not None:
        return class_names[int(value)]
    values = np.atleast_1d(value)
    return ", ".join(format_number(float(v)) for v in values)
