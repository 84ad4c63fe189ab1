"""Significance in `compare`: the paired bootstrap against a reference written here, the closed-form
cases (identical runs, a large difference), the paired t test over seeds, the words, and the runs
it refuses to pair. Run folders are written as training writes them; one test trains real runs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from trainctl.output import Output
from trainctl.reports.compare_groups import compare_groups
from trainctl.reports.groups import GroupRecord, GroupRun, write_json
from trainctl.reports.samples import write_samples
from trainctl.reports.significance import Difference, compare_two_runs, difference_line
from trainctl.runs import RunFolder

from helpers import run_cli, write_config

CLASSES = ["a", "b", "c"]
CONFIG = {
    "name": "toy",
    "seed": 0,
    "data": {"name": "iris", "batch_size": 16, "val_fraction": 0.1, "test_fraction": 0.2, "split_seed": 0},
    "loss": {"name": "cross_entropy", "label_smoothing": 0.0},
    "trainer": {"monitor": "val/accuracy"},
}


def accuracy_of(targets, predictions) -> float:
    return float(np.mean(np.asarray(targets) == np.asarray(predictions)))


def write_run(folder, targets, predictions, *, config=None, rows=None, seed=0) -> RunFolder:
    """A finished classification run: config.yaml, data.json, summary.json and test_predictions.csv."""
    run = RunFolder(folder)
    folder.mkdir(parents=True)
    run.write_config({**CONFIG, "seed": seed, **(config or {})})
    task = {"kind": "classification", "num_classes": 3, "num_targets": 1, "class_names": CLASSES}
    run.write_json("data.json", {"task": task, "input_shape": [4], "target_mean": None, "target_std": None})
    run.write_json(
        "summary.json", {"best_epoch": 1, "test": {"loss": 0.5, "accuracy": accuracy_of(targets, predictions)}}
    )
    count = len(targets)
    write_samples(
        folder / "test_predictions.csv",
        {
            "row": list(rows if rows is not None else range(count)),
            "target": [CLASSES[k] for k in targets],
            "prediction": [CLASSES[k] for k in predictions],
            "loss": [0.5] * count,
        },
    )
    return run


def constructed_pair(count=200, first_right=0.8, second_right=0.85, seed=0):
    """Targets, and two runs' predictions: right with the given rates, wrong as the next class."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 3, count)
    firsts = np.where(rng.random(count) < first_right, targets, (targets + 1) % 3)
    seconds = np.where(rng.random(count) < second_right, targets, (targets + 1) % 3)
    return targets, firsts, seconds


def reference_accuracy_interval(targets, firsts, seconds, resamples=2000, seed=0):
    """The paired bootstrap written out: default_rng(seed), one integers(0, n, n) draw per resample,
    both runs scored on it, numpy's linear 2.5 and 97.5 percentiles of the differences."""
    rng = np.random.default_rng(seed)
    count = len(targets)
    differences = []
    for _ in range(resamples):
        index = rng.integers(0, count, size=count)
        differences.append(np.mean(seconds[index] == targets[index]) - np.mean(firsts[index] == targets[index]))
    return np.percentile(differences, 2.5), np.percentile(differences, 97.5)


def compared(tmp_path, targets, firsts, seconds, **second_options):
    a = write_run(tmp_path / "a", targets, firsts)
    b = write_run(tmp_path / "b", targets, seconds, **second_options)
    return compare_two_runs([a.path, b.path], [a.read_config(), b.read_config()], ["first", "second"])


def test_bootstrap_interval_matches_a_reference_computation(tmp_path):
    targets, firsts, seconds = constructed_pair()
    (test,) = compared(tmp_path, targets, firsts, seconds).tests
    accuracy = next(d for d in test.differences if d.metric == "accuracy")
    low, high = reference_accuracy_interval(targets, firsts, seconds)
    assert accuracy.estimate == pytest.approx(accuracy_of(targets, seconds) - accuracy_of(targets, firsts), abs=1e-15)
    assert (accuracy.low, accuracy.high) == (pytest.approx(low, abs=1e-15), pytest.approx(high, abs=1e-15))
    assert test.method == "paired bootstrap over 200 test samples (2000 resamples)"
    assert [d.metric for d in test.differences] == ["loss", "accuracy"]  # what both summaries record


def test_identical_runs_differ_by_exactly_nothing(tmp_path):
    targets, firsts, _ = constructed_pair()
    (test,) = compared(tmp_path, targets, firsts, firsts).tests
    for difference in test.differences:
        assert (difference.estimate, difference.low, difference.high) == (0.0, 0.0, 0.0)
        assert difference.verdict("first", "second") == "no evidence of a difference"


def test_a_large_difference_excludes_zero_and_names_the_better_run(tmp_path):
    targets, firsts, seconds = constructed_pair(first_right=0.95, second_right=0.5)
    comparison = compared(tmp_path, targets, firsts, seconds)
    accuracy = next(d for d in comparison.tests[0].differences if d.metric == "accuracy")
    assert accuracy.high < 0
    assert accuracy.verdict("first", "second") == "first is better"
    assert comparison.lines()[0] == "differences second − first on the test split (95% intervals):"
    assert comparison.lines()[2].startswith("    loss: ")
    assert comparison.lines()[3].startswith(f"    accuracy: {100 * accuracy.estimate:+.1f} points".replace("-", "−"))
    assert comparison.lines()[3].endswith(": first is better")


def test_the_loss_is_compared_only_between_runs_of_the_same_loss(tmp_path):
    targets, firsts, seconds = constructed_pair()
    focal = {"loss": {"name": "focal", "gamma": 2.0}}
    (test,) = compared(tmp_path, targets, firsts, seconds, config=focal).tests
    assert [d.metric for d in test.differences] == ["accuracy"]


def test_runs_on_different_splits_are_not_paired(tmp_path):
    targets, firsts, seconds = constructed_pair()
    other_split = {"data": {**CONFIG["data"], "split_seed": 1}}
    comparison = compared(tmp_path, targets, firsts, seconds, config=other_split)
    assert comparison.tests == []
    assert comparison.notes == [
        "no paired comparison: the runs were not scored on the same test split (data.split_seed differ)"
    ]


def test_per_sample_results_of_other_samples_are_not_paired(tmp_path):
    targets, firsts, seconds = constructed_pair()
    comparison = compared(tmp_path, targets, firsts, seconds, rows=range(1, 201))
    assert comparison.notes == ["no paired comparison: the runs' per-sample results are not of the same test samples"]


def test_a_run_without_per_sample_results_says_how_to_get_them(tmp_path):
    targets, firsts, seconds = constructed_pair()
    a = write_run(tmp_path / "a", targets, firsts)
    b = write_run(tmp_path / "b", targets, seconds)
    (b.path / "test_predictions.csv").unlink()  # a run trained before trainctl wrote them
    comparison = compare_two_runs([a.path, b.path], [a.read_config(), b.read_config()], ["a", "b"])
    assert comparison.notes == [f"{b.path}: no per-sample test results: run trainctl eval {b.path} to write them"]


def test_damaged_per_sample_results_are_a_note_naming_the_line(tmp_path):
    targets, firsts, seconds = constructed_pair()
    a = write_run(tmp_path / "a", targets, firsts)
    b = write_run(tmp_path / "b", targets, seconds)
    path = b.path / "test_predictions.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(",a,", ",zebra,").replace(",b,", ",zebra,").replace(",c,", ",zebra,")
    path.write_text("\n".join(lines) + "\n")
    result = run_cli("compare", a.path, b.path, columns=100)
    assert result.exit_code == 0, result.output  # the table is still shown
    assert f"{path}:4: class 'zebra' is not one of the run's classes; the file is damaged" in result.stdout.replace(
        "\n", ""
    )


@pytest.mark.parametrize(
    ("difference", "line"),
    [
        (
            Difference("accuracy", 0.004, -0.006, 0.013),
            "accuracy: +0.4 points, 95% interval [−0.6, +1.3]: no evidence of a difference",
        ),
        (
            Difference("accuracy", 0.021, 0.012, 0.031),
            "accuracy: +2.1 points, 95% interval [+1.2, +3.1]: focal is better",
        ),
        (
            Difference("ece", 0.021, 0.012, 0.031),
            "ece: +2.1 points, 95% interval [+1.2, +3.1]: cross_entropy is better",
        ),
        (Difference("loss", -0.0512, -0.08, -0.02), "loss: −0.0512, 95% interval [−0.0800, −0.0200]: focal is better"),
        (
            Difference("precision", -0.005, -0.0116, 0.0003),
            "precision: −0.5 points, 95% interval [−1.2, +0.03]: no evidence of a difference",
        ),
        (
            Difference("precision", 0.0, 0.0, 0.0),
            "precision: 0.00 points, 95% interval [0.00, 0.00]: no evidence of a difference",
        ),
        (
            Difference("f1", 0.002, -0.001, 0.0051, p_value=0.21),
            "f1: +0.20 points, 95% interval [−0.10, +0.51] (p = 0.21): no evidence of a difference",
        ),
    ],
)
def test_said_in_words(difference, line):
    assert difference_line(difference, "cross_entropy", "focal") == line


def test_compare_prints_the_differences_and_json_holds_them(tmp_path):
    targets, firsts, seconds = constructed_pair()
    a = write_run(tmp_path / "ce", targets, firsts)
    b = write_run(tmp_path / "focal", targets, seconds, config={"loss": {"name": "focal", "gamma": 2.0}})
    shown = run_cli("compare", a.path, b.path, columns=100)
    assert shown.exit_code == 0, shown.output
    low, high = reference_accuracy_interval(targets, firsts, seconds)
    estimate = accuracy_of(targets, seconds) - accuracy_of(targets, firsts)
    words = "no evidence of a difference" if low <= 0 <= high else "focal is better"
    expected = difference_line(Difference("accuracy", estimate, low, high), "ce", "focal")
    assert "differences focal − ce on the test split (95% intervals):" in shown.stdout
    assert f"    {expected}" in shown.stdout and expected.endswith(words)
    as_json = json.loads(run_cli("compare", a.path, b.path, "--format", "json").stdout)
    (test,) = as_json["differences"]["tests"]
    assert test["differences"][0]["metric"] == "accuracy"
    assert test["differences"][0]["interval"] == [pytest.approx(low, abs=1e-15), pytest.approx(high, abs=1e-15)]


# ---- groups -----------------------------------------------------------------------------------------


def write_group(folder, seeds, right_rates, config=None):
    """A group folder as train --repeats leaves it, its runs' predictions right at the given rates."""
    targets, _, _ = constructed_pair()
    rng = np.random.default_rng(len(str(folder)))
    accuracies = {}
    for seed, rate in zip(seeds, right_rates):
        predictions = np.where(rng.random(len(targets)) < rate, targets, (targets + 1) % 3)
        write_run(folder / f"seed-{seed}", targets, predictions, seed=seed, config=config)
        accuracies[seed] = accuracy_of(targets, predictions)
    group_config = {k: v for k, v in {**CONFIG, **(config or {})}.items() if k != "seed"}
    runs = [GroupRun(seed, f"seed-{seed}", "done") for seed in seeds]
    write_json(folder / "group.json", GroupRecord(folder.name, group_config, runs).to_dict())
    return accuracies


@pytest.mark.slow
def test_two_groups_get_a_paired_t_test_over_seeds_and_the_pooled_bootstrap(tmp_path):
    stats = pytest.importorskip("scipy.stats")
    first = write_group(tmp_path / "cross_entropy", [0, 1, 2, 3], [0.80, 0.82, 0.79, 0.81])
    second = write_group(tmp_path / "focal", [0, 1, 2, 3], [0.84, 0.83, 0.86, 0.85], {"loss": {"name": "focal"}})
    comparison = compare_groups([tmp_path / "cross_entropy", tmp_path / "focal"])
    assert comparison.labels == ["cross_entropy", "focal"]
    seeds, pooled = comparison.pair.tests
    assert seeds.method == "paired t test over 4 seeds (the difference per seed)"
    (accuracy,) = [d for d in seeds.differences if d.metric == "accuracy"]
    differences = [second[s] - first[s] for s in range(4)]
    half = 3.182446305284263 * np.std(differences, ddof=1) / 2  # t(0.975, 3) · sd / √4
    assert accuracy.estimate == pytest.approx(np.mean(differences))
    assert (accuracy.low, accuracy.high) == (
        pytest.approx(np.mean(differences) - half),
        pytest.approx(np.mean(differences) + half),
    )
    expected_p = stats.ttest_rel([second[s] for s in range(4)], [first[s] for s in range(4)]).pvalue
    assert accuracy.p_value == pytest.approx(expected_p, rel=1e-9)
    assert pooled.method == "paired bootstrap over 200 test samples (2000 resamples), 4 and 4 runs averaged"
    (pooled_accuracy,) = pooled.differences  # the loss differs: accuracy alone
    assert pooled_accuracy.estimate == pytest.approx(np.mean(differences))
    assert "loss" not in [d.metric for d in seeds.differences]


def test_groups_side_by_side_with_mean_and_sd(tmp_path):
    first = write_group(tmp_path / "a-repeats", [0, 1, 2], [0.8, 0.82, 0.79])
    write_group(tmp_path / "b-repeats", [0, 1, 2], [0.9, 0.91, 0.92], {"loss": {"name": "focal"}})
    result = run_cli("compare", tmp_path / "a-repeats", tmp_path / "b-repeats", columns=100)
    assert result.exit_code == 0, result.output
    mean, sd = np.mean(list(first.values())), np.std(list(first.values()), ddof=1)
    assert f"{mean:.4f} ± {sd:.4f}" in result.stdout
    assert "paired t test over 3 seeds" in result.stdout
    assert "accuracy: +" in result.stdout and ": b is better" in result.stdout
    rows = list(
        csv.DictReader(
            run_cli("compare", tmp_path / "a-repeats", tmp_path / "b-repeats", "-f", "csv").stdout.splitlines()
        )
    )
    assert [row["label"] for row in rows] == ["a", "b"]
    assert float(rows[0]["test/accuracy/mean"]) == pytest.approx(mean)
    assert rows[1]["loss.name"] == "focal"


# ---- real runs --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_runs_write_per_sample_results_that_eval_writes_again(tmp_path):
    from trainctl.workflows import train

    config = write_config(tmp_path, trainer={"epochs": 2, "device": "cpu"})
    runs = [train(config, [f"seed={s}"], out=tmp_path / f"s{s}", output=Output(quiet=True)) for s in (0, 1)]
    path = runs[0].run.path / "test_predictions.csv"
    written = path.read_text()
    rows = list(csv.DictReader(written.splitlines()))
    probabilities = {"prob_setosa", "prob_versicolor", "prob_virginica"}
    assert len(rows) == 30 and set(rows[0]) == {"row", "target", "prediction", "confidence", "loss"} | probabilities
    accuracy = sum(row["target"] == row["prediction"] for row in rows) / 30
    assert accuracy == pytest.approx(runs[0].summary["test"]["accuracy"])
    mean_loss = sum(float(row["loss"]) for row in rows) / 30
    assert mean_loss == pytest.approx(runs[0].summary["test"]["loss"], rel=1e-5)
    path.unlink()  # as for a run trained before trainctl wrote them
    assert run_cli("eval", runs[0].run.path).exit_code == 0
    assert path.read_text() == written
    result = run_cli("compare", runs[0].run.path, runs[1].run.path, columns=100)
    assert result.exit_code == 0, result.output
    expected = runs[1].summary["test"]["accuracy"] - runs[0].summary["test"]["accuracy"]
    line = next(line.strip() for line in result.stdout.splitlines() if line.strip().startswith("accuracy: "))
    shown = float(line.removeprefix("accuracy: ").split(" points")[0].replace("−", "-"))
    assert shown == pytest.approx(100 * expected, abs=0.05)


def test_runs_whose_labels_name_config_values_are_called_by_the_value_that_sets_them_apart(tmp_path):
    targets, firsts, seconds = constructed_pair()
    a = write_run(tmp_path / "ce" / "seed-0", targets, firsts)
    b = write_run(tmp_path / "focal" / "seed-0", targets, seconds, config={"loss": {"name": "focal", "gamma": 2.0}})
    result = run_cli("compare", a.path, b.path, columns=100)
    assert result.exit_code == 0, result.output
    assert "loss.gamma=2.0)" in result.stdout  # the table's own labels, as before
    assert "differences focal − cross_entropy on the test split (95% intervals):" in result.stdout
