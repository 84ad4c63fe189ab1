"""`trainctl eval RUN --data FILE`: a run scored on a new labelled file, encoded with what the run
saved of its training data; the metrics are checked against `predict`'s answers on the same file."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest

from trainctl.output import Output
from trainctl.prediction import predict

from helpers import image_tree, write_config, write_iris_csv


def write_rows(path, header, rows, delimiter=","):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_rows(path):
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t" if path.suffix == ".tsv" else ","))


def train_run(directory, data, **sections):
    from trainctl.workflows import train

    config = write_config(directory, file="run.yaml", data=data, **sections)
    return train(config, ["trainer.device=cpu"], out=directory / "run", output=Output(quiet=True)).run.path


def classification_by_hand(targets: list[str], predictions: list, classes: list[str]) -> dict[str, float]:
    """Accuracy, macro precision, recall and F1 over every class of the run (0 where undefined),
    and cross-entropy from predict's probabilities."""
    confusion = np.zeros((len(classes), len(classes)))
    for target, prediction in zip(targets, predictions):
        confusion[classes.index(target), classes.index(prediction.label)] += 1
    hits = np.diag(confusion)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)

    def share(top, bottom):
        return np.divide(top, bottom, out=np.zeros(len(classes)), where=bottom > 0)

    return {
        "accuracy": hits.sum() / len(targets),
        "precision": share(hits, predicted).mean(),
        "recall": share(hits, actual).mean(),
        "f1": share(2 * hits, predicted + actual).mean(),
        "loss": float(np.mean([-math.log(p.scores[t]) for t, p in zip(targets, predictions)])),
    }


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    """A 5-epoch MLP on iris read from a CSV."""
    directory = tmp_path_factory.mktemp("iris")
    data = write_iris_csv(directory / "iris.csv")
    return train_run(
        directory, {"name": "csv", "path": data.name, "target": "species"}, trainer={"epochs": 5, "device": "cpu"}
    ), data


def new_iris_file(directory, source):
    """Every seventh iris row, its columns in another order and one column the model never saw."""
    rows = read_rows(source)[::7]
    header = ["species", "petal_width", "note", "sepal_length", "petal_length", "sepal_width"]
    return write_rows(directory / "field notes.csv", header, [[row.get(name, "x") for name in header] for row in rows])


def test_a_table_run_scores_a_new_file_as_predict_answers_it(cli, iris_run, tmp_path):
    run, source = iris_run
    data = new_iris_file(tmp_path, source)
    result = cli("eval", run, "--data", data)
    assert result.exit_code == 0, result.output
    assert f"--data {data}: column 'note' is not one the model reads: left out" in result.stderr
    record_path = run / "eval-data-field-notes-best.json"
    assert f"written: {record_path}" in result.stdout
    record = json.loads(record_path.read_text())
    assert (record["split"], record["data"], record["checkpoint"]) == ("data", str(data), "best")

    predictions = predict(run, [data])
    targets = [row["species"] for row in read_rows(data)]
    classes = json.loads((run / "data.json").read_text())["task"]["class_names"]
    expected = classification_by_hand(targets, predictions, classes)
    for key, value in expected.items():
        assert record[key] == pytest.approx(value, abs=1e-6), key
    samples = read_rows(run / "eval-data-field-notes-best-predictions.csv")
    assert [row["prediction"] for row in samples] == [p.label for p in predictions]
    assert [row["target"] for row in samples] == targets
    assert [int(row["row"]) for row in samples] == list(range(len(targets)))


def test_a_regression_run_scores_a_new_file_in_the_targets_units(cli, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    y = 3 * x[:, 0] - x[:, 1] + 50
    write_rows(tmp_path / "train.csv", ["a", "b", "y"], [[*row, value] for row, value in zip(x, y)])
    run = train_run(tmp_path, {"name": "csv", "path": "train.csv", "target": "y"}, loss={"name": "mse"})
    new = write_rows(tmp_path / "new.csv", ["a", "b", "y"], [[0.5, -1.0, 52.0], [2.0, 0.0, 55.0], [-1.0, 1.0, 47.0]])
    result = cli("eval", run, "--data", new, "--checkpoint", "last")
    assert result.exit_code == 0, result.output
    record = json.loads((run / "eval-data-new-last.json").read_text())
    predicted = np.array([p.label for p in predict(run, [new], "last")])
    errors = predicted - np.array([52.0, 55.0, 47.0])
    assert record["mse"] == pytest.approx(np.mean(errors**2), rel=1e-5)
    assert record["mae"] == pytest.approx(np.mean(np.abs(errors)), rel=1e-5)
    assert record["r2"] == pytest.approx(
        1 - np.sum(errors**2) / np.sum((np.array([52.0, 55.0, 47.0]) - 154 / 3) ** 2), rel=1e-5
    )


def test_a_text_run_scores_a_labelled_table(cli, tmp_path):
    words = {"pos": ["good", "great", "fine", "lovely"], "neg": ["bad", "awful", "poor", "broken"]}
    rng = np.random.default_rng(0)
    rows = [[" ".join(rng.choice(words[label], 3)), label] for label in ["pos", "neg"] * 40]
    write_rows(tmp_path / "train.tsv", ["text", "label"], rows, delimiter="\t")
    run = train_run(tmp_path, {"name": "text", "path": "train.tsv"}, model={"name": "embedding_bag"})
    new = write_rows(
        tmp_path / "new.tsv", ["label", "text"], [["pos", "great fine"], ["neg", "awful"], ["neg", "good"]], "\t"
    )
    result = cli("eval", run, "--data", new)
    assert result.exit_code == 0, result.output
    record = json.loads((run / "eval-data-new-best.json").read_text())
    expected = classification_by_hand(["pos", "neg", "neg"], predict(run, [new]), ["neg", "pos"])
    assert record["accuracy"] == pytest.approx(expected["accuracy"])
    assert record["loss"] == pytest.approx(expected["loss"], abs=1e-6)


@pytest.mark.slow  # torchvision's import
def test_an_image_folder_run_scores_a_new_folder_with_some_of_its_classes(cli, tmp_path):
    image_tree(tmp_path / "photos", {"red": 12, "blue": 12})
    run = train_run(
        tmp_path, {"name": "image_folder", "root": "photos"}, model={"name": "cnn", "channels": [8], "hidden": 16}
    )
    image_tree(tmp_path / "new", {"red": 4}, seed=5)  # one class only: the other's folder may be missing
    image_tree(tmp_path / "more", {"blue": 3}, seed=6)
    shutil.move(tmp_path / "more" / "blue", tmp_path / "new" / "blue")
    result = cli("eval", run, "--data", tmp_path / "new", "--worst", "2")
    assert result.exit_code == 0, result.output
    record = json.loads((run / "eval-data-new-best.json").read_text())
    files = sorted((tmp_path / "new").rglob("*.png"))  # blue/ before red/, as the class folders sort
    predictions = predict(run, files)
    targets = [file.parent.name for file in files]
    expected = classification_by_hand(targets, predictions, ["blue", "red"])
    for key, value in expected.items():
        assert record[key] == pytest.approx(value, abs=1e-6), key
    samples = read_rows(run / "eval-data-new-best-predictions.csv")
    assert [row["file"] for row in samples] == [str(file) for file in files]
    assert [row["prediction"] for row in samples] == [p.label for p in predictions]
    assert len(record["loss_report"]["worst"]) == 2 and "file" in record["loss_report"]["worst"][0]


@pytest.mark.slow  # torchvision's import
def test_the_class_folders_found_without_torch_are_those_imagefolder_finds(tmp_path):
    from torchvision.datasets import ImageFolder

    from trainctl.data.class_folders import image_class_folders

    image_tree(tmp_path / "root", {"red": 3, "blue": 2})
    (tmp_path / "root" / "red" / "deeper").mkdir()
    shutil.copy(tmp_path / "root" / "red" / "0.png", tmp_path / "root" / "red" / "deeper" / "X.PNG")
    (tmp_path / "root" / "blue" / "readme.txt").write_text("not an image")
    (tmp_path / "root" / ".hidden").mkdir()
    shutil.copy(tmp_path / "root" / "red" / "0.png", tmp_path / "root" / ".hidden" / "a.png")
    found = image_class_folders(tmp_path / "root", "--images")
    reference = ImageFolder(str(tmp_path / "root"))
    assert found.classes == reference.classes
    assert [str(path) for files in found.files for path in files] == [path for path, _ in reference.samples]


def test_new_runs_save_their_training_class_counts(iris_run):
    import torch

    from trainctl.config.loading import load_config
    from trainctl.training.build import build_model_parts

    run, _ = iris_run
    saved = json.loads((run / "data.json").read_text())
    parts = build_model_parts(load_config(run / "config.yaml"))
    assert saved["class_counts"] == torch.bincount(parts.data.train.labels).tolist()
    assert sum(saved["class_counts"]) == len(parts.data.train)


def test_an_earlier_run_without_class_counts_cannot_weigh_classes_for_new_data(cli, tmp_path):
    data = write_iris_csv(tmp_path / "iris.csv")
    run = train_run(
        tmp_path,
        {"name": "csv", "path": data.name, "target": "species"},
        loss={"name": "cross_entropy", "class_weight": "balanced"},
    )
    saved = json.loads((run / "data.json").read_text())
    assert cli("eval", run, "--data", data).exit_code == 0  # with the counts: weighted as in training
    del saved["class_counts"]  # as data.json was before the counts were saved
    (run / "data.json").write_text(json.dumps(saved))
    result = cli("eval", run, "--data", data, "--force")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {run}: trained by an earlier trainctl, whose data.json lacks the training class counts that "
        "loss 'cross_entropy' (class_weight: balanced) weighs by; eval --data cannot score it: train it again"
    )


def test_a_record_of_the_same_file_name_is_replaced_only_with_force(cli, iris_run, tmp_path):
    run, source = iris_run
    data = write_rows(tmp_path / "again.csv", *_iris_rows(source, 10))
    assert cli("eval", run, "--data", data).exit_code == 0
    first = (run / "eval-data-again-best.json").read_text()
    other = tmp_path / "other"
    other.mkdir()
    later = write_rows(other / "again.csv", *_iris_rows(source, 20))
    result = cli("eval", run, "--data", later)
    assert result.exit_code == 2
    assert (
        f"{run / 'eval-data-again-best.json'}: already exists (an earlier eval --data of again.csv); add --force"
        in result.stderr
    )
    assert (run / "eval-data-again-best.json").read_text() == first
    assert cli("eval", run, "--data", later, "--force").exit_code == 0
    assert json.loads((run / "eval-data-again-best.json").read_text())["data"] == str(later)


def _iris_rows(source, count):
    rows = read_rows(source)[:count]
    header = list(rows[0])
    return header, [[row[name] for name in header] for row in rows]


def test_bad_data_is_one_line(cli, iris_run, tmp_path):
    run, source = iris_run
    header, rows = _iris_rows(source, 4)
    rows[2][4] = "martian"
    unknown_class = write_rows(tmp_path / "unknown_class.csv", header, rows)
    no_feature = write_rows(tmp_path / "no_feature.csv", header[1:], [row[1:] for row in rows])
    no_target = write_rows(tmp_path / "no_target.csv", header[:4], [row[:4] for row in rows])
    (tmp_path / "folder").mkdir()
    cases = {
        "an unknown class": (
            ["--data", unknown_class],
            f"{unknown_class}:4: column 'species': 'martian' is not a class the run was trained on; its classes: setosa, versicolor, virginica",
        ),
        "a missing feature column": (
            ["--data", no_feature],
            f"--data {no_feature}: no column 'sepal_length', which the model was trained on; its columns: sepal_width, petal_length, petal_width, species",
        ),
        "a missing target column": (
            ["--data", no_target],
            f"--data {no_target}: no column 'species', the run's target (data.target); its columns: sepal_length, sepal_width, petal_length, petal_width",
        ),
        "a missing file": (["--data", tmp_path / "nope.csv"], f"--data {tmp_path / 'nope.csv'}: file not found"),
        "a folder for a table run": (
            ["--data", tmp_path / "folder"],
            f"--data {tmp_path / 'folder'}: a folder; this run reads a table file (CSV, TSV or Parquet)",
        ),
        "a split too": (
            ["--data", no_target, "--split", "val"],
            "--split: scores a split of the run's own data; with --data the file is scored instead",
        ),
    }
    for name, (options, message) in cases.items():
        result = cli("eval", run, *options)
        assert result.exit_code == 2, (name, result.output)
        assert result.stderr.strip() == f"error: {message}", name
    assert not list(run.glob("eval-data-unknown_class*"))


def test_a_folder_with_a_class_the_run_never_saw_is_one_line(cli, tmp_path):
    image_tree(tmp_path / "photos", {"red": 4, "blue": 4})
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        "name: x\ndata: {name: image_folder, root: " + str(tmp_path / "photos") + "}\n"
        "model: {name: cnn}\nloss: {name: cross_entropy}\noptimizer: {name: adam}\n"
    )
    description = {
        "task": {"kind": "classification", "num_classes": 2, "num_targets": 1, "class_names": ["blue", "red"]},
        "input_shape": [3, 12, 10],
        "target_mean": None,
        "target_std": None,
        "image": {"source_shape": [3, 12, 10], "resize": None, "transforms": []},
    }
    (run / "data.json").write_text(json.dumps(description))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "best.pt").write_bytes(b"")
    image_tree(tmp_path / "new", {"red": 1, "green": 1})
    result = cli("eval", run, "--data", tmp_path / "new")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        f"error: --data {tmp_path / 'new' / 'green'}: class folder 'green' is not a class the run was trained on; "
        "its classes: blue, red"
    )


def test_a_run_on_a_builtin_dataset_has_no_labelled_files_to_read(cli, tiny_run, tmp_path):
    from trainctl.workflows import train

    config = write_config(tmp_path)  # the built-in iris
    run = train(config, out=tmp_path / "run", output=Output(quiet=True)).run.path
    result = cli("eval", run, "--data", tiny_run[1])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --data: scores labelled files of runs trained on csv tables, text, image_folder and audio_folder "
        f"data; {run} was trained on 'iris': use --split to score its own splits"
    )


def test_damaged_class_counts_in_data_json_are_one_line(cli, iris_run, tmp_path):
    run, source = iris_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    saved = json.loads((copy / "data.json").read_text())
    (copy / "data.json").write_text(json.dumps({**saved, "class_counts": [40, "many", 40]}))
    result = cli("eval", copy, "--data", source)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {copy / 'data.json'}: class_counts is [40, 'many', 40], not a count per class (3 classes); "
        "the file is damaged or incomplete (trainctl train writes it)"
    )
