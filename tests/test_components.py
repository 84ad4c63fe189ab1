"""Every registered component builds and trains, so a new one cannot skip the tests."""

from __future__ import annotations

import math

import pytest
import torch

from trainctl.components.registries import DATASETS, LOSSES, MODELS, OPTIMIZERS, SCHEDULERS
from trainctl.config.loading import load_config
from trainctl.output import Output
from trainctl.workflows import train

from helpers import write_config

DATASET_FOR_TASK = {"classification": "iris", "regression": "diabetes", "distribution": "wine"}
MODEL_DATASET = {"mlp": "iris", "cnn": "digits", "rnn": "digits"}


def test_every_model_is_trained_by_some_test():
    assert set(MODELS.names()) == {*MODEL_DATASET, "embedding_bag", "torchvision", "audio_cnn"}  # text; images; audio


def one_epoch(tmp_path, **sections):
    sections.setdefault("trainer", {"epochs": 1, "device": "cpu"})
    return train(write_config(tmp_path, **sections), out=tmp_path / "run", output=Output(quiet=True))


COMPOSITE_TERMS = {
    "sum": ("classification", [{"name": "cross_entropy"}, {"name": "focal", "weight": 0.1}]),
    "uncertainty_sum": ("regression", [{"name": "mse"}, {"name": "l1"}]),
}


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_trains_on_a_matching_dataset(tmp_path, name):
    """One epoch per registered loss: a new loss cannot skip this test."""
    loss = {"name": name}
    task = LOSSES.get(name).info.task
    if LOSSES.get(name).info.composite:
        task, loss["terms"] = COMPOSITE_TERMS[name]
    metrics = ["mse"] if task == "regression" else ["accuracy"]
    result = one_epoch(
        tmp_path,
        data={"name": DATASET_FOR_TASK[task]},
        loss=loss,
        metrics=metrics,
        trainer={"epochs": 2, "device": "cpu"},
    )
    rows = result.run.read_metrics()
    assert all(math.isfinite(row["train/loss"]) and math.isfinite(row["val/loss"]) for row in rows)
    assert math.isfinite(result.summary["test"]["loss"])


@pytest.mark.parametrize("name", list(MODEL_DATASET))  # embedding_bag: test_text.py; torchvision: test_images.py
def test_every_model_trains(tmp_path, name):
    result = one_epoch(tmp_path, data={"name": MODEL_DATASET[name]}, model={"name": name})
    assert result.summary["test"]["accuracy"] > 0.2  # better than chance after one epoch


# Datasets read from files (a required path or root) are trained in tests/test_csv.py and test_images.py.
BUNDLED = [entry.name for entry in DATASETS if not any(f.is_required() for f in entry.params.model_fields.values())]


@pytest.mark.parametrize("name", BUNDLED)
def test_every_dataset_trains(tmp_path, name):
    task = DATASETS.get(name).info.task
    loss = "mse" if task == "regression" else "cross_entropy"
    result = one_epoch(tmp_path, data={"name": name}, loss={"name": loss})
    key = "r2" if task == "regression" else "accuracy"
    assert key in result.summary["test"]


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_lowers_the_training_loss(tmp_path, name):
    result = one_epoch(tmp_path, optimizer={"name": name, "lr": 0.01}, trainer={"epochs": 3, "device": "cpu"})
    rows = [line for line in result.run.read_metrics()]
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_every_scheduler_changes_the_learning_rate(tmp_path, name):
    params = {
        "step": {"step_size": 1, "gamma": 0.5},
        "reduce_on_plateau": {"patience": 0, "factor": 0.5, "threshold": 10},
    }
    scheduler = {"name": name, **params.get(name, {})}
    result = one_epoch(
        tmp_path,
        scheduler=scheduler,
        trainer={"epochs": 4, "device": "cpu", "monitor": "val/loss"},
        optimizer={"name": "sgd", "lr": 0.05},
    )
    learning_rates = [row["lr"] for row in result.run.read_metrics()]
    assert len(set(learning_rates)) > 1, learning_rates


def test_step_scheduler_halves_each_epoch(tmp_path):
    result = one_epoch(
        tmp_path,
        scheduler={"name": "step", "step_size": 1, "gamma": 0.5},
        optimizer={"name": "sgd", "lr": 0.08},
        trainer={"epochs": 3, "device": "cpu"},
    )
    # The logged rate is the one each epoch trained with.
    assert [row["lr"] for row in result.run.read_metrics()] == pytest.approx([0.08, 0.04, 0.02])


def test_kl_div_is_batchmean_over_log_softmax(tmp_path):
    from trainctl.training.build import build_data, build_loss

    config = load_config(write_config(tmp_path, loss={"name": "kl_div"}))
    data = build_data(config, torch.device("cpu"))
    loss_fn = build_loss(config, data)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    target = torch.tensor([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0]])
    log_q = torch.log_softmax(logits, dim=1)
    expected = (
        sum(sum(p * (torch.log(p) - lq) for p, lq in zip(row_p, row_q) if p > 0) for row_p, row_q in zip(target, log_q))
        / 2
    )
    assert loss_fn(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
