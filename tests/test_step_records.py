"""Step records (`logging.every_n_steps`): the loss and learning rate of every Nth optimizer step in
steps.jsonl and TensorBoard, against a hand-written loop and the schedules' formulas; resumes
number them on without repeating one; the config errors."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from trainctl.config.loading import load_config
from trainctl.output import Output
from trainctl.runs import RunFolder
from trainctl.training.build import build_training
from trainctl.training.interrupts import Interrupted, StopRequest
from trainctl.training.settings import fit_settings
from trainctl.training.step_records import recording_steps
from trainctl.training.trainer import Trainer
from trainctl.workflows import resume, train

from helpers import read_jsonl, write_config

LR = 0.1
PER_EPOCH = 7  # iris: 105 training samples in batches of 16, the last of 9


def iris_config(directory: Path, every: int | None, tensorboard: bool = False, **sections) -> Path:
    logging = {"tensorboard": tensorboard, **({"every_n_steps": every} if every is not None else {})}
    return write_config(
        directory,
        **{"optimizer": {"name": "sgd", "lr": LR}, "logging": logging, **sections},
    )


def steps_of(run: Path) -> list[dict]:
    return read_jsonl(run / "steps.jsonl")


def tensorboard_scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    """What TensorBoard shows for a tag: its reader, with its defaults, over the run's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = run / "tensorboard" / ("steps" if tag.startswith("train_step/") else "")
    if not folder.is_dir():
        return []
    events = EventAccumulator(str(folder))
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return []
    return [(event.step, event.value) for event in events.Scalars(tag)]


def hand_written_losses(config_path: Path, batch_size: int, epochs: int) -> list[float]:
    """Each step's loss in a plain SGD loop over the same seeded model, data and shuffle order."""
    config = load_config(config_path)
    parts = build_training(config)  # the seeded model and the tensors trainctl trains on
    model = parts.model
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    inputs, targets = parts.data.train.inputs, parts.data.train.targets
    generator = torch.Generator().manual_seed(config.seed)
    losses = []
    for _ in range(epochs):
        for index in torch.randperm(len(inputs), generator=generator).split(batch_size):
            loss = F.cross_entropy(model(inputs[index]), targets[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


def test_an_accumulated_step_logs_the_loss_of_its_whole_batch(tmp_path):
    """16 × 4 accumulated: each record's loss is the loss a plain loop computes on the batch of 64."""
    config = iris_config(
        tmp_path,
        1,
        tensorboard=True,
        data={"name": "iris", "batch_size": 16},
        trainer={"epochs": 3, "device": "cpu", "accumulate": 4},
    )
    run = train(config, out=tmp_path / "run", output=Output(quiet=True)).run.path
    expected = hand_written_losses(config, 64, 3)  # 105 samples: steps of 64 and 41
    rows = steps_of(run)
    assert [(row["step"], row["epoch"]) for row in rows] == [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 3)]
    assert [row["loss"] for row in rows] == pytest.approx(expected, rel=1e-5)
    assert [row["lr"] for row in rows] == [LR] * 6
    logged = tensorboard_scalars(run, "train_step/loss")
    assert logged == [(row["step"], pytest.approx(row["loss"], rel=1e-6)) for row in rows]
    assert tensorboard_scalars(run, "train_step/lr") == [(step, pytest.approx(LR)) for step in range(1, 7)]


def test_every_step_logged_averages_to_the_epochs_training_loss(tmp_path):
    run = train(iris_config(tmp_path, 1), out=tmp_path / "run", output=Output(quiet=True)).run.path
    rows = steps_of(run)
    assert [row["step"] for row in rows] == list(range(1, 3 * PER_EPOCH + 1))
    assert [row["loss"] for row in rows] == pytest.approx(hand_written_losses(run / "config.yaml", 16, 3), rel=1e-5)
    sizes = [16] * (PER_EPOCH - 1) + [9]
    for epoch, metrics in enumerate(read_jsonl(run / "metrics.jsonl"), 1):
        losses = [row["loss"] for row in rows if row["epoch"] == epoch]
        assert sum(loss * size for loss, size in zip(losses, sizes)) / 105 == pytest.approx(
            metrics["train/loss"], rel=1e-6
        )
    assert not (run / "tensorboard").exists()  # steps.jsonl needs no TensorBoard


def test_the_logged_lr_is_the_rate_each_step_trained_with_across_the_warmup(tmp_path):
    scheduler = {"name": "linear", "warmup_steps": 5}
    run = train(
        iris_config(tmp_path, 3, tensorboard=True, scheduler=scheduler), out=tmp_path / "run", output=Output(quiet=True)
    )
    total = 3 * PER_EPOCH

    def factor(done: int) -> float:  # the schedule's multiple of lr after `done` steps, by its formula
        return done / 5 if done < 5 else 1 - (done - 5) / (total - 5)

    rows = steps_of(run.run.path)
    assert [row["step"] for row in rows] == list(range(3, total + 1, 3))
    assert [row["lr"] for row in rows] == pytest.approx([LR * factor(row["step"] - 1) for row in rows], rel=1e-12)
    assert rows[0]["lr"] == pytest.approx(0.04, rel=1e-12)  # step 3 trained at 2/5 of the warm-up
    assert tensorboard_scalars(run.run.path, "train_step/lr") == [
        (row["step"], pytest.approx(row["lr"], rel=1e-6)) for row in rows
    ]


def test_an_epoch_schedule_changes_the_logged_lr_from_the_next_epochs_first_step(tmp_path):
    run = train(
        iris_config(tmp_path, 1, scheduler={"name": "step", "step_size": 1, "gamma": 0.5}),
        out=tmp_path / "run",
        output=Output(quiet=True),
    )
    rows = steps_of(run.run.path)
    assert [row["lr"] for row in rows] == [LR * 0.5 ** ((row["step"] - 1) // PER_EPOCH) for row in rows]
    for metrics in read_jsonl(run.run.metrics_path):  # the rate each epoch trained with, as every step of it
        assert {row["lr"] for row in rows if row["epoch"] == metrics["epoch"]} == {metrics["lr"]}


def test_off_writes_no_step_records(tmp_path):
    run = train(iris_config(tmp_path, None, tensorboard=True), out=tmp_path / "run", output=Output(quiet=True)).run.path
    assert not (run / "steps.jsonl").exists()
    assert sorted(path.name for path in (run / "tensorboard").iterdir() if path.is_dir()) == []
    assert [step for step, _ in tensorboard_scalars(run, "val/loss")] == [1, 2, 3]


@pytest.mark.slow
def test_a_run_stopped_mid_epoch_numbers_its_steps_on_as_the_straight_run(tmp_path):
    """Stopped after step 10 (epoch 2, step 3) and resumed: the records are the straight run's, bit for bit."""
    for folder in ("straight", "stopped"):
        (tmp_path / folder).mkdir()
    straight = train(
        iris_config(tmp_path / "straight", 4), out=tmp_path / "straight" / "run", output=Output(quiet=True)
    )

    config = load_config(iris_config(tmp_path / "stopped", 4))
    parts = build_training(config)
    run = RunFolder.create(config.output_dir, config.name, tmp_path / "stopped" / "run")
    run.write_config(config.to_dict())
    run.write_json("data.json", parts.data.description())
    trainer = Trainer(parts, fit_settings(config, parts, run))
    stop = StopRequest()
    trainer.events.step_end.append(lambda end: setattr(stop, "requested", end.epoch == 2 and end.step == 3))
    with recording_steps(trainer.events, 4, parts.optimizer, parts.ranks, 0, run), pytest.raises(Interrupted):
        trainer.fit(stop=stop)
    assert [row["step"] for row in steps_of(run.path)] == [4, 8]
    run.release()

    resume(run.path, output=Output(quiet=True))
    assert steps_of(run.path) == steps_of(straight.run.path)
    assert [row["step"] for row in steps_of(run.path)] == [4, 8, 12, 16, 20]


@pytest.mark.slow
def test_records_written_past_the_checkpoint_are_replaced_on_resume(tmp_path):
    """A run killed after logging epoch 2 but before its checkpoint: the resume trains epoch 2 again,
    and steps.jsonl and TensorBoard show each step and epoch once, with the values of a straight run."""
    for folder in ("straight", "killed"):
        (tmp_path / folder).mkdir()
    two_epochs = {"epochs": 2, "device": "cpu"}
    straight = train(
        iris_config(tmp_path / "straight", 1, tensorboard=True, trainer=two_epochs),
        out=tmp_path / "s",
        output=Output(quiet=True),
    )
    config = iris_config(tmp_path / "killed", 1, tensorboard=True, trainer=two_epochs)
    run = train(config, ["trainer.epochs=1"], out=tmp_path / "k", output=Output(quiet=True)).run
    saved = tmp_path / "epoch1"
    shutil.copytree(run.path / "checkpoints", saved)
    # TensorBoard reads a folder's event files in name order: the time in whole seconds, then a
    # per-process counter compared as text. A resume in the same second as the writer before it,
    # late in a long test process, could sort first; a real resume never comes that quickly.
    time.sleep(1.1)
    resume(run.path, ["trainer.epochs=2"], output=Output(quiet=True))
    assert len(steps_of(run.path)) == 2 * PER_EPOCH
    # As if killed after epoch 2 was logged but before its checkpoint: epoch 1's checkpoints, no summary.
    shutil.rmtree(run.path / "checkpoints")
    shutil.copytree(saved, run.path / "checkpoints")
    run.summary_path.unlink()
    time.sleep(1.1)
    resume(run.path, ["trainer.epochs=2"], output=Output(quiet=True))

    assert steps_of(run.path) == steps_of(straight.run.path)
    for tag in ("train_step/loss", "train_step/lr", "val/loss"):
        shown = tensorboard_scalars(run.path, tag)
        assert [step for step, _ in shown] == [step for step, _ in tensorboard_scalars(straight.run.path, tag)], tag
        assert [value for _, value in shown] == [value for _, value in tensorboard_scalars(straight.run.path, tag)], tag
    assert len(tensorboard_scalars(run.path, "train_step/loss")) == 2 * PER_EPOCH


def test_a_resume_may_turn_step_logging_on_and_off(tmp_path):
    """logging.* may change on a resume: turned on, the resumed epochs' rows are the straight run's;
    turned off, the rows past the checkpoint go (they were trained again, unlogged)."""
    two_epochs = {"epochs": 2, "device": "cpu"}
    straight = train(iris_config(tmp_path, 1, trainer=two_epochs), out=tmp_path / "s", output=Output(quiet=True))
    quiet = iris_config(tmp_path, None, trainer=two_epochs)

    run = train(quiet, ["trainer.epochs=1"], out=tmp_path / "on", output=Output(quiet=True)).run
    resume(run.path, ["trainer.epochs=2", "logging.every_n_steps=1"], output=Output(quiet=True))
    assert steps_of(run.path) == steps_of(straight.run.path)[PER_EPOCH:]

    logged = train(iris_config(tmp_path, 1, trainer=two_epochs), ["trainer.epochs=1"], out=tmp_path / "off").run
    saved = tmp_path / "epoch1"
    shutil.copytree(logged.path / "checkpoints", saved)
    resume(logged.path, ["trainer.epochs=2"], output=Output(quiet=True))
    # As if killed after epoch 2 was logged but before its checkpoint, then resumed with logging off.
    shutil.rmtree(logged.path / "checkpoints")
    shutil.copytree(saved, logged.path / "checkpoints")
    logged.summary_path.unlink()
    resume(logged.path, ["trainer.epochs=2", "logging.every_n_steps=null"], output=Output(quiet=True))
    assert steps_of(logged.path) == steps_of(straight.run.path)[:PER_EPOCH]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "Input should be greater than or equal to 1 (got 0)"),
        ("-5", "Input should be greater than or equal to 1 (got -5)"),
        ("2.5", "Input should be a valid integer (got 2.5)"),
        ("ten", "Input should be a valid integer (got 'ten')"),
    ],
)
def test_every_n_steps_must_be_a_positive_whole_number(cli, tmp_path, value, message):
    config = write_config(
        tmp_path,
        f"""
        data: {{name: iris, batch_size: 16}}
        model: {{name: mlp}}
        loss: {{name: cross_entropy}}
        optimizer: {{name: sgd, lr: {LR}}}
        logging:
          every_n_steps: {value}
        """,
    )
    result = cli("train", config, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {config}:6: logging.every_n_steps: {message}"
    assert not (tmp_path / "run").exists()


def test_an_unknown_logging_key_suggests_every_n_steps(cli, tmp_path):
    config = iris_config(tmp_path, None)
    result = cli("train", config, "--set", "logging.every_n_step=10", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --set logging.every_n_step: logging.every_n_step: unknown key (did you mean 'every_n_steps'?); "
        "allowed: tensorboard, every_n_steps, figures, mlflow"
    )


def test_the_step_counts_match_the_schedules_step_count(tmp_path):
    """global_step, the schedule's step count and the last record's step agree at the end of a run."""
    run = train(
        iris_config(tmp_path, 1, scheduler={"name": "cosine"}, trainer={"epochs": 2, "device": "cpu", "accumulate": 3}),
        out=tmp_path / "run",
        output=Output(quiet=True),
    ).run.path
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    per_epoch = math.ceil(PER_EPOCH / 3)
    assert steps_of(run)[-1]["step"] == last["state"]["global_step"] == last["scheduler"]["last_epoch"] == 2 * per_epoch
