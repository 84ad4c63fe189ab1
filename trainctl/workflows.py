"""What the commands do, as functions the CLI and tests call: train a config, evaluate a run."""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainctl.config.loading import Config, load_config
from trainctl.errors import UserError
from trainctl.output import Output
from trainctl.ranks import ranks_from_environment
from trainctl.runs import RunFolder

if TYPE_CHECKING:  # torch stays out of commands that do not train
    import torch

    from trainctl.ranks import Ranks
    from trainctl.reports.preflight import Finding
    from trainctl.training.build import TrainingParts
    from trainctl.training.events import EpochEnd, FitResult
    from trainctl.training.lr_range import RangeSettings, Suggestion, Sweep
    from trainctl.training.mlflow_tracker import RunTracker
    from trainctl.training.state import RandomStates, TrainingState
    from trainctl.training.trainer import Trainer


@dataclass
class TrainResult:
    run: RunFolder
    summary: dict[str, Any]  # empty on ranks other than 0 of a run in several processes
    model: torch.nn.Module | None = None  # the trained torch module, as the last epoch left it


def train(
    config_path: str | Path,
    overrides: list[str] | None = None,
    *,
    out: str | Path | None = None,
    output: Output | None = None,
    strict: bool = False,
    epoch_end: Sequence[Callable[[EpochEnd], None]] = (),
) -> TrainResult:
    """Train a config file into a new run folder. `output` (default: stdout and stderr) says where
    the progress and warnings go; Output(quiet=True) keeps only the warnings. `epoch_end` handlers
    join the trainer's (a sweep's pruning reports)."""
    config = load_config(config_path, overrides)
    return train_config(config, out=out, output=output, strict=strict, epoch_end=epoch_end)


def validate(config_path: str | Path, overrides: list[str] | None = None) -> Any:
    """Build a config and check it with one forward and backward pass; returns the PreflightReport."""
    from trainctl.reports.preflight import preflight
    from trainctl.training.build import build_training

    config = load_config(config_path, overrides)
    return preflight(config, build_training(config))


def train_config(
    config: Config,
    *,
    out: str | Path | None = None,
    output: Output | None = None,
    strict: bool = False,
    epoch_end: Sequence[Callable[[EpochEnd], None]] = (),
) -> TrainResult:
    # torch is imported here, not at the top, so commands that do not train start fast.
    from trainctl.reports.preflight import PreflightError, preflight
    from trainctl.training import distributed
    from trainctl.training.build import build_training

    ranks = ranks_from_environment()
    output = (output or Output()).in_process(ranks.is_main)  # with several processes, rank 0 alone prints
    # Everything is built and checked before the run folder exists: a bad config leaves nothing behind.
    with distributed.running(ranks):
        parts = build_training(config, ranks)
        report = preflight(config, parts)
        if report.errors or (strict and report.warnings):
            raise PreflightError(report.errors + (report.warnings if strict else []))
        for finding in report.warnings:
            output.warn(str(finding))
        if config.logging.tensorboard:
            from trainctl.training.tensorboard import summary_writer_class

            summary_writer_class()
        # With several processes every rank takes part in the broadcast; rank 0 keeps the folder it claimed.
        if ranks.is_main:
            run = RunFolder.create(config.output_dir, config.name, out)
            if ranks.distributed:
                ranks.broadcast(str(run.path))
        else:
            run = RunFolder(Path(ranks.broadcast(None)))
        with _writing(run, ranks.is_main, discard_untrained=True):
            if ranks.is_main:
                run.write_config(config.to_dict())
                run.write_json("data.json", parts.data.description())  # what predict needs
                _record_plugins(run, config.to_dict())
            output.message(f"run folder: {run.path}")
            trainer = _make_trainer(config, parts, run, output)
            return _fit_and_test(config, parts, run, trainer, output, warnings=report.warnings, epoch_end=epoch_end)


def resume(
    run_dir: str | Path,
    overrides: list[str] | None = None,
    *,
    output: Output | None = None,
    epoch_end: Sequence[Callable[[EpochEnd], None]] = (),
) -> TrainResult:
    """Continue a run from checkpoints/last.pt, exactly where it stopped (from its start, when it was
    killed before its first checkpoint).

    The config must be the one the run started with; only trainer.epochs (to extend it) and the data
    loader settings may change. The run folder is locked meanwhile: a second writer is refused.
    """
    ranks = ranks_from_environment()
    run = RunFolder.open(run_dir)
    if ranks.is_main:
        run.claim()
    with _writing(run, ranks.is_main, discard_untrained=False):
        if ranks.is_main:
            run.remove_temporaries()  # a killed writer's half-written files; nothing else writes here now
        return _resume_claimed(run, ranks, overrides, (output or Output()).in_process(ranks.is_main), epoch_end)


def _trained_with(checkpoint: dict[str, Any], saved: Config, run: RunFolder) -> bool:
    """Whether the checkpoint was trained with the run's config.yaml. An earlier version saved its
    config without the keys added since (each of which defaults to the old behaviour), so when the
    hashes differ the checkpoint's own copy of the config is read again by this version and compared:
    only a real change of a key counts."""
    from trainctl.config.identity import config_hash
    from trainctl.config.loading import load_config_data

    expected = config_hash(saved.to_dict())
    if checkpoint.get("config_hash") == expected:
        return True
    stored = checkpoint.get("config")
    if not isinstance(stored, dict):
        return False
    try:
        reread = load_config_data(stored, origin=f"{run.path}: the checkpoint's config")
    except UserError:  # keys this version no longer reads: not the same config
        return False
    return config_hash(reread.to_dict()) == expected


def _resume_claimed(
    run: RunFolder,
    ranks: Ranks,
    overrides: list[str] | None,
    output: Output,
    epoch_end: Sequence[Callable[[EpochEnd], None]],
) -> TrainResult:
    from trainctl.config.identity import MAY_CHANGE_ON_RESUME, differing_keys, may_change_on_resume
    from trainctl.reports.preflight import preflight
    from trainctl.training import distributed
    from trainctl.training.build import build_training
    from trainctl.training.checkpoint import load_checkpoint
    from trainctl.training.state import TrainingState, check_resumable
    from trainctl.training.step_records import keep_steps_through

    saved = load_config(run.config_path)
    config = load_config(run.config_path, overrides)
    changed = [key for key in differing_keys(saved.to_dict(), config.to_dict()) if not may_change_on_resume(key)]
    if changed:
        allowed = ", ".join(key if "." in key else f"{key}.*" for key in MAY_CHANGE_ON_RESUME)
        raise UserError(
            f"{run.path}: cannot resume with a different config; these keys differ: {', '.join(changed)} "
            f"(only {allowed} may change)"
        )
    last = run.checkpoint_path("last")
    checkpoint = load_checkpoint(last) if last.is_file() else None  # none: killed before its first checkpoint
    if checkpoint is not None and not _trained_with(checkpoint, saved, run):
        raise UserError(
            f"{run.config_path}: differs from the config its checkpoint was trained with; "
            "a resumed run must use the config it started with"
        )
    with distributed.running(ranks):
        parts = build_training(config, ranks)
        warnings = preflight(config, parts).warnings  # for the diagnosis; printed when the run started
        trainer = _make_trainer(config, parts, run, output)
        if checkpoint is None:
            state, rng = TrainingState(), None
        else:
            check_resumable(checkpoint, trainer, last)  # a damaged or foreign one is named before any of it is used
            state, rng = trainer.load_checkpoint_state(checkpoint)
        epochs = config.trainer.epochs
        step_schedule = config.scheduler if parts.scheduler_interval == "step" else None
        if epochs != saved.trainer.epochs:
            if step_schedule is not None:
                from trainctl.components.registries import SCHEDULERS

                per_epoch = [entry.name for entry in SCHEDULERS if entry.info.interval == "epoch"]
                raise UserError(
                    f"--set trainer.epochs={epochs}: cannot extend this run: scheduler "
                    f"{step_schedule.name!r} laid its schedule out over {saved.trainer.epochs} epochs "
                    f"and ends it there; a run with no scheduler or one that steps per epoch without a "
                    f"warm-up ({', '.join(per_epoch)}) can be extended; for this one, train a new run with "
                    f"--set trainer.epochs={epochs}"
                )
            if epochs < state.epoch + (state.step_in_epoch > 0):
                raise UserError(f"--set trainer.epochs={epochs}: the run has already trained {state.epoch} epochs")
        finished = state.step_in_epoch == 0 and (state.epoch >= epochs or state.stopped_early)
        if finished and run.summary_path.is_file():
            why = "stopped early" if state.stopped_early else f"finished all {state.epoch} epochs"
            how = (
                "extend it with --set trainer.epochs=N"
                if step_schedule is None
                else f"its {step_schedule.name} schedule ends with the run, so for more epochs train a new run "
                "with --set trainer.epochs=N"
            )
            raise UserError(f"{run.path}: nothing to resume: the run {why}; {how}")
        if ranks.is_main:
            _restore_best_checkpoint(run, state)
            # A run stopped after its last epoch but before its summary just gets its test evaluation.
            run.keep_metrics_through(state.epoch)  # rows written after the last checkpoint are trained again
            keep_steps_through(run, state.global_step)
            run.write_config(config.to_dict())
            if checkpoint is None:
                run.write_json("data.json", parts.data.description())  # a kill may have cut it short
        if finished:
            output.message(
                f"{run.path} finished training ({state.epoch} epochs) but not its test evaluation: running it"
            )
        else:
            output.message(
                f"resuming {run.path} at epoch {state.epoch + 1}"
                + (f", step {state.step_in_epoch + 1}" if state.step_in_epoch else "")
            )
        return _fit_and_test(config, parts, run, trainer, output, state, rng, warnings, epoch_end)


def _draw_figures(config: Config, run: RunFolder, history: list[dict[str, Any]], test: dict[str, Any]) -> None:
    """curves.png, and reliability.png for a run with a calibration record."""
    from trainctl.files import new_output
    from trainctl.reports.curves import plot_runs

    with new_output(run.path / "curves.png", "curves", force=True) as image:
        plot_runs([(config.name, history, config.trainer.monitor)], image)
    if "calibration" in test:
        from trainctl.reports.reliability_plot import RELIABILITY_FILE, plot_reliability

        with new_output(run.path / RELIABILITY_FILE, "reliability diagram", force=True) as image:
            plot_reliability(test, config.name, image)


def _record_plugins(run: RunFolder, config: dict[str, Any]) -> None:
    """plugins.json: which plugin provided each component, for eval, predict and --resume to ask for."""
    from trainctl.plugins import RUN_RECORD, components_in

    components = components_in(config)
    if components:  # a run of trainctl's own components has no such file, as before
        run.write_json(RUN_RECORD, {"components": components})


def _restore_best_checkpoint(run: RunFolder, state: TrainingState) -> None:
    """Make best.pt hold the best epoch last.pt names. Checkpoints are written best first, so this
    holds after any kill; a run written the other way round (best.pt missing or older, killed
    between the two) gets best.pt back from last.pt when last.pt is that epoch's checkpoint."""
    from trainctl.files import write_atomically
    from trainctl.training.checkpoint import load_checkpoint

    if state.best_epoch == 0:
        return
    best, last = run.checkpoint_path("best"), run.checkpoint_path("last")
    held = load_checkpoint(best).get("epoch") if best.is_file() else None
    if held == state.best_epoch:
        return
    if state.epoch != state.best_epoch or state.step_in_epoch:
        raise UserError(
            f"{best}: holds epoch {held}, but the run's best is epoch {state.best_epoch}, which no "
            "checkpoint holds any more; start the run again with trainctl train"
        )
    write_atomically(last.read_bytes(), best)


@contextlib.contextmanager
def _writing(run: RunFolder, main: bool, *, discard_untrained: bool) -> Iterator[None]:
    """The run folder's lifecycle while this process writes it (rank 0 alone): released at the end;
    a filesystem error becomes one line saying what was kept and how to resume, and removes a new
    run folder that has no checkpoint yet (half-written). Other failures keep the folder: a run
    that diverged or was interrupted is worth reading, and resumes from its start."""
    from trainctl.files import os_error_line

    if not main:
        yield
        return
    try:
        yield
    except OSError as error:
        if error.filename is None:
            raise
        trained = run.checkpoint_path("last").is_file()
        if not trained and discard_untrained:
            run.discard()
        if not trained:
            kept = "the run folder was removed" if discard_untrained else "the run has no checkpoint yet"
            raise UserError(f"{os_error_line(error)}; {kept}") from None
        raise UserError(
            f"{os_error_line(error)}; the run keeps its last good checkpoint ({_checkpoint_epoch(run)}); "
            f"resume with: trainctl train --resume {run.path}"
        ) from None
    finally:
        run.release()


def _checkpoint_epoch(run: RunFolder) -> str:
    from trainctl.training.checkpoint import load_checkpoint

    state = load_checkpoint(run.checkpoint_path("last"))
    step = state.get("state", {}).get("step_in_epoch", 0)
    return f"epoch {state.get('epoch')}" + (f", step {step} of epoch {state.get('epoch', 0) + 1}" if step else "")


def _make_trainer(config: Config, parts: TrainingParts, run: RunFolder, output: Output) -> Trainer:
    from trainctl.training.progress import make_reporter
    from trainctl.training.settings import fit_settings
    from trainctl.training.trainer import Trainer

    return Trainer(parts, fit_settings(config, parts, run), reporter=make_reporter(output))


def _fit_and_test(
    config: Config,
    parts: TrainingParts,
    run: RunFolder,
    trainer: Trainer,
    output: Output,
    state: TrainingState | None = None,
    rng: RandomStates | None = None,
    warnings: list[Finding] | None = None,
    epoch_end: Sequence[Callable[[EpochEnd], None]] = (),
) -> TrainResult:
    from trainctl.training.interrupts import Interrupted, graceful_stop

    def announce(signal_name: str) -> None:
        output.notice(f"{signal_name}: stopping after this step to save the run (press Ctrl-C again to stop at once)")

    main = parts.ranks.is_main
    with graceful_stop(announce) as stop, _tracking(config, run, state, main, output) as tracker:
        with _logging(config, run, trainer, state, tracker):
            trainer.events.epoch_end.extend(epoch_end)
            with _compile_errors(config):
                fit = trainer.fit(state, rng, stop)
        if not main:
            return TrainResult(run, {}, parts.model)  # rank 0 evaluates the test split and writes the summary
        # Training is saved; a signal now stops the test evaluation, which the resume runs again.
        finishing = Interrupted(
            trainer.settings.output.resume_hint,
            "interrupted during the test evaluation; training finished and is saved",
        )
        if stop.requested:  # during the last epoch's last step: training ended, the stop comes now
            raise finishing
        stop.stop_at_once(finishing)
        return _test_and_summarise(config, parts, run, fit, output, warnings)


def _test_and_summarise(
    config: Config, parts: TrainingParts, run: RunFolder, fit: FitResult, output: Output, warnings: list[Finding] | None
) -> TrainResult:
    """Calibrate the best checkpoint when asked, score it on the test split, then write
    test_predictions.csv, curves.png (and reliability.png) and summary.json."""
    from trainctl.reports.diagnosis import chance_levels, diagnose
    from trainctl.reports.samples import SAMPLES_FILE, write_samples
    from trainctl.training.trainer import evaluate_checkpoint

    history = run.read_metrics()
    best = run.checkpoint_path("best")
    if config.trainer.calibrate == "temperature":
        from trainctl.training.calibration import calibrate_checkpoint

        calibrate_checkpoint(copy.deepcopy(parts.model), best, copy.deepcopy(parts.loss_fn), parts.data)
    # On a copy: the trained model stays as the last epoch left it, for whoever called train.
    scored = evaluate_checkpoint(
        copy.deepcopy(parts.model),
        best,
        "test",
        copy.deepcopy(parts.loss_fn),
        parts.data,
        config.metrics,
        output_kind=_output_kind(config),
    )
    test = scored.record
    test["checkpoint"] = "best"
    write_samples(run.path / SAMPLES_FILE, scored.samples)
    diagnosis = diagnose(
        history,
        config.trainer.monitor,
        warnings=warnings or [],
        stopped_early=fit.stopped_early,
        chance=chance_levels(parts.data.task, parts.data.val.labels.cpu().numpy()),
    )
    summary = {
        "name": config.name,
        "monitor": config.trainer.monitor,
        "best_epoch": fit.best_epoch,
        "best_value": fit.best_value,
        "epochs": config.trainer.epochs,
        "epochs_trained": len(history),
        "stopped_early": fit.stopped_early,
        "train_seconds": round(sum(row["seconds"] for row in history), 3),
        "device": str(parts.device),
        "diagnosis": {"shape": diagnosis.shape, "message": diagnosis.message, "hint": diagnosis.hint},
        "test": test,
    }
    if config.logging.figures:
        _draw_figures(config, run, history, test)
    run.write_json("summary.json", summary)  # last: a run with a summary is finished, a resume refuses it
    stopping = config.trainer.early_stopping
    if fit.stopped_early and stopping is not None:  # only early stopping stops early
        output.message(
            f"early stopping after epoch {len(history)}: {stopping.monitor} did not improve for "
            f"{stopping.patience} epochs"
        )
    hint = diagnosis.hint[:1].upper() + diagnosis.hint[1:]
    output.message(f"loss curve: {diagnosis.message}. {hint}.")
    if "temperature" in test.get("calibration", {}):
        output.message(calibration_line(test))
    return TrainResult(run, summary, parts.model)


def _output_kind(config: Config) -> str:
    """What the model's outputs are to the loss: logits, log-probabilities or values."""
    from trainctl.components.losses import profile

    return profile(config.loss.name, config.loss.params).input


def calibration_line(record: dict[str, Any]) -> str:
    """A calibrated run's temperature and its ECE before and after, in one line."""
    calibration = record["calibration"]
    return (
        f"calibration: temperature {calibration['temperature']:.3f} (fitted on the validation split); "
        f"{record['split']} ECE {calibration['ece_before']:.4f} before, {record['ece']:.4f} after"
    )


@contextlib.contextmanager
def _compile_errors(config: Config) -> Iterator[None]:
    """torch.compile fails inside the first step, with pages of compiler output: one line instead."""
    try:
        yield
    except Exception as error:
        if not config.trainer.compile or not type(error).__module__.startswith(("torch._dynamo", "torch._inductor")):
            raise
        first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise UserError(f"trainer.compile: torch.compile failed here: {first}; set trainer.compile: false") from None


@contextlib.contextmanager
def _tracking(
    config: Config, run: RunFolder, state: TrainingState | None, main: bool, output: Output
) -> Iterator[RunTracker | None]:
    """The run's MLflow run (logging.mlflow), logged by rank 0 through the fit and the test; mlflow
    is imported only here. A resume (`state`) continues the MLflow run its folder records."""
    if config.logging.mlflow is None or not main:
        yield None
        return
    from trainctl.training.mlflow_tracker import resumed_from, tracking

    resumed = resumed_from(run, state.epoch, state.global_step) if state is not None else None
    with tracking(config.logging.mlflow, run, config.to_dict(), output, resumed) as tracker:
        yield tracker


@contextlib.contextmanager
def _logging(
    config: Config, run: RunFolder, trainer: Trainer, state: TrainingState | None, tracker: RunTracker | None = None
) -> Iterator[None]:
    """Logging beyond metrics.jsonl, written by rank 0: TensorBoard event files when asked for, MLflow
    (`tracker`) too, and with logging.every_n_steps the step records (steps.jsonl, TensorBoard and
    MLflow when on), in whose mean loss every rank takes part. A resume (`state`) continues where
    its checkpoint left off."""
    every, main = config.logging.every_n_steps, trainer.parts.ranks.is_main
    steps_done = state.global_step if state is not None else 0
    with contextlib.ExitStack() as stack:
        consumers = []
        if tracker is not None:
            trainer.events.epoch_end.append(tracker.log_epoch)
            consumers.append(tracker.log_step)
        if config.logging.tensorboard and main:
            from trainctl.training.tensorboard import TensorBoardLogger

            # Epochs and steps are two axes, so two folders (TensorBoard runs), each hiding on a
            # resume what was written past the checkpoint on its own axis.
            folder = run.path / "tensorboard"
            board = TensorBoardLogger(folder, None if state is None else state.epoch + 1)
            stack.enter_context(contextlib.closing(board))
            trainer.events.epoch_end.append(lambda end: board.log(end.row))
            if every is not None:
                steps_board = TensorBoardLogger(folder / "steps", None if state is None else steps_done + 1)
                consumers.append(stack.enter_context(contextlib.closing(steps_board)).log_step)
        if every is not None:
            from trainctl.training.step_records import recording_steps

            parts = trainer.parts
            stack.enter_context(
                recording_steps(
                    trainer.events, every, parts.optimizer, parts.ranks, steps_done, run if main else None, consumers
                )
            )
        yield


def evaluate_run(
    run_dir: str | Path, checkpoint: str = "best", split: str = "test", worst: int = 10
) -> tuple[RunFolder, dict[str, Any]]:
    """Rebuild a run's model from its saved config, load a checkpoint and evaluate one split; write
    the record and each sample's result (`trainctl.reports.samples`) into the run folder."""
    from trainctl.reports.samples import samples_file_name, write_samples
    from trainctl.training.build import build_model_parts
    from trainctl.training.trainer import evaluate_checkpoint

    if split not in ("train", "val", "test"):
        raise UserError(f"--split: unknown split {split!r}; allowed: train, val, test")
    run = RunFolder.open(run_dir)
    config = load_config(run.config_path)
    parts = build_model_parts(config)
    path = run.checkpoint_path(checkpoint)
    scored = evaluate_checkpoint(
        parts.model, path, split, parts.loss_fn, parts.data, config.metrics, worst, _output_kind(config)
    )
    record = scored.record
    record["checkpoint"] = checkpoint
    # No run lock: eval may run beside a training run, and an atomic write of its own files is enough.
    name = run.eval_record_name(split, checkpoint)
    write_samples(run.path / samples_file_name(name), scored.samples)
    run.write_json(name, record)
    return run, record


@dataclass
class DataEvaluation:
    run: RunFolder
    record: dict[str, Any]
    record_path: Path  # RUN/eval-data-STEM-CHECKPOINT.json, with its per-sample file beside it
    unused_columns: list[str]  # a table's columns the model does not read (left out)


def evaluate_data(
    run_dir: str | Path, data_path: Path, checkpoint: str = "best", worst: int = 10, force: bool = False
) -> DataEvaluation:
    """Score a run on a new labelled file (a folder, for image and audio folder runs), encoded with
    what the run saved of its training data (data.json): no training data is read. Writes the
    record and the per-sample file into the run folder, named after the data, never over earlier
    ones unless `force`."""
    from trainctl.prediction import build_run_model, read_labelled, saved_data
    from trainctl.reports.samples import samples_file_name, write_samples
    from trainctl.training.build import resolve_device
    from trainctl.training.trainer import evaluate_checkpoint

    run = RunFolder.open(run_dir)
    config = load_config(run.config_path)
    saved = saved_data(run)
    name = run.eval_record_name(f"data-{_file_label(data_path)}", checkpoint)
    outputs = [run.path / name, run.path / samples_file_name(name)]
    for path in outputs:
        if path.exists() and not force:
            raise UserError(
                f"{path}: already exists (an earlier eval --data of {data_path.name}); add --force to replace it"
            )
    path = run.checkpoint_path(checkpoint)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    labelled = read_labelled(run, config, saved, data_path)
    loaded = build_run_model(config, saved)
    data = _labelled_split(saved, loaded, labelled, resolve_device(config.trainer.device))
    loss_fn = _loss_of_saved_run(config, saved, data, run).to(data.test.device)
    scored = evaluate_checkpoint(
        loaded.module, path, "test", loss_fn, data, config.metrics, worst, _output_kind(config)
    )
    record = {**scored.record, "split": "data", "data": str(data_path), "checkpoint": checkpoint}
    write_samples(outputs[1], scored.samples)
    run.write_json(name, record)
    return DataEvaluation(run, record, outputs[0], labelled.unused_columns or [])


def _file_label(path: Path) -> str:
    """A data file's or folder's name as part of a file name: its stem, with what a name may not hold as `-`."""
    import re

    return (
        re.sub(r"[^\w.-]+", "-", path.resolve().stem if path.is_file() else path.resolve().name).strip(".-") or "data"
    )


SCALE_KEYS = ("target_mean", "target_std")  # data.json: a regression target's training mean and std


def _labelled_split(saved: dict[str, Any], loaded: Any, labelled: Any, device: torch.device) -> Any:
    """The labelled data as PreparedData whose test split it is (training and validation empty),
    with the run's task, target encoding and scale."""
    import torch

    from trainctl.data.prepare import PreparedData, Split, encode_targets

    task, plan = loaded.task, loaded.plan
    assert plan is not None  # build_run_model sets it
    mean, std = (torch.tensor(saved[key], device=device) if saved[key] is not None else None for key in SCALE_KEYS)
    inputs = labelled.inputs.to(device)
    if task.kind == "classification":
        labels = torch.as_tensor(labelled.labels, dtype=torch.int64, device=device)
        targets = encode_targets(labels, plan, task)
    else:
        labels = torch.as_tensor(labelled.labels, dtype=torch.float32, device=device)
        targets = labels if mean is None or std is None else (labels - mean) / std
    split = Split(inputs, labels, targets, labelled.rows, labelled.lengths)
    empty = Split(inputs[:0], labels[:0], targets[:0], labelled.rows[:0])
    return PreparedData(
        train=empty,
        val=empty,
        test=split,
        task=task,
        plan=plan,
        input_shape=tuple(saved["input_shape"]),
        target_mean=mean,
        target_std=std,
        encoding={key: saved[key] for key in ("table", "image", "text", "audio") if saved.get(key)},
        files=labelled.files,
    )


def _loss_of_saved_run(config: Config, saved: dict[str, Any], data: Any, run: RunFolder) -> torch.nn.Module:
    """The run's loss as training built it, its class weights from the training counts data.json
    keeps; a run trained before they were saved cannot weigh classes as it did."""
    from trainctl.training.build import loss_for_task

    counts = saved.get("class_counts")
    if counts is None and _weighs_classes_by_counts(config.loss.params):
        raise UserError(
            f"{run.path}: trained by an earlier trainctl, whose data.json lacks the training class counts that "
            f"loss {config.loss.name!r} (class_weight: balanced) weighs by; eval --data cannot score it: train it again"
        )
    return loss_for_task(config, data.task, data.plan, tuple(counts or ()))


def _weighs_classes_by_counts(params: Any) -> bool:
    """Whether a loss's parameters (a composite's terms too) ask for weights from the class counts."""
    if isinstance(params, dict):
        return any(_weighs_classes_by_counts(value) for value in params.values())
    if isinstance(params, list):
        return any(_weighs_classes_by_counts(value) for value in params)
    return params == "balanced"


@dataclass
class LrFindResult:
    config: Config
    sweep: Sweep
    suggestion: Suggestion
    plot: Path
    rate_key: str  # the config key the suggestion is for: optimizer.lr, or scheduler.max_lr (onecycle)
    configured: float  # the config's value at that key
    seconds: float  # the test's training time


PLOT_TYPES = (".png", ".svg", ".pdf")


def lr_find(
    config_path: str | Path,
    overrides: list[str] | None,
    settings: RangeSettings,
    plot: Path,
    *,
    force: bool = False,
    output: Output | None = None,
) -> LrFindResult:
    """The learning-rate range test of `trainctl lr-find`: sweep the rate on the config's own model
    (`trainctl.training.lr_finder`), suggest one (`lr_range.suggest`) and plot the test. Writes the
    plot and nothing else; a sweep whose loss never fell is a UserError, after the plot is written."""
    from trainctl.files import new_output
    from trainctl.reports.lr_range_plot import plot_range_test
    from trainctl.reports.preflight import PreflightError, preflight
    from trainctl.training.lr_finder import build_range_parts, configured_rate, rate_key, run_range_test
    from trainctl.training.lr_range import suggest

    settings.check()
    if ranks_from_environment().distributed:
        raise UserError("lr-find runs in one process: start it without torchrun")
    if plot.suffix.lower() not in PLOT_TYPES:
        raise UserError(f"--output {plot}: unknown image type {plot.suffix!r}; allowed: {', '.join(PLOT_TYPES)}")
    config = load_config(config_path, overrides)
    with new_output(plot, "--output", force) as image:  # refused now, not after the test, when it cannot be written
        parts = build_range_parts(config)
        report = preflight(config, parts)
        if report.errors:
            raise PreflightError(report.errors)
        for finding in report.warnings:
            (output or Output()).warn(str(finding))
        started = time.perf_counter()
        sweep = run_range_test(config, parts, settings)
        seconds = time.perf_counter() - started
        suggestion = suggest(sweep)
        plot_range_test(sweep, suggestion, image)
    if suggestion.lr is None:
        raise UserError(f"lr-find: no suggestion: {suggestion.problem} (plot: {plot})")
    return LrFindResult(config, sweep, suggestion, plot, rate_key(config), configured_rate(config), seconds)
