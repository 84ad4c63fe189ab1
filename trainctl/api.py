"""The Python API: what the commands do, as functions for notebooks and scripts.

Each function runs the same code as its command (`trainctl train`, `eval`, `predict`) and returns
data instead of printing it. A user error raises `UserError` with the line the command would print;
nothing is printed unless asked (`progress=True`); the checks' warnings go to Python's `warnings`
module as `TrainctlWarning`, where `warnings.simplefilter` can silence them or turn them into errors.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainctl.errors import UserError
from trainctl.output import Output
from trainctl.runs import RunFolder

if TYPE_CHECKING:  # torch only where a model is trained or loaded
    import torch

    from trainctl.config.loading import Config
    from trainctl.prediction import Prediction

PathLike = str | os.PathLike[str]
DICT_ORIGIN = "config dict"  # how messages name a config given as a dict: `config dict: optimizer.lr: ...`


class TrainctlWarning(UserWarning):
    """A warning of trainctl's checks (the lines `trainctl train` prints as `warning: ...`)."""


@dataclass(frozen=True)
class _WarningsOutput(Output):
    """The command's output, with its warnings raised through the `warnings` module, not printed."""

    def warn(self, text: str) -> None:
        if self.prints:
            warnings.warn(text, TrainctlWarning, stacklevel=2)


@contextlib.contextmanager
def _file_errors_as_user_errors() -> Iterator[None]:
    """A filesystem error naming a file is a user error, as the command line reports it."""
    try:
        yield
    except OSError as error:
        if error.filename is None:
            raise
        from trainctl.files import os_error_line

        raise UserError(os_error_line(error)) from error


class Run:
    """A run folder written by `trainctl train` (or `trainctl.train`). `Run(path)` opens an
    existing one; its files are read, and checked, when first asked for."""

    def __init__(self, path: PathLike):
        with _file_errors_as_user_errors():
            self._folder = RunFolder.open(Path(path))

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def path(self) -> Path:
        return self._folder.path

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json: best epoch and value, the diagnosis, the test record; {} while unfinished.
        Read afresh on each access, as `metrics` is."""
        from trainctl.run_contents import read_summary

        return read_summary(self._folder.summary_path)

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """metrics.jsonl: one row per epoch (epoch, train/loss, val/loss, val/METRIC, lr, seconds ...),
        read afresh on each access, so a run still training shows its epochs so far."""
        return self._folder.read_metrics()

    @property
    def best_checkpoint(self) -> Path:
        """checkpoints/best.pt: the epoch that was best by trainer.monitor."""
        return self._folder.checkpoint_path("best")

    def model(self, checkpoint: str = "best") -> torch.nn.Module:
        """The trained network on the CPU in eval mode, rebuilt from the run's config and data.json
        and loaded from a checkpoint (`best`, `last` or a path) with torch.load(weights_only=True)."""
        from trainctl.prediction import load_run_model

        _check_run_plugins(self.path)
        with _file_errors_as_user_errors():
            return load_run_model(self.path, checkpoint).module


def _load_installed_plugins() -> None:
    """The installed plugins (`trainctl.plugins` entry points), as every command loads them; a
    script's own components are registered by the script itself (`trainctl.register`)."""
    from trainctl.plugins import PluginOptions, load

    load(PluginOptions())


def _check_run_plugins(path: Path) -> None:
    """The plugins the run was trained with are loaded (else a UserError naming them); a plugin file
    edited since the run was trained is a TrainctlWarning, as the commands print it."""
    from trainctl.plugins import check_run

    _load_installed_plugins()
    for line in check_run(path):
        warnings.warn(line, TrainctlWarning, stacklevel=3)


def load_config(config_or_path: PathLike | Mapping[str, Any], overrides: Sequence[str] | None = None) -> Config:
    """A config as `trainctl train` validates it: a YAML file's path, or a dict in the file's shape.

    `overrides` are `--set` values: `["trainer.epochs=5", "model.hidden=[64, 64]"]` (YAML values).
    Raises `UserError` naming every problem (file and line, or `config dict` and the key path).
    A dict has no folder, so its `data.path` and `data.root` are relative to the working folder,
    and its run name defaults to `run` (a file's to the file's name).
    """
    from trainctl.config import loading

    settings = list(overrides or [])
    _load_installed_plugins()
    with _file_errors_as_user_errors():
        if isinstance(config_or_path, Mapping):
            return loading.load_config_data(_plain(config_or_path, ()), settings, DICT_ORIGIN)
        if not isinstance(config_or_path, str | os.PathLike):
            raise UserError(f"a config is a path to a YAML file or a dict, not a {type(config_or_path).__name__}")
        return loading.load_config(Path(config_or_path), settings)


def train(
    config_or_path: PathLike | Mapping[str, Any],
    overrides: Sequence[str] | None = None,
    out: PathLike | None = None,
    progress: bool = False,
) -> Run:
    """Check, train and test a config as `trainctl train` does; returns the new run folder.

    `config_or_path`: a YAML file's path, or a dict in the file's shape (see `load_config`: a
    dict's data paths are relative to the working folder). `overrides`: `--set` values such as
    `"trainer.epochs=5"`. `out`: the run folder to create (must not exist or be empty); default
    `output_dir/NAME-TIMESTAMP`. `progress`: show the progress view and messages on stdout, as
    the command does; by default nothing is printed. The checks' warnings are `TrainctlWarning`s.
    Raises `UserError` for a bad config, data or output folder, with the command's message.
    """
    from trainctl.workflows import train_config

    config = load_config(config_or_path, overrides)
    with _file_errors_as_user_errors():
        result = train_config(
            config, out=None if out is None else Path(out), output=_WarningsOutput(quiet=not progress)
        )
    return Run(result.run.path)


def evaluate(run: Run | PathLike, split: str = "test", checkpoint: str = "best") -> dict[str, Any]:
    """A checkpoint's metrics on one split: the record `trainctl eval` prints and writes to
    RUN_DIR/eval-SPLIT-CHECKPOINT.json (written here too). `split`: test, val or train;
    `checkpoint`: best, last or a path. On the test split with `best` it equals summary["test"]."""
    from trainctl.workflows import evaluate_run

    _check_run_plugins(_run_path(run))
    with _file_errors_as_user_errors():
        _, record = evaluate_run(_run_path(run), checkpoint, split)
    return record


def predict(run: Run | PathLike, inputs: PathLike | Sequence[PathLike], checkpoint: str = "best") -> list[Prediction]:
    """What `trainctl predict` shows, as data: one `Prediction` per input row (tables, text) or
    file (images), in order, with `.source` (file:line), `.label` (class name or value),
    `.score` (its probability; None for regression), `.scores` (every class's probability) and
    `.warning` (why a prediction deserves no trust, e.g. a text with no known word; else None).
    """
    from trainctl.prediction import predict as predict_inputs

    files = [Path(inputs)] if isinstance(inputs, str | os.PathLike) else [Path(item) for item in inputs]
    _check_run_plugins(_run_path(run))
    with _file_errors_as_user_errors():
        return predict_inputs(_run_path(run), files, checkpoint)


def _run_path(run: Run | PathLike) -> Path:
    return run.path if isinstance(run, Run) else Path(run)


def _plain(value: Any, key: tuple[str, ...]) -> Any:
    """A config dict as YAML would give it: tuples become lists, paths strings, numpy scalars
    numbers; anything else a config cannot hold is a user error naming its key."""
    if isinstance(value, Mapping):
        bad = next((k for k in value if not isinstance(k, str)), None)
        if bad is not None:
            raise UserError(f"{_where(key)}: key {bad!r} is a {type(bad).__name__}; a config's keys are strings")
        return {k: _plain(item, (*key, k)) for k, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item, (*key, str(index))) for index, item in enumerate(value)]
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return _plain(value.item(), key)  # numpy's int64, float32, bool_
    if isinstance(value, int):
        return int(value)  # an IntEnum, too
    if isinstance(value, float):
        return float(value)
    raise UserError(
        f"{_where(key)}: a value of type {type(value).__name__}; a config holds mappings, lists, strings, numbers, "
        "booleans and None"
    )


def _where(key: tuple[str, ...]) -> str:
    return f"{DICT_ORIGIN}: {'.'.join(key)}" if key else DICT_ORIGIN
