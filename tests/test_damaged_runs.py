"""Damaged run folders and forged checkpoints under every command that reads a run folder.

One real tiny run (iris as a CSV table, 2 epochs, so that predict can read it too) is trained once;
each test damages a copy in one way and runs compare, plot, eval, predict and --resume on it. A
command that reads the damaged part exits 2 with one line naming the file and what is wrong; a
command that does not read it works as before (exit 0; a resume that would train is left to
test_fuzz_runs and test_resume, to keep this file fast).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from helpers import RUN_COMMANDS, run_command_line

# ---- the damages -----------------------------------------------------------------------------------


def edit_checkpoints(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """Change best.pt and last.pt alike, saved again with torch.save: a well-formed file, forged content."""

    def damage(run: Path) -> None:
        for which in ("best", "last"):
            path = run / "checkpoints" / f"{which}.pt"
            state = torch.load(path, weights_only=True)
            change(state)
            torch.save(state, path)

    return damage


def foreign_optimizer(state: dict) -> None:
    """SGD with momentum over parameters of the same shapes: a real optimizer state, not this run's Adam."""
    parameters = [torch.nn.Parameter(t.clone()) for t in state["model"].values()]
    sgd = torch.optim.SGD(parameters, lr=0.1, momentum=0.9)
    for parameter in parameters:
        parameter.grad = torch.zeros_like(parameter)
    sgd.step()
    state["optimizer"] = sgd.state_dict()


def set_key(*path: str | int, value: object) -> Callable[[dict], None]:
    def change(state: dict) -> None:
        node = state
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def write(name: str, text: str) -> Callable[[Path], None]:
    return lambda run: (run / name).write_text(text, encoding="utf-8")


def truncate_checkpoints(run: Path) -> None:
    for which in ("best", "last"):
        path = run / "checkpoints" / f"{which}.pt"
        path.write_bytes(path.read_bytes()[:300])


def metrics_lines(change: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / "metrics.jsonl"
        path.write_text("".join(line + "\n" for line in change(path.read_text().splitlines())))

    return damage


BEST, LAST = "checkpoints/best.pt", "checkpoints/last.pt"
UNREADABLE = "not a readable trainctl checkpoint"

# name: (damage, {command: (file, words in the message)}); commands not named must still work.
DAMAGES: dict[str, tuple[Callable[[Path], None], dict[str, tuple[str, str]]]] = {
    "checkpoint without state": (
        edit_checkpoints(lambda s: s.pop("state")),
        {"resume": (LAST, "cannot resume from this checkpoint: no 'state' in it")},
    ),
    "checkpoint with state a string": (
        edit_checkpoints(set_key("state", value="x")),
        {"resume": (LAST, "'state' is str 'x', not a mapping")},
    ),
    "checkpoint with a text epoch count": (
        edit_checkpoints(set_key("state", "epoch", value="two")),
        {"resume": (LAST, "state.epoch is str 'two'")},
    ),
    "checkpoint with weights of the wrong shape": (
        edit_checkpoints(set_key("model", "1.weight", value=torch.zeros(7, 7))),
        {
            "eval": (BEST, "checkpoint does not fit this model"),
            "predict": (BEST, "checkpoint does not fit this model"),
            "resume": (LAST, "model.1.weight is a torch.float32 tensor of shape [7, 7]; this run's model needs shape"),
        },
    ),
    "checkpoint with weights not a mapping": (
        edit_checkpoints(set_key("model", value=[1, 2])),
        {
            c: (BEST if c != "resume" else LAST, "'model' is list [1, 2], not a mapping of names to tensors")
            for c in ("eval", "predict", "resume")
        },
    ),
    "checkpoint with a text top-level epoch": (
        edit_checkpoints(set_key("epoch", value="2")),
        {
            c: (BEST if c != "resume" else LAST, "damaged or foreign checkpoint: 'epoch' is str '2'")
            for c in ("eval", "predict", "resume")
        },
    ),
    "checkpoint with a foreign optimizer state": (
        edit_checkpoints(foreign_optimizer),
        {"resume": (LAST, "'optimizer' has no betas in group 0: not the state of Adam")},
    ),
    "checkpoint with optimizer moments of the wrong shape": (
        edit_checkpoints(set_key("optimizer", "state", 0, "exp_avg", value=torch.zeros(2))),
        {"resume": (LAST, "optimizer state 0 exp_avg is a torch.float32 tensor of shape [2]")},
    ),
    "checkpoint with a text learning rate": (
        edit_checkpoints(set_key("optimizer", "param_groups", 0, "lr", value="fast")),
        {"resume": (LAST, "optimizer group 0 lr is str 'fast'")},
    ),
    "checkpoint with a garbage scheduler state": (
        edit_checkpoints(set_key("scheduler", "last_epoch", value="x")),
        {"resume": (LAST, "scheduler.last_epoch is str 'x'")},
    ),
    "checkpoint with a garbage torch random state": (
        edit_checkpoints(set_key("rng", "torch_cpu", value=torch.zeros(3, dtype=torch.uint8))),
        {"resume": (LAST, "'rng' holds a random state that cannot be restored")},
    ),
    "checkpoint with a garbage numpy random state": (
        edit_checkpoints(set_key("rng", "numpy", value=["MT19937", 1, 2])),
        {"resume": (LAST, "'rng' holds a random state that cannot be restored")},
    ),
    "checkpoint with a garbage python random state": (
        edit_checkpoints(set_key("rng", "python", 1, value=torch.zeros(5, dtype=torch.int64))),
        {"resume": (LAST, "'rng' holds a random state that cannot be restored")},
    ),
    "truncated checkpoints": (
        truncate_checkpoints,
        {c: (BEST if c != "resume" else LAST, UNREADABLE) for c in ("eval", "predict", "resume")},
    ),
    "empty config.yaml": (write("config.yaml", ""), {c: ("config.yaml", "the config is empty") for c in RUN_COMMANDS}),
    "unparsable config.yaml": (
        write("config.yaml", "name: iris\nmodel: [mlp,\n"),
        {c: ("config.yaml:3:1", "invalid YAML") for c in RUN_COMMANDS},
    ),
    "config.yaml a list": (
        write("config.yaml", "- 1\n"),
        {c: ("config.yaml:1", "the config must be a mapping") for c in RUN_COMMANDS},
    ),
    "config.yaml with data a string": (
        lambda run: (run / "config.yaml").write_text(
            yaml.safe_dump({**yaml.safe_load((run / "config.yaml").read_text()), "data": "iris.csv"}, sort_keys=False)
        ),
        {
            **{c: ("config.yaml:", "data is 'iris.csv', not a mapping") for c in ("compare", "plot")},
            **{c: ("config.yaml:", "data: must be a mapping") for c in ("eval", "predict", "resume")},
        },
    ),
    "metrics.jsonl with a garbage line": (
        metrics_lines(lambda lines: ["{not json", *lines[1:]]),
        {c: ("metrics.jsonl:1", "not a JSON row of metrics") for c in ("plot", "resume")},
    ),
    "metrics.jsonl with a row lacking val/loss": (
        metrics_lines(lambda lines: [lines[0], '{"epoch": 2, "train/loss": 0.5}']),
        {c: ("metrics.jsonl:2", "no val/loss in the row") for c in ("plot", "resume")},
    ),
    "metrics.jsonl with epochs going back": (
        metrics_lines(lambda lines: [lines[1], lines[0]]),
        {c: ("metrics.jsonl:2", "epoch 1 does not follow epoch 2") for c in ("plot", "resume")},
    ),
    "metrics.jsonl a list": (
        write("metrics.jsonl", "[1, 2]\n"),
        {c: ("metrics.jsonl:1", "a list, not an object") for c in ("plot", "resume")},
    ),
    "unparsable data.json": (write("data.json", '{"task": '), {"predict": ("data.json:1", "not valid JSON")}),
    "empty data.json": (write("data.json", "{}"), {"predict": ("data.json", "no 'task' in it")}),
    "data.json without class names": (
        lambda run: (run / "data.json").write_text((run / "data.json").read_text().replace('"class_names"', '"x"')),
        {"predict": ("data.json", "task.class_names is not a list of names")},
    ),
    "data.json with a text scale": (
        lambda run: (run / "data.json").write_text(
            (run / "data.json").read_text().replace('"sepal_length": [', '"sepal_length": ["x", ')
        ),
        {"predict": ("data.json", "table.numeric.sepal_length is")},
    ),
    "unparsable summary.json": (write("summary.json", "{"), {"compare": ("summary.json:1", "not valid JSON")}),
    "summary.json with test a number": (
        write("summary.json", '{"test": 3}'),
        {"compare": ("summary.json", "test is 3, not an object of metrics")},
    ),
}


@pytest.mark.parametrize("damage_name", list(DAMAGES))
def test_every_command_names_the_damaged_file_or_is_unaffected(cli, tiny_run, tmp_path, damage_name):
    base, data = tiny_run
    damage, failing = DAMAGES[damage_name]
    for command in [c for c in RUN_COMMANDS if c in failing or c != "resume"]:
        run = tmp_path / command / "run"
        shutil.copytree(base, run)
        damage(run)
        result = cli(*run_command_line(command, run, data, tmp_path / command))
        assert "Traceback" not in result.output
        if command not in failing:
            assert result.exit_code == 0, f"{command}: {result.output}"
            continue
        file, words = failing[command]
        assert result.exit_code == 2, f"{command}: {result.output}"
        lines = result.stderr.splitlines()
        assert len(lines) == 1, f"{command}: {result.stderr}"
        assert lines[0].startswith(f"error: {run / file}"), f"{command}: {lines[0]}"
        assert words in lines[0], f"{command}: {lines[0]}"


def test_a_last_line_torn_by_a_kill_is_left_out(cli, tiny_run, tmp_path):
    base, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(base, run)
    metrics = run / "metrics.jsonl"
    rows = metrics.read_text().splitlines()
    metrics.write_text(rows[0] + "\n" + rows[1][: len(rows[1]) // 2])  # the kill came mid-write of epoch 2
    from trainctl.runs import RunFolder

    assert [row["epoch"] for row in RunFolder(run).read_metrics()] == [1]
    result = cli("plot", run, "-o", tmp_path / "curves.png")
    assert result.exit_code == 0 and result.stdout == f"written: {tmp_path / 'curves.png'} (1 runs)\n"
