"""Loss curves as a PNG: train and validation loss per epoch, and the monitored metric.

Uses matplotlib's object API (no pyplot, no global backend state) and imports it only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

Curves = tuple[str, list[dict[str, Any]], str]  # label, metrics.jsonl rows, monitored key


def plot_runs(runs: list[Curves], path: Path) -> Any:
    """Draw every run's curves on one figure and save it; returns the figure."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from trainctl.components.metrics import goal

    figure = Figure(figsize=(11, 4))
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.13, top=0.9, wspace=0.2)
    loss_axes, metric_axes = figure.subplots(1, 2)
    monitors = sorted({monitor for _, _, monitor in runs})
    for index, (label, rows, monitor) in enumerate(runs):
        colour = f"C{index % 10}"
        epochs = [row["epoch"] for row in rows]
        loss_axes.plot(epochs, [row["train/loss"] for row in rows], color=colour, label=f"{label} train")
        loss_axes.plot(epochs, [row["val/loss"] for row in rows], color=colour, linestyle="--", label=f"{label} val")
        metric_axes.plot(epochs, [row.get(monitor) for row in rows], color=colour, label=label)
    loss_axes.set(xlabel="epoch", ylabel="loss", title="loss (solid: train, dashed: val)")
    metric_axes.set(xlabel="epoch", ylabel=" / ".join(monitors), title=" / ".join(monitors))
    rising = all(goal(monitor) == "max" for monitor in monitors)
    # Fixed legend places ("best" is slow to find): away from where the curves end up.
    for axes, place in ((loss_axes, "upper right"), (metric_axes, "lower right" if rising else "upper right")):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(fontsize="small", loc=place)
    figure.savefig(path, dpi=100)
    return figure
