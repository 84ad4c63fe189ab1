"""Sweep trials in warm worker processes: the same results as `trainctl train` alone, a fresh state
for every trial, and a trial that crashes, leaks or is killed taking only its own worker with it."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from trainctl.sweeps import workers

from helpers import TRAINCTL, read_jsonl, write_config

pytestmark = pytest.mark.subprocess  # trials run in worker processes

# A model that writes down which process built it (pid, torchrun rank, tag), and on request leaves
# the process disturbed, crashes it, or keeps memory for good: what a careless plugin might do.
PROBE_PLUGIN = """
import os
import signal
from typing import Any

from trainctl import register

_kept = []


@register.model("probe_mlp", summary="An MLP that logs its process and may disturb, crash or leak it", input="any")
def probe_mlp(context: Any, *, disturb: bool = False, crash: str = "none", leak_mb: int = 0, tag: str = "") -> Any:
    import math

    import torch

    size = math.prod(context.input_shape)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(size, 16), torch.nn.ReLU(), torch.nn.Linear(16, context.num_outputs)
    )
    if torch.empty(0).device.type == "meta":  # trainctl sizes the model on the meta device first
        return model
    with open(os.environ["PROBE_LOG"], "a") as log:
        log.write(f"{os.getpid()} {os.environ.get('RANK', '-')} {tag}\\n")
    if disturb:  # settings a fresh process would not have, left for whatever runs next
        torch.set_default_dtype(torch.float64)
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        os.environ["PROBE_DISTURBED"] = "1"
    if crash == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if crash == "exit":
        os._exit(3)
    if crash == "raise":
        raise RuntimeError("the probe model failed on purpose")
    _kept.append(b"x" * (leak_mb << 20))
    return model
"""


@pytest.fixture
def probe(tmp_path, monkeypatch) -> Iterator[tuple[Path, Path]]:
    """(plugin file, the log its model writes); the log's path reaches workers through the environment.
    A sweep run in this process loads the plugin here too: the registries are put back afterwards."""
    from trainctl.plugins import loading_state, restore_loading_state

    plugin = tmp_path / "probe_plugin.py"
    plugin.write_text(textwrap.dedent(PROBE_PLUGIN), encoding="utf-8")
    log = tmp_path / "probe.log"
    monkeypatch.setenv("PROBE_LOG", str(log))
    before = loading_state()
    yield plugin, log
    restore_loading_state(before)


def probe_config(directory: Path, epochs: int = 3) -> Path:
    return write_config(directory, model={"name": "probe_mlp"}, trainer={"epochs": epochs, "device": "cpu"})


def log_lines(log: Path) -> list[list[str]]:
    return [line.split(" ") for line in log.read_text().splitlines()]


def read_leaderboard(folder: Path) -> dict[str, dict]:
    """The leaderboard's rows by the tag the trial trained."""
    with (folder / "leaderboard.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {row.get("model.tag") or row.get("model.crash") or row["folder"]: row for row in rows}


def without_times(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]


@pytest.mark.slow
def test_a_trial_after_another_in_a_warm_worker_trains_as_it_does_alone(cli, probe, tmp_path):
    plugin, log = probe
    config, sweep = probe_config(tmp_path), tmp_path / "sweep"
    # Sampler seed 1 puts the disturbing trial first; the log below checks that it did.
    result = cli(
        "--plugin", plugin, "sweep", config, "--grid", "model.disturb=true,false", "--sampler-seed", "1", "--out", sweep
    )
    assert result.exit_code == 0, result.output
    first, second = log_lines(log)
    assert first[0] == second[0]  # one worker ran both trials, the disturbing one first
    trials = {row["model.disturb"]: row for row in read_leaderboard(sweep).values()}
    assert int(trials["true"]["trial"]) < int(trials["false"]["trial"])
    assert trials["true"]["status"] == trials["false"]["status"] == "done"
    in_worker = sweep / trials["false"]["folder"]

    alone = tmp_path / "alone"
    environment = {**os.environ, "PROBE_LOG": str(tmp_path / "alone.log")}
    command = [TRAINCTL, "--plugin", plugin, "train", sweep / "base.yaml", "--set", "model.disturb=false"]
    trained = subprocess.run([*map(str, command), "--out", str(alone), "--quiet"], env=environment, timeout=300)
    assert trained.returncode == 0
    assert without_times(read_jsonl(in_worker / "metrics.jsonl")) == without_times(read_jsonl(alone / "metrics.jsonl"))
    ours, theirs = (torch.load(run / "checkpoints" / "last.pt", weights_only=True) for run in (in_worker, alone))
    for part in ("model", "optimizer"):
        flat_ours, flat_theirs = flatten(ours[part]), flatten(theirs[part])
        assert flat_ours.keys() == flat_theirs.keys()
        for key, value in flat_ours.items():
            if isinstance(value, torch.Tensor):
                assert value.dtype == flat_theirs[key].dtype and torch.equal(value, flat_theirs[key]), (part, key)
            else:
                assert value == flat_theirs[key], (part, key)


def flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}{key}.").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flatten(item, f"{prefix}{i}.").items()}
    return {prefix: value}


@pytest.mark.slow
def test_a_trial_that_crashes_its_worker_fails_alone_and_the_next_gets_a_new_worker(cli, probe, tmp_path):
    plugin, log = probe
    config, sweep = probe_config(tmp_path, epochs=1), tmp_path / "sweep"
    result = cli("--plugin", plugin, "sweep", config, "--grid", "model.crash=none,segfault,exit,raise", "--out", sweep)
    assert result.exit_code == 0, result.output
    rows = read_leaderboard(sweep)
    assert rows["none"]["status"] == "done"
    assert (rows["segfault"]["status"], rows["segfault"]["error"]) == (
        "failed",
        "the trial's worker process was killed by SIGSEGV",
    )
    assert (rows["exit"]["status"], rows["exit"]["error"]) == (
        "failed",
        "the trial's worker process exited with code 3",
    )
    # A trial's own exception fails it with the line `trainctl train` ends with, and the worker lives on.
    alone = subprocess.run(
        [TRAINCTL, "--plugin", str(plugin), "train", str(config), "--set", "model.crash=raise", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert alone.returncode == 1
    assert rows["raise"]["status"] == "failed"
    assert (
        rows["raise"]["error"]
        == alone.stderr.strip().splitlines()[-1]
        == "RuntimeError: the probe model failed on purpose"
    )
    # Trials in the order they ran (one job): the trial after a crash ran in a new process.
    order = sorted(rows.values(), key=lambda row: int(row["trial"]))
    pids = [line[0] for line in log_lines(log)[: len(order)]]
    for before, after, pid_before, pid_after in zip(order, order[1:], pids, pids[1:], strict=False):
        crashed = before["error"].startswith("the trial's worker process")
        assert (pid_before != pid_after) == crashed, (before, after)


@pytest.mark.slow
def test_a_worker_that_grew_by_more_than_the_allowance_is_replaced(cli, probe, tmp_path, monkeypatch):
    plugin, log = probe
    monkeypatch.setattr(workers, "LEAK_ALLOWANCE", 32 << 20)
    config, sweep = probe_config(tmp_path, epochs=1), tmp_path / "sweep"
    grid = ["--grid", "model.leak_mb=96", "--grid", "model.tag=a,b,c"]
    result = cli("--plugin", plugin, "sweep", config, *grid, "--out", sweep)
    assert result.exit_code == 0, result.output
    assert [row["status"] for row in read_leaderboard(sweep).values()] == ["done"] * 3
    first, second, third = (line[0] for line in log_lines(log))
    # The first trial sets the worker's measure; the second leaks past it, so the third gets a new worker.
    assert first == second != third


@pytest.mark.slow
def test_a_worker_killed_during_a_trial_is_replaced_and_the_sweep_completes(probe, tmp_path):
    plugin, log = probe
    config, sweep = probe_config(tmp_path, epochs=200), tmp_path / "sweep"
    command = [TRAINCTL, "--plugin", plugin, "sweep", config, "--grid", "model.tag=a,b", "--out", sweep]
    command += ["--set", "trainer.epochs=200"]
    process = subprocess.Popen(list(map(str, command)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(sweep.glob("trial-0000/checkpoints/last.pt")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    killed = int(log_lines(log)[0][0])
    os.kill(killed, signal.SIGKILL)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    rows = {row["folder"]: row for row in read_leaderboard(sweep).values()}
    assert (rows["trial-0000"]["status"], rows["trial-0000"]["error"]) == (
        "failed",
        "the trial's worker process was killed by SIGKILL (the system's out-of-memory killer sends it when "
        "memory runs out)",
    )
    assert rows["trial-0001"]["status"] == "done"
    assert int(log_lines(log)[1][0]) != killed
    assert 1 <= len(read_jsonl(sweep / "trial-0000" / "metrics.jsonl")) < 200  # its folder is kept as it was


@pytest.mark.slow
@pytest.mark.distributed
def test_a_trial_in_several_processes_runs_as_its_own_command_with_the_plugins(cli, probe, tmp_path):
    plugin, log = probe
    config, sweep = probe_config(tmp_path, epochs=1), tmp_path / "sweep"
    result = cli("--plugin", plugin, "sweep", config, "--grid", "model.tag=a", "--nproc", "2", "--out", sweep)
    assert result.exit_code == 0, result.output
    assert [row["status"] for row in read_leaderboard(sweep).values()] == ["done"]
    assert sorted(line[1] for line in log_lines(log)) == ["0", "1"]  # built by rank 0 and rank 1


def test_pruning_needs_trials_in_one_process(tmp_path):
    from trainctl.errors import UserError
    from trainctl.sweeps.search import prepare_sweep

    with pytest.raises(UserError) as refused:
        prepare_sweep(write_config(tmp_path), [], grid=["optimizer.lr=0.01"], space=[], nproc=2, pruner="median")
    assert str(refused.value).startswith("--nproc 2: a trial in several processes runs as its own `trainctl train")


def test_the_registries_are_put_back_as_they_were():
    from trainctl.components.registries import MODELS
    from trainctl.plugins import loading_state, restore_loading_state
    from trainctl.register import model

    before = loading_state()
    names = MODELS.names()

    @model("made_by_a_trial", summary="registered while a trial ran", input="any")
    def made_by_a_trial(context):
        return None

    assert "made_by_a_trial" in MODELS
    restore_loading_state(before)
    assert MODELS.names() == names
