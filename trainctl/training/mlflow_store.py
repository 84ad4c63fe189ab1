"""The MLflow side of `logging.mlflow`: which store a run logs to, the record of it in a folder
(mlflow.json), the config as params, and `Session`, the few client calls trainctl makes. mlflow
is imported only inside `Session`, only when the setting is on; the trackers that use it are in
`trainctl.training.mlflow_tracker`.

Stores: a relative path in the tracking URI is resolved against the working folder, so every
process of a sweep, and a resume started elsewhere, find the same store; the resolved URI is
recorded in the folder. The default is MLflow's own since 3.x, a SQLite file (`mlflow.db`) in the
working folder, where `mlflow ui` and `mlflow server` look when given no store: MLflow 3 refuses
its older folder store (./mlruns) unless MLFLOW_ALLOW_FILE_STORE is set. A new experiment in a
SQLite store keeps its runs' files beside the database (mlruns/<experiment>).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from trainctl.errors import install_hint
from trainctl.files import write_atomically

if TYPE_CHECKING:
    from trainctl.config.loading import MlflowSettings

RECORD_FILE = "mlflow.json"  # in a run (or sweep, or group) folder: the store and the MLflow run it logs to
# MLflow's own default store since 3.x: a SQLite file in the working folder, where `mlflow ui` and
# `mlflow server` look when given no store. The folder store (./mlruns) it replaced is deprecated.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
PROBE_SECONDS = 5.0  # how long a tracking server has to accept a connection before the run goes on without it
CUT = "… (cut: config.yaml, an artifact, has it whole)"
Status = Literal["finished", "interrupted", "failed"]
MLFLOW_STATUS = {"finished": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}


# ---- settings and records -------------------------------------------------------------------------


def resolve_tracking_uri(configured: str | None, folder: Path | None = None) -> str:
    """The store a run logs to: the configured URI (else $MLFLOW_TRACKING_URI, else MLflow's default)
    with a relative path made absolute against `folder` (the working folder), so that every process
    of a sweep, and a resume started elsewhere, write to the same store."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    base = folder or Path.cwd()
    sqlite = re.fullmatch(r"(sqlite(?:\+\w+)?):///(.*)", uri, re.S)
    if sqlite is not None:
        scheme, path = sqlite.groups()
        if path in ("", ":memory:") or path.startswith("/"):
            return uri
        return f"{scheme}:///{(base / path).resolve()}"
    parsed = urlparse(uri)
    if parsed.scheme == "file" and not parsed.netloc and not parsed.path.startswith("/"):
        return (base / parsed.path).resolve().as_uri()
    if len(parsed.scheme) <= 1:  # no scheme (or a Windows drive letter): a folder, MLflow's folder store
        return str((base / Path(uri).expanduser()).resolve())
    return uri


def flat_params(config: dict[str, Any], limit: int) -> dict[str, str]:
    """The config as MLflow params: one per leaf, named by its dotted path, its value as YAML (and
    JSON) writes it; an empty mapping is a leaf (`{}`). Values longer than `limit` are cut."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            flat[prefix] = text if len(text) <= limit else text[: limit - len(CUT)] + CUT

    walk("", config)
    return flat


def read_record(folder: Path) -> dict[str, Any] | None:
    """A folder's mlflow.json; None when it has none or one trainctl did not write (then a new
    MLflow run is made, and the record replaced)."""
    try:
        record = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("run_id", "tracking_uri")):
        return None
    return record


def write_record(folder: Path, run_id: str, tracking_uri: str, configured: str | None) -> None:
    record = {"run_id": run_id, "tracking_uri": tracking_uri, "configured_tracking_uri": configured}
    write_atomically((json.dumps(record, indent=2) + "\n").encode("utf-8"), folder / RECORD_FILE)


def recorded_store(folder: Path, settings: MlflowSettings) -> tuple[str, str | None]:
    """The store a folder logs to and the MLflow run to continue there: those its record names, while
    the config names the store it named (a resume started in another folder finds the same store);
    else the configured store, resolved now, and a new run."""
    record = read_record(folder)
    if record is not None and record.get("configured_tracking_uri") == settings.tracking_uri:
        return record["tracking_uri"], record["run_id"]
    return resolve_tracking_uri(settings.tracking_uri), None


def experiment_name(settings: MlflowSettings, default: str) -> str:
    return settings.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or default


def child_settings(folder: Path) -> tuple[str, ...]:
    """The `--set` settings that nest a run under the parent run of the sweep or group in `folder`,
    in the parent's store, named by its own folder (a run_name in the config names the parent);
    none when the folder has no parent run."""
    record = read_record(folder)
    if record is None:
        return ()
    # Quoted (JSON is YAML): an id of digits alone must stay text.
    return (
        f"logging.mlflow.parent_run_id={json.dumps(record['run_id'])}",
        f"logging.mlflow.tracking_uri={json.dumps(record['tracking_uri'])}",
        "logging.mlflow.run_name=null",
    )


def mlflow_installed() -> bool:
    try:
        return importlib.util.find_spec("mlflow") is not None
    except ValueError:  # in sys.modules as None: imports of it are blocked
        return False


NOT_INSTALLED = (
    "logging.mlflow: the mlflow package is not installed, so the run goes on without MLflow; "
    f"{install_hint('mlflow', 'mlflow')}"
)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= 1000 else line[:999] + "…"  # MLflow's own messages run to 600 characters


# ---- the connection to a store --------------------------------------------------------------------


class Unreachable(Exception):
    """The tracking server does not accept connections."""


class Session:
    """A client of one store: the experiment and the runs trainctl makes and reopens there."""

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri
        _probe(tracking_uri)
        from mlflow.tracking import MlflowClient
        from mlflow.utils import validation

        # MLflow announces each new SQLite store's tables at INFO on stderr; trainctl prints its own lines.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        self.client = MlflowClient(tracking_uri)
        self.param_limit = getattr(validation, "MAX_PARAM_VAL_LENGTH", 500)  # 6000 since MLflow 2.x; 500 before

    def experiment_id(self, name: str) -> str:
        """The experiment of this name, made when missing (by another process too: then taken)."""
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        try:
            return str(
                self.client.create_experiment(name, artifact_location=artifact_location(self.tracking_uri, name))
            )
        except Exception:  # a sweep's other process made it meanwhile
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return str(experiment.experiment_id)

    def create_run(self, experiment: str, name: str, parent_run_id: str | None, tags: dict[str, str]) -> str:
        """A new run; nested under `parent_run_id` (in the parent's experiment) when given. MLflow's
        source and user tags are set as its own `start_run` sets them, without its git lookups."""
        from mlflow.utils import mlflow_tags

        tags = {
            mlflow_tags.MLFLOW_SOURCE_NAME: "trainctl",
            mlflow_tags.MLFLOW_SOURCE_TYPE: "LOCAL",
            mlflow_tags.MLFLOW_USER: _user(),
            **tags,
        }
        if parent_run_id is not None:
            experiment_id = self.client.get_run(parent_run_id).info.experiment_id
            tags = {**tags, mlflow_tags.MLFLOW_PARENT_RUN_ID: parent_run_id}
        else:
            experiment_id = self.experiment_id(experiment)
        return str(self.client.create_run(experiment_id, run_name=name, tags=tags).info.run_id)

    def reopen(self, run_id: str) -> Any | None:
        """The run, set running again; None when the store no longer has it (or it was deleted)."""
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        if run.info.lifecycle_stage != "active":
            return None
        self.client.update_run(run_id, status="RUNNING")
        return run

    def last_step(self, run_id: str, key: str) -> int:
        return max((point.step for point in self.client.get_metric_history(run_id, key)), default=0)

    def log(self, run_id: str, points: Sequence[Points] = (), params: dict[str, str] | None = None) -> None:
        from mlflow.entities import Metric, Param

        metrics = [Metric(key, value, p.timestamp, p.step) for p in points for key, value in p.values.items()]
        params_list = [Param(key, value) for key, value in (params or {}).items()]
        if metrics or params_list:
            self.client.log_batch(run_id, metrics=metrics, params=params_list)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])

    def log_files(self, run_id: str, folder: Path, names: Sequence[str]) -> None:
        for name in names:
            path = folder / name
            if path.is_file():
                parent = str(Path(name).parent)
                self.client.log_artifact(run_id, str(path), None if parent == "." else parent)

    def end(self, run_id: str, status: Status) -> None:
        self.set_tags(run_id, {"trainctl.status": status})
        self.client.set_terminated(run_id, MLFLOW_STATUS[status])


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Where a new experiment in a SQLite store keeps its runs' files: beside the database, in
    mlruns/<experiment>. MLflow's own default is ./mlruns in whatever folder the process started in,
    which scatters one store's files over every folder a run (or a resume) started from. Other
    stores (a server, a database server) choose for themselves: None."""
    sqlite = re.fullmatch(r"sqlite(?:\+\w+)?:///(/.+)", tracking_uri, re.S)
    if sqlite is None:
        return None
    folder = re.sub(r"[^\w.-]+", "-", experiment).strip(".-") or "experiment"
    return (Path(sqlite.group(1)).parent / "mlruns" / folder).as_uri()


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a user id with no name (containers)
        return "unknown"


def _probe(tracking_uri: str) -> None:
    """A tracking server must accept a connection within PROBE_SECONDS: MLflow's own client retries
    an unreachable server for minutes before it fails."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme not in ("http", "https"):
        return
    import requests

    try:
        requests.get(f"{tracking_uri.rstrip('/')}/health", timeout=PROBE_SECONDS)
    except requests.RequestException as error:
        reason = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(error))
        raise Unreachable(
            f"cannot reach the tracking server ({reason.group(1) if reason else type(error).__name__})"
        ) from None


# ---- metric points ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Points:
    """Metric values logged at one step: an epoch's row, a step record, or the test scores."""

    kind: Literal["epoch", "step", "final"]
    step: int
    values: dict[str, float]
    timestamp: int = field(default_factory=lambda: int(time.time() * 1000))
