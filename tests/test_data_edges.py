"""Data at its edges: one class, a decompression bomb, a byte-order mark, inf cells, a stray word in
a numeric column, broken MNIST files, and a folder given to predict. Each is a real file; each is
refused (or warned about) with one line naming the file and, where there is one, the line and column."""

from __future__ import annotations

import csv
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import write_config, write_idx_files


def write_fruit(
    path: Path,
    rows: int = 40,
    *,
    classes: tuple[str, ...] = ("apple", "pear"),
    cell: tuple[int, str, str] | None = None,
    encoding: str = "utf-8",
) -> Path:
    """weight_g, colour, fruit; `cell` = (line, column, text) replaces one cell (line 2 is the first row)."""
    rng = np.random.default_rng(0)
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(["weight_g", "colour", "fruit"])
        for i in range(rows):
            k = i % len(classes)
            row = {
                "weight_g": f"{100 + 50 * k + rng.normal(0, 5):.1f}",
                "colour": ["red", "green"][i % 2],
                "fruit": classes[k],
            }
            if cell is not None and cell[0] == i + 2:
                row[cell[1]] = cell[2]
            writer.writerow(row.values())
    return path


def fruit_config(directory: Path, csv_path: Path) -> Path:
    return write_config(
        directory,
        file="fruit.yaml",
        data={"name": "csv", "path": str(csv_path), "target": "fruit", "batch_size": 16},
        model={"name": "mlp", "hidden": [8]},
        trainer={"epochs": 1, "device": "cpu"},
    )


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_csv_of_one_class_is_refused_before_a_run_folder_exists(cli, tmp_path):
    data = write_fruit(tmp_path / "fruit.csv", classes=("apple",))
    line = one_line_error(cli("train", fruit_config(tmp_path, data)))
    assert f"data.target: column 'fruit' of {data} holds only class 'apple'; a classifier needs at least two" in line
    assert not (tmp_path / "runs").exists()


def image_folder_config(tmp_path: Path, root: Path) -> Path:
    """A one-epoch image_folder config over `root`, its runs under tmp_path/runs."""
    return write_config(
        tmp_path,
        data={"name": "image_folder", "root": str(root), "batch_size": 2, "val_fraction": 0.25, "test_fraction": 0.25},
        model={"name": "mlp", "hidden": [8]},
        optimizer={"name": "adam"},
        trainer={"epochs": 1, "device": "cpu"},
    )


def test_an_image_folder_of_one_class_is_refused_before_a_run_folder_exists(cli, tmp_path):
    root = tmp_path / "images"
    (root / "cat").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(root / "cat" / f"{i}.png")
    config = image_folder_config(tmp_path, root)
    line = one_line_error(cli("train", config))
    assert f"data.root: {root} (one sub-folder per class) holds only class 'cat'" in line
    assert not (tmp_path / "runs").exists()


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A valid 8×8 PNG whose header (IHDR, with a correct CRC) claims width × height pixels."""
    Image.new("L", (8, 8)).save(path)
    data = path.read_bytes()
    start = data.index(b"IHDR")
    header = bytearray(data[start : start + 17])
    header[4:12] = struct.pack(">II", width, height)
    path.write_bytes(data[:start] + bytes(header) + struct.pack(">I", zlib.crc32(bytes(header))) + data[start + 21 :])
    return path


def test_a_decompression_bomb_is_named_in_an_image_folder_and_by_read_image(cli, tmp_path):
    from trainctl.data.images import read_image
    from trainctl.errors import UserError

    root = tmp_path / "images"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(root / name / f"{i}.png")
    bomb = png_claiming(root / "dog" / "bomb.png", 20000, 20000)
    config = image_folder_config(tmp_path, root)
    line = one_line_error(cli("train", config))
    assert f"{bomb}: refused: the image is too large to decode safely" in line
    assert "400000000 pixels" in line
    with pytest.raises(UserError, match=re.escape("bomb.png: refused: the image is too large")):
        read_image(bomb, 1)


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(cli, tmp_path):
    from trainctl.data.tables import read_table

    data = tmp_path / "fruit.csv"
    with data.open("w", newline="", encoding="utf-8-sig") as handle:
        handle.write(
            "fruit,weight_g\n" + "".join(f"{'apple' if i % 2 else 'pear'},{100 + 50 * (i % 2)}\n" for i in range(30))
        )
    assert data.read_bytes().startswith(b"\xef\xbb\xbffruit,")
    assert read_table(data).columns == ["fruit", "weight_g"]
    result = cli("validate", fruit_config(tmp_path, data))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("text", ["inf", "-Infinity", "1e400"])
def test_an_infinite_feature_cell_is_named_by_file_line_and_column(cli, tmp_path, text):
    data = write_fruit(tmp_path / "fruit.csv", cell=(7, "weight_g", text))
    line = one_line_error(cli("validate", fruit_config(tmp_path, data)))
    assert f"{data}:7: column 'weight_g': {text!r} is not a finite number" in line


def test_an_infinite_regression_target_is_named(cli, tmp_path):
    data = write_fruit(tmp_path / "fruit.csv", cell=(5, "weight_g", "1e39"))  # finite in float64, not in float32
    config = write_config(
        tmp_path,
        data={"name": "csv", "path": str(data), "target": "weight_g", "task": "regression"},
        model={"name": "mlp", "hidden": [8]},
        loss={"name": "mse"},
        optimizer={"name": "adam"},
        trainer={"epochs": 1, "device": "cpu"},
    )
    line = one_line_error(cli("validate", config))
    assert f"{data}:5: column 'weight_g': '1e39' is not a finite number" in line


def test_predict_names_an_infinite_input_cell(cli, tmp_path):
    data = write_fruit(tmp_path / "fruit.csv")
    assert cli("train", fruit_config(tmp_path, data), "--out", tmp_path / "run", "-q").exit_code == 0
    new = write_fruit(tmp_path / "new.csv", rows=4, cell=(3, "weight_g", "inf"))
    line = one_line_error(cli("predict", tmp_path / "run", new))
    assert f"{new}:3: column 'weight_g': 'inf' is not a finite number" in line
    folder = tmp_path / "texts"
    folder.mkdir()
    line = one_line_error(cli("predict", tmp_path / "run", folder))
    assert f"{folder}: a folder; predict reads input files" in line


def test_a_stray_word_in_a_numeric_column_is_warned_about_with_its_line(cli, tmp_path):
    data = write_fruit(tmp_path / "fruit.csv", cell=(17, "weight_g", "abc"))
    config = fruit_config(tmp_path, data)
    result = cli("validate", config)
    assert result.exit_code == 0, result.output
    assert (
        f"warning: data: {data}: column weight_g is numeric except 'abc' at line 17: read as text "
        "(categories). Fix: correct the cell, or empty it and set data.on_missing: drop"
    ) in " ".join(result.output.split())
    assert cli("validate", config, "--strict").exit_code == 2
    clean = cli("validate", fruit_config(tmp_path, write_fruit(tmp_path / "clean.csv")))
    assert clean.exit_code == 0 and "warning" not in clean.output


@pytest.mark.parametrize(
    "damage, expected",
    [
        (
            lambda raw: (raw / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x03" + bytes(8)),
            "train-labels-idx1-ubyte: not an MNIST-format labels file: magic number 0x00000803, expected 0x00000801",
        ),
        (
            lambda raw: (raw / "t10k-images-idx3-ubyte").write_bytes(
                (raw / "t10k-images-idx3-ubyte").read_bytes()[:-100]
            ),
            (
                "t10k-images-idx3-ubyte: the header describes 50 × 28 × 28 bytes of images (39216 bytes in all), but the "
                "file has 39116 bytes"
            ),
        ),
        (
            lambda raw: (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x1f\x8b"),
            "t10k-images-idx3-ubyte: not an MNIST-format images file: a file too short for a header",
        ),
        (
            lambda raw: (raw / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 3) + bytes(3)),
            "train-images-idx3-ubyte holds 200 images but train-labels-idx1-ubyte 3 labels",
        ),
    ],
)
def test_broken_mnist_files_are_named_with_the_reason(cli, tmp_path, damage, expected):
    raw = write_idx_files(tmp_path / "data", "MNIST")
    damage(raw)
    config = write_config(tmp_path, data={"name": "mnist", "root": str(tmp_path / "data"), "batch_size": 32})
    line = one_line_error(cli("validate", config))
    assert expected in line
