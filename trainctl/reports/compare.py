"""`trainctl compare`: runs side by side, by the config keys that differ and their test metrics.

A value is ranked only against values it can be compared with: a test loss against runs with the
same loss config, a metric against runs evaluated on the same data and split.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainctl.components.metrics import goal
from trainctl.config.identity import differing_keys
from trainctl.errors import UserError
from trainctl.reports.tables import markdown_table, side_by_side
from trainctl.run_contents import monitor_of, read_summary
from trainctl.runs import RunFolder

FORMATS = ("table", "csv", "json", "markdown")
IGNORED_SECTIONS = {"name", "output_dir", "sweep"}  # differ between runs without changing what they learn
# data keys that change how batches are loaded, not which samples are evaluated
LOADER_KEYS = {"batch_size", "num_workers", "pin_memory", "persistent_workers"}
TIMESTAMP = re.compile(r"-\d{8}-\d{6}(-\d+)?$")  # what RunFolder.create appends to a run's name
TRIAL = re.compile(r"^trial-\d+$")  # a sweep's trial folder


def expand_runs(paths: list[Path]) -> list[RunFolder]:
    """Run folders as given; a folder that holds run folders (a sweep) stands for all of them."""
    folders = []
    for path in paths:
        if (path / "config.yaml").is_file():
            folders.append(RunFolder.open(path))
            continue
        inner = sorted(p for p in path.glob("*/config.yaml")) if path.is_dir() else []
        if not inner:
            raise UserError(f"{path}: not a run folder or a folder of runs (no config.yaml in it or below it)")
        folders += [RunFolder.open(p.parent) for p in inner]
    return folders


@dataclass
class ComparedRun:
    folder: RunFolder
    label: str  # short and distinct among the runs compared
    config: dict[str, Any]  # the differing keys' values (None where a run lacks the key)
    metrics: dict[str, float]  # test metrics of the best checkpoint
    best_epoch: int | None
    best: list[str] = field(default_factory=list)  # the metrics where this run is best among comparable runs


@dataclass
class Comparison:
    keys: list[str]  # config keys that differ between the runs
    metrics: list[str]
    runs: list[ComparedRun]
    notes: list[str]  # what was not ranked across all runs, and why


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _lookup(config: dict[str, Any], key: str) -> Any:
    """The value at a dotted key (a whole section where the key names one), or None."""
    value: Any = config
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def config_differences(configs: list[dict[str, Any]]) -> list[str]:
    """Dotted config keys whose values differ between any of the configs, in the first config's order."""
    keys = {
        key
        for config in configs[1:]
        for key in differing_keys(configs[0], config)
        if key.split(".")[0] not in IGNORED_SECTIONS
    }
    order = list(_flatten(configs[0]))
    return sorted(keys, key=lambda key: (order.index(key) if key in order else len(order), key))


def cell_text(value: Any) -> str:
    """A config value as YAML in one line, as a person writes it on the command line."""
    if value is None:
        return "—"
    return (
        yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip().removesuffix("...").strip()
    )


def run_labels(folders: list[RunFolder], configs: list[dict[str, Any]]) -> list[str]:
    """Short, distinct names for runs: a sweep trial with the values that set it apart
    ("trial-0003 (optimizer.lr=0.01)"); otherwise the folder name without its timestamp when that
    is unique, else the config's name with the values where the run departs from the others' common
    value; the folder's path where even that repeats."""
    keys = config_differences(configs) if len(configs) > 1 else []
    stems = [TIMESTAMP.sub("", folder.path.name) for folder in folders]
    if len(set(stems)) == len(stems):
        labels = [
            f"{stem}{_values(config, keys)}" if TRIAL.match(stem) else stem for stem, config in zip(stems, configs)
        ]
    else:
        common = {key: _common_value([_lookup(config, key) for config in configs]) for key in keys}
        labels = [
            f"{config.get('name', stem)}{_values(config, [k for k in keys if _lookup(config, k) != common[k]])}"
            for config, stem in zip(configs, stems)
        ]
    if len(set(labels)) == len(labels):
        return labels
    return [f"{folder.path.parent.name}/{folder.path.name}" for folder in folders]


def _values(config: dict[str, Any], keys: list[str]) -> str:
    """ " (key=value, ...)" for the keys the config has, or nothing."""
    values = [f"{key}={cell_text(_lookup(config, key))}" for key in keys if _lookup(config, key) is not None]
    return f" ({', '.join(values)})" if values else ""


def _common_value(values: list[Any]) -> Any:
    """The value most runs share, when one is shared by more runs than any other; else a marker that
    equals nothing, so every run names its own value."""
    texts = [json.dumps(value, sort_keys=True, default=str) for value in values]
    counts = sorted(((texts.count(text), text) for text in set(texts)), reverse=True)
    if counts[0][0] > 1 and (len(counts) == 1 or counts[0][0] > counts[1][0]):
        return values[texts.index(counts[0][1])]
    return object()


def _data_identity(config: dict[str, Any]) -> str:
    """Runs with equal identities are evaluated on the same samples."""
    data = {key: value for key, value in (config.get("data") or {}).items() if key not in LOADER_KEYS}
    return json.dumps(data, sort_keys=True, default=str)


def _comparable_group(metric: str, config: dict[str, Any]) -> str:
    if metric == "loss":  # a loss value means something only next to the same loss
        return json.dumps([config.get("loss"), _data_identity(config)], sort_keys=True, default=str)
    return _data_identity(config)


def run_curves(folders: list[RunFolder]) -> list[tuple[str, list[dict[str, Any]], str]]:
    """What `plot` draws of each run: its label, its metrics rows and the metric it monitors."""
    configs = [folder.read_config() for folder in folders]
    labels = run_labels(folders, configs)
    return [
        (label, folder.read_metrics(), monitor_of(config, folder.config_path))
        for label, folder, config in zip(labels, folders, configs)
    ]


def compare_runs(folders: list[RunFolder]) -> Comparison:
    configs = [folder.read_config() for folder in folders]
    keys = config_differences(configs)
    labels = run_labels(folders, configs)
    runs, metric_names = [], []
    for folder, config, label in zip(folders, configs, labels):
        summary = read_summary(folder.summary_path)
        metrics = {k: v for k, v in summary.get("test", {}).items() if isinstance(v, float)}
        metric_names += [k for k in metrics if k not in metric_names]
        runs.append(
            ComparedRun(folder, label, {k: _lookup(config, k) for k in keys}, metrics, summary.get("best_epoch"))
        )
    notes = _rank(runs, configs, metric_names)
    return Comparison(keys, metric_names, runs, notes)


def _rank(runs: list[ComparedRun], configs: list[dict[str, Any]], metric_names: list[str]) -> list[str]:
    """Mark each metric's best value within every group of comparable runs; say what was left unranked."""
    notes = []
    for name in metric_names:
        groups: dict[str, list[ComparedRun]] = {}
        for run, config in zip(runs, configs):
            if name in run.metrics:
                groups.setdefault(_comparable_group(name, config), []).append(run)
        pick = min if goal(name) == "min" else max
        for members in groups.values():
            if len(members) > 1:
                best = pick(run.metrics[name] for run in members)
                for run in members:
                    if run.metrics[name] == best:
                        run.best.append(name)
        if len(groups) > 1:
            why = "loss configs or data" if name == "loss" else "data or splits"
            notes.append(f"{name}: not ranked across runs with different {why}")
    return notes


def format_value(value: float) -> str:
    return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e5 else f"{value:.4g}"


def _grid(comparison: Comparison, mark: str) -> list[list[str]]:
    """Rows of the table with runs as columns: config keys, the best epoch, then test metrics."""
    rows = [[key, *(cell_text(run.config[key]) for run in comparison.runs)] for key in comparison.keys]
    rows.append(["best epoch", *("—" if run.best_epoch is None else str(run.best_epoch) for run in comparison.runs)])
    for name in comparison.metrics:
        cells = []
        for run in comparison.runs:
            value = run.metrics.get(name)
            cells.append(
                "—"
                if value is None
                else mark.replace("VALUE", format_value(value))
                if name in run.best
                else format_value(value)
            )
        rows.append([f"test/{name}", *cells])
    return rows


def _title(comparison: Comparison, marker: str) -> str:
    return (
        f"test metrics of each run's best checkpoint ({marker} best among comparable runs)"
        if any(run.best for run in comparison.runs)
        else "test metrics of each run's best checkpoint"
    )


def comparison_tables(comparison: Comparison, width: int) -> list[Any]:
    """Rich renderables for a console `width` wide: runs as columns, as many tables as it takes."""
    labels = [run.label for run in comparison.runs]
    return side_by_side(_title(comparison, "*"), labels, _grid(comparison, "VALUE*"), comparison.notes, width)


def comparison_markdown(comparison: Comparison) -> str:
    labels = [run.label for run in comparison.runs]
    return markdown_table(_title(comparison, "bold:"), labels, _grid(comparison, "**VALUE**"), comparison.notes)


def comparison_csv(comparison: Comparison) -> str:
    """One row per run: its folder and label, the differing config keys, the best epoch, the test
    metrics at full precision, and the metrics it is best at among comparable runs."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["run", "label", *comparison.keys, "best_epoch", *(f"test/{m}" for m in comparison.metrics), "best"]
    )
    for run in comparison.runs:
        writer.writerow(
            [
                run.folder.path.name,
                run.label,
                *("" if run.config[k] is None else cell_text(run.config[k]) for k in comparison.keys),
                "" if run.best_epoch is None else run.best_epoch,
                *(repr(run.metrics[m]) if m in run.metrics else "" for m in comparison.metrics),
                ";".join(run.best),
            ]
        )
    return buffer.getvalue()


def comparison_json(comparison: Comparison) -> str:
    return (
        json.dumps(
            {
                "keys": comparison.keys,
                "metrics": comparison.metrics,
                "runs": [
                    {
                        "run": run.folder.path.name,
                        "path": str(run.folder.path),
                        "label": run.label,
                        "config": run.config,
                        "best_epoch": run.best_epoch,
                        "test": run.metrics,
                        "best": run.best,
                    }
                    for run in comparison.runs
                ],
                "not_ranked": comparison.notes,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
