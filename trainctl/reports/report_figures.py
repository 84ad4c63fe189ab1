"""The report's images as PNG bytes, rendered in memory: curves and the reliability diagram (the
figures `train` saves beside a run), the confusion matrix as a heat map, and thumbnails of samples'
image files.

matplotlib (object API, no pyplot) and Pillow are imported inside the functions that draw.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.reports.curves import Curves, curves_figure, literal
from trainctl.reports.reliability_plot import reliability_figure

FIGURE_DPI = 80  # a page shows figures at about the width of a screen: sharper only makes the file larger
SMALL_DPI = 40  # each member of a group: a 16×4 inch figure becomes 640×160 pixels
ANNOTATED_CLASSES = 25  # up to this many classes, each cell of the heat map shows its count
LABELLED_CLASSES = 60  # up to this many, each row and column is labelled with its class name
THUMBNAIL_PIXELS = 64  # the longer side of a sample's thumbnail
SHORT_NAMES = 6  # class names up to this long fit fixed margins; longer ones get matplotlib's constrained
# layout, which fits the margins to them but costs a third of a second per figure


def png_of(figure: Any, dpi: int = FIGURE_DPI) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def curves_png(curves: list[Curves], dpi: int = FIGURE_DPI) -> bytes:
    """The figure `trainctl plot` draws (loss, monitored metric, learning rate), as a PNG."""
    return png_of(curves_figure(curves), dpi)


def reliability_png(record: dict[str, Any], name: str) -> bytes:
    """The reliability diagram `train` saves (before and after temperature scaling when calibrated)."""
    return png_of(reliability_figure(record, name))


def confusion_png(confusion: np.ndarray, class_names: list[str]) -> bytes:
    """Rows the true classes, columns the predicted ones; the colour each cell's share of its row
    (the recall, on the diagonal), so a small class's confusions show as plainly as a large one's."""
    from matplotlib.figure import Figure

    n = len(class_names)
    class_names = [literal(name) for name in class_names]
    side = min(14.0, max(4.5, 0.45 * n + 2.5))
    fitted = n <= LABELLED_CLASSES and max(map(len, class_names)) > SHORT_NAMES
    figure = Figure(figsize=(side + 1.2, side), layout="constrained" if fitted else None)
    axes = figure.subplots()
    if not fitted:
        figure.subplots_adjust(left=0.9 / (side + 1.2), right=0.97, bottom=0.9 / side, top=1 - 0.45 / side)
    totals = confusion.sum(axis=1, keepdims=True)
    shares = np.divide(confusion, totals, out=np.zeros(confusion.shape, dtype=np.float64), where=totals > 0)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true class's samples")
    if n <= ANNOTATED_CLASSES:
        for (true, predicted), count in np.ndenumerate(confusion):
            if count:
                colour = "white" if shares[true, predicted] > 0.5 else "black"
                axes.text(predicted, true, str(count), ha="center", va="center", color=colour, fontsize="small")
    if n <= LABELLED_CLASSES:
        axes.set_xticks(range(n), labels=class_names, rotation=45 if max(map(len, class_names)) > 3 else 0, ha="right")
        axes.set_yticks(range(n), labels=class_names)
    axes.set(xlabel="predicted class", ylabel="true class", title="confusion matrix (test split, counts)")
    return png_of(figure)


def thumbnail_png(path: Path) -> bytes | None:
    """A sample's image file at THUMBNAIL_PIXELS on its longer side, as a PNG; None when it cannot
    be read (moved, deleted, not an image). Small images are enlarged without smoothing, so each
    pixel the model saw stays visible."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError):
        return None
    scale = THUMBNAIL_PIXELS / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    buffer = io.BytesIO()
    image.resize(size, resample).save(buffer, format="PNG")
    return buffer.getvalue()
