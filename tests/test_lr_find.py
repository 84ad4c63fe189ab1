"""`trainctl lr-find`: the range test's schedule, smoothing, divergence stop and suggestion on
hand-made curves, and the command on iris (its output, its plot, its errors, and that it leaves a
later `train` exactly as it would be without it)."""

from __future__ import annotations

import itertools
import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch

from trainctl.config.loading import load_config
from trainctl.output import Output
from trainctl.training.lr_finder import ExponentialSweep, build_range_parts, run_range_test, swept_groups
from trainctl.training.lr_range import (
    DivergenceCheck,
    RangeSettings,
    Sweep,
    centred_average,
    exponential_rates,
    moving_average,
    smoothing_beta,
    suggest,
)

from helpers import run_cli, write_config

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SUGGESTED = re.compile(r"^--set optimizer\.lr=(\S+)$", re.MULTILINE)


# ---- the schedule and the smoothing -----------------------------------------------------------------


def test_the_rates_rise_exponentially_from_min_to_max():
    rates = exponential_rates(1e-7, 10.0, 100)
    assert len(rates) == 100
    assert rates[0] == 1e-7 and rates[-1] == 10.0  # exactly: the ends are the options' values
    ratio = 1e8 ** (1 / 99)
    assert [later / earlier for earlier, later in itertools.pairwise(rates)] == pytest.approx([ratio] * 99, rel=1e-12)


def test_the_moving_average_is_bias_corrected():
    # By hand, beta 0.5: weights 1 | 0.5, 1 | 0.25, 0.5, 1 over the values so far, divided by their sum.
    assert moving_average([1.0, 2.0, 4.0], 0.5) == pytest.approx([1.0, (0.5 + 2) / 1.5, (0.25 + 1 + 4) / 1.75])


def test_the_centred_average_runs_the_average_back_over_the_forward_one():
    # Forward [1, 5/3, 3] (above); backward over it from the end: 3, (0.5*3 + 5/3)/1.5, (0.25*3 + 0.5*5/3 + 1)/1.75.
    assert centred_average([1.0, 2.0, 4.0], 0.5) == pytest.approx([31 / 21, 19 / 9, 3.0])


def test_a_feature_stays_where_it_happened_in_the_centred_average():
    """A step down between indices 39 and 40 of a flat curve: the forward average crosses the middle
    only steps after it (its lag); the centred one is symmetric around it (away from the ends)."""
    values = [1.0] * 40 + [0.0] * 40
    forward, centred = moving_average(values, 0.75), centred_average(values, 0.75)
    assert forward[41] > 0.5  # still closer to 1 two steps after the drop
    for distance in range(5):
        assert centred[39 - distance] - 0.5 == pytest.approx(0.5 - centred[40 + distance], abs=1e-4)
    # The two passes make a symmetric kernel whose centre weighs (1 - beta) / (1 + beta); the step
    # leaves half of it on each side of the middle.
    assert centred[39] == pytest.approx(0.5 + 0.25 / 1.75 / 2, abs=1e-4)


@pytest.mark.parametrize(("steps", "beta"), [(5, 0.0), (25, 0.0), (50, 0.5), (100, 0.75), (250, 0.9)])
def test_the_average_spans_a_twenty_fifth_of_the_sweep(steps, beta):
    assert smoothing_beta(steps) == pytest.approx(beta)


# ---- the divergence stop --------------------------------------------------------------------------


def first_stop(check: DivergenceCheck, losses: list[float]) -> int | None:
    return next((index for index, loss in enumerate(losses) if check.add(loss)), None)


def test_the_test_stops_when_the_smoothed_loss_passes_four_times_its_best():
    losses = [2.0, 1.0, 0.5, 0.4, 0.5, 1.0, 1.5, 1.7, 2.0]  # best 0.4: the stop is above 1.6
    check = DivergenceCheck(beta=0.0)
    assert first_stop(check, losses) == 7
    assert check.reason == "the smoothed loss rose above 4× its best"


def test_the_stop_reads_the_bias_corrected_average():
    # beta 0.5 by hand: [1, 1, 6] averages to 3.857 (below 4: goes on), [1, 1, 10] to 6.14 (stops).
    assert first_stop(DivergenceCheck(beta=0.5), [1.0, 1.0, 6.0]) is None
    assert first_stop(DivergenceCheck(beta=0.5), [1.0, 1.0, 10.0]) == 2


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_loss_stops_the_test_at_once(bad):
    check = DivergenceCheck(beta=0.9)
    assert first_stop(check, [2.0, 1.9, bad, 1.0]) == 2
    assert check.reason == f"the loss was {bad}"


def test_negative_losses_diverge_by_their_rise():
    """A Gaussian NLL goes below zero: "4 times the best of -2" would be -8, which every loss
    exceeds. The rise allowed is 3 times the best's size: above 4."""
    assert first_stop(DivergenceCheck(beta=0.0), [-1.0, -2.0, 0.0, 3.0, 5.0]) == 4


# ---- the suggestion -------------------------------------------------------------------------------


def sigmoid_curve(rates: list[float], centre: float, rise_from: float, rise: float) -> list[float]:
    """2 falling to 0.5 around 10**centre (steepest there, 0.3 decades wide), then rising
    quadratically in decades from 10**rise_from."""
    curve = []
    for rate in rates:
        decade = math.log10(rate)
        value = 2.0 - 1.5 / (1.0 + math.exp(-(decade - centre) / 0.3))
        curve.append(value + rise * max(0.0, decade - rise_from) ** 2)
    return curve


def recorded(curve: list[float], settings: RangeSettings, initial_loss: float = 2.0) -> Sweep:
    """The sweep a test of `curve` records: up to where the divergence check stops it."""
    rates, check = settings.rates(), DivergenceCheck(settings.smoothing)
    tested = next((index for index, loss in enumerate(curve) if check.add(loss)), len(curve))
    stopped_at = rates[tested] if tested < len(rates) else None
    return Sweep(rates[:tested], curve[:tested], initial_loss, settings, check.reason, stopped_at)


CURVE_SETTINGS = RangeSettings(1e-6, 1.0, 61)  # rates a tenth of a decade apart


def test_a_minimum_far_past_the_descent_suggests_the_steepest_point():
    curve = sigmoid_curve(CURVE_SETTINGS.rates(), centre=-3.0, rise_from=-1.0, rise=50.0)
    suggestion = suggest(recorded(curve, CURVE_SETTINGS))
    assert suggestion.steepest_lr == pytest.approx(1e-3, rel=1e-9)
    assert 1e-2 < suggestion.minimum_lr <= 1e-1  # on the plateau, before the rise
    assert suggestion.lr == suggestion.steepest_lr
    assert suggestion.chosen.startswith("the steepest point (lower than a tenth of the minimum")


def test_a_cliff_right_after_the_descent_suggests_a_tenth_of_the_minimum():
    rates = CURVE_SETTINGS.rates()
    curve = sigmoid_curve(rates, centre=-3.0, rise_from=-2.5, rise=50.0)  # lowest at 10**-2.5 (index 35)
    suggestion = suggest(recorded(curve, CURVE_SETTINGS))
    # The cliff's first steps, averaged back, move the minimum down by up to 0.3 decades, never up.
    assert rates.index(suggestion.minimum_lr) in (32, 33, 34, 35)
    assert suggestion.lr == suggestion.minimum_lr / 10
    assert suggestion.lr < suggestion.steepest_lr
    assert suggestion.chosen.startswith("a tenth of the minimum (lower than the steepest point")


def test_a_fall_back_from_a_blown_up_loss_is_no_descent():
    """The first rates already blew the loss up from 2.3 to 50; it falls back to 46: never below
    where the model started, so nothing trains well in this range."""
    rates = exponential_rates(1.0, 10.0, 30)
    losses = [50.0 - 4.0 * index / 29 for index in range(30)]
    suggestion = suggest(Sweep(rates, losses, 2.3, RangeSettings(1.0, 10.0, 30)))
    assert suggestion.lr is None
    assert suggestion.problem.startswith("the smoothed loss never fell clearly below the initial loss (2.3 before")


def test_a_loss_still_falling_at_the_end_is_noted():
    rates = exponential_rates(1e-4, 1e-2, 30)
    losses = [2.0 - index / 30 for index in range(30)]
    suggestion = suggest(Sweep(rates, losses, 2.0, RangeSettings(1e-4, 1e-2, 30)))
    assert suggestion.minimum_lr == 1e-2
    assert suggestion.notes[-1].startswith("the loss was still falling at --max-lr 0.01")


# ---- the command ----------------------------------------------------------------------------------


def lr_find(tmp_path: Path, *args, config: Path | None = None):
    config = config or write_config(tmp_path)
    return run_cli("lr-find", config, "-o", tmp_path / "lr.png", *args)


def test_lr_find_prints_a_suggestion_to_paste_and_writes_a_png(tmp_path):
    result = lr_find(tmp_path)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("lr range test: ")
    assert lines[1].startswith("steepest descent of the smoothed loss: lr=")
    assert lines[2].startswith("lowest smoothed loss: ")
    assert lines[3].startswith("suggestion: lr=")
    assert lines[-2] == f"written: {tmp_path / 'lr.png'}"
    suggested = float(SUGGESTED.search(result.stdout).group(1))
    assert 1e-4 <= suggested <= 1.0  # Adam on iris trains at 0.01
    assert lines[3].startswith(f"suggestion: lr={suggested:.2g}, ")
    assert (tmp_path / "lr.png").read_bytes().startswith(PNG_SIGNATURE)
    assert not (tmp_path / "runs").exists()  # no run folder, nothing a later train reads
    # The line is ready to paste: --set reads it back as the number printed.
    config = load_config(write_config(tmp_path), [lines[-1].removeprefix("--set ")])
    assert config.optimizer.params["lr"] == suggested


def test_the_same_seed_gives_the_same_test_and_another_seed_another(tmp_path):
    config = write_config(tmp_path)
    runs = {
        name: run_cli("lr-find", config, "-o", tmp_path / f"{name}.png", "--seed", seed)
        for name, seed in (("first", 3), ("again", 3), ("other", 4))
    }
    assert [result.exit_code for result in runs.values()] == [0, 0, 0]

    def without_timing_and_plot(stdout: str) -> str:
        timing = re.sub(r"; seed (\d+), [\d.]+s$", r"; seed \1", stdout, count=1, flags=re.MULTILINE)
        return re.sub(r"^written: .*$", "written:", timing, flags=re.MULTILINE)

    assert without_timing_and_plot(runs["first"].stdout) == without_timing_and_plot(runs["again"].stdout)
    assert "; seed 3\n" in without_timing_and_plot(runs["first"].stdout)
    assert (tmp_path / "first.png").read_bytes() == (tmp_path / "again.png").read_bytes()
    assert (tmp_path / "first.png").read_bytes() != (tmp_path / "other.png").read_bytes()


def test_a_run_trained_after_lr_find_equals_one_trained_without_it(tmp_path):
    config = write_config(tmp_path, model={"name": "mlp", "hidden": [16], "dropout": 0.2})  # dropout draws
    before = run_cli("train", config, "--out", tmp_path / "before", "--quiet")
    found = run_cli("lr-find", config, "-o", tmp_path / "lr.png")
    after = run_cli("train", config, "--out", tmp_path / "after", "--quiet")
    assert before.exit_code == found.exit_code == after.exit_code == 0

    def record(run: Path) -> tuple[list[dict], dict]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        summary = json.loads((run / "summary.json").read_text())
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows], summary["test"]

    assert record(tmp_path / "after") == record(tmp_path / "before")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["after", "before", "lr.png", "tiny.yaml"]


def test_accumulated_micro_batches_sweep_as_the_full_batch(tmp_path):
    """One rate per optimizer step: batch 16 x 2 takes the steps batch 32 takes, with the same losses."""
    settings = RangeSettings(1e-4, 1e-1, 30)

    def sweep(*overrides: str) -> Sweep:
        config = load_config(write_config(tmp_path), list(overrides))
        return run_range_test(config, build_range_parts(config), settings)

    full = sweep("data.batch_size=32")
    accumulated = sweep("data.batch_size=16", "trainer.accumulate=2")
    assert len(full.losses) == len(accumulated.losses) == 30
    assert accumulated.losses == pytest.approx(full.losses, rel=1e-5)
    assert accumulated.initial_loss == pytest.approx(full.initial_loss, rel=1e-6)


def test_the_sweep_sets_only_the_groups_that_follow_optimizer_lr():
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias], "lr": 0.5}], lr=0.1)
    schedule = ExponentialSweep(optimizer, [0], [1e-3, 1e-2, 1e-1])
    seen = [[group["lr"] for group in optimizer.param_groups]]
    for _ in range(3):
        schedule.step()
        seen.append([group["lr"] for group in optimizer.param_groups])
    assert seen == [[1e-3, 0.5], [1e-2, 0.5], [1e-1, 0.5], [1e-1, 0.5]]  # past the end: the last rate


def test_a_group_with_its_own_rate_keeps_it(tmp_path):
    own = {"name": "adam", "lr": 0.01, "groups": [{"params": "3", "lr": 0.1}]}
    shared = {"name": "adam", "lr": 0.01, "groups": [{"params": "3", "weight_decay": 0.1}]}
    for optimizer, swept in ((own, [0]), (shared, [0, 1])):
        config = load_config(write_config(tmp_path, optimizer=optimizer, model={"name": "mlp", "hidden": [16]}))
        assert swept_groups(config, build_range_parts(config)) == swept


def test_onecycle_suggests_its_max_lr(tmp_path):
    config = write_config(tmp_path, scheduler={"name": "onecycle", "max_lr": 0.05})
    result = lr_find(tmp_path, "--steps", "60", config=config)
    assert result.exit_code == 0, result.output
    assert "the config has scheduler.max_lr=0.05: " in result.stdout
    assert re.search(r"^--set scheduler\.max_lr=\S+$", result.stdout, re.MULTILINE)


def test_preflight_warnings_are_printed(tmp_path):
    result = lr_find(tmp_path, "--set", "model.output_activation=softmax", "--steps", "30")
    assert result.stderr.startswith("warning: double-softmax: ")


# ---- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--min-lr", "1", "--max-lr", "0.1"], "--min-lr 1 must be below --max-lr 0.1"),
        (["--min-lr", "0"], "--min-lr 0: must be a positive number (the rates rise exponentially)"),
        (["--max-lr", "-1"], "--max-lr -1: must be a positive number (the rates rise exponentially)"),
        (["--max-lr", "inf"], "--max-lr inf: must be a positive number (the rates rise exponentially)"),
        (["--steps", "4"], "--steps 4: at least 5 steps are needed to see the loss fall"),
    ],
)
def test_a_bad_range_is_refused(tmp_path, options, message):
    result = lr_find(tmp_path, *options)
    assert result.exit_code == 2
    assert result.stderr == f"error: {message}\n"
    assert not (tmp_path / "lr.png").exists()


def test_an_existing_plot_is_kept_without_force(tmp_path):
    (tmp_path / "lr.png").write_text("mine")
    result = lr_find(tmp_path)
    assert result.exit_code == 2
    assert result.stderr == f"error: --output {tmp_path / 'lr.png'}: already exists; add --force to replace it\n"
    assert (tmp_path / "lr.png").read_text() == "mine"
    assert lr_find(tmp_path, "--force", "--steps", "20").exit_code == 0
    assert (tmp_path / "lr.png").read_bytes().startswith(PNG_SIGNATURE)


def test_a_plot_that_cannot_be_written_is_refused_before_the_test(tmp_path):
    missing = run_cli("lr-find", write_config(tmp_path), "-o", tmp_path / "absent" / "lr.png")
    assert missing.exit_code == 2
    assert (
        missing.stderr
        == f"error: --output {tmp_path / 'absent' / 'lr.png'}: folder {tmp_path / 'absent'} does not exist\n"
    )
    wrong_type = run_cli("lr-find", write_config(tmp_path), "-o", tmp_path / "lr.txt")
    assert (
        wrong_type.stderr
        == f"error: --output {tmp_path / 'lr.txt'}: unknown image type '.txt'; allowed: .png, .svg, .pdf\n"
    )
    if sys.platform == "linux":  # a folder nobody can create files in, root included
        unwritable = run_cli("lr-find", write_config(tmp_path), "-o", "/proc/lr.png")
        assert unwritable.exit_code == 2
        assert unwritable.stderr.startswith("error: /proc/lr.png: ")
        assert unwritable.stdout == ""  # refused before the test ran


def test_an_invalid_config_is_refused(tmp_path):
    path = write_config(tmp_path, optimizer={"name": "adamm"})
    result = lr_find(tmp_path, config=path)
    assert result.exit_code == 2
    assert "optimizer.name: unknown optimizer 'adamm' (did you mean 'adam'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "lr.png").exists()


def test_a_loss_non_finite_after_the_first_update_says_the_range_is_too_high(tmp_path):
    result = lr_find(tmp_path, "--set", "optimizer.name=sgd", "--min-lr", "1e30", "--max-lr", "1e35")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: the loss became non-finite after the first update, at --min-lr 1e+30: the lr range starts "
        "too high; lower --min-lr\n"
    )
    assert not (tmp_path / "lr.png").exists()


def test_no_descent_writes_the_plot_and_says_why(tmp_path):
    result = lr_find(tmp_path, "--min-lr", "3", "--max-lr", "100")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: lr-find: no suggestion: the test stopped at step ")
    assert result.stderr.endswith(f"lower --min-lr (now 3) (plot: {tmp_path / 'lr.png'})\n")
    assert (tmp_path / "lr.png").read_bytes().startswith(PNG_SIGNATURE)


def test_lr_find_runs_in_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    result = lr_find(tmp_path)
    assert result.exit_code == 2
    assert result.stderr == "error: lr-find runs in one process: start it without torchrun\n"


def test_the_api_returns_the_sweep(tmp_path):
    from trainctl.workflows import lr_find as find

    result = find(write_config(tmp_path), None, RangeSettings(steps=40), tmp_path / "lr.svg", output=Output(quiet=True))
    assert result.rate_key == "optimizer.lr" and result.configured == 0.01
    assert len(result.sweep.rates) == len(result.sweep.losses) == len(result.suggestion.smoothed)
    assert (tmp_path / "lr.svg").read_text().startswith("<?xml")
