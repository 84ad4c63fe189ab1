"""Image transforms from the config, and the streamed path: image files and augmentation read
sample by sample through a DataLoader, reproducibly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainctl.components.transforms import compose
from trainctl.config.loading import load_config
from trainctl.data.streaming import LoaderSettings, PixelRows, StreamedInputs
from trainctl.errors import ConfigError
from trainctl.output import Output
from trainctl.workflows import resume, train

from helpers import REPO, image_tree, read_jsonl, write_config, write_idx_files


def mnist_config(directory: Path, root: Path, data: str = "", epochs: int = 2) -> Path:
    return write_config(
        directory,
        f"""
        data:
          name: mnist
          root: {root}
          batch_size: 32
          {data}
        model: {{name: mlp, hidden: [32], dropout: 0.2}}
        loss: {{name: cross_entropy}}
        optimizer: {{name: adam, lr: 0.01}}
        trainer: {{epochs: {epochs}, device: cpu}}
        output_dir: {directory / "runs"}
    """,
    )


AUGMENTED = (
    "transforms: {train: [{name: random_crop, size: 28, padding: 2}, {name: horizontal_flip}, {name: normalize}]}"
)


def last_weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = last_weights(a), last_weights(b)
    assert all(torch.equal(wa[key], wb[key]) for key in wa)


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mnist")
    write_idx_files(root, "MNIST", n_train=160, n_test=40)
    return root


def test_transform_lists_are_checked_with_file_line_and_suggestions(tmp_path, mnist_root):
    config = mnist_config(
        tmp_path,
        mnist_root,
        data="""transforms:
            train: [{name: random_crp, size: 28}, {name: normalize, mean: 0.5}]
            eval: [{name: horizontal_flip}]""",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    lines = str(caught.value).splitlines()
    assert any(
        "config.yaml:6" in line
        and "data.transforms.train.0.name: unknown transform 'random_crp' (did you mean 'random_crop'" in line
        for line in lines
    )
    assert any("data.transforms.train.1.mean" in line and "valid list" in line for line in lines)
    assert any(
        "config.yaml:7" in line
        and "data.transforms.eval.0.name: 'horizontal_flip' is random; evaluation must see the same images every time"
        in line
        for line in lines
    )
    iris = write_config(
        tmp_path,
        """
        data: {name: iris, transforms: {train: [{name: normalize}]}}
        model: {name: mlp}
        loss: {name: cross_entropy}
        optimizer: {name: adam}
    """,
        file="iris.yaml",
    )
    with pytest.raises(
        ConfigError,
        match="dataset 'iris' is not read as images; transforms apply to: mnist, "
        "fashion_mnist, kmnist, cifar10, cifar100, image_folder",
    ):
        load_config(iris)


def test_train_and_eval_transforms_must_give_one_size(cli, tmp_path, mnist_root):
    config = mnist_config(tmp_path, mnist_root, data="transforms: {train: [{name: random_crop, size: 24}]}")
    result = cli("train", config)
    assert result.exit_code == 2
    assert (
        "data.transforms: the train transforms give images of 1×24×24, the eval transforms 1×28×28; the model "
        "needs one size" in result.stderr
    )
    config = mnist_config(tmp_path, mnist_root, data="transforms: {eval: [{name: color_jitter, hue: 0.1}]}")
    assert "data.transforms.eval.0.name: 'color_jitter' is random" in cli("train", config).stderr


def test_deterministic_transforms_run_once_and_defaults_normalise(tmp_path, mnist_root):
    result = train(
        mnist_config(
            tmp_path,
            mnist_root,
            data="transforms: {eval: [{name: resize, size: 14}, "
            "{name: normalize}], train: [{name: resize, size: 14}, {name: normalize}]}",
        ),
        out=tmp_path / "run",
        output=Output(quiet=True),
    )
    saved = json.loads((tmp_path / "run" / "data.json").read_text())
    assert saved["input_shape"] == [1, 14, 14]
    assert saved["image"]["transforms"] == [
        {"name": "resize", "size": 14},
        {"name": "normalize", "mean": [0.1307], "std": [0.3081]},
    ]
    assert result.summary["test"]["accuracy"] > 0.5
    from trainctl.training.build import build_data

    data = build_data(load_config(tmp_path / "run" / "config.yaml"), torch.device("cpu"))
    assert not data.train.streamed and data.train.inputs.shape[1:] == (1, 14, 14)  # the fast tensor path


def test_augmentation_is_per_sample_epoch_and_row_whatever_reads_it():
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (12, 1, 8, 8), dtype=np.uint8))
    pipeline = compose([{"name": "random_crop", "size": 8, "padding": 2}, {"name": "horizontal_flip"}])

    def stream(workers: int) -> StreamedInputs:
        return StreamedInputs(
            PixelRows(pixels),
            np.arange(12),
            pipeline,
            True,
            7,
            torch.device("cpu"),
            LoaderSettings(num_workers=workers),
        )

    in_order = [torch.arange(0, 6), torch.arange(6, 12)]
    shuffled = [torch.tensor([11, 3, 5, 0]), torch.tensor([7, 1, 2, 4, 6, 8, 9, 10])]
    before = torch.get_rng_state()
    epoch1 = torch.cat(list(stream(0).batches(in_order, epoch=1)))
    assert torch.equal(torch.get_rng_state(), before)  # the training process's random state is untouched
    by_workers = torch.cat(list(stream(2).batches(shuffled, epoch=1)))
    assert torch.equal(by_workers, epoch1[torch.cat(shuffled)])  # same sample, same epoch: same augmentation
    epoch2 = torch.cat(list(stream(0).batches(in_order, epoch=2)))
    changed = [not torch.equal(a, b) for a, b in zip(epoch1, epoch2)]
    assert sum(changed) >= 6  # a new epoch draws new crops and flips
    plain = pixels.float() / 255
    assert {float(x.mean()) for x in epoch1} != {float(x.mean()) for x in plain}  # augmented, not just copied


def test_augmented_training_is_the_same_with_workers_and_after_a_resume(tmp_path, mnist_root):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    first = train(
        mnist_config(tmp_path / "a", mnist_root, data=AUGMENTED, epochs=2),
        out=tmp_path / "a" / "run",
        output=Output(quiet=True),
    )
    workers = train(
        mnist_config(tmp_path / "b", mnist_root, data=AUGMENTED + "\n          num_workers: 2", epochs=1),
        out=tmp_path / "b" / "run",
        output=Output(quiet=True),
    )
    assert workers.summary["epochs_trained"] == 1
    resume(tmp_path / "b" / "run", ["trainer.epochs=2", "data.num_workers=0"], output=Output(quiet=True))
    assert_same_weights(first.run.path, tmp_path / "b" / "run")
    rows_a, rows_b = read_jsonl(first.run.path / "metrics.jsonl"), read_jsonl(tmp_path / "b" / "run" / "metrics.jsonl")
    assert [row["train/loss"] for row in rows_a] == [row["train/loss"] for row in rows_b]


def test_an_image_folder_streams_the_same_with_and_without_workers(tmp_path):
    root = image_tree(tmp_path / "imgs", {"blue": 20, "red": 20})
    runs = []
    for workers in (0, 2):
        folder = tmp_path / f"w{workers}"
        folder.mkdir()
        config = write_config(
            folder,
            f"""
            data: {{name: image_folder, root: {root}, batch_size: 8, num_workers: {workers},
                    persistent_workers: {str(workers > 0).lower()}}}
            model: {{name: cnn, channels: [4], hidden: 8}}
            loss: {{name: cross_entropy}}
            optimizer: {{name: adam, lr: 0.01}}
            trainer: {{epochs: 2, device: cpu}}
        """,
        )
        runs.append(train(config, out=folder / "run", output=Output(quiet=True)))
    assert_same_weights(runs[0].run.path, runs[1].run.path)
    assert runs[1].summary["test"]["accuracy"] == 1.0  # red against blue
    saved = json.loads((runs[0].run.path / "data.json").read_text())
    normalize = saved["image"]["transforms"][0]
    # Without published statistics, normalize uses the training images' own mean and std per channel.
    from trainctl.components.registries import DATASETS
    from trainctl.data.prepare import split_indices
    from trainctl.training.build import build_data

    config = load_config(runs[0].run.path / "config.yaml")
    raw = DATASETS.get("image_folder").build(None, config.dataset.params)
    train_rows = split_indices(raw, 0.1, 0.2, 0)[0]
    pixels = np.stack([np.asarray(Image.open(raw.images.files[row]), dtype=np.float64) / 255 for row in train_rows])
    assert normalize["mean"] == pytest.approx(pixels.mean(axis=(0, 1, 2)).tolist(), abs=1e-5)
    assert normalize["std"] == pytest.approx(pixels.std(axis=(0, 1, 2)).tolist(), abs=1e-5)
    assert build_data(config, torch.device("cpu")).train.streamed


def test_a_corrupt_image_found_by_a_worker_is_one_line(cli, tmp_path):
    root = image_tree(tmp_path / "imgs", {"blue": 12, "red": 12})
    broken = root / "red" / "3.png"
    broken.write_bytes(broken.read_bytes()[:60])  # the header is intact, the pixels are cut off
    config = write_config(
        tmp_path,
        f"""
        data: {{name: image_folder, root: {root}, batch_size: 8, num_workers: 1, val_fraction: 0.2}}
        model: {{name: cnn, channels: [4], hidden: 8}}
        loss: {{name: cross_entropy}}
        optimizer: {{name: adam}}
        trainer: {{epochs: 1, device: cpu}}
        output_dir: {tmp_path / "runs"}
    """,
    )
    result = cli("train", config, "--quiet")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {broken}: cannot read as an image:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_persistent_workers_need_workers(tmp_path, mnist_root):
    config = mnist_config(tmp_path, mnist_root, data="persistent_workers: true")
    with pytest.raises(
        ConfigError, match="persistent_workers keeps DataLoader workers alive, so it needs num_workers > 0"
    ):
        load_config(config)


def test_the_shipped_image_folder_example_is_valid():
    from trainctl.workflows import validate

    report = validate(REPO / "examples" / "images" / "shapes.yaml", ["trainer.device=cpu"])
    assert report.input_shape == (32, 3, 32, 32) and report.output_shape == (32, 3)
    assert report.errors == []


def test_a_transform_that_cannot_apply_is_named_by_list_and_position(cli, tmp_path, mnist_root):
    three = "{name: normalize, mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]}"
    config = mnist_config(tmp_path, mnist_root, data=f"transforms: {{train: [{three}], eval: [{three}]}}")
    result = cli("train", config)
    assert result.exit_code == 2  # torch would broadcast it and make the 1-channel images RGB
    assert result.stderr == (
        f"error: {config}:5: data.transforms.train.0: normalize has 3 means and 3 standard deviations, for "
        "images of 1 channel(s); give one per channel\n"
    )
    config = mnist_config(
        tmp_path, mnist_root, data="transforms: {train: [{name: normalize}, {name: gaussian_blur, kernel_size: 4}]}"
    )
    result = cli("train", config)
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: {config}:5: data.transforms.train.1: gaussian_blur: Kernel size value should be an odd"
    )
