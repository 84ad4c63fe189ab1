"""CIFAR-10/100 from the official python batches, read with an unpickler that runs no code."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainctl.components.registries import DATASETS
from trainctl.config.loading import load_config
from trainctl.data.image_sources import STATISTICS
from trainctl.errors import UserError
from trainctl.workflows import validate

from helpers import write_config

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def colour_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """N×3072 rows in CIFAR's order (1024 red, 1024 green, 1024 blue): class k lights channel k % 3
    in the top or bottom half (k // 3 % 2), over noise."""
    images = rng.integers(0, 60, (len(labels), 3, 32, 32)).astype(np.uint8)
    for image, label in zip(images, labels):
        half = slice(0, 16) if label // 3 % 2 == 0 else slice(16, 32)
        image[label % 3, half] += 190
    return images.reshape(len(labels), 3072)


def dump(path: Path, entry: dict) -> None:
    with open(path, "wb") as handle:
        pickle.dump(entry, handle, protocol=2)  # the official batches are protocol-2 pickles


def write_cifar10(root: Path, per_batch: int = 24, test: int = 30, seed: int = 0) -> Path:
    """cifar-10-batches-py/ as the official archive unpacks: data_batch_1..5, test_batch, batches.meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, count in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", test)]:
        labels = rng.integers(0, 6, count)  # six of the ten classes occur: enough to learn, quick to fit
        dump(
            folder / name,
            {
                "batch_label": name,
                "labels": labels.tolist(),
                "data": colour_images(labels, rng),
                "filenames": [f"{name}_{i}.png" for i in range(count)],
            },
        )
    dump(folder / "batches.meta", {"label_names": CIFAR10_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072})
    return folder


def cifar_config(directory: Path, root: Path) -> Path:
    return write_config(
        directory,
        data={"name": "cifar10", "root": str(root), "batch_size": 16},
        model={"name": "cnn", "channels": [8], "hidden": 16},
    )


def test_cifar10_batches_train_with_their_own_test_split_and_predict(cli, tmp_path):
    write_cifar10(tmp_path / "data")
    result = cli("train", cifar_config(tmp_path, tmp_path / "data"), "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "data.json").read_text())
    assert saved["task"]["class_names"] == CIFAR10_NAMES
    assert saved["input_shape"] == [3, 32, 32]
    mean, std = STATISTICS["CIFAR10"]  # normalize by default, with CIFAR-10's published statistics
    assert saved["image"]["transforms"] == [{"name": "normalize", "mean": mean, "std": std}]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert sum(c["support"] for c in summary["test"]["per_class"].values()) == 30  # test_batch, kept whole
    assert summary["test"]["accuracy"] > 0.5  # six classes; chance is about 0.17

    rng = np.random.default_rng(5)
    labels = np.array([1, 5])
    for label, row in zip(labels, colour_images(labels, rng)):
        Image.fromarray(row.reshape(3, 32, 32).transpose(1, 2, 0)).save(tmp_path / f"{label}.png")
    result = cli("predict", tmp_path / "run", tmp_path / "1.png", tmp_path / "5.png", "-o", tmp_path / "p.json")
    assert result.exit_code == 0, result.output
    predicted = json.loads((tmp_path / "p.json").read_text())
    assert [record["prediction"] in CIFAR10_NAMES for record in predicted] == [True, True]
    assert all(abs(sum(record["probabilities"].values()) - 1) < 1e-5 for record in predicted)


def test_cifar100_reads_fine_labels_and_their_names(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, count in (("train", 40), ("test", 10)):
        fine = rng.integers(0, 100, count)
        dump(
            folder / name,
            {
                "filenames": [],
                "batch_label": name,
                "fine_labels": fine.tolist(),
                "coarse_labels": (fine // 5).tolist(),
                "data": colour_images(fine, rng),
            },
        )
    names = [f"class_{i:02d}" for i in range(100)]
    dump(folder / "meta", {"fine_label_names": names, "coarse_label_names": [f"super_{i}" for i in range(20)]})
    raw = DATASETS.get("cifar100").build(None, {"root": str(tmp_path)})
    assert raw.task.class_names == tuple(names) and raw.task.num_classes == 100
    assert raw.images.pixels.shape == (50, 3, 32, 32) and raw.images.pixels.dtype == np.uint8
    assert list(raw.test_rows) == list(range(40, 50))
    assert raw.images.statistics == STATISTICS["CIFAR100"]


class RunsAShellCommand:
    """What a tampered batch could hold: unpickling it calls os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_batch_that_would_run_code_is_refused_and_runs_nothing(cli, tmp_path):
    folder = write_cifar10(tmp_path / "data")
    marker = tmp_path / "ran"
    dump(folder / "data_batch_3", {"data": RunsAShellCommand(marker), "labels": []})
    result = cli("train", cifar_config(tmp_path, tmp_path / "data"))
    assert result.exit_code == 2
    assert (
        f"{folder / 'data_batch_3'}: refused to read: it names posix.system, which a data file has no need of"
        in result.stderr
    )
    assert not marker.exists()


def test_missing_or_malformed_cifar_files_are_one_line(cli, tmp_path):
    folder = write_cifar10(tmp_path / "data")
    (folder / "test_batch").unlink()
    (folder / "batches.meta").unlink()
    result = cli("train", cifar_config(tmp_path, tmp_path / "data"))
    assert result.exit_code == 2
    assert (
        f"data.root: {folder} lacks test_batch, batches.meta; extract cifar-10-python.tar.gz (from "
        f"https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) into {tmp_path / 'data'}, or set "
        "data.download: true"
    ) in result.stderr
    dump(folder / "test_batch", {"data": np.zeros((4, 100), np.uint8), "labels": [0, 1, 2, 3]})
    dump(folder / "batches.meta", {"label_names": CIFAR10_NAMES})
    result = cli("train", cifar_config(tmp_path, tmp_path / "data"))
    assert result.exit_code == 2
    assert f"{folder / 'test_batch'} is not a CIFAR10 batch: expected 'data' of N×3072 pixels" in result.stderr
    (folder / "test_batch").write_bytes(b"\x80\x02}q\x00")  # a pickle cut short
    with pytest.raises(UserError, match="test_batch: refused to read"):
        DATASETS.get("cifar10").build(None, {"root": str(tmp_path / "data")})


def test_the_cifar10_resnet18_config_is_valid():
    config = load_config(Path(__file__).resolve().parent.parent / "configs" / "cifar10_resnet18.yaml")
    assert config.dataset.name == "cifar10" and config.model.params["arch"] == "resnet18"
    assert [t["name"] for t in config.data.transforms["train"]] == ["random_crop", "horizontal_flip", "normalize"]
    assert Path(config.dataset.params["root"]).is_absolute()


def test_preflight_on_cifar_reports_the_shapes(tmp_path):
    write_cifar10(tmp_path / "data")
    report = validate(cifar_config(tmp_path, tmp_path / "data"))
    assert report.input_shape == (16, 3, 32, 32) and report.output_shape == (16, 10)
