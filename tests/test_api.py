"""The Python API (`import trainctl`): the commands' code paths, returning data, printing nothing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import trainctl
from trainctl.output import Output

from helpers import REPO, TRAINCTL, read_jsonl, run_cli, tiny_sections, train_iris_csv_run, write_config


@pytest.mark.slow
def test_train_from_a_path_gives_a_run_whose_contents_are_the_files(tmp_path):
    run = trainctl.train(write_config(tmp_path), out=tmp_path / "run")
    assert isinstance(run, trainctl.Run)
    assert run.path == tmp_path / "run"
    assert run.summary == json.loads((tmp_path / "run" / "summary.json").read_text())
    assert run.summary["name"] == "tiny" and run.summary["epochs_trained"] == 3
    assert run.metrics == read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [row["epoch"] for row in run.metrics] == [1, 2, 3]
    assert run.best_checkpoint == tmp_path / "run" / "checkpoints" / "best.pt"
    assert torch.load(run.best_checkpoint, weights_only=True)["epoch"] == run.summary["best_epoch"]


@pytest.mark.slow
def test_train_from_a_dict_with_overrides_and_data_paths_from_the_working_folder(tmp_path, monkeypatch):
    from helpers import write_iris_csv

    monkeypatch.chdir(tmp_path)
    write_iris_csv(tmp_path / "iris.csv")
    config = {
        **tiny_sections(tmp_path),
        "data": {"name": "csv", "path": "iris.csv", "target": "species", "batch_size": 32},
        "model": {"name": "mlp", "hidden": (8,)},  # a tuple, as Python code writes one
    }
    before = json.dumps(config)
    run = trainctl.train(config, overrides=["trainer.epochs=2", "name=fromdict"])
    assert json.dumps(config) == before  # the caller's dict is not changed
    assert run.path.parent == tmp_path / "runs" and run.path.name.startswith("fromdict-")
    assert [row["epoch"] for row in run.metrics] == [1, 2]
    saved = trainctl.load_config(run.path / "config.yaml")
    assert saved.dataset.params["path"] == str(tmp_path / "iris.csv")
    assert saved.model.params["hidden"] == [8]
    assert saved.trainer.epochs == 2


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_bad_config_raises_the_line_the_command_prints(tmp_path):
    path = write_config(tmp_path, optimizer={"name": "adam", "lr": -1}, model={"name": "mlp", "hiden": [8]})
    with pytest.raises(trainctl.UserError) as raised:
        trainctl.train(path)
    cli = subprocess.run([TRAINCTL, "train", str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert cli.returncode == 2
    assert [f"error: {line}" for line in str(raised.value).splitlines()] == cli.stderr.splitlines()
    assert str(raised.value).splitlines()[0].startswith(f"{path}:")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"optimizer": {"name": "adam", "lr": -1}},
            "config dict: optimizer.lr: Input should be greater than 0 (got -1)",
        ),
        (
            {"optimizer": {"name": "adma"}},
            "config dict: optimizer.name: unknown optimizer 'adma'",
        ),
        (
            {"optimizer": {"name": "adam", "lr": object()}},
            "config dict: optimizer.lr: a value of type object; a config holds mappings, lists, strings, "
            "numbers, booleans and None",
        ),
    ],
)
def test_a_bad_dict_config_names_the_key(tmp_path, config, message):
    with pytest.raises(trainctl.UserError) as raised:
        trainctl.load_config({**tiny_sections(tmp_path), **config})
    assert str(raised.value).startswith(message)


@pytest.mark.slow
def test_nothing_is_printed_unless_progress_is_asked_for(tmp_path, capfd):
    trainctl.train(write_config(tmp_path), out=tmp_path / "quiet")
    assert capfd.readouterr() == ("", "")
    trainctl.train(write_config(tmp_path), out=tmp_path / "shown", progress=True)
    shown = capfd.readouterr()
    assert f"run folder: {tmp_path / 'shown'}" in shown.out
    assert "loss curve:" in shown.out
    assert shown.err == ""


@pytest.mark.slow
def test_warnings_of_the_checks_are_python_warnings(tmp_path, capfd):
    path = write_config(tmp_path, model={"name": "mlp", "hidden": [8], "output_activation": "softmax"})
    with pytest.warns(trainctl.TrainctlWarning) as caught:
        trainctl.train(path, out=tmp_path / "run", overrides=["trainer.epochs=1"])
    assert [str(w.message).split(":")[0] for w in caught] == ["double-softmax"]
    assert capfd.readouterr() == ("", "")
    with warnings.catch_warnings():
        warnings.simplefilter("error", trainctl.TrainctlWarning)
        with pytest.raises(trainctl.TrainctlWarning, match=r"^double-softmax: "):
            trainctl.train(path, out=tmp_path / "strict", overrides=["trainer.epochs=1"])
    assert not (tmp_path / "strict").exists()  # stopped before the run folder, as --strict stops


@pytest.mark.slow
def test_evaluate_returns_the_record_the_eval_command_writes(tmp_path):
    run = trainctl.train(write_config(tmp_path), out=tmp_path / "run")
    record = trainctl.evaluate(run, split="val", checkpoint="last")
    written = json.loads((run.path / "eval-val-last.json").read_text())
    assert record == written
    assert record["split"] == "val" and record["checkpoint"] == "last" and record["epoch"] == 3
    (run.path / "eval-val-last.json").unlink()
    assert run_cli("eval", run.path, "--split", "val", "--checkpoint", "last").exit_code == 0
    assert json.loads((run.path / "eval-val-last.json").read_text()) == record
    test = trainctl.evaluate(str(run.path))
    assert {key: test[key] for key in run.summary["test"]} == run.summary["test"]


@pytest.mark.slow
def test_predict_returns_what_the_predict_command_writes(tmp_path):
    run_dir, data = train_iris_csv_run(tmp_path)
    predictions = trainctl.predict(trainctl.Run(run_dir), data)
    assert run_cli("predict", run_dir, data, "-o", tmp_path / "p.json").exit_code == 0
    written = json.loads((tmp_path / "p.json").read_text())
    assert len(predictions) == len(written) == 150
    assert [
        {"input": p.source, "prediction": p.label, "probability": p.score, "probabilities": p.scores}
        for p in predictions
    ] == written
    assert predictions[0].source == f"{data}:2"
    assert trainctl.predict(run_dir, [data, data])[150:] == predictions


@pytest.mark.slow
def test_run_model_gives_the_trained_models_outputs(tmp_path):
    from trainctl.workflows import train

    result = train(write_config(tmp_path), ["trainer.epochs=1"], out=tmp_path / "run", output=Output(quiet=True))
    model = trainctl.Run(tmp_path / "run").model()
    assert not model.training
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    trained = result.model.eval()  # one epoch: the best checkpoint is the model as training left it
    with torch.no_grad():
        assert torch.equal(model(x), trained(x))


@pytest.mark.slow
def test_a_missing_run_or_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(trainctl.UserError, match=f"^{re.escape(str(tmp_path / 'none'))}: run folder not found$"):
        trainctl.Run(tmp_path / "none")
    run = trainctl.train(write_config(tmp_path), out=tmp_path / "run", overrides=["trainer.epochs=1"])
    run.best_checkpoint.unlink()
    with pytest.raises(trainctl.UserError, match=f"^{re.escape(str(run.best_checkpoint))}: checkpoint not found$"):
        run.model()


@pytest.mark.slow
@pytest.mark.subprocess
def test_importing_trainctl_imports_no_torch_until_a_name_is_used():
    code = (
        "import sys, trainctl\n"
        "heavy = ['torch', 'numpy', 'pydantic']\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "trainctl.train, trainctl.Run, trainctl.UserError\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "import trainctl.prediction\n"  # the command's module, imported: the API's predict stays a function
        "print(callable(trainctl.predict) and trainctl.predict.__module__)\n"
    )
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert lines.splitlines() == ["[]", "[]", "trainctl.api"]


def test_dir_lists_the_api_and_an_unknown_name_is_an_attribute_error():
    assert {"train", "evaluate", "predict", "load_config", "Run", "UserError", "register"} <= set(dir(trainctl))
    assert set(trainctl.__all__) <= set(dir(trainctl))
    with pytest.raises(AttributeError, match="has no attribute 'trian'"):
        trainctl.trian  # noqa: B018
    assert trainctl.UserError is __import__("trainctl.errors").errors.UserError


def test_no_public_name_is_also_a_module_of_the_package():
    """A submodule named like an API function would replace it on the package once imported."""
    package = REPO / "trainctl"
    clashes = [name for name in trainctl.__all__ if (package / f"{name}.py").exists() or (package / name).is_dir()]
    assert clashes in ([], ["register"])  # register is a module on purpose


@pytest.mark.slow
def test_the_readme_example_runs_as_shown(tmp_path, monkeypatch):
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API") :]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'trainctl.train("configs/digits_mlp.yaml"' in example
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    example = example.replace('"trainer.epochs=5"', '"trainer.epochs=1"')  # the shape, not the accuracy
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    run = namespace["run"]
    assert run.path.resolve().parent == (tmp_path / "runs").resolve()
    assert namespace["record"] == json.loads((run.path / "eval-val-best.json").read_text())
    assert namespace["outputs"].shape == (1, 10)


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_component_a_script_registers_is_recorded_and_asked_for_by_its_module(tmp_path: Path) -> None:
    """A script that registers its own model (no --plugin: it imports trainctl.register itself)
    trains with it; the run records the script's module, and evaluating without it names both."""
    script = tmp_path / "my_script.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, sys
            import trainctl
            from trainctl import register

            if sys.argv[1] == "train":
                @register.model("script_linear", summary="one linear layer", input="any")
                def script_linear(context, *, bias: bool = True):
                    import math, torch
                    size = math.prod(context.input_shape)
                    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(size, context.num_outputs, bias=bias))

                config = {
                    "data": {"name": "iris", "batch_size": 16}, "model": {"name": "script_linear"},
                    "loss": {"name": "cross_entropy"}, "optimizer": {"name": "adam", "lr": 0.01},
                    "trainer": {"epochs": 1, "device": "cpu"}, "output_dir": "runs",
                }
                run = trainctl.train(config, out="run")
                print(json.dumps(json.loads((run.path / "plugins.json").read_text())["components"]))
            else:
                try:
                    trainctl.evaluate("run")
                except trainctl.UserError as error:
                    print("UserError:", error)
            """
        )
    )
    trained = subprocess.run([sys.executable, str(script), "train"], cwd=tmp_path, capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr
    [component] = json.loads(trained.stdout)
    assert (component["registry"], component["name"]) == ("model", "script_linear")
    assert (component["plugin"]["kind"], component["plugin"]["name"]) == ("module", "__main__")
    evaluated = subprocess.run([sys.executable, str(script), "eval"], cwd=tmp_path, capture_output=True, text=True)
    assert evaluated.stdout.startswith(
        "UserError: run: model 'script_linear' comes from plugin __main__, which is not loaded"
    )
