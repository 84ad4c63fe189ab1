"""The sections of a report on a folder of several runs: a group of seeds (`train --repeats`) and a
sweep (or any folder of run folders). The numbers are the ones `train --repeats` and `compare`
print: the group's summary (`groups.summarise`) and the comparison (`compare.compare_runs`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainctl.components.metrics import goal
from trainctl.reports.compare import ComparedRun, cell_text, compare_runs, expand_runs
from trainctl.reports.groups import BASE_CONFIG, read_group, summarise, summary_rows
from trainctl.reports.html_page import (
    Html,
    element,
    number_cell,
    paragraph,
    png_image,
    preformatted,
    section,
    table,
)
from trainctl.reports.report_run import run_section
from trainctl.run_contents import monitor_of, read_summary
from trainctl.runs import RunFolder
from trainctl.yaml_source import dump_yaml

# ---- a group of seeds ----------------------------------------------------------------------------


def group_section(path: Path) -> Html:
    """The summary over seeds (mean ± sd, interval of the mean), each seed's test metrics, each
    seed's curves small, and the config every seed trained."""
    record = read_group(path)
    summary = summarise(path, record)
    level = summary["level"]
    done, total = len(summary["done"]), len(summary["seeds"])
    over = f"{done} seeds" if done == total else f"{done} of {total} seeds"
    parts: list[Any] = []
    if summary["test"]:
        header = ["metric", "mean ± sd", f"{level:.0%} interval of the mean", "min", "max", "seeds"]
        parts.append(table(header, summary_rows(summary), caption=f"test metrics over {over}", class_="group-summary"))
        parts.append(paragraph(f"interval: {summary['interval_method']}", class_="note"))
    else:
        parts.append(paragraph("no run of the group has finished yet: no test metrics to summarise", class_="note"))
    parts.append(_per_seed_table(path, record, summary))
    members = [(f"seed {run.seed}", path / run.folder) for run in record.runs]
    parts.append(section("each seed's curves", member_curves(members, "no seed"), level=3))
    base = path / BASE_CONFIG
    config_text = base.read_text(encoding="utf-8") if base.is_file() else dump_yaml(record.config, sort_keys=False)
    parts.append(section("config (every seed's, less the seed)", preformatted(config_text), level=3))
    return section(f"group {record.name}: {over}", *parts, id_="group")


def _per_seed_table(path: Path, record: Any, summary: dict[str, Any]) -> Html:
    metrics = list(summary["test"])
    rows = []
    for run in record.runs:
        values = summary_values(summary, run.seed)
        best_epoch = (
            read_summary(path / run.folder / "summary.json").get("best_epoch") if run.status == "done" else None
        )
        rows.append(
            [
                number_cell(run.seed),
                run.folder,
                run.status + (f": {run.error}" if run.error else ""),
                number_cell(best_epoch),
                *(number_cell(values.get(name)) for name in metrics),
            ]
        )
    header = ["seed", "folder", "status", "best epoch", *(f"test/{name}" for name in metrics)]
    return section("each seed", table(header, rows, class_="per-seed"), level=3)


def summary_values(summary: dict[str, Any], seed: int) -> dict[str, float]:
    """One seed's test metrics, as the group's summary holds them."""
    return {
        name: stats["per_seed"][str(seed)] for name, stats in summary["test"].items() if str(seed) in stats["per_seed"]
    }


def member_curves(members: list[tuple[str, Path]], nobody: str) -> Html:
    """Each member run's curves, small, labelled; `nobody` names the members when none has an epoch yet."""
    from trainctl.reports.report_figures import SMALL_DPI, curves_png

    figures = []
    for label, folder in members:
        if not (folder / "config.yaml").is_file():
            continue
        member = RunFolder.open(folder)
        rows = member.read_metrics()
        if not rows:
            continue
        curves = curves_png([(label, rows, monitor_of(member.read_config(), member.config_path))], dpi=SMALL_DPI)
        figures.append(element("figure", png_image(curves, f"curves of {label}"), element("figcaption", label)))
    if not figures:
        return paragraph(f"{nobody} has finished an epoch yet", class_="note")
    return element("div", *figures, class_="small-figures")


# ---- cross-validation ------------------------------------------------------------------------------


def cv_section(path: Path) -> Html:
    """The summary over folds, each fold's test metrics, the confusion matrix and per-class metrics
    of every sample's out-of-fold prediction (oof.csv), each fold's curves small, and the config."""
    from trainctl.reports.cross_validation import OOF_FILE, read_cv
    from trainctl.reports.cross_validation import summarise as summarise_cv

    record = read_cv(path)
    summary = summarise_cv(path, record)
    done, total = len(summary["done"]), len(summary["runs"])
    over = f"{done} folds" if done == total else f"{done} of {total} folds"
    parts: list[Any] = []
    if summary["test"]:
        header = ["metric", "mean ± sd", f"{summary['level']:.0%} interval of the mean", "min", "max", "folds"]
        rows = summary_rows(summary, per="per_fold")
        parts.append(table(header, rows, caption=f"test metrics over {over}", class_="group-summary"))
        parts.append(paragraph(f"interval: {summary['interval_method']}", class_="note"))
    else:
        parts.append(paragraph("no fold has finished yet: no test metrics to summarise", class_="note"))
    metrics = list(summary["test"])
    fold_rows = [
        [
            number_cell(run.repeat) if record.repeats > 1 else number_cell(run.fold),
            run.folder,
            run.status + (f": {run.error}" if run.error else ""),
            *(number_cell(summary["test"][name]["per_fold"].get(run.folder)) for name in metrics),
        ]
        for run in record.runs
    ]
    first = "repeat" if record.repeats > 1 else "fold"
    header = [first, "folder", "status", *(f"test/{name}" for name in metrics)]
    parts.append(section("each fold", table(header, fold_rows, class_="per-seed"), level=3))
    out_of_fold = _out_of_fold_classes(path / OOF_FILE, [path / run.folder for run in record.runs], record.repeats)
    if out_of_fold is not None:
        parts.append(out_of_fold)
    members = [(run.folder, path / run.folder) for run in record.runs]
    parts.append(section("each fold's curves", member_curves(members, "no fold"), level=3))
    base = path / BASE_CONFIG
    config_text = base.read_text(encoding="utf-8") if base.is_file() else dump_yaml(record.config, sort_keys=False)
    parts.append(section("config (every fold's, less data.fold)", preformatted(config_text), level=3))
    return section(f"cross-validation {record.name}: {over}", *parts, id_="cv")


def _out_of_fold_classes(oof: Path, folds: list[Path], repeats: int) -> Html | None:
    """A classification cv's confusion matrix and per-class metrics over oof.csv (each sample once
    per repeat), with the class names of a finished fold's run; None for regression or no oof.csv."""
    from trainctl.reports.report_run import class_names_of, classes_part, counted_confusion
    from trainctl.reports.samples import read_samples

    finished = next((fold for fold in folds if (fold / "summary.json").is_file()), None)
    if finished is None or not oof.is_file():
        return None
    class_names = class_names_of(finished, read_summary(finished / "summary.json"))
    if class_names is None:
        return None
    samples = read_samples(oof, class_names)
    confusion = counted_confusion(samples.targets, samples.predictions, len(class_names))
    note = "every sample's prediction by the fold that held it out" + (
        f", once per repeat ({repeats})" if repeats > 1 else ""
    )
    return section(
        "out-of-fold predictions", paragraph(note, class_="note"), classes_part(confusion, class_names, 4), level=3
    )


# ---- a sweep, or any folder of runs --------------------------------------------------------------


@dataclass
class RankedRun:
    run: ComparedRun
    monitor: str
    value: float | None  # the best validation value of its monitor (summary.json's best_value); None unfinished


def sweep_section(path: Path) -> Html:
    """The runs ranked by their monitored validation value (the sweep's own ranking) with the config
    keys that set them apart and their test metrics (bold: best among comparable runs, as compare
    marks them), then the best run's whole section."""
    comparison = compare_runs(expand_runs([path]))
    scored = [_validation_score(run) for run in comparison.runs]
    monitors = sorted({entry.monitor for entry in scored})
    ranked = rank_by_validation(scored) if len(monitors) == 1 else []
    shown = ranked or scored
    header = ["rank", "run", *comparison.keys, "best epoch", f"{' / '.join(monitors)} (best epoch)"]
    header += [f"test/{name}" for name in comparison.metrics]
    rows = []
    for rank, entry in enumerate(shown, 1):
        run = entry.run
        rows.append(
            [
                number_cell(rank if ranked and entry.value is not None else None),
                run.folder.path.name,
                *(cell_text(run.config[key]) for key in comparison.keys),
                number_cell(run.best_epoch),
                number_cell(entry.value),
                *(number_cell(run.metrics.get(name), best=name in run.best) for name in comparison.metrics),
            ]
        )
    notes = [paragraph(note, class_="note") for note in comparison.notes]
    if not ranked:
        notes.append(
            paragraph(f"the runs monitor different metrics ({', '.join(monitors)}): not ranked", class_="note")
        )
    caption = f"{len(shown)} runs, best first by the monitored metric on the validation split; bold: best test value"
    parts: list[Any] = [table(header, rows, caption=caption, class_="leaderboard"), *notes]
    if ranked and ranked[0].value is not None:
        best = ranked[0].run
        parts.append(run_section(best.folder.path, level=3, title=f"the best run: {best.label}"))
    return section(f"{path.name}: leaderboard", *parts, id_="leaderboard")


def _validation_score(run: ComparedRun) -> RankedRun:
    monitor = monitor_of(run.folder.read_config(), run.folder.config_path)
    value = read_summary(run.folder.summary_path).get("best_value")
    if isinstance(value, (int, float)) and math.isfinite(value):
        return RankedRun(run, monitor, float(value))
    return RankedRun(run, monitor, None)


def rank_by_validation(scored: list[RankedRun]) -> list[RankedRun]:
    """Finished runs best first by their monitor's goal (ties by label), what a sweep ranks its trials
    by; then the unfinished ones."""
    finished = [entry for entry in scored if entry.value is not None]
    unfinished = [entry for entry in scored if entry.value is None]

    def key(entry: RankedRun) -> tuple[float, str]:
        assert entry.value is not None
        return (entry.value if goal(entry.monitor) == "min" else -entry.value, entry.run.label)

    return sorted(finished, key=key) + unfinished
