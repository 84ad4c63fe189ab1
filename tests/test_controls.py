"""Training controls: early stopping, gradient clipping, non-finite losses, TensorBoard logging."""

from __future__ import annotations

import re
import sys

import pytest
import torch

from trainctl.data.prepare import Split
from trainctl.errors import UserError
from trainctl.output import Output
from trainctl.training.loop import EpochContext, NonFiniteLoss, train_one_epoch, training_step
from trainctl.training.settings import StepSettings
from trainctl.training.state import EarlyStopping, TrainingState
from trainctl.workflows import resume, train

from helpers import read_jsonl, write_config

EARLY = {"monitor": "val/loss", "patience": 2, "min_delta": 0.02}


def expected_stop(values: list[float], patience: int, min_delta: float) -> int | None:
    """The epoch early stopping must stop at, worked out from the logged values by hand."""
    best, waited = None, 0
    for epoch, value in enumerate(values, 1):
        if best is None or value < best - min_delta:
            best, waited = value, 0
        else:
            waited += 1
        if waited == patience:
            return epoch
    return None


def test_early_stopping_counts_epochs_without_enough_improvement():
    stopping, state = EarlyStopping("val/loss", "min", patience=2, min_delta=0.1), TrainingState()
    decisions = [stopping.update(state, value) for value in [1.0, 0.95, 0.85, 0.84, 0.80]]
    # 0.95 is not 0.1 below 1.0 (wait 1); 0.85 is (reset); 0.84 and 0.80 are not (wait 1, 2: stop)
    assert decisions == [False, False, False, False, True]
    assert state.early_stopping_best == 0.85
    rising = EarlyStopping("val/accuracy", "max", patience=1, min_delta=0.0)
    state = TrainingState()
    assert [rising.update(state, v) for v in [0.5, 0.6, 0.6]] == [False, False, True]


def test_early_stopping_stops_at_the_epoch_the_logged_values_say(tmp_path):
    config = write_config(tmp_path, trainer={"epochs": 40, "device": "cpu", "early_stopping": EARLY})
    result = train(config, out=tmp_path / "run", output=Output(quiet=True))
    rows = read_jsonl(result.run.metrics_path)
    stop = expected_stop([row["val/loss"] for row in rows], patience=2, min_delta=0.02)
    assert stop is not None and stop < 40
    assert len(rows) == stop
    assert result.summary["stopped_early"] is True
    assert result.summary["epochs_trained"] == stop
    best = torch.load(result.run.checkpoint_path("best"), weights_only=True)
    monitor = result.summary["monitor"]  # val/accuracy: best.pt is the first epoch with the highest
    assert best["epoch"] == max(rows, key=lambda row: (row[monitor], -row["epoch"]))["epoch"]


@pytest.mark.slow
def test_early_stopping_state_survives_a_resume(tmp_path):
    """Stopped one epoch before early stopping would fire, then resumed: it fires at the same epoch."""
    config = write_config(tmp_path, trainer={"epochs": 40, "device": "cpu", "early_stopping": EARLY})
    straight = train(config, out=tmp_path / "straight", output=Output(quiet=True))
    stop = straight.summary["epochs_trained"]
    cut = train(config, [f"trainer.epochs={stop - 1}"], out=tmp_path / "cut", output=Output(quiet=True))
    waiting = torch.load(cut.run.checkpoint_path("last"), weights_only=True)["state"]["bad_epochs"]
    assert waiting == EARLY["patience"] - 1  # the counter is in the checkpoint, one epoch from stopping
    resumed = resume(cut.run.path, ["trainer.epochs=40"], output=Output(quiet=True))
    assert resumed.summary["epochs_trained"] == stop
    assert resumed.summary["stopped_early"] is True
    assert read_jsonl(resumed.run.metrics_path)[-1]["val/loss"] == read_jsonl(straight.run.metrics_path)[-1]["val/loss"]


def one_batch_split(inputs: torch.Tensor, targets: torch.Tensor) -> Split:
    return Split(inputs=inputs, labels=targets, targets=targets)


def test_gradient_clipping_bounds_each_update():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    split = one_batch_split(torch.randn(8, 4) * 100, torch.randn(8, 1) * 100)  # a huge gradient
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    step = training_step(model, torch.nn.MSELoss(), optimizer, StepSettings(batch_size=8, grad_clip_norm=0.5))
    train_one_epoch(model, split, step, EpochContext(0, torch.Generator().manual_seed(0)))
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.linalg.vector_norm(after - before).item() == pytest.approx(0.5, rel=1e-5)


def nan_in_one_sample() -> Split:
    inputs = torch.randn(32, 4)
    inputs[5, 2] = float("nan")
    return one_batch_split(inputs, torch.randn(32, 1))


def test_nonfinite_loss_stops_and_names_epoch_and_step():
    model = torch.nn.Linear(4, 1)
    with pytest.raises(NonFiniteLoss, match=r"non-finite at epoch 3, step \d"):
        train_one_epoch(
            model,
            nan_in_one_sample(),
            training_step(model, torch.nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.1), StepSettings(4)),
            EpochContext(3, torch.Generator().manual_seed(0)),
        )


def test_nonfinite_steps_are_skipped_within_the_limit():
    model = torch.nn.Linear(4, 1)
    progress = train_one_epoch(
        model,
        nan_in_one_sample(),
        training_step(model, torch.nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.1), StepSettings(4)),
        EpochContext(0, torch.Generator().manual_seed(0), skip_budget=1),
    )
    assert progress.skipped == 1  # the one batch holding the NaN sample
    assert progress.optimizer_steps == 7
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(
        NonFiniteLoss, match=re.escape("after as many skipped steps as trainer.max_skipped_steps allows")
    ):
        train_one_epoch(
            model,
            nan_in_one_sample(),
            training_step(model, torch.nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.1), StepSettings(4)),
            EpochContext(0, torch.Generator().manual_seed(0), skip_budget=0),
        )


def test_a_diverging_run_keeps_its_last_good_checkpoint(tmp_path):
    """One-cycle warm-up to a rate far too high for plain SGD: fine for an epoch or two, then inf."""
    config = write_config(
        tmp_path,
        data={"name": "diabetes", "batch_size": 16},
        loss={"name": "mse"},
        optimizer={"name": "sgd", "lr": 0.01},
        scheduler={"name": "onecycle", "max_lr": 0.5},
        trainer={"epochs": 20, "device": "cpu"},
    )
    with pytest.raises(UserError) as caught:
        train(config, out=tmp_path / "run", output=Output(quiet=True))
    found = re.fullmatch(
        r"the training loss became non-finite at epoch (\d+), step \d+; the run stopped and keeps "
        r"its last good checkpoint \(epoch (\d+)\)\. Lower optimizer.lr.*",
        str(caught.value),
    )
    assert found, caught.value
    bad_epoch, kept_epoch = int(found[1]), int(found[2])
    assert kept_epoch == bad_epoch - 1 >= 1
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == kept_epoch
    assert all(torch.isfinite(value).all() for value in last["model"].values())
    assert len(read_jsonl(tmp_path / "run" / "metrics.jsonl")) == kept_epoch


def test_tensorboard_event_files_hold_the_logged_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = write_config(tmp_path, logging={"tensorboard": True})
    result = train(config, out=tmp_path / "run", output=Output(quiet=True))
    events = EventAccumulator(str(result.run.path / "tensorboard"))
    events.Reload()
    rows = read_jsonl(result.run.metrics_path)
    logged = [(event.step, event.value) for event in events.Scalars("val/loss")]
    assert logged == [(row["epoch"], pytest.approx(row["val/loss"], rel=1e-6)) for row in rows]
    assert "train/loss" in events.Tags()["scalars"]


def test_missing_tensorboard_is_one_clear_message_before_the_run_starts(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # what an install without it gives
    config = write_config(tmp_path, logging={"tensorboard": True})
    hint = "pip install tensorboard (or, in the trainctl checkout, pip install -e '.[tensorboard]'); or set logging"
    with pytest.raises(UserError, match=re.escape(f"the tensorboard package is not installed; {hint}")):
        train(config, out=tmp_path / "run", output=Output(quiet=True))
    assert not (tmp_path / "run").exists()
