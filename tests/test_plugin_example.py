"""The worked plugin example in examples/plugin/, installed for real with pip and used through the
installed `trainctl`: a residual MLP, a dataset reading its own JSON-lines format and a
label-smoothed focal loss, trained, listed, swept, trained in two processes and evaluated.

The package is installed once per test session into a folder of its own (no network: setuptools
comes from the environment); processes see it through PYTHONPATH, the code under test after it.
The reader and the loss's formula are tested in this process: importing those modules registers
nothing (only `components` does)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from trainctl.errors import UserError

from helpers import REPO, TRAINCTL, read_jsonl

EXAMPLE = REPO / "examples" / "plugin"
CONFIG = EXAMPLE / "config.yaml"
DATA = EXAMPLE / "data" / "spirals.jsonl"
DISTRIBUTION = {"kind": "distribution", "name": "trainctl-example-plugin", "version": "0.1.0", "sha256": None}
ARMS = ["arm0", "arm1", "arm2"]


@pytest.fixture(scope="session")
def plugin_path(tmp_path_factory) -> str:
    """PYTHONPATH with the example installed by pip into a test-owned folder, then the code under test."""
    site = tmp_path_factory.mktemp("plugin-site")
    # setuptools builds inside the source folder (build/, *.egg-info): install from a copy, not the checkout
    source = tmp_path_factory.mktemp("plugin-source") / "plugin"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert (site / "trainctl_example_plugin-0.1.0.dist-info" / "entry_points.txt").is_file()
    return f"{site}{os.pathsep}{REPO}"


def trainctl(*args: object, path: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "COLUMNS": "250", "PYTHONPATH": path}
    return subprocess.run(
        [TRAINCTL, *map(str, args)], capture_output=True, text=True, timeout=600, env=environment, cwd=cwd
    )


SHORT = ["--set", "trainer.epochs=3", "--set", "trainer.device=cpu", "-q"]


@pytest.fixture(scope="session")
def example_run(plugin_path, tmp_path_factory) -> Path:
    """The example config trained for 3 epochs, once for the session."""
    run = tmp_path_factory.mktemp("example") / "run"
    finished = trainctl("train", CONFIG, "--out", run, *SHORT, path=plugin_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout == f"{run}\n"
    return run


# ---- the installed package, through the command line ----------------------------------------------


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_example_config_trains_with_all_three_plugin_components(example_run):
    config = yaml.safe_load((example_run / "config.yaml").read_text())
    assert config["data"]["name"] == "jsonl_points" and config["data"]["path"] == str(DATA.resolve())
    assert config["model"] == {"name": "residual_mlp", "width": 64, "blocks": 2, "dropout": 0.0}
    assert config["loss"] == {"name": "smoothed_focal", "gamma": 2.0, "smoothing": 0.05}
    assert [row["epoch"] for row in read_jsonl(example_run / "metrics.jsonl")] == [1, 2, 3]
    summary = json.loads((example_run / "summary.json").read_text())
    # 180 points, 60 per arm; the test split is a fifth of them, every arm in it
    assert sorted(summary["test"]["per_class"]) == ARMS
    assert sum(row["support"] for row in summary["test"]["per_class"].values()) == 36
    assert summary["test"]["accuracy"] > 1 / 3  # better than chance after 3 epochs
    assert 0 < summary["test"]["loss"] < math.log(3)  # below a uniform guess's cross-entropy, which bounds it
    weights = torch.load(example_run / "checkpoints" / "best.pt", weights_only=True)["model"]
    # 2 features in, a 64-wide stem, two blocks, 3 classes out
    assert tuple(weights["stem.1.weight"].shape) == (64, 2)
    assert tuple(weights["blocks.1.body.4.weight"].shape) == (64, 64)
    assert tuple(weights["head.1.weight"].shape) == (3, 64)
    assert json.loads((example_run / "plugins.json").read_text()) == {
        "components": [
            {"registry": "dataset", "name": "jsonl_points", "plugin": DISTRIBUTION},
            {"registry": "model", "name": "residual_mlp", "plugin": DISTRIBUTION},
            {"registry": "loss", "name": "smoothed_focal", "plugin": DISTRIBUTION},
        ]
    }


@pytest.mark.subprocess
def test_listings_and_plugins_show_the_installed_example(plugin_path):
    plugins = trainctl("plugins", path=plugin_path)
    assert plugins.returncode == 0, plugins.stderr
    assert "trainctl-example-plugin 0.1.0" in plugins.stdout
    for component in ("dataset jsonl_points", "model residual_mlp", "loss smoothed_focal"):
        assert component in plugins.stdout
    models = trainctl("list-models", path=plugin_path)
    assert models.returncode == 0, models.stderr
    assert "residual_mlp" in models.stdout and "from plugin: trainctl-example-plugin 0.1.0" in models.stdout
    loss = trainctl("list-losses", "smoothed_focal", path=plugin_path)
    assert loss.returncode == 0, loss.stderr
    assert "q = (1 − ε)·onehot(y) + ε/K" in loss.stdout


def line_of(path, text: str) -> int:
    """The number of the file's first line that holds `text`."""
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.mark.subprocess
def test_without_plugins_the_config_names_unknown_components(plugin_path, tmp_path):
    finished = trainctl("--no-plugins", "train", CONFIG, "--out", tmp_path / "run", path=plugin_path)
    assert finished.returncode == 2
    lines = finished.stderr.splitlines()
    data, model, loss = (
        line_of(CONFIG, f"name: {name}") for name in ("jsonl_points", "residual_mlp", "smoothed_focal")
    )
    assert [line.split(": unknown")[0] for line in lines] == [
        f"error: {CONFIG}:{data}: data.name",
        f"error: {CONFIG}:{model}: model.name",
        f"error: {CONFIG}:{loss}: loss.name",
    ]
    assert lines[1].startswith(f"error: {CONFIG}:{model}: model.name: unknown model 'residual_mlp'; registered: mlp, ")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.subprocess
def test_eval_without_the_package_names_it_and_how_to_install_it(example_run):
    missing = trainctl("eval", example_run, path=str(REPO))
    assert (missing.returncode, missing.stderr) == (
        2,
        f"error: {example_run}: dataset 'jsonl_points' comes from plugin trainctl-example-plugin 0.1.0, "
        "which is not loaded; install it (pip install 'trainctl-example-plugin==0.1.0')\n",
    )
    assert not (example_run / "eval-test-best.json").exists()


@pytest.mark.slow
@pytest.mark.subprocess
def test_eval_with_the_package_reproduces_the_test_loss(example_run, plugin_path):
    evaluated = trainctl("eval", example_run, path=plugin_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    summary = json.loads((example_run / "summary.json").read_text())["test"]
    again = json.loads((example_run / "eval-test-best.json").read_text())
    assert again["loss"] == pytest.approx(summary["loss"])
    assert again["accuracy"] == pytest.approx(summary["accuracy"])


@pytest.mark.slow
@pytest.mark.subprocess
def test_predict_says_it_cannot_read_the_plugin_format_and_works_on_a_table(example_run, plugin_path, tmp_path):
    """predict reads CSV tables, images and text; a plugin dataset has no way to give it a reader of its
    format, so a run on one is refused in one line. The plugin's model and loss predict on a table."""
    refused = trainctl("predict", example_run, DATA, path=plugin_path)
    assert (refused.returncode, refused.stderr) == (
        2,
        f"error: {example_run}: predict reads input files for runs trained on csv tables, image, text or "
        "audio datasets; this run was trained on 'jsonl_points', whose inputs it cannot read from files\n",
    )
    table = tmp_path / "spirals.csv"
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    table.write_text("x,y,arm\n" + "".join(f"{r['features'][0]},{r['features'][1]},{r['label']}\n" for r in rows))
    run = tmp_path / "run"
    trained = trainctl(
        "train", CONFIG, "--out", run, "--set", f"data={{name: csv, path: {table}, target: arm}}", *SHORT,
        path=plugin_path,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    inputs = tmp_path / "new.csv"
    inputs.write_text("x,y\n0.1,0.2\n-0.5,0.4\n")
    output = tmp_path / "predictions.json"
    predicted = trainctl("predict", run, inputs, "-o", output, path=plugin_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    records = json.loads(output.read_text())
    assert [record["input"] for record in records] == [f"{inputs}:2", f"{inputs}:3"]
    for record in records:
        assert sorted(record["probabilities"]) == ARMS and record["prediction"] in ARMS
        assert sum(record["probabilities"].values()) == pytest.approx(1.0)
        assert record["probability"] == max(record["probabilities"].values())


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_sweep_over_the_plugin_models_width_trains_each_trial_with_the_plugin(plugin_path, tmp_path):
    sweep = tmp_path / "sweep"
    finished = trainctl(
        "sweep", CONFIG, "--grid", "model.width=8,16", "--out", sweep,
        "--set", "trainer.epochs=1", "--set", "trainer.device=cpu",
        path=plugin_path,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    trials = sorted(sweep.glob("trial-*"))
    widths = sorted(yaml.safe_load((trial / "config.yaml").read_text())["model"]["width"] for trial in trials)
    assert widths == [8, 16]
    for trial in trials:
        width = yaml.safe_load((trial / "config.yaml").read_text())["model"]["width"]
        weights = torch.load(trial / "checkpoints" / "best.pt", weights_only=True)["model"]
        assert tuple(weights["stem.1.weight"].shape) == (width, 2)
        assert json.loads((trial / "plugins.json").read_text())["components"][1]["plugin"] == DISTRIBUTION


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.distributed
def test_two_processes_train_the_example(plugin_path, tmp_path):
    run = tmp_path / "run"
    finished = trainctl(
        "train", CONFIG, "--nproc", "2", "--out", run, "--set", "trainer.epochs=1", "--set", "trainer.device=cpu",
        "-q", path=plugin_path,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout == f"{run}\n"
    assert len(read_jsonl(run / "metrics.jsonl")) == 1
    assert json.loads((run / "plugins.json").read_text())["components"][0]["plugin"] == DISTRIBUTION


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_bad_line_in_the_data_stops_training_in_one_line(plugin_path, tmp_path):
    data = tmp_path / "points.jsonl"
    data.write_text('{"features": [0.1, 0.2], "label": "a"}\n{"features": [0.3, "x"], "label": "b"}\n')
    run = tmp_path / "run"
    finished = trainctl("train", CONFIG, "--out", run, "--set", f"data.path={data}", *SHORT, path=plugin_path)
    assert (finished.returncode, finished.stderr) == (
        2,
        f"error: {data}:2: 'features'[1] is \"x\"; it must be a finite number\n",
    )
    assert not run.exists()


# ---- the reader and the loss, in this process ------------------------------------------------------


@pytest.fixture
def example_modules(monkeypatch):
    """The example's modules importable from the checkout; `components` (which registers) stays unimported."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    yield
    for name in [name for name in sys.modules if name.startswith("trainctl_example_plugin")]:
        del sys.modules[name]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "{path}: empty file (one JSON object per line: {{\"features\": [...], \"label\": ...}})"),
        ("\n  \n", "{path}: empty file (one JSON object per line: {{\"features\": [...], \"label\": ...}})"),
        ('{"features": [1, 2], "label": "a"}\n{"features": [1, 2], "label": "a"\n',
         "{path}:2: not JSON (Expecting ',' delimiter at column 34)"),
        ('{"features": [1, true], "label": "a"}\n', "{path}:1: 'features'[1] is true; it must be a finite number"),
        ('{"features": [1, NaN], "label": "a"}\n', "{path}:1: 'features'[1] is NaN; it must be a finite number"),
        ('{"features": "1 2", "label": "a"}\n',
         "{path}:1: 'features' is \"1 2\"; it must be a non-empty list of numbers"),
        ('{"features": [1], "label": 2.5}\n',
         "{path}:1: 'label' is 2.5; it must be a non-empty string or an integer"),
        ('\n{"features": [1]}\n', "{path}:2: no 'label' (each line has 'features' and 'label')"),
        ('[1, 2]\n', "{path}:1: a JSON list; each line is an object with 'features' and 'label'"),
        ('{"features": [1, 2], "label": "a"}\n{"features": [3], "label": "b"}\n',
         "{path}:2: 'features' has 1 numbers; line 1 has 2 and every sample needs the same number"),
        (b"\xff\xfe", "{path}: not UTF-8 text (invalid start byte at byte 0)"),
    ],
)  # fmt: skip
def test_the_reader_names_file_and_line_of_each_problem(example_modules, tmp_path, text, expected):
    from trainctl_example_plugin.points import read_points

    path = tmp_path / "points.jsonl"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(UserError) as caught:
        read_points(path)
    assert str(caught.value) == expected.format(path=path)
    assert "\n" not in str(caught.value)


def test_the_reader_names_a_missing_file_and_reads_the_shipped_one(example_modules, tmp_path):
    from trainctl_example_plugin.points import read_points

    with pytest.raises(UserError, match=f"^{tmp_path / 'none.jsonl'}: file not found$"):
        read_points(tmp_path / "none.jsonl")
    points = read_points(DATA)
    assert len(points.features) == 180 and {len(row) for row in points.features} == {2}
    assert {label: points.labels.count(label) for label in ARMS} == dict.fromkeys(ARMS, 60)
    assert points.lines == list(range(1, 181))


def test_the_loss_is_its_formula_and_cross_entropy_without_focus_or_smoothing(example_modules):
    from trainctl_example_plugin.networks import SmoothedFocal

    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    target = torch.tensor([0, 1])
    plain = SmoothedFocal(gamma=0.0, smoothing=0.0)(logits, target)
    assert plain.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, target).item())
    # γ = 1, ε = 0.3, K = 3: q puts 0.8 on the true class and 0.1 on the others; written out by hand
    total = 0.0
    for row, true in zip(logits.tolist(), target.tolist()):
        p = [math.exp(z) / sum(math.exp(v) for v in row) for z in row]
        q = [0.8 if k == true else 0.1 for k in range(3)]
        total += -sum(q[k] * (1 - p[k]) * math.log(p[k]) for k in range(3))
    assert SmoothedFocal(gamma=1.0, smoothing=0.3)(logits, target).item() == pytest.approx(total / 2)
