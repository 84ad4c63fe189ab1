"""Config loading and validation: every bad input gives a precise message, all at once."""

from __future__ import annotations

import pytest

from trainctl.config.loading import load_config
from trainctl.errors import ConfigError, UserError

from helpers import CONFIGS, write_config


def problems_of(path, overrides=None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    return caught.value.lines()


def test_default_config_resolves_every_default(tmp_path):
    config = load_config(CONFIGS / "digits_mlp.yaml")
    resolved = config.to_dict()
    assert resolved["optimizer"] == {
        "name": "adam",
        "lr": 0.001,
        "betas": [0.9, 0.999],
        "eps": 1e-08,
        "weight_decay": 0.0,
    }
    assert resolved["model"]["batch_norm"] is False
    assert resolved["trainer"]["monitor"] == "val/accuracy"
    assert resolved["data"]["split_seed"] == 0


def test_exponent_without_dot_is_a_number(tmp_path):
    """YAML 1.1 reads 1e-3 as a string; trainctl reads it as the number every user means."""
    path = write_config(tmp_path, optimizer={"name": "adam", "lr": "PLACEHOLDER"})
    path.write_text(path.read_text().replace("PLACEHOLDER", "1e-3"))
    assert "1e-3" in path.read_text()
    assert load_config(path).optimizer.params["lr"] == 0.001


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    path = write_config(
        tmp_path,
        """
        name: broken
        model:
          name: mlp
          hidden: [64, 64
        loss: {name: mse}
    """,
    )
    with pytest.raises(UserError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:5:")
    assert "invalid YAML" in message


def test_python_tags_are_refused(tmp_path):
    path = write_config(
        tmp_path,
        """
        name: !!python/object/apply:os.system ["echo owned"]
    """,
    )
    with pytest.raises(UserError) as caught:
        load_config(path)
    assert f"{path}:1:" in str(caught.value)
    assert "python tags are not allowed" in str(caught.value)


def test_every_problem_is_reported_at_once_with_lines(tmp_path):
    path = write_config(
        tmp_path,
        """
        name: many-mistakes
        data:
          name: digits
          batch_size: 0
          val_fraction: 1.5
        model:
          name: mpl
        loss:
          name: cross_entropy
          label_smothing: 0.1
        optimizer:
          name: adam
          lr: -0.1
        trainer:
          epochs: 0
          epochz: 3
    """,
    )
    lines = problems_of(path)
    assert f"{path}:4: data.batch_size: Input should be greater than or equal to 1 (got 0)" in lines
    assert f"{path}:5: data.val_fraction: Input should be less than 1 (got 1.5)" in lines
    assert f"{path}:15: trainer.epochs: Input should be greater than or equal to 1 (got 0)" in lines
    assert any(line.startswith(f"{path}:16: trainer.epochz: unknown key (did you mean 'epochs'?)") for line in lines)
    assert any(line.startswith(f"{path}:7: model.name: unknown model 'mpl' (did you mean 'mlp'?)") for line in lines)
    assert any(
        line.startswith(
            f"{path}:10: loss.label_smothing: loss 'cross_entropy' has no parameter 'label_smothing' "
            "(did you mean 'label_smoothing'?)"
        )
        for line in lines
    )
    assert f"{path}:13: optimizer.lr: Input should be greater than 0 (got -0.1)" in lines
    assert len(lines) == 7


def test_fractions_must_leave_training_data(tmp_path):
    path = write_config(tmp_path, data={"name": "iris", "val_fraction": 0.5, "test_fraction": 0.5})
    (line,) = problems_of(path)
    assert "data: val_fraction + test_fraction must be below 1 to leave training data (got 0.5 + 0.5)" in line


def test_wrong_type_names_the_value_and_what_is_allowed(tmp_path):
    path = write_config(tmp_path, model={"name": "mlp", "activation": "swishy", "hidden": "big"})
    lines = problems_of(path)
    assert any(
        "model.activation: Input should be 'relu', 'gelu', 'tanh'" in line and "(got 'swishy')" in line
        for line in lines
    )
    assert any("model.hidden: Input should be a valid list (got 'big')" in line for line in lines)


def test_missing_section_and_unknown_top_level_key(tmp_path):
    path = write_config(
        tmp_path,
        """
        name: no-loss
        model: {name: mlp}
        optimizer: {name: sgd}
        metrix: [accuracy]
    """,
    )
    lines = problems_of(path)
    assert f"{path}: loss: required key is missing" in lines
    assert any(line.startswith(f"{path}:4: metrix: unknown key (did you mean 'metrics'?)") for line in lines)


def test_overrides_are_yaml_values_and_located(tmp_path):
    path = write_config(tmp_path)
    config = load_config(path, ["trainer.epochs=5", "model.hidden=[64,64]", "optimizer.lr=3e-4"])
    assert config.trainer.epochs == 5
    assert config.model.params["hidden"] == [64, 64]
    assert config.optimizer.params["lr"] == 0.0003
    (line,) = problems_of(path, ["optimizer.lr=0"])
    assert line == "--set optimizer.lr: optimizer.lr: Input should be greater than 0 (got 0)"


def test_malformed_override(tmp_path):
    with pytest.raises(UserError, match=r"--set trainer\.epochs: expected key\.path=value"):
        load_config(write_config(tmp_path), ["trainer.epochs"])


def test_loss_must_suit_the_dataset_task(tmp_path):
    path = write_config(tmp_path, data={"name": "diabetes"}, metrics=["mse"])
    (line,) = problems_of(path)
    assert line.endswith(
        "loss.name: loss 'cross_entropy' expects a classification task, but dataset 'diabetes' is a regression task"
    )


def test_metrics_and_monitor_must_suit_the_task(tmp_path):
    path = write_config(tmp_path, metrics=["accuracy", "r2"], trainer={"epochs": 1, "monitor": "val/acuracy"})
    lines = problems_of(path)
    assert any(
        "metrics.1: metric 'r2' is for regression, but dataset 'iris' is classification" in line for line in lines
    )
    assert any("trainer.monitor: cannot monitor 'val/acuracy' (did you mean 'val/accuracy'?)" in line for line in lines)


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_name_defaults_to_file_stem(tmp_path):
    path = write_config(
        tmp_path,
        """
        model: {name: mlp}
        loss: {name: cross_entropy}
        optimizer: {name: adam}
    """,
        file="my experiment.yaml",
    )
    config = load_config(path)
    assert config.name == "my-experiment"
    assert config.dataset.name == "digits"


def test_section_given_as_a_name_only(tmp_path):
    path = write_config(
        tmp_path,
        """
        model: mlp
        loss: {name: cross_entropy}
        optimizer: {name: adam, betas: [0.9]}
    """,
    )
    lines = problems_of(path)
    assert f"{path}:1: model: must be a mapping with a name, e.g. {{name: ...}} (got 'mlp')" in lines
    assert f"{path}:3: optimizer.betas.1: too few items: item 1 is missing" in lines


def test_composite_terms_are_validated_like_losses(tmp_path):
    path = write_config(
        tmp_path,
        """
        model: {name: mlp}
        optimizer: {name: adam}
        loss:
          name: sum
          terms:
            - name: cross_entropy
              weight: 1.0
            - name: focal
              weight: 0.1
              gama: 2.0
    """,
    )
    (line,) = problems_of(path)
    assert line.startswith(
        f"{path}:10: loss.terms.1.gama: loss 'focal' has no parameter 'gama' (did you mean 'gamma'?)"
    )
    path.write_text(path.read_text().replace("gama: 2.0", "gamma: 2.0"))
    config = load_config(path)
    assert config.loss.params["terms"] == [
        {"name": "cross_entropy", "weight": 1.0, "label_smoothing": 0.0, "class_weight": None},
        {"name": "focal", "weight": 0.1, "gamma": 2.0, "alpha": None},
    ]


def test_composite_terms_must_agree(tmp_path):
    path = write_config(tmp_path, loss={"name": "sum", "terms": [{"name": "cross_entropy"}, {"name": "mse"}]})
    (line,) = problems_of(path)
    assert "loss.name: the terms of loss 'sum' must expect the same targets and model outputs" in line


def test_composites_do_not_nest(tmp_path):
    path = write_config(tmp_path, loss={"name": "sum", "terms": [{"name": "sum", "terms": [{"name": "mse"}]}]})
    (line,) = problems_of(path)
    assert line.endswith("loss.terms.0.name: composite losses cannot be nested")
