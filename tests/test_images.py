"""Image datasets in their standard files: MNIST-format IDX files read through torchvision, and predict on PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainctl.config.loading import load_config

from helpers import CONFIGS, bar_image, image_tree, write_config, write_idx_files

FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}


def image_config(directory: Path, dataset: str, root: Path, model: dict | None = None) -> Path:
    return write_config(
        directory,
        data={"name": dataset, "root": str(root), "batch_size": 32},
        model=model or {"name": "mlp", "hidden": [32]},
        trainer={"epochs": 2, "device": "cpu"},
    )


@pytest.mark.parametrize(
    "dataset", [name if name == "mnist" else pytest.param(name, marks=pytest.mark.slow) for name in FOLDERS]
)
def test_mnist_format_files_train_with_their_own_test_split(cli, tmp_path, dataset):
    write_idx_files(tmp_path / "data", FOLDERS[dataset])
    result = cli("train", image_config(tmp_path, dataset, tmp_path / "data"), "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert sum(map(sum, summary["test"]["confusion_matrix"])) == 50  # the t10k files, all of them
    assert summary["test"]["accuracy"] > 0.8  # the bars are easy to tell apart


@pytest.mark.slow
def test_a_cnn_trains_on_28_by_28_and_predict_reads_png_files(cli, tmp_path):
    write_idx_files(tmp_path / "data", "MNIST")
    config = image_config(tmp_path, "mnist", tmp_path / "data", model={"name": "cnn", "channels": [8], "hidden": 16})
    assert cli("train", config, "--out", tmp_path / "run", "--quiet", "--set", "trainer.epochs=4").exit_code == 0
    files = []
    for label in (3, 7):
        files.append(tmp_path / f"digit{label}.png")
        Image.fromarray(bar_image(label)).save(files[-1])
    result = cli("predict", tmp_path / "run", *files, "--checkpoint", "last", "-o", tmp_path / "out.json")
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "out.json").read_text())
    assert [r["prediction"] for r in records] == ["3 - three", "7 - seven"]
    assert all(r["probability"] > 0.5 for r in records)


def test_missing_and_broken_files_are_one_line(cli, tmp_path):
    result = cli("train", image_config(tmp_path, "mnist", tmp_path / "empty"))
    assert result.exit_code == 2
    assert (
        f"data.root: {tmp_path / 'empty' / 'MNIST' / 'raw'} lacks train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; put the MNIST files there uncompressed"
    ) in result.stderr
    raw = write_idx_files(tmp_path / "data", "MNIST")
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01garbage")
    result = cli("train", image_config(tmp_path, "mnist", tmp_path / "data"))
    assert result.exit_code == 2
    assert (
        f"data.root: {raw / 'train-images-idx3-ubyte'}: not an MNIST-format images file: magic number "
        "0x00000801, expected 0x00000803"
    ) in result.stderr
    assert "Traceback" not in result.output


def test_predict_names_images_of_the_wrong_size_or_kind(cli, tmp_path):
    write_idx_files(tmp_path / "data", "MNIST")
    assert (
        cli("train", image_config(tmp_path, "mnist", tmp_path / "data"), "--out", tmp_path / "run", "-q").exit_code == 0
    )
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "big.png")
    (tmp_path / "junk.png").write_text("not an image")
    result = cli("predict", tmp_path / "run", tmp_path / "big.png")
    assert (
        result.exit_code == 2 and "big.png: the image is 32×32, the model was trained on 28×28 images" in result.stderr
    )
    result = cli("predict", tmp_path / "run", tmp_path / "junk.png")
    assert result.exit_code == 2 and "junk.png: cannot read as an image" in result.stderr


@pytest.mark.parametrize("name", ["mnist_mlp", "mnist_cnn"])
def test_mnist_configs_are_valid(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.dataset.name == "mnist"
    assert Path(config.dataset.params["root"]).is_absolute()


def folder_config(directory: Path, **data) -> Path:
    paths = {key: str(value) if isinstance(value, Path) else value for key, value in data.items()}
    return write_config(
        directory,
        data={"name": "image_folder", "batch_size": 16, **paths},
        model={"name": "cnn", "channels": [4], "hidden": 8},
    )


def test_an_image_folder_trains_with_explicit_test_folder_and_predicts(cli, tmp_path):
    train_root = image_tree(tmp_path / "train", {"blue": 30, "red": 30})
    test_root = image_tree(tmp_path / "test", {"blue": 5, "red": 7}, seed=1)
    config = folder_config(tmp_path, root=train_root, test_root=test_root, image_size=[8, 8])
    result = cli("train", config, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test"]["confusion_matrix"][0][0] + summary["test"]["confusion_matrix"][0][1] == 5  # blue, given
    assert sum(map(sum, summary["test"]["confusion_matrix"])) == 12
    saved = json.loads((tmp_path / "run" / "data.json").read_text())
    assert saved["input_shape"] == [3, 8, 8] and saved["image"]["resize"] == [8, 8]
    assert saved["task"]["class_names"] == ["blue", "red"]
    result = cli(
        "predict",
        tmp_path / "run",
        test_root / "red" / "0.png",
        test_root / "blue" / "0.png",
        "--checkpoint",
        "last",
        "-o",
        tmp_path / "p.csv",
    )
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in lines[1:]] == ["red", "blue"]  # resized from 10×12 as in training


def test_image_folders_with_mixed_sizes_or_broken_files_are_one_line(cli, tmp_path):
    root = image_tree(tmp_path / "imgs", {"blue": 3, "red": 3})
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "red" / "big.png")
    result = cli("train", folder_config(tmp_path, root=root))
    assert result.exit_code == 2
    assert f"the images under {root} have different sizes (10×12, 20×20); set data.image_size: [H, W]" in result.stderr
    (root / "blue" / "broken.png").write_bytes(b"\x89PNG not really")
    result = cli("train", folder_config(tmp_path, root=root, image_size=[8, 8]))
    assert result.exit_code == 2
    assert f"{root / 'blue' / 'broken.png'}: cannot read as an image" in result.stderr
    result = cli("train", folder_config(tmp_path, root=tmp_path / "nowhere"))
    assert result.exit_code == 2 and "nowhere: folder not found" in result.stderr


@pytest.mark.slow
def test_a_torchvision_architecture_adapts_to_one_channel_and_trains(cli, tmp_path):
    import torch

    write_idx_files(tmp_path / "data", "MNIST", n_train=64, n_test=16)
    config = image_config(tmp_path, "mnist", tmp_path / "data", model={"name": "torchvision", "arch": "resnet18"})
    result = cli("train", config, "--out", tmp_path / "run", "--quiet", "--set", "trainer.epochs=1")
    assert result.exit_code == 0, result.output
    weights = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert weights["conv1.weight"].shape == (64, 1, 7, 7)  # the first convolution takes MNIST's one channel
    assert weights["fc.weight"].shape == (10, 512)  # the head has the dataset's classes


def test_torchvision_weights_come_from_a_local_file_only(tmp_path):
    import torch
    import torchvision

    from trainctl.components.models import ModelContext
    from trainctl.components.registries import MODELS
    from trainctl.errors import UserError

    source = torchvision.models.resnet18(num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "resnet18.pt")
    built = MODELS.get("torchvision").build(
        ModelContext((3, 32, 32), 5), {"arch": "resnet18", "weights": str(tmp_path / "resnet18.pt")}
    )
    assert torch.equal(built.state_dict()["layer1.0.conv1.weight"], source.state_dict()["layer1.0.conv1.weight"])
    assert built.fc.out_features == 5  # the 1000-class head did not fit and was left as initialised
    with pytest.raises(
        UserError,
        match=r"model.arch: 'resnet81' is not a torchvision classification architecture \(did you mean 'resnet18'",
    ):
        MODELS.get("torchvision").build(ModelContext((3, 32, 32), 5), {"arch": "resnet81"})
    with pytest.raises(UserError, match="file not found"):
        MODELS.get("torchvision").build(ModelContext((3, 32, 32), 5), {"weights": str(tmp_path / "none.pt")})


def test_without_torchvision_an_image_folder_config_says_how_to_install_it(cli, tmp_path, monkeypatch):
    """The hint installs torchvision itself: 'trainctl[vision]' outside a checkout is another project."""
    import sys

    monkeypatch.setitem(sys.modules, "torchvision", None)  # what an install without it gives
    (tmp_path / "images" / "a").mkdir(parents=True)
    config = write_config(
        tmp_path,
        """
        data: {name: image_folder, root: images}
        model: {name: mlp}
        loss: {name: cross_entropy}
        optimizer: {name: adam}
    """,
    )
    result = cli("train", config)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {config}:1: data.name: image_folder needs torchvision, which is not installed; pip install "
        "torchvision (or, in the trainctl checkout, pip install -e '.[vision]')\n"
    )
