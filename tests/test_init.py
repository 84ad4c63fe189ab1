"""`trainctl init`: a commented config that trains as it is, its task read from the data."""

from __future__ import annotations

import subprocess
import sys

import jsonschema
import numpy as np
import pytest
import soundfile
import yaml
from PIL import Image

from trainctl.components.registries import LOSSES
from trainctl.config.loading import load_config
from trainctl.config.schema import MODELINE, config_schema
from trainctl.output import Output

from helpers import image_tree, write_iris_csv


def write_table(path, header, rows):
    path.write_text("\n".join(",".join(map(str, row)) for row in [header, *rows]) + "\n", encoding="utf-8")
    return path


def sections_with_comments(text: str) -> dict[str, str]:
    """Each top-level key with a mapping under it, and the comment line right above it."""
    lines = text.splitlines()
    return {
        line[:-1]: lines[number - 1]
        for number, line in enumerate(lines)
        if line.endswith(":") and not line.startswith((" ", "#"))
    }


@pytest.mark.slow  # 40 epochs, each writing two checkpoints: seconds
def test_a_csv_with_a_text_target_is_classification_and_trains_as_written(cli, tmp_path):
    from trainctl.workflows import train

    data = write_iris_csv(tmp_path / "iris.csv")
    result = cli("init", "--csv", data, "--target", "species", "-o", tmp_path / "iris.yaml")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "iris.yaml").read_text()
    assert text.splitlines()[0] == MODELINE + "trainctl.schema.json"
    config = yaml.safe_load(text)
    assert config["data"] == {
        "name": "csv",
        "path": "iris.csv",
        "target": "species",
        "task": "classification",
        "on_missing": "error",
        "batch_size": 32,
        "val_fraction": 0.1,
        "test_fraction": 0.2,
    }
    assert config["loss"] == {"name": "cross_entropy"}
    assert config["metrics"] == ["accuracy", "precision", "recall", "f1"]
    assert config["model"]["name"] == "mlp"
    # 150 rows: 15 validation samples are too few for accuracy to rank epochs; the loss does
    assert config["trainer"]["monitor"] == "val/loss"
    assert (
        "# classification: column 'species' holds text. The rule (as task: auto applies it): a text column, or whole numbers with at most 20 distinct values, are classes"
        in text
    )
    assert "sepal_length, sepal_width, petal_length, petal_width (numbers, standardised)" in text
    assert sections_with_comments(text) == {
        "data": "# data: a table, 150 rows of iris.csv, 3 classes: setosa 50, versicolor 50, virginica 50; "
        "other data: trainctl list-datasets, or trainctl init --images DIR / --audio DIR",
        "model": "# model: mlp, fully connected layers over the encoded columns; others: trainctl list-models",
        "loss": "# loss: cross_entropy; see trainctl list-losses --task classification",
        "optimizer": "# optimizer: adam; others: trainctl list-optimizers",
        "scheduler": "# scheduler: cosine decays the rate to 0 over the run; others: trainctl list-schedulers, "
        "or null for a constant rate",
        "trainer": "# trainer: epochs, device and the best epoch's metric; early_stopping, precision, ema and more: "
        "trainctl schema",
    }
    assert "written: " in result.stdout and "train it: trainctl train" in result.stdout
    run = train(tmp_path / "iris.yaml", ["trainer.device=cpu"], out=tmp_path / "run", output=Output(quiet=True))
    assert run.summary["test"]["accuracy"] >= 0.85


@pytest.mark.slow  # the first training in a process: torch and its optimizers import
def test_a_numeric_target_with_many_values_is_regression_with_its_loss_metrics_and_monitor(cli, tmp_path):
    from trainctl.workflows import train

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = x @ np.array([2.0, -1.0, 0.5]) + 0.05 * rng.normal(size=300) + 10
    data = write_table(tmp_path / "houses.csv", ["a", "b", "c", "price"], [[*row, f"{v:.4f}"] for row, v in zip(x, y)])
    result = cli("init", "--csv", data, "--target", "price", "-o", tmp_path / "houses.yaml")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "houses.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["data"]["task"] == "regression"
    assert config["loss"] == {"name": "mse"}
    assert config["metrics"] == ["mse", "rmse", "mae", "r2"]
    assert config["trainer"]["monitor"] == "val/rmse"
    assert "# regression: column 'price' holds numbers with fractions (300 distinct values)" in text
    assert "# loss: mse; see trainctl list-losses --task regression" in text
    short = ["trainer.device=cpu", "trainer.epochs=10"]  # the whole run is shown by the classification test
    run = train(tmp_path / "houses.yaml", short, out=tmp_path / "run", output=Output(quiet=True))
    assert run.summary["test"]["r2"] > 0.9


def test_few_whole_numbers_are_classes_and_imbalanced_classes_are_weighted(cli, tmp_path):
    rows = [[i % 7, i % 3, 0 if i < 1000 else 1] for i in range(1200)]  # 1000 against 200: five to one
    data = write_table(tmp_path / "grades.csv", ["x", "y", "label"], rows)
    result = cli("init", "--csv", data, "--target", "label", "-o", tmp_path / "grades.yaml")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "grades.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["data"]["task"] == "classification"
    assert "# classification: column 'label' holds 2 distinct whole numbers." in text
    assert config["loss"] == {"name": "cross_entropy", "class_weight": "balanced"}
    assert "class_weight: balanced  # classes from 200 to 1000 samples: each counts alike" in text
    assert config["trainer"]["monitor"] == "val/f1"  # 120 validation samples, imbalanced
    load_config(tmp_path / "grades.yaml")


def test_rows_with_missing_values_are_dropped_and_counted(cli, tmp_path):
    rows = [[i, "" if i in (3, 8) else i % 4, "a" if i % 2 else "b"] for i in range(40)]
    data = write_table(tmp_path / "gaps.csv", ["x", "y", "kind"], rows)
    result = cli("init", "--csv", data, "--target", "kind", "-o", tmp_path / "gaps.yaml")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "gaps.yaml").read_text()
    assert "on_missing: drop" in text and "# 2 of 40 rows miss a value: left out (error stops on them)" in text
    assert "a table, 38 rows of gaps.csv, 2 classes: a 19, b 19" in text
    assert load_config(tmp_path / "gaps.yaml").dataset.params["on_missing"] == "drop"


@pytest.mark.slow  # torchvision's import
def test_an_image_folder_gets_its_classes_counted_and_a_small_cnn(cli, tmp_path):
    from trainctl.workflows import train

    image_tree(tmp_path / "photos", {"red": 10, "blue": 8})
    (tmp_path / "photos" / "red" / "notes.txt").write_text("not an image")  # ImageFolder skips it too
    result = cli("init", "--images", tmp_path / "photos", "-o", tmp_path / "photos.yaml")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "photos.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["data"] == {
        "name": "image_folder",
        "root": "photos",
        "channels": 3,
        "batch_size": 32,
        "val_fraction": 0.1,
        "test_fraction": 0.2,
    }
    assert "  # 2 classes, one sub-folder each (blue 8, red 10), 18 images" in text
    assert config["model"] == {"name": "cnn", "channels": [16, 32], "hidden": 64}
    assert config["loss"] == {"name": "cross_entropy"}
    short = ["trainer.device=cpu", "trainer.epochs=5"]
    run = train(tmp_path / "photos.yaml", short, out=tmp_path / "run", output=Output(quiet=True))
    assert run.summary["test"]["accuracy"] == 1.0  # red against blue


def test_grayscale_images_of_several_sizes_are_read_as_one_channel_at_one_size(cli, tmp_path):
    for name, shade in (("dark", 30), ("light", 220)):
        (tmp_path / "faces" / name).mkdir(parents=True)
        for index, size in enumerate([(40, 30), (40, 30), (200, 100)]):
            Image.fromarray(np.full(size[::-1], shade, np.uint8), mode="L").save(
                tmp_path / "faces" / name / f"{index}.png"
            )
    result = cli("init", "--images", tmp_path / "faces", "-o", tmp_path / "faces.yaml")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "faces.yaml").read_text()
    assert yaml.safe_load(text)["data"]["channels"] == 1
    assert "image_size: [30, 40]" in text and "sizes differ (2 sizes, most often 40×30)" in text
    load_config(tmp_path / "faces.yaml")


def test_an_audio_folder_gets_its_rate_and_median_length(cli, tmp_path):
    rate = 8000
    for name, pitch in (("low", 200), ("high", 2000)):
        (tmp_path / "sounds" / name).mkdir(parents=True)
        for index, seconds in enumerate((0.5, 0.6, 0.7)):
            wave = np.sin(2 * np.pi * pitch * np.arange(int(rate * seconds)) / rate).astype(np.float32)
            soundfile.write(tmp_path / "sounds" / name / f"{index}.wav", wave, rate)
    result = cli("init", "--audio", tmp_path / "sounds", "-o", tmp_path / "sounds.yaml")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "sounds.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["data"]["name"] == "audio_folder"
    assert config["data"]["sample_rate"] == 8000  # below 16 kHz: kept
    assert config["data"]["duration"] == 0.6
    assert config["model"]["name"] == "audio_cnn"
    assert "  # 2 classes, one sub-folder each (high 3, low 3), 6 files" in text
    load_config(tmp_path / "sounds.yaml")


@pytest.mark.parametrize(
    ("dataset", "task", "loss", "model"),
    [("iris", "classification", "cross_entropy", "mlp"), ("diabetes", "regression", "mse", "mlp")],
)
def test_a_registered_dataset_gets_its_own_task(cli, tmp_path, dataset, task, loss, model):
    result = cli("init", "--dataset", dataset, "-o", tmp_path / "c.yaml")
    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "c.yaml")
    assert (config.name, config.loss.name, config.model.name) == (dataset, loss, model)
    assert LOSSES.get(loss).info.task == task
    assert f"# loss: {loss}; see trainctl list-losses --task {task}" in (tmp_path / "c.yaml").read_text()


def test_without_a_data_option_the_default_dataset_is_digits(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("init")
    assert result.exit_code == 0, result.output
    assert load_config(tmp_path / "trainctl.yaml").dataset.name == "digits"
    assert "# Written by `trainctl init`; it trains as it is:" in (tmp_path / "trainctl.yaml").read_text()


def test_a_dataset_that_needs_its_files_gets_a_placeholder_and_a_warning(cli, tmp_path):
    result = cli("init", "--dataset", "mnist", "-o", tmp_path / "mnist.yaml")
    assert result.exit_code == 0, result.output
    assert "data.root: written as 'data'; set it to where your mnist files are before training" in result.stderr
    assert "  root: data              # required: edit this before training\n" in (tmp_path / "mnist.yaml").read_text()
    assert yaml.safe_load((tmp_path / "mnist.yaml").read_text())["model"]["name"] == "cnn"


def test_the_modeline_points_to_the_nearest_schema_above_the_config(cli, tmp_path):
    (tmp_path / "trainctl.schema.json").write_text("{}")
    (tmp_path / "configs").mkdir()
    result = cli("init", "--dataset", "iris", "-o", tmp_path / "configs" / "iris.yaml")
    assert result.exit_code == 0, result.output
    first, second = (tmp_path / "configs" / "iris.yaml").read_text().splitlines()[:2]
    assert first == MODELINE + "../trainctl.schema.json"
    assert not second.startswith("# (for editors")


def test_the_written_configs_follow_the_schema(cli, tmp_path):
    validator = jsonschema.Draft202012Validator(config_schema())
    write_iris_csv(tmp_path / "iris.csv")
    image_tree(tmp_path / "photos", {"red": 3, "blue": 3})
    for name, options in {
        "table": ["--csv", tmp_path / "iris.csv", "--target", "species"],
        "images": ["--images", tmp_path / "photos"],
        "digits": ["--dataset", "digits"],
    }.items():
        assert cli("init", *options, "-o", tmp_path / f"{name}.yaml").exit_code == 0
        errors = list(validator.iter_errors(yaml.safe_load((tmp_path / f"{name}.yaml").read_text())))
        assert not errors, (name, [error.message for error in errors])


def test_init_imports_no_torch(tmp_path):
    write_iris_csv(tmp_path / "iris.csv")
    process = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "trainctl", "init", "--csv", "iris.csv", "--target", "species"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert process.returncode == 0, process.stderr
    imported = [
        line.rsplit("|", 1)[-1].strip() for line in process.stderr.splitlines() if line.startswith("import time:")
    ]
    assert "trainctl.starter" in imported
    assert not [name for name in imported if name.split(".")[0] == "torch"]


def test_an_existing_file_is_replaced_only_with_force(cli, tmp_path):
    (tmp_path / "c.yaml").write_text("mine\n")
    result = cli("init", "--dataset", "iris", "-o", tmp_path / "c.yaml")
    assert result.exit_code == 2
    assert f"--output {tmp_path / 'c.yaml'}: already exists; add --force to replace it" in result.stderr
    assert (tmp_path / "c.yaml").read_text() == "mine\n"
    assert cli("init", "--dataset", "iris", "-o", tmp_path / "c.yaml", "--force").exit_code == 0
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["data"]["name"] == "iris"


def bad_inputs(tmp_path):
    table = write_table(tmp_path / "t.csv", ["x", "y", "kind"], [[1, 2, "a"], [3, 4, "b"]])
    (tmp_path / "empty").mkdir()
    image_tree(tmp_path / "one", {"red": 2})
    image_tree(tmp_path / "hollow", {"red": 2})
    (tmp_path / "hollow" / "blue").mkdir()
    return {
        "a missing file": (
            ["--csv", tmp_path / "nope.csv", "--target", "y"],
            f"--csv {tmp_path / 'nope.csv'}: file not found",
        ),
        "a missing target column": (
            ["--csv", table, "--target", "price"],
            f"--target: no column 'price' in {table}; its columns: x, y, kind",
        ),
        "a target of one class": (
            ["--csv", write_table(tmp_path / "same.csv", ["x", "kind"], [[1, "a"], [2, "a"]]), "--target", "kind"],
            f"--target: column 'kind' of {tmp_path / 'same.csv'} holds only class 'a'; a classifier needs at least two",
        ),
        "no target": (
            ["--csv", table],
            f"--csv {table}: give --target COLUMN, the column to predict; its columns: x, y, kind",
        ),
        "a missing folder": (["--images", tmp_path / "nope"], f"--images {tmp_path / 'nope'}: folder not found"),
        "an empty folder": (
            ["--images", tmp_path / "empty"],
            f"--images {tmp_path / 'empty'}: no class folders in it (expected one sub-folder of images per class)",
        ),
        "an empty class folder": (
            ["--images", tmp_path / "hollow"],
            f"--images {tmp_path / 'hollow' / 'blue'}: no images in it (.jpg, .jpeg, .png, .ppm, .bmp, .pgm, .tif, .tiff, .webp)",
        ),
        "one class": (
            ["--images", tmp_path / "one"],
            f"--images {tmp_path / 'one'}: one class folder (red); a classifier needs at least two classes",
        ),
        "an empty audio folder": (
            ["--audio", tmp_path / "empty"],
            f"--audio {tmp_path / 'empty'}: no class folders in it (expected one sub-folder of audio files per class)",
        ),
        "an unknown dataset": (
            ["--dataset", "irs"],
            "--dataset: unknown dataset 'irs' (did you mean 'iris'?); registered: digits, iris, wine",
        ),
        "a file dataset by name": (
            ["--dataset", "csv"],
            "--dataset csv: reads your files; give --csv FILE --target COLUMN instead",
        ),
        "two sources": (
            ["--dataset", "iris", "--images", tmp_path],
            "give one of --dataset, --csv, --images, --audio, not --dataset and --images",
        ),
        "a target without a table": (
            ["--dataset", "iris", "--target", "y"],
            "--target: names the column to predict of a --csv table",
        ),
    }


def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path):
    for name, (options, message) in bad_inputs(tmp_path).items():
        result = cli("init", *options, "-o", tmp_path / "out.yaml")
        assert result.exit_code == 2, (name, result.output)
        assert message in result.stderr, (name, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (name, result.stderr)
        assert "Traceback" not in result.output
        assert not (tmp_path / "out.yaml").exists()
        assert not list(tmp_path.glob(".out.yaml*")), name  # no temporary file left behind


def test_the_loss_catalogue_has_the_losses_init_picks_for_each_task():
    from trainctl.starter import LOSSES as PICKED

    for task, (name, _) in PICKED.items():
        assert LOSSES.get(name).info.task == task
