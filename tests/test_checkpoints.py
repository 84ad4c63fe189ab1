"""Checkpoints: plain dicts loaded with weights_only=True, and one clear line for a bad one."""

from __future__ import annotations

import pickle
import shutil

import pytest
import torch

from trainctl.errors import UserError
from trainctl.training.checkpoint import load_checkpoint, save_checkpoint
from trainctl.workflows import evaluate_run


class Payload:
    """Anything that needs unpickling code, which a checkpoint must never run."""

    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_checkpoint_is_a_plain_dict_with_the_config(digits_run):
    state = torch.load(digits_run.run.checkpoint_path("last"), weights_only=True)
    assert sorted(state) == [
        "config",
        "config_hash",
        "epoch",
        "grad_scaler",
        "loss",
        "metrics",
        "model",
        "optimizer",
        "rng",
        "scheduler",
        "state",
        "trainctl_version",
    ]
    assert state["epoch"] == 20
    assert state["config"]["model"]["hidden"] == [256, 256]


def test_corrupt_checkpoint_is_one_line(cli, digits_run, tmp_path):
    bad = tmp_path / "corrupt.pt"
    data = digits_run.run.checkpoint_path("best").read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    result = cli("eval", digits_run.run.path, "--checkpoint", bad)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {bad}: not a readable trainctl checkpoint (")
    assert len(result.stderr.splitlines()) == 1


def test_pickled_code_is_refused_not_run(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"model": Payload()}, protocol=2))
    with pytest.raises(UserError, match="not a readable trainctl checkpoint"):
        load_checkpoint(path)
    assert "arbitrary code ran" not in capsys.readouterr().out


def test_checkpoint_of_another_model_is_refused(digits_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(digits_run.run.path, run)
    config = (run / "config.yaml").read_text().replace("- 256\n  - 256", "- 128\n  - 256")
    (run / "config.yaml").write_text(config)
    with pytest.raises(UserError) as caught:
        evaluate_run(run)
    message = str(caught.value)
    assert message.startswith(f"{run / 'checkpoints' / 'best.pt'}: checkpoint does not fit this model (")
    assert "size mismatch" in message


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}, "epoch": 1}, path)
    save_checkpoint({"model": {"w": torch.zeros(2)}, "epoch": 2}, path)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
    assert load_checkpoint(path)["epoch"] == 2
