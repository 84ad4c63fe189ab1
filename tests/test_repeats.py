"""`trainctl train --repeats N / --seeds`: the t distribution behind the intervals, the group's
summary over seeds, the group folder's rules, and a real group trained, continued and refused."""

from __future__ import annotations

import json
import math
import os
import subprocess

import numpy as np
import pytest
import yaml

from trainctl.errors import UserError
from trainctl.repeats import choose_seeds, prepare_repeats
from trainctl.reports.groups import GroupRecord, GroupRun, read_group, summarise, summary_rows, write_json
from trainctl.reports.statistics import mean_interval, paired_t_test, t_central_probability, t_quantile, welch_interval
from trainctl.runs import RunFolder

from helpers import CONFIGS, TRAINCTL, run_cli, write_config

# Two-sided 95% critical values of Student's t, as printed in statistics tables (4 decimals).
T_TABLE = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 9: 2.2622, 10: 2.2281, 30: 2.0423, 120: 1.9799}


@pytest.mark.parametrize(("df", "expected"), sorted(T_TABLE.items()))
def test_t_quantile_matches_the_printed_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-5)


def test_t_quantile_matches_scipy_for_every_df_to_200():
    stats = pytest.importorskip("scipy.stats")
    for df in [*range(1, 201), 1000, 5000]:
        for probability in (0.9, 0.95, 0.975, 0.995):
            assert t_quantile(probability, df) == pytest.approx(stats.t.ppf(probability, df), rel=1e-10), (
                df,
                probability,
            )


def test_t_central_probability_has_the_closed_forms_of_one_and_two_df():
    for t in (0.0, 0.3, 1.0, 4.0, 50.0):
        assert t_central_probability(t, 1) == pytest.approx(2 / math.pi * math.atan(t), abs=1e-15)
        assert t_central_probability(t, 2) == pytest.approx(t / math.sqrt(t * t + 2), abs=1e-15)
    # Large df: the normal distribution's 95% point.
    assert t_central_probability(1.959963984540054, 10**6) == pytest.approx(0.95, abs=1e-6)


def test_mean_interval_by_hand():
    stats = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764451051977934 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) · sd / √n, sd = √2.5
    assert (stats.n, stats.mean, stats.sd) == (5, 3.0, pytest.approx(math.sqrt(2.5)))
    assert (stats.low, stats.high) == (pytest.approx(3 - half), pytest.approx(3 + half))


def test_one_value_has_no_spread_nor_interval():
    stats = mean_interval([0.96])
    assert (stats.n, stats.mean, stats.sd, stats.low, stats.high) == (1, 0.96, None, None, None)


def test_paired_t_test_against_a_hand_computation():
    differences = [0.01, 0.02, -0.005, 0.015, 0.01]
    mean, sd = np.mean(differences), np.std(differences, ddof=1)
    t = mean / (sd / math.sqrt(5))
    test = paired_t_test(differences)
    assert test.interval.mean == pytest.approx(mean)
    assert test.p_value == pytest.approx(1 - t_central_probability(t, 4))
    stats = pytest.importorskip("scipy.stats")
    assert test.p_value == pytest.approx(stats.ttest_1samp(differences, 0).pvalue, rel=1e-9)


def test_identical_shifts_are_certain_and_no_shift_is_no_evidence():
    assert paired_t_test([0.01, 0.01, 0.01]).p_value == 0.0
    assert paired_t_test([0.0, 0.0, 0.0]).p_value == 1.0
    assert paired_t_test([0.02]).p_value is None


def test_welch_interval_against_a_hand_computation():
    a, b = [0.95, 0.96, 0.955], [0.97, 0.975, 0.965, 0.98]
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 4
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)  # Welch–Satterthwaite: 4.6..., used as 4
    difference, low, high = welch_interval(a, b)
    assert math.floor(df) == 4
    assert difference == pytest.approx(np.mean(b) - np.mean(a))
    assert high - difference == pytest.approx(2.7764451051977934 * math.sqrt(va + vb))
    assert difference - low == pytest.approx(high - difference)


# ---- seeds and folders ---------------------------------------------------------------------------


def test_repeats_count_up_from_the_config_seed_and_seeds_are_taken_as_given():
    assert choose_seeds(3, 4, None) == [3, 4, 5, 6]
    assert choose_seeds(0, None, "7, 2,11") == [7, 2, 11]


@pytest.mark.parametrize(
    ("repeats", "seeds", "message"),
    [
        (2, "0,1", "give either --repeats N or --seeds LIST, not both"),
        (None, "0,x", "--seeds 0,x: 'x' is not a seed; give non-negative integers, e.g. --seeds 0,1,2"),
        (None, "1,-2", "--seeds 1,-2: '-2' is not a seed"),
        (None, "1,2,1", "--seeds 1,2,1: seed 1 is given twice"),
        (5000, None, "--repeats 5000: at most 1000 runs in a group"),
    ],
)
def test_bad_seeds_are_one_line(repeats, seeds, message):
    with pytest.raises(UserError) as raised:
        choose_seeds(0, repeats, seeds)
    assert str(raised.value).startswith(message)


def write_finished_run(path, accuracy: float, loss: float) -> None:
    run = RunFolder(path)
    path.mkdir(parents=True)
    run.write_config({"name": "tiny"})
    run.write_json("summary.json", {"test": {"split": "test", "epoch": 3, "loss": loss, "accuracy": accuracy}})


def test_summary_over_seeds_by_hand(tmp_path):
    values = {0: (0.95, 0.2), 1: (0.97, 0.1), 2: (0.96, 0.15)}
    for seed, (accuracy, loss) in values.items():
        write_finished_run(tmp_path / f"seed-{seed}", accuracy, loss)
    runs = [GroupRun(seed, f"seed-{seed}", "done") for seed in values]
    runs.append(GroupRun(3, "seed-3", "failed", "loss.name: focal needs classes"))
    summary = summarise(tmp_path, GroupRecord("tiny", {"name": "tiny"}, runs))
    accuracy = summary["test"]["accuracy"]
    half = 4.302652729749464 * 0.01 / math.sqrt(3)  # t(0.975, 2) · sd / √3; sd of .95, .96, .97 is 0.01
    assert list(summary["test"]) == ["loss", "accuracy"]  # numbers of the test record; the epoch is not one
    assert accuracy["n"] == 3
    assert accuracy["mean"] == pytest.approx(0.96)
    assert accuracy["sd"] == pytest.approx(0.01)
    assert accuracy["interval"] == [pytest.approx(0.96 - half), pytest.approx(0.96 + half)]
    assert accuracy["per_seed"] == {"0": 0.95, "1": 0.97, "2": 0.96}
    assert summary["done"] == [0, 1, 2]
    assert summary["failed"] == {"3": "loss.name: focal needs classes"}
    rows = summary_rows(summary)
    assert rows[1] == [
        "accuracy",
        "0.9600 ± 0.0100",
        f"[{0.96 - half:.4f}, {0.96 + half:.4f}]",
        "0.9500",
        "0.9700",
        "3",
    ]


def test_a_damaged_group_record_is_named(tmp_path):
    (tmp_path / "group.json").write_text(
        '{"kind": "trainctl group", "name": "x", "config": {}, "runs": [{"seed": "0"}]}'
    )
    with pytest.raises(UserError) as raised:
        read_group(tmp_path)
    assert str(raised.value) == (
        f"{tmp_path / 'group.json'}: runs is not a list of {{seed, folder, status}}; the file is damaged "
        "(trainctl train --repeats writes it)"
    )


def test_a_folder_of_other_files_is_refused_before_anything_is_written(tmp_path):
    config = write_config(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError) as raised:
        prepare_repeats(config, [], repeats=2, seeds=None, out=tmp_path / "mine")
    assert "holds files that a trainctl group did not write" in str(raised.value)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_a_group_of_another_config_is_refused_naming_the_keys(tmp_path):
    config = write_config(tmp_path)
    setup = prepare_repeats(config, [], repeats=2, seeds=None, out=tmp_path / "group")
    setup.folder.mkdir()
    write_json(setup.folder / "group.json", GroupRecord(setup.name, setup.base, []).to_dict())
    same = prepare_repeats(config, ["seed=4"], repeats=3, seeds=None, out=tmp_path / "group")  # seeds may change
    assert same.seeds == [4, 5, 6]
    with pytest.raises(UserError) as raised:
        prepare_repeats(config, ["optimizer.lr=0.1", "loss.name=focal"], repeats=2, seeds=None, out=tmp_path / "group")
    assert str(raised.value) == (
        f"{tmp_path / 'group'}: this group was started with a different config; these keys differ: "
        "loss.name, optimizer.lr. Run it with the same config, or choose another --out"
    )


def test_the_options_that_do_not_go_with_repeats_are_named(tmp_path):
    config = write_config(tmp_path)
    jobs = run_cli("train", config, "--jobs", "2")
    nproc = run_cli("train", config, "--repeats", "2", "--nproc", "2")
    resume = run_cli("train", "--resume", tmp_path, "--repeats", "2")
    assert (jobs.exit_code, nproc.exit_code, resume.exit_code) == (2, 2, 2)
    assert "--jobs: runs the runs of --repeats or --seeds in parallel; give one of them too" in jobs.stderr
    assert "--nproc with --repeats: a group trains each run in one process; use --jobs" in nproc.stderr
    assert "--resume with --repeats: run the same train --repeats command again" in resume.stderr
    assert not (tmp_path / "runs").exists()


# ---- a real group ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_group_trains_each_seed_then_continues_keeping_what_finished(tmp_path):
    config = write_config(tmp_path, trainer={"epochs": 1, "device": "cpu"})
    group = tmp_path / "runs" / "tiny-repeats"
    first = run_cli("train", config, "--seeds", "0,1", "--jobs", "2")
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in group.iterdir()) == [
        "base.yaml", "group.json", "seed-0", "seed-1", "summary.json"
    ]  # fmt: skip
    for seed in (0, 1):  # ordinary run folders, each trained with its seed
        assert yaml.safe_load((group / f"seed-{seed}" / "config.yaml").read_text())["seed"] == seed
    accuracies = [json.loads((group / f"seed-{s}" / "summary.json").read_text())["test"]["accuracy"] for s in (0, 1)]
    summary = json.loads((group / "summary.json").read_text())
    assert summary["test"]["accuracy"]["per_seed"] == {"0": accuracies[0], "1": accuracies[1]}
    assert summary["test"]["accuracy"]["mean"] == pytest.approx(sum(accuracies) / 2)
    assert summary["test"]["accuracy"]["sd"] == pytest.approx(abs(accuracies[0] - accuracies[1]) / math.sqrt(2))
    assert f"seed-0  test/accuracy {accuracies[0]:.4f}" in first.stdout
    assert "test metrics over 2 seeds: mean ± sd, 95% interval of the mean (t)" in first.stdout

    # Continue with more seeds: seed-0 is kept as it is; seed-1's test evaluation was cut off (its
    # summary is gone), so it is resumed; seed-2's run has a damaged checkpoint, so it fails and is
    # recorded; seed-3 is new.
    kept = (group / "seed-0" / "summary.json").stat().st_mtime_ns
    (group / "seed-1" / "summary.json").unlink()
    broken = group / "seed-2"
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "config.yaml").write_text((group / "seed-0" / "config.yaml").read_text())
    (broken / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    second = run_cli("train", config, "--repeats", "4")
    assert second.exit_code == 2, second.output
    assert "(4 runs, seeds 0-3; 1 finished before, 3 to run, 1 at a time)" in second.stdout
    assert (group / "seed-0" / "summary.json").stat().st_mtime_ns == kept
    record = read_group(group)
    assert [(run.seed, run.status) for run in record.runs] == [(0, "done"), (1, "done"), (2, "failed"), (3, "done")]
    assert "last.pt" in record.runs[2].error
    assert "seed-2  failed: " in second.stdout
    assert "1 of 4 runs failed" in second.stderr
    summary = json.loads((group / "summary.json").read_text())
    assert summary["done"] == [0, 1, 3]
    assert summary["failed"] == {"2": record.runs[2].error}
    assert summary["test"]["accuracy"]["n"] == 3
    assert summary["test"]["accuracy"]["per_seed"]["1"] == accuracies[1]  # resumed: its test scored again, the same


@pytest.mark.slow
@pytest.mark.subprocess
def test_strict_reaches_every_run_of_a_group(tmp_path):
    """The checks' warnings stop each run with --strict (a run process each: the warm workers take no
    --strict); the failures are recorded and the group says so."""
    group = tmp_path / "group"
    result = run_cli("train", CONFIGS / "seed_torch_ce.yaml", "--seeds", "0,1", "--strict", "--out", group)
    assert result.exit_code == 2, result.output
    record = read_group(group)
    assert [run.status for run in record.runs] == ["failed", "failed"]
    assert all(run.error.startswith("double-softmax: ") for run in record.runs)
    assert "2 of 2 runs failed" in result.stderr
    assert json.loads((group / "summary.json").read_text())["test"] == {}


@pytest.mark.subprocess
def test_a_second_process_on_the_same_group_is_refused_and_changes_nothing(tmp_path):
    """The group's lock, held here as a running group holds it: a `trainctl train --repeats` process
    started on the same folder stops at once, naming this process, and writes nothing there."""
    config = write_config(tmp_path, trainer={"epochs": 1, "device": "cpu"})
    group = tmp_path / "group"
    group.mkdir()
    holder = RunFolder(group)
    holder.claim()
    try:
        second = subprocess.run(
            [TRAINCTL, "train", config, "--repeats", "2", "--out", group], capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 2
        assert second.stderr == (
            f"error: {group}: in use by another trainctl process (PID {os.getpid()}); wait for it to finish, "
            "or stop it\n"
        )
        assert [p.name for p in group.iterdir()] == [holder.lock_path.name]
    finally:
        holder.release()
