"""Fuzzing damaged run folders: whatever happens to a checkpoint or a run folder's files, every
command that reads the folder exits 0 or 2 (a clean one-line error), never 1 and never a traceback.

Hypothesis draws one damage per example (a checkpoint truncated, its bytes flipped, or a value
replaced by one of another type and saved again with torch.save; config.yaml, metrics.jsonl,
data.json or summary.json truncated, flipped, or given values of other types) and one command.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import RUN_COMMANDS, run_cli, run_command_line

# Values of every kind a weights-only checkpoint or a JSON/YAML file can hold.
odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
odd_tensors = st.builds(
    lambda shape, dtype: torch.zeros(shape, dtype=dtype),
    st.lists(st.integers(0, 3), max_size=3).map(tuple),
    st.sampled_from([torch.float32, torch.int64, torch.uint8, torch.bool]),
)


def paths_in(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into nested dicts and lists (tensors are leaves)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_in(item, prefix + (key,))
    elif isinstance(value, (list, tuple)) and len(value) <= 8:
        for index, item in enumerate(value):
            found += paths_in(item, prefix + (index,))
    return found


def replace_at(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    if isinstance(value, tuple):
        value = list(value)
    value[path[0]] = replace_at(value[path[0]], path[1:], new)
    return value


@st.composite
def damages(draw: st.DrawFn) -> tuple[str, str, Any]:
    """(file in the run folder, kind of damage, its parameters)."""
    file = draw(
        st.sampled_from(
            ["checkpoints/last.pt", "checkpoints/best.pt", "config.yaml", "metrics.jsonl", "data.json", "summary.json"]
        )
    )
    kind = draw(st.sampled_from(["truncate", "flip", "replace", "delete-key"]))
    return (
        file,
        kind,
        (
            draw(st.floats(0, 1)),
            draw(st.lists(st.integers(0, 2**31), min_size=1, max_size=4)),
            draw(st.one_of(odd_values, odd_tensors)),
        ),
    )


def read_structured(path: Path) -> Any:
    if path.suffix == ".pt":
        return torch.load(path, weights_only=True)
    if path.suffix == ".yaml":
        import yaml

        return yaml.safe_load(path.read_text())
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    return json.loads(path.read_text())


def write_structured(path: Path, value: Any) -> None:
    if path.suffix == ".pt":
        torch.save(value, path)
        return
    plain = json.loads(json.dumps(value, default=lambda t: t.tolist()))  # tensors as lists in text files
    if path.suffix == ".yaml":
        import yaml

        path.write_text(yaml.safe_dump(plain))
    elif path.suffix == ".jsonl":
        path.write_text(
            "".join(json.dumps(row) + "\n" for row in plain) if isinstance(plain, list) else json.dumps(plain)
        )
    else:
        path.write_text(json.dumps(plain))


def apply(run: Path, file: str, kind: str, parameters: Any) -> None:
    path = run / file
    fraction, positions, new = parameters
    data = path.read_bytes()
    if kind == "truncate":
        path.write_bytes(data[: int(len(data) * fraction)])
    elif kind == "flip":
        flipped = bytearray(data)
        for position in positions:
            flipped[position % len(flipped)] ^= 0xFF
        path.write_bytes(bytes(flipped))
    else:
        value = read_structured(path)
        paths = paths_in(value)
        target = paths[int(fraction * (len(paths) - 1))]
        if kind == "replace":
            value = replace_at(value, target, new)
        else:
            parent = value
            for key in target[:-1]:
                parent = parent[key]
            if isinstance(parent, dict):
                del parent[target[-1]]
        write_structured(path, value)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(damage=damages(), command=st.sampled_from(RUN_COMMANDS))
def test_damaged_run_folders_exit_0_or_2_without_a_traceback(tiny_run, damage, command):
    base, data = tiny_run
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / "run"
        shutil.copytree(base, run)
        apply(run, *damage)
        result = run_cli(*run_command_line(command, run, data, Path(scratch)))
    assert result.exit_code in (0, 2), (damage, command, result.output, repr(result.exception))
    assert "Traceback" not in result.output
    if result.exit_code == 2:  # one line, or one per problem of a damaged config
        lines = result.stderr.splitlines()
        assert lines and all(line.startswith("error: ") for line in lines), result.stderr
