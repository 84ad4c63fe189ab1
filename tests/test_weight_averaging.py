"""Weight averaging (trainer.ema, trainer.swa): the averages against ones computed here from the
recorded weights, validation and best.pt on the average, eval and the Python API reading it, exact
resume mid-epoch and at epoch boundaries, the learning rate SWA sets, and the config errors."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainctl.api import Run
from trainctl.config.loading import load_config
from trainctl.output import Output
from trainctl.runs import RunFolder
from trainctl.training.build import build_training
from trainctl.training.events import EpochEnd, StepEnd
from trainctl.training.interrupts import Interrupted, StopRequest
from trainctl.training.settings import fit_settings
from trainctl.training.trainer import Trainer, evaluate
from trainctl.workflows import evaluate_run, resume, train

from helpers import read_jsonl, write_config

BATCH = 16
STEPS = math.ceil(105 / BATCH)  # iris keeps 105 samples for training: 7 steps an epoch
EMA = {"decay": 0.8, "every": 1}
SWA = {"start_epoch": 2, "lr": 0.02}


COSINE = {"name": "cosine"}


def config_path(directory: Path, epochs: int = 4, scheduler: dict | None = COSINE, **trainer: object) -> Path:
    """Iris, an MLP with batch norm and dropout (the statistics and the random state averaging must
    keep right), SGD with momentum on a cosine schedule."""
    return write_config(
        directory,
        data={"name": "iris", "batch_size": BATCH},
        model={"name": "mlp", "hidden": [16], "batch_norm": True, "dropout": 0.2},
        optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9},
        scheduler=scheduler,
        trainer={"epochs": epochs, "device": "cpu", **trainer},
    )


def make_trainer(
    directory: Path, epochs: int = 4, *, with_run: bool = False, scheduler: dict | None = COSINE, **trainer: object
) -> Trainer:
    config = load_config(config_path(directory, epochs, scheduler, **trainer))
    parts = build_training(config)
    run = None
    if with_run:
        run = RunFolder.create(config.output_dir, config.name, directory / "run")
        run.write_config(config.to_dict())
        run.write_json("data.json", parts.data.description())
    return Trainer(parts, fit_settings(config, parts, run))


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tolerance: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if tolerance:
            assert torch.allclose(a[name].double(), b[name].double(), atol=tolerance, rtol=0), name
        else:
            assert torch.equal(a[name], b[name]), name


def validation_loss(trainer: Trainer, state: dict[str, torch.Tensor]) -> float:
    """The validation loss of these weights, in a copy of the run's model (its own stays as it is)."""
    model = copy.deepcopy(trainer.parts.model)
    model.load_state_dict(state)
    return evaluate(model, trainer.parts.data.val, trainer.parts.loss_fn, trainer.parts.data, ()).loss


# ---- EMA --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("every", "accumulate"), [(1, 1), (2, 3)])
def test_the_ema_is_the_exponential_average_of_the_weights_after_each_optimizer_step(tmp_path, every, accumulate):
    """Recorded after every optimizer step (with accumulate 3, one per group of micro-batches), the
    trained weights averaged here: every `every`-th step, the first a copy, then decay·avg + (1−decay)·w.
    Batch-norm running statistics are averaged too; its step counter is copied."""
    decay = 0.8
    trainer = make_trainer(tmp_path, epochs=2, ema={"decay": decay, "every": every}, accumulate=accumulate)
    trajectory: list[dict[str, torch.Tensor]] = []
    trainer.events.step_end.append(lambda end: trajectory.append(weights(trainer.parts.model)))
    rows: list[dict] = []
    trainer.events.epoch_end.append(lambda end: rows.append(dict(end.row)))
    trainer.fit()

    groups = math.ceil(STEPS / accumulate)
    assert len(trajectory) == 2 * groups
    expected: dict[str, torch.Tensor] = {}
    for number, step in enumerate(trajectory, 1):
        if number % every:
            continue
        if not expected:
            expected = {name: value.double() for name, value in step.items()}
        else:
            for name, value in step.items():
                if value.is_floating_point():
                    expected[name] = decay * expected[name] + (1 - decay) * value.double()
                else:
                    expected[name] = value.double()
    averaged = trainer.averaging.evaluated(trainer.parts.model)
    assert averaged is not trainer.parts.model
    assert_same({k: v.double() for k, v in weights(averaged).items()}, expected, tolerance=1e-6)
    assert [row["n_averaged"] for row in rows] == [groups // every, 2 * groups // every]
    assert rows[-1]["val/loss"] == validation_loss(trainer, weights(averaged))  # validated: the average
    assert rows[-1]["val/loss"] != validation_loss(trainer, weights(trainer.parts.model))


def test_best_pt_holds_the_validated_average_and_eval_and_the_api_read_it(tmp_path, cli):
    result = train(config_path(tmp_path, epochs=3, ema=EMA), out=tmp_path / "run", output=Output(quiet=True))
    run = result.run
    best = torch.load(run.checkpoint_path("best"), weights_only=True)
    rows = read_jsonl(run.metrics_path)
    best_row = rows[result.summary["best_epoch"] - 1]
    assert best["averaging"]["weights"] == "ema"
    assert best["averaging"]["n_averaged"] == best_row["n_averaged"] == STEPS * best_row["epoch"]
    assert any(not torch.equal(best["model"][k], best["averaging"]["trained_model"][k]) for k in best["model"])

    _, val = evaluate_run(run.path, "best", "val")  # the checkpoint scores what its epoch was validated with
    assert val["loss"] == pytest.approx(best_row["val/loss"], rel=1e-6)
    assert val["weights"] == "ema"
    test = result.summary["test"]
    assert test["weights"] == "ema"
    shown = cli("eval", run.path)
    assert shown.exit_code == 0, shown.output
    assert "test split, best checkpoint (epoch" in shown.stdout and "EMA weights" in shown.stdout
    _, again = evaluate_run(run.path)
    assert {k: again[k] for k in ("loss", "accuracy", "weights")} == {
        k: test[k] for k in ("loss", "accuracy", "weights")
    }
    assert_same(weights(Run(run.path).model()), best["model"])  # what predict and the Python API load


# ---- SWA --------------------------------------------------------------------------------------------


def batch_norm_statistics(model: torch.nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What update_bn must give the mlp's batch norm (after its first Linear): the mean over the
    training split's batches, in order, of each batch's mean and unbiased variance."""
    linear = model[1]
    means, variances = [], []
    for start in range(0, len(inputs), BATCH):
        hidden = linear(inputs[start : start + BATCH]).double()
        means.append(hidden.mean(0))
        variances.append(hidden.var(0, unbiased=True))
    return torch.stack(means).mean(0), torch.stack(variances).mean(0)


def test_swa_is_the_mean_of_the_epoch_end_weights_from_start_epoch_with_batch_norm_recomputed(tmp_path):
    trainer = make_trainer(tmp_path, epochs=4, swa={"start_epoch": 2, "lr": 0.02})
    ends: list[dict[str, torch.Tensor]] = []
    rows: list[dict] = []

    def record(end: EpochEnd) -> None:
        ends.append(weights(trainer.parts.model))
        rows.append(dict(end.row))

    trainer.events.epoch_end.append(record)
    trainer.fit()
    averaged = trainer.averaging.evaluated(trainer.parts.model)
    parameters = {name for name, _ in trainer.parts.model.named_parameters()}
    mean = {name: torch.stack([end[name].double() for end in ends[1:]]).mean(0) for name in parameters}
    assert_same({k: v.double() for k, v in weights(averaged).items() if k in parameters}, mean, tolerance=1e-6)
    with torch.no_grad():
        running_mean, running_var = batch_norm_statistics(averaged, trainer.parts.data.train.inputs)
    assert torch.allclose(averaged[2].running_mean.double(), running_mean, atol=1e-5, rtol=0)
    assert torch.allclose(averaged[2].running_var.double(), running_var, atol=1e-5, rtol=0)
    assert [row["n_averaged"] for row in rows] == [0, 1, 2, 3]
    assert rows[0]["val/loss"] == validation_loss(trainer, ends[0])  # before start_epoch: the trained weights
    assert rows[-1]["val/loss"] == validation_loss(trainer, weights(averaged))


def test_swa_leaves_the_training_trajectory_alone_before_start_epoch(tmp_path):
    """The batch-norm pass draws its dropout masks from a fork of the random state: with SWA at the
    optimizer's own rate, the trained weights are those of a run without SWA."""
    (tmp_path / "swa").mkdir(), (tmp_path / "plain").mkdir()
    with_swa = make_trainer(tmp_path / "swa", epochs=2, scheduler=None, swa={"start_epoch": 1, "lr": 0.1})
    with_swa.fit()
    plain = make_trainer(tmp_path / "plain", epochs=2, scheduler=None)  # built after: the seed is set again
    plain.fit()
    assert with_swa.averaging.row_entries() == {"n_averaged": 2}
    assert_same(weights(with_swa.parts.model), weights(plain.parts.model))


def test_swa_sets_the_rate_from_start_epoch_and_the_configured_schedule_stops(tmp_path):
    """The epoch rows' lr is the rate each epoch ended with. Before start_epoch, the cosine per
    step (with its warm-up); from it, SWALR: the rate the cosine left, annealed (cos) to lr over
    anneal_epochs, then held; the per-step cosine no longer moves it within an epoch."""
    config = config_path(tmp_path, epochs=5, swa={"start_epoch": 2, "lr": 0.02, "anneal_epochs": 2})
    text = config.read_text().replace("name: cosine", "name: cosine\n  warmup_steps: 3")
    config.write_text(text)
    result = train(config, out=tmp_path / "run", output=Output(quiet=True))
    rates = [row["lr"] for row in read_jsonl(result.run.metrics_path)]
    total, peak = 5 * STEPS, 0.1
    left = peak * (1 + math.cos(math.pi * (STEPS - 3) / (total - 3))) / 2  # the cosine after epoch 1
    assert rates[0] == pytest.approx(left, rel=1e-12)
    assert rates[1:] == pytest.approx([left, (left + 0.02) / 2, 0.02, 0.02], rel=1e-12)


# ---- resume -----------------------------------------------------------------------------------------


class KilledAtEpochEnd(Exception):
    """The process dying between an epoch's validation and its checkpoint: last.pt holds the epoch before."""


def stopped_run(directory: Path, epochs: int, stop_at: tuple[int, int], averaging: dict) -> RunFolder:
    """A run stopped at (epoch, step): a stop request after that step, or with step 0, killed at
    that epoch's end, so that it resumes from the previous epoch's boundary."""
    trainer = make_trainer(directory, epochs, with_run=True, **averaging)
    stop = StopRequest()
    epoch, step = stop_at

    def request(end: StepEnd) -> None:
        stop.requested = (end.epoch, end.step) == (epoch, step)

    def kill(end: EpochEnd) -> None:
        if end.epoch == epoch:
            raise KilledAtEpochEnd

    trainer.events.step_end.append(request)
    trainer.events.epoch_end.append(kill)
    with pytest.raises(KilledAtEpochEnd if step == 0 else Interrupted):
        trainer.fit(stop=stop)
    run = trainer.settings.output.run
    assert run is not None
    run.release()  # as the stopped process's end would
    return run


RESUMES = {
    "ema mid-epoch": ({"ema": EMA}, (2, 3)),
    "ema every 3 mid-epoch": ({"ema": {"decay": 0.8, "every": 3}}, (2, 5)),
    "ema at an epoch boundary": ({"ema": EMA}, (3, 0)),
    "swa mid-epoch in its phase": ({"swa": SWA}, (3, 2)),
    "swa mid-epoch before its phase": ({"swa": {**SWA, "start_epoch": 3, "anneal_epochs": 2}}, (2, 4)),
    "swa at the boundary before its phase": ({"swa": {**SWA, "start_epoch": 3}}, (3, 0)),
    "swa at a boundary in its phase": ({"swa": {**SWA, "anneal_epochs": 2}}, (4, 0)),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(RESUMES))
def test_a_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, case):
    averaging, stop_at = RESUMES[case]
    (tmp_path / "straight").mkdir(), (tmp_path / "stopped").mkdir()
    straight_path = config_path(tmp_path / "straight", 4, **averaging)
    straight = train(straight_path, out=tmp_path / "straight" / "run", output=Output(quiet=True))
    run = stopped_run(tmp_path / "stopped", 4, stop_at, averaging)
    saved = torch.load(run.checkpoint_path("last"), weights_only=True)
    epoch, step = stop_at
    assert (saved["state"]["epoch"], saved["state"]["step_in_epoch"]) == (epoch - 1, step)
    resumed = resume(run.path, output=Output(quiet=True))
    assert resumed.summary["epochs_trained"] == 4
    for name in ("last", "best"):
        a, b = (torch.load(r.checkpoint_path(name), weights_only=True) for r in (straight.run, run))
        assert_same(a["model"], b["model"])
        assert a["averaging"].keys() == b["averaging"].keys()
        for key, value in a["averaging"].items():
            if key == "trained_model" and value is not None:  # None: model holds the trained weights
                assert_same(value, b["averaging"][key])
            else:
                assert value == b["averaging"][key], key
        assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
        assert a["scheduler"] == b["scheduler"]
    strip = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert strip(read_jsonl(straight.run.metrics_path)) == strip(read_jsonl(run.metrics_path))
    assert resumed.summary["test"] == straight.summary["test"]


# ---- what is off costs nothing --------------------------------------------------------------------


def test_without_averaging_no_step_handler_runs_and_the_step_keeps_its_schedule(tmp_path):
    trainer = make_trainer(tmp_path, epochs=2)
    assert trainer._step_end_handlers() == []  # the loop builds and calls nothing per step
    assert trainer._step_for(2) is trainer.step
    assert trainer.averaging.evaluated(trainer.forward_model) is trainer.forward_model
    assert list(trainer.averaging.checkpoint_entries()) == ["model"]  # checkpoints as before: no averaging key


# ---- config -----------------------------------------------------------------------------------------


def validate_error(cli, tmp_path: Path, trainer_text: str) -> list[str]:
    path = write_config(
        tmp_path,
        f"""
        data: {{name: iris, batch_size: {BATCH}}}
        model: {{name: mlp, hidden: [16]}}
        loss: {{name: cross_entropy}}
        optimizer: {{name: sgd, lr: 0.1}}
        trainer:
          epochs: 3
          device: cpu
        """,
    )
    path.write_text(path.read_text() + trainer_text)
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    return [line.replace(str(path), "config.yaml") for line in result.stderr.strip().splitlines()]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("  ema: {decay: 1.0}\n", "config.yaml:8: trainer.ema.decay: Input should be less than 1 (got 1.0)"),
        ("  ema: {decay: 0}\n", "config.yaml:8: trainer.ema.decay: Input should be greater than 0 (got 0)"),
        ("  ema: {every: 0}\n", "config.yaml:8: trainer.ema.every: Input should be greater than or equal to 1 (got 0)"),
        (
            "  ema: {every: 1.5}\n",
            "config.yaml:8: trainer.ema.every: Input should be a valid integer (got 1.5)",
        ),
        (
            "  ema: {decy: 0.9}\n",
            "config.yaml:8: trainer.ema.decy: unknown key (did you mean 'decay'?); allowed: decay, every",
        ),
        ("  swa: {start_epoch: 2}\n", "config.yaml:8: trainer.swa.lr: required key is missing"),
        ("  swa: {start_epoch: 2, lr: 0}\n", "config.yaml:8: trainer.swa.lr: Input should be greater than 0 (got 0)"),
        (
            "  swa: {start_epoch: 0, lr: 0.01}\n",
            "config.yaml:8: trainer.swa.start_epoch: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            "  swa:\n    start_epoch: 4\n    lr: 0.01\n",
            "config.yaml:9: trainer.swa.start_epoch: 4 is after the run's last epoch; allowed: 1 to trainer.epochs (3)",
        ),
        (
            "  ema: {decay: 0.9}\n  swa: {start_epoch: 2, lr: 0.01}\n",
            "config.yaml:9: trainer.swa: trainer.ema and trainer.swa both replace the evaluated and saved "
            "weights by an average; a run keeps one: remove one of them",
        ),
        (
            "  ema: {decay: 0.9, every: 8}\n",
            f"config.yaml:8: trainer.ema.every: 8 is more than the {STEPS} optimizer steps of an epoch, so the "
            f"first epoch would end with no average to validate; allowed: 1 to {STEPS}",
        ),
    ],
)
def test_averaging_settings_are_checked_with_one_line_each(cli, tmp_path, text, message):
    assert validate_error(cli, tmp_path, text) == [f"error: {message}"]


def test_validate_warns_when_the_ema_spans_more_updates_than_the_run_makes(cli, tmp_path):
    path = config_path(tmp_path, epochs=3, ema={"decay": 0.999})
    result = cli("validate", path)
    assert result.exit_code == 0, result.output
    kept = 0.999 ** (3 * STEPS - 1)
    assert (
        f"warning: ema-horizon: trainer.ema.decay 0.999 averages over about 1,000 updates, but the run makes "
        f"{3 * STEPS}: the weights of its first update keep {kept:.0%} of the final average. Fix: lower "
        "trainer.ema.decay (the average spans about 1/(1 − decay) updates) or train longer"
    ) in " ".join(result.stdout.split())
    assert "ema-horizon" not in cli("validate", config_path(tmp_path, epochs=3, ema={"decay": 0.9})).stdout


# ---- several processes ----------------------------------------------------------------------------

WORKER = Path(__file__).parent / "workers" / "train_and_dump_average.py"


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.distributed
@pytest.mark.parametrize(
    ("averaging", "model"),
    [
        ({"ema": EMA}, {"name": "mlp", "hidden": [32]}),
        ({"swa": SWA}, {"name": "mlp", "hidden": [32], "batch_norm": True}),
    ],
    ids=["ema", "swa with batch norm"],
)
def test_every_rank_holds_the_average_one_process_computes(tmp_path, averaging, model):
    """Two processes on gloo: the average follows the synchronised weights, and SWA's batch-norm
    pass runs over the whole training split on every rank, so every rank holds the same average,
    statistics included. Without batch norm it is the average one process trains (with it, each
    rank normalises its own half of a batch, so the trained weights differ from one process's)."""
    config = write_config(
        tmp_path,
        data={"name": "digits", "batch_size": 64},
        model=model,
        optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9},
        trainer={"epochs": 2, "device": "cpu", **averaging},
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    finished = subprocess.run(
        [*command, str(WORKER), str(config), str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert_same(ranks[0], ranks[1])
    if model.get("batch_norm"):
        return
    one_process = load_config(config)
    parts = build_training(one_process)
    single = Trainer(parts, fit_settings(one_process, parts, None))
    single.fit()
    assert_same(ranks[0], weights(single.averaging.evaluated(parts.model)), tolerance=1e-5)
