"""Precision, torch.compile, threads, and the loader settings in-memory datasets do not use."""

from __future__ import annotations

import pytest
import torch

from trainctl.errors import UserError
from trainctl.output import Output
from trainctl.workflows import resume, train, validate

from helpers import read_jsonl, write_config

TRAINER = {"epochs": 3, "device": "cpu"}


@pytest.fixture(scope="module")
def full_precision(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fp32")
    return train(write_config(folder, trainer=TRAINER), out=folder / "run", output=Output(quiet=True))


@pytest.mark.parametrize("precision", ["bf16", "16-mixed"])
def test_reduced_precision_trains_close_to_full_precision(tmp_path, full_precision, precision):
    result = train(
        write_config(tmp_path, trainer={**TRAINER, "precision": precision}),
        out=tmp_path / "run",
        output=Output(quiet=True),
    )
    reduced, full = read_jsonl(result.run.metrics_path), read_jsonl(full_precision.run.metrics_path)
    assert [row["train/loss"] for row in reduced] != [row["train/loss"] for row in full]  # it did run in low precision
    for low, high in zip(reduced, full, strict=True):
        assert low["val/loss"] == pytest.approx(high["val/loss"], rel=0.05)
    scaler = torch.load(result.run.checkpoint_path("last"), weights_only=True)["grad_scaler"]
    assert (scaler is not None) == (precision == "16-mixed")  # only float16 needs loss scaling
    if scaler is not None:
        assert scaler["scale"] > 0


@pytest.mark.slow
def test_float16_resume_restores_the_grad_scaler_exactly(tmp_path):
    config = write_config(tmp_path, trainer={**TRAINER, "precision": "16-mixed"})
    straight = train(config, out=tmp_path / "straight", output=Output(quiet=True))
    first = train(config, ["trainer.epochs=1"], out=tmp_path / "resumed", output=Output(quiet=True))
    resume(first.run.path, ["trainer.epochs=3"], output=Output(quiet=True))
    a = torch.load(straight.run.checkpoint_path("last"), weights_only=True)
    b = torch.load(first.run.checkpoint_path("last"), weights_only=True)
    assert a["grad_scaler"] == b["grad_scaler"]
    assert all(torch.equal(a["model"][key], b["model"][key]) for key in a["model"])


def test_unknown_precision_lists_the_allowed_ones(tmp_path):
    with pytest.raises(UserError, match=r"trainer.precision: Input should be '32', 'bf16' or '16-mixed'"):
        train(write_config(tmp_path, trainer={**TRAINER, "precision": 64}), output=Output(quiet=True))


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one_and_saves_plain_weights(tmp_path, full_precision):
    result = train(
        write_config(tmp_path, trainer={**TRAINER, "compile": True}), out=tmp_path / "run", output=Output(quiet=True)
    )
    compiled = torch.load(result.run.checkpoint_path("last"), weights_only=True)["model"]
    eager = torch.load(full_precision.run.checkpoint_path("last"), weights_only=True)["model"]
    assert compiled.keys() == eager.keys()  # no "_orig_mod." prefixes: loads in any run, compiled or not
    for key in eager:
        assert torch.allclose(compiled[key], eager[key], atol=1e-5), key
    rows, reference = read_jsonl(result.run.metrics_path), read_jsonl(full_precision.run.metrics_path)
    assert [r["val/accuracy"] for r in rows] == [r["val/accuracy"] for r in reference]


def test_threads_setting_sets_torch_threads(tmp_path):
    before = torch.get_num_threads()
    try:
        train(
            write_config(tmp_path, trainer={**TRAINER, "epochs": 1, "threads": 1}),
            out=tmp_path / "run",
            output=Output(quiet=True),
        )
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_loader_settings_on_an_in_memory_dataset_are_a_warning(tmp_path):
    config = write_config(tmp_path, data={"name": "iris", "batch_size": 16, "num_workers": 2, "pin_memory": True})
    warnings = [str(finding) for finding in validate(config).warnings]
    assert warnings == [
        "loader-settings-unused: data.num_workers, data.pin_memory set, but dataset 'iris' is held in memory and "
        "batched from preloaded tensors, with no DataLoader. Fix: leave them out; they are for image files and "
        "random (augmenting) transforms, which are streamed"
    ]
