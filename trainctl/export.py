"""`trainctl export`: a run's model as a file that other programs load without trainctl.

Four formats: the weights alone (safetensors), an ONNX graph for onnxruntime and other runtimes,
TorchScript, and a torch.export ExportedProgram (.pt2). The weights are those of the checkpoint's
`model` entry, the ones `eval` and `predict` use (EMA or SWA averages in a run that averages them);
the model is rebuilt by `trainctl.prediction`, as predict rebuilds it.

Every export is loaded back with its own runtime and compared with the torch model on the run's
test split, in batches of two sizes (the batch axis is dynamic), before it is written. Beside it,
`FILE.json` says what a consumer needs: the input's shape and dtype, the preprocessing of raw
inputs, the classes, and how outputs become predictions.

The runtimes (onnx, onnxruntime, onnxscript, safetensors) are imported only here, by the format
that needs them: the `export` extra.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainctl.errors import UserError, install_hint
from trainctl.runs import CHECKPOINTS, RunFolder

if TYPE_CHECKING:
    import torch

    from trainctl.config.loading import Config
    from trainctl.prediction import RunModel


@dataclass(frozen=True)
class Format:
    suffix: str  # of the default file name
    runtime: str  # what loads the file back, in words
    modules: tuple[str, ...]  # the packages it needs beyond torch
    tolerance: float  # the largest difference from the torch model's outputs that passes the check


FORMATS = {
    "safetensors": Format(".safetensors", "safetensors.torch.load_file", ("safetensors",), 1e-5),
    # A graph run by another engine (other kernels, other summation orders): close, not identical.
    "onnx": Format(".onnx", "onnxruntime", ("onnx", "onnxruntime", "onnxscript"), 1e-4),
    "torchscript": Format(".torchscript.pt", "torch.jit.load", (), 1e-5),
    "exported-program": Format(".pt2", "torch.export.load", (), 1e-5),
}

CHECKED_SAMPLES = 1024  # test samples the export is checked on (the whole split when it is smaller)
CHECK_BATCH = 64  # the check's batches: one of a single sample, then batches of this many
INPUT_NAME, OUTPUT_NAME = "input", "output"  # the ONNX graph's input and output names


@dataclass
class Check:
    max_difference: float  # the largest absolute difference from the torch model's outputs
    samples: int  # test samples compared
    batch_sizes: list[int]  # the distinct batch sizes they were run in
    tolerance: float
    output_width: int  # outputs per sample


@dataclass
class ExportResult:
    path: Path
    sidecar: Path
    format: str
    check: Check


def sidecar_path(path: Path) -> Path:
    """`model.onnx` -> `model.onnx.json`."""
    return path.with_name(path.name + ".json")


def default_path(run: RunFolder, format_name: str, checkpoint: str) -> Path:
    """RUN/model-best.onnx, RUN/model-last.pt2, ... (a checkpoint file from elsewhere: by its stem)."""
    which = checkpoint if checkpoint in CHECKPOINTS else Path(checkpoint).stem
    return run.path / f"model-{which}{FORMATS[format_name].suffix}"


def export_run(
    run_dir: str | Path,
    format_name: str,
    checkpoint: str = "best",
    output: Path | None = None,
    force: bool = False,
) -> ExportResult:
    """Export a run's model in one of FORMATS, check it against the torch model on the run's test
    split and write it with its sidecar JSON. A file in the way, or a folder that cannot be written,
    is refused before any work; a failure leaves no file behind."""
    from trainctl.files import new_output

    chosen = _format(format_name)
    run = RunFolder.open(run_dir)
    path = output if output is not None else default_path(run, format_name, checkpoint)
    sidecar = sidecar_path(path)
    _require_modules(format_name, chosen)
    # Both temporary files are made now: an existing file or an unwritable folder stops the export here.
    with new_output(path, "--output", force) as written, new_output(sidecar, "--output", force) as notes:
        check = _export_checked(run, format_name, checkpoint, path, written, notes)
    return ExportResult(path, sidecar, format_name, check)


def _export_checked(run: RunFolder, format_name: str, checkpoint: str, path: Path, written: Path, notes: Path) -> Check:
    """Write the export into `written` and its description into `notes`, once it passes the check."""
    import torch

    from trainctl.config.loading import load_config
    from trainctl.prediction import load_model, saved_data

    config = load_config(run.config_path)
    saved = saved_data(run)
    loaded = load_model(run, config, saved, checkpoint)
    data = _rebuilt_data(config)
    samples = data.test.first_inputs(min(len(data.test), CHECKED_SAMPLES)).cpu()
    with _quiet_exporters(), _cannot_export(config.model.name, format_name):
        EXPORTERS[format_name](loaded.module, _example(samples), written)
    reloaded = _reloaded(format_name, written, config, saved)
    with torch.no_grad():
        check = _check(format_name, path, reloaded, loaded.module, samples)
    description = describe(run, config, saved, loaded, format_name, checkpoint, path, check, data.description())
    notes.write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    return check


def _format(name: str) -> Format:
    if name not in FORMATS:
        raise UserError(f"--format: unknown format {name!r}; allowed: {', '.join(FORMATS)}")
    return FORMATS[name]


def _require_modules(format_name: str, chosen: Format) -> None:
    """Import the format's packages now, before the model is loaded and the data read: a missing one
    is named with how to install it."""
    missing = []
    for name in chosen.modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UserError(
            f"--format {format_name} needs {', '.join(missing)}, not installed; "
            f"{install_hint(' '.join(missing), 'export')}"
        )


def _rebuilt_data(config: Config) -> Any:
    """The run's data, split as in training, on the CPU: its test split is what the export is checked on."""
    import torch

    from trainctl.training.build import build_data

    try:
        with config.errors_located():
            return build_data(config, torch.device("cpu"))
    except UserError as error:
        raise UserError(
            f"{'; '.join(error.lines())} (export checks the exported model on the run's test split, so it "
            "reads the run's data)"
        ) from None


def _example(samples: torch.Tensor) -> torch.Tensor:
    """Two samples to trace with: a batch of one would let an exporter fix the batch size at 1."""
    import torch

    return samples[:2] if len(samples) >= 2 else torch.cat([samples, samples])


# ---- the exporters: the module, an example batch, the file to write -------------------------------


def _export_safetensors(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    from safetensors.torch import save_file

    # Copies: safetensors refuses tensors that share memory (tied weights) and views.
    state = {key: value.detach().clone().contiguous() for key, value in module.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt", "producer": "trainctl"})


def _batch_axis() -> Any:
    import torch

    return torch.export.Dim("batch", min=1)


def _export_onnx(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    import torch

    program = torch.onnx.export(
        module,
        (example,),
        dynamo=True,  # the torch.export-based exporter (the TorchScript-based one is deprecated)
        dynamic_shapes=({0: _batch_axis()},),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        verbose=False,
    )
    if program is None:  # only the TorchScript-based exporter returns nothing
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(str(path), external_data=False)  # one self-contained file, renamed into place


def _export_torchscript(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """torch.jit.script keeps the model's control flow; a model it cannot compile (a plugin's, with
    Python it does not know) is traced instead, and the check then shows whether the trace holds
    for other batch sizes."""
    import torch

    try:
        compiled = torch.jit.script(module)
    except Exception:  # TorchScript's compiler rejects the source: tracing needs none of it
        compiled = torch.jit.trace(module, example)
    torch.jit.save(compiled, str(path))


def _export_program(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    import torch

    program = torch.export.export(module, (example,), dynamic_shapes=({0: _batch_axis()},))
    torch.export.save(program, str(path))


EXPORTERS: dict[str, Callable[[Any, Any, Path], None]] = {
    "safetensors": _export_safetensors,
    "onnx": _export_onnx,
    "torchscript": _export_torchscript,
    "exported-program": _export_program,
}


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Silence the exporters' own chatter: torch.jit's deprecation warnings (TorchScript is deprecated
    since torch 2.11; torch 2.14 warns "`torch.jit.script` is deprecated. Please switch to
    `torch.compile` or `torch.export`." as a FutureWarning, and the same for trace, save and load),
    tracer warnings and onnxscript's optimizer log. What matters is checked after: the exported
    model's outputs against the torch model's."""
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx", "torch.export")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


@contextlib.contextmanager
def _cannot_export(model_name: str, format_name: str) -> Iterator[None]:
    """An exporter's failure as one line: which model, which format, why, and what to try instead."""
    try:
        yield
    except Exception as error:  # torch.export, TorchScript and ONNX raise many kinds; all mean "cannot"
        if format_name == "exported-program" or _failed_in_torch_export(error):
            # ONNX's exporter starts with torch.export: a model it cannot capture fails both formats
            why, others = "torch.export cannot capture its forward pass", ["torchscript", "safetensors"]
        else:
            why, others = f"the {format_name} exporter failed", [name for name in FORMATS if name != format_name]
        raise UserError(
            f"model {model_name!r} cannot be exported as {format_name}: {why} ({_root_cause(error)}); "
            f"try --format {', '.join(others[:-1])} or {others[-1]}"
        ) from None


def _failed_in_torch_export(error: BaseException | None) -> bool:
    """Whether torch.onnx failed in its first step, capturing the model with torch.export."""
    while error is not None:
        if type(error).__name__ == "TorchExportError":
            return True
        error = error.__cause__
    return False


def _root_cause(error: BaseException) -> str:
    """The first line of the innermost error: torch.onnx wraps torch.export's, which says what failed."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first[:300]}" if first else type(error).__name__


# ---- loading back and checking ----------------------------------------------------------------------


def _reloaded(format_name: str, path: Path, config: Config, saved: dict[str, Any]) -> Callable[[Any], Any]:
    """The exported file loaded with its own runtime, as a function from an input batch (a torch
    tensor) to the output batch (a torch tensor)."""
    import torch

    if format_name == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])
    if format_name == "safetensors":
        from safetensors.torch import load_file

        from trainctl.prediction import build_run_model

        fresh = build_run_model(config, saved).module  # a new model: only the file's weights are in it
        fresh.load_state_dict(load_file(str(path)))
        return fresh
    with _quiet_exporters():  # torch.jit.load warns that TorchScript is deprecated
        if format_name == "torchscript":
            return torch.jit.load(str(path))
        return torch.export.load(str(path)).module()


def _check(
    format_name: str, path: Path, exported: Callable[[Any], Any], module: torch.nn.Module, samples: torch.Tensor
) -> Check:
    """Compare the exported model's outputs with the torch model's on the samples, in a batch of one
    and then batches of CHECK_BATCH; a difference above the format's tolerance is an error."""
    tolerance = FORMATS[format_name].tolerance
    worst, sizes, width = 0.0, [], 0
    for batch in _check_batches(samples):
        with _quiet_exporters():
            expected, got = module(batch), exported(batch)
        if got.shape != expected.shape:
            raise UserError(
                f"{path.name}: the exported model gives outputs of shape {tuple(got.shape)} for a batch of "
                f"{len(batch)}, the torch model {tuple(expected.shape)}; nothing written"
            )
        worst = max(worst, float((got.float() - expected.float()).abs().max()))
        sizes.append(len(batch))
        width = expected.shape[-1] if expected.dim() > 1 else 1
    if not math.isfinite(worst) or worst > tolerance:
        raise UserError(
            f"{format_name}: the exported model's outputs differ from the torch model's by up to {worst:.3g} on "
            f"the run's test split (allowed: {tolerance:g}); nothing written"
        )
    return Check(worst, len(samples), sorted(set(sizes)), tolerance, width)


def _check_batches(samples: torch.Tensor) -> list[torch.Tensor]:
    return [samples[:1], *samples[1:].split(CHECK_BATCH)] if len(samples) > 1 else [samples]


# ---- the sidecar: what a consumer needs to feed the model and read its outputs -----------------------


def describe(
    run: RunFolder,
    config: Config,
    saved: dict[str, Any],
    loaded: RunModel,
    format_name: str,
    checkpoint: str,
    path: Path,
    check: Check,
    rebuilt: dict[str, Any],
) -> dict[str, Any]:
    """The sidecar's content. `rebuilt` is the description of the data rebuilt now (for what a run
    trained by an earlier trainctl did not save in data.json)."""
    from trainctl import __version__
    from trainctl.config.identity import config_hash

    task = saved["task"]
    description: dict[str, Any] = {
        "format": format_name,
        "file": path.name,
        "loads_with": FORMATS[format_name].runtime,
        "trainctl_version": __version__,
        "run": {
            "name": config.name,
            "folder": run.path.name,
            "config_hash": config_hash(config.to_dict()),
            "checkpoint": checkpoint if checkpoint in CHECKPOINTS else Path(checkpoint).name,
            "epoch": loaded.epoch,
            "weights": loaded.weights,  # trained, ema or swa
        },
        "model": {"name": config.model.name, "parameters": config.model.params},
        "input": _input(saved),
        "output": _output(saved, loaded, check.output_width),
        "task": task["kind"],
    }
    if task["kind"] == "classification":
        description["class_names"] = task["class_names"]
    else:
        description["target"] = {"mean": saved["target_mean"], "std": saved["target_std"]}
    description["preprocessing"] = _preprocessing(saved, rebuilt)
    description["check"] = {
        "split": "test",
        "samples": check.samples,
        "batch_sizes": check.batch_sizes,
        "max_abs_difference": check.max_difference,
        "tolerance": check.tolerance,
    }
    return description


def _preprocessing(saved: dict[str, Any], rebuilt: dict[str, Any]) -> dict[str, Any]:
    """How a raw input (a CSV row, an image file, a text, a row of a built-in dataset) becomes the
    model's input, as `trainctl predict` does it."""
    for kind, describe_kind in PREPROCESSING.items():
        if saved.get(kind) is not None:
            return {"kind": kind, **describe_kind(saved[kind])}
    # A built-in numeric dataset: its feature scaling from data.json, or (a run trained before it was
    # saved there) from the data rebuilt with the run's split, which gives the same statistics.
    scale = saved.get("standardization") or rebuilt.get("standardization")
    if scale is None:
        return {"kind": "none", "recipe": "the inputs as they are"}
    return {"kind": "standardization", **_describe_standardization(scale)}


def _input(saved: dict[str, Any]) -> dict[str, Any]:
    shape = ["batch", *saved["input_shape"]]
    if saved.get("text"):
        meaning = "token ids (as float32), as `preprocessing` makes them from a text"
    elif saved.get("image"):
        meaning = "an image, channels × height × width, as `preprocessing` makes it"
    elif saved.get("audio"):
        meaning = "an audio clip's features, as `preprocessing` makes them"
    elif saved.get("table"):
        meaning = "one row of the table, encoded as `preprocessing` says"
    else:
        meaning = "the dataset's features, as `preprocessing` makes them"
    return {"name": INPUT_NAME, "shape": shape, "dtype": "float32", "meaning": meaning}


def _output(saved: dict[str, Any], loaded: RunModel, width: int) -> dict[str, Any]:
    """The output's layout and the recipe that turns it into what `trainctl predict` prints."""
    output: dict[str, Any] = {
        "name": OUTPUT_NAME,
        "shape": ["batch", width],
        "dtype": "float32",
        "kind": loaded.output_kind,  # what the loss read: logits, log-probabilities or values
        "layout": loaded.layout,
    }
    # With a mean_variance layout the first half of the outputs predict; the second half are variances.
    predicting = f"output[:{width // 2}]" if loaded.layout == "mean_variance" else "output"
    if saved["task"]["kind"] == "regression":
        if loaded.layout == "log_rate":
            output["prediction"] = "exp(output): the predicted rate, in the data's units"
        elif saved["target_mean"] is not None:
            output["prediction"] = f"{predicting} * target.std + target.mean: values in the data's units"
        else:
            output["prediction"] = f"{predicting}: values in the data's units"
        return output
    # A calibrated run (trainer.calibrate) divides its logits by its temperature, as predict does.
    scaled = "output" if loaded.temperature is None else f"output / {loaded.temperature!r}"
    if loaded.temperature is not None:
        output["temperature"] = loaded.temperature
    if width == 1:  # one logit for a binary task
        output["prediction"] = "class_names[1] if output[0] > 0 else class_names[0]"
        output["probabilities"] = (
            f"sigmoid({scaled.replace('output', 'output[0]')}) is the probability of class_names[1]"
        )
        return output
    output["prediction"] = f"class_names[argmax({predicting})]"
    output["probabilities"] = {"logits": f"softmax({scaled})", "log-probabilities": "exp(output)"}.get(
        loaded.output_kind, f"none: {predicting} are scores a regression loss fitted to one-hot targets"
    )
    return output


def _describe_table(table: dict[str, Any]) -> dict[str, Any]:
    """The input vector of a CSV row: its columns in order, a number each for numeric ones
    ((value - mean) / std), a one-hot block for the others (all zeros for a category not seen in training)."""
    features = []
    for name in table["columns"]:
        if name in table["numeric"]:
            mean, std = table["numeric"][name]
            features.append({"column": name, "encoding": "standardized", "mean": mean, "std": std})
        else:
            features.append({"column": name, "encoding": "one_hot", "categories": table["categories"][name]})
    return {"features": features, "recipe": "concatenate the features in this order: (value - mean) / std, or one-hot"}


def _describe_image(image: dict[str, Any]) -> dict[str, Any]:
    channels = image["channels"] if "channels" in image else image["source_shape"][0]
    return {
        "channels": channels,
        "color": "grayscale" if channels == 1 else "RGB",
        "size": image["source_shape"][1:],
        "resize": image.get("resize"),
        "pixels": "float32 in [0, 1] (value / 255), channels first",
        "transforms": image.get("transforms", []),
        "recipe": "read the image, convert it to `color`, resize it to `resize` ([height, width]) if given "
        "(PIL's Image.resize with its default filter), scale to [0, 1], then apply `transforms` in order "
        "(normalize: (x - mean) / std per channel)",
    }


def _describe_text(text: dict[str, Any]) -> dict[str, Any]:
    from trainctl.data.text import WORD_PATTERN

    return {
        "tokenizer": text["level"],
        "pattern": WORD_PATTERN if text["level"] == "words" else None,
        "lowercase": text["lowercase"],
        "length": text["length"],
        "padding_id": 0,
        "unknown_id": 1,
        "vocabulary": text["vocabulary"],
        "recipe": "lowercase if `lowercase`; split into tokens (words: the regular expression `pattern`; "
        "chars: each character); id = position in `vocabulary` (unknown: 1); keep the first `length` ids, "
        "pad with 0 to `length`",
    }


def _describe_audio(audio: dict[str, Any]) -> dict[str, Any]:
    from trainctl.data.audio_features import LOG_OFFSET

    return {
        "sample_rate": audio["sample_rate"],
        "length": audio["length"],
        "features": audio["features"],
        "log_offset": LOG_OFFSET if audio["features"].get("name") == "log_mel" else None,
        "mean": audio["mean"],
        "std": audio["std"],
        "transforms": audio.get("transforms", []),
        "recipe": "decode, mix to mono, resample to `sample_rate`; keep the centre `length` samples (pad a "
        "shorter clip with zeros); features: log_mel = log(power of a centred STFT (Hann window of n_fft, "
        "hop_length, reflect padding) times HTK-scale triangular mel filters (n_mels, f_min to f_max, peaks 1) "
        "+ log_offset), frames along the rows, or waveform = the samples; then (x - mean) / std per mel band "
        "(one value for a waveform); then "
        "`transforms` in order. trainctl.data.audio_features computes it in Python",
    }


def _describe_standardization(scale: dict[str, Any]) -> dict[str, Any]:
    return {
        "mean": scale["mean"],
        "std": scale["std"],
        "recipe": "(x - mean) / std for each feature, in the dataset's feature order, then reshape to the input shape",
    }


PREPROCESSING: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "table": _describe_table,
    "image": _describe_image,
    "text": _describe_text,
    "audio": _describe_audio,
}
