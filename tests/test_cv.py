"""`trainctl cv`: folds that partition the rows (stratified, grouped), fold runs trained as `train`
trains them, the summary and out-of-fold results, resuming, and comparing two cv folders."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from trainctl.components.registries import DATASETS
from trainctl.data.folds import Fold, fold_rows, pool_folds
from trainctl.errors import UserError
from trainctl.reports.compare_cv import compare_cv
from trainctl.reports.cross_validation import CvRecord, FoldRun, read_cv, summarise, write_oof
from trainctl.reports.groups import write_json
from trainctl.sweeps.cross_validation import prepare_cv

from helpers import TRAINCTL, read_jsonl, run_cli, write_config, write_idx_files, write_iris_csv


def dataset(name: str, **params):
    return DATASETS.get(name).build(None, params)


# ---- the folds --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "count"), [("digits", 5), ("iris", 3), ("diabetes", 4)])
def test_folds_hold_out_every_row_exactly_once_per_split_seed(name, count):
    from trainctl.data.prepare import split_indices

    raw = dataset(name)
    partitions = []
    for seed in (0, 1):
        held_out = []
        for index in range(1, count + 1):
            train, val, test = split_indices(raw, 0.1, 0.2, seed, Fold(count, index))
            # the fold's split is a partition of every row, and val is drawn from the rows not held out
            assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(raw.y)))
            assert len(val) == int(np.ceil(0.1 * (len(raw.y) - len(test))))
            held_out.append(test)
        assert sorted(np.concatenate(held_out).tolist()) == list(range(len(raw.y)))
        assert max(map(len, held_out)) - min(map(len, held_out)) <= 1
        partitions.append(held_out)
    assert not all(np.array_equal(a, b) for a, b in zip(*partitions))  # another split seed, other folds


def test_folds_are_stratified_by_class():
    raw = dataset("digits")
    pool, folds = pool_folds(raw, 7, seed=3)
    counts = np.array([np.bincount(raw.y[pool][folds == k], minlength=10) for k in range(7)])
    assert (counts.max(axis=0) - counts.min(axis=0) <= 1).all()
    assert counts.sum() == len(raw.y) == 1797


def write_grouped_csv(path: Path, groups: int = 12, rows_per_group: tuple[int, ...] = (1, 2, 3, 5)) -> Path:
    """A table of patients: several rows each, one class per patient, sizes varying."""
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient", "x1", "x2", "label"])
        for patient in range(groups):
            for _ in range(rows_per_group[patient % len(rows_per_group)]):
                writer.writerow([f"p{patient:02d}", *rng.normal(size=2).round(3), "ab"[patient % 2]])
    return path


def test_grouped_folds_keep_each_group_in_one_fold(tmp_path):
    table = write_grouped_csv(tmp_path / "patients.csv")
    raw = dataset("csv", path=str(table), target="label", group_column="patient")
    patients = [row[0] for row in list(csv.reader(table.open()))[1:]]
    for seed in (0, 1, 2):
        for index in range(1, 5):
            held_out = fold_rows(raw, Fold(4, index), seed)
            inside = {patients[row] for row in held_out}
            outside = {patients[row] for row in set(range(len(patients))) - set(held_out.tolist())}
            assert inside and not inside & outside
    # The group column is not a feature: the encoding the rows get holds x1 and x2 only.
    _, encoding = raw.fit_inputs(np.arange(len(patients)))
    assert encoding["table"]["columns"] == ["x1", "x2"]


def test_a_dataset_with_its_own_test_split_is_folded_over_its_other_samples(tmp_path):
    from trainctl.data.prepare import split_indices

    write_idx_files(tmp_path / "data", "MNIST", n_train=200, n_test=50)
    raw = dataset("mnist", root=str(tmp_path / "data"))
    held_out = [split_indices(raw, 0.1, 0.2, 0, Fold(3, index))[2] for index in (1, 2, 3)]
    assert sorted(np.concatenate(held_out).tolist()) == list(range(200))  # the 50 test images are in no fold
    config = write_config(tmp_path, data={"name": "mnist", "root": str(tmp_path / "data")})
    setup = prepare_cv(config, [], folds=3)
    assert setup.notes == [
        "3 folds of 200 samples, stratified by class: 66 to 67 held out per fold",
        "dataset 'mnist' keeps its own test split (50 samples): the folds split the other samples, and that "
        "test split is not used",
    ]


# ---- what is refused ---------------------------------------------------------------------------------


def test_bad_fold_counts_are_one_line_and_write_nothing(tmp_path):
    config = write_config(tmp_path)
    one = run_cli("cv", config, "--folds", "1")
    assert one.exit_code == 2
    assert one.stderr.strip() == "error: --folds 1: cross-validation needs at least 2 folds (got 1)"
    table = tmp_path / "iris.csv"
    write_iris_csv(table)
    lines = table.read_text().splitlines()
    table.write_text("\n".join(lines[:48] + lines[51:54] + lines[101:]) + "\n")  # 47 setosa, 3 versicolor
    few = run_cli(
        "cv", write_config(tmp_path, data={"name": "csv", "path": str(table), "target": "species"}), "-k", "4"
    )
    assert few.exit_code == 2
    assert few.stderr.strip() == (
        "error: --folds 4: class 'versicolor' has only 3 samples, fewer than the 4 folds; stratified folds "
        "hold each class in every fold: use at most 3 folds"
    )
    assert not (tmp_path / "runs").exists()


def test_a_missing_group_column_and_too_few_groups_are_named(tmp_path):
    table = write_grouped_csv(tmp_path / "patients.csv", groups=3)
    data = {"name": "csv", "path": str(table), "target": "label", "group_column": "patiennt"}
    config = write_config(tmp_path, data=data)
    missing = run_cli("cv", config, "--folds", "2")
    assert missing.exit_code == 2
    assert f"{config}:" in missing.stderr
    assert f"data.group_column: no column 'patiennt' in {table}; its columns: patient, x1, x2, label" in (
        missing.stderr.replace("\n", "")
    )
    few = run_cli("cv", write_config(tmp_path, data={**data, "group_column": "patient"}), "--folds", "4")
    assert few.exit_code == 2
    assert "--folds 4: data.group_column has 3 groups, fewer than the 4 folds; a group stays in one fold" in (
        few.stderr.replace("\n", "")
    )


def test_a_config_that_sets_its_fold_is_refused(tmp_path):
    config = write_config(tmp_path, data={"name": "iris", "fold": {"count": 3, "index": 1}})
    result = run_cli("cv", config, "--folds", "3")
    assert result.exit_code == 2
    assert "data.fold: trainctl cv sets it for each fold; leave it out of the config" in result.stderr


def test_another_cross_validation_in_the_folder_is_refused_naming_what_differs(tmp_path):
    config = write_config(tmp_path)
    setup = prepare_cv(config, [], folds=3, out=tmp_path / "cv")
    (tmp_path / "cv").mkdir()
    write_json(tmp_path / "cv" / "cv.json", setup.record.to_dict())
    again = prepare_cv(config, [], folds=3, out=tmp_path / "cv")  # the same: continued
    assert again.folds == 3
    with pytest.raises(UserError) as refused:
        prepare_cv(config, ["optimizer.lr=0.1"], folds=5, out=tmp_path / "cv")
    assert str(refused.value) == (
        f"{tmp_path / 'cv'}: this cross-validation was started with a different config; these differ: "
        "folds (3 before, 5 now), optimizer.lr. Run it with the same command, or choose another --out"
    )
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds files that trainctl cv did not write"):
        prepare_cv(config, [], folds=3, out=tmp_path / "other")
    (tmp_path / "cv" / "cv.json").write_text('{"kind": "trainctl cv"}')
    with pytest.raises(UserError) as damaged:
        read_cv(tmp_path / "cv")
    assert str(damaged.value) == (
        f"{tmp_path / 'cv' / 'cv.json'}: no name or config in it; the file is damaged (trainctl cv writes it)"
    )


# ---- the summary, oof.csv and compare, from folds written by hand ----------------------------------


def fake_cv(folder: Path, per_fold: dict[str, list[float]], repeats: int = 1, config: dict | None = None) -> CvRecord:
    """A cv folder whose finished folds have these test metrics (fold after fold, repeat after repeat)."""
    count = len(next(iter(per_fold.values()))) // repeats
    runs = []
    for k in range(count * repeats):
        repeat, fold = divmod(k, count)
        name = f"fold-{fold + 1}" if repeats == 1 else f"repeat-{repeat + 1}/fold-{fold + 1}"
        (folder / name).mkdir(parents=True)
        test = {metric: values[k] for metric, values in per_fold.items()}
        (folder / name / "summary.json").write_text(json.dumps({"test": {"split": "test", "epoch": 1, **test}}))
        runs.append(FoldRun(repeat + 1, fold + 1, repeat, name, "done"))
    base = config or {"name": "x", "data": {"name": "iris"}, "loss": {"name": "cross_entropy"}}
    record = CvRecord("x", count, repeats, list(range(repeats)), base, runs)
    write_json(folder / "cv.json", record.to_dict())
    return record


def test_the_summary_is_the_mean_sd_and_t_interval_over_the_folds(tmp_path):
    from scipy import stats

    accuracy = [0.91, 0.95, 0.93, 0.88, 0.97]
    record = fake_cv(tmp_path, {"accuracy": accuracy, "loss": [0.3, 0.2, 0.25, 0.4, 0.1]})
    summary = summarise(tmp_path, record)["test"]["accuracy"]
    assert summary["mean"] == pytest.approx(np.mean(accuracy))
    assert summary["sd"] == pytest.approx(np.std(accuracy, ddof=1))
    low, high = stats.t.interval(0.95, 4, loc=np.mean(accuracy), scale=stats.sem(accuracy))
    assert summary["interval"] == pytest.approx([low, high])
    assert summary["per_fold"] == dict(zip([f"fold-{k}" for k in range(1, 6)], accuracy))


def write_fold_predictions(run: Path, rows: list[int], classes: list[str]) -> list[list[str]]:
    lines = [["row", "target", "prediction", "confidence", "loss", "prob_a", "prob_b"]]
    for row in rows:
        p = 0.5 + row / 1000
        lines.append([str(row), classes[row % 2], classes[row % 3 % 2], repr(p), repr(row / 10), repr(p), repr(1 - p)])
    with (run / "test_predictions.csv").open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(lines)
    return lines


def test_oof_has_every_row_once_per_repeat_with_its_folds_values(tmp_path):
    record = fake_cv(tmp_path, {"accuracy": [0.9, 0.8, 0.7, 0.6]}, repeats=2)
    held_out = {"repeat-1/fold-1": [0, 3, 5], "repeat-1/fold-2": [1, 2, 4], "repeat-2/fold-1": [1, 5, 4]}
    held_out["repeat-2/fold-2"] = [0, 2, 3]
    written = {folder: write_fold_predictions(tmp_path / folder, rows, ["a", "b"]) for folder, rows in held_out.items()}
    assert write_oof(tmp_path, record) == 12
    with (tmp_path / "oof.csv").open() as handle:
        oof = list(csv.reader(handle))
    assert oof[0] == ["repeat", "fold", "row", "target", "prediction", "confidence", "loss", "prob_a", "prob_b"]
    assert [(line[2], line[0]) for line in oof[1:]] == [(str(r), str(k)) for r in range(6) for k in (1, 2)]
    for line in oof[1:]:
        folder = f"repeat-{line[0]}/fold-{line[1]}"
        assert line[2:] in written[folder][1:]  # the fold's own line, as it wrote it


def test_oof_without_repeats_has_a_fold_column_first(tmp_path):
    record = fake_cv(tmp_path, {"accuracy": [0.9, 0.8]})
    write_fold_predictions(tmp_path / "fold-1", [1, 2], ["a", "b"])
    write_fold_predictions(tmp_path / "fold-2", [0, 3], ["a", "b"])
    write_oof(tmp_path, record)
    lines = (tmp_path / "oof.csv").read_text().splitlines()
    assert lines[0] == "fold,row,target,prediction,confidence,loss,prob_a,prob_b"
    assert [line.split(",")[:2] for line in lines[1:]] == [["2", "0"], ["1", "1"], ["1", "2"], ["2", "3"]]


def points(value: float) -> str:
    return f"{value * 100:+.1f}".replace("-", "−")


def test_two_cv_folders_are_compared_fold_by_fold_in_words(tmp_path):
    from scipy import stats

    first = [0.90, 0.92, 0.94, 0.91]
    second = [0.92, 0.95, 0.96, 0.915]
    fake_cv(tmp_path / "ce-cv", {"accuracy": first, "loss": [0.3, 0.2, 0.1, 0.2]})
    focal = {"name": "x", "data": {"name": "iris"}, "loss": {"name": "focal"}}
    fake_cv(tmp_path / "focal-cv", {"accuracy": second, "loss": [0.1, 0.1, 0.1, 0.1]}, config=focal)
    comparison = compare_cv([tmp_path / "ce-cv", tmp_path / "focal-cv"])
    difference = np.subtract(second, first)
    low, high = stats.t.interval(0.95, 3, loc=difference.mean(), scale=stats.sem(difference))
    p = stats.ttest_rel(second, first).pvalue
    assert comparison.pair is not None
    assert comparison.pair.lines() == [
        "differences focal − ce on the test split (95% intervals):",
        "  paired t test over 4 folds (the difference per fold, on the same held-out rows):",
        f"    accuracy: {points(difference.mean())} points, 95% interval [{points(low)}, {points(high)}] "
        f"(p = {p:.2g}): focal is better",
    ]  # the loss is left out: a focal loss's value says nothing next to cross-entropy's
    assert comparison.keys == ["loss.name"]


def test_cv_folders_on_other_folds_are_refused_naming_what_differs(tmp_path):
    fake_cv(tmp_path / "a", {"accuracy": [0.9, 0.8, 0.7]})
    fake_cv(tmp_path / "b", {"accuracy": [0.9, 0.8]}, config={"name": "x", "data": {"name": "wine"}})
    result = run_cli("compare", tmp_path / "a", tmp_path / "b")
    assert result.exit_code == 2
    assert (
        "these cross-validations were not split into the same folds (folds, data.name differ); compare cv "
        "folders run on the same data with the same data.split_seed, --folds and --repeats"
    ) in result.stderr.replace("\n", "")


# ---- real cross-validations ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_cv_trains_each_fold_as_train_does_and_continues(tmp_path):
    config = write_config(tmp_path, trainer={"epochs": 1, "device": "cpu"})
    folder = tmp_path / "runs" / "tiny-cv"
    result = run_cli("cv", config, "--folds", "2", "--repeats", "2", "--jobs", "2")
    assert result.exit_code == 0, result.output
    names = ["repeat-1/fold-1", "repeat-1/fold-2", "repeat-2/fold-1", "repeat-2/fold-2"]
    assert sorted(str(p.relative_to(folder).parent) for p in folder.glob("*/*/summary.json")) == names
    record = read_cv(folder)
    assert [(run.folder, run.split_seed, run.status) for run in record.runs] == [
        (name, int(name[7]) - 1, "done") for name in names
    ]

    # A fold's run is the base config trained by `trainctl train` with the fold's settings.
    fold = yaml.safe_load((folder / "repeat-2" / "fold-1" / "config.yaml").read_text())["data"]
    assert (fold["fold"], fold["split_seed"]) == ({"count": 2, "index": 1}, 1)
    settings = ["data.fold.count=2", "data.fold.index=1", "data.split_seed=1"]
    command = [TRAINCTL, "train", str(folder / "base.yaml"), *(a for s in settings for a in ("--set", s))]
    # Each of the two jobs trained with the share of the cores the pool gives it.
    threads = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // 2))}
    alone = subprocess.run([*command, "--out", str(tmp_path / "a")], env={**os.environ, **threads}, timeout=300)
    assert alone.returncode == 0
    tests = {name: json.loads((folder / name / "summary.json").read_text())["test"] for name in names}
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["test"] == tests["repeat-2/fold-1"]

    # The summary over the folds, and the printed table.
    accuracy = [tests[name]["accuracy"] for name in names]
    summary = json.loads((folder / "summary.json").read_text())["test"]["accuracy"]
    assert summary["mean"] == pytest.approx(np.mean(accuracy))
    assert summary["sd"] == pytest.approx(np.std(accuracy, ddof=1))
    assert "test metrics over 4 folds: mean ± sd, 95% interval of the mean (t)" in result.stdout
    shown = f"{np.mean(accuracy):.4f} ± {np.std(accuracy, ddof=1):.4f}"
    assert any(line.startswith("│ accuracy") and shown in line for line in result.stdout.splitlines())
    assert f"out-of-fold predictions: {folder / 'oof.csv'} (300 rows)" in result.stdout

    # oof.csv: each of iris's 150 rows once per repeat, with its fold's own line.
    with (folder / "oof.csv").open() as handle:
        oof = list(csv.DictReader(handle))
    assert [(int(line["row"]), int(line["repeat"])) for line in oof] == [(r, k) for r in range(150) for k in (1, 2)]
    for name in names:
        with (folder / name / "test_predictions.csv").open() as handle:
            own = list(csv.DictReader(handle))
        repeat, index = name[7], name[-1]
        assert [{**line, "repeat": repeat, "fold": index} for line in own] == [
            line for line in oof if (line["repeat"], line["fold"]) == (repeat, index)
        ]

    # The same command again: every fold is kept, nothing runs.
    kept = (folder / names[0] / "summary.json").stat().st_mtime_ns
    again = run_cli("cv", config, "--folds", "2", "--repeats", "2", "--jobs", "2")
    assert again.exit_code == 0, again.output
    assert "(2 folds × 2 repeats (split seeds 0, 1); 4 finished before, 0 to run)" in again.stdout
    assert (folder / names[0] / "summary.json").stat().st_mtime_ns == kept


def children(pid: int) -> list[int]:
    """The processes a process started, from any of its threads (the pool's jobs start the workers)."""
    return [
        int(child) for task in Path(f"/proc/{pid}/task").iterdir() for child in (task / "children").read_text().split()
    ]


def wait_for(path_glob: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not list(path_glob.parent.glob(path_glob.name)):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.subprocess
def test_ctrl_c_saves_the_running_fold_and_the_rerun_resumes_it(tmp_path):
    config = write_config(tmp_path, trainer={"epochs": 100, "device": "cpu"})
    folder = tmp_path / "cv"
    command = [TRAINCTL, "cv", str(config), "--folds", "2", "--out", str(folder)]
    # A session of its own stands for a terminal: Ctrl-C reaches the cv and its worker together.
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(folder / "fold-1" / "checkpoints" / "last.pt", process)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "SIGINT: letting running folds save their state; starting no new ones" in stderr
    assert "interrupted; run the same command again to continue the cross-validation" in stderr
    assert [run.status for run in read_cv(folder).runs] == ["interrupted", "waiting"]
    saved = len(read_jsonl(folder / "fold-1" / "metrics.jsonl"))
    assert 1 <= saved < 100
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert [run.status for run in read_cv(folder).runs] == ["done", "done"]
    epochs = [row["epoch"] for row in read_jsonl(folder / "fold-1" / "metrics.jsonl")]
    assert epochs == list(range(1, 101))  # resumed where it stopped: every epoch once


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_fold_whose_worker_is_killed_fails_alone_and_the_rerun_retries_it(tmp_path):
    config = write_config(tmp_path, trainer={"epochs": 100, "device": "cpu"})
    folder = tmp_path / "cv"
    command = [TRAINCTL, "cv", str(config), "--folds", "2", "--out", str(folder)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(folder / "fold-1" / "checkpoints" / "last.pt", process)
    (worker,) = children(process.pid)
    os.kill(worker, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 2, stderr
    assert "fold-1  failed: the trial's worker process was killed by SIGKILL" in stdout
    record = read_cv(folder)
    assert [(run.status, run.error) for run in record.runs] == [
        (
            "failed",
            "the trial's worker process was killed by SIGKILL (the system's out-of-memory killer sends it "
            "when memory runs out)",
        ),
        ("done", ""),
    ]
    assert "1 of 2 folds failed" in stderr
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "(2 folds; 1 finished before, 1 to run, 1 at a time)" in rerun.stdout
    assert [run.status for run in read_cv(folder).runs] == ["done", "done"]
    epochs = [row["epoch"] for row in read_jsonl(folder / "fold-1" / "metrics.jsonl")]
    assert epochs[-1] == 100 and epochs == sorted(set(epochs))  # resumed from its last checkpoint
