"""Validated readers of the files a run folder holds besides checkpoints: config.yaml,
metrics.jsonl, summary.json and data.json.

Every command that reads a run folder (compare, plot, eval, predict, --resume) reads these files
through here, so a damaged or hand-edited file is one line naming the file (and line) and what is
wrong with it, never a traceback deep in the command that happened to touch it. No torch here:
compare and plot stay fast.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TypeGuard

from trainctl.errors import UserError

REQUIRED_METRICS = ("epoch", "train/loss", "val/loss")  # what every epoch's row holds
SECTIONS = ("data", "model", "loss", "optimizer", "scheduler", "trainer", "logging")  # mappings when present


def read_run_config(path: Path) -> dict[str, Any]:
    """A run's config.yaml as plain data, with the config loader's file errors (empty, invalid
    YAML at line:column, not a mapping) and its sections mappings, as compare and plot read them;
    validating every value against the schema is `load_config`'s job (eval, predict, resume)."""
    from trainctl.yaml_source import load_config_file

    data, source = load_config_file(path)
    for section in SECTIONS:
        value = data.get(section)
        if value is not None and not isinstance(value, dict):
            raise UserError(
                f"{source.where((section,))}: {section} is {_short(value)}, not a mapping; this run "
                "folder's config is damaged (trainctl writes the resolved config there)"
            )
    return data


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


def monitor_of(config: dict[str, Any], path: Path) -> str:
    """The metric a run monitors, as its saved config names it."""
    trainer = config.get("trainer")
    monitor = trainer.get("monitor") if isinstance(trainer, dict) else None
    if not isinstance(monitor, str) or not monitor:
        raise UserError(
            f"{path}: trainer.monitor is missing or not a metric name; this run folder's config "
            "is damaged (trainctl writes the resolved config there)"
        )
    return monitor


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read {what}: {error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}:{error.lineno}: not valid JSON ({error.msg}); the file is damaged") from None


def _number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def read_metrics_rows(path: Path) -> list[dict[str, Any]]:
    """One row per epoch, epochs rising. A last line cut short (a kill mid-write) is left out: that
    epoch is trained again on resume. Any other line that is not an epoch's row is an error."""
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read the metrics: {error}") from None
    lines = text.split("\n")
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        torn = number == len(lines) and not text.endswith("\n")  # written only up to the kill
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            if torn:
                break
            raise UserError(f"{path}:{number}: not a JSON row of metrics ({error.msg}); the file is damaged") from None
        problem = _metrics_row_problem(row, rows[-1]["epoch"] if rows else 0)
        if problem:
            raise UserError(f"{path}:{number}: {problem}; the file is damaged")
        rows.append(row)
    return rows


def _metrics_row_problem(row: Any, previous_epoch: int) -> str | None:
    if not isinstance(row, dict):
        return f"a {type(row).__name__}, not an object of metric names and values"
    missing = [key for key in REQUIRED_METRICS if key not in row]
    if missing:
        return f"no {', '.join(missing)} in the row"
    epoch = row["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch <= previous_epoch:
        return f"epoch {epoch!r} does not follow epoch {previous_epoch}"
    bad = [key for key, value in row.items() if not _number_or_none(value)]
    if bad:
        return f"{bad[0]} is {row[bad[0]]!r}, not a number"
    return None


def read_summary(path: Path) -> dict[str, Any]:
    """summary.json ({} when the run has none yet): the test record must be metric names and values."""
    if not path.is_file():
        return {}
    summary = _read_json(path, "the summary")
    if not isinstance(summary, dict):
        raise UserError(f"{path}: a JSON {type(summary).__name__}, not the object trainctl writes; the file is damaged")
    test = summary.get("test", {})
    if not isinstance(test, dict):
        raise UserError(f"{path}: test is {test!r}, not an object of metrics; the file is damaged")
    best_epoch = summary.get("best_epoch")
    if best_epoch is not None and (not isinstance(best_epoch, int) or isinstance(best_epoch, bool)):
        raise UserError(f"{path}: best_epoch is {best_epoch!r}, not an epoch number; the file is damaged")
    return summary


# ---- data.json: what predict needs to read inputs and outputs without the training data ----------


def read_data_description(path: Path) -> dict[str, Any]:
    """data.json, checked against what `PreparedData.description()` writes before predict uses it."""
    if not path.is_file():
        raise UserError(
            f"{path.parent}: no data.json in the run (it was trained before predict existed); train it again"
        )
    saved = _read_json(path, "the data description")
    problem = _description_problem(saved)
    if problem:
        raise UserError(f"{path}: {problem}; the file is damaged or incomplete (trainctl train writes it)")
    return saved


def _description_problem(saved: Any) -> str | None:
    if not isinstance(saved, dict):
        return f"a JSON {type(saved).__name__}, not an object"
    for key in ("task", "input_shape", "target_mean", "target_std"):
        if key not in saved:
            return f"no {key!r} in it"
    return (
        _task_problem(saved["task"])
        or _shape_problem(saved["input_shape"], "input_shape")
        or _scale_problem(saved)
        or _table_problem(saved.get("table"))
        or _image_problem(saved.get("image"))
        or _text_problem(saved.get("text"))
        or _audio_problem(saved.get("audio"))
        or _standardization_problem(saved.get("standardization"), saved["input_shape"])
        or _class_counts_problem(saved.get("class_counts"), saved["task"])
    )


def _is_count(value: Any, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _task_problem(task: Any) -> str | None:
    if not isinstance(task, dict) or task.get("kind") not in ("classification", "regression"):
        return "task.kind is not classification or regression"
    if not _is_count(task.get("num_classes")) or not _is_count(task.get("num_targets"), 1):
        return "task.num_classes and task.num_targets are not counts"
    names = task.get("class_names")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return "task.class_names is not a list of names"
    if task["kind"] == "classification" and (task["num_classes"] < 2 or len(names) != task["num_classes"]):
        return f"task.class_names has {len(names)} names for {task['num_classes']} classes"
    return None


def _class_counts_problem(counts: Any, task: dict[str, Any]) -> str | None:
    """class_counts (training samples per class), which runs trained before it was saved lack."""
    if counts is None:
        return None
    if not isinstance(counts, list) or len(counts) != task["num_classes"] or not all(map(_is_count, counts)):
        return f"class_counts is {_short(counts)}, not a count per class ({task['num_classes']} classes)"
    return None


def _is_shape(value: Any) -> TypeGuard[list[int]]:
    return isinstance(value, list) and bool(value) and all(_is_count(size) for size in value)


def _shape_problem(shape: Any, key: str) -> str | None:
    if not _is_shape(shape):
        return f"{key} is {shape!r}, not a list of sizes"
    return None


def _scale_problem(saved: dict[str, Any]) -> str | None:
    for key in ("target_mean", "target_std"):
        value = saved[key]
        if value is not None and (not isinstance(value, list) or not all(_is_finite(v) for v in value)):
            return f"{key} is {value!r}, not a list of numbers"
    if saved["task"]["kind"] == "regression" and (saved["target_mean"] is None) != (saved["target_std"] is None):
        return "target_mean and target_std must be given together"
    return None


def _table_problem(table: Any) -> str | None:
    if table is None:
        return None
    if (
        not isinstance(table, dict)
        or not isinstance(table.get("columns"), list)
        or not isinstance(table.get("numeric"), dict)
        or not isinstance(table.get("categories"), dict)
    ):
        return "table is not an object of columns, numeric and categories"
    columns = table["columns"]
    for name in columns:
        if not isinstance(name, str):
            return f"table.columns holds {name!r}, not a column name"
        scale = table["numeric"].get(name)
        categories = table["categories"].get(name)
        if scale is not None:
            if not isinstance(scale, list) or len(scale) != 2 or not all(map(_is_finite, scale)) or scale[1] <= 0:
                return f"table.numeric.{name} is {scale!r}, not [mean, std]"
        elif not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            return f"table column {name!r} is neither numeric nor a list of categories"
    return None


def _image_problem(image: Any) -> str | None:
    if image is None:
        return None
    if not isinstance(image, dict):
        return "image is not an object"
    shape = image.get("source_shape")
    if not _is_shape(shape) or len(shape) != 3 or shape[0] not in (1, 3):
        return f"image.source_shape is {shape!r}, not [channels, height, width]"
    resize = image.get("resize")
    if resize is not None and (not _is_shape(resize) or len(resize) != 2):
        return f"image.resize is {resize!r}, not [height, width]"
    transforms = image.get("transforms", [])
    if not isinstance(transforms, list) or not all(
        isinstance(t, dict) and isinstance(t.get("name"), str) for t in transforms
    ):
        return "image.transforms is not a list of {name: ...} transforms"
    return None


def _audio_problem(audio: Any) -> str | None:
    if audio is None:
        return None
    if (
        not isinstance(audio, dict)
        or not _is_count(audio.get("sample_rate"), 1)
        or not _is_count(audio.get("length"), 1)
    ):
        return "audio is not an object with a sample_rate and a length"
    features = audio.get("features")
    if not isinstance(features, dict) or features.get("name") not in ("log_mel", "waveform"):
        return "audio.features is not {name: log_mel, ...} or {name: waveform}"
    if features["name"] == "log_mel" and not all(
        _is_count(features.get(key), 1) for key in ("n_mels", "n_fft", "hop_length")
    ):
        return "audio.features lacks the counts n_mels, n_fft and hop_length"
    width = features["n_mels"] if features["name"] == "log_mel" else 1
    for key in ("mean", "std"):
        values = audio.get(key)
        if not isinstance(values, list) or len(values) != width or not all(map(_is_finite, values)):
            return f"audio.{key} is not a list of {width} numbers"
    if not all(value > 0 for value in audio["std"]):
        return "audio.std holds a value that is not positive"
    transforms = audio.get("transforms")
    if not isinstance(transforms, list) or not all(
        isinstance(t, dict) and isinstance(t.get("name"), str) for t in transforms
    ):
        return "audio.transforms is not a list of {name: ...} transforms"
    return None


def _text_problem(text: Any) -> str | None:
    if text is None:
        return None
    if (
        not isinstance(text, dict)
        or not isinstance(text.get("vocabulary"), list)
        or not text["vocabulary"]
        or not all(isinstance(token, str) for token in text["vocabulary"])
    ):
        return "text has no vocabulary list"
    if (
        text.get("level") not in ("words", "chars")
        or not isinstance(text.get("lowercase"), bool)
        or not _is_count(text.get("length"), 1)
    ):
        return "text lacks its tokenizer level, lowercase or length"
    return None


def _standardization_problem(scale: Any, input_shape: list[int]) -> str | None:
    if scale is None:
        return None
    size = math.prod(input_shape)
    for key in ("mean", "std"):
        values = scale.get(key) if isinstance(scale, dict) else None
        if not isinstance(values, list) or len(values) != size or not all(map(_is_finite, values)):
            return f"standardization.{key} is not a list of {size} numbers (one per input feature)"
    if not all(value > 0 for value in scale["std"]):
        return "standardization.std holds a value that is not positive"
    return None
