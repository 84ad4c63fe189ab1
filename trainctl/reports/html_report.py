"""`trainctl report`: one self-contained HTML page about a run, a group of seeds, a cross-validation
or a sweep.

Which page a folder gets is decided by the first kind in KINDS whose mark the folder holds; a new
kind of folder is one more FolderKind: its mark and the function that builds its section. (Order
matters: a group or a sweep holds run folders too, so the kinds with a file of their own come first.)
The report reads files only: it imports neither torch nor the data sets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainctl.errors import UserError
from trainctl.reports.cross_validation import is_cv
from trainctl.reports.groups import is_group
from trainctl.reports.html_page import Html, page

REPORT_FILE = "report.html"


@dataclass(frozen=True)
class FolderKind:
    name: str  # as the page's title and messages say it
    mark: str  # what a folder of this kind holds, for the message about a folder of no kind
    matches: Callable[[Path], bool]
    section: Callable[[Path], Html]


def _run_section(path: Path) -> Html:
    from trainctl.reports.report_run import run_section

    return run_section(path)


def _group_section(path: Path) -> Html:
    from trainctl.reports.report_collections import group_section

    return group_section(path)


def _cv_section(path: Path) -> Html:
    from trainctl.reports.report_collections import cv_section

    return cv_section(path)


def _sweep_section(path: Path) -> Html:
    from trainctl.reports.report_collections import sweep_section

    return sweep_section(path)


def _is_run(path: Path) -> bool:
    return (path / "config.yaml").is_file()


def _holds_runs(path: Path) -> bool:
    return any(path.glob("*/config.yaml"))


KINDS = (
    FolderKind("group", "group.json", is_group, _group_section),
    FolderKind("cross-validation", "cv.json", is_cv, _cv_section),
    FolderKind("run", "config.yaml", _is_run, _run_section),
    FolderKind("sweep", "run folders", _holds_runs, _sweep_section),
)


def folder_kind(folder: Path) -> FolderKind:
    """The kind of report a folder gets; a missing folder or one of no kind is one line."""
    if not folder.exists():
        raise UserError(f"{folder}: not found")
    if not folder.is_dir():
        names = [kind.name for kind in KINDS]
        raise UserError(f"{folder}: not a folder; give a {', '.join(names[:-1])} or {names[-1]} folder")
    for kind in KINDS:
        if kind.matches(folder):
            return kind
    marks = [f"{kind.mark} (a {kind.name} folder)" for kind in KINDS]
    raise UserError(f"{folder}: nothing to report on: no {', '.join(marks[:-1])} or {marks[-1]} in it")


def default_output(folder: Path) -> Path:
    """Beside what it describes: reports of several folders never collide, and it travels with them."""
    return folder / REPORT_FILE


def report_page(folder: Path, kind: FolderKind) -> str:
    """The whole HTML document for `folder`."""
    from trainctl import __version__

    body = kind.section(folder)
    written = time.strftime("%Y-%m-%d %H:%M:%S")
    subtitle = f"{kind.name} folder {folder}; report written {written} by trainctl {__version__}"
    return page(f"trainctl report: {kind.name} {folder.resolve().name}", body, subtitle=subtitle)
