"""`trainctl init`: a commented config that trains as it is, with the task read from the data.

The data decides the task (a registered dataset's own, a CSV target column's by the rule
`data.task: auto` applies, class folders of images or audio), and the task decides the rest: a
classifier gets cross_entropy, accuracy, precision, recall and F1, and keeps its best epoch by
validation accuracy (by macro F1, with class weights, when the classes are imbalanced); a
regressor gets mse and its error metrics, and keeps the epoch of the lowest validation RMSE.
Every section has a comment saying what it is and where its alternatives are listed.

No torch: init reads the table, the image headers or the audio headers, and checks the text it
writes as `trainctl train` would read it before the file appears.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainctl.errors import UserError

DEFAULT_OUTPUT = Path("trainctl.yaml")
SOURCE_OPTIONS = ("--dataset", "--csv", "--images", "--audio")
# The largest class this many times the smallest: weighted so each class counts alike (the loss
# catalogue's advice for imbalanced classes), and macro F1 rather than accuracy picks the best epoch.
IMBALANCE_RATIO = 3.0
IMAGE_SIDE = 64  # larger images are resized to fit: the small CNN's head grows with the pixels
COMMENT_COLUMN = 26
# Datasets of the user's files, which init reads through an option of its own.
READ_BY_OPTION = {"csv": "--csv FILE --target COLUMN", "image_folder": "--images DIR", "audio_folder": "--audio DIR"}


@dataclass(frozen=True)
class Setting:
    key: str
    value: Any
    comment: str = ""
    note: str = ""  # a comment line of its own above the key, for what does not fit beside it


@dataclass
class DataFound:
    """What init read from the data: the data section and what the rest of the config follows from."""

    run_name: str
    described: str  # the data section's comment: what the data is
    settings: list[Setting]  # the data section, after `name`
    dataset: str
    task: str  # classification or regression
    inputs: str  # table, features, image, audio, text: which model reads them
    class_counts: list[int] | None = None  # samples per class, where init counted them
    samples: int | None = None  # how many there are, where init counted them
    notes: list[str] = field(default_factory=list)  # printed once the file is written


# ---- reading the data -----------------------------------------------------------------------------


def from_dataset(name: str) -> DataFound:
    """A registered dataset: its task from the registry, its required settings as placeholders."""
    from trainctl.components.registries import DATASETS

    if name not in DATASETS:
        raise UserError(f"--dataset: {DATASETS.unknown_name_message(name)}")
    if name in READ_BY_OPTION:
        raise UserError(f"--dataset {name}: reads your files; give {READ_BY_OPTION[name]} instead, and init reads them")
    entry = DATASETS.get(name)
    if entry.info.task_of is not None:
        raise UserError(
            f"--dataset {name}: its task comes from its files, which init cannot read; write its data section by hand"
        )
    settings, notes = [], []
    for key, info in entry.params.model_fields.items():
        if not info.is_required():
            continue
        if info.annotation is not str:
            raise UserError(
                f"--dataset {name}: needs data.{key}, which init cannot choose; write its data section by hand"
            )
        placeholder = "data" if key == "root" else f"{key}.csv" if key == "path" else "CHANGE-ME"
        settings.append(Setting(key, placeholder, "required: edit this before training"))
        notes.append(f"data.{key}: written as {placeholder!r}; set it to where your {name} files are before training")
    inputs = "image" if entry.info.images else "audio" if entry.info.audio else "text" if name == "text" else "features"
    return DataFound(
        run_name=name,
        described=f"{name}: {entry.summary}; other datasets: trainctl list-datasets",
        settings=settings,
        dataset=name,
        task=str(entry.info.task),
        inputs=inputs,
        notes=notes,
    )


def from_csv(path: Path, target: str | None, config_folder: Path) -> DataFound:
    """A table (CSV, TSV, Parquet): the target's task by the rule `task: auto` applies, rows with
    missing values dropped if there are any, every other column a feature."""
    from trainctl.data.tables import MAX_CLASSES_FOR_INTEGER_TARGETS, infer_task, read_table, stray_text_warning

    if not path.is_file():
        raise UserError(f"--csv {path}: {'a folder, not a table file' if path.is_dir() else 'file not found'}")
    table = read_table(path, key="--csv", text_columns=(target,) if target else ())
    if target is None:
        raise UserError(
            f"--csv {path}: give --target COLUMN, the column to predict; its columns: {', '.join(table.columns)}"
        )
    if target not in table.columns:
        raise UserError(f"--target: no column {target!r} in {path}; its columns: {', '.join(table.columns)}")
    features = [name for name in table.columns if name != target]
    if not features:
        raise UserError(f"--csv {path}: no columns besides the target {target!r} to predict it from")
    kept, on_missing = _rows_without_missing(table, [target, *features])
    task = infer_task(kept, target, "auto")
    names, counts = _classes(kept, target, path) if task == "classification" else ([], None)
    numeric = [name for name in features if kept.cells_of(name).numeric(kept.rows)]
    text = [name for name in features if name not in numeric]
    columns = "; ".join(
        part for part in (_listed(numeric, "numbers, standardised"), _listed(text, "text, one-hot encoded")) if part
    )
    settings = [
        Setting("path", _relative(path, config_folder), "relative to this file"),
        Setting("target", target, "the column to predict", note=f"features: every other column: {columns}"),
        Setting(
            "task",
            task,
            note=f"{task}: {_target_reason(kept, target)}. The rule (as task: auto applies it): a text "
            f"column, or whole numbers with at most {MAX_CLASSES_FOR_INTEGER_TARGETS} distinct values, are "
            "classes; other numbers are a regression target",
        ),
        Setting("on_missing", on_missing[0], on_missing[1]),
        Setting("batch_size", 32),
    ]
    notes = [
        message
        for name in [target, *features]
        if (warning := stray_text_warning(kept, name))
        for message in warning[:1]
    ]
    return DataFound(
        run_name=_run_name(path),
        described=f"a table, {len(kept)} rows of {path.name}{_classes_phrase(counts, names)}; "
        "other data: trainctl list-datasets, or trainctl init --images DIR / --audio DIR",
        settings=settings,
        dataset="csv",
        task=task,
        inputs="table",
        class_counts=counts,
        samples=len(kept),
        notes=notes,
    )


def _rows_without_missing(table: Any, used: list[str]) -> tuple[Any, tuple[str, str]]:
    """The table without rows that miss a used value, and the on_missing setting that says so."""
    from trainctl.data.tables import handle_missing

    kept = handle_missing(table, used, "drop")
    dropped = len(table) - len(kept)
    if not dropped:
        return kept, ("error", "or drop: rows with an empty or NA cell in a used column")
    if not len(kept):
        raise UserError(
            f"--csv {table.path}: every row misses a value in one of its columns; nothing is left to train on"
        )
    return kept, ("drop", f"{dropped} of {len(table)} rows miss a value: left out (error stops on them)")


def _classes(table: Any, target: str, path: Path) -> tuple[list[str], list[int]]:
    """The target's classes and how many rows each has; one class alone is refused, as training refuses it."""
    import numpy as np

    from trainctl.data.raw import classification_task
    from trainctl.data.tables import class_indices

    names, indices = class_indices(table, target)
    classification_task(tuple(names), f"--target: column {target!r} of {path}")
    return names, np.bincount(indices, minlength=len(names)).tolist()


def _target_reason(table: Any, target: str) -> str:
    """What in the target column decided the task, in words."""
    import numpy as np

    cells = table.cells_of(target)
    if not cells.numeric(table.rows):
        return f"column {target!r} holds text"
    present = table.rows[~cells.missing[table.rows]]
    values = cells.values[present]
    distinct = len(np.unique(values))
    if not np.all(values == np.round(values)):
        return f"column {target!r} holds numbers with fractions ({distinct} distinct values)"
    return f"column {target!r} holds {distinct} distinct whole numbers"


def from_images(root: Path, config_folder: Path) -> DataFound:
    """A folder of class sub-folders of images: counted, every header read (as training reads them),
    grayscale or colour, and a size the small CNN takes."""
    from trainctl.data.class_folders import image_class_folders
    from trainctl.data.images import image_sizes

    folders = image_class_folders(root, "--images")
    _require_two_classes(folders, "--images")
    files = [str(path) for files in folders.files for path in files]
    sizes = Counter((height, width) for width, height in image_sizes(files))
    (height, width), _ = sizes.most_common(1)[0]
    settings = [
        Setting(
            "root",
            _relative(root, config_folder),
            "relative to this file",
            note=f"{len(folders.classes)} classes, one sub-folder each ({folders.described()}), {len(files)} images",
        ),
        Setting("channels", _image_channels(files), "1: grayscale, 3: colour (every image is read so)"),
    ]
    size = _fitted_size(height, width)
    if len(sizes) > 1 or size != (height, width):
        why = (
            f"sizes differ ({len(sizes)} sizes, most often {width}×{height})"
            if len(sizes) > 1
            else f"{width}×{height} images"
        )
        settings.append(Setting("image_size", list(size), f"[height, width]: {why}, resized on reading"))
    settings += [
        Setting("batch_size", 32),
        Setting(
            "transforms",
            None,
            note="transforms: [normalize] (the training images' mean and std) unless given; augmentation, e.g. "
            "train: [{name: horizontal_flip}, {name: normalize}]: trainctl list-transforms",
        ),
    ]
    return DataFound(
        run_name=_run_name(root),
        described=f"an image folder (torchvision; pip install torchvision): {len(folders.classes)} classes; "
        "other data: trainctl list-datasets",
        settings=settings,
        dataset="image_folder",
        task="classification",
        inputs="image",
        class_counts=folders.counts(),
        samples=len(files),
    )


def _image_channels(files: list[str], sampled: int = 50) -> int:
    """1 when the images (up to `sampled` of them, spread over the classes) are all grayscale."""
    from PIL import Image

    step = max(1, len(files) // sampled)
    for path in files[::step]:
        with Image.open(path) as image:
            if image.mode not in ("1", "L", "I", "I;16", "F"):
                return 3
    return 1


def _fitted_size(height: int, width: int) -> tuple[int, int]:
    """The size the images are read at: theirs, or scaled to fit IMAGE_SIDE on the longer side."""
    longer = max(height, width)
    if longer <= IMAGE_SIDE:
        return height, width
    return max(1, round(height * IMAGE_SIDE / longer)), max(1, round(width * IMAGE_SIDE / longer))


def from_audio(root: Path, config_folder: Path) -> DataFound:
    """A folder of class sub-folders of audio files: counted, every header read, and the clip
    length most files have."""
    import statistics

    from trainctl.data.audio import read_header
    from trainctl.data.class_folders import audio_class_folders

    folders = audio_class_folders(root, "--audio")
    _require_two_classes(folders, "--audio")
    headers = [read_header(str(path)) for files in folders.files for path in files]
    rates = Counter(header.sample_rate for header in headers)
    rate = min(16000, rates.most_common(1)[0][0])
    seconds = statistics.median(header.frames / header.sample_rate for header in headers)
    duration = max(0.1, round(seconds, 1))
    settings = [
        Setting(
            "root",
            _relative(root, config_folder),
            "relative to this file",
            note=f"{len(folders.classes)} classes, one sub-folder each ({folders.described()}), {len(headers)} files",
        ),
        Setting("sample_rate", rate, "every file is resampled to this rate"),
        Setting("duration", duration, "seconds, the median clip's: longer clips cut, shorter padded"),
        Setting("features", {"name": "log_mel", "n_mels": 40}, "or {name: waveform}"),
        Setting("batch_size", 32),
    ]
    return DataFound(
        run_name=_run_name(root),
        described=f"an audio folder (soundfile): {len(folders.classes)} classes; other data: trainctl list-datasets",
        settings=settings,
        dataset="audio_folder",
        task="classification",
        inputs="audio",
        class_counts=folders.counts(),
        samples=len(headers),
    )


def _require_two_classes(folders: Any, option: str) -> None:
    if len(folders.classes) < 2:
        raise UserError(
            f"{option} {folders.root}: one class folder ({folders.classes[0]}); a classifier needs at least two "
            "classes, one sub-folder each"
        )


# ---- the config text ------------------------------------------------------------------------------

# What each kind of input is read by: a model name and its settings, with what they mean.
MODELS: dict[str, tuple[str, str, list[Setting]]] = {
    "table": ("mlp", "fully connected layers over the encoded columns", [Setting("hidden", [64])]),
    "features": ("mlp", "fully connected layers over the features", [Setting("hidden", [128, 128])]),
    "image": (
        "cnn",
        "3×3 convolution blocks with pooling, then a fully connected head",
        [Setting("channels", [16, 32]), Setting("hidden", 64)],
    ),
    "audio": ("audio_cnn", "convolution blocks over the log-mel frames", [Setting("channels", [16, 32, 64])]),
    "text": ("embedding_bag", "the mean of the word vectors, then a linear head", [Setting("embedding_dim", 64)]),
}
EPOCHS = {"table": 40, "features": 20, "image": 20, "audio": 30, "text": 10}
LEARNING_RATES = {"table": 0.01, "features": 0.003, "image": 0.003, "audio": 0.003, "text": 0.01}
VAL_FRACTION = 0.1
# Accuracy and F1 move in steps of 1/n on n validation samples: on fewer than this, many epochs tie
# and the first of them is kept, so the loss, which keeps moving, picks the best epoch instead.
FEW_VALIDATION_SAMPLES = 100
LOSSES = {
    "classification": ("cross_entropy", "takes logits: the model must not end in softmax"),
    "regression": ("mse", "mean squared error of the standardised target; huber for outliers"),
}


def config_text(found: DataFound, config_path: Path, command: str) -> str:
    """The whole file: the schema modeline, how to train it, then each section under its comment."""
    from trainctl.components.metrics import DEFAULT_METRICS

    task = found.task
    model, model_summary, model_settings = MODELS[found.inputs]
    loss, loss_comment = LOSSES[task]
    imbalanced = _imbalanced(found.class_counts)
    loss_settings = [Setting("name", loss, loss_comment)]
    if imbalanced:
        counts = found.class_counts or []
        loss_settings.append(
            Setting(
                "class_weight", "balanced", f"classes from {min(counts)} to {max(counts)} samples: each counts alike"
            )
        )
    monitor, monitor_comment = _monitor(found, imbalanced)
    lines = [
        *_modeline(config_path),
        f"# Written by `{command}`; it trains as it is:",
        f"#   trainctl train {config_path.as_posix()}",
        "# Change any key here or with --set on the command line (trainctl validate checks a change).",
        f"name: {_yaml(found.run_name)}",
        _with_comment("seed: 0", "model initialisation, dropout and shuffling"),
        "",
        *_section(
            "data",
            found.described,
            [
                Setting("name", found.dataset),
                *found.settings,
                Setting("val_fraction", VAL_FRACTION, "picks the best epoch"),
                Setting("test_fraction", 0.2, "scored once, with the best checkpoint, at the end"),
            ],
        ),
        *_section(
            "model",
            f"{model}, {model_summary}; others: trainctl list-models",
            [Setting("name", model), *model_settings],
        ),
        *_section("loss", f"{loss}; see trainctl list-losses --task {task}", loss_settings),
        *_section(
            "optimizer",
            "adam; others: trainctl list-optimizers",
            [Setting("name", "adam"), Setting("lr", LEARNING_RATES[found.inputs])],
        ),
        *_section(
            "scheduler",
            "cosine decays the rate to 0 over the run; others: trainctl list-schedulers, or null for a constant rate",
            [Setting("name", "cosine")],
        ),
        *_section(
            "trainer",
            "epochs, device and the best epoch's metric; early_stopping, precision, ema and more: trainctl schema",
            [
                Setting("epochs", EPOCHS[found.inputs]),
                Setting("device", "auto", "cuda, then mps, then cpu"),
                Setting("monitor", monitor, monitor_comment),
            ],
        ),
        "# metrics: scored on the validation and test splits; others: trainctl list-metrics",
        f"metrics: {_yaml(DEFAULT_METRICS[task])}",
        _with_comment("output_dir: runs", "each run gets a new folder here (relative to the working folder)"),
    ]
    return "\n".join(lines) + "\n"


def _monitor(found: DataFound, imbalanced: bool) -> tuple[str, str]:
    """The metric whose best validation value picks the best epoch, and why that one."""
    if found.task == "regression":
        return "val/rmse", "the best epoch: lowest RMSE, in the target's units"
    validation = round(found.samples * VAL_FRACTION) if found.samples is not None else None
    if validation is not None and validation < FEW_VALIDATION_SAMPLES:
        return "val/loss", f"the best epoch: {validation} validation samples are too few to rank epochs by accuracy"
    if imbalanced:
        return "val/f1", "the best epoch: macro F1, which weighs every class alike"
    return "val/accuracy", "which epoch is best (its checkpoint is best.pt)"


def _imbalanced(counts: list[int] | None) -> bool:
    return bool(counts) and max(counts or [0]) >= IMBALANCE_RATIO * max(1, min(counts or [0]))


def _modeline(config_path: Path) -> list[str]:
    """The schema line of the shipped configs, pointing to the nearest trainctl.schema.json above the
    config; where there is none, to one beside it, with the command that writes it."""
    from trainctl.config.schema import MODELINE, SCHEMA_FILE

    folder = config_path.resolve().parent
    for above in (folder, *folder.parents):
        if (above / SCHEMA_FILE).is_file():
            return [MODELINE + Path(os.path.relpath(above / SCHEMA_FILE, folder)).as_posix()]
    return [
        MODELINE + SCHEMA_FILE,
        f"# (for editors: trainctl schema -o {(config_path.parent / SCHEMA_FILE).as_posix()})",
    ]


def _section(key: str, description: str, settings: list[Setting]) -> list[str]:
    lines = [f"# {key}: {description}", f"{key}:"]
    for setting in settings:
        if setting.note:
            lines.append(f"  # {setting.note}")
        if setting.value is not None:  # None: left to its default, which the note describes
            lines.append(_with_comment(f"  {setting.key}: {_yaml(setting.value)}", setting.comment))
    return [*lines, ""]


def _with_comment(line: str, comment: str) -> str:
    if not comment:
        return line
    return f"{line.ljust(COMMENT_COLUMN - 1)} # {comment}" if len(line) < COMMENT_COLUMN - 1 else f"{line}  # {comment}"


_PLAIN = re.compile(r"[A-Za-z_][\w./-]*")


def _yaml(value: Any) -> str:
    """A value as YAML flow text; a string is written plain where YAML reads it back as that string
    (so `yes`, `1.0` or `a: b` get quotes)."""
    import yaml

    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and yaml.safe_load(value) == value:
            return value
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted one
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_yaml(key)}: {_yaml(item)}" for key, item in value.items()) + "}"
    return str(value)


def _relative(path: Path, folder: Path) -> str:
    """A data path as the config writes it: relative to the config's folder (data paths are)."""
    try:
        return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()
    except ValueError:  # another drive (Windows): no relative path
        return path.resolve().as_posix()


def _run_name(path: Path) -> str:
    from trainctl.config.loading import default_run_name

    return default_run_name(path.resolve())


def _listed(columns: list[str], what: str, shown: int = 8) -> str:
    if not columns:
        return ""
    more = f" and {len(columns) - shown} more" if len(columns) > shown else ""
    return f"{', '.join(columns[:shown])}{more} ({what})"


def _classes_phrase(counts: list[int] | None, names: list[str]) -> str:
    if not counts:
        return ""
    listed = ", ".join(f"{name} {count}" for name, count in list(zip(names, counts))[:6])
    more = f" and {len(names) - 6} more" if len(names) > 6 else ""
    return f", {len(counts)} classes: {listed}{more}"


# ---- init -----------------------------------------------------------------------------------------


@dataclass
class Written:
    path: Path
    found: DataFound

    def summary(self) -> str:
        found = self.found
        model = MODELS[found.inputs][0]
        return f"{found.task} on {found.dataset} data with {LOSSES[found.task][0]} and model {model}"


def init_command(options: dict[str, Any]) -> str:
    """The command line that wrote a config, for its header: `trainctl init --csv x.csv --target y`."""
    words = ["trainctl", "init"]
    for option, value in options.items():
        if value is not None:
            words += [option, _shell_word(str(value))]
    return " ".join(words)


def _shell_word(text: str) -> str:
    import shlex

    return shlex.quote(text)


def chosen_source(dataset: str | None, csv: Path | None, images: Path | None, audio: Path | None) -> str:
    """Which data option was given: exactly one, or none (the default dataset, digits)."""
    given = [option for option, value in zip(SOURCE_OPTIONS, (dataset, csv, images, audio)) if value is not None]
    if len(given) > 1:
        raise UserError(f"give one of {', '.join(SOURCE_OPTIONS)}, not {' and '.join(given)}")
    return given[0] if given else "--dataset"


def init(
    output: Path,
    *,
    dataset: str | None = None,
    csv: Path | None = None,
    target: str | None = None,
    images: Path | None = None,
    audio: Path | None = None,
    force: bool = False,
) -> Written:
    """Write a starter config for the data to `output` (never over a file, unless `force`); the
    text is checked as `trainctl train` reads a config before the file appears."""
    from trainctl.config.loading import load_config
    from trainctl.files import check_output_path, new_output

    source = chosen_source(dataset, csv, images, audio)
    if target is not None and source != "--csv":
        raise UserError("--target: names the column to predict of a --csv table; give --csv FILE too")
    check_output_path(output, "--output", force)
    folder = output.parent
    if source == "--csv":
        assert csv is not None
        found = from_csv(csv, target, folder)
    elif source == "--images":
        assert images is not None
        found = from_images(images, folder)
    elif source == "--audio":
        assert audio is not None
        found = from_audio(audio, folder)
    else:
        found = from_dataset(dataset or "digits")
    options = {"--dataset": dataset, "--csv": csv, "--target": target, "--images": images, "--audio": audio}
    if output != DEFAULT_OUTPUT:
        options["-o"] = output
    text = config_text(found, output, init_command(options))
    with new_output(output, "--output", force) as written:
        written.write_text(text, encoding="utf-8")
        load_config(written)  # beside the output: its relative data paths resolve as they will there
    return Written(output, found)
