"""A cross-validation folder (`trainctl cv CONFIG --folds K [--repeats R]`), and what its folds say
together.

    CV/cv.json          what was run: the folds, repeats and split seeds, the config (and its
                        sha256) every fold trains, and each fold's status and error
    CV/base.yaml        the config every fold trains; each fold's run adds data.fold and data.split_seed
    CV/fold-1/ ...      one ordinary run folder per fold (repeat-1/fold-1/ ... with --repeats)
    CV/summary.json     per test metric: mean, standard deviation (ddof=1), a 95% Student t interval
                        of the mean over the folds, and each fold's value
    CV/oof.csv          every sample's out-of-fold result: the folds' test_predictions.csv, each row
                        with its fold (and repeat) first, sorted by row

No torch here: compare reads cv folders too.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainctl.errors import UserError
from trainctl.files import write_atomically
from trainctl.reports.groups import member_values, metric_statistics, write_json
from trainctl.reports.samples import SAMPLES_FILE
from trainctl.reports.statistics import LEVEL

CV_FILE = "cv.json"
SUMMARY_FILE = "summary.json"
BASE_CONFIG = "base.yaml"
OOF_FILE = "oof.csv"
KIND = "trainctl cv"  # cv.json says what it is, so no other folder is taken for a cv folder
INTERVAL_METHOD = (
    "Student t interval of the mean over the folds (sd with ddof=1); the folds share training rows, "
    "so it is narrower than the spread of a model trained on new data"
)
FOLDER = re.compile(r"(repeat-[1-9]\d*/)?fold-[1-9]\d*")


def fold_folder(repeat: int, fold: int, repeats: int) -> str:
    """fold-2, or repeat-1/fold-2 when the split is repeated."""
    return f"fold-{fold}" if repeats == 1 else f"repeat-{repeat}/fold-{fold}"


def config_sha256(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode("utf-8")).hexdigest()


def is_cv(path: Path) -> bool:
    return (path / CV_FILE).is_file()


@dataclass
class FoldRun:
    repeat: int  # 1 to repeats
    fold: int  # 1 to folds
    split_seed: int  # the repeat's seed of the partition into folds
    folder: str
    status: str  # done | failed | interrupted | waiting
    error: str = ""
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "repeat": self.repeat,
            "fold": self.fold,
            "split_seed": self.split_seed,
            "folder": self.folder,
            "status": self.status,
            "error": self.error,
            "seconds": self.seconds,
        }


@dataclass
class CvRecord:
    """cv.json: what the cross-validation trains and how far each fold got."""

    name: str
    folds: int
    repeats: int
    split_seeds: list[int]  # one per repeat
    config: dict[str, Any]  # the config every fold trains (base.yaml), without data.fold
    runs: list[FoldRun]

    def definition(self) -> dict[str, Any]:
        """What decides the folds' results; a rerun in the same folder must give the same."""
        return {"folds": self.folds, "repeats": self.repeats, "split_seeds": self.split_seeds, "config": self.config}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "name": self.name,
            "folds": self.folds,
            "repeats": self.repeats,
            "split_seeds": self.split_seeds,
            "config_sha256": config_sha256(self.config),
            "config": self.config,
            "runs": [run.to_dict() for run in self.runs],
        }


def read_cv(folder: Path) -> CvRecord:
    """cv.json, checked: a damaged or foreign file is one line naming it."""
    path = folder / CV_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{folder}: not a cv folder (no {CV_FILE} in it)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: cannot read the cv record: {error}; the file is damaged") from None
    problem = _record_problem(data)
    if problem:
        raise UserError(f"{path}: {problem}; the file is damaged (trainctl cv writes it)")
    runs = [
        FoldRun(
            r["repeat"], r["fold"], r["split_seed"], r["folder"], r["status"], r.get("error") or "", r.get("seconds")
        )
        for r in data["runs"]
    ]
    return CvRecord(data["name"], data["folds"], data["repeats"], data["split_seeds"], data["config"], runs)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _record_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or data.get("kind") != KIND:
        return f"not a {KIND} record"
    if not isinstance(data.get("name"), str) or not isinstance(data.get("config"), dict):
        return "no name or config in it"
    if not (_is_count(data.get("folds")) and _is_count(data.get("repeats"))):
        return "folds and repeats are not counts"
    seeds = data.get("split_seeds")
    if not isinstance(seeds, list) or not all(_is_count(seed) for seed in seeds):
        return "split_seeds is not a list of seeds"
    runs = data.get("runs")
    if not isinstance(runs, list) or not all(
        isinstance(r, dict)
        and all(_is_count(r.get(key)) for key in ("repeat", "fold", "split_seed"))
        and isinstance(r.get("folder"), str)
        and FOLDER.fullmatch(r["folder"]) is not None
        and isinstance(r.get("status"), str)
        for r in runs
    ):
        return "runs is not a list of {repeat, fold, split_seed, folder, status}"
    return None


# ---- the summary over folds ---------------------------------------------------------------------


def fold_values(folder: Path, record: CvRecord) -> dict[str, dict[str, float]]:
    """Each test metric's value per fold folder, over the folds that finished."""
    return member_values([(run.folder, folder / run.folder) for run in record.runs])


def summarise(folder: Path, record: CvRecord) -> dict[str, Any]:
    """summary.json: per test metric the mean, sd, 95% interval of the mean and each fold's value."""
    metrics = metric_statistics(fold_values(folder, record), "per_fold")
    return {
        "name": record.name,
        "folds": record.folds,
        "repeats": record.repeats,
        "split_seeds": record.split_seeds,
        "runs": [run.folder for run in record.runs],
        "done": [run.folder for run in record.runs if run.status == "done"],
        "failed": {run.folder: run.error for run in record.runs if run.status == "failed"},
        "level": LEVEL,
        "interval_method": INTERVAL_METHOD,
        "test": metrics,
    }


# ---- out-of-fold results --------------------------------------------------------------------------


def write_oof(folder: Path, record: CvRecord) -> int:
    """oof.csv from the finished folds' test_predictions.csv: their columns as written, after a
    `fold` column (and `repeat` before it with --repeats), sorted by row (then repeat). Returns the
    number of rows written."""
    leading = ["repeat", "fold"] if record.repeats > 1 else ["fold"]
    columns: list[str] = []
    rows: list[tuple[int, int, dict[str, str]]] = []
    for run in record.runs:
        path = folder / run.folder / SAMPLES_FILE
        if run.status != "done" or not path.is_file():
            continue
        header, body = _read_samples_text(path)
        columns += [name for name in header if name not in columns]
        for fields in body:
            cells = dict(zip(header, fields))
            cells.update({"repeat": str(run.repeat), "fold": str(run.fold)})
            rows.append((int(cells["row"]), run.repeat, cells))
    rows.sort(key=lambda item: (item[0], item[1]))
    with io.StringIO(newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(leading + columns)
        for _, _, cells in rows:
            writer.writerow([cells.get(name, "") for name in leading + columns])
        write_atomically(handle.getvalue().encode("utf-8"), folder / OOF_FILE)
    return len(rows)


def _read_samples_text(path: Path) -> tuple[list[str], list[list[str]]]:
    """A fold's per-sample file as its header and rows of text, checked enough to be joined."""
    try:
        lines = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{path}: cannot read the per-sample results: {error}") from None
    if not lines or "row" not in lines[0]:
        raise UserError(f"{path}: no header with a row column; the file is damaged (train and eval write it)")
    header, body = lines[0], lines[1:]
    for number, fields in enumerate(body, 2):
        if len(fields) != len(header) or not fields[header.index("row")].isdigit():
            raise UserError(f"{path}:{number}: not a row of per-sample results; the file is damaged")
    return header, body


def write_summary(folder: Path, record: CvRecord) -> dict[str, Any]:
    summary = summarise(folder, record)
    write_json(folder / SUMMARY_FILE, summary)
    return summary
