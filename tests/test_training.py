"""Training end to end on bundled data: accuracy, the run folder, determinism and evaluation."""

from __future__ import annotations

import json

import pytest
import yaml

from trainctl.errors import UserError
from trainctl.output import Output
from trainctl.workflows import evaluate_run, train

from helpers import CONFIGS, read_jsonl, write_config


def test_default_config_reaches_its_accuracy(digits_run):
    summary = digits_run.summary
    assert summary["test"]["accuracy"] >= 0.95
    assert summary["test"]["checkpoint"] == "best"
    assert 1 <= summary["best_epoch"] <= 20


def test_run_folder_holds_what_ran(digits_run):
    path = digits_run.run.path
    written_by_train = sorted(p.name for p in path.iterdir() if not p.name.startswith("eval-"))  # eval tests share it
    assert written_by_train == [
        "checkpoints",
        "config.yaml",
        "curves.png",
        "data.json",
        "metrics.jsonl",
        "reliability.png",
        "summary.json",
        "test_predictions.csv",
    ]
    assert sorted(p.name for p in (path / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    resolved = yaml.safe_load((path / "config.yaml").read_text())
    assert resolved["model"] == {
        "name": "mlp",
        "hidden": [256, 256],
        "activation": "relu",
        "dropout": 0.0,
        "batch_norm": False,
        "output_activation": "none",
    }
    assert resolved["trainer"] == {
        "epochs": 20,
        "device": "cpu",
        "monitor": "val/accuracy",
        "early_stopping": None,
        "accumulate": 1,
        "grad_clip_norm": None,
        "on_nonfinite": "stop",
        "max_skipped_steps": 10,
        "precision": "32",
        "compile": False,
        "threads": None,
        "ema": None,
        "swa": None,
        "calibrate": None,
    }
    rows = read_jsonl(path / "metrics.jsonl")
    assert [row["epoch"] for row in rows] == list(range(1, 21))
    assert set(rows[0]) == {
        "epoch",
        "train/loss",
        "val/loss",
        "val/accuracy",
        "val/precision",
        "val/recall",
        "val/f1",
        "lr",
        "seconds",
    }
    # The best epoch is the one with the highest val/accuracy (first one on ties).
    best = max(rows, key=lambda row: (row["val/accuracy"], -row["epoch"]))
    assert digits_run.summary["best_epoch"] == best["epoch"]
    # Cosine decays to zero over the run.
    assert rows[0]["lr"] < 1e-3 and rows[-1]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_summary_holds_per_class_metrics_and_confusion_matrix(digits_run):
    test = digits_run.summary["test"]
    matrix = test["confusion_matrix"]
    assert len(matrix) == 10 and all(len(row) == 10 for row in matrix)
    assert sum(map(sum, matrix)) == 360  # 20% of 1,797, stratified
    assert sorted(test["per_class"]) == [str(d) for d in range(10)]
    recalls = [test["per_class"][str(d)]["recall"] for d in range(10)]
    assert sum(recalls) / 10 == pytest.approx(test["recall"])


def test_eval_reproduces_summary_exactly(digits_run):
    run, record = evaluate_run(digits_run.run.path, "best", "test")
    assert record == digits_run.summary["test"]
    written = json.loads((run.path / "eval-test-best.json").read_text())
    assert written == record


def test_eval_of_last_checkpoint_on_val_matches_last_epoch(digits_run):
    _, record = evaluate_run(digits_run.run.path, "last", "val")
    last_row = read_jsonl(digits_run.run.path / "metrics.jsonl")[-1]
    assert record["epoch"] == 20
    assert record["accuracy"] == pytest.approx(last_row["val/accuracy"], abs=1e-12)
    assert record["loss"] == pytest.approx(last_row["val/loss"], rel=1e-6)


def test_same_seed_gives_identical_metrics(tmp_path):
    config = write_config(tmp_path, model={"name": "mlp", "hidden": [16], "dropout": 0.2})
    first = train(config, out=tmp_path / "a", output=Output(quiet=True))
    second = train(config, out=tmp_path / "b", output=Output(quiet=True))
    other = train(config, ["seed=1"], out=tmp_path / "c", output=Output(quiet=True))

    def values(run):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in read_jsonl(run.run.metrics_path)]

    assert values(first) == values(second)
    assert values(first) != values(other)


def test_run_folders_never_overwrite(tmp_path):
    config = write_config(tmp_path, trainer={"epochs": 1, "device": "cpu"})
    first = train(config, output=Output(quiet=True))
    second = train(config, output=Output(quiet=True))
    assert first.run.path != second.run.path
    assert first.run.path.parent == second.run.path.parent == tmp_path / "runs"
    assert (first.run.path / "summary.json").is_file()
    with pytest.raises(UserError, match="already exists and is not empty"):
        train(config, out=first.run.path, output=Output(quiet=True))
    assert json.loads((first.run.path / "summary.json").read_text()) == first.summary


def test_bad_config_leaves_no_run_folder(tmp_path):
    config = write_config(tmp_path, model={"name": "cnn"})  # iris has no image shape
    with pytest.raises(UserError, match=r"model 'cnn' needs image-shaped input \(C×H×W\); this dataset gives \(4,\)"):
        train(config, output=Output(quiet=True))
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_digits_cnn_reaches_its_accuracy(tmp_path):
    result = train(CONFIGS / "digits_cnn.yaml", ["trainer.device=cpu"], out=tmp_path / "run", output=Output(quiet=True))
    assert result.summary["test"]["accuracy"] >= 0.97


@pytest.mark.slow
def test_diabetes_regression_beats_predicting_the_mean(tmp_path):
    result = train(
        CONFIGS / "diabetes_mse.yaml", ["trainer.device=cpu"], out=tmp_path / "run", output=Output(quiet=True)
    )
    test = result.summary["test"]
    assert test["r2"] > 0.3
    # Metrics are in the data's units (targets range 25–346), not the standardised ones the model learns.
    assert 30 < test["mae"] < 70
    assert test["rmse"] == pytest.approx(test["mse"] ** 0.5)


@pytest.mark.slow
def test_binary_bce_uses_one_output(tmp_path):
    from trainctl.config.loading import load_config
    from trainctl.training.build import build_model_parts

    config = load_config(CONFIGS / "breast_cancer.yaml", ["trainer.device=cpu"])
    parts = build_model_parts(config)
    assert parts.model(parts.data.train.inputs[:5]).shape == (5, 1)
    assert parts.data.train.targets.shape == (len(parts.data.train), 1)
    result = train(
        CONFIGS / "breast_cancer.yaml",
        ["trainer.device=cpu", "trainer.epochs=10"],
        out=tmp_path / "run",
        output=Output(quiet=True),
    )
    assert result.summary["test"]["recall"] > 0.9


def test_mse_on_classes_trains_against_one_hot_targets(tmp_path):
    from trainctl.config.loading import load_config
    from trainctl.training.build import build_model_parts

    config = load_config(write_config(tmp_path, loss={"name": "mse"}))
    parts = build_model_parts(config)
    targets = parts.data.train.targets
    assert targets.shape == (len(parts.data.train), 3)
    assert targets.sum(dim=1).tolist() == [1.0] * len(targets)
    assert targets.argmax(dim=1).tolist() == parts.data.train.labels.tolist()
