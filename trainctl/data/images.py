"""Image files as model inputs, read the same way for training (image_folder) and for predict."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.errors import UserError, install_hint


@contextlib.contextmanager
def _image_errors(path: Path | str) -> Iterator[None]:
    """PIL's errors for one file, as one line naming it. An image whose header claims more pixels
    than PIL's decompression-bomb limit (about 89 million) is refused before it is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UserError(f"{path}: refused: the image is too large to decode safely ({error})") from None
    except (UnidentifiedImageError, OSError) as error:
        raise UserError(f"{path}: cannot read as an image: {error}") from None


def read_image(path: Path | str, channels: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image as a C×H×W float32 array in [0, 1]: grayscale or RGB, resized to (H, W) if given."""
    from PIL import Image

    with _image_errors(path), Image.open(path) as opened:
        image = opened.convert("L" if channels == 1 else "RGB")
        if size is not None:
            image = image.resize((size[1], size[0]))
        pixels = np.asarray(image, dtype=np.float32) / 255.0
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def image_sizes(paths: list[str]) -> list[tuple[int, int]]:
    """Each image's (width, height) from its header, without decoding the pixels: a fast check
    that every file of a folder is an image before training starts reading them."""
    from PIL import Image

    sizes = []
    for path in paths:
        with _image_errors(path), Image.open(path) as image:
            sizes.append(image.size)
    return sizes


def torchvision(what: str) -> Any:
    """The torchvision package, or a UserError saying that `what` needs it and how to install it."""
    try:
        import torchvision
    except ImportError:
        raise UserError(
            f"{what} needs torchvision, which is not installed; {install_hint('torchvision', 'vision')}"
        ) from None
    return torchvision


def v2() -> Any:
    torchvision("data.transforms")
    from torchvision.transforms import (
        v2,  # a submodule: `import torchvision` alone does not load it
    )

    return v2
