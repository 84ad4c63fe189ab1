"""Writes examples/images/shapes/: 32×32 PNG drawings of circles, squares and triangles, one
sub-folder per class (the layout torchvision's ImageFolder reads).

Drawn shapes rather than photographs (no labelled image folder ships with a package); each has a
random size, position, colour and background, and the script is seeded, so running it again
writes the same files.

    python examples/make_shapes_images.py
"""

import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 32
PER_CLASS = 60


def draw(shape: str, rng: np.random.Generator) -> Image.Image:
    background = tuple(int(v) for v in rng.integers(0, 120, 3))
    colour = tuple(int(v) for v in rng.integers(130, 256, 3))
    image = Image.new("RGB", (SIZE, SIZE), background)
    pen = ImageDraw.Draw(image)
    radius = int(rng.integers(6, 13))
    cx, cy = (int(v) for v in rng.integers(radius + 1, SIZE - radius - 1, 2))
    if shape == "circle":
        pen.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    elif shape == "square":
        pen.rectangle((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    else:
        pen.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=colour)
    return image


def main() -> None:
    rng = np.random.default_rng(0)
    root = Path(__file__).parent / "images" / "shapes"
    shutil.rmtree(root, ignore_errors=True)
    for shape in ("circle", "square", "triangle"):
        (root / shape).mkdir(parents=True)
        for index in range(PER_CLASS):
            draw(shape, rng).save(root / shape / f"{index:03d}.png", optimize=True)


if __name__ == "__main__":
    main()
