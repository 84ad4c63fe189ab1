"""The learning-rate range test as an image: the loss against the rate on a log axis, raw and
smoothed, with the steepest point, the minimum and the suggestion marked.

Uses matplotlib's object API (no pyplot, no global backend state) and imports it only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainctl.training.lr_range import Suggestion, Sweep

HEADROOM = 0.08  # of the loss range, above and below the curves


def plot_range_test(sweep: Sweep, suggestion: Suggestion, path: Path) -> Any:
    """Draw the test and save it (.png, .svg or .pdf, by the path's suffix); returns the figure."""
    figure = range_test_figure(sweep, suggestion)
    figure.savefig(path, dpi=100)
    return figure


def range_test_figure(sweep: Sweep, suggestion: Suggestion) -> Any:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5))
    axes = figure.subplots()
    figure.subplots_adjust(left=0.09, right=0.97, bottom=0.11, top=0.92)  # fixed: constrained layout costs more
    rates, smoothed = sweep.rates, suggestion.smoothed
    axes.plot(rates, sweep.losses, color="C0", alpha=0.35, linewidth=1, label="loss (each step)")
    axes.plot(rates, smoothed, color="C0", linewidth=2, label="smoothed loss")
    if suggestion.lr is not None:
        marks = [
            (suggestion.steepest_lr, "v", "C2", f"steepest descent, lr={suggestion.steepest_lr:.2g}"),
            (suggestion.minimum_lr, "o", "C1", f"minimum, lr={suggestion.minimum_lr:.2g}"),
        ]
        for rate, marker, colour, label in marks:
            axes.plot(
                [rate],
                [smoothed[rates.index(rate)]],
                marker=marker,
                color=colour,
                markersize=9,
                linestyle="none",
                label=label,
            )
        axes.axvline(suggestion.lr, color="C3", linestyle="--", label=f"suggestion, lr={suggestion.lr:.2g}")
    axes.set_xscale("log")
    axes.set_xlim(sweep.settings.min_lr, sweep.settings.max_lr)
    # The raw losses of the last steps before a stop can be far above the rest: the smoothed curve
    # and the first losses set the scale.
    low = min(min(sweep.losses), min(smoothed))
    high = max(max(smoothed), sweep.losses[0])
    span = (high - low) or abs(high) or 1.0
    axes.set_ylim(low - HEADROOM * span, high + HEADROOM * span)
    axes.set(xlabel="learning rate (log scale)", ylabel="training loss", title=_title(sweep, suggestion))
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize="small")
    return figure


def _title(sweep: Sweep, suggestion: Suggestion) -> str:
    steps = f"{len(sweep.rates)} of {sweep.settings.steps} steps"
    if sweep.stop_reason:
        steps += f", stopped at lr={sweep.stopped_at:.2g}"
    found = f"suggested lr {suggestion.lr:.2g}" if suggestion.lr is not None else "no suggestion"
    return f"learning-rate range test: {found} ({steps})"
