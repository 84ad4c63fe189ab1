"""Learning-rate warm-up (warmup_steps, warmup_epochs) and the linear schedule: the rate at every step
against the formulas written here, a resume in the middle of the warm-up, and the config errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from trainctl.config.loading import load_config
from trainctl.output import Output
from trainctl.runs import RunFolder
from trainctl.training.build import build_training
from trainctl.training.interrupts import Interrupted, StopRequest
from trainctl.training.settings import fit_settings
from trainctl.training.trainer import Trainer
from trainctl.workflows import resume, train

from helpers import read_jsonl, write_config

LR = 0.01
BATCH = 16
EPOCHS = 3


def iris_config(directory: Path, scheduler: dict, epochs: int = EPOCHS) -> Path:
    return write_config(
        directory,
        data={"name": "iris", "batch_size": BATCH},
        optimizer={"name": "sgd", "lr": LR},
        scheduler=scheduler,
        trainer={"epochs": epochs, "device": "cpu"},
    )


def rates_per_step(directory: Path, scheduler: dict) -> tuple[list[float], int, Trainer]:
    """The rate before the first step and after every optimizer step of a real fit, and the steps per epoch."""
    config = load_config(iris_config(directory, scheduler))
    parts = build_training(config)
    trainer = Trainer(parts, fit_settings(config, parts, None))
    rates = [parts.optimizer.param_groups[0]["lr"]]
    trainer.events.step_end.append(lambda end: rates.append(parts.optimizer.param_groups[0]["lr"]))
    trainer.fit()
    return rates, math.ceil(len(parts.data.train) / BATCH), trainer


def warmup_factor(step: int, warmup: int, start: float) -> float:
    return start + (1 - start) * step / warmup if step < warmup else 1.0


def test_cosine_warms_up_linearly_then_decays_over_the_rest_of_the_run(tmp_path):
    warmup, start, eta_min = 5, 0.1, 0.001
    scheduler = {"name": "cosine", "eta_min": eta_min, "warmup_steps": warmup, "warmup_start_factor": start}
    rates, per_epoch, trainer = rates_per_step(tmp_path, scheduler)
    total = EPOCHS * per_epoch
    assert trainer.parts.scheduler_interval == "step"
    expected = []
    for step in range(total + 1):
        if step < warmup:
            expected.append(LR * (start + (1 - start) * step / warmup))
        else:
            progress = (step - warmup) / (total - warmup)
            expected.append(eta_min + (LR - eta_min) * (1 + math.cos(math.pi * progress)) / 2)
    assert rates == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert rates[:3] == pytest.approx([0.001, 0.0028, 0.0046], rel=1e-12)
    assert rates[-1] == pytest.approx(eta_min, rel=1e-12)


def test_a_per_epoch_schedule_warms_up_per_step_and_keeps_its_epoch_decays(tmp_path):
    warmup = 4
    rates, per_epoch, trainer = rates_per_step(
        tmp_path, {"name": "step", "step_size": 1, "gamma": 0.5, "warmup_steps": warmup}
    )
    assert trainer.parts.scheduler_interval == "step"
    expected = [LR * warmup_factor(step, warmup, 0.0) * 0.5 ** (step // per_epoch) for step in range(len(rates))]
    assert rates == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert rates[: warmup + 1] == pytest.approx([0.0, 0.0025, 0.005, 0.0075, 0.01], rel=1e-12, abs=1e-15)


def test_warmup_epochs_is_warmup_steps_times_the_steps_per_epoch(tmp_path):
    (tmp_path / "epochs").mkdir()
    (tmp_path / "steps").mkdir()
    by_epochs, per_epoch, epochs_trainer = rates_per_step(tmp_path / "epochs", {"name": "linear", "warmup_epochs": 2})
    by_steps, _, steps_trainer = rates_per_step(tmp_path / "steps", {"name": "linear", "warmup_steps": 2 * per_epoch})
    assert by_epochs == by_steps
    assert by_epochs[2 * per_epoch] == LR  # the peak exactly where the second epoch ends
    assert max(by_epochs) == LR
    for a, b in zip(epochs_trainer.parts.model.parameters(), steps_trainer.parts.model.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_linear_decays_to_end_factor_times_the_rate(tmp_path):
    rates, per_epoch, _ = rates_per_step(tmp_path, {"name": "linear", "end_factor": 0.2})
    total = EPOCHS * per_epoch
    assert rates == pytest.approx([LR * (1 - 0.8 * step / total) for step in range(total + 1)], rel=1e-12)
    assert rates[-1] == pytest.approx(0.2 * LR, rel=1e-12)
    run = train(
        iris_config(tmp_path, {"name": "linear", "end_factor": 0.2}), out=tmp_path / "run", output=Output(quiet=True)
    )
    lrs = [row["lr"] for row in read_jsonl(run.run.metrics_path)]  # the rate each epoch ended with
    assert lrs == pytest.approx([LR * (1 - 0.8 * epoch / EPOCHS) for epoch in (1, 2, 3)], rel=1e-12)


@pytest.mark.slow
def test_a_resume_in_the_middle_of_the_warmup_is_bit_identical(tmp_path):
    """Stopped inside the second epoch, in the warm-up (three epochs of it), and resumed: the same run."""
    scheduler = {"name": "cosine", "warmup_epochs": 2, "warmup_start_factor": 0.05}
    for folder in ("straight", "stopped"):
        (tmp_path / folder).mkdir()
    straight = train(
        iris_config(tmp_path / "straight", scheduler), out=tmp_path / "straight" / "run", output=Output(quiet=True)
    )

    config = load_config(iris_config(tmp_path / "stopped", scheduler))
    parts = build_training(config)
    run = RunFolder.create(config.output_dir, config.name, tmp_path / "stopped" / "run")
    run.write_config(config.to_dict())
    run.write_json("data.json", parts.data.description())
    trainer = Trainer(parts, fit_settings(config, parts, run))
    stop = StopRequest()

    def stop_in_epoch_two(end) -> None:
        stop.requested = end.epoch == 2 and end.step == 3

    trainer.events.step_end.append(stop_in_epoch_two)
    with pytest.raises(Interrupted):
        trainer.fit(stop=stop)
    saved = torch.load(run.checkpoint_path("last"), weights_only=True)
    assert (saved["state"]["epoch"], saved["state"]["step_in_epoch"]) == (1, 3)
    steps = saved["scheduler"]["last_epoch"]
    per_epoch = math.ceil(len(parts.data.train) / BATCH)
    assert steps == per_epoch + 3 < 2 * per_epoch  # inside the warm-up
    assert saved["optimizer"]["param_groups"][0]["lr"] == pytest.approx(LR * (0.05 + 0.95 * steps / (2 * per_epoch)))

    run.release()  # as the stopped process's end would
    resumed = resume(run.path, output=Output(quiet=True))
    assert resumed.summary["epochs_trained"] == EPOCHS
    a, b = (torch.load(r / "checkpoints" / "last.pt", weights_only=True) for r in (straight.run.path, run.path))
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["scheduler"] == b["scheduler"]
    strip = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert strip(read_jsonl(straight.run.metrics_path)) == strip(read_jsonl(run.metrics_path))


def validate_error(cli, tmp_path: Path, scheduler_text: str) -> str:
    path = write_config(
        tmp_path,
        f"""
        data: {{name: iris, batch_size: {BATCH}}}
        model: {{name: mlp, hidden: [16]}}
        loss: {{name: cross_entropy}}
        optimizer: {{name: sgd, lr: {LR}}}
        trainer: {{epochs: {EPOCHS}, device: cpu}}
        scheduler:
        """,
    )
    path.write_text(path.read_text() + scheduler_text)
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    return line.replace(str(path), "config.yaml")


def test_both_warmup_keys_are_one_error_naming_both(cli, tmp_path):
    line = validate_error(cli, tmp_path, "  name: cosine\n  warmup_steps: 3\n  warmup_epochs: 1\n")
    assert line == "error: config.yaml:9: scheduler.warmup_epochs: give warmup_steps or warmup_epochs, not both"


def test_a_warmup_longer_than_the_run_names_the_run_length(cli, tmp_path):
    per_epoch = math.ceil(
        len(build_training(load_config(iris_config(tmp_path, {"name": "linear"}))).data.train) / BATCH
    )
    line = validate_error(cli, tmp_path, "  name: step\n  warmup_steps: 1000\n")
    total = EPOCHS * per_epoch
    assert line == (
        f"error: config.yaml:8: scheduler.warmup_steps: 1000 is longer than the whole run, "
        f"{total} steps ({EPOCHS} epochs of {per_epoch} steps)"
    )
    line = validate_error(cli, tmp_path, "  name: linear\n  warmup_epochs: 4\n")
    assert line == (
        f"error: config.yaml:8: scheduler.warmup_epochs: 4 epochs ({4 * per_epoch} steps) is longer than "
        f"the whole run, {total} steps ({EPOCHS} epochs of {per_epoch} steps)"
    )


@pytest.mark.parametrize("value", [0, -2])
def test_a_warmup_of_no_steps_is_refused_by_its_type(cli, tmp_path, value):
    line = validate_error(cli, tmp_path, f"  name: cosine\n  warmup_steps: {value}\n")
    assert (
        line
        == f"error: config.yaml:8: scheduler.warmup_steps: Input should be greater than or equal to 1 (got {value})"
    )


def test_onecycle_takes_no_warmup_of_ours(cli, tmp_path):
    line = validate_error(cli, tmp_path, "  name: onecycle\n  warmup_steps: 3\n")
    assert line == (
        "error: config.yaml:8: scheduler.warmup_steps: scheduler 'onecycle' has no parameter 'warmup_steps'; "
        "it accepts: max_lr, pct_start, anneal_strategy"
    )


def test_list_schedulers_shows_the_warmup_parameters(cli):
    result = cli("list-schedulers", columns=200)
    assert result.exit_code == 0
    linear = result.stdout[result.stdout.index("│ linear") :]
    assert "end_factor: float ≥ 0 and ≤ 1 = 0.0" in linear
    for parameter in ("warmup_steps: int or null ≥ 1 = null", "warmup_start_factor: float ≥ 0 and < 1 = 0.0"):
        assert parameter in linear
