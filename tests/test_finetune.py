"""Fine-tuning: model.freeze and optimizer.groups select parameters by name; list-models NAME names them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from trainctl.config.loading import load_config
from trainctl.output import Output
from trainctl.training.build import build_training
from trainctl.workflows import resume, train

from helpers import read_jsonl, write_config, write_idx_files

# The iris MLP with hidden [16, 16] is a Sequential: 0 flatten, 1 linear, 2 relu, 3 linear, 4 relu, 5 linear.
TWO_LAYERS = {"name": "mlp", "hidden": [16, 16]}


def last_weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def initial_weights(config: Path) -> dict[str, torch.Tensor]:
    """The weights a run starts from: the model is seeded right before initialisation."""
    model = build_training(load_config(config)).model
    return {key: value.clone() for key, value in model.state_dict().items()}


def test_frozen_parameters_stay_bit_identical_while_the_others_train(tmp_path):
    config = write_config(tmp_path, model={**TWO_LAYERS, "freeze": ["1", "3.bias"]})
    before = initial_weights(config)
    parts = build_training(load_config(config))
    trained = {id(p) for group in parts.optimizer.param_groups for p in group["params"]}
    named = dict(parts.model.named_parameters())
    assert [name for name, p in named.items() if id(p) in trained] == ["3.weight", "5.weight", "5.bias"]
    assert [name for name, p in named.items() if p.requires_grad] == ["3.weight", "5.weight", "5.bias"]

    after = last_weights(train(config, out=tmp_path / "run", output=Output(quiet=True)).run.path)
    for name in ("1.weight", "1.bias", "3.bias"):
        assert torch.equal(before[name], after[name]), name
    for name in ("3.weight", "5.weight", "5.bias"):
        assert not torch.equal(before[name], after[name]), name


def test_groups_get_their_own_settings_and_the_rest_the_top_level_ones(tmp_path):
    config = write_config(
        tmp_path,
        model=TWO_LAYERS,
        optimizer={
            "name": "adam",
            "lr": 0.01,
            "groups": [{"params": "5", "lr": 0.1, "weight_decay": 0.5}, {"params": ["3.w*"], "betas": [0.5, 0.9]}],
        },
    )
    parts = build_training(load_config(config))
    named = {id(p): name for name, p in parts.model.named_parameters()}
    groups = parts.optimizer.param_groups
    assert [[named[id(p)] for p in group["params"]] for group in groups] == [
        ["1.weight", "1.bias", "3.bias"],
        ["5.weight", "5.bias"],
        ["3.weight"],
    ]
    assert [(g["lr"], g["weight_decay"], tuple(g["betas"])) for g in groups] == [
        (0.01, 0.0, (0.9, 0.999)),
        (0.1, 0.5, (0.9, 0.999)),
        (0.01, 0.0, (0.5, 0.9)),
    ]


def test_a_group_with_a_tiny_lr_barely_moves_while_the_default_group_trains(tmp_path):
    config = write_config(
        tmp_path,
        model=TWO_LAYERS,
        optimizer={"name": "sgd", "lr": 0.5, "groups": [{"params": "5", "lr": 1.0e-7}]},
    )
    before = initial_weights(config)
    after = last_weights(train(config, out=tmp_path / "run", output=Output(quiet=True)).run.path)
    assert float((after["5.weight"] - before["5.weight"]).abs().max()) < 1e-4
    assert float((after["3.weight"] - before["3.weight"]).abs().max()) > 1e-2


def test_a_scheduler_scales_every_group_and_the_metrics_lr_is_the_default_group(tmp_path):
    config = write_config(
        tmp_path,
        model=TWO_LAYERS,
        optimizer={"name": "sgd", "lr": 0.4, "groups": [{"params": "5", "lr": 0.1}]},
        scheduler={"name": "step", "step_size": 1, "gamma": 0.5},
        trainer={"epochs": 2, "device": "cpu"},
    )
    run = train(config, out=tmp_path / "run", output=Output(quiet=True)).run.path
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["optimizer"]
    assert [group["lr"] for group in saved["param_groups"]] == [0.1, 0.025]  # both halved twice
    # The metrics' lr is the default group's, the rate each epoch trained with.
    assert [row["lr"] for row in read_jsonl(run / "metrics.jsonl")] == [0.4, 0.2]


PROBLEM_CONFIG = """\
data: {{name: iris, batch_size: 16}}
model:
  name: mlp
  hidden: [16, 16]
  freeze: [{freeze}]
loss: {{name: cross_entropy}}
optimizer:
  name: adam
  groups:
    - params: "{first}"
      {key}: 0.1
    - params: ["3.bias", "{second}"]
trainer: {{epochs: 1, device: cpu}}
"""


@pytest.mark.parametrize(
    ("values", "line"),
    [
        (
            {"freeze": "layer9"},
            "config.yaml:5: model.freeze.0: 'layer9' selects no parameter of model 'mlp'; its top-level modules: "
            "1, 3, 5 (trainctl list-models mlp shows every parameter)",
        ),
        (
            {"freeze": '"1", "3", "5"'},
            "config.yaml:5: model.freeze: selects every parameter of model 'mlp'; nothing would train",
        ),
        (
            {"second": "5*"},
            "config.yaml:12: optimizer.groups.1.params: '5*' and '5' (group 0) both select '5.weight'; "
            "a parameter belongs to one group",
        ),
        (
            {"first": "head"},
            "config.yaml:10: optimizer.groups.0.params: 'head' selects no parameter of model 'mlp'; "
            "its top-level modules: 1, 3, 5 (trainctl list-models mlp shows every parameter)",
        ),
        (
            {"key": "momentum"},
            "config.yaml:11: optimizer.groups.0.momentum: optimizer 'adam' has no parameter 'momentum'; "
            "a group accepts: params, lr, betas, eps, weight_decay",
        ),
        (
            {"freeze": '"1"', "first": "1"},
            "config.yaml:10: optimizer.groups.0.params: '1' selects only parameters frozen by model.freeze",
        ),
    ],
)
def test_pattern_and_group_mistakes_are_one_line_at_their_key(cli, tmp_path, values, line):
    text = PROBLEM_CONFIG.format(**{"freeze": "", "first": "5", "second": "3.weight", "key": "lr", **values})
    config = write_config(tmp_path, text)
    result = cli("train", config, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / line}"
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_run_with_frozen_layers_and_groups_resumes_bit_identical(tmp_path):
    """Freeze and groups are in the saved config, so a resume rebuilds the same groups and loads
    their optimizer state: two epochs straight, or one and then resumed to two, give the same bits."""
    sections = {
        "data": {"name": "iris", "batch_size": 16},
        "model": {**TWO_LAYERS, "freeze": ["1.bias"]},
        "optimizer": {"name": "adam", "lr": 0.01, "groups": [{"params": "5", "lr": 0.05, "betas": [0.8, 0.99]}]},
        "scheduler": {"name": "step", "step_size": 1, "gamma": 0.5},
        "trainer": {"epochs": 2, "device": "cpu"},
    }
    for folder in ("straight", "stopped"):
        (tmp_path / folder).mkdir()
    straight = train(write_config(tmp_path / "straight", **sections), out=tmp_path / "s", output=Output(quiet=True))
    config = write_config(tmp_path / "stopped", **sections)
    first = train(config, ["trainer.epochs=1"], out=tmp_path / "r", output=Output(quiet=True))
    resumed = resume(first.run.path, ["trainer.epochs=2"], output=Output(quiet=True))
    assert resumed.summary["epochs_trained"] == 2
    a, b = last_weights(straight.run.path), last_weights(first.run.path)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    saved = [
        torch.load(run / "checkpoints" / "last.pt", weights_only=True)["optimizer"]
        for run in (tmp_path / "s", tmp_path / "r")
    ]
    assert [g["lr"] for g in saved[1]["param_groups"]] == [0.0025, 0.0125]
    for key, state in saved[0]["state"].items():
        assert all(torch.equal(state[name], saved[1]["state"][key][name]) for name in state)
    saved_config = yaml.safe_load((first.run.path / "config.yaml").read_text())
    assert saved_config["model"]["freeze"] == ["1.bias"]
    assert saved_config["optimizer"]["groups"] == [{"params": ["5"], "lr": 0.05, "betas": [0.8, 0.99]}]


def test_list_models_name_shows_the_parameter_names_and_shapes(cli, tmp_path):
    result = cli("list-models", "mlp", columns=120)
    assert result.exit_code == 0, result.output
    assert (
        "model 'mlp' on dataset 'digits' (input 1×8×8, 10 outputs): 85,002 parameters, 85,002 trainable"
        in result.stdout
    )
    lines = [line.split("│")[1:5] for line in result.stdout.splitlines() if line.startswith("│")]
    assert [[cell.strip() for cell in line] for line in lines] == [
        ["1.weight", "256×64", "16,384", "yes"],
        ["1.bias", "256", "256", "yes"],
        ["3.weight", "256×256", "65,536", "yes"],
        ["3.bias", "256", "256", "yes"],
        ["5.weight", "10×256", "2,560", "yes"],
        ["5.bias", "10", "10", "yes"],
    ]
    config = write_config(tmp_path, model={**TWO_LAYERS, "freeze": ["1"]})
    result = cli("list-models", "mlp", "--config", config, columns=120)
    assert "model 'mlp' on dataset 'iris' (input 4, 3 outputs): 403 parameters, 323 trainable" in result.stdout
    assert "│ 1.weight  │ 16×4  │   64 │ frozen │" in result.stdout
    result = cli("list-models", "cnn", "--config", config)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: --config: {config} trains model 'mlp', not 'cnn'"


@pytest.mark.slow
def test_a_torchvision_resnet_fine_tunes_its_last_block_from_a_local_weights_file(cli, tmp_path):
    import torchvision

    pretrained = torchvision.models.resnet18(num_classes=1000)
    torch.save(pretrained.state_dict(), tmp_path / "resnet18.pt")
    write_idx_files(tmp_path / "data", "MNIST", n_train=64, n_test=16)
    config = write_config(
        tmp_path,
        data={"name": "mnist", "root": str(tmp_path / "data"), "batch_size": 32},
        model={
            "name": "torchvision",
            "arch": "resnet18",
            "weights": str(tmp_path / "resnet18.pt"),
            "freeze": ["conv1", "bn1", "layer[1-3]"],
        },
        optimizer={"name": "sgd", "lr": 0.01, "groups": [{"params": "layer4", "lr": 0.001}]},
        trainer={"epochs": 1, "device": "cpu"},
    )
    result = cli("train", config, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    after = last_weights(tmp_path / "run")
    source = pretrained.state_dict()
    for name in ("layer1.0.conv1.weight", "layer3.1.bn2.bias"):  # loaded from the file and frozen
        assert torch.equal(after[name], source[name]), name
    assert not torch.equal(after["layer4.1.conv2.weight"], source["layer4.1.conv2.weight"])
    assert after["fc.weight"].shape == (10, 512)
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["optimizer"]
    assert [len(group["params"]) for group in saved["param_groups"]] == [2, 15]  # fc; layer4's 15 tensors


# Every value of model.freeze and optimizer.groups substituted whole, so a key can be given any shape.
SHAPES_CONFIG = """\
data: {{name: iris, batch_size: 16}}
model:
  name: mlp
  hidden: {hidden}
  freeze: {freeze}
loss: {{name: cross_entropy}}
optimizer:
  name: adam
  groups: {groups}
trainer: {{epochs: 1, device: cpu}}
"""
PATTERN_RULE = "must be a parameter name, module prefix or glob such as layer4 or layer[1-3]"


@pytest.mark.parametrize(
    ("values", "line"),
    [
        ({"freeze": "3"}, "config.yaml:5: model.freeze: must be a list of parameter-name patterns (got 3)"),
        ({"freeze": "null"}, "config.yaml:5: model.freeze: must be a list of parameter-name patterns (got None)"),
        ({"freeze": "{a: 1}"}, "config.yaml:5: model.freeze: must be a list of parameter-name patterns (got {'a': 1})"),
        ({"freeze": '["1", 3]'}, f"config.yaml:5: model.freeze.1: {PATTERN_RULE} (got 3)"),
        ({"freeze": '[""]'}, f"config.yaml:5: model.freeze.0: {PATTERN_RULE} (got '')"),
        ({"freeze": '"  "'}, f"config.yaml:5: model.freeze: {PATTERN_RULE} (got '  ')"),
        (
            {"groups": "{params: '5'}"},
            "config.yaml:9: optimizer.groups: must be a list of {params: PATTERN, ...} (got {'params': '5'})",
        ),
        (
            {"groups": "[{lr: 0.1}]"},
            "config.yaml:9: optimizer.groups.0: must be a mapping with params, e.g. {params: layer4, lr: 1.0e-4} "
            "(got {'lr': 0.1})",
        ),
        (
            {"groups": "['5']"},
            "config.yaml:9: optimizer.groups.0: must be a mapping with params, e.g. {params: layer4, lr: 1.0e-4} "
            "(got '5')",
        ),
        (
            {"groups": "[{params: []}]"},
            "config.yaml:9: optimizer.groups.0.params: must name at least one parameter, module prefix or glob "
            "such as layer4 (got [])",
        ),
        ({"groups": "[{params: ''}]"}, f"config.yaml:9: optimizer.groups.0.params: {PATTERN_RULE} (got '')"),
        (
            {"groups": "[{params: {a: 1}}]"},
            "config.yaml:9: optimizer.groups.0.params: must be a list of parameter-name patterns (got {'a': 1})",
        ),
        (
            {"groups": "[{params: '5', lrr: 0.1}]"},
            "config.yaml:9: optimizer.groups.0.lrr: optimizer 'adam' has no parameter 'lrr' (did you mean 'lr'?); "
            "a group accepts: params, lr, betas, eps, weight_decay",
        ),
        (
            {"groups": "[{params: '5', lr: -1}]"},
            "config.yaml:9: optimizer.groups.0.lr: Input should be greater than 0 (got -1)",
        ),
        (
            {"groups": "[{params: '5', betas: [2, 0.9]}]"},
            "config.yaml:9: optimizer.groups.0.betas.0: Input should be less than 1 (got 2)",
        ),
        (
            {"hidden": "[4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4]", "freeze": "[nope]"},
            "config.yaml:5: model.freeze.0: 'nope' selects no parameter of model 'mlp'; its top-level modules: "
            "1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, ... (trainctl list-models mlp shows every parameter)",
        ),
    ],
)
def test_malformed_freeze_and_groups_are_one_line_at_their_key(cli, tmp_path, values, line):
    text = SHAPES_CONFIG.format(**{"hidden": "[16, 16]", "freeze": "[]", "groups": "[]", **values})
    result = cli("train", write_config(tmp_path, text), "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / line}"
    assert not (tmp_path / "run").exists()


def test_a_malformed_freeze_and_group_are_reported_together(cli, tmp_path):
    text = SHAPES_CONFIG.format(hidden="[16, 16]", freeze="3", groups="[{lr: 0.1}]")
    result = cli("train", write_config(tmp_path, text), "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path}/config.yaml:5: model.freeze: must be a list of parameter-name patterns (got 3)",
        f"error: {tmp_path}/config.yaml:9: optimizer.groups.0: must be a mapping with params, e.g. "
        "{params: layer4, lr: 1.0e-4} (got {'lr': 0.1})",
    ]


def test_a_model_whose_parameters_sit_on_the_root_is_described_by_their_names():
    """A model with no submodules holding parameters: the error lists its parameters instead."""
    from trainctl.errors import UserError
    from trainctl.training.finetune import freeze

    with pytest.raises(UserError) as caught:
        freeze(torch.nn.Linear(4, 2), ["head"], "linear")
    assert str(caught.value) == (
        "model.freeze.0: 'head' selects no parameter of model 'linear'; its top-level modules: weight, bias "
        "(trainctl list-models linear shows every parameter)"
    )


def test_two_patterns_of_one_group_may_select_the_same_parameter_once(tmp_path):
    config = write_config(
        tmp_path, model=TWO_LAYERS, optimizer={"name": "adam", "lr": 0.01, "groups": [{"params": ["5", "5.weight"]}]}
    )
    parts = build_training(load_config(config))
    named = {id(p): name for name, p in parts.model.named_parameters()}
    assert [[named[id(p)] for p in group["params"]] for group in parts.optimizer.param_groups] == [
        ["1.weight", "1.bias", "3.weight", "3.bias"],
        ["5.weight", "5.bias"],
    ]


def onecycle_rates(directory: Path, groups: list[dict]) -> tuple[list[list[float]], int]:
    """Every group's rate before the first step and after each optimizer step of a real fit, and the steps."""
    from trainctl.training.settings import fit_settings
    from trainctl.training.trainer import Trainer

    path = write_config(
        directory,
        model=TWO_LAYERS,
        optimizer={"name": "sgd", "lr": 0.1, "groups": groups},
        scheduler={"name": "onecycle", "max_lr": 0.4, "pct_start": 0.25},
        trainer={"epochs": 2, "device": "cpu"},
    )
    config = load_config(path)
    parts = build_training(config)
    trainer = Trainer(parts, fit_settings(config, parts, None))
    rates = [[group["lr"] for group in parts.optimizer.param_groups]]
    trainer.events.step_end.append(lambda end: rates.append([g["lr"] for g in parts.optimizer.param_groups]))
    trainer.fit()
    return rates, 2 * 7  # iris: 105 training samples in batches of 16


def torch_onecycle(max_lr: float, total: int) -> list[float]:
    """torch's OneCycleLR on one group of its own: the rates the top-level group must follow."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, pct_start=0.25)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(total):
        optimizer.step()
        schedule.step()
        rates.append(optimizer.param_groups[0]["lr"])
    return rates


def test_onecycle_peaks_each_group_at_max_lr_times_its_share_of_the_top_level_lr(tmp_path):
    """optimizer.lr 0.1 and a group at 0.01: the group peaks at max_lr / 10 all through the cycle."""
    rates, total = onecycle_rates(tmp_path, [{"params": "5", "lr": 0.01}])
    assert len(rates) == total + 1
    assert [step[0] for step in rates] == pytest.approx(torch_onecycle(0.4, total), rel=1e-12)
    assert [step[1] for step in rates] == pytest.approx(torch_onecycle(0.04, total), rel=1e-12)
    assert [step[1] / step[0] for step in rates] == pytest.approx([0.1] * (total + 1), rel=1e-12)  # the ratio kept


def test_onecycle_scales_from_the_top_level_lr_when_every_parameter_is_in_a_group(tmp_path):
    rates, total = onecycle_rates(tmp_path, [{"params": ["1", "3"], "lr": 0.2}, {"params": "5", "lr": 0.05}])
    assert [step[0] for step in rates] == pytest.approx(torch_onecycle(0.8, total), rel=1e-12)
    assert [step[1] for step in rates] == pytest.approx(torch_onecycle(0.2, total), rel=1e-12)
