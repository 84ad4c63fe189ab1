"""Reading the example's own file format: JSON lines of labelled points.

Each non-blank line is one sample, an object with a list of numbers and a label:

    {"features": [0.12, -1.5], "label": "arm0"}

Every line is checked before anything trains; a problem is one line naming the file and the line,
as trainctl's own readers do. Plain Python: listings and validation never import torch or numpy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from trainctl.register import UserError

MAX_BYTES = 100 * 2**20  # a file far larger than an example needs is refused before it is read


@dataclass(frozen=True)
class Points:
    features: list[list[float]]  # one row per sample, all of one width
    labels: list[str]
    lines: list[int]  # the file's line of each sample


def read_points(path: Path) -> Points:
    text = _read_text(path)
    points = Points([], [], [])
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        features, label = _parse_line(line, f"{path}:{number}")
        if points.features and len(features) != len(points.features[0]):
            raise UserError(
                f"{path}:{number}: 'features' has {len(features)} numbers; line {points.lines[0]} has "
                f"{len(points.features[0])} and every sample needs the same number"
            )
        points.features.append(features)
        points.labels.append(label)
        points.lines.append(number)
    if not points.features:
        raise UserError(f'{path}: empty file (one JSON object per line: {{"features": [...], "label": ...}})')
    return points


def _read_text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise UserError(f"{path}: {path.stat().st_size:,} bytes; this reader takes files up to {MAX_BYTES:,}")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: a folder, not a JSON-lines file") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def _parse_line(line: str, where: str) -> tuple[list[float], str]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise UserError(f"{where}: not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise UserError(f"{where}: a JSON {type(record).__name__}; each line is an object with 'features' and 'label'")
    missing = [key for key in ("features", "label") if key not in record]
    if missing:
        raise UserError(f"{where}: no {' or '.join(map(repr, missing))} (each line has 'features' and 'label')")
    features, label = record["features"], record["label"]
    if not isinstance(features, list) or not features:
        raise UserError(f"{where}: 'features' is {json.dumps(features)}; it must be a non-empty list of numbers")
    for position, value in enumerate(features):
        # bool is an int to Python, and JSON's true is no feature value
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise UserError(f"{where}: 'features'[{position}] is {json.dumps(value)}; it must be a finite number")
    if not isinstance(label, str | int) or isinstance(label, bool) or label == "":
        raise UserError(f"{where}: 'label' is {json.dumps(label)}; it must be a non-empty string or an integer")
    return [float(value) for value in features], str(label)
