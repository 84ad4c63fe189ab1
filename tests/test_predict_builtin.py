"""`trainctl predict` on a built-in dataset's inputs: CSV rows of its raw features (as scikit-learn's
loaders give them), standardised with the training split's statistics that data.json now keeps,
give the predictions the model makes on the test split it was evaluated on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from trainctl.config.loading import load_config
from trainctl.data import sklearn_files
from trainctl.output import Output
from trainctl.prediction import load_run_model
from trainctl.training.build import build_data
from trainctl.workflows import train

from helpers import write_config

LOADERS = {"iris": "load_iris", "digits": "load_digits", "diabetes": "load_diabetes"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One-epoch runs on iris, digits and diabetes (regression), trained once for the module."""
    folder = tmp_path_factory.mktemp("builtin")
    trained = {}
    for name in LOADERS:
        loss = {"name": "mse"} if name == "diabetes" else {"name": "cross_entropy"}
        config = write_config(
            folder,
            file=f"{name}.yaml",
            name=name,
            data={"name": name},
            loss=loss,
            trainer={"epochs": 1, "device": "cpu"},
        )
        trained[name] = train(config, out=folder / name, output=Output(quiet=True)).run.path
    return trained


def test_rows_of_raw_features_get_the_models_predictions_on_them(runs, cli, tmp_path):
    for name, loader in LOADERS.items():
        run = runs[name]
        data = build_data(load_config(run / "config.yaml"), torch.device("cpu"))
        raw = sklearn_files.load(loader).data[data.test.rows[:25]]
        rows = tmp_path / f"{name}.csv"
        header = ",".join(f"feature_{i}" for i in range(raw.shape[1]))  # a header row is optional
        rows.write_text(header + "\n" + "".join(",".join(repr(float(v)) for v in row) + "\n" for row in raw))
        result = cli("predict", run, rows, "-o", tmp_path / f"{name}.json")
        assert result.exit_code == 0, result.output
        predicted = json.loads((tmp_path / f"{name}.json").read_text())
        assert [record["input"] for record in predicted] == [f"{rows}:{line}" for line in range(2, 27)]

        with torch.no_grad():
            outputs = load_run_model(run).module(data.test.inputs[:25])
        if name == "diabetes":
            expected = data.predictions(outputs)[:, 0].tolist()  # in the data's units, as eval reports them
            assert [record["prediction"] for record in predicted] == pytest.approx(expected, rel=1e-5)
        else:
            names = json.loads((run / "data.json").read_text())["task"]["class_names"]
            assert [record["prediction"] for record in predicted] == [names[k] for k in outputs.argmax(dim=1)]
            probabilities = outputs.softmax(dim=1).max(dim=1).values.tolist()
            assert [record["probability"] for record in predicted] == pytest.approx(probabilities, abs=1e-6)


def test_data_json_keeps_each_features_training_mean_and_std(runs):
    run = runs["iris"]
    saved = json.loads((run / "data.json").read_text())["standardization"]
    data = build_data(load_config(run / "config.yaml"), torch.device("cpu"))
    train_rows = sklearn_files.load("load_iris").data[data.train.rows]
    assert saved["mean"] == pytest.approx(train_rows.mean(axis=0).tolist(), rel=1e-6)
    assert saved["std"] == pytest.approx(train_rows.std(axis=0).tolist(), rel=1e-6)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5.1,3.5,1.4\n", "{file}:1: 3 values; the model reads 4 features a row"),
        ("a,b,c,d\n5.1,3.5,1.4,0.2\n6,3,x,2\n", "{file}:3: column 3: 'x' is not a finite number"),
        ("5.1,3.5,1.4,0.2\n5,inf,5,5\n", "{file}:2: column 2: 'inf' is not a finite number"),
        ("sepal,width\n\n", "{file}: no rows of numbers in it (one sample a row, 4 features)"),
    ],
    ids=["too few values", "text", "infinite", "header only"],
)
def test_bad_rows_are_one_line_naming_the_line(runs, cli, tmp_path, text, message):
    file = tmp_path / "rows.csv"
    file.write_text(text)
    result = cli("predict", runs["iris"], file)
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: " + message.format(file=file)


def test_a_run_from_before_the_scale_was_saved_is_told_to_train_again(runs, cli, tmp_path):
    import shutil

    run = shutil.copytree(runs["iris"], tmp_path / "old")
    saved = json.loads((run / "data.json").read_text())
    del saved["standardization"]
    (run / "data.json").write_text(json.dumps(saved))
    rows = tmp_path / "rows.csv"
    rows.write_text("5.1,3.5,1.4,0.2\n")
    result = cli("predict", run, rows)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {run}: this run was trained on 'iris' by an earlier trainctl, which did not save how it scaled "
        "the features (data.json has no standardization); train it again to predict with it"
    )


def test_a_damaged_scale_in_data_json_is_named(runs, cli, tmp_path):
    import shutil

    run = shutil.copytree(runs["iris"], tmp_path / "damaged")
    saved = json.loads((run / "data.json").read_text())
    saved["standardization"]["mean"] = saved["standardization"]["mean"][:3]
    (run / "data.json").write_text(json.dumps(saved))
    rows = tmp_path / "rows.csv"
    rows.write_text(",".join(map(str, np.ones(4))) + "\n")
    result = cli("predict", run, rows)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {run / 'data.json'}: standardization.mean is not a list of 4 numbers (one per input feature); "
        "the file is damaged or incomplete (trainctl train writes it)"
    )
