"""Plugins: components from a file, a module or an installed distribution's entry point, registered
with `trainctl.register`, trained, listed and passed on to every process that trains.

Plugins register into the process's registries for good, so every test that loads one runs the
installed `trainctl` as a process: the registries of this test process stay trainctl's own."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from trainctl import register
from trainctl.registry import Registry, Source, registering_from

from helpers import REPO, TRAINCTL, read_jsonl, write_config

PLUGIN = """
from typing import Any

from trainctl import register


@register.model("tiny_linear", summary="One linear layer over the flattened input", input="any")
def tiny_linear(context: Any, *, bias: bool = True) -> Any:
    import math

    import torch

    size = math.prod(context.input_shape)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(size, context.num_outputs, bias=bias))


@register.loss(
    "scaled_ce",
    summary="Cross-entropy times a constant",
    task="classification",
    target="index",
    input="logits",
    formula="scale · CE",
    output="logits",
    use_when="testing plugins",
)
def scaled_ce(context: Any, *, scale: float = 2.0) -> Any:
    import torch

    class Scaled(torch.nn.Module):
        def forward(self, output: Any, target: Any) -> Any:
            return scale * torch.nn.functional.cross_entropy(output, target)

    return Scaled()
"""


def write_plugin(directory: Path, text: str = PLUGIN, name: str = "my_components.py") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def file_source(path: Path) -> str:
    """How listings name a plugin file: its path and the start of its SHA-256, computed here."""
    return f"{path.resolve()} (sha256 {hashlib.sha256(path.read_bytes()).hexdigest()[:12]})"


def trainctl(*args: object, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    environment = {**os.environ, "COLUMNS": "250", **(env or {})}
    return subprocess.run([TRAINCTL, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=environment)


def plugin_config(directory: Path, **sections: object) -> Path:
    return write_config(directory, model={"name": "tiny_linear"}, loss={"name": "scaled_ce", "scale": 3.0}, **sections)


# ---- registration (in-process, on a registry of its own) ------------------------------------------


def test_the_public_decorators_are_the_registries_own():
    from trainctl.components.registries import DATASETS, LOSSES, METRICS, MODELS, OPTIMIZERS, SCHEDULERS, TRANSFORMS

    assert register.model == MODELS.register and register.loss == LOSSES.register
    assert register.dataset == DATASETS.register and register.metric == METRICS.register
    assert register.optimizer == OPTIMIZERS.register and register.scheduler == SCHEDULERS.register
    assert register.transform == TRANSFORMS.register
    assert MODELS.get("mlp").source == Source("trainctl", "trainctl")


def test_an_entry_records_the_plugin_it_came_from_and_a_clash_names_both():
    from dataclasses import dataclass

    @dataclass(frozen=True, kw_only=True)
    class WidgetInfo:
        colour: str

    widgets = Registry("widget", WidgetInfo)
    first = Source("distribution", "widgets-extra", version="1.2")
    second = Source("file", "/plugins/more.py", sha256="ab" * 32)
    with registering_from(first):
        widgets.register("spinner", summary="spins", colour="red")(lambda context: None)
    assert widgets.get("spinner").source == first
    with registering_from(second), pytest.raises(ValueError) as caught:
        widgets.register("spinner", summary="again", colour="blue")(lambda context: None)
    assert str(caught.value) == (
        "widget 'spinner' is already registered by widgets-extra 1.2; /plugins/more.py (sha256 abababababab) registers it too"
    )


# ---- files on the command line --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_plugin_file_trains_its_model_with_its_loss(tmp_path):
    plugin = write_plugin(tmp_path)
    run = tmp_path / "run"
    finished = trainctl("--plugin", plugin, "train", plugin_config(tmp_path), "--out", run, "-q")
    assert finished.returncode == 0, finished.stderr[-3000:]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"] == {"name": "tiny_linear", "bias": True}
    assert config["loss"] == {"name": "scaled_ce", "scale": 3.0}
    assert [row["epoch"] for row in read_jsonl(run / "metrics.jsonl")] == [1, 2, 3]
    weights = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert {key: tuple(value.shape) for key, value in weights.items()} == {"1.weight": (3, 4), "1.bias": (3,)}
    source = {"kind": "file", "name": str(plugin.resolve()), "version": None}
    source["sha256"] = hashlib.sha256(plugin.read_bytes()).hexdigest()
    assert json.loads((run / "plugins.json").read_text()) == {
        "components": [
            {"registry": "model", "name": "tiny_linear", "plugin": source},
            {"registry": "loss", "name": "scaled_ce", "plugin": source},
        ]
    }
    without = trainctl("eval", run)
    assert (without.returncode, without.stderr) == (
        2,
        f"error: {run}: model 'tiny_linear' comes from plugin {file_source(plugin)}, which is not loaded; "
        f"give --plugin {plugin.resolve()} before the command\n",
    )
    evaluated = trainctl("--plugin", plugin, "eval", run)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads((run / "eval-test-best.json").read_text())["loss"] == pytest.approx(
        json.loads((run / "summary.json").read_text())["test"]["loss"]
    )


@pytest.mark.subprocess
def test_listings_name_a_plugin_components_source_and_plugins_lists_what_it_registers(tmp_path):
    plugin = write_plugin(tmp_path)
    listed = trainctl("--plugin", plugin, "list-models")
    assert listed.returncode == 0, listed.stderr
    assert "tiny_linear" in listed.stdout
    assert f"from plugin: {file_source(plugin)}" in listed.stdout
    assert listed.stdout.count("from plugin:") == 1  # trainctl's own models name no source
    plugins = trainctl("--plugin", plugin, "plugins")
    assert plugins.returncode == 0, plugins.stderr
    assert file_source(plugin) in plugins.stdout
    assert "model tiny_linear" in plugins.stdout and "loss scaled_ce" in plugins.stdout


@pytest.mark.subprocess
def test_a_plugin_taking_a_built_in_name_is_refused_naming_both(tmp_path):
    plugin = write_plugin(tmp_path, PLUGIN.replace('"tiny_linear"', '"mlp"'))
    finished = trainctl("--plugin", plugin, "list-models")
    assert finished.returncode == 2
    assert finished.stderr == (
        f"error: plugin {file_source(plugin)} failed to import ({plugin.resolve()} line 7): ValueError: "
        f"model 'mlp' is already registered by trainctl; {file_source(plugin)} registers it too\n"
    )


@pytest.mark.subprocess
def test_two_plugins_taking_one_name_are_refused_naming_both(tmp_path):
    first = write_plugin(tmp_path, name="first.py")
    second = write_plugin(tmp_path, PLUGIN.replace("One linear", "Another linear"), name="second.py")
    finished = trainctl("--plugin", first, "--plugin", second, "list-models")
    assert finished.returncode == 2
    assert finished.stderr.count("\n") == 1
    assert (
        f"model 'tiny_linear' is already registered by {file_source(first)}; {file_source(second)} registers it too"
        in finished.stderr
    )


@pytest.mark.subprocess
def test_a_plugin_that_fails_to_import_is_one_line_and_its_traceback_with_debug(tmp_path):
    plugin = write_plugin(tmp_path, "import math\n\nraise RuntimeError('no GPU  driver\\nfound')\n", name="broken.py")
    finished = trainctl("--plugin", plugin, "list-models")
    assert finished.returncode == 2
    assert finished.stderr == (
        f"error: plugin {file_source(plugin)} failed to import ({plugin.resolve()} line 3): "
        "RuntimeError: no GPU driver found\n"
    )
    debug = trainctl("--debug", "--plugin", plugin, "list-models")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "RuntimeError: no GPU  driver" in debug.stderr


@pytest.mark.subprocess
def test_a_missing_plugin_file_or_module_is_one_line(tmp_path):
    missing = trainctl("--plugin", tmp_path / "nowhere.py", "list-models")
    assert (missing.returncode, missing.stderr) == (2, f"error: --plugin {tmp_path / 'nowhere.py'}: no such file\n")
    module = trainctl("--plugin", "no_such_plugin_module", "list-models")
    assert (module.returncode, module.stderr) == (
        2,
        "error: plugin no_such_plugin_module failed to import: "
        "ModuleNotFoundError: No module named 'no_such_plugin_module'\n",
    )


@pytest.mark.subprocess
def test_a_plugin_module_on_the_path_registers_under_its_module_name(tmp_path):
    write_plugin(tmp_path, name="team_components.py")
    listed = trainctl("--plugin", "team_components", "list-losses", env={"PYTHONPATH": f"{tmp_path}:{REPO}"})
    assert listed.returncode == 0, listed.stderr
    assert "scaled_ce" in listed.stdout and "from plugin: team_components" in listed.stdout


@pytest.mark.subprocess
def test_help_and_version_neither_run_a_plugin_nor_import_torch(tmp_path):
    marker = tmp_path / "imported"
    plugin = write_plugin(tmp_path, f"from pathlib import Path\nPath({str(marker)!r}).touch()\n")
    probe = textwrap.dedent(
        f"""
        import sys
        from trainctl.cli import app
        for arguments in (["--help"], ["--version"], ["train", "--help"], ["list-models", "--help"]):
            try:
                app(["--plugin", {str(plugin)!r}, *arguments])
            except SystemExit as done:
                print(done.code, 'torch' in sys.modules, file=sys.stderr)
        """
    )
    finished = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert finished.stderr == "0 False\n" * 4
    assert not marker.exists()
    assert trainctl("--plugin", plugin, "list-models").returncode == 0
    assert marker.exists()  # the same plugin does run where components are listed


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_run_folder_naming_a_plugin_never_imports_it(tmp_path):
    """eval, predict and --resume ask for the run's plugins by name; they never load one from the run."""
    marker = tmp_path / "imported"
    plugin = write_plugin(tmp_path, f"from pathlib import Path\nPath({str(marker)!r}).touch()\n")
    run = tmp_path / "run"
    run.mkdir()
    source = {"kind": "file", "name": str(plugin.resolve()), "version": None, "sha256": "0" * 64}
    record = {"components": [{"registry": "model", "name": "planted", "plugin": source}]}
    (run / "plugins.json").write_text(json.dumps(record))
    expected = (
        f"error: {run}: model 'planted' comes from plugin {plugin.resolve()} (sha256 000000000000), "
        f"which is not loaded; give --plugin {plugin.resolve()} before the command\n"
    )
    for command in (["eval", run], ["predict", run, plugin], ["train", "--resume", run]):
        finished = trainctl(*command)
        assert (finished.returncode, finished.stderr) == (2, expected), command
    assert not marker.exists()
    installed = {**source, "kind": "distribution", "name": "planted-models", "version": "1.0", "sha256": None}
    (run / "plugins.json").write_text(json.dumps({"components": [{**record["components"][0], "plugin": installed}]}))
    finished = trainctl("eval", run)
    assert finished.stderr == (
        f"error: {run}: model 'planted' comes from plugin planted-models 1.0, which is not loaded; "
        "install it (pip install 'planted-models==1.0')\n"
    )


# ---- installed distributions (entry points) --------------------------------------------------------


def install_distribution(root: Path) -> dict[str, str]:
    """A distribution 'tiny-plugin' 0.3 as an installer leaves it: its module and a dist-info folder
    with the entry point; the environment that puts it on the path of a process."""
    root.mkdir()
    write_plugin(root, name="tiny_plugin.py")
    info = root / "tiny_plugin-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-plugin\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[trainctl.plugins]\ncomponents = tiny_plugin\n")
    return {"PYTHONPATH": f"{root}:{REPO}"}


@pytest.mark.slow
@pytest.mark.subprocess
def test_an_installed_entry_point_loads_unless_no_plugins(tmp_path):
    env = install_distribution(tmp_path / "site")
    listed = trainctl("list-models", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "from plugin: tiny-plugin 0.3" in listed.stdout
    plugins = trainctl("plugins", env=env)
    assert "tiny-plugin 0.3" in plugins.stdout and "model tiny_linear" in plugins.stdout
    disabled = trainctl("--no-plugins", "list-models", env=env)
    assert disabled.returncode == 0 and "tiny_linear" not in disabled.stdout
    nothing = trainctl("--no-plugins", "plugins", env=env)
    assert nothing.stdout.startswith("no plugins loaded")


# ---- other processes -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.subprocess
def test_sweep_trials_train_with_the_plugin_the_sweep_was_given(tmp_path):
    plugin = write_plugin(tmp_path)
    sweep = tmp_path / "sweep"
    finished = trainctl(
        "--plugin", plugin, "sweep", plugin_config(tmp_path, trainer={"epochs": 1, "device": "cpu"}),
        "--grid", "loss.scale=1.0,2.0", "--out", sweep,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    trials = sorted(sweep.glob("trial-*"))
    losses = [yaml.safe_load((trial / "config.yaml").read_text())["loss"] for trial in trials]
    assert sorted(losses, key=lambda loss: loss["scale"]) == [  # the grid's order is the sampler's
        {"name": "scaled_ce", "scale": 1.0},
        {"name": "scaled_ce", "scale": 2.0},
    ]
    assert all(json.loads((trial / "summary.json").read_text())["best_epoch"] == 1 for trial in trials)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.distributed
def test_nproc_workers_load_the_same_plugin(tmp_path):
    plugin = write_plugin(tmp_path)
    run = tmp_path / "run"
    config = plugin_config(tmp_path, trainer={"epochs": 1, "device": "cpu"})
    finished = trainctl("--plugin", plugin, "train", config, "--nproc", "2", "--out", run, "-q")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout == f"{run}\n"
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["name"] == "tiny_linear"
    assert len(read_jsonl(run / "metrics.jsonl")) == 1


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_readme_plugin_trains_as_the_readme_shows(tmp_path):
    """The README's plugin file, written as it is there, trains with the README's command line."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Your own components\n")[1].split("\n## ")[0]
    plugin = section.split("```python\n")[1].split("```")[0]
    (tmp_path / "my_components.py").write_text(plugin, encoding="utf-8")
    command = shlex.split(section.split("```bash\n")[1].splitlines()[0])
    assert command[:4] == ["trainctl", "--plugin", "my_components.py", "train"]
    config = write_config(tmp_path, trainer={"epochs": 1, "device": "cpu"})  # iris rather than digits: faster
    finished = subprocess.run(
        [TRAINCTL, *command[1:4], config, *command[5:], "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    run = Path(finished.stdout.strip())
    assert yaml.safe_load((run / "config.yaml").read_text())["model"] == {"name": "tiny_linear", "bias": True}


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_plugin_file_edited_since_the_run_is_one_warning_naming_both_hashes(tmp_path):
    plugin = write_plugin(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    source = {"kind": "file", "name": str(plugin.resolve()), "version": None, "sha256": "0" * 64}
    record = [
        {"registry": kind, "name": name, "plugin": source}
        for kind, name in [("model", "tiny_linear"), ("loss", "scaled_ce")]
    ]
    (run / "plugins.json").write_text(json.dumps({"components": record}))
    warning = (
        f"warning: {run}: plugin file {plugin.resolve()} changed since the run was trained "
        f"(sha256 {'0' * 64} then, {hashlib.sha256(plugin.read_bytes()).hexdigest()} now); "
        "its components may not behave as they did\n"
    )
    for command in (["eval", run], ["predict", run, plugin], ["train", "--resume", run]):
        finished = trainctl("--plugin", plugin, *command)
        assert finished.returncode == 2, command  # the planted folder holds no run, after the warning
        assert finished.stderr.startswith(warning) and finished.stderr.count("warning:") == 1, command
    source["sha256"] = hashlib.sha256(plugin.read_bytes()).hexdigest()
    (run / "plugins.json").write_text(json.dumps({"components": record}))
    unchanged = trainctl("--plugin", plugin, "eval", run)
    assert unchanged.returncode == 2 and "warning" not in unchanged.stderr
