"""Output files: a user's file is replaced only with --force, and eval records are named by what they evaluated."""

from __future__ import annotations

import json
import shutil

import pytest

from trainctl.errors import UserError
from trainctl.files import new_output
from trainctl.output import Output

from helpers import write_config


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A run on a small CSV table, so that predict can read a CSV of new rows."""
    from trainctl.workflows import train

    folder = tmp_path_factory.mktemp("table")
    rows = "".join(
        f"{size},{colour},{kind}\n"
        for size, colour, kind in [
            (9 + i % 4, c, k) for i in range(30) for c, k in (("red", "cherry"), ("green", "lime"))
        ]
    )
    (folder / "fruit.csv").write_text("size,colour,kind\n" + rows)
    config = write_config(
        folder,
        name="table",
        data={"name": "csv", "path": "fruit.csv", "target": "kind", "batch_size": 16},
        model={"name": "mlp", "hidden": [8]},
        optimizer={"name": "adam", "lr": 0.05},
        trainer={"epochs": 2, "device": "cpu"},
    )
    return train(config, out=folder / "run", output=Output(quiet=True)).run.path


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_eval_output_refuses_an_existing_file_unless_forced(cli, table_run, tmp_path):
    mine = tmp_path / "metrics.json"
    mine.write_text("my notes\n")
    line = one_error_line(cli("eval", table_run, "--output", mine))
    assert line == f"error: --output {mine}: already exists; add --force to replace it"
    assert mine.read_text() == "my notes\n"
    result = cli("eval", table_run, "--output", mine, "--force")
    assert result.exit_code == 0, result.output
    assert json.loads(mine.read_text())["checkpoint"] == "best"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left


def test_eval_output_into_a_missing_folder_or_onto_a_folder(cli, table_run, tmp_path):
    missing = tmp_path / "nowhere" / "m.json"
    assert one_error_line(cli("eval", table_run, "--output", missing)) == (
        f"error: --output {missing}: folder {missing.parent} does not exist"
    )
    assert one_error_line(cli("eval", table_run, "--output", tmp_path, "--force")) == (
        f"error: --output {tmp_path}: is a folder; give a file name"
    )


def test_predict_never_replaces_its_input_unasked(cli, table_run, tmp_path):
    new = tmp_path / "new.csv"
    new.write_text("colour,size\ngreen,9\nred,12\n")
    line = one_error_line(cli("predict", table_run, new, "-o", new))
    assert line == f"error: --output {new}: already exists; add --force to replace it"
    assert new.read_text() == "colour,size\ngreen,9\nred,12\n"
    result = cli("predict", table_run, new, "-o", new, "--force")
    assert result.exit_code == 0, result.output
    assert new.read_text().splitlines()[0] == "input,prediction,p_cherry,p_lime"
    assert len(new.read_text().splitlines()) == 3


def test_plot_keeps_the_users_curves_png(cli, table_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "curves.png").write_bytes(b"the user's own picture")
    line = one_error_line(cli("plot", table_run))
    assert line == "error: --output curves.png: already exists; add --force to replace it"
    assert (tmp_path / "curves.png").read_bytes() == b"the user's own picture"
    result = cli("plot", table_run, "--force")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]


def test_eval_of_a_checkpoint_from_elsewhere_keeps_the_runs_own_record(cli, table_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(table_run, run)
    assert cli("eval", run, "--checkpoint", "last").exit_code == 0
    own = json.loads((run / "eval-test-last.json").read_text())
    elsewhere = tmp_path / "elsewhere" / "last.pt"
    elsewhere.parent.mkdir()
    shutil.copy(table_run / "checkpoints" / "best.pt", elsewhere)
    result = cli("eval", run, "--checkpoint", elsewhere)
    assert result.exit_code == 0, result.output
    assert json.loads((run / "eval-test-last.json").read_text()) == own
    records = sorted(p.name for p in run.glob("eval-test-last-*.json"))
    assert len(records) == 1 and len(records[0]) == len("eval-test-last-12345678.json")
    assert json.loads((run / records[0]).read_text())["checkpoint"] == str(elsewhere)
    assert f"written: {run / records[0]}" in result.stdout
    # The run's own checkpoint named by its path is the run's own record.
    assert cli("eval", run, "--checkpoint", run / "checkpoints" / "last.pt").exit_code == 0
    assert {p.name for p in run.glob("eval-test-last*.json")} == {"eval-test-last.json", records[0]}


def test_new_output_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError), new_output(target, "--output") as written:
        written.write_text("half")
        raise RuntimeError("the writer failed")
    assert list(tmp_path.iterdir()) == []


def test_new_output_refuses_a_file_that_appeared_while_it_wrote(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(UserError, match="already exists; add --force"), new_output(target, "--output") as written:
        written.write_text("mine")
        target.write_text("theirs")
    assert target.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
