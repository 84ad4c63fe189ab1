"""Several processes on torch.distributed (gloo on CPU): the same model as one process, every rank alike."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from trainctl.cli import without_option
from trainctl.output import Output
from trainctl.workflows import resume, train

from helpers import TRAINCTL, image_tree, read_jsonl, write_config

pytestmark = [pytest.mark.distributed, pytest.mark.subprocess, pytest.mark.slow]

WORKER = Path(__file__).parent / "workers" / "train_and_dump.py"


def config_for(directory: Path, epochs: int = 3) -> Path:
    """No dropout or batch norm: with those, ranks draw different masks and keep their own statistics.
    1437 training samples in global batches of 64: every rank gets samples in every batch."""
    return write_config(
        directory,
        data={"name": "digits", "batch_size": 64},
        model={"name": "mlp", "hidden": [32]},
        optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9},
        trainer={"epochs": epochs, "device": "cpu"},
    )


def assert_close_runs(a: Path, b: Path, tolerance: float = 1e-5) -> None:
    wa = torch.load(a / "checkpoints" / "last.pt", weights_only=True)["model"]
    wb = torch.load(b / "checkpoints" / "last.pt", weights_only=True)["model"]
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=tolerance, rtol=0), key
    for ra, rb in zip(read_jsonl(a / "metrics.jsonl"), read_jsonl(b / "metrics.jsonl"), strict=True):
        for key, value in ra.items():
            if key != "seconds":
                assert rb[key] == pytest.approx(value, abs=tolerance), key


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """torchrun itself starting two processes of trainctl's train, each saving its final parameters."""
    folder = tmp_path_factory.mktemp("ddp")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(WORKER),
        str(config_for(folder)),
        str(folder / "run"),
        str(folder),
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return folder


def test_every_rank_ends_with_the_same_parameters(two_process_run):
    ranks = [torch.load(two_process_run / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    saved = torch.load(two_process_run / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(saved[key], ranks[1][key]) for key in saved)  # rank 0 wrote what every rank holds


def test_two_processes_train_the_model_one_process_does(two_process_run, tmp_path):
    single = train(config_for(tmp_path), out=tmp_path / "one", output=Output(quiet=True))
    assert_close_runs(single.run.path, two_process_run / "run")
    assert sorted(p.name for p in (two_process_run / "run").iterdir()) == [
        "checkpoints",
        "config.yaml",
        "curves.png",
        "data.json",
        "metrics.jsonl",
        "reliability.png",
        "summary.json",
        "test_predictions.csv",
    ]


def test_two_processes_accumulating_train_the_model_one_process_does_with_the_whole_batch(tmp_path):
    """Micro-batches of 16 in groups of 4 over two ranks (DDP syncing once per group): the weights a
    batch of 64 gives in one process. 1437 samples: the last group is a micro-batch of 16 and one of 13."""
    config = config_for(tmp_path, epochs=1)
    accumulating = ["--set", "data.batch_size=16", "--set", "trainer.accumulate=4"]
    finished = subprocess.run(
        [TRAINCTL, "train", config, "--nproc", "2", "--out", tmp_path / "two", "--quiet", *accumulating],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    single = train(config, out=tmp_path / "one", output=Output(quiet=True))
    assert_close_runs(single.run.path, tmp_path / "two")


def test_two_processes_accumulating_a_class_weighted_loss_train_the_model_one_process_does(tmp_path):
    """Class-weighted cross-entropy divides by the class weights of its targets: each rank's
    micro-batch weighs its share of the group's summed class weights, so 2 processes accumulating
    16 × 4 reach the weights 1 process does with batches of 64 (only the weights: train/loss
    stays each batch's mean, averaged over samples)."""
    weights = [0.2, 1.0, 5.0, 1.0, 0.5, 1.0, 2.0, 1.0, 1.0, 3.0]
    config = config_for(tmp_path, epochs=1)
    weighted = ["--set", f"loss.class_weight={weights}"]
    accumulating = ["--set", "data.batch_size=16", "--set", "trainer.accumulate=4"]
    finished = subprocess.run(
        [TRAINCTL, "train", config, "--nproc", "2", "--out", tmp_path / "two", "--quiet", *weighted, *accumulating],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    single = train(config, [f"loss.class_weight={weights}"], out=tmp_path / "one", output=Output(quiet=True))
    one, two = (
        torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
        for run in (single.run.path, tmp_path / "two")
    )
    for key in one:
        assert torch.allclose(one[key], two[key], atol=1e-5, rtol=0), key


def test_two_processes_log_each_step_once_with_the_global_batchs_loss(tmp_path):
    """Rank 0 writes steps.jsonl; each record's loss is the mean over both ranks' samples, so it is
    the loss one process logs for the same step (accumulating 16 × 2 per step here)."""
    config = config_for(tmp_path, epochs=1)
    settings = ["data.batch_size=16", "trainer.accumulate=2", "logging.every_n_steps=5"]
    finished = subprocess.run(
        [TRAINCTL, "train", config, "--nproc", "2", "--out", tmp_path / "two", "--quiet"]
        + [part for setting in settings for part in ("--set", setting)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    single = train(config, settings, out=tmp_path / "one", output=Output(quiet=True))
    one, two = read_jsonl(single.run.path / "steps.jsonl"), read_jsonl(tmp_path / "two" / "steps.jsonl")
    last = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=True)["state"]["global_step"]
    assert [row["step"] for row in two] == [row["step"] for row in one] == list(range(5, last + 1, 5))
    assert [row["loss"] for row in two] == pytest.approx([row["loss"] for row in one], rel=1e-5)
    assert [row["lr"] for row in two] == [row["lr"] for row in one]


def test_a_two_process_run_resumes_in_one_process(two_process_run, tmp_path):
    straight = train(config_for(tmp_path, epochs=5), out=tmp_path / "straight", output=Output(quiet=True))
    copied = tmp_path / "copied"
    subprocess.run(["cp", "-r", str(two_process_run / "run"), str(copied)], check=True)
    resumed = resume(copied, ["trainer.epochs=5"], output=Output(quiet=True))
    assert resumed.summary["epochs_trained"] == 5
    assert_close_runs(straight.run.path, copied)


def test_a_one_process_run_resumes_in_two(tmp_path):
    straight = train(config_for(tmp_path, epochs=5), out=tmp_path / "straight", output=Output(quiet=True))
    first = train(config_for(tmp_path), out=tmp_path / "run", output=Output(quiet=True))
    finished = subprocess.run(
        [TRAINCTL, "train", "--resume", first.run.path, "--nproc", "2", "--set", "trainer.epochs=5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.count("resuming ") == 1, finished.stdout + finished.stderr  # rank 0 alone prints
    assert_close_runs(straight.run.path, first.run.path)


def rank_processes(run_id_prefix: bytes = b"trainctl-") -> dict[int, int]:
    """The worker processes the launcher started, by rank (read from their environment)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environment = dict(
                item.split(b"=", 1) for item in (entry / "environ").read_bytes().split(b"\0") if b"=" in item
            )
        except OSError:
            continue
        if environment.get(b"TORCHELASTIC_RUN_ID", b"").startswith(run_id_prefix) and b"RANK" in environment:
            found[int(environment[b"RANK"])] = int(entry.name)
    return found


def test_a_dead_worker_ends_the_run_with_one_line_not_a_hang(tmp_path):
    config = config_for(tmp_path, epochs=1000)
    process = subprocess.Popen(
        [TRAINCTL, "train", config, "--nproc", "2", "--out", tmp_path / "run", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "run" / "metrics.jsonl").exists():  # both ranks are training
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    workers = rank_processes()
    os.kill(workers[1], signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    # Only the launcher's line: rank 0, which stopped because rank 1 died, prints no transport internals.
    assert stderr == "error: --nproc 2: the process of rank 1 was killed (SIGKILL)\n"


def test_several_processes_check_the_run_folder_once_before_starting(cli, tmp_path):
    result = cli("train", "--resume", tmp_path / "nowhere", "--nproc", "2")
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'nowhere'}: run folder not found\n"  # once, not once per process


def test_streamed_and_augmented_images_train_in_two_processes_as_in_one(tmp_path):
    """An image folder read from disk, with per-sample random crops and flips: each rank reads its
    part of every batch (and of the val and test splits), and the augmentation is seeded per sample."""

    root = image_tree(tmp_path / "imgs", {"blue": 40, "red": 40})
    config = write_config(
        tmp_path,
        data={
            "name": "image_folder",
            "root": str(root),
            "batch_size": 16,
            "transforms": {
                "train": [
                    {"name": "random_crop", "size": [12, 10], "padding": 1},
                    {"name": "horizontal_flip"},
                    {"name": "normalize"},
                ]
            },
        },
        model={"name": "mlp", "hidden": [16]},
        optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9},
        trainer={"epochs": 2, "device": "cpu"},
    )
    one = train(config, out=tmp_path / "one", output=Output(quiet=True))
    finished = subprocess.run(
        [TRAINCTL, "train", config, "--nproc", "2", "--out", tmp_path / "two", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert_close_runs(one.run.path, tmp_path / "two")


def test_a_run_in_two_processes_exits_0_and_leaves_no_launcher_folder(tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    environment = {**os.environ, "TMPDIR": str(temporary)}  # where the launcher kept its log folders
    finished = subprocess.run(
        [TRAINCTL, "train", config_for(tmp_path, epochs=1), "--nproc", "2", "--out", tmp_path / "run", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout == f"{tmp_path / 'run'}\n"
    assert list(temporary.iterdir()) == []


@pytest.mark.parametrize(
    ("arguments", "status", "stream", "text"),
    [
        (["list-losses"], 0, "stdout", "cross_entropy"),
        (["validate", "missing.yaml"], 2, "stderr", "missing.yaml"),
    ],
)
def test_a_worker_process_ends_with_its_commands_exit_status(tmp_path, arguments, status, stream, text):
    """A process of a run in several ends with os._exit (no interpreter teardown while gloo's threads
    run), keeping the command's exit status and everything it printed."""
    environment = {**os.environ, "WORLD_SIZE": "2", "RANK": "1"}
    finished = subprocess.run(
        [sys.executable, "-m", "trainctl", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        cwd=tmp_path,
    )
    assert finished.returncode == status, finished.stderr
    assert text in getattr(finished, stream)
    assert "Traceback" not in finished.stderr


def test_nproc_starts_every_process_with_the_command_line_as_typed(tmp_path):
    """The processes get the user's own arguments less --nproc: the global --debug before the command,
    --seed (which the launcher once had to turn into --set seed=N) and -q reach them as typed."""
    run = tmp_path / "run"
    finished = subprocess.run(
        [TRAINCTL, "--debug", "train", config_for(tmp_path, epochs=1), "--nproc=2", "--seed", "7", "--out", run, "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout == f"{run}\n"  # -q: rank 0 prints the run folder alone
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 7


def test_nproc_passes_the_global_options_before_the_command_on_too(tmp_path):
    """--debug, which the command line rebuilt flag by flag never passed on: a check that fails in
    the processes (a double softmax, an error with --strict) shows them its traceback."""
    config = config_for(tmp_path, epochs=1)
    finished = subprocess.run(
        [TRAINCTL, "--debug", "train", config, "--set", "model.output_activation=softmax", "--strict", "--nproc", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 1, finished.stderr[-3000:]
    assert "Traceback" in finished.stderr
    assert "trainctl.reports.preflight.PreflightError: double-softmax:" in finished.stderr, finished.stderr[-3000:]


def test_nproc_is_taken_out_of_the_command_line_in_both_spellings():
    typed = ["--debug", "train", "c.yaml", "--nproc", "2", "--set", "a=1", "--nproc=3", "-q", "--", "--nproc", "4"]
    assert without_option(typed, "--nproc") == [
        "--debug",
        "train",
        "c.yaml",
        "--set",
        "a=1",
        "-q",
        "--",
        "--nproc",
        "4",
    ]
