"""Fixtures shared by the tests; the plain helpers they use live in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainctl.output import Output

from helpers import CONFIGS, run_cli, train_iris_csv_run


@pytest.fixture
def cli():
    """Run `trainctl ARGS...` in-process; returns the click Result (exit_code, stdout, stderr)."""
    return run_cli


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """The default config trained once for the whole session, as the quick start does."""
    from trainctl.workflows import train

    out = tmp_path_factory.mktemp("digits") / "run"
    return train(CONFIGS / "digits_mlp.yaml", ["trainer.device=cpu"], out=out, output=Output(quiet=True))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, CSV) of a finished 2-epoch iris run, trained once; tests damage copies of it."""
    return train_iris_csv_run(tmp_path_factory.mktemp("tiny"))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """A test that reads digits_run waits for the default config's 20 epochs on digits: it is slow,
    wherever it is (marked before `-m "not slow"` deselects)."""
    for item in items:
        if "digits_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
