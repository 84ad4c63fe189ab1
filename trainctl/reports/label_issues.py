"""Confident learning: which given labels are most likely wrong, from out-of-sample class
probabilities (Northcutt, Jiang, Chuang 2021, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 70, section 3). numpy only.

1. Per-class thresholds (Eq. 2): t_j = the mean probability of class j over the samples labelled j
   (the average self-confidence of class j).
2. The confident joint C (Eq. 1): a sample labelled i counts in C[i][j] when j is the most probable
   of the classes whose probability reaches their threshold; a sample that reaches no threshold is
   not counted.
3. Calibration (Eq. 3): each row i of C is scaled to the number of samples labelled i, so that the
   whole sums to n; rounded to whole samples keeping each row's total.
4. Prune by noise rate (section 3.2, "PBNR"): from the samples labelled i, the calibrated C[i][j]
   ones with the largest margin p_j − p_i are flagged, for every j ≠ i; a flagged sample whose most
   probable class is its given label is let go (as cleanlab does).
5. The flagged samples ranked by a label quality score, lowest first: self-confidence p_given, or
   the normalized margin p_given − max_{other} p.

Why prune by noise rate rather than "both" (its intersection with pruning by class): it is
cleanlab's default, every flagged sample comes from an off-diagonal cell (i, j) and so has a
better label to suggest, and on the few hundred samples of one test split the intersection only
loses planted errors (recall) for little precision.

Where this follows cleanlab (`cleanlab.count.compute_confident_joint`, `cleanlab.filter.
find_label_issues`) and where it differs, on purpose:
- a probability within 1e-6 of its threshold counts as reaching it, thresholds are at least 2e-6,
  and a class no sample is labelled with gets a threshold of 2 (no sample is counted into it);
- every diagonal count is at least 1 before calibration, so that every row can be scaled and a
  class whose samples reach no threshold keeps its labels;
- a sample above several thresholds goes to the most probable of those classes, as Eq. 1 says;
  cleanlab's code takes the most probable class overall, which can be one below its threshold;
- at least one sample of each class keeps its label: when the calibrated diagonal is 0, the
  largest off-diagonal count of the row gives up one (cleanlab spreads the difference over the
  row's off-diagonal counts, which for one missing sample ends the same but for ties).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOLERANCE = 1e-6  # a probability this close below its threshold reaches it (float noise at the mean)
THRESHOLD_FLOOR = 2 * TOLERANCE  # a threshold of ~0 would make every class confident
ABSENT_CLASS_THRESHOLD = 2.0  # above any probability: no sample is counted into a class nobody has
RANKINGS = ("self_confidence", "normalized_margin")


@dataclass
class LabelIssues:
    """The confident-learning estimates of a set of samples and the ones that look mislabelled."""

    thresholds: np.ndarray  # (classes,) t_j
    confident_joint: np.ndarray  # (classes, classes) counts C[given][true], diagonal at least 1
    calibrated_joint: np.ndarray  # (classes, classes) whole counts, row i sums to the samples labelled i
    order: np.ndarray  # indices of the flagged samples, most likely mislabelled first
    self_confidence: np.ndarray  # (n,) probability of the given label
    normalized_margin: np.ndarray  # (n,) p_given − max of the other classes' probabilities
    suggested: np.ndarray  # (n,) the most probable class of each sample


def per_class_thresholds(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """t_j: the mean probability of class j over the samples labelled j (Eq. 2)."""
    classes = probabilities.shape[1]
    counts = np.bincount(labels, minlength=classes)
    sums = np.bincount(labels, weights=probabilities[np.arange(len(labels)), labels], minlength=classes)
    means = np.divide(sums, counts, out=np.full(classes, ABSENT_CLASS_THRESHOLD), where=counts > 0)
    return np.maximum(means, THRESHOLD_FLOOR)


def confident_classes(probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Each sample's most probable class among those whose probability reaches their threshold
    (Eq. 1), or −1 for a sample that reaches none."""
    reached = probabilities >= thresholds - TOLERANCE
    best = np.where(reached, probabilities, -np.inf).argmax(axis=1)
    return np.where(reached.any(axis=1), best, -1)


def confident_joint(labels: np.ndarray, probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """C[i][j]: the samples labelled i confidently counted as class j; each diagonal at least 1."""
    classes = probabilities.shape[1]
    guessed = confident_classes(probabilities, thresholds)
    counted = guessed >= 0
    joint = np.bincount(labels[counted] * classes + guessed[counted], minlength=classes * classes)
    joint = joint.reshape(classes, classes)
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))
    return joint


def calibrate_joint(joint: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Eq. 3: row i of C scaled to the number of samples labelled i (so the whole sums to n),
    rounded to whole samples with each row's total kept."""
    counts = np.bincount(labels, minlength=len(joint))
    scaled = joint / joint.sum(axis=1, keepdims=True) * counts[:, None]  # rows never sum to 0: diagonal ≥ 1
    return np.stack([round_keeping_total(row, int(total)) for row, total in zip(scaled, counts)])


def round_keeping_total(values: np.ndarray, total: int) -> np.ndarray:
    """Whole numbers summing to `total`: every value rounded down, then one more for the values with
    the largest remainders (the earlier one on a tie) until the total is reached."""
    floors = np.floor(values + 1e-9).astype(np.int64)  # 2.9999999 from float division is 3
    missing = total - int(floors.sum())
    remainders = values - floors
    for index in np.argsort(-remainders, kind="stable")[: max(missing, 0)]:
        floors[index] += 1
    return floors


def prune_by_noise_rate(labels: np.ndarray, probabilities: np.ndarray, calibrated: np.ndarray) -> np.ndarray:
    """A mask of the samples flagged: for every given class i and other class j, the calibrated
    C[i][j] samples labelled i with the largest p_j − p_i; at least one sample of each class is kept."""
    flagged = np.zeros(len(labels), dtype=bool)
    for given in range(len(calibrated)):
        members = np.flatnonzero(labels == given)
        counts = _keep_one(calibrated[given].copy(), given)
        for other in np.flatnonzero(counts):
            if other == given:
                continue
            margin = probabilities[members, other] - probabilities[members, given]
            flagged[members[np.argsort(-margin, kind="stable")[: counts[other]]]] = True
    return flagged


def _keep_one(row: np.ndarray, given: int) -> np.ndarray:
    """A calibrated row whose diagonal is 0 would flag every sample of the class: its largest
    off-diagonal count gives one back."""
    if row[given] == 0 and row.sum() > 0:
        row[int(np.argmax(row))] -= 1
        row[given] = 1
    return row


def quality_scores(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's self-confidence p_given and normalized margin p_given − max of the others."""
    index = np.arange(len(labels))
    own = probabilities[index, labels]
    others = probabilities.copy()
    others[index, labels] = -np.inf
    return own, own - others.max(axis=1)


def find_label_issues(labels: np.ndarray, probabilities: np.ndarray, rank_by: str = "self_confidence") -> LabelIssues:
    """Confident learning on given labels (n,) and out-of-sample probabilities (n, classes)."""
    if rank_by not in RANKINGS:
        raise ValueError(f"rank_by {rank_by!r}: allowed {', '.join(RANKINGS)}")
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    thresholds = per_class_thresholds(labels, probabilities)
    joint = confident_joint(labels, probabilities, thresholds)
    calibrated = calibrate_joint(joint, labels)
    suggested = probabilities.argmax(axis=1)
    flagged = prune_by_noise_rate(labels, probabilities, calibrated) & (suggested != labels)
    own, margin = quality_scores(labels, probabilities)
    score = own if rank_by == "self_confidence" else margin
    indices = np.flatnonzero(flagged)
    order = indices[np.argsort(score[indices], kind="stable")]
    return LabelIssues(thresholds, joint, calibrated, order, own, margin, suggested)


def rank_by_loss(labels: np.ndarray, predictions: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """Without probabilities: the misclassified samples, highest loss first (the earlier on a tie)."""
    wrong = np.flatnonzero(np.asarray(predictions) != np.asarray(labels))
    return wrong[np.argsort(-np.asarray(losses)[wrong], kind="stable")]
