"""`trainctl validate` and the checks `train` runs first: each fires on its mistake, and only there."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainctl.config.loading import load_config
from trainctl.output import Output
from trainctl.reports.preflight import lint, output_kind, preflight
from trainctl.training.build import build_training
from trainctl.workflows import train, validate

from helpers import CONFIGS, write_config


def checks(report) -> list[str]:
    return [finding.check for finding in report.findings]


def test_seed_torch_example_is_a_double_softmax():
    report = validate(CONFIGS / "seed_torch_ce.yaml")
    assert checks(report) == ["double-softmax"]
    assert report.output_kind == "probabilities"
    assert "output_activation: none" in report.findings[0].fix
    # A softmax in front of cross-entropy still starts near ln C: the loss value alone hides the bug.
    assert report.initial_loss == pytest.approx(math.log(10), abs=0.05)


def test_seed_keras_example_is_mse_on_classes():
    report = validate(CONFIGS / "seed_keras_mse.yaml")
    assert checks(report) == ["regression-loss-on-classes"]
    assert report.target_shape == (32, 10)
    assert report.target_text == "one-hot vectors of 10 classes"


@pytest.mark.parametrize("config", ["digits_mlp", "digits_cnn", "digits_rnn", "diabetes_mse", "breast_cancer"])
def test_shipped_configs_are_clean(config):
    report = validate(CONFIGS / f"{config}.yaml")
    assert report.findings == []


def test_good_config_reports_shapes_and_expected_loss():
    report = validate(CONFIGS / "digits_mlp.yaml")
    assert report.parameters == 64 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10
    assert (report.input_shape, report.output_shape, report.target_shape) == ((64, 1, 8, 8), (64, 10), (64,))
    assert report.expected_loss == pytest.approx(math.log(10))
    assert abs(report.initial_loss - math.log(10)) < 0.1
    assert report.summary_lines()[2].endswith("(a fresh model should give about ln 10 = 2.3026)")


@pytest.mark.parametrize(
    "model, loss, expected",
    [
        ({"output_activation": "log_softmax"}, {"name": "cross_entropy"}, ["double-softmax"]),
        ({"output_activation": "softmax"}, {"name": "kl_div"}, ["double-softmax"]),
        ({"output_activation": "softmax"}, {"name": "nll"}, ["not-log-probabilities"]),
        ({"output_activation": "none"}, {"name": "nll"}, ["not-log-probabilities"]),
        ({"output_activation": "log_softmax"}, {"name": "nll"}, []),
        ({"output_activation": "none"}, {"name": "kl_div"}, []),
        ({"output_activation": "none"}, {"name": "cross_entropy"}, []),
    ],
)
def test_softmax_lints(tmp_path, model, loss, expected):
    config = load_config(write_config(tmp_path, model={"name": "mlp", "hidden": [16], **model}, loss=loss))
    assert checks(preflight(config, build_training(config))) == expected


def test_sigmoid_before_bce_with_logits(tmp_path):
    path = write_config(
        tmp_path,
        data={"name": "breast_cancer"},
        loss={"name": "bce_with_logits"},
        model={"name": "mlp", "hidden": [16], "output_activation": "sigmoid"},
    )
    report = validate(path)
    assert checks(report) == ["double-sigmoid"]
    assert validate(path, ["model.output_activation=none"]).findings == []


def test_output_size_and_non_finite_loss_are_errors(tmp_path):
    config = load_config(write_config(tmp_path))
    parts = build_training(config)
    wrong = torch.zeros(8, 5)  # iris has 3 classes
    findings = lint(config, parts, wrong, float("nan"), True, output_kind(wrong), math.log(3))
    assert [(f.level, f.check) for f in findings] == [("error", "output-size"), ("error", "non-finite-loss")]
    assert "gives 5 outputs, but cross_entropy on this dataset of 3 classes needs 3" in findings[0].message


def test_high_initial_loss_warns(tmp_path):
    config = load_config(write_config(tmp_path))
    parts = build_training(config)
    logits = torch.tensor([[60.0, -60.0, 0.0]] * 8)
    findings = lint(config, parts, logits, 40.0, True, output_kind(logits), math.log(3))
    assert [f.check for f in findings] == ["high-initial-loss"]


def test_train_prints_warnings_and_strict_stops(cli, tmp_path):
    result = cli("train", CONFIGS / "seed_torch_ce.yaml", "--out", tmp_path / "run", "--set", "trainer.epochs=1")
    assert result.exit_code == 0
    assert result.stderr.startswith("warning: double-softmax: ")
    strict = cli("train", CONFIGS / "seed_torch_ce.yaml", "--out", tmp_path / "strict", "--strict")
    assert strict.exit_code == 2
    assert strict.stderr.startswith("error: double-softmax: ")
    assert not (tmp_path / "strict").exists()


def test_validate_command_exit_codes(cli):
    good = cli("validate", CONFIGS / "digits_mlp.yaml")
    assert good.exit_code == 0
    assert good.stdout.splitlines()[0] == "parameters: 85,002"
    assert good.stdout.splitlines()[-1] == "no problems found"
    warned = cli("validate", CONFIGS / "seed_keras_mse.yaml")
    assert warned.exit_code == 0 and "warning: regression-loss-on-classes" in warned.stdout
    assert cli("validate", CONFIGS / "seed_keras_mse.yaml", "--strict").exit_code == 2


def test_checks_leave_the_run_unchanged(tmp_path):
    """The check runs on copies with the random state restored: dropout and batch norm included."""
    config = load_config(
        write_config(tmp_path, model={"name": "mlp", "hidden": [16], "dropout": 0.5, "batch_norm": True})
    )
    parts = build_training(config)
    before = {k: v.clone() for k, v in parts.model.state_dict().items()}
    rng = torch.get_rng_state()
    preflight(config, parts)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in parts.model.state_dict().items())


def test_module_with_its_own_softmax_is_caught(tmp_path):
    """Output-based detection works for any model, not only mlp's output_activation."""
    config = load_config(write_config(tmp_path))
    parts = build_training(config)
    parts.model = nn.Sequential(parts.model, nn.Softmax(dim=1))
    assert checks(preflight(config, parts)) == ["double-softmax"]


@pytest.mark.slow
def test_seed_torch_example_trains_worse_than_the_fix(tmp_path):
    broken = train(CONFIGS / "seed_torch_ce.yaml", out=tmp_path / "broken", output=Output(quiet=True))
    fixed = train(
        CONFIGS / "seed_torch_ce.yaml",
        ["model.output_activation=none"],
        out=tmp_path / "fixed",
        output=Output(quiet=True),
    )
    assert fixed.summary["test"]["accuracy"] > broken.summary["test"]["accuracy"] + 0.05
