"""Gradient accumulation (`trainer.accumulate`): K micro-batches per optimizer step equal one batch
K times as large, with short last groups, schedulers, clipping, skipped steps and exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainctl.config.loading import ConfigError, load_config
from trainctl.data.prepare import Split, steps_per_epoch
from trainctl.nn.losses import sample_weights
from trainctl.ranks import SINGLE
from trainctl.runs import RunFolder
from trainctl.training.build import build_training
from trainctl.training.checkpoint import load_checkpoint
from trainctl.training.interrupts import Interrupted, StopRequest
from trainctl.training.loop import (
    AccumulatedUpdate,
    EpochContext,
    PlainUpdate,
    ScaledUpdate,
    micro_batch_weights,
    train_one_epoch,
    training_step,
)
from trainctl.training.precision import Precision
from trainctl.training.settings import StepSettings, fit_settings, optimizer_steps_per_epoch
from trainctl.training.trainer import Trainer

from helpers import read_jsonl, write_config

CPU = torch.device("cpu")


def classification_split(size: int) -> Split:
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(size, 5, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (size,), generator=generator)
    return Split(inputs=inputs, labels=labels, targets=labels)


def train_float64(
    size: int,
    batch_size: int,
    accumulate: int,
    optimizer_name: str,
    epochs: int = 2,
    loss_fn: torch.nn.Module | None = None,
) -> dict:
    """A float64 MLP trained through the loop with a per-step cosine schedule; what it ended with."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    if optimizer_name == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    steps = optimizer_steps_per_epoch(steps_per_epoch(size, batch_size), accumulate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps)
    settings = StepSettings(batch_size, accumulate=accumulate)
    step = training_step(model, loss_fn or torch.nn.CrossEntropyLoss(), optimizer, settings, scheduler=scheduler)
    split, shuffle = classification_split(size), torch.Generator().manual_seed(0)
    optimizer_steps, losses = [], []
    for epoch in range(1, epochs + 1):
        progress = train_one_epoch(model, split, step, EpochContext(epoch, shuffle))
        optimizer_steps.append(progress.optimizer_steps)
        losses.append(progress.mean_loss())
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    return {"weights": weights, "steps": optimizer_steps, "losses": losses, "lr": optimizer.param_groups[0]["lr"]}


# 165 = 64 + 64 + 37: the last group is 2 micro-batches of 16 and one of 5. 145 = 64 + 64 + 17: the
# last micro-batch of 16 would hold one sample, so it joins the one before, as in the batch of 64.
@pytest.mark.parametrize("size", [165, 145])
@pytest.mark.parametrize("optimizer_name", ["sgd", "adam"])
def test_sixteen_times_four_trains_the_weights_a_batch_of_64_does(size, optimizer_name):
    full = train_float64(size, 64, 1, optimizer_name)
    accumulated = train_float64(size, 16, 4, optimizer_name)
    assert full["steps"] == accumulated["steps"] == [3, 3]  # global_step counts optimizer steps
    assert accumulated["lr"] == full["lr"]  # the schedule stepped once per optimizer step
    assert torch.allclose(accumulated["weights"], full["weights"], atol=1e-6, rtol=0)
    assert accumulated["losses"] == pytest.approx(full["losses"], abs=1e-6)  # the mean over samples (held in float32)
    unaccumulated = train_float64(size, 16, 1, optimizer_name)
    assert (unaccumulated["weights"] - full["weights"]).abs().max() > 1e-3  # the comparison can tell runs apart


@pytest.mark.parametrize("size", [165, 145])
def test_class_weighted_cross_entropy_accumulates_to_the_batch_of_64_too(size):
    """Its mean divides by the class weights of the batch's targets: each micro-batch weighs its
    share of the group's summed weights, not of its samples."""
    weights = torch.tensor([0.2, 1.0, 5.0], dtype=torch.float64)
    for smoothing in (0.0, 0.1):
        loss_fn = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=smoothing)
        full = train_float64(size, 64, 1, "sgd", loss_fn=loss_fn)
        accumulated = train_float64(size, 16, 4, "sgd", loss_fn=loss_fn)
        assert torch.allclose(accumulated["weights"], full["weights"], atol=1e-6, rtol=0)
        unaccumulated = train_float64(size, 16, 1, "sgd", loss_fn=loss_fn)
        assert (unaccumulated["weights"] - full["weights"]).abs().max() > 1e-3


def test_micro_batches_weigh_their_share_of_the_groups_class_weights():
    """Two micro-batches in one group: [class 0, class 0] and [class 2, class 1] with weights 1, 2, 3
    sum to 2 and 5 of 7, so their mean losses are multiplied by 2/7 and 5/7 (not 1/2 each)."""
    batches = [torch.tensor([0, 1]), torch.tensor([2, 3])]
    per_sample = torch.tensor([1.0, 2.0, 3.0])[torch.tensor([0, 0, 2, 1])]
    weights = micro_batch_weights(batches, batches, 2, SINGLE, lambda: per_sample)
    assert weights == pytest.approx([2 / 7, 5 / 7], rel=1e-15)
    assert micro_batch_weights(batches, batches, 2, SINGLE) == [0.5, 0.5]  # samples alike
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 3.0]))
    assert sample_weights(loss_fn, torch.tensor([0, 0, 2, 1])).tolist() == [1.0, 1.0, 3.0, 2.0]
    assert sample_weights(torch.nn.CrossEntropyLoss(), torch.tensor([0, 2])) is None
    assert sample_weights(loss_fn, torch.tensor([[0.5, 0.5, 0.0]])) is None  # class probabilities: a plain mean


def test_the_update_is_wrapped_once_when_accumulating():
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    plain = training_step(model, loss_fn, optimizer, StepSettings(8))
    accumulated = training_step(model, loss_fn, optimizer, StepSettings(8, accumulate=2))
    scaled = training_step(model, loss_fn, optimizer, StepSettings(8, 2, precision=Precision("16-mixed", CPU)))
    assert type(plain.update) is PlainUpdate
    assert type(accumulated.update) is AccumulatedUpdate and type(accumulated.update.update) is PlainUpdate
    assert type(scaled.update) is AccumulatedUpdate and type(scaled.update.update) is ScaledUpdate


def test_gradients_are_clipped_once_per_optimizer_step():
    """Two micro-batches with huge gradients, one step: the update's norm is the clip norm (clipping
    each micro-batch would move the weights up to twice as far)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    inputs, targets = torch.randn(8, 4) * 100, torch.randn(8, 1) * 100
    split = Split(inputs=inputs, labels=targets, targets=targets)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    settings = StepSettings(batch_size=4, accumulate=2, grad_clip_norm=0.5)
    progress = train_one_epoch(
        model, split, training_step(model, torch.nn.MSELoss(), optimizer, settings), EpochContext(0, torch.Generator())
    )
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert progress.optimizer_steps == 1
    assert torch.linalg.vector_norm(after - before).item() == pytest.approx(0.5, rel=1e-5)
    assert all(p.grad is None for p in model.parameters())  # the group's gradients are dropped after its step


def test_a_group_holding_a_nonfinite_loss_is_skipped_whole():
    inputs, targets = torch.randn(32, 4), torch.randn(32, 1)
    inputs[5, 2] = float("nan")
    split = Split(inputs=inputs, labels=targets, targets=targets)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    step = training_step(model, torch.nn.MSELoss(), optimizer, StepSettings(4, accumulate=3))
    progress = train_one_epoch(model, split, step, EpochContext(0, torch.Generator().manual_seed(0), skip_budget=1))
    # 8 micro-batches in groups of 3, 3 and 2: the one holding the NaN sample is skipped with its group.
    bad = next(
        i
        for i, batch in enumerate(torch.randperm(32, generator=torch.Generator().manual_seed(0)).split(4))
        if 5 in batch
    )
    group = range(bad // 3 * 3, min(bad // 3 * 3 + 3, 8))
    assert (progress.skipped, progress.optimizer_steps) == (1, 2)
    assert [int(size) for size in progress.batch_sizes] == [0 if i in group else 4 for i in range(8)]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert progress.mean_loss() == pytest.approx(float(progress.loss_sum()) / (32 - 4 * len(group)))


def test_float16_scales_each_micro_batch_and_steps_the_scaler_once_per_group():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    settings = StepSettings(8, accumulate=4, precision=Precision("16-mixed", CPU))
    step = training_step(model, torch.nn.CrossEntropyLoss(), optimizer, settings)
    labels = torch.randint(0, 3, (64,))
    split = Split(inputs=torch.randn(64, 4), labels=labels, targets=labels)
    scaler = step.update.update.scaler  # type: ignore[union-attr]
    scaler._growth_interval = 1  # the scale doubles after every finite step: it counts the steps
    progress = train_one_epoch(model, split, step, EpochContext(0, torch.Generator().manual_seed(0)))
    assert progress.optimizer_steps == 2
    assert scaler.get_scale() == 65536.0 * 2**2  # two updates of the scaler, not eight


def make_trainer(directory: Path, **trainer: object) -> Trainer:
    config = load_config(
        write_config(
            directory,
            data={"name": "iris", "batch_size": 8},
            model={"name": "mlp", "hidden": [16], "dropout": 0.3, "batch_norm": True},
            scheduler={"name": "cosine"},
            trainer={"epochs": 2, "device": "cpu", "accumulate": 3, **trainer},
        )
    )
    parts = build_training(config)
    return Trainer(parts, fit_settings(config, parts, RunFolder.create(config.output_dir, config.name)))


def stop_at_training_forward(model: torch.nn.Module, call: int) -> StopRequest:
    """A stop request made during the `call`-th training forward pass, as a signal arriving then."""
    stop, calls = StopRequest(), [0]

    def count(module: torch.nn.Module, inputs: object, output: object) -> None:
        if module.training:
            calls[0] += 1
            stop.requested = stop.requested or calls[0] == call

    model.register_forward_hook(count)
    return stop


def test_a_stop_between_micro_batches_saves_at_the_groups_end_and_resumes_bit_identical(tmp_path):
    (tmp_path / "straight").mkdir(), (tmp_path / "stopped").mkdir()
    straight = make_trainer(tmp_path / "straight")
    straight.fit()
    stopped = make_trainer(tmp_path / "stopped")
    # Iris's 105 training samples make 13 micro-batches (the last of 9) in groups of 3, 3, 3, 3, 1.
    # The 20th training forward pass is epoch 2's 7th micro-batch, the first of its third group.
    assert steps_per_epoch(len(stopped.parts.data.train), 8) == 13
    with pytest.raises(Interrupted):
        stopped.fit(stop=stop_at_training_forward(stopped.parts.model, 20))
    run = stopped.settings.output.run
    assert run is not None
    checkpoint = load_checkpoint(run.checkpoint_path("last"))
    assert (checkpoint["state"]["epoch"], checkpoint["state"]["step_in_epoch"]) == (1, 9)  # the group's end
    assert checkpoint["state"]["global_step"] == 5 + 3  # optimizer steps, not micro-batches
    resumed = make_trainer(tmp_path / "stopped")
    state, rng = resumed.load_checkpoint_state(checkpoint)
    resumed.fit(state, rng)
    for key, value in straight.parts.model.state_dict().items():
        assert torch.equal(resumed.parts.model.state_dict()[key], value), key
    straight_rows = read_jsonl(straight.settings.output.run.path / "metrics.jsonl")  # type: ignore[union-attr]
    resumed_rows = read_jsonl(resumed.settings.output.run.path / "metrics.jsonl")  # type: ignore[union-attr]
    assert straight_rows[1]["train/loss"] == resumed_rows[0]["train/loss"]
    assert straight_rows[1]["lr"] == resumed_rows[0]["lr"]


@pytest.mark.parametrize(
    ("value", "message"),
    [(0, "Input should be greater than or equal to 1 (got 0)"), (2.5, "Input should be a valid integer")],
)
def test_accumulate_must_be_a_whole_number_of_at_least_one(tmp_path, value, message):
    path = write_config(tmp_path, trainer={"epochs": 1, "accumulate": value})
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "accumulate:" in text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(problem.startswith(f"{path}:{line}: trainer.accumulate: {message}") for problem in caught.value.lines())
