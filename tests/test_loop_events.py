"""The trainer's events (step end, epoch end, fit end) and the step variant chosen when it is built."""

from __future__ import annotations

from pathlib import Path

import torch

from trainctl.config.loading import load_config
from trainctl.runs import RunFolder
from trainctl.training.build import build_training
from trainctl.training.events import EpochEnd, FitResult, StepEnd
from trainctl.training.loop import PlainUpdate, ScaledUpdate, training_step
from trainctl.training.precision import Precision
from trainctl.training.settings import StepSettings, fit_settings
from trainctl.training.trainer import Trainer

from helpers import read_jsonl, write_config

CPU = torch.device("cpu")


def make_trainer(directory: Path, epochs: int = 3, *, with_run: bool = True, **trainer: object) -> Trainer:
    """A trainer for the tiny iris config, writing a run folder under `directory` when asked."""
    config = load_config(write_config(directory, trainer={"epochs": epochs, "device": "cpu", **trainer}))
    parts = build_training(config)
    run = RunFolder.create(config.output_dir, config.name) if with_run else None
    return Trainer(parts, fit_settings(config, parts, run))


def test_epoch_end_handlers_see_each_row_after_the_decisions_and_before_it_is_written(tmp_path):
    trainer = make_trainer(tmp_path, epochs=3)
    run = trainer.settings.output.run
    assert run is not None
    seen = []

    def record(end: EpochEnd) -> None:
        written = read_jsonl(run.metrics_path) if run.metrics_path.is_file() else []
        seen.append((end.epoch, dict(end.row), end.state.epoch, end.state.best_epoch, end.improved, len(written)))

    trainer.events.epoch_end.append(record)
    result = trainer.fit()
    rows = read_jsonl(run.metrics_path)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert [row for _, row, *_ in seen] == rows  # each row in order, as metrics.jsonl holds it
    assert [epoch for epoch, *_ in seen] == [1, 2, 3]
    assert [state_epoch for _, _, state_epoch, *_ in seen] == [1, 2, 3]
    assert [count for *_, count in seen] == [0, 1, 2]  # metrics.jsonl gets the row after the handler
    # Best tracking ran first: the best epoch so far by val/accuracy (the first of equal values).
    best_so_far, best = [], None
    for row in rows:
        if best is None or row["val/accuracy"] > best[1]:
            best = (row["epoch"], row["val/accuracy"])
        best_so_far.append(best[0])
    assert [best_epoch for _, _, _, best_epoch, _, _ in seen] == best_so_far
    assert [improved for *_, improved, _ in seen] == [b == e for b, e in zip(best_so_far, [1, 2, 3])]
    assert result.history == rows


def test_keys_an_epoch_end_handler_adds_are_written_with_the_row(tmp_path):
    trainer = make_trainer(tmp_path, epochs=2)
    run = trainer.settings.output.run
    assert run is not None

    def add_norm(end: EpochEnd) -> None:
        end.row["weights/norm"] = sum(float(p.detach().norm()) for p in trainer.parts.model.parameters())

    trainer.events.epoch_end.append(add_norm)
    trainer.fit()
    rows = read_jsonl(run.metrics_path)
    assert [isinstance(row.get("weights/norm"), float) and row["weights/norm"] > 0 for row in rows] == [True, True]
    last = torch.load(run.checkpoint_path("last"), weights_only=True)
    assert last["metrics"]["weights/norm"] == rows[-1]["weights/norm"]


def test_an_epoch_end_handler_can_stop_the_run_and_a_resume_stays_stopped(tmp_path):
    trainer = make_trainer(tmp_path, epochs=6)
    run = trainer.settings.output.run
    assert run is not None

    def stop_at_two(end: EpochEnd) -> None:
        if end.epoch == 2:
            end.stop()

    trainer.events.epoch_end.append(stop_at_two)
    result = trainer.fit()
    assert result.stopped_early is True
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert [row["epoch"] for row in read_jsonl(run.metrics_path)] == [1, 2]
    checkpoint = torch.load(run.checkpoint_path("last"), weights_only=True)
    assert (checkpoint["epoch"], checkpoint["state"]["stopped_early"]) == (2, True)
    # A trainer rebuilt from the checkpoint trains no further epoch.
    (tmp_path / "again").mkdir()
    again = make_trainer(tmp_path / "again", epochs=6, with_run=False)
    state, rng = again.load_checkpoint_state(checkpoint)
    resumed = again.fit(state, rng)
    assert (resumed.history, resumed.stopped_early, resumed.best_epoch) == ([], True, result.best_epoch)


def test_step_end_sees_every_step_with_the_losses_the_epoch_is_summed_from(tmp_path):
    trainer = make_trainer(tmp_path, epochs=2, with_run=False)
    samples, batch = len(trainer.parts.data.train), trainer.settings.step.batch_size
    per_epoch = -(-samples // batch)
    seen: list[tuple[int, int, int, int]] = []
    mean_at_last_step: list[float] = []

    def record(end: StepEnd) -> None:
        seen.append((end.epoch, end.step, end.progress.steps, end.samples))
        if end.step == per_epoch:
            mean_at_last_step.append(float(end.progress) / end.samples)

    trainer.events.step_end.append(record)
    result = trainer.fit()
    expected = [(epoch, step, step, min(step * batch, samples)) for epoch in (1, 2) for step in range(1, per_epoch + 1)]
    assert seen == expected
    assert mean_at_last_step == [row["train/loss"] for row in result.history]


def test_fit_end_handlers_get_the_result_fit_returns(tmp_path):
    trainer = make_trainer(tmp_path, epochs=2, with_run=False)
    results: list[FitResult] = []
    trainer.events.fit_end.append(results.append)
    result = trainer.fit()
    assert results == [result] and results[0] is result
    best = max(result.history, key=lambda row: (row["val/accuracy"], -row["epoch"]))
    assert (result.best_epoch, result.best_value) == (best["epoch"], best["val/accuracy"])


def test_the_update_is_chosen_from_the_precision_when_the_step_is_built():
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    plain = training_step(model, loss_fn, optimizer, StepSettings(8, precision=Precision("bf16", CPU)))
    scaled = training_step(model, loss_fn, optimizer, StepSettings(8, precision=Precision("16-mixed", CPU)))
    assert type(plain.update) is PlainUpdate and plain.update.state_dict() is None
    assert type(scaled.update) is ScaledUpdate
    state = scaled.update.state_dict()
    assert state is not None and state["scale"] == 65536.0  # GradScaler's initial scale, saved in checkpoints
