"""MLflow tracking (`logging.mlflow`), read back with MLflow's own client from real SQLite stores: a
run's params, metrics, steps, files and tags against its run folder; resumes that continue the same
MLflow run; sweeps and repeat groups as a parent with nested runs; failures of the tracker that
leave the run complete; the config's errors; no import of mlflow when the setting is off."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainctl import __version__
from trainctl.output import Output
from trainctl.training.mlflow_store import CUT, RECORD_FILE, flat_params, resolve_tracking_uri
from trainctl.workflows import resume, train

from helpers import TRAINCTL, read_jsonl, run_cli, write_config

PER_EPOCH = 7  # iris: 105 training samples in batches of 16
LONG_GRID = [round(0.001 + i * 1e-6, 6) for i in range(800)]  # sweep.grid's value: over 6000 characters as text


@pytest.fixture(autouse=True)
def quiet_mlflow(monkeypatch):
    """No telemetry from MLflow during the tests, and no store or experiment from the environment."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


def mlflow_client(tracking_uri: str):
    """MLflow's own client (imported here: mlflow takes seconds to import, and only these tests use it)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> Path:
    """An empty SQLite store with MLflow's tables made once: each test copies it rather than paying
    MLflow's schema migrations (seconds) again."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow_client(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path, migrated_store) -> str:
    path = tmp_path / "store" / "mlflow.db"
    path.parent.mkdir()
    shutil.copy(migrated_store, path)
    return f"sqlite:///{path}"


def tiny_config(
    directory: Path,
    store: str | None,
    *,
    epochs: int = 3,
    every: int | None = 3,
    run_name: str | None = None,
    **sections,
) -> Path:
    mlflow = None if store is None else {"tracking_uri": store, "experiment": "tests", "run_name": run_name}
    return write_config(
        directory,
        trainer={"epochs": epochs, "device": "cpu"},
        logging={"every_n_steps": every, "mlflow": mlflow},
        **sections,
    )


def recorded(run: Path) -> tuple[object, object]:
    """The MLflow client of the store a run folder records, and its MLflow run."""
    record = json.loads((run / RECORD_FILE).read_text())
    client = mlflow_client(record["tracking_uri"])
    return client, client.get_run(record["run_id"])


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((point.step, point.value) for point in client.get_metric_history(run_id, key))


def leaves(data: dict, prefix: str = "") -> dict[str, object]:
    """Every leaf of a nested mapping by its dotted path (an empty mapping is a leaf)."""
    found: dict[str, object] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        found.update(leaves(value, f"{path}.") if isinstance(value, dict) and value else {path: value})
    return found


def expected_params(run: Path) -> dict[str, str]:
    """The run's config.yaml as params: each leaf by its dotted path, its value as YAML (JSON) writes it."""
    saved = yaml.safe_load((run / "config.yaml").read_text())
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in leaves(saved).items()}


def assert_metrics_match_the_folder(client, run_id: str, run: Path, *, timed: bool = True) -> None:
    """Each metrics.jsonl value at its epoch, and each steps.jsonl loss and rate at its step, once.
    `timed` False: each epoch's `seconds` once, whatever its value (an epoch trained again after a
    kill is logged by its first training, and trains as long as it happens to)."""
    rows = read_jsonl(run / "metrics.jsonl")
    for key in {key for row in rows for key in row} - {"epoch"}:
        expected = [(row["epoch"], row[key]) for row in rows if key in row]
        logged = history(client, run_id, key)
        if key == "seconds" and not timed:
            expected, logged = [step for step, _ in expected], [step for step, _ in logged]
        assert logged == expected, key
    steps = read_jsonl(run / "steps.jsonl") if (run / "steps.jsonl").is_file() else []
    assert history(client, run_id, "train_step/loss") == [(row["step"], row["loss"]) for row in steps]
    assert history(client, run_id, "train_step/lr") == [(row["step"], row["lr"]) for row in steps]


# ---- one run ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_logs_its_config_metrics_steps_files_and_tags(tmp_path, store):
    config = tiny_config(tmp_path, store, sweep={"grid": {"optimizer.lr": LONG_GRID}})
    run = train(config, out=tmp_path / "run", output=Output(quiet=True)).run.path
    client, logged = recorded(run)
    run_id = logged.info.run_id

    expected = expected_params(run)
    long_key = "sweep.grid.optimizer.lr"
    assert len(expected[long_key]) > 6000
    assert logged.data.params[long_key] == expected[long_key][: 6000 - len(CUT)] + CUT
    assert {key: value for key, value in logged.data.params.items() if key != long_key} == {
        key: value for key, value in expected.items() if key != long_key
    }
    assert logged.data.params["model.hidden"] == "[16]"
    assert logged.data.params["optimizer.lr"] == "0.01"
    assert logged.data.params["logging.mlflow.experiment"] == "tests"

    assert_metrics_match_the_folder(client, run_id, run)
    assert len(history(client, run_id, "train_step/loss")) == 3 * PER_EPOCH // 3
    summary = json.loads((run / "summary.json").read_text())
    for metric in ("loss", "accuracy", "f1"):
        assert history(client, run_id, f"test/{metric}") == [(summary["test"]["epoch"], summary["test"][metric])]

    files = {item.path for item in client.list_artifacts(run_id)}
    assert files == {"summary.json", "config.yaml", "curves.png", "reliability.png", "checkpoints"}
    assert [item.path for item in client.list_artifacts(run_id, "checkpoints")] == ["checkpoints/best.pt"]
    best = client.download_artifacts(run_id, "checkpoints/best.pt", str(tmp_path / "downloaded"))
    assert Path(best).read_bytes() == (run / "checkpoints" / "best.pt").read_bytes()
    full = client.download_artifacts(run_id, "config.yaml", str(tmp_path / "downloaded"))
    assert yaml.safe_load(Path(full).read_text())["sweep"]["grid"]["optimizer.lr"] == LONG_GRID

    experiment = client.get_experiment(logged.info.experiment_id)
    assert experiment.name == "tests"
    store_folder = Path(store.removeprefix("sqlite:///")).parent
    assert experiment.artifact_location == (store_folder / "mlruns" / "tests").as_uri()  # beside the store
    assert (store_folder / "mlruns" / "tests" / run_id / "artifacts" / "checkpoints" / "best.pt").is_file()
    assert logged.info.status == "FINISHED"
    assert logged.info.run_name == "run"
    tags = logged.data.tags
    assert (tags["trainctl.version"], tags["trainctl.status"]) == (__version__, "finished")
    assert tags["trainctl.run_folder"] == str(run.resolve())
    assert "mlflow.parentRunId" not in tags


@pytest.mark.slow
def test_resume_continues_the_same_mlflow_run_with_one_point_per_epoch(tmp_path, store):
    """Extended by an epoch, then as if killed after logging epoch 2 but before its checkpoint: the
    second resume trains epoch 2 again and MLflow still holds it once."""
    config = tiny_config(tmp_path, store, epochs=2)
    run = train(config, ["trainer.epochs=1"], out=tmp_path / "run", output=Output(quiet=True)).run
    first_id = recorded(run.path)[1].info.run_id
    saved = tmp_path / "epoch1"
    shutil.copytree(run.path / "checkpoints", saved)
    resume(run.path, ["trainer.epochs=2"], output=Output(quiet=True))
    shutil.rmtree(run.path / "checkpoints")
    shutil.copytree(saved, run.path / "checkpoints")
    run.summary_path.unlink()
    resume(run.path, ["trainer.epochs=2"], output=Output(quiet=True))

    client, logged = recorded(run.path)
    assert logged.info.run_id == first_id
    assert len(client.search_runs([logged.info.experiment_id])) == 1
    assert [step for step, _ in history(client, first_id, "val/loss")] == [1, 2]
    assert_metrics_match_the_folder(client, first_id, run.path, timed=False)
    assert len(history(client, first_id, "train_step/loss")) == 2 * PER_EPOCH // 3
    assert (logged.info.status, logged.data.tags["trainctl.status"]) == ("FINISHED", "finished")


@pytest.mark.slow
def test_a_store_that_cannot_be_written_is_one_warning_and_a_resume_logs_the_whole_run(tmp_path, migrated_store):
    """The store's folder is a file: the run completes with one warning line. With the folder in
    place, a resume makes the MLflow run and logs what the folder held before it, then its epoch."""
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the store's folder should be")
    store = f"sqlite:///{blocked / 'mlflow.db'}"
    config = tiny_config(tmp_path, store, epochs=2)
    result = run_cli("train", config, "--out", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"warning: logging.mlflow: {store}: [Errno 17] File exists: '{blocked}'; the run goes on without MLflow"
    ]
    run = tmp_path / "run"
    assert {"summary.json", "curves.png", "metrics.jsonl", "steps.jsonl"} <= {path.name for path in run.iterdir()}
    assert not (run / RECORD_FILE).exists()

    blocked.unlink()
    blocked.mkdir()
    shutil.copy(migrated_store, blocked / "mlflow.db")
    result = run_cli("train", "--resume", run, "--set", "trainer.epochs=3", "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    client, logged = recorded(run)
    assert [step for step, _ in history(client, logged.info.run_id, "val/accuracy")] == [1, 2, 3]
    assert_metrics_match_the_folder(client, logged.info.run_id, run)


@pytest.mark.slow
def test_a_failure_while_logging_mid_run_is_one_warning_and_the_run_completes(tmp_path, store, capsys):
    """The MLflow run is deleted after the first epoch, so logging the next one fails."""
    import time

    def delete_the_mlflow_run(end) -> None:
        if end.epoch != 1:
            return
        record = tmp_path / "run" / RECORD_FILE
        deadline = time.monotonic() + 60
        while not record.is_file() and time.monotonic() < deadline:  # the writer makes the run meanwhile
            time.sleep(0.05)
        client = mlflow_client(store)
        client.delete_run(json.loads(record.read_text())["run_id"])

    config = tiny_config(tmp_path, store, epochs=3, every=None)
    result = train(config, out=tmp_path / "run", output=Output(quiet=True), epoch_end=[delete_the_mlflow_run])
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"warning: logging.mlflow: {store}: ")
    assert "must be in the 'active' state" in warnings[0]
    assert warnings[0].endswith("; the run goes on without MLflow")
    assert result.summary["epochs_trained"] == 3
    assert (result.run.path / "summary.json").is_file()


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.distributed
def test_only_rank_0_logs_a_run_in_two_processes(tmp_path, store):
    config = tiny_config(tmp_path, store, epochs=2, every=2)
    finished = subprocess.run(
        [TRAINCTL, "train", config, "--nproc", "2", "--out", tmp_path / "run", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stderr == ""
    client, logged = recorded(tmp_path / "run")
    assert len(client.search_runs([logged.info.experiment_id])) == 1
    assert_metrics_match_the_folder(client, logged.info.run_id, tmp_path / "run")


# ---- sweeps and repeats ---------------------------------------------------------------------------


def children_of(client, parent) -> dict[str, object]:
    runs = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    return {run.info.run_name: run for run in runs}


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_sweep_logs_a_parent_run_with_its_trials_nested(tmp_path, store):
    config = tiny_config(tmp_path, store, epochs=2, every=None, run_name="lr-search")
    result = run_cli("sweep", config, "--grid", "optimizer.lr=0.01,0.1", "--out", tmp_path / "sweep")
    assert result.exit_code == 0, result.output
    sweep = tmp_path / "sweep"
    client, parent = recorded(sweep)
    children = children_of(client, parent)
    assert sorted(children) == ["trial-0000", "trial-0001"]
    for name, child in children.items():
        assert json.loads((sweep / name / RECORD_FILE).read_text())["run_id"] == child.info.run_id
        assert child.data.params == expected_params(sweep / name)
        assert child.data.params["logging.mlflow.parent_run_id"] == parent.info.run_id
        assert_metrics_match_the_folder(client, child.info.run_id, sweep / name)
        assert child.info.status == "FINISHED"

    leaderboard = (sweep / "leaderboard.csv").read_text().splitlines()
    best = dict(zip(leaderboard[0].split(","), leaderboard[1].split(",")))
    assert (parent.info.status, parent.info.run_name) == ("FINISHED", "lr-search")
    assert parent.data.tags["trainctl.kind"] == "sweep"
    assert parent.data.tags["trainctl.best_trial"] == best["folder"]
    assert parent.data.tags["trainctl.best.optimizer.lr"] == best["optimizer.lr"]
    assert parent.data.metrics["val/accuracy"] == float(best["val/accuracy"])
    assert parent.data.params["sweep.optimizer.lr"] == "in 0.01, 0.1"
    assert "optimizer.lr" not in parent.data.params  # the trials vary it
    assert [item.path for item in client.list_artifacts(parent.info.run_id)] == ["leaderboard.csv"]


@pytest.mark.slow
@pytest.mark.subprocess
def test_repeats_log_a_parent_run_with_each_seed_nested(tmp_path, store):
    config = tiny_config(tmp_path, store, epochs=2, every=2)
    result = run_cli("train", config, "--repeats", "2", "--out", tmp_path / "group", "-q")
    assert result.exit_code == 0, result.output
    group = tmp_path / "group"
    client, parent = recorded(group)
    children = children_of(client, parent)
    assert sorted(children) == ["seed-0", "seed-1"]
    for name, child in children.items():
        assert child.data.params == expected_params(group / name)
        assert child.data.params["seed"] == name.removeprefix("seed-")
        assert_metrics_match_the_folder(client, child.info.run_id, group / name)

    summary = json.loads((group / "summary.json").read_text())
    assert parent.data.metrics["test/accuracy_mean"] == summary["test"]["accuracy"]["mean"]
    assert parent.data.metrics["test/accuracy_sd"] == summary["test"]["accuracy"]["sd"]
    assert parent.data.params["repeats.seed"] == "0, 1"
    assert (parent.info.status, parent.data.tags["trainctl.kind"]) == ("FINISHED", "repeats")


@pytest.mark.slow
@pytest.mark.subprocess
def test_cross_validation_logs_a_parent_run_with_each_fold_nested(tmp_path, store):
    config = tiny_config(tmp_path, store, epochs=1, every=None)
    result = run_cli("cv", config, "--folds", "2", "--out", tmp_path / "cv", "-q")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "cv"
    client, parent = recorded(folder)
    children = children_of(client, parent)
    assert sorted(children) == ["fold-1", "fold-2"]
    for name, child in children.items():
        assert child.data.params == expected_params(folder / name)
        assert child.data.params["data.fold.index"] == name.removeprefix("fold-")
        assert_metrics_match_the_folder(client, child.info.run_id, folder / name)

    summary = json.loads((folder / "summary.json").read_text())
    assert parent.data.metrics["test/accuracy_mean"] == summary["test"]["accuracy"]["mean"]
    assert parent.data.params["cv.data.fold"] == "2 folds"
    assert (parent.info.status, parent.data.tags["trainctl.kind"]) == ("FINISHED", "cv")
    assert {item.path for item in client.list_artifacts(parent.info.run_id)} == {"summary.json", "cv.json", "oof.csv"}


# ---- failures that leave the run complete, in the command ------------------------------------------


def run_command(tmp_path: Path, *arguments: object, preamble: str = "") -> subprocess.CompletedProcess:
    """`trainctl ARGUMENTS` in a process of its own, after `preamble`; it prints at exit whether mlflow
    was imported."""
    script = (
        "import atexit, sys\n"
        f"{preamble}\n"
        "atexit.register(lambda: print('mlflow imported:', 'mlflow' in sys.modules))\n"
        "from trainctl.cli import main\n"
        "main()\n"
    )
    command = [sys.executable, "-c", script, *map(str, arguments)]
    return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)


def assert_complete(run: Path) -> None:
    names = {path.name for path in run.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "summary.json", "curves.png", "checkpoints"} <= names
    assert RECORD_FILE not in names


@pytest.mark.slow
@pytest.mark.subprocess
def test_an_unreachable_tracking_server_is_one_warning_line(tmp_path):
    config = tiny_config(tmp_path, "http://127.0.0.1:9", epochs=2)
    result = run_command(tmp_path, "train", config, "--out", tmp_path / "run", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: logging.mlflow: http://127.0.0.1:9: cannot reach the tracking server (Connection refused); "
        "the run goes on without MLflow"
    ]
    assert_complete(tmp_path / "run")


@pytest.mark.slow
@pytest.mark.subprocess
def test_mlflow_not_installed_is_one_warning_line_with_how_to_install_it(tmp_path):
    config = tiny_config(tmp_path, "sqlite:///mlflow.db", epochs=1)
    result = run_command(
        tmp_path, "train", config, "--out", tmp_path / "run", "-q", preamble="sys.modules['mlflow'] = None"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: logging.mlflow: the mlflow package is not installed, so the run goes on without MLflow; "
        "pip install mlflow (or, in the trainctl checkout, pip install -e '.[mlflow]')"
    ]
    assert_complete(tmp_path / "run")
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
@pytest.mark.subprocess
def test_train_does_not_import_mlflow_when_logging_mlflow_is_unset(tmp_path):
    config = tiny_config(tmp_path, None, epochs=1)
    result = run_command(tmp_path, "train", config, "--out", tmp_path / "run", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "mlflow imported: False"


# ---- settings -----------------------------------------------------------------------------------


def test_a_relative_store_is_resolved_against_the_working_folder(tmp_path):
    here = tmp_path.resolve()
    assert resolve_tracking_uri(None, here) == f"sqlite:///{here}/mlflow.db"
    assert resolve_tracking_uri("sqlite:///stores/a.db", here) == f"sqlite:///{here}/stores/a.db"
    assert resolve_tracking_uri("sqlite:////srv/a.db", here) == "sqlite:////srv/a.db"
    assert resolve_tracking_uri("mlruns", here) == f"{here}/mlruns"
    assert resolve_tracking_uri("file:mlruns", here) == f"file://{here}/mlruns"
    assert resolve_tracking_uri("http://tracking:5000", here) == "http://tracking:5000"
    assert resolve_tracking_uri("postgresql://user@db/mlflow", here) == "postgresql://user@db/mlflow"


def test_the_environment_names_the_store_when_the_config_does_not(tmp_path, monkeypatch):
    here = tmp_path.resolve()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    assert resolve_tracking_uri(None, here) == f"sqlite:///{here}/from-env.db"
    assert resolve_tracking_uri("sqlite:///from-config.db", here) == f"sqlite:///{here}/from-config.db"


def test_params_are_the_dotted_leaves_with_values_as_yaml_writes_them():
    config = {"model": {"hidden": [256, 256], "name": "mlp"}, "scheduler": None, "sweep": {"grid": {}}, "x": True}
    assert flat_params(config, 6000) == {
        "model.hidden": "[256, 256]",
        "model.name": "mlp",
        "scheduler": "null",
        "sweep.grid": "{}",
        "x": "true",
    }
    cut = flat_params({"long": "a" * 100}, 60)["long"]
    assert cut == "a" * (60 - len(CUT)) + CUT
    assert len(cut) == 60


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "mlflow: {experimnet: x}",
            "logging.mlflow.experimnet: unknown key (did you mean 'experiment'?); "
            "allowed: tracking_uri, experiment, run_name, parent_run_id",
        ),
        ("mlflow: {experiment: 5}", "logging.mlflow.experiment: Input should be a valid string (got 5)"),
        ("mlflow: {tracking_uri: ''}", "logging.mlflow.tracking_uri: String should have at least 1 character (got '')"),
        (
            "mlflow: true",
            "logging.mlflow: must be a mapping, e.g. {} for MLflow's defaults or {experiment: NAME} (got True)",
        ),
    ],
)
def test_a_wrong_mlflow_setting_is_a_config_error_before_training(cli, tmp_path, line, message):
    config = write_config(
        tmp_path,
        f"""
        data: {{name: iris}}
        model: {{name: mlp}}
        loss: {{name: cross_entropy}}
        optimizer: {{name: adam}}
        logging:
          {line}
        """,
    )
    result = cli("train", config, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {config}:6: {message}"
    assert not (tmp_path / "run").exists()
