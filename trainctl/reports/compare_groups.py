"""`trainctl compare GROUP GROUP ...`: groups of runs (`train --repeats`) side by side, each test
metric as its mean ± sd over the group's seeds, and for two groups their differences with
intervals (`trainctl.reports.significance`). cv folders are laid out the same way, over their
folds (`trainctl.reports.compare_cv`)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainctl.reports.compare import _lookup, cell_text, config_differences
from trainctl.reports.groups import format_number, read_group, summarise
from trainctl.reports.significance import PairComparison, compare_two_groups
from trainctl.reports.tables import markdown_table, side_by_side

TITLE = "test metrics of each group: mean ± sd over its seeds (best checkpoints)"


@dataclass
class GroupComparison:
    folders: list[Path]
    labels: list[str]
    keys: list[str]  # config keys that differ between the groups
    configs: list[dict[str, Any]]
    summaries: list[dict[str, Any]]
    metrics: list[str]
    pair: PairComparison | None  # for two groups
    title: str = TITLE
    unit: str = "seeds"  # what each group's values are over: seeds, or a cv folder's folds
    all_key: str = "seeds"  # the summary's list of every seed (or fold) of the group

    def done(self, summary: dict[str, Any]) -> str:
        return f"{len(summary['done'])} of {len(summary[self.all_key])}"


def folder_labels(folders: list[Path], default_suffix: str) -> list[str]:
    """Each folder's name, less the suffix a default folder of its kind ends with (`-repeats`,
    `-cv`); with the parent folder where the names repeat."""
    names = [folder.name.removesuffix(default_suffix) for folder in folders]
    if len(set(names)) == len(names):
        return names
    return [f"{folder.parent.name}/{folder.name}" for folder in folders]


def metric_names(summaries: list[dict[str, Any]]) -> list[str]:
    """The test metrics of any of the summaries, in the order they first appear."""
    return list(dict.fromkeys(name for summary in summaries for name in summary["test"]))


def compare_groups(folders: list[Path]) -> GroupComparison:
    records = [read_group(folder) for folder in folders]
    configs = [record.config for record in records]
    summaries = [summarise(folder, record) for folder, record in zip(folders, records)]
    metrics = metric_names(summaries)
    labels = folder_labels(folders, "-repeats")
    pair = compare_two_groups(folders, labels) if len(folders) == 2 else None
    return GroupComparison(folders, labels, config_differences(configs), configs, summaries, metrics, pair)


def _cell(stats: dict[str, Any] | None) -> str:
    if stats is None:
        return "—"
    spread = "" if stats["sd"] is None else f" ± {format_number(stats['sd'])}"
    return f"{format_number(stats['mean'])}{spread}"


def _grid(comparison: GroupComparison) -> list[list[str]]:
    rows = [[key, *(cell_text(_lookup(config, key)) for config in comparison.configs)] for key in comparison.keys]
    rows.append([f"{comparison.unit} done", *(comparison.done(s) for s in comparison.summaries)])
    rows += [
        [f"test/{name}", *(_cell(s["test"].get(name)) for s in comparison.summaries)] for name in comparison.metrics
    ]
    return rows


def group_tables(comparison: GroupComparison, width: int) -> list[Any]:
    from rich.text import Text

    out = side_by_side(comparison.title, comparison.labels, _grid(comparison), [], width)
    if comparison.pair is not None:
        out += [Text(""), *(Text(line) for line in comparison.pair.lines())]
    return out


def group_markdown(comparison: GroupComparison) -> str:
    text = markdown_table(comparison.title, comparison.labels, _grid(comparison), [])
    if comparison.pair is not None:
        text += "\n" + "\n".join(comparison.pair.lines()) + "\n"
    return text


def group_json(comparison: GroupComparison) -> str:
    data = {
        "keys": comparison.keys,
        "groups": [
            {
                "group": folder.name,
                "path": str(folder),
                "label": label,
                "config": {key: _lookup(config, key) for key in comparison.keys},
                "summary": summary,
            }
            for folder, label, config, summary in zip(
                comparison.folders, comparison.labels, comparison.configs, comparison.summaries
            )
        ],
        "differences": comparison.pair.to_dict() if comparison.pair is not None else None,
    }
    return json.dumps(data, indent=2, default=str) + "\n"


def group_csv(comparison: GroupComparison) -> str:
    """One row per group: its folder and label, the differing keys, seeds done, each metric's mean and sd."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = [f"test/{name}/{part}" for name in comparison.metrics for part in ("mean", "sd")]
    writer.writerow(["group", "label", *comparison.keys, f"{comparison.unit}_done", *columns])
    for folder, label, config, summary in zip(
        comparison.folders, comparison.labels, comparison.configs, comparison.summaries
    ):
        cells = []
        for name in comparison.metrics:
            stats = summary["test"].get(name)
            cells += (
                ["", ""] if stats is None else [repr(stats["mean"]), "" if stats["sd"] is None else repr(stats["sd"])]
            )
        keys = ["" if _lookup(config, k) is None else cell_text(_lookup(config, k)) for k in comparison.keys]
        writer.writerow([folder.name, label, *keys, len(summary["done"]), *cells])
    return buffer.getvalue()
