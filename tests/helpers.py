"""What the tests share: the repository's paths, config files, the command line (in-process and the
installed command), and tiny data files. Fixtures live in conftest.py and are built on these.

Tests import from here (`from helpers import ...`), never from conftest.py or from each other.
"""

from __future__ import annotations

import csv
import json
import struct
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from trainctl.output import Output

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
# The console script installed beside this interpreter: a subprocess runs the code under test (PYTHONPATH).
TRAINCTL = str(Path(sys.executable).parent / "trainctl")


# ---- config files ---------------------------------------------------------------------------------


def tiny_sections(directory: Path) -> dict[str, Any]:
    """Iris, a 16-unit MLP, Adam, 3 epochs on the CPU: a valid config that trains in well under a second."""
    return {
        "name": "tiny",
        "seed": 0,
        "data": {"name": "iris", "batch_size": 16},
        "model": {"name": "mlp", "hidden": [16]},
        "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "adam", "lr": 0.01},
        "trainer": {"epochs": 3, "device": "cpu"},
        "output_dir": str(directory / "runs"),
    }


def write_config(directory: Path, text: str | None = None, /, *, file: str | None = None, **sections: Any) -> Path:
    """Write a config file into `directory` and return its path.

    Without `text`: the tiny config above, each keyword replacing one whole top-level key (a key given
    as None is left out), written with yaml.safe_dump to `tiny.yaml`.
    With `text`: that YAML, dedented, exactly as given, to `config.yaml`; for tests whose subject is
    the text itself (line numbers in messages, comments, anchors, duplicate keys, syntax errors).
    `file` names the file instead.
    """
    if text is not None:
        if sections:
            raise TypeError("write_config takes either literal text or sections, not both")
        path = directory / (file or "config.yaml")
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path
    config = {**tiny_sections(directory), **sections}
    path = directory / (file or "tiny.yaml")
    text = yaml.safe_dump({key: value for key, value in config.items() if value is not None}, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


# ---- the command line -----------------------------------------------------------------------------


def run_cli(*args: Any, columns: int | None = None):
    """`trainctl ARGS...` in-process (typer's CliRunner); the click Result has exit_code, stdout, stderr.
    `columns` fixes the terminal width of rich tables and help."""
    from typer.testing import CliRunner

    from trainctl.cli import app

    env = {"COLUMNS": str(columns)} if columns else None
    return CliRunner().invoke(app, [str(arg) for arg in args], env=env)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


# ---- tiny data files ------------------------------------------------------------------------------


def write_iris_csv(path: Path) -> Path:
    """scikit-learn's iris as a CSV table with a header and the species as text."""
    from trainctl.data import sklearn_files

    table = sklearn_files.load("load_iris")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sepal_length", "sepal_width", "petal_length", "petal_width", "species"])
        for features, label in zip(table.data, table.target):
            writer.writerow([*(f"{value:g}" for value in features), table.target_names[label]])
    return path


def bar_image(label: int) -> np.ndarray:
    """A 28×28 image whose bright bar's row says the class."""
    image = np.zeros((28, 28), np.uint8)
    image[2 + 2 * label : 4 + 2 * label, 4:24] = 255
    return image


def write_idx_files(root: Path, folder: str, n_train: int = 200, n_test: int = 50, seed: int = 0) -> Path:
    """train/t10k images and labels in the IDX format (magic numbers 2051 and 2049, big-endian sizes)."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, count).astype(np.uint8)
        images = np.stack([bar_image(int(label)) for label in labels])
        images = np.clip(images + rng.integers(0, 40, images.shape), 0, 255).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, count) + labels.tobytes())
    return raw


def image_tree(root: Path, counts: dict[str, int], size: tuple[int, int] = (12, 10), seed: int = 0) -> Path:
    """root/<class>/<n>.png: red-ish images for 'red', blue-ish for 'blue'."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 60, (*size, 3)).astype(np.uint8)
            pixels[..., 0 if name == "red" else 2] += 180
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


# ---- a finished run, for the commands that read one -----------------------------------------------

RUN_COMMANDS = ("compare", "plot", "eval", "predict", "resume")


def train_iris_csv_run(directory: Path) -> tuple[Path, Path]:
    """A finished 2-epoch run of an MLP on iris read from a CSV (so predict can read it too);
    returns (run folder, CSV)."""
    from trainctl.workflows import train

    data = write_iris_csv(directory / "iris.csv")
    config = write_config(
        directory,
        file="iris.yaml",
        name="iris",
        data={"name": "csv", "path": str(data), "target": "species", "batch_size": 32},
        model={"name": "mlp", "hidden": [8]},
        scheduler={"name": "step", "step_size": 1},
        trainer={"epochs": 2, "device": "cpu"},
    )
    result = train(config, out=directory / "run", output=Output(quiet=True))
    return result.run.path, data


def run_command_line(command: str, run: Path, data: Path, scratch: Path) -> list:
    """The arguments of one of RUN_COMMANDS on `run`; `data` is what predict reads."""
    return {
        "compare": ["compare", run],
        "plot": ["plot", run, "-o", scratch / "curves.png"],
        "eval": ["eval", run],
        "predict": ["predict", run, data],
        "resume": ["train", "--resume", run, "--set", "trainer.epochs=3", "-q"],
    }[command]
