"""`trainctl compare`: runs side by side, by the config keys that differ and their test metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from trainctl.components.metrics import goal
from trainctl.errors import UserError
from trainctl.runs import RunFolder
from trainctl.training_state import differing_keys


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


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def comparison_rows(folders: list[RunFolder]) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """The differing config keys, the metric names, and one row per run."""
    configs = [folder.read_config() for folder in folders]
    ignore = {"name", "output_dir", "sweep"}
    differing = sorted({
        key for config in configs[1:] for key in differing_keys(configs[0], config) if key.split(".")[0] not in ignore
    })
    rows, metric_names = [], []
    for folder, config in zip(folders, configs):
        flat = _flatten(config)
        summary = json.loads(folder.summary_path.read_text()) if folder.summary_path.is_file() else {}
        test = summary.get("test", {})
        metrics = {k: v for k, v in test.items() if isinstance(v, float)}
        metric_names += [k for k in metrics if k not in metric_names]
        rows.append({"run": folder.path.name, "config": {k: flat.get(k) for k in differing},
                     "metrics": metrics, "best_epoch": summary.get("best_epoch")})
    return differing, metric_names, rows


def best_per_metric(metric_names: list[str], rows: list[dict[str, Any]]) -> dict[str, float]:
    best = {}
    for name in metric_names:
        values = [row["metrics"][name] for row in rows if name in row["metrics"]]
        if values:
            best[name] = (min if goal(name) == "min" else max)(values)
    return best


def comparison_table(folders: list[RunFolder]) -> Table:
    differing, metric_names, rows = comparison_rows(folders)
    best = best_per_metric(metric_names, rows)
    table = Table(title="test metrics of each run's best checkpoint (* best)", title_justify="left")
    table.add_column("run", style="cyan", no_wrap=True)
    for key in differing:
        table.add_column(key)
    for name in metric_names:
        table.add_column(name, justify="right")
    for row in rows:
        cells = [row["run"], *(yaml.safe_dump(row["config"][k], default_flow_style=True).strip().removesuffix("...").strip()
                               for k in differing)]
        for name in metric_names:
            value = row["metrics"].get(name)
            mark = "*" if value is not None and value == best.get(name) and len(rows) > 1 else " "
            cells.append("—" if value is None else f"{value:.4f}{mark}")
        table.add_row(*cells)
    return table
