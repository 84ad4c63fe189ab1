"""`trainctl label-issues`: the samples whose given label looks wrong, from a run's per-sample
results (test_predictions.csv, or eval's eval-SPLIT-CHECKPOINT-predictions.csv) or from a
cross-validation folder's out-of-fold results (oof.csv, every sample of the dataset once per
repeat).

With each class's probability in the file (prob_NAME columns), confident learning
(`trainctl.reports.label_issues`) flags the samples; a file without them (written before trainctl
kept them, or a run whose loss gives no probabilities) falls back to the misclassified samples,
highest loss first, and says so. No torch.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.errors import UserError
from trainctl.reports.cross_validation import OOF_FILE
from trainctl.reports.groups import is_group
from trainctl.reports.label_issues import find_label_issues, rank_by_loss
from trainctl.reports.samples import SAMPLES_FILE, SampleTable, file_class_names, read_samples
from trainctl.run_contents import read_data_description

DATA_FILE = "data.json"
CONFIDENT_LEARNING = "confident learning"
LOSS_RANKING = "loss"


@dataclass
class LabelIssueReport:
    """The samples that look mislabelled, most likely first, and how they were found."""

    path: Path  # the per-sample file read
    samples: SampleTable  # one entry per dataset row (repeats of a row averaged)
    class_names: list[str]
    method: str  # CONFIDENT_LEARNING or LOSS_RANKING
    order: np.ndarray  # indices into samples, most likely mislabelled first
    suggested: np.ndarray  # each sample's suggested class (its most probable, or the prediction)
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # self_confidence, normalized_margin
    notes: list[str] = field(default_factory=list)  # what the reader should know about the list

    def count_line(self) -> str:
        found, total = len(self.order), len(self.samples.rows)
        share = f"{found} of {total} samples ({100 * found / total:.1f}%)" if total else "0 of 0 samples"
        if self.method == CONFIDENT_LEARNING:
            return f"{share} look mislabelled"
        return f"{share} are misclassified: without probabilities they are the candidates, highest loss first"

    def columns(self, limit: int | None = None) -> dict[str, list[Any]]:
        """The flagged samples as columns (the CSV's, and the table's before formatting)."""
        chosen = self.order[:limit]
        s, names = self.samples, self.class_names
        columns: dict[str, list[Any]] = {"row": [int(s.rows[k]) for k in chosen]}
        if s.files is not None:
            columns["file"] = [s.files[k] for k in chosen]
        columns["given"] = [names[int(s.targets[k])] for k in chosen]
        columns["suggested"] = [names[int(self.suggested[k])] for k in chosen]
        for name, values in self.scores.items():
            columns[name] = [float(values[k]) for k in chosen]
        columns["loss"] = [float(s.losses[k]) for k in chosen]
        return columns


def label_issue_report(source: Path, rank_by: str = "self_confidence") -> LabelIssueReport:
    """Read a run folder, a cross-validation folder or a per-sample file and find its label issues."""
    path = samples_path(source)
    class_names, notes = _class_names(path)
    samples = merge_repeated_rows(read_samples(path, class_names), path)
    if path.name.startswith("eval-train-"):
        notes.append(
            "these are the training split's probabilities: the model learnt these labels, wrong ones "
            "too, so few look wrong; the test split (or cross-validation's oof.csv) is out-of-sample"
        )
    if samples.probabilities is None:
        notes.append(_no_probabilities_note(path, samples))
        order = rank_by_loss(samples.targets, samples.predictions, samples.losses)
        return LabelIssueReport(path, samples, class_names, LOSS_RANKING, order, samples.predictions, {}, notes)
    issues = find_label_issues(samples.targets, samples.probabilities, rank_by)
    scores = {"self_confidence": issues.self_confidence, "normalized_margin": issues.normalized_margin}
    if rank_by == "normalized_margin":
        scores = dict(reversed(scores.items()))  # the ranking's score first
    ranking = rank_by.replace("_", "-")
    notes.insert(0, f"{path}: confident learning (prune by noise rate) on {len(samples.rows)} samples, by {ranking}")
    return LabelIssueReport(
        path, samples, class_names, CONFIDENT_LEARNING, issues.order, issues.suggested, scores, notes
    )


def samples_path(source: Path) -> Path:
    """The per-sample file to read: the file given, a cv folder's oof.csv or a run's test_predictions.csv."""
    if source.is_file():
        return source
    if not source.is_dir():
        raise UserError(f"{source}: no such file or folder")
    for name in (OOF_FILE, SAMPLES_FILE):
        if (source / name).is_file():
            return source / name
    if is_group(source):
        raise UserError(f"{source}: a group of runs; give one of its runs (each has its own {SAMPLES_FILE})")
    if (source / "config.yaml").is_file():
        raise UserError(
            f"{source}: no per-sample test results ({SAMPLES_FILE}): run trainctl eval {source} to write them"
        )
    raise UserError(
        f"{source}: neither a run folder ({SAMPLES_FILE}) nor a cross-validation folder ({OOF_FILE}); "
        "give one of those or a per-sample CSV file"
    )


def _class_names(path: Path) -> tuple[list[str], list[str]]:
    """The run's class names from the data.json beside the file (a run's) or in the folders below
    it (a cv folder's fold runs); without one, the names the file holds. A regression run is refused."""
    description = _data_description(path)
    if description is not None:
        _refuse_regression(path, description["task"]["kind"])
        return list(description["task"]["class_names"]), []
    names = file_class_names(path)
    if names is None:  # several target columns: values, not classes
        _refuse_regression(path, "regression")
    assert names is not None
    return names, [f"no {DATA_FILE} beside {path.name}: the classes are the ones the file names"]


def _refuse_regression(path: Path, kind: str) -> None:
    if kind != "classification":
        raise UserError(
            f"{path}: a {kind} run; label issues are looked for in classification runs only "
            "(confident learning finds class labels that look wrong)"
        )


def _data_description(path: Path) -> dict[str, Any] | None:
    """data.json beside a run's file; for a cv folder's oof.csv, the first fold run's below it."""
    folder = path.parent
    candidates = [folder / DATA_FILE]
    if path.name == OOF_FILE:  # the fold runs: FOLDER/fold-K/ or FOLDER/repeat-R/fold-K/
        candidates += [*sorted(folder.glob(f"*/{DATA_FILE}")), *sorted(folder.glob(f"*/*/{DATA_FILE}"))]
    for candidate in candidates:
        if candidate.is_file():
            return read_data_description(candidate)
    return None


def _no_probabilities_note(path: Path, samples: SampleTable) -> str:
    if samples.confidences is not None:  # a classifier with probabilities, written before they were kept
        why = "it was written before trainctl kept each class's probability; trainctl eval RUN writes it again"
    else:
        why = "the run's loss gives no class probabilities"
    return f"{path.name} has no class probabilities ({why}): ranked by per-sample loss instead of confident learning"


def merge_repeated_rows(samples: SampleTable, path: Path) -> SampleTable:
    """One entry per dataset row: cross-validation repeated R times holds each row R times, scored
    by R different models. Their probabilities and losses are averaged (an ensemble of out-of-sample
    predictions); the prediction is the averaged probabilities' most probable class, or without
    probabilities the most frequent prediction."""
    rows, first, inverse, counts = np.unique(samples.rows, return_index=True, return_inverse=True, return_counts=True)
    if len(rows) == len(samples.rows):
        return samples
    if np.any(samples.targets != samples.targets[first][inverse]):
        raise UserError(f"{path}: a row appears with different targets; the file is damaged")
    probabilities = _mean_by_row(samples.probabilities, inverse, counts) if samples.probabilities is not None else None
    if probabilities is not None:
        predictions = probabilities.argmax(axis=1)
    else:
        predictions = np.array([_most_frequent(samples.predictions[inverse == k]) for k in range(len(rows))])
    return replace(
        samples,
        rows=rows,
        targets=samples.targets[first],
        predictions=predictions,
        confidences=probabilities.max(axis=1) if probabilities is not None else None,
        losses=_mean_by_row(samples.losses, inverse, counts),
        probabilities=probabilities,
        files=[samples.files[k] for k in first] if samples.files is not None else None,
    )


def _mean_by_row(values: np.ndarray, inverse: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The mean of the entries of each row (`inverse`: each entry's row, `counts`: entries per row)."""
    sums = np.zeros((len(counts), *values.shape[1:]))
    np.add.at(sums, inverse, values)
    return sums / counts.reshape(-1, *[1] * (values.ndim - 1))


def _most_frequent(values: np.ndarray) -> int:
    """The most frequent class; the smallest on a tie."""
    counted = Counter(int(v) for v in values)
    return min(counted, key=lambda k: (-counted[k], k))


def table_rows(report: LabelIssueReport, top: int) -> tuple[list[str], list[list[str]]]:
    """The first `top` flagged samples as the terminal table shows them: headers and text cells."""
    columns = report.columns(top)
    score = next(iter(report.scores), "loss")  # the score the list is ranked by
    shown = [name for name in columns if name in ("row", "file", "given", "suggested", score)]
    headers = [name.replace("_", "-") for name in shown]
    cells = [[_cell(value) for value in values] for values in zip(*(columns[name] for name in shown))]
    return headers, cells


def _cell(value: Any) -> str:
    """Four decimals; a probability below 0.001 in two significant digits (0.0000 would hide it)."""
    if not isinstance(value, float) or not math.isfinite(value):
        return str(value)
    return f"{value:.1e}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
