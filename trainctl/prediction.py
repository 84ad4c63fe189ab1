"""`trainctl predict`: a trained run's model on new inputs, with nothing but the run folder.

The run's data.json holds what training learned about the data (task, class names, the table's
feature encoding, the target's scale); config.yaml says how to rebuild the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from trainctl.data.table_files import PARQUET_SUFFIXES, TSV_SUFFIXES
from trainctl.errors import UserError
from trainctl.runs import RunFolder

if TYPE_CHECKING:
    from trainctl.config.loading import Config
    from trainctl.data.task import TargetPlan, Task


@dataclass
class Prediction:
    source: str  # file:line of the input row
    label: str | float  # class name, or value in the data's units
    score: float | None  # probability of that class (None for regression)
    scores: dict[str, float]  # every class's probability
    warning: str | None = None  # why this prediction deserves no trust, if it does not


def saved_data(run: RunFolder) -> dict[str, Any]:
    from trainctl.run_contents import read_data_description

    return read_data_description(run.path / "data.json")


@dataclass
class RunModel:
    """A run's network loaded from a checkpoint, with what turns its outputs into predictions."""

    module: torch.nn.Module  # in eval mode, on the CPU
    task: Task
    output_kind: str  # what the loss reads: logits, log-probabilities, values
    layout: str  # how the outputs are laid out (the target plan's layout)
    epoch: int | None = None  # the checkpoint's epoch
    weights: str = "trained"  # what the checkpoint's model entry holds: trained, ema or swa (averaged) weights
    temperature: float | None = None  # a calibrated run's (trainer.calibrate), which its probabilities apply
    plan: TargetPlan | None = None  # how the loss reads targets (eval --data encodes a file's targets so)


def load_run_model(run_dir: str | Path, checkpoint: str = "best") -> RunModel:
    """A run's model rebuilt from config.yaml and data.json (no training data needed), with the
    checkpoint's weights (torch.load with weights_only=True)."""
    from trainctl.config.loading import load_config

    run = RunFolder.open(run_dir)
    return load_model(run, load_config(run.config_path), saved_data(run), checkpoint)


def build_run_model(config: Config, saved: dict[str, Any]) -> RunModel:
    """A run's model as its config and data.json build it, with freshly initialised weights."""
    from trainctl.components.losses import profile
    from trainctl.components.models import ModelContext
    from trainctl.components.registries import MODELS
    from trainctl.data.task import Task, plan_targets

    task = Task(
        saved["task"]["kind"],
        saved["task"]["num_classes"],
        saved["task"]["num_targets"],
        tuple(saved["task"]["class_names"]),
    )
    loss = profile(config.loss.name, config.loss.params)
    plan = plan_targets(loss.target, task, loss.layout)
    vocabulary = len(saved["text"]["vocabulary"]) if saved.get("text") else 0
    context = ModelContext(tuple(saved["input_shape"]), plan.num_outputs, vocabulary)
    model = MODELS.get(config.model.name).build(context, config.model.params)
    model.eval()
    return RunModel(model, task, loss.input, plan.layout, plan=plan)


def load_model(run: RunFolder, config: Config, saved: dict[str, Any], checkpoint: str) -> RunModel:
    """The run's model with a checkpoint's `model` entry: the weights eval uses (EMA or SWA averages
    in a run that averages them)."""
    from trainctl.training.calibration import checkpoint_temperature
    from trainctl.training.checkpoint import load_checkpoint, load_model_state

    loaded = build_run_model(config, saved)
    path = run.checkpoint_path(checkpoint)
    state = load_checkpoint(path)
    load_model_state(loaded.module, state, path)
    loaded.epoch = state.get("epoch")
    averaging = state.get("averaging")  # a run with trainer.ema or trainer.swa: which weights `model` holds
    loaded.weights = str(averaging.get("weights", "trained")) if isinstance(averaging, dict) else "trained"
    loaded.temperature = checkpoint_temperature(state, path)  # a calibrated run's (trainer.calibrate)
    return loaded


def predict(run_dir: str | Path, inputs: list[Path], checkpoint: str = "best") -> list[Prediction]:
    from trainctl.config.loading import load_config

    run = RunFolder.open(run_dir)
    config = load_config(run.config_path)
    saved = saved_data(run)
    if saved.get("audio"):
        inputs = _audio_files(inputs)
    _check_input_files(inputs)
    read = _input_reader(run, saved, config.dataset.name)
    loaded = load_model(run, config, saved, checkpoint)
    predictions: list[Prediction] = []
    for file in inputs:
        x, sources = read(file, saved, config.dataset.params)
        with torch.no_grad():
            outputs = loaded.module(x)
        found = _read_outputs(outputs, sources, loaded, saved)
        if saved.get("text"):
            _warn_without_known_tokens(found, x, saved["text"]["level"])
        predictions += found
    return predictions


def _input_reader(run: RunFolder, saved: dict[str, Any], dataset: str) -> Callable[..., tuple[torch.Tensor, list[str]]]:
    """How this run's inputs are read from files: by what data.json says training did to them. Rows
    of numbers are read for trainctl's own datasets (iris, digits, ...); a plugin's dataset has its
    own format, which predict has no reader for."""
    from trainctl.components.registries import DATASETS

    readers = {"table": _table_inputs, "text": _text_inputs, "audio": _audio_inputs, "image": _image_inputs}
    kind = next((kind for kind in readers if saved.get(kind)), None)
    if kind is not None:
        return readers[kind]
    if dataset not in DATASETS or not DATASETS.get(dataset).source.is_builtin:
        raise UserError(
            f"{run.path}: predict reads input files for runs trained on csv tables, image, text or audio "
            f"datasets; this run was trained on {dataset!r}, whose inputs it cannot read from files"
        )
    if saved.get("standardization") is None:
        raise UserError(
            f"{run.path}: this run was trained on {dataset!r} by an earlier trainctl, which did not save how "
            "it scaled the features (data.json has no standardization); train it again to predict with it"
        )
    return _feature_inputs


def _check_input_files(inputs: list[Path]) -> None:
    """Each input is a file: a folder (of text, images or tables) is named, with what to give instead."""
    for file in inputs:
        if file.is_dir():
            raise UserError(f"{file}: a folder; predict reads input files: name them (e.g. {file / '*'})")
        if not file.exists():
            raise UserError(f"{file}: file not found")


def _table_inputs(file: Path, saved: dict[str, Any], data: dict[str, Any]) -> tuple[torch.Tensor, list[str]]:
    """Every row of a CSV, encoded as in training; the rows are the inputs."""
    from trainctl.data.tables import FeatureEncoding, handle_missing, read_table

    encoding = FeatureEncoding.from_dict(saved["table"])
    table = read_table(file, key="")
    table = handle_missing(table, [c for c in encoding.columns if c in table.columns], "error")
    x = torch.as_tensor(encoding.transform(table, strict=True))
    return x, [f"{file}:{line}" for line in table.lines]


def _feature_inputs(file: Path, saved: dict[str, Any], data: dict[str, Any]) -> tuple[torch.Tensor, list[str]]:
    """Rows of numbers, one sample each, the dataset's features in its order (for a built-in dataset
    such as iris or digits: as scikit-learn's loader gives them), standardised as in training."""
    import numpy as np

    scale = saved["standardization"]
    values, lines = _number_rows(file, len(scale["mean"]))
    x = (values - np.array(scale["mean"])) / np.array(scale["std"])
    return torch.as_tensor(x.astype(np.float32).reshape(len(x), *saved["input_shape"])), [
        f"{file}:{line}" for line in lines
    ]


def _number_rows(file: Path, width: int) -> tuple[Any, list[int]]:
    """A CSV (TSV by extension) of `width` numbers a row, with or without a header row (a first row
    without a number in it)."""
    import csv

    import numpy as np

    rows, lines = [], []
    delimiter = "\t" if file.suffix.lower() in (".tsv", ".tab") else ","
    first = True
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            for row in reader:
                cells = [cell.strip() for cell in row]
                if not any(cells):
                    continue  # blank lines
                numbers = [_number(cell) for cell in cells]
                if first and all(number is None for number in numbers):  # a header: names, skipped
                    first = False
                    continue
                first = False
                if len(cells) != width:
                    raise UserError(
                        f"{file}:{reader.line_num}: {len(cells)} values; the model reads {width} features a row"
                    )
                if None in numbers:
                    column = numbers.index(None)
                    raise UserError(
                        f"{file}:{reader.line_num}: column {column + 1}: {cells[column]!r} is not a finite number"
                    )
                rows.append(numbers)
                lines.append(reader.line_num)
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{file}: cannot read as CSV: {error}") from None
    if not rows:
        raise UserError(f"{file}: no rows of numbers in it (one sample a row, {width} features)")
    return np.array(rows, dtype=np.float64), lines


def _number(cell: str) -> float | None:
    """A cell's finite value, or None."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# Read as tables (with a header); any other file: one text per line.
TABLE_SUFFIXES = (".csv", *TSV_SUFFIXES, *PARQUET_SUFFIXES)


def _text_inputs(file: Path, saved: dict[str, Any], data: dict[str, Any]) -> tuple[torch.Tensor, list[str]]:
    """Texts tokenized as in training: a table's text column (the run's data.text_column), or a plain
    text file, one example per line (blank lines skipped)."""
    from trainctl.data.text import TextEncoding

    if file.suffix.lower() in TABLE_SUFFIXES:
        numbered = _texts_of_table(file, data.get("text_column", "text"))
    else:
        numbered = _lines_of(file)
    x = TextEncoding.from_dict(saved["text"]).transform([text for _, text in numbered])
    return torch.as_tensor(x), [f"{file}:{number}" for number, _ in numbered]


def _lines_of(file: Path) -> list[tuple[int, str]]:
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{file}: file not found") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{file}: not UTF-8 text: {error}") from None
    numbered = [(number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise UserError(f"{file}: no text in it (one example per line)")
    return numbered


def _texts_of_table(file: Path, column: str) -> list[tuple[int, str]]:
    """The text column of a CSV/TSV, with each row's line; other columns (the label too) are ignored."""
    from trainctl.data.tables import read_table

    table = read_table(file, key="")
    if column not in table.columns:
        raise UserError(
            f"{file}: no column {column!r}, the run's data.text_column; its columns: "
            f"{', '.join(table.columns)} (a file not ending in {', '.join(TABLE_SUFFIXES)} "
            "is read as one text per line)"
        )
    numbered = [(line, text) for line, text in zip(table.lines, table.column(column)) if text.strip()]
    if not numbered:
        raise UserError(f"{file}: column {column!r} holds no text")
    return numbered


def _warn_without_known_tokens(predictions: list[Prediction], x: torch.Tensor, level: str) -> None:
    from trainctl.data.text import TextEncoding

    tokens = "words" if level == "words" else "characters"
    for prediction, unknown in zip(predictions, TextEncoding.without_known_tokens(x.numpy())):
        if unknown:
            prediction.warning = (
                f"none of its {tokens} is in the model's vocabulary: the prediction is a guess from the model's biases"
            )


def _image_inputs(file: Path, saved: dict[str, Any], data: dict[str, Any]) -> tuple[torch.Tensor, list[str]]:
    """One image file (PNG, JPEG, ...), read and transformed as the evaluation images were."""
    from trainctl.components.transforms import compose
    from trainctl.data.images import read_image

    image = saved["image"]
    if "transforms" not in image:
        raise UserError("this run was trained by an earlier trainctl that kept no image transforms; train it again")
    channels, height, width = image["source_shape"]
    resize = image["resize"]
    pixels = read_image(file, channels, tuple(resize) if resize else None)
    if pixels.shape[1:] != (height, width):
        raise UserError(
            f"{file}: the image is {pixels.shape[2]}×{pixels.shape[1]}, the model was trained on "
            f"{width}×{height} images"
        )
    inputs = compose(image["transforms"])(torch.from_numpy(pixels))
    return inputs.unsqueeze(0), [str(file)]


def _audio_files(inputs: list[Path]) -> list[Path]:
    """Audio files as given, a folder replaced by the audio files below it (sorted)."""
    from trainctl.data.audio import audio_files_below

    files: list[Path] = []
    for given in inputs:
        if given.is_dir():
            found = audio_files_below(given)
            if not found:
                raise UserError(f"{given}: no audio files in it")
            files += found
        else:
            files.append(given)
    return files


def _audio_inputs(file: Path, saved: dict[str, Any], data: dict[str, Any]) -> tuple[torch.Tensor, list[str]]:
    """One audio file, decoded, resampled, cut to the middle and turned into features as the
    evaluation clips were."""
    from trainctl.components.transforms import BUILDER
    from trainctl.data.audio_pipeline import features_of_file

    return features_of_file(file, saved["audio"], BUILDER), [str(file)]


def _read_outputs(
    outputs: torch.Tensor, sources: list[str], loaded: RunModel, saved: dict[str, Any]
) -> list[Prediction]:
    from trainctl.data.prepare import outputs_to_predictions, predicting_outputs
    from trainctl.training.calibration import class_probabilities

    task, layout = loaded.task, loaded.layout
    scale = [torch.tensor(saved[key]) if saved[key] is not None else None for key in ("target_mean", "target_std")]
    predicted = outputs_to_predictions(outputs, task, layout, *scale)  # what eval and training report, too
    if task.kind == "regression":
        return [Prediction(source, float(value[0]), None, {}) for source, value in zip(sources, predicted)]
    probabilities = class_probabilities(outputs, loaded.output_kind, layout, loaded.temperature)
    if probabilities is None:  # a regression loss on classes: the outputs are scores, not probabilities
        probabilities = predicting_outputs(outputs, layout)
    names = list(task.class_names)
    return [
        Prediction(source, names[int(k)], float(row[int(k)]), {name: float(p) for name, p in zip(names, row)})
        for source, k, row in zip(sources, predicted, probabilities)
    ]


def write_predictions(predictions: list[Prediction], path: Path) -> None:
    """As CSV (one column per class probability) or JSON, by the file's extension."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        records = [
            {"input": p.source, "prediction": p.label, "probability": p.score, "probabilities": p.scores}
            for p in predictions
        ]
        path.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
        return
    import csv

    classes = list(predictions[0].scores) if predictions else []
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["input", "prediction", *([f"p_{name}" for name in classes])])
        for p in predictions:
            writer.writerow([p.source, p.label, *(repr(p.scores[name]) for name in classes)])


# ---- eval --data: a new labelled file, read as predict reads inputs, with its targets -------------


@dataclass
class LabelledData:
    """A labelled file (or folder) encoded as the run's training data was: what `eval --data` scores."""

    inputs: torch.Tensor
    labels: Any  # numpy: the run's class indices, or target values (samples, targets)
    rows: Any  # numpy: each sample's row among the file's data rows (its index in a folder's files)
    files: list[str] | None = None  # image and audio folders: each sample's file, for the loss report
    lengths: torch.Tensor | None = None  # text: tokens per sample
    unused_columns: list[str] | None = None  # a table's columns the model does not read


def read_labelled(run: RunFolder, config: Config, saved: dict[str, Any], path: Path) -> LabelledData:
    """`path` read for the run: a table (CSV, TSV, Parquet) with the training columns and the target
    for a csv run, with the text and label columns for a text run; a folder of class sub-folders
    for an image_folder or audio_folder run."""
    params = config.dataset.params
    if not path.exists():
        raise UserError(f"--data {path}: {'folder' if saved.get('image') or saved.get('audio') else 'file'} not found")
    if saved.get("table"):
        return _labelled_table(path, saved, params)
    if saved.get("text"):
        return _labelled_text(path, saved, params)
    if saved.get("image") and config.dataset.name == "image_folder":
        return _labelled_folder(path, saved, params, "image")
    if saved.get("audio"):
        return _labelled_folder(path, saved, params, "audio")
    raise UserError(
        f"--data: scores labelled files of runs trained on csv tables, text, image_folder and audio_folder data; "
        f"{run.path} was trained on {config.dataset.name!r}: use --split to score its own splits"
    )


def _class_indices(texts: list[str], names: list[str], places: Callable[[int], str], column: str) -> Any:
    """Each cell's class among the run's; a class the run was never trained on is one line naming it."""
    import numpy as np

    index = {name: k for k, name in enumerate(names)}
    unknown = [row for row, text in enumerate(texts) if text not in index]
    if unknown:
        more = f" (and {len(unknown) - 1} more rows)" if len(unknown) > 1 else ""
        raise UserError(
            f"{places(unknown[0])}: column {column!r}: {texts[unknown[0]]!r} is not a class the run was trained "
            f"on{more}; its classes: {', '.join(names)}"
        )
    return np.array([index[text] for text in texts], dtype=np.int64)


def _labelled_table(path: Path, saved: dict[str, Any], params: dict[str, Any]) -> LabelledData:
    from trainctl.data.tables import FeatureEncoding, column_numbers, handle_missing, read_table

    if path.is_dir():
        raise UserError(f"--data {path}: a folder; this run reads a table file (CSV, TSV or Parquet)")
    encoding = FeatureEncoding.from_dict(saved["table"])
    target = params["target"]
    table = read_table(path, key="--data", text_columns=(target,))
    missing = [name for name in (target, *encoding.columns) if name not in table.columns]
    if missing:
        what = "the run's target (data.target)" if missing[0] == target else "which the model was trained on"
        raise UserError(f"--data {path}: no column {missing[0]!r}, {what}; its columns: {', '.join(table.columns)}")
    table = handle_missing(table, [target, *encoding.columns], params.get("on_missing", "error"))
    x = torch.as_tensor(encoding.transform(table, strict=True))
    if saved["task"]["kind"] == "classification":
        labels = _class_indices(table.column(target), saved["task"]["class_names"], table.at, target)
    else:
        labels = column_numbers(table, target, trained=True).astype("float32").reshape(-1, 1)
    unused = [name for name in table.columns if name != target and name not in encoding.columns]
    return LabelledData(x, labels, table.rows, unused_columns=unused)


def _labelled_text(path: Path, saved: dict[str, Any], params: dict[str, Any]) -> LabelledData:
    from trainctl.data.tables import handle_missing, read_table
    from trainctl.data.text import TextEncoding

    if path.is_dir() or path.suffix.lower() not in TABLE_SUFFIXES:
        raise UserError(
            f"--data {path}: this text run reads a labelled table ({', '.join(TABLE_SUFFIXES)}) with its "
            f"columns {params['text_column']!r} and {params['label_column']!r}"
        )
    columns = (params["text_column"], params["label_column"])
    table = read_table(path, key="--data", text_columns=columns)
    for key, name in zip(("data.text_column", "data.label_column"), columns):
        if name not in table.columns:
            raise UserError(
                f"--data {path}: no column {name!r}, the run's {key}; its columns: {', '.join(table.columns)}"
            )
    table = handle_missing(table, list(columns), "drop")  # as training reads its text
    x = torch.as_tensor(TextEncoding.from_dict(saved["text"]).transform(table.column(columns[0])))
    labels = _class_indices(table.column(columns[1]), saved["task"]["class_names"], table.at, columns[1])
    return LabelledData(x, labels, table.rows, lengths=(x != 0).sum(dim=1).clamp(min=1))


def _labelled_folder(root: Path, saved: dict[str, Any], params: dict[str, Any], kind: str) -> LabelledData:
    """One sub-folder per class, named as the run's classes (a folder may hold some of them only)."""
    import numpy as np

    from trainctl.data.class_folders import audio_class_folders, image_class_folders

    folders = (image_class_folders if kind == "image" else audio_class_folders)(root, "--data")
    names = saved["task"]["class_names"]
    unknown = [name for name in folders.classes if name not in names]
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise UserError(
            f"--data {root / unknown[0]}: class folder {unknown[0]!r} is not a class the run was trained on{more}; "
            f"its classes: {', '.join(names)}"
        )
    classes = [names.index(name) for name in folders.classes]
    files = [file for class_files in folders.files for file in class_files]
    read = _image_inputs if kind == "image" else _audio_inputs
    x = torch.cat([read(file, saved, params)[0] for file in files])
    labels = np.repeat(classes, folders.counts())
    return LabelledData(x, labels, np.arange(len(files)), files=[str(file) for file in files])
