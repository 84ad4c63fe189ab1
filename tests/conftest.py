"""Shared helpers: tiny configs written to temporary files, and the CLI run in-process."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from trainctl.cli import app

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


def write_config(directory: Path, text: str, name: str = "config.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def tiny_config(directory: Path, **sections: dict) -> Path:
    """A small, fast, valid config; keyword arguments replace whole sections."""
    config = {
        "name": "tiny",
        "seed": 0,
        "data": {"name": "iris", "batch_size": 16},
        "model": {"name": "mlp", "hidden": [16]},
        "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "adam", "lr": 0.01},
        "trainer": {"epochs": 3, "device": "cpu"},
        "output_dir": str(directory / "runs"),
    }
    config.update(sections)
    path = directory / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.fixture
def cli():
    """Run `trainctl ARGS...` in-process; returns the click Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """The default config trained once for the whole session, as the quick start does."""
    from trainctl.workflows import train

    out = tmp_path_factory.mktemp("digits") / "run"
    return train(CONFIGS / "digits_mlp.yaml", ["trainer.device=cpu"], out=out, quiet=True)
