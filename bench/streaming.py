"""The streamed input path against the DataLoader people write by hand, for augmented images.

An MNIST-format dataset (written here: 12,000 training images of 28×28, in the IDX files
torchvision reads) trains an MLP with per-sample augmentation (random crop with padding 2,
horizontal flip, normalize). trainctl streams it through a DataLoader handed its own batches,
seeding each sample's transform by (seed, epoch, row); the hand-written loop is the usual
`Dataset.__getitem__` applying the same v2 transforms, `DataLoader(shuffle=True)`. Both run with 0
and with 2 workers (persistent), alternating in one process; the report is the median seconds per
training epoch (no validation) and trainctl's ratio to the hand-written loader. For scale, the
same epoch on preloaded tensors without augmentation (trainctl's fast path) is timed too.

    python bench/streaming.py [--repeats 5] [--epochs 2]
"""

from __future__ import annotations

import argparse
import statistics
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from trainctl.config.loading import load_config
from trainctl.training.build import build_model, build_training
from trainctl.training.loop import EpochContext, train_one_epoch, training_step
from trainctl.training.settings import StepSettings

SAMPLES = 12_000
AUGMENT = "[{name: random_crop, size: 28, padding: 2}, {name: horizontal_flip}, {name: normalize}]"


def write_mnist(root: Path) -> None:
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", SAMPLES), ("t10k", 2000)):
        labels = rng.integers(0, 10, count).astype(np.uint8)
        images = rng.integers(0, 60, (count, 28, 28)).astype(np.uint8)
        for image, label in zip(images, labels):
            image[2 + 2 * label : 4 + 2 * label, 4:24] = 255
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, count) + labels.tobytes())


def write_config(folder: Path, root: Path, transforms: str, workers: int) -> Path:
    path = folder / f"w{workers}-{abs(hash(transforms))}.yaml"
    path.write_text(f"""
data: {{name: mnist, root: {root}, batch_size: 128, num_workers: {workers}, persistent_workers: {str(workers > 0).lower()},
        transforms: {{train: {transforms}}}}}
model: {{name: mlp, hidden: [128], dropout: 0.0}}
loss: {{name: cross_entropy}}
optimizer: {{name: adam, lr: 0.001}}
trainer: {{epochs: 1, device: cpu}}
""")
    return path


def through_trainctl(config_path: Path, epochs: int) -> list[float]:
    config = load_config(config_path)
    parts = build_training(config)
    step = training_step(parts.model, parts.loss_fn, parts.optimizer, StepSettings(config.data.batch_size))
    generator = torch.Generator().manual_seed(0)
    seconds = []
    for epoch in range(1, epochs + 2):  # the first epoch starts the workers: not counted
        started = time.perf_counter()
        train_one_epoch(parts.model, parts.data.train, step, EpochContext(epoch, generator))
        seconds.append(time.perf_counter() - started)
    return seconds[1:]


class Augmented(torch.utils.data.Dataset):
    """The usual hand-written dataset: one sample, transformed, per __getitem__."""

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor, transform):
        self.pixels, self.labels, self.transform = pixels, labels, transform

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int):
        return self.transform(self.pixels[index].float().div(255)), self.labels[index]


def hand_written(config_path: Path, epochs: int) -> list[float]:
    from torchvision.transforms import v2

    config = load_config(config_path)
    parts = build_training(config)  # for the same split and the same model architecture
    split = parts.data.train
    pixels = split.inputs.reader.pixels[torch.as_tensor(split.inputs.rows)]
    transform = v2.Compose([v2.RandomCrop(28, padding=2), v2.RandomHorizontalFlip(), v2.Normalize([0.1307], [0.3081])])
    workers = config.data.num_workers
    loader = torch.utils.data.DataLoader(
        Augmented(pixels, split.targets, transform),
        batch_size=128,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    model = build_model(config, parts.data)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    seconds = []
    for _ in range(epochs + 1):
        started = time.perf_counter()
        model.train()
        for x, y in loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
    return seconds[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per repeat (after one warm-up epoch)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        write_mnist(folder / "data")
        times: dict[str, list[float]] = {}
        jobs = {
            "preloaded tensors, no augmentation": (
                write_config(folder, folder / "data", "[{name: normalize}]", 0),
                through_trainctl,
            )
        }
        for workers in (0, 2):
            path = write_config(folder, folder / "data", AUGMENT, workers)
            jobs[f"hand-written DataLoader, {workers} workers"] = (path, hand_written)
            jobs[f"trainctl streamed, {workers} workers"] = (path, through_trainctl)
        for _ in range(args.repeats):
            for name, (path, run) in jobs.items():
                times.setdefault(name, []).extend(run(path, args.epochs))
        median = {name: statistics.median(values) for name, values in times.items()}
        print(
            f"seconds per training epoch ({SAMPLES * 0.7:.0f} images, batch 128, MLP 784-128-10), "
            f"median of {args.repeats * args.epochs}; torch threads {torch.get_num_threads()}"
        )
        for name, value in median.items():
            print(f"  {name:<40} {value:7.3f}")
        for workers in (0, 2):
            ratio = (
                median[f"trainctl streamed, {workers} workers"] / median[f"hand-written DataLoader, {workers} workers"]
            )
            print(f"trainctl / hand-written, {workers} workers: {ratio:.3f}")


if __name__ == "__main__":
    main()
