"""The reliability diagram of a classifier (Guo et al. 2017): in each confidence bin, the accuracy
against the mean confidence, beside the diagonal a calibrated model follows; the share of samples
per bin below it. A calibrated run shows its bins before temperature scaling too.

Uses matplotlib's object API (no pyplot, no global backend state) and imports it only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainctl.reports.curves import literal

RELIABILITY_FILE = "reliability.png"


def plot_reliability(record: dict[str, Any], name: str, path: Path) -> Any:
    """Draw the diagram of an evaluation record (its ece and calibration) and save it (by the path's suffix)."""
    figure = reliability_figure(record, name)
    figure.savefig(path, dpi=100)
    return figure


def reliability_figure(record: dict[str, Any], name: str) -> Any:
    from matplotlib.figure import Figure

    calibration = record["calibration"]
    figure = Figure(figsize=(6, 6.5))
    accuracy_axes, count_axes = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    figure.subplots_adjust(left=0.12, right=0.96, bottom=0.08, top=0.93, hspace=0.08)
    accuracy_axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    drawn = [("reliability", "C0", f"accuracy in each bin, ECE {record['ece']:.4f}")]
    if "reliability_before" in calibration:
        drawn = [
            ("reliability_before", "C1", f"before temperature scaling, ECE {calibration['ece_before']:.4f}"),
            ("reliability", "C0", f"with T = {calibration['temperature']:.3f}, ECE {record['ece']:.4f}"),
        ]
    width = 1 / calibration["bins"]
    for offset, (key, colour, label) in enumerate(drawn):
        bins = [b for b in calibration[key] if b["count"]]
        centres = [(b["lower"] + b["upper"]) / 2 for b in bins]
        accuracy_axes.plot(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            marker="o",
            color=colour,
            label=label,
        )
        total = sum(b["count"] for b in calibration[key])
        shift = (offset - (len(drawn) - 1) / 2) * width / len(drawn)
        count_axes.bar(
            [c + shift for c in centres],
            [b["count"] / total for b in bins],
            width=width / len(drawn),
            color=colour,
            alpha=0.7,
        )
    accuracy_axes.set(xlim=(0, 1), ylim=(0, 1.02), ylabel="accuracy")
    title = f"reliability of {literal(name)} ({record['split']} split, {calibration['bins']} bins)"
    accuracy_axes.set_title(title, fontsize="medium")
    accuracy_axes.grid(alpha=0.3)
    accuracy_axes.legend(fontsize="small", loc="upper left")
    count_axes.set(xlabel="confidence (probability of the predicted class)", ylabel="share of samples")
    count_axes.grid(alpha=0.3)
    return figure
