"""`trainctl export`: each format loaded back with its own runtime (onnxruntime, torch.jit.load,
torch.export.load, safetensors into a freshly built model) gives the run's model's outputs on real
inputs, in batches of two sizes; the sidecar JSON is enough to reproduce `trainctl predict` by hand;
bad requests are one line and leave nothing behind."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from trainctl.config.loading import load_config
from trainctl.output import Output
from trainctl.prediction import build_run_model, load_run_model, saved_data
from trainctl.runs import RunFolder
from trainctl.workflows import train

from helpers import REPO, write_config

FORMATS = ("safetensors", "onnx", "torchscript", "exported-program")


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory) -> dict[str, Path]:
    """The iris CSV run exported once in each format (into a folder of the test's own)."""
    from trainctl.export import export_run

    run, _ = tiny_run
    folder = tmp_path_factory.mktemp("exported")
    return {name: export_run(run, name, output=folder / f"iris.{name}").path for name in FORMATS}


def sidecar_of(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".json").read_text())


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def encode_by_hand(rows: list[dict[str, str]], preprocessing: dict) -> np.ndarray:
    """The sidecar's table recipe, as a consumer without trainctl would write it."""
    columns = []
    for feature in preprocessing["features"]:
        cells = [row[feature["column"]] for row in rows]
        if feature["encoding"] == "standardized":
            columns.append([(float(cell) - feature["mean"]) / feature["std"] for cell in cells])
        else:
            columns += [[float(cell == category) for cell in cells] for category in feature["categories"]]
    return np.array(columns, dtype=np.float64).T.astype(np.float32)


def onnx_session(path: Path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def load_with_own_runtime(name: str, path: Path, run: Path):
    """A function from an input batch to the output batch, through the file's own runtime."""
    if name == "onnx":
        session = onnx_session(path)
        return lambda x: torch.from_numpy(session.run(["output"], {"input": x.numpy()})[0])
    if name == "torchscript":
        return torch.jit.load(str(path))
    if name == "exported-program":
        return torch.export.load(str(path)).module()
    from safetensors.torch import load_file

    folder = RunFolder.open(run)
    fresh = build_run_model(load_config(folder.config_path), saved_data(folder)).module
    fresh.load_state_dict(load_file(str(path)))
    return fresh


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_each_format_loaded_back_with_its_runtime_gives_the_run_models_outputs(name, exported, tiny_run):
    run, data = tiny_run
    inputs = torch.from_numpy(encode_by_hand(csv_rows(data), sidecar_of(exported[name])["preprocessing"]))
    model = load_run_model(run).module
    loaded = load_with_own_runtime(name, exported[name], run)
    tolerance = 1e-4 if name == "onnx" else 1e-5
    with torch.no_grad():
        for batch in (inputs[:1], inputs[1:]):  # two batch sizes: the batch axis is dynamic
            expected, got = model(batch), loaded(batch)
            assert got.shape == expected.shape == (len(batch), 3)
            assert torch.allclose(got, expected, rtol=0, atol=tolerance)


def test_the_sidecar_applied_by_hand_to_csv_rows_gives_predicts_labels(exported, tiny_run, cli, tmp_path):
    run, data = tiny_run
    result = cli("predict", run, data, "-o", tmp_path / "predictions.json")
    assert result.exit_code == 0, result.output
    predicted = [record["prediction"] for record in json.loads((tmp_path / "predictions.json").read_text())]

    sidecar = sidecar_of(exported["onnx"])
    assert sidecar["output"]["prediction"] == "class_names[argmax(output)]"
    x = encode_by_hand(csv_rows(data), sidecar["preprocessing"])
    session = onnx_session(exported["onnx"])
    outputs = np.concatenate([session.run(None, {"input": x[:1]})[0], session.run(None, {"input": x[1:]})[0]])
    by_hand = [sidecar["class_names"][k] for k in outputs.argmax(axis=1)]
    assert by_hand == predicted
    assert set(predicted) == {"setosa", "versicolor", "virginica"}  # a real comparison: three classes


def test_the_sidecar_describes_the_run_and_its_check(exported, tiny_run):
    from trainctl import __version__
    from trainctl.config.identity import config_hash

    run, _ = tiny_run
    sidecar = sidecar_of(exported["onnx"])
    saved = json.loads((run / "data.json").read_text())
    config = load_config(run / "config.yaml")
    assert sidecar["format"] == "onnx" and sidecar["file"] == "iris.onnx" and sidecar["loads_with"] == "onnxruntime"
    assert sidecar["trainctl_version"] == __version__
    assert sidecar["run"] == {
        "name": "iris",
        "folder": "run",
        "config_hash": config_hash(config.to_dict()),
        "checkpoint": "best",
        "epoch": torch.load(run / "checkpoints" / "best.pt", weights_only=True)["epoch"],
        "weights": "trained",
    }
    assert sidecar["input"] == {
        "name": "input",
        "shape": ["batch", 4],
        "dtype": "float32",
        "meaning": sidecar["input"]["meaning"],
    }
    assert sidecar["output"]["shape"] == ["batch", 3] and sidecar["output"]["probabilities"] == "softmax(output)"
    assert sidecar["class_names"] == ["setosa", "versicolor", "virginica"]
    features = sidecar["preprocessing"]["features"]
    assert [f["column"] for f in features] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert {f["column"]: [f["mean"], f["std"]] for f in features} == saved["table"]["numeric"]
    check = sidecar["check"]
    assert check["split"] == "test" and check["samples"] == 30  # iris's test split: 20% of 150
    assert check["batch_sizes"] == [1, 29] and 0 <= check["max_abs_difference"] <= 1e-4


def test_the_command_prints_the_check_and_writes_both_files(tiny_run, cli, tmp_path):
    run, _ = tiny_run
    result = cli("export", run, "--format", "exported-program", "-o", tmp_path / "iris.pt2")
    assert result.exit_code == 0, result.output
    assert "checked: max |difference| 0 from the torch model on 30 test samples (batches of 1 and 29" in result.stdout
    assert f"written: {tmp_path / 'iris.pt2'}" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iris.pt2", "iris.pt2.json"]  # no temporary left


def test_torchscript_says_it_is_deprecated(tiny_run, cli, tmp_path):
    run, _ = tiny_run
    result = cli("export", run, "--format", "torchscript", "-o", tmp_path / "iris.pt")
    assert result.exit_code == 0, result.output
    assert "TorchScript is deprecated since torch 2.11" in result.stderr
    assert "Warning" not in result.output  # torch's own FutureWarnings are not passed on


def test_by_default_the_file_goes_into_the_run_folder(tiny_run, cli, tmp_path):
    run = shutil.copytree(tiny_run[0], tmp_path / "run")
    result = cli("export", run, "--format", "safetensors", "--checkpoint", "last")
    assert result.exit_code == 0, result.output
    assert (run / "model-last.safetensors").is_file()
    assert sidecar_of(run / "model-last.safetensors")["run"]["checkpoint"] == "last"


def test_an_existing_file_is_refused_without_force_and_replaced_with_it(tiny_run, cli, tmp_path):
    run, _ = tiny_run
    target = tmp_path / "model.onnx"
    target.write_text("mine")
    result = cli("export", run, "--format", "onnx", "-o", target)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: --output {target}: already exists; add --force to replace it"
    assert target.read_text() == "mine" and not (tmp_path / "model.onnx.json").exists()
    sidecar_only = tmp_path / "weights.safetensors"
    sidecar_of_it = tmp_path / "weights.safetensors.json"
    sidecar_of_it.write_text("notes")
    result = cli("export", run, "--format", "safetensors", "-o", sidecar_only)
    assert result.exit_code == 2 and f"--output {sidecar_of_it}: already exists" in result.stderr
    assert not sidecar_only.exists() and sidecar_of_it.read_text() == "notes"

    result = cli("export", run, "--format", "onnx", "-o", target, "--force")
    assert result.exit_code == 0, result.output
    assert onnx_session(target).get_inputs()[0].shape == ["batch", 4]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--format", "keras"],
            "error: --format: unknown format 'keras'; allowed: safetensors, onnx, torchscript, exported-program",
        ),
        (["--format", "onnx", "--checkpoint", "middle"], "error: middle: checkpoint not found"),
        (
            ["--format", "onnx", "-o", "{tmp}/no/such/folder/m.onnx"],
            "error: --output {tmp}/no/such/folder/m.onnx: folder {tmp}/no/such/folder does not exist",
        ),
        (["--format", "onnx", "-o", "{tmp}"], "error: --output {tmp}: is a folder; give a file name"),
    ],
    ids=["unknown format", "unknown checkpoint", "missing folder", "a folder as the file"],
)
def test_bad_requests_are_one_line_and_write_nothing(tiny_run, cli, tmp_path, arguments, message):
    run, _ = tiny_run
    before = sorted(p.name for p in run.rglob("*"))
    result = cli("export", run, *[argument.format(tmp=tmp_path) for argument in arguments])
    assert result.exit_code == 2
    assert result.stderr.strip() == message.format(tmp=tmp_path)
    assert sorted(p.name for p in run.rglob("*")) == before
    assert list(tmp_path.rglob("*")) == []


def test_a_missing_run_folder_is_one_line(cli, tmp_path):
    result = cli("export", tmp_path / "gone", "--format", "onnx")
    assert result.exit_code == 2
    assert (
        result.stderr.count("\n") == 1 and str(tmp_path / "gone") in result.stderr and "Traceback" not in result.output
    )


def test_the_runs_data_is_needed_for_the_check_and_said_so(tiny_run, cli, tmp_path):
    run = shutil.copytree(tiny_run[0], tmp_path / "run")
    config = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(config.replace(str(tiny_run[1]), str(tmp_path / "moved.csv")))
    result = cli("export", run, "--format", "safetensors", "-o", tmp_path / "m.safetensors")
    assert result.exit_code == 2
    assert f"data.path: {tmp_path / 'moved.csv'}: file not found" in result.stderr
    assert result.stderr.rstrip().endswith(
        "(export checks the exported model on the run's test split, so it reads the run's data)"
    )
    assert not (tmp_path / "m.safetensors").exists()


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: one without write permission, or (for root,
    whom permissions do not stop) a read-only system folder."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        return locked
    for folder in (Path("/sys"), Path("/proc")):
        try:
            tempfile.TemporaryFile(dir=folder).close()
        except OSError:
            return folder
    pytest.skip("no folder here refuses a new file")


def test_an_unwritable_folder_is_one_line_before_any_work(tiny_run, cli, tmp_path):
    run, _ = tiny_run
    folder = unwritable_folder(tmp_path)
    result = cli("export", run, "--format", "onnx", "-o", folder / "m.onnx")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {folder / 'm.onnx'}: ") and result.stderr.count("\n") == 1
    assert "checked:" not in result.output and not (folder / "m.onnx").exists()


@pytest.mark.parametrize("missing", ["onnxruntime", "onnxscript"])
def test_a_missing_runtime_is_named_with_how_to_install_it(tiny_run, cli, tmp_path, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # what an install without it gives
    result = cli("export", tiny_run[0], "--format", "onnx", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: --format onnx needs {missing}, not installed; "
        f"pip install {missing} (or, in the trainctl checkout, pip install -e '.[export]')"
    )
    assert list(tmp_path.iterdir()) == []


def test_the_export_extra_holds_every_formats_packages():
    import tomllib

    from trainctl.export import FORMATS

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    needed = {name for chosen in FORMATS.values() for name in chosen.modules}
    assert needed == {"onnx", "onnxruntime", "onnxscript", "safetensors"}
    for extra in ("export", "test"):
        assert needed <= {requirement.split(">")[0] for requirement in extras[extra]}, extra


def test_an_export_further_than_the_tolerance_from_the_model_is_refused(tiny_run):
    from trainctl.errors import UserError
    from trainctl.export import _check

    model = load_run_model(tiny_run[0]).module
    samples = torch.randn(10, 4)
    with torch.no_grad():
        passed = _check("onnx", Path("m.onnx"), lambda x: model(x) + 5e-5, model, samples)
        assert passed.max_difference == pytest.approx(5e-5, rel=1e-2) and passed.batch_sizes == [1, 9]
        with pytest.raises(UserError) as refused:
            _check("onnx", Path("m.onnx"), lambda x: model(x) + 2e-4, model, samples)
    assert str(refused.value).startswith(
        "onnx: the exported model's outputs differ from the torch model's by up to 0.0002"
    )
    assert "(allowed: 0.0001); nothing written" in str(refused.value)


def test_a_built_in_datasets_sidecar_standardises_raw_rows_into_the_models_inputs(tmp_path):
    """iris by name (not a CSV): the sidecar's mean and std turn scikit-learn's raw rows into exactly
    the test inputs the model was evaluated on, and onnxruntime on them gives the model's outputs."""
    from trainctl.data import sklearn_files
    from trainctl.export import export_run
    from trainctl.training.build import build_data

    config = write_config(tmp_path, trainer={"epochs": 1, "device": "cpu"})
    run = train(config, out=tmp_path / "run", output=Output(quiet=True)).run.path
    assert json.loads((run / "data.json").read_text())["standardization"]["std"][0] > 0  # saved with the run now
    path = export_run(run, "onnx", output=tmp_path / "iris.onnx").path
    scale = sidecar_of(path)["preprocessing"]
    assert scale["kind"] == "standardization" and len(scale["mean"]) == 4

    data = build_data(load_config(run / "config.yaml"), torch.device("cpu"))
    raw = sklearn_files.load("load_iris").data[data.test.rows]
    by_hand = ((raw - np.array(scale["mean"])) / np.array(scale["std"])).astype(np.float32)
    assert np.allclose(by_hand, data.test.inputs.numpy(), rtol=0, atol=1e-6)
    outputs = onnx_session(path).run(None, {"input": by_hand})[0]
    with torch.no_grad():
        expected = load_run_model(run).module(torch.from_numpy(by_hand)).numpy()
    assert np.abs(outputs - expected).max() <= 1e-4


def test_an_ema_run_exports_the_averaged_weights_that_eval_uses(tmp_path):
    from safetensors.torch import load_file

    from trainctl.export import export_run

    config = write_config(tmp_path, trainer={"epochs": 2, "device": "cpu", "ema": {"decay": 0.9}})
    run = train(config, out=tmp_path / "run", output=Output(quiet=True)).run.path
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    path = export_run(run, "safetensors", output=tmp_path / "ema.safetensors").path
    weights = load_file(str(path))
    assert weights.keys() == best["model"].keys()
    assert all(torch.equal(weights[key], best["model"][key]) for key in weights)
    assert any(not torch.equal(weights[key], best["averaging"]["trained_model"][key]) for key in weights)
    assert sidecar_of(path)["run"]["weights"] == "ema"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_a_model_torch_export_cannot_capture_says_why_and_torchscript_still_works(tmp_path, cli):
    """The text rnn packs its sequences by length (pack_padded_sequence), which torch.export cannot
    capture: ONNX and exported-program are refused in one line; TorchScript (scripted) exports."""
    texts = tmp_path / "texts.tsv"
    rows = [("good fine great", "pos"), ("bad awful poor", "neg")] * 20
    texts.write_text("text\tlabel\n" + "".join(f"{t}\t{label}\n" for t, label in rows), encoding="utf-8")
    config = write_config(
        tmp_path,
        data={"name": "text", "path": str(texts), "batch_size": 8, "max_length": 4},
        model={"name": "rnn", "hidden_size": 8, "embedding_dim": 8},
        trainer={"epochs": 1, "device": "cpu"},
    )
    run = train(config, out=tmp_path / "run", output=Output(quiet=True)).run.path
    for name in ("onnx", "exported-program"):
        result = cli("export", run, "--format", name, "-o", tmp_path / f"m.{name}")
        assert result.exit_code == 2
        assert result.stderr.startswith(
            f"error: model 'rnn' cannot be exported as {name}: torch.export cannot capture its forward pass ("
        )
        assert result.stderr.rstrip().endswith("; try --format torchscript or safetensors")
        assert result.stderr.count("\n") == 1
    result = cli("export", run, "--format", "torchscript", "-o", tmp_path / "m.pt")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("m.*")) == ["m.pt", "m.pt.json"]
    sidecar = sidecar_of(tmp_path / "m.pt")
    assert sidecar["preprocessing"]["kind"] == "text" and sidecar["preprocessing"]["vocabulary"][:2] == [
        "<pad>",
        "<unk>",
    ]
    ids = torch.tensor([[2.0, 3.0, 0.0, 0.0], [4.0, 5.0, 6.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    scripted, model = torch.jit.load(str(tmp_path / "m.pt")), load_run_model(run).module
    with torch.no_grad():
        for batch in (ids[:1], ids):
            assert torch.allclose(scripted(batch), model(batch), rtol=0, atol=1e-6)


@pytest.mark.subprocess
def test_export_help_and_the_modules_import_imports_no_torch_nor_runtimes():
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nimport trainctl.export\nfrom trainctl.cli import app\n"
            "try:\n    app(['export', '--help'])\nexcept SystemExit as done:\n"
            "    heavy = ('torch', 'onnx', 'onnxruntime', 'onnxscript', 'safetensors')\n"
            "    print(done.code, [name for name in heavy if name in sys.modules], file=sys.stderr)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.stderr.strip().splitlines()[-1] == "0 []", probe.stderr
    assert "Example: trainctl export" in probe.stdout


@pytest.mark.slow
@pytest.mark.subprocess
def test_exporting_safetensors_imports_none_of_the_onnx_packages(tiny_run, tmp_path):
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom trainctl.export import export_run\n"
            f"export_run({str(tiny_run[0])!r}, 'safetensors', output=__import__('pathlib').Path({str(tmp_path / 'm.safetensors')!r}))\n"
            "print([name for name in ('onnx', 'onnxruntime', 'onnxscript') if name in sys.modules])",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.stdout.strip() == "[]", probe.stderr
    assert (tmp_path / "m.safetensors").is_file()


@pytest.mark.slow
def test_an_image_runs_sidecar_applied_by_hand_to_png_files_gives_predicts_answers(tmp_path, cli):
    """Resize, scale and normalise as the sidecar says (PIL and numpy, no trainctl), run onnxruntime:
    the same class and probability as `trainctl predict` on the same files."""
    from PIL import Image

    from trainctl.export import export_run

    from helpers import image_tree

    root = image_tree(tmp_path / "images", {"blue": 12, "red": 12})  # 10×12 images, resized to 8×8
    config = write_config(
        tmp_path,
        data={"name": "image_folder", "root": str(root), "batch_size": 8, "image_size": [8, 8]},
        model={"name": "cnn", "channels": [4], "hidden": 8},
        trainer={"epochs": 1, "device": "cpu"},
    )
    run = train(config, out=tmp_path / "run", output=Output(quiet=True)).run.path
    path = export_run(run, "onnx", output=tmp_path / "shapes.onnx").path
    recipe = sidecar_of(path)["preprocessing"]
    assert recipe["kind"] == "image" and recipe["resize"] == [8, 8] and recipe["color"] == "RGB"
    files = [root / "red" / "0.png", root / "blue" / "1.png", root / "red" / "5.png"]
    batch = []
    for file in files:
        with Image.open(file) as opened:
            image = opened.convert(recipe["color"]).resize((recipe["resize"][1], recipe["resize"][0]))
        pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
        for step in recipe["transforms"]:
            assert step["name"] == "normalize"  # the only eval transform of this run
            pixels = (pixels - np.array(step["mean"])[:, None, None]) / np.array(step["std"])[:, None, None]
        batch.append(pixels.astype(np.float32))
    outputs = onnx_session(path).run(None, {"input": np.stack(batch)})[0]
    probabilities = np.exp(outputs) / np.exp(outputs).sum(axis=1, keepdims=True)

    result = cli("predict", run, *files, "-o", tmp_path / "p.json")
    assert result.exit_code == 0, result.output
    predicted = json.loads((tmp_path / "p.json").read_text())
    class_names = sidecar_of(path)["class_names"]
    assert [record["prediction"] for record in predicted] == [class_names[k] for k in outputs.argmax(axis=1)]
    assert [record["probability"] for record in predicted] == pytest.approx(probabilities.max(axis=1), abs=1e-4)
