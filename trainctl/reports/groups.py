"""A group: one config trained with several seeds (`trainctl train CONFIG --repeats N`), and
what its runs say together.

    GROUP/group.json    the config (less its seed), the seeds, and each run's status and error
    GROUP/base.yaml     the config every run trains; each run sets its own seed
    GROUP/seed-0/ ...   one ordinary run folder per seed
    GROUP/summary.json  per test metric: mean, standard deviation (ddof=1), a 95% Student t
                        interval of the mean, and each seed's value

No torch here: compare reads groups too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainctl.errors import UserError
from trainctl.files import write_atomically
from trainctl.reports.statistics import LEVEL, mean_interval
from trainctl.run_contents import read_summary

GROUP_FILE = "group.json"
SUMMARY_FILE = "summary.json"
BASE_CONFIG = "base.yaml"
KIND = "trainctl group"  # group.json says what it is, so no other folder is taken for a group
INTERVAL_METHOD = "Student t interval of the mean over seeds (sd with ddof=1)"


def run_folder_name(seed: int) -> str:
    return f"seed-{seed}"


def is_group(path: Path) -> bool:
    return (path / GROUP_FILE).is_file()


@dataclass
class GroupRun:
    seed: int
    folder: str
    status: str  # done | failed | interrupted | waiting
    error: str = ""
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "folder": self.folder,
            "status": self.status,
            "error": self.error,
            "seconds": self.seconds,
        }


@dataclass
class GroupRecord:
    """group.json: what the group trains and how far each of its runs got."""

    name: str
    config: dict[str, Any]  # the config every run trains, without its seed
    runs: list[GroupRun]

    @property
    def seeds(self) -> list[int]:
        return [run.seed for run in self.runs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "name": self.name,
            "seeds": self.seeds,
            "config": self.config,
            "runs": [run.to_dict() for run in self.runs],
        }


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomically((json.dumps(data, indent=2) + "\n").encode("utf-8"), path)


def read_group(folder: Path) -> GroupRecord:
    """group.json, checked: a damaged or foreign file is one line naming it."""
    path = folder / GROUP_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{folder}: not a group folder (no {GROUP_FILE} in it)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: cannot read the group record: {error}; the file is damaged") from None
    problem = _record_problem(data)
    if problem:
        raise UserError(f"{path}: {problem}; the file is damaged (trainctl train --repeats writes it)")
    runs = [GroupRun(r["seed"], r["folder"], r["status"], r.get("error") or "", r.get("seconds")) for r in data["runs"]]
    return GroupRecord(data["name"], data["config"], runs)


def _record_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or data.get("kind") != KIND:
        return f"not a {KIND} record"
    if not isinstance(data.get("name"), str) or not isinstance(data.get("config"), dict):
        return "no name or config in it"
    runs = data.get("runs")
    if not isinstance(runs, list) or not all(
        isinstance(r, dict)
        and isinstance(r.get("seed"), int)
        and not isinstance(r.get("seed"), bool)
        and isinstance(r.get("folder"), str)
        and "/" not in r["folder"]
        and r["folder"] not in ("", ".", "..")
        and isinstance(r.get("status"), str)
        for r in runs
    ):
        return "runs is not a list of {seed, folder, status}"
    return None


# ---- the summary over seeds ----------------------------------------------------------------------


def test_metrics(run_path: Path) -> dict[str, float]:
    """A finished run's test metrics (the numbers of summary.json's test record); {} when unfinished."""
    test = read_summary(run_path / "summary.json").get("test", {})
    return {key: value for key, value in test.items() if isinstance(value, float)}  # the epoch is an int


def member_values(members: list[tuple[Any, Path]]) -> dict[str, dict[Any, float]]:
    """Each test metric's value per member (key, run folder), over the runs that finished, in the
    order metrics first appear: a group's seeds, a cross-validation's folds."""
    values: dict[str, dict[Any, float]] = {}
    for key, run_path in members:
        for name, value in test_metrics(run_path).items():
            values.setdefault(name, {})[key] = value
    return values


def metric_statistics(values: dict[str, dict[Any, float]], per: str) -> dict[str, dict[str, Any]]:
    """Per metric: n, mean, sd, the 95% interval of the mean and each member's value (under `per`)."""
    metrics = {}
    for name, per_member in values.items():
        stats = mean_interval(list(per_member.values()))
        metrics[name] = {
            "n": stats.n,
            "mean": stats.mean,
            "sd": stats.sd,
            "interval": None if stats.low is None else [stats.low, stats.high],
            per: {str(key): value for key, value in per_member.items()},
        }
    return metrics


def metric_values(folder: Path, record: GroupRecord) -> dict[str, dict[int, float]]:
    """Each test metric's value per seed, over the runs that finished."""
    return member_values([(run.seed, folder / run.folder) for run in record.runs])


def summarise(folder: Path, record: GroupRecord) -> dict[str, Any]:
    """summary.json: per test metric the mean, sd, 95% interval of the mean and each seed's value."""
    metrics = metric_statistics(metric_values(folder, record), "per_seed")
    return {
        "name": record.name,
        "seeds": record.seeds,
        "done": [run.seed for run in record.runs if run.status == "done"],
        "failed": {str(run.seed): run.error for run in record.runs if run.status == "failed"},
        "level": LEVEL,
        "interval_method": INTERVAL_METHOD,
        "test": metrics,
    }


def format_number(value: float) -> str:
    return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e5 else f"{value:.4g}"


def summary_rows(summary: dict[str, Any], per: str = "per_seed") -> list[list[str]]:
    """One row per test metric: mean ± sd, the interval of the mean, the lowest and highest value
    (of the seeds; of the folds for cv, per="per_fold"), n."""
    rows = []
    for name, stats in summary["test"].items():
        spread = "" if stats["sd"] is None else f" ± {format_number(stats['sd'])}"
        interval = "—" if stats["interval"] is None else "[{}, {}]".format(*map(format_number, stats["interval"]))
        values = list(stats[per].values())
        rows.append(
            [
                name,
                f"{format_number(stats['mean'])}{spread}",
                interval,
                format_number(min(values)),
                format_number(max(values)),
                str(stats["n"]),
            ]
        )
    return rows


def summary_table(summary: dict[str, Any], per: str = "per_seed", unit: str = "seeds") -> Any:
    from trainctl.reports.tables import Column, table

    columns = [
        Column("metric"),
        Column("mean ± sd", justify="right"),
        Column(f"{summary['level']:.0%} interval", justify="right"),
        Column("min", justify="right"),
        Column("max", justify="right"),
        Column(unit, justify="right"),
    ]
    return table(columns, summary_rows(summary, per))
