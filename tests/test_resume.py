"""Exact resume: a run stopped (finished, Ctrl-C, SIGKILL) and resumed equals the run never stopped."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from trainctl.errors import UserError
from trainctl.output import Output
from trainctl.workflows import resume, train

from helpers import TRAINCTL, read_jsonl, write_config


def resumable_config(tmp_path, epochs=6, **extra):
    """Dropout, batch norm and a per-epoch scheduler: every kind of state a resume must restore."""
    sections = {
        "data": {"name": "digits", "batch_size": 32},
        "model": {"name": "mlp", "hidden": [64, 64], "dropout": 0.3, "batch_norm": True},
        "optimizer": {"name": "adam", "lr": 0.002},
        "scheduler": {"name": "step", "step_size": 2, "gamma": 0.5},
        "trainer": {"epochs": epochs, "device": "cpu"},
    }
    sections.update(extra)
    return write_config(tmp_path, **sections)


def weights(run_path):
    return torch.load(run_path / "checkpoints" / "last.pt", weights_only=True)["model"]


def assert_same_run(a: Path, b: Path):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    strip = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert strip(read_jsonl(a / "metrics.jsonl")) == strip(read_jsonl(b / "metrics.jsonl"))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The reference: 6 epochs without a stop."""
    folder = tmp_path_factory.mktemp("straight")
    return train(resumable_config(folder), out=folder / "run", output=Output(quiet=True)).run.path


@pytest.mark.slow
def test_three_then_resumed_to_six_is_bit_identical(tmp_path, straight):
    first = train(resumable_config(tmp_path), ["trainer.epochs=3"], out=tmp_path / "run", output=Output(quiet=True))
    assert len(read_jsonl(first.run.metrics_path)) == 3
    resumed = resume(first.run.path, ["trainer.epochs=6"], output=Output(quiet=True))
    assert resumed.run.path == first.run.path
    assert_same_run(straight, first.run.path)
    assert resumed.summary["epochs_trained"] == 6
    assert "epochs: 6" in (first.run.path / "config.yaml").read_text()


def test_a_tiny_run_stopped_after_one_epoch_resumes_bit_identical(tmp_path):
    """The fast lane's version of the test above: iris, with dropout, batch norm and a scheduler that
    steps at the end of the first epoch; two epochs straight, or one and then resumed to two."""
    tiny = {
        "data": {"name": "iris", "batch_size": 16},
        "model": {"name": "mlp", "hidden": [16], "dropout": 0.3, "batch_norm": True},
        "scheduler": {"name": "step", "step_size": 1, "gamma": 0.5},
    }
    for folder in ("straight", "stopped"):
        (tmp_path / folder).mkdir()
    straight = train(
        resumable_config(tmp_path / "straight", epochs=2, **tiny),
        out=tmp_path / "straight" / "run",
        output=Output(quiet=True),
    )
    config = resumable_config(tmp_path / "stopped", epochs=2, **tiny)
    first = train(config, ["trainer.epochs=1"], out=tmp_path / "stopped" / "run", output=Output(quiet=True))
    resumed = resume(first.run.path, ["trainer.epochs=2"], output=Output(quiet=True))
    assert resumed.summary["epochs_trained"] == 2
    assert_same_run(straight.run.path, first.run.path)


def test_resume_refuses_a_different_config(tmp_path):
    run = tmp_path / "run"
    train(resumable_config(tmp_path), ["trainer.epochs=2"], out=run, output=Output(quiet=True))
    with pytest.raises(UserError) as caught:
        resume(run, ["optimizer.lr=0.1", "model.dropout=0.0", "trainer.epochs=4"])
    assert "cannot resume with a different config; these keys differ: model.dropout, optimizer.lr" in str(caught.value)
    with pytest.raises(UserError, match="nothing to resume: the run finished all 2 epochs; extend it with"):
        resume(run)


def test_cosine_runs_cannot_be_extended(tmp_path):
    run = tmp_path / "run"
    train(
        resumable_config(tmp_path, scheduler={"name": "cosine"}),
        ["trainer.epochs=1"],
        out=run,
        output=Output(quiet=True),
    )
    with pytest.raises(
        UserError,
        match="scheduler 'cosine' laid its schedule out over 1 epochs and ends it there; "
        r"a run with no scheduler or one that steps per epoch without a warm-up \(step, reduce_on_plateau\) "
        "can be extended; for this one, train a new run with --set trainer.epochs=2",
    ):
        resume(run, ["trainer.epochs=2"])
    with pytest.raises(
        UserError,
        match=re.escape(
            "the run finished all 1 epochs; its cosine schedule ends with the run, so for "
            "more epochs train a new run with --set trainer.epochs=N"
        ),
    ):
        resume(run)  # not told to extend what cannot be extended


def summary_without_timing(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    summary.pop("train_seconds")
    return summary


def assert_same_outcome(a: Path, b: Path):
    """The same run: last and best checkpoints, metrics and summary (timings aside)."""
    assert_same_run(a, b)
    best_a, best_b = (torch.load(run / "checkpoints" / "best.pt", weights_only=True) for run in (a, b))
    assert best_a["epoch"] == best_b["epoch"]
    for key in best_a["model"]:
        assert torch.equal(best_a["model"][key], best_b["model"][key]), key
    assert summary_without_timing(a) == summary_without_timing(b)


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_resumes_from_its_start(tmp_path, straight):
    """What a kill leaves during the first epoch: config.yaml, perhaps a torn metrics row, no checkpoint."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(straight / "config.yaml", run / "config.yaml")
    (run / "metrics.jsonl").write_text('{"epoch": 1, "train/lo')
    resume(run, output=Output(quiet=True))
    assert_same_outcome(straight, run)


def kill_leftovers(reference: Path, run: Path, last_from: Path, best_from: Path | None) -> None:
    """A run folder as a kill leaves it: the full run's config, last.pt and best.pt from other
    moments of the same run, metrics rows up to last.pt's epoch and beyond, and temporary files."""
    (run / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "data.json", "metrics.jsonl"):
        shutil.copy(reference / name, run / name)
    shutil.copy(last_from / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")
    if best_from is not None:
        shutil.copy(best_from / "checkpoints" / "best.pt", run / "checkpoints" / "best.pt")
    (run / "checkpoints" / ".last.pt.x1y2z3.tmp").write_bytes(b"half a checkpoint")
    (run / "checkpoints" / ".best.pt.link.tmp").write_bytes(b"")
    (run / ".summary.json.a1b2c3.tmp").write_text("{")
    (run / ".curves.png.d4e5f6.tmp.png").write_bytes(b"\x89PNG")


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["best.pt missing", "best.pt older than last.pt", "best.pt newer than last.pt"])
def test_every_kill_between_the_checkpoint_writes_resumes_to_the_same_run(tmp_path, moment):
    config = resumable_config(tmp_path, epochs=3)
    reference = train(config, out=tmp_path / "straight", output=Output(quiet=True)).run.path
    one = train(config, ["trainer.epochs=1"], out=tmp_path / "one", output=Output(quiet=True)).run.path
    two = train(config, ["trainer.epochs=2"], out=tmp_path / "two", output=Output(quiet=True)).run.path
    assert json.loads((two / "summary.json").read_text())["best_epoch"] == 2  # so best.pt of `one` is older
    last_from, best_from = {
        "best.pt missing": (one, None),  # killed after last.pt's first write, before best.pt's (the old order)
        "best.pt older than last.pt": (two, one),  # killed between last.pt and best.pt (the old order)
        "best.pt newer than last.pt": (one, two),  # killed between best.pt and last.pt (the order now)
    }[moment]
    run = tmp_path / "run"
    kill_leftovers(reference, run, last_from, best_from)
    resume(run, output=Output(quiet=True))
    assert_same_outcome(reference, run)
    assert sorted(p.name for p in run.rglob(".*")) == []


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 240) -> bool:
    return wait_until(path.exists, process, timeout)


def wait_until(condition, process: subprocess.Popen, timeout: float = 240) -> bool:
    """True once the condition holds; False if the process ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.02)
    raise TimeoutError(condition)


def read_jsonl_lines(path: Path) -> list[dict]:
    """The complete rows of a JSON-lines file another process is writing (none yet: no rows)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]


@pytest.mark.slow
@pytest.mark.subprocess
def test_ctrl_c_saves_state_mid_epoch_and_resumes_exactly(tmp_path, straight):
    run = tmp_path / "run"
    # Each step's record (steps.jsonl) shows when epoch 2 has begun, however loaded the machine is;
    # recording reads the loss and changes nothing the run computes.
    command = [TRAINCTL, "train", resumable_config(tmp_path), "--out", run, "--set", "logging.every_n_steps=1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_until(lambda: any(row["epoch"] == 2 for row in read_jsonl_lines(run / "steps.jsonl")), process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"Resume with: trainctl train --resume {run}" in stderr
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert state["step_in_epoch"] > 0  # it stopped inside an epoch, after finishing a step
    resume(run, output=Output(quiet=True))
    assert_same_run(straight, run)


def epochs_done(run: Path) -> int:
    return len(read_jsonl(run / "metrics.jsonl")) if (run / "metrics.jsonl").exists() else 0


def wait_for_progress(run: Path, process: subprocess.Popen, done: int, timeout: float = 240) -> None:
    """Until the process has finished another epoch (or exited)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and epochs_done(run) <= done:
        if time.monotonic() > deadline:
            raise TimeoutError(run)
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.subprocess
def test_sigkill_at_random_moments_then_resume(tmp_path):
    """Killed without warning at random moments, again and again, and resumed each time: the end is
    exactly the run that was never stopped."""
    config = resumable_config(tmp_path, data={"name": "digits", "batch_size": 8})  # ~0.4 s per epoch
    reference = train(config, out=tmp_path / "straight", output=Output(quiet=True)).run.path
    run = tmp_path / "run"
    rng = random.Random(7)
    command = [TRAINCTL, "train", config, "--out", run, "--quiet"]
    kills = 0
    while kills < 4:  # then let the last resume run to the end
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills == 0:  # the first kill anywhere from the folder's start, the first checkpoint included
            wait_for(run / "config.yaml", process)
        else:
            wait_for_progress(run, process, epochs_done(run))
        time.sleep(rng.uniform(0.0, 0.5))  # anywhere in an epoch, its checkpoint write included
        if process.poll() is None:
            process.kill()
            kills += 1
        process.wait(timeout=60)
        if (run / "summary.json").is_file():
            break
        command = [TRAINCTL, "train", "--resume", run, "--quiet"]
    if not (run / "summary.json").is_file():
        finish = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
        assert finish.returncode == 0, finish.stderr
    assert kills >= 2
    assert not list(run.rglob(".*"))  # no temporary file, no lock file
    assert_same_outcome(reference, run)


def _as_an_earlier_version_saved_it(run: Path, section: str, key: str) -> None:
    """Rewrite a run as a version before `section.key` existed wrote it: config.yaml and the
    checkpoint's config without the key, and the checkpoint's hash over that config."""
    import yaml

    from trainctl.config.identity import config_hash

    config = yaml.safe_load((run / "config.yaml").read_text())
    del config[section][key]
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    last = run / "checkpoints" / "last.pt"
    checkpoint = torch.load(last, weights_only=True)
    del checkpoint["config"][section][key]
    checkpoint["config_hash"] = config_hash(checkpoint["config"])
    torch.save(checkpoint, last)


def test_a_run_saved_before_a_key_existed_resumes_and_a_real_change_is_still_refused(tmp_path):
    """Keys added since a run was saved (trainer.accumulate, a schedule's warm-up) take their
    defaults, which are the old behaviour: the run resumes; an edited value is still refused."""
    run = tmp_path / "run"
    config = resumable_config(tmp_path, epochs=2, scheduler={"name": "cosine"})
    train(config, out=run, output=Output(quiet=True))
    _as_an_earlier_version_saved_it(run, "trainer", "accumulate")
    _as_an_earlier_version_saved_it(run, "scheduler", "warmup_steps")
    _as_an_earlier_version_saved_it(run, "logging", "every_n_steps")
    edited = tmp_path / "edited"
    shutil.copytree(run, edited)
    (run / "summary.json").unlink()  # as if killed after its last epoch: the resume finishes the test
    result = resume(run, output=Output(quiet=True))
    assert result.summary["best_epoch"] in (1, 2)
    assert len(read_jsonl(run / "metrics.jsonl")) == 2

    text = (edited / "config.yaml").read_text()
    (edited / "config.yaml").write_text(text.replace("lr: 0.002", "lr: 0.003"))
    with pytest.raises(UserError, match="differs from the config its checkpoint was trained with"):
        resume(edited, output=Output(quiet=True))


SIGNAL_ON_TEST_METRIC = """
import os
import signal

from trainctl import register

calls = 0


@register.metric("signal_on_test", summary="Sends SIGTERM to its own process when it scores the test split", task="classification", goal="max")
def signal_on_test(confusion):
    global calls
    calls += 1
    if calls == int(os.environ["SIGNAL_ON_CALL"]):
        os.kill(os.getpid(), signal.SIGTERM)
    return 0.0
"""


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_signal_during_the_test_evaluation_says_training_is_saved_and_resume_finishes_it(tmp_path):
    """Training is over when the test split is scored: the signal stops at once, and the resume only
    runs the test evaluation, ending as a run that was never stopped."""
    plugin = tmp_path / "signal_on_test.py"
    plugin.write_text(SIGNAL_ON_TEST_METRIC, encoding="utf-8")
    config = write_config(tmp_path, trainer={"epochs": 2, "device": "cpu"}, metrics=["accuracy", "signal_on_test"])
    straight = tmp_path / "straight"
    quiet = [TRAINCTL, "--plugin", plugin, "train", config, "--quiet", "--out"]
    subprocess.run([*quiet, straight], env={**os.environ, "SIGNAL_ON_CALL": "0"}, check=True)  # never signals
    run = tmp_path / "run"
    # One call per epoch on the validation split, then the test split's: the third call.
    stopped = subprocess.run([*quiet, run], env={**os.environ, "SIGNAL_ON_CALL": "3"}, capture_output=True, text=True)
    assert stopped.returncode == 130, stopped.stderr
    assert (
        "interrupted during the test evaluation; training finished and is saved. "
        f"Resume with: trainctl train --resume {run}" in stopped.stderr
    )
    assert "Traceback" not in stopped.stderr
    assert epochs_done(run) == 2 and not (run / "summary.json").exists()
    finished = subprocess.run(
        [TRAINCTL, "--plugin", plugin, "train", "--resume", run],
        env={**os.environ, "SIGNAL_ON_CALL": "0"},
        capture_output=True,
        text=True,
    )
    assert finished.returncode == 0, finished.stderr
    assert f"{run} finished training (2 epochs) but not its test evaluation: running it" in finished.stdout
    assert_same_outcome(straight, run)


SIGNAL_AT_STEP_LOSS = """
import os
import signal

import torch

from trainctl import register

steps = 0


class SignalAtStep(torch.nn.Module):
    def forward(self, outputs, targets):
        global steps
        if outputs.requires_grad:  # a training step, not an evaluation
            steps += 1
            if steps == int(os.environ["SIGNAL_AT_STEP"]):
                os.kill(os.getpid(), signal.SIGTERM)
        return torch.nn.functional.cross_entropy(outputs, targets)


@register.loss("signal_at_step", summary="cross_entropy that sends SIGTERM to its own process at one training step", task="classification", target="index", input="logits", formula="cross_entropy", output="logits", use_when="testing stops")
def signal_at_step(context):
    return SignalAtStep()
"""


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("epoch", [1, 2])
def test_a_signal_during_an_epochs_last_step_stops_at_its_end_and_resumes(tmp_path, epoch):
    """Iris in batches of 16: 105 training samples, 7 steps an epoch. A stop requested during step 7
    ends the epoch (validation, checkpoints) and stops there; during the last epoch's, training ends
    and the test evaluation is what is left. Either way the resume ends as the run never stopped."""
    plugin = tmp_path / "signal_at_step.py"
    plugin.write_text(SIGNAL_AT_STEP_LOSS, encoding="utf-8")
    config = write_config(tmp_path, loss={"name": "signal_at_step"}, trainer={"epochs": 2, "device": "cpu"})
    command = [TRAINCTL, "--plugin", plugin, "train", config, "--quiet", "--out"]
    straight, run = tmp_path / "straight", tmp_path / "run"
    subprocess.run([*command, straight], env={**os.environ, "SIGNAL_AT_STEP": "0"}, check=True)
    at_step = {**os.environ, "SIGNAL_AT_STEP": str(1 + 7 * epoch)}  # the first is the pre-flight trial step
    stopped = subprocess.run([*command, run], env=at_step, capture_output=True, text=True)
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert epochs_done(run) == epoch and not (run / "summary.json").exists()
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert (state["epoch"], state["step_in_epoch"]) == (epoch, 0)  # at the epoch's end, not inside it
    if epoch == 2:
        assert "interrupted during the test evaluation; training finished and is saved" in stopped.stderr
    resumed = subprocess.run(
        [TRAINCTL, "--plugin", plugin, "train", "--resume", run],
        env={**os.environ, "SIGNAL_AT_STEP": "0"},
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert_same_outcome(straight, run)
