"""Label issues: confident learning against hand-computed cases and the paper's exact-recovery case,
the per-class probabilities a run writes (against a forward pass by hand), the reader of old,
new and out-of-fold files, the command's output and its refusals, and labels flipped on purpose
in digits found again by a real run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from trainctl.reports.label_issues import (
    calibrate_joint,
    confident_classes,
    confident_joint,
    find_label_issues,
    per_class_thresholds,
    rank_by_loss,
    round_keeping_total,
)
from trainctl.reports.samples import read_samples, write_samples
from trainctl.runs import RunFolder

from helpers import run_cli, write_config

# ---- confident learning by hand -----------------------------------------------------------------

# Nine samples, three classes, three given labels each.
HAND_LABELS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
HAND_PROBABILITIES = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.7, 0.2, 0.1],
        [0.1, 0.8, 0.1],  # labelled 0, looks like 1
        [0.2, 0.7, 0.1],
        [0.1, 0.6, 0.3],
        [0.3, 0.5, 0.2],  # reaches no threshold
        [0.1, 0.2, 0.7],
        [0.1, 0.1, 0.8],
        [0.55, 0.4, 0.05],  # labelled 2, looks like 0
    ]
)
# Thresholds (Eq. 2), the mean probability of each class over the samples labelled with it:
#   t0 = (0.8 + 0.7 + 0.1) / 3 = 0.5333…   t1 = (0.7 + 0.6 + 0.5) / 3 = 0.6   t2 = (0.7 + 0.8 + 0.05) / 3 = 0.5166…
# Confident counting (Eq. 1), each sample's class among those reaching their threshold:
#   samples 0, 1 → 0 (0.8, 0.7 ≥ t0); sample 2 → 1 (0.8 ≥ t1, 0.1 < t0); samples 3, 4 → 1 (0.7, and 0.6 = t1:
#   reaching counts); sample 5 → none (0.3 < t0, 0.5 < t1, 0.2 < t2); samples 6, 7 → 2; sample 8 → 0 (0.55 ≥ t0,
#   0.4 < t1, 0.05 < t2).
HAND_JOINT = [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
# Calibration (Eq. 3): each row scaled to its 3 labelled samples; rows 0 and 2 already sum to 3, row 1 is
# [0, 2, 0] · 3/2 (sample 5, not counted, is taken as labelled right).
HAND_CALIBRATED = [[2, 1, 0], [0, 3, 0], [1, 0, 2]]
# Prune by noise rate: C[0][1] = 1 → of samples 0, 1, 2 the one with the largest p1 − p0 (−0.7, −0.5, 0.7): 2;
# C[2][0] = 1 → of samples 6, 7, 8 the largest p0 − p2 (−0.6, −0.7, 0.5): 8. Neither's most probable class is
# its label. Self-confidence: p_given(2) = 0.1, p_given(8) = 0.05 → [8, 2]; normalized margin:
# 0.1 − 0.8 = −0.7 and 0.05 − 0.55 = −0.5 → [2, 8].


def test_thresholds_confident_joint_and_issues_of_a_hand_computed_case():
    thresholds = per_class_thresholds(HAND_LABELS, HAND_PROBABILITIES)
    assert thresholds == pytest.approx([1.6 / 3, 0.6, 1.55 / 3], abs=1e-12)
    assert confident_classes(HAND_PROBABILITIES, thresholds).tolist() == [0, 0, 1, 1, 1, -1, 2, 2, 0]
    assert confident_joint(HAND_LABELS, HAND_PROBABILITIES, thresholds).tolist() == HAND_JOINT
    by_confidence = find_label_issues(HAND_LABELS, HAND_PROBABILITIES)
    assert by_confidence.calibrated_joint.tolist() == HAND_CALIBRATED
    assert by_confidence.order.tolist() == [8, 2]
    assert by_confidence.suggested[[8, 2]].tolist() == [0, 1]
    assert by_confidence.self_confidence[[8, 2]] == pytest.approx([0.05, 0.1])
    assert by_confidence.normalized_margin[[8, 2]] == pytest.approx([-0.5, -0.7])
    assert find_label_issues(HAND_LABELS, HAND_PROBABILITIES, "normalized_margin").order.tolist() == [2, 8]


def test_calibration_scales_rows_to_the_label_counts_and_rounds_keeping_each_total():
    # Labels: ten 0s, five 1s, three 2s. Row 0 [5, 2, 1] · 10/8 = [6.25, 2.5, 1.25]: floors [6, 2, 1] = 9, one
    # more to the largest remainder (0.5) → [6, 3, 1]. Row 1 [1, 3, 0] · 5/4 = [1.25, 3.75, 0] → [1, 4, 0].
    # Row 2 [0, 1, 1] · 3/2 = [0, 1.5, 1.5]: floors [0, 1, 1] = 2, a tie of remainders → the earlier: [0, 2, 1].
    labels = np.array([0] * 10 + [1] * 5 + [2] * 3)
    calibrated = calibrate_joint(np.array([[5, 2, 1], [1, 3, 0], [0, 1, 1]]), labels)
    assert calibrated.tolist() == [[6, 3, 1], [1, 4, 0], [0, 2, 1]]
    assert round_keeping_total(np.array([0.2, 0.2, 0.6]), 1).tolist() == [0, 0, 1]


def test_exact_recovery_under_ideal_probabilities_as_the_paper_and_cleanlab_describe():
    # The paper (section 4, exact label-error finding): when each sample's probabilities are those of its true
    # class, the calibrated confident joint's off-diagonal is the label errors and pruning finds exactly them.
    # Three classes, ten true samples each; clean ones have 0.8 on their class and 0.1 elsewhere. Flipped:
    # rows 0 and 1 (true 0, given 1), row 20 (true 2, given 0); each keeps 0.8 on its true class.
    true = np.repeat([0, 1, 2], 10)
    probabilities = np.full((30, 3), 0.1)
    probabilities[np.arange(30), true] = 0.8
    probabilities[0] = [0.8, 0.15, 0.05]
    probabilities[1] = [0.8, 0.05, 0.15]
    labels = true.copy()
    labels[[0, 1]], labels[20] = 1, 0
    # Given 0: rows 2-9 and 20, t0 = (8·0.8 + 0.1)/9 = 0.722; given 1: rows 0, 1, 10-19, t1 = (10·0.8 + 0.15 +
    # 0.05)/12 = 0.683; given 2: rows 21-29, t2 = 0.8. Clean rows count on the diagonal, the flips at (1, 0) twice
    # and (0, 2) once; rows already sum to the label counts (9, 12, 9), so calibration changes nothing:
    issues = find_label_issues(labels, probabilities)
    assert issues.confident_joint.tolist() == [[8, 0, 1], [2, 10, 0], [0, 0, 9]]
    assert issues.calibrated_joint.tolist() == [[8, 0, 1], [2, 10, 0], [0, 0, 9]]
    # cleanlab's documented invariants of the calibrated joint: it sums to n, its rows to bincount(labels).
    assert issues.calibrated_joint.sum() == 30
    assert issues.calibrated_joint.sum(axis=1).tolist() == np.bincount(labels).tolist()
    # find_label_issues(filter_by="prune_by_noise_rate", return_indices_ranked_by="self_confidence"): exactly the
    # flips, by the given label's probability: row 1 (0.05), row 20 (0.1), row 0 (0.15); suggested: the true class.
    assert issues.order.tolist() == [1, 20, 0]
    assert issues.suggested[[1, 20, 0]].tolist() == [0, 2, 0]


def test_a_sample_above_several_thresholds_counts_as_its_most_probable_confident_class():
    # Eq. 1 takes the argmax over the classes that reach their threshold: with t = [0.9, 0.3, 0.2] the sample
    # [0.4, 0.35, 0.25] reaches classes 1 and 2, and counts as 1, not as 0 (the most probable overall, which
    # is below its threshold; cleanlab's code would count it there).
    probabilities = np.array([[0.4, 0.35, 0.25]])
    assert confident_classes(probabilities, np.array([0.9, 0.3, 0.2])).tolist() == [1]
    assert confident_classes(probabilities, np.array([0.9, 0.5, 0.5])).tolist() == [-1]


def test_a_class_whose_every_sample_looks_like_another_keeps_one():
    # Given 0: three samples, all with p1 = 0.9; t0 = 0.1, t1 = 0.9. C row 0 = [1 (the floor of the diagonal), 3,
    # 0] → calibrated [0.75, 2.25, 0] → [1, 2, 0]: two flagged, the one with the smallest p1 − p0 keeps its label.
    labels = np.array([0, 0, 0, 1, 1])
    probabilities = np.array([[0.1, 0.9], [0.12, 0.88], [0.08, 0.92], [0.1, 0.9], [0.1, 0.9]])
    issues = find_label_issues(labels, probabilities)
    assert issues.calibrated_joint[0].tolist() == [1, 2]
    assert issues.order.tolist() == [2, 0]


def test_without_probabilities_the_misclassified_samples_rank_by_loss():
    labels = np.array([0, 1, 2, 1, 0])
    predictions = np.array([0, 2, 2, 0, 1])
    losses = np.array([0.1, 1.5, 0.2, 2.5, 1.5])
    assert rank_by_loss(labels, predictions, losses).tolist() == [3, 1, 4]  # a tie: the earlier first


# ---- the files: a run's, an older one, cross-validation's -----------------------------------------

CLASSES = ["cat", "dog", "fox"]


def write_run(folder, columns, *, kind="classification"):
    """A finished run as label-issues reads it: data.json and test_predictions.csv."""
    folder.mkdir(parents=True)
    task = {"kind": kind, "num_classes": 3 if kind == "classification" else 0, "num_targets": 1}
    task["class_names"] = CLASSES if kind == "classification" else []
    description = {"task": task, "input_shape": [4], "target_mean": None, "target_std": None}
    RunFolder(folder).write_json("data.json", description)
    (folder / "config.yaml").write_text("name: hand\n")
    write_samples(folder / "test_predictions.csv", columns)
    return folder


def hand_columns(with_probabilities=True, files=False):
    """The hand-computed case above as a run's per-sample file, dataset rows 100-108."""
    names = [CLASSES[k] for k in HAND_LABELS]
    predictions = [CLASSES[k] for k in HAND_PROBABILITIES.argmax(axis=1)]
    columns = {"row": list(range(100, 109)), "target": names, "prediction": predictions}
    columns["confidence"] = HAND_PROBABILITIES.max(axis=1).tolist()
    if with_probabilities:
        columns.update({f"prob_{name}": HAND_PROBABILITIES[:, k].tolist() for k, name in enumerate(CLASSES)})
    columns["loss"] = (-np.log(HAND_PROBABILITIES[np.arange(9), HAND_LABELS])).tolist()
    if files:
        columns["file"] = [f"images/{k}.png" for k in range(9)]
    return columns


def test_the_reader_takes_probabilities_files_and_files_written_before_them(tmp_path):
    run = write_run(tmp_path / "run", hand_columns(files=True))
    table = read_samples(run / "test_predictions.csv", CLASSES)
    assert table.probabilities.tolist() == HAND_PROBABILITIES.tolist()
    assert table.files[2] == "images/2.png"
    older = write_run(tmp_path / "older", hand_columns(with_probabilities=False))
    table = read_samples(older / "test_predictions.csv", CLASSES)
    assert table.probabilities is None and table.files is None
    assert table.targets.tolist() == HAND_LABELS.tolist()


def test_a_damaged_probability_is_one_line_with_the_file_and_line(tmp_path, cli):
    columns = hand_columns()
    columns["prob_dog"][3] = 1.5
    run = write_run(tmp_path / "run", columns)
    result = cli("label-issues", run)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {run / 'test_predictions.csv'}:5: probability '1.5' is not between 0 and 1; the file is damaged"
    )


def test_out_of_fold_results_with_repeats_are_averaged_per_row(tmp_path, cli):
    # cv's oof.csv: fold and repeat in front of the folds' test_predictions.csv columns; every row twice (two
    # repeats), the same but for row 108 (sample 8), [0.45, 0.4, 0.15] in the second repeat: its average is
    # [0.5, 0.4, 0.1]. Then t2 = (0.7 + 0.8 + 0.1)/3 = 0.533 and sample 8's 0.5 no longer reaches t0 = 0.533:
    # it is not counted, and only sample 2 (row 102) is flagged. The fold runs below hold data.json.
    from trainctl.reports.label_issue_report import label_issue_report

    folder = tmp_path / "cv"
    write_run(folder / "repeat-0" / "fold-0", hand_columns())
    first, second = hand_columns(), hand_columns()
    for k, value in enumerate([0.45, 0.4, 0.15]):
        second[f"prob_{CLASSES[k]}"][8] = value
    columns = {"fold": [0] * 5 + [1] * 4 + [1] * 4 + [0] * 5, "repeat": [0] * 9 + [1] * 9}
    columns.update({key: first[key] + second[key][::-1] for key in first})  # the second repeat in another order
    write_samples(folder / "oof.csv", columns)
    report = label_issue_report(folder)
    assert report.samples.rows.tolist() == list(range(100, 109))
    assert report.samples.probabilities[8] == pytest.approx([0.5, 0.4, 0.1])
    assert report.samples.probabilities[:8].tolist() == HAND_PROBABILITIES[:8].tolist()
    result = cli("label-issues", folder, "-o", tmp_path / "issues.csv")
    assert result.exit_code == 0, result.output
    with (tmp_path / "issues.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["row"], row["given"], row["suggested"], row["self_confidence"]) for row in rows] == [
        ("102", "cat", "dog", "0.1")
    ]
    assert result.stdout.splitlines()[-2] == "1 of 9 samples (11.1%) look mislabelled"


# ---- the command ------------------------------------------------------------------------------------


def test_the_command_lists_the_issues_and_writes_them(tmp_path, cli):
    run = write_run(tmp_path / "run", hand_columns(files=True))
    result = cli("label-issues", run, columns=120)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert (
        lines[0]
        == f"{run / 'test_predictions.csv'}: confident learning (prune by noise rate) on 9 samples, by self-confidence"
    )
    table = [line.split("│")[1:-1] for line in lines if line.startswith("│")]
    assert [[cell.strip() for cell in row] for row in table] == [
        ["108", "images/8.png", "fox", "cat", "0.0500"],
        ["102", "images/2.png", "cat", "dog", "0.1000"],
    ]
    assert lines[-1] == "2 of 9 samples (22.2%) look mislabelled"
    output = tmp_path / "issues.csv"
    assert cli("label-issues", run, "--top", "1", "-o", output).exit_code == 0
    with output.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[1] == {
        "row": "102",
        "file": "images/2.png",
        "given": "cat",
        "suggested": "dog",
        "self_confidence": "0.1",
        "normalized_margin": repr(0.1 - 0.8),
        "loss": repr(float(-np.log(0.1))),
    }
    refused = cli("label-issues", run, "-o", output)
    assert refused.exit_code == 2
    assert refused.stderr.strip() == f"error: --output {output}: already exists; add --force to replace it"
    margin = cli("label-issues", run, "--rank-by", "normalized-margin", "-o", output, "--force")
    assert margin.exit_code == 0, margin.output
    assert [row["row"] for row in csv.DictReader(output.open(newline=""))] == ["102", "108"]


def test_a_file_without_probabilities_ranks_by_loss_and_says_so(tmp_path, cli):
    run = write_run(tmp_path / "run", hand_columns(with_probabilities=False))
    result = cli("label-issues", run, columns=120)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (
        "test_predictions.csv has no class probabilities (it was written before trainctl kept each class's "
        "probability; trainctl eval RUN writes it again): ranked by per-sample loss instead of confident learning"
    )
    # Misclassified: samples 2 (loss −log 0.1 = 2.30) and 8 (−log 0.05 = 3.00), highest loss first.
    table = [
        [cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines() if line.startswith("│")
    ]
    assert table == [["108", "fox", "cat", "2.9957"], ["102", "cat", "dog", "2.3026"]]
    assert result.stdout.splitlines()[-1] == (
        "2 of 9 samples (22.2%) are misclassified: without probabilities they are the candidates, highest loss first"
    )


def test_a_file_away_from_its_run_takes_the_classes_from_its_probability_columns(tmp_path, cli):
    columns = hand_columns()
    columns = {key: columns[key] for key in ["row", "target", "prediction", "prob_cat", "prob_dog", "prob_fox", "loss"]}
    write_samples(tmp_path / "mine.csv", columns)
    result = cli("label-issues", tmp_path / "mine.csv", columns=120)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1] == "no data.json beside mine.csv: the classes are the ones the file names"
    table = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if line.startswith("│")]
    assert table == [["108", "fox", "cat", "0.0500"], ["102", "cat", "dog", "0.1000"]]


@pytest.mark.parametrize(
    "case", ["missing", "no samples file", "regression", "regression file", "not a run", "group", "no samples"]
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, cli, case):
    path = tmp_path / "thing"
    if case == "regression file":
        path = tmp_path / "values.csv"
        write_samples(
            path,
            {
                "row": [0],
                "target_0": [1.5],
                "target_1": [2.0],
                "prediction_0": [1.0],
                "prediction_1": [2.5],
                "loss": [0.25],
            },
        )
    elif case == "no samples":
        path = tmp_path / "empty.csv"
        path.write_text("row,target,prediction,loss\n")
    elif case == "no samples file":
        path.mkdir()
        (path / "config.yaml").write_text("name: x\n")
    elif case == "regression":
        write_run(path, {"row": [0], "target": [1.5], "prediction": [1.0], "loss": [0.25]}, kind="regression")
    elif case == "not a run":
        path.mkdir()
    elif case == "group":
        path.mkdir()
        (path / "group.json").write_text("{}")
    expected = {
        "missing": f"{path}: no such file or folder",
        "no samples file": f"{path}: no per-sample test results (test_predictions.csv): run trainctl eval {path} "
        "to write them",
        "regression": f"{path / 'test_predictions.csv'}: a regression run; label issues are looked for in "
        "classification runs only (confident learning finds class labels that look wrong)",
        "regression file": f"{path}: a regression run; label issues are looked for in classification runs only "
        "(confident learning finds class labels that look wrong)",
        "no samples": f"{path}: a header and no samples; the file is damaged (train and eval write one line a sample)",
        "not a run": f"{path}: neither a run folder (test_predictions.csv) nor a cross-validation folder (oof.csv); "
        "give one of those or a per-sample CSV file",
        "group": f"{path}: a group of runs; give one of its runs (each has its own test_predictions.csv)",
    }[case]
    result = cli("label-issues", path)
    assert result.exit_code == 2
    assert result.stderr.replace("\n", " ").strip() == f"error: {expected}"


@pytest.mark.subprocess
def test_the_command_imports_no_torch(tmp_path):
    run = write_run(tmp_path / "run", hand_columns())
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom trainctl.cli import app\ntry:\n    app(['label-issues', sys.argv[1]])\n"
            "except SystemExit as done:\n    print(done.code, 'torch' in sys.modules)",
            str(run),
        ],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.splitlines()[-1] == "0 False", probe.stderr
    assert "2 of 9 samples (22.2%) look mislabelled" in probe.stdout


# ---- real runs -------------------------------------------------------------------------------------


def softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@pytest.mark.slow
def test_the_probability_columns_are_the_calibrated_softmax_of_the_model_outputs(tmp_path):
    """Iris, an MLP 4-16-3, temperature scaling: each prob_ column against softmax(logits / T) of a forward
    pass written out in numpy from the best checkpoint's weights and data.json's standardization."""
    import torch

    from trainctl.data import sklearn_files
    from trainctl.output import Output
    from trainctl.workflows import train

    config = write_config(tmp_path, trainer={"epochs": 3, "device": "cpu", "calibrate": "temperature"})
    result = train(config, out=tmp_path / "run", output=Output(quiet=True))
    folder = result.run.path
    weights = {
        key: value.double().numpy()
        for key, value in torch.load(folder / "checkpoints" / "best.pt", weights_only=True)["model"].items()
    }
    scaling = json.loads((folder / "data.json").read_text())["standardization"]
    temperature = result.summary["test"]["calibration"]["temperature"]
    with (folder / "test_predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    inputs = sklearn_files.load("load_iris").data[[int(row["row"]) for row in rows]]
    x = (inputs - np.array(scaling["mean"])) / np.array(scaling["std"])
    hidden = np.maximum(x @ weights["1.weight"].T + weights["1.bias"], 0.0)
    expected = softmax((hidden @ weights["3.weight"].T + weights["3.bias"]) / temperature)
    written = np.array([[float(row[f"prob_{name}"]) for name in ("setosa", "versicolor", "virginica")] for row in rows])
    assert temperature != pytest.approx(1.0, abs=1e-3)  # the temperature matters to the comparison
    assert written == pytest.approx(expected, abs=2e-6)  # the run computes in float32
    assert [float(row["confidence"]) for row in rows] == written.max(axis=1).tolist()


def write_noisy_digits(path, fraction=0.08, seed=0):
    """scikit-learn's digits as a CSV whose labels are flipped to another digit for a seeded `fraction` of
    the rows; returns the flipped rows."""
    from trainctl.data import sklearn_files

    digits = sklearn_files.load("load_digits")
    rng = np.random.default_rng(seed)
    labels = np.asarray(digits.target).copy()
    flipped = np.sort(rng.choice(len(labels), size=round(fraction * len(labels)), replace=False))
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, size=len(flipped))) % 10  # never the same digit
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"pixel_{k}" for k in range(64)] + ["digit"])
        for features, label in zip(digits.data, labels):
            writer.writerow([*(f"{value:g}" for value in features), int(label)])
    return flipped


@pytest.mark.slow
def test_labels_flipped_in_digits_are_found_in_the_test_split(tmp_path):
    data = tmp_path / "digits_noisy.csv"
    flipped = set(write_noisy_digits(data).tolist())
    config = write_config(
        tmp_path,
        name="digits-noisy",
        data={"name": "csv", "path": str(data), "target": "digit", "task": "classification", "batch_size": 128},
        model={"name": "mlp", "hidden": [128]},
        optimizer={"name": "adam", "lr": 0.003},
        trainer={"epochs": 8, "device": "cpu"},
    )
    trained = run_cli("train", config, "--out", tmp_path / "run", "-q")
    assert trained.exit_code == 0, trained.output
    output = tmp_path / "issues.csv"
    result = run_cli("label-issues", tmp_path / "run", "-o", output)
    assert result.exit_code == 0, result.output
    with (tmp_path / "run" / "test_predictions.csv").open(newline="") as handle:
        tested = {int(row["row"]) for row in csv.DictReader(handle)}
    with output.open(newline="") as handle:
        found = {int(row["row"]) for row in csv.DictReader(handle)}
    planted = flipped & tested
    assert len(tested) == 360 and len(planted) >= 20  # 8% of the 360 test samples, give or take
    assert len(found & planted) >= 0.7 * len(planted)  # recall
    assert len(found & planted) >= 0.8 * len(found)  # precision
    assert f"{len(found)} of 360 samples" in result.stdout


@pytest.mark.slow
@pytest.mark.subprocess
def test_labels_flipped_in_digits_are_found_across_the_data_set_by_cross_validation(tmp_path):
    """cv scores every sample out of sample: its oof.csv finds the flips in the whole data set."""
    data = tmp_path / "digits_noisy.csv"
    flipped = set(write_noisy_digits(data).tolist())
    config = write_config(
        tmp_path,
        name="digits-noisy",
        data={"name": "csv", "path": str(data), "target": "digit", "task": "classification", "batch_size": 128},
        model={"name": "mlp", "hidden": [128]},
        optimizer={"name": "adam", "lr": 0.003},
        trainer={"epochs": 8, "device": "cpu"},
    )
    folder = tmp_path / "cv"
    trained = run_cli("cv", config, "--folds", "3", "--jobs", "2", "--out", folder, "-q")
    assert trained.exit_code == 0, trained.output
    output = tmp_path / "issues.csv"
    result = run_cli("label-issues", folder, "-o", output)
    assert result.exit_code == 0, result.output
    with output.open(newline="") as handle:
        found = {int(row["row"]) for row in csv.DictReader(handle)}
    assert len(flipped) == 144  # 8% of 1797
    assert len(found & flipped) >= 0.7 * len(flipped)  # recall
    assert len(found & flipped) >= 0.8 * len(found)  # precision
    assert f"{len(found)} of 1797 samples" in result.stdout
