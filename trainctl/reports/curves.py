"""Loss curves as an image: train and validation loss per epoch, the monitored metric with its
best epoch marked, and the learning rate the schedule gave.

Uses matplotlib's object API (no pyplot, no global backend state) and imports it only here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

Curves = tuple[str, list[dict[str, Any]], str]  # label, metrics.jsonl rows, monitored key

LOG_SCALE_SPAN = 30  # positive values whose largest is this many times the smallest are drawn on a log axis
LEGEND_LEFT = 0.81  # where the legend starts, in figure width, right of both axes
LEGEND_LABEL_FIT = 34  # characters of a run label that fit beside the axes at that width
BEST_EPOCH = "best-epoch"  # the gid of each run's best-epoch marker


def literal(label: str) -> str:
    """A name as matplotlib draws it as written: a `$` would otherwise start math text."""
    return label.replace("$", r"\$")


def plot_runs(runs: list[Curves], path: Path) -> Any:
    """Draw every run's curves on one figure and save it (.png, .svg or .pdf); returns the figure."""
    figure = curves_figure(runs)
    figure.savefig(path, dpi=100)
    return figure


def curves_figure(runs: list[Curves]) -> Any:
    """Loss axes (solid: train, dashed: validation), metric axes and learning-rate axes, one colour per
    run, a marker at each run's best epoch of its monitored metric, and one legend outside the axes."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    # Labels that fit the right fifth get a fixed layout; longer ones (plot's overlays) matplotlib's
    # constrained layout, which fits the legend to them but costs a quarter of a second per figure.
    fitted = max(len(label) for label, _, _ in runs) > LEGEND_LABEL_FIT
    figure = Figure(figsize=(16, 4), layout="constrained" if fitted else None)
    loss_axes, metric_axes, lr_axes = figure.subplots(1, 3)
    if not fitted:
        figure.subplots_adjust(left=0.06, right=LEGEND_LEFT - 0.02, bottom=0.13, top=0.9, wspace=0.25)
    monitors = list(dict.fromkeys(monitor for _, _, monitor in runs))
    handles = []
    for index, (label, rows, monitor) in enumerate(runs):
        colour = f"C{index % 10}"
        epochs = [row["epoch"] for row in rows]
        values = [row.get(monitor, math.nan) for row in rows]
        loss_axes.plot(epochs, [row["train/loss"] for row in rows], color=colour)
        loss_axes.plot(epochs, [row["val/loss"] for row in rows], color=colour, linestyle="--")
        metric_axes.plot(epochs, values, color=colour)
        # The rate each epoch ended with (metrics.jsonl's lr): a per-batch warm-up shows as its epochs' ends.
        lr_axes.plot(epochs, [row.get("lr", math.nan) for row in rows], color=colour, marker=".")
        best = best_epoch_index(values, monitor)
        if best is not None:
            metric_axes.plot(
                [epochs[best]],
                [values[best]],
                marker="*",
                markersize=13,
                color=colour,
                markeredgecolor="black",
                linestyle="none",
                gid=BEST_EPOCH,
            )
        handles.append(Line2D([], [], color=colour, label=literal(label)))
    handles += [
        Line2D([], [], color="grey", label="train loss"),
        Line2D([], [], color="grey", linestyle="--", label="val loss"),
        Line2D(
            [],
            [],
            color="grey",
            marker="*",
            markersize=11,
            markeredgecolor="black",
            linestyle="none",
            label="best epoch",
        ),
    ]
    loss_axes.set(xlabel="epoch", ylabel="loss", title="loss (solid: train, dashed: val)")
    metric_axes.set(xlabel="epoch", ylabel=" / ".join(monitors), title=" / ".join(monitors))
    lr_axes.set(xlabel="epoch", ylabel="lr", title="learning rate (at each epoch's end)")
    for axes in (loss_axes, metric_axes, lr_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if _spans_decades(axes):
            axes.set_yscale("log")
        axes.grid(alpha=0.3)
    # Outside the axes, so it never covers a curve, however many runs and however long their labels.
    if fitted:
        figure.legend(handles=handles, loc="outside right upper", fontsize="small")
    else:
        figure.legend(handles=handles, loc="upper left", bbox_to_anchor=(LEGEND_LEFT, 0.9), fontsize="small")
    return figure


def best_epoch_index(values: list[float], monitor: str) -> int | None:
    """The first epoch with the best value of the monitored metric (lowest for losses and errors)."""
    from trainctl.components.metrics import goal

    finite = [i for i, value in enumerate(values) if isinstance(value, (int, float)) and math.isfinite(value)]
    if not finite:
        return None
    pick = min if goal(monitor) == "min" else max
    return pick(finite, key=values.__getitem__)


def _spans_decades(axes: Any) -> bool:
    """All of the axes' values are positive and the largest is over LOG_SCALE_SPAN times the smallest."""
    values = [float(y) for line in axes.get_lines() for y in line.get_ydata()]
    finite = [value for value in values if math.isfinite(value)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > LOG_SCALE_SPAN
