"""The editor schema (`trainctl schema`): the committed file matches the code, every shipped config
follows it, and broken configs break it. Checked with the real `jsonschema` library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import jsonschema
import pytest

from trainctl.components.registries import LOSSES
from trainctl.config.schema import MODELINE, SCHEMA_FILE, builtin_only, config_schema, schema_text
from trainctl.yaml_source import read_yaml

from helpers import REPO, TRAINCTL

COMMITTED = REPO / SCHEMA_FILE
PLUGIN_EXAMPLE = REPO / "examples" / "plugin"
SHIPPED = sorted([*(REPO / "configs").rglob("*.yaml"), *(REPO / "examples").rglob("*.yaml")])
REGENERATE = f"run trainctl --no-plugins schema -o {SCHEMA_FILE} --force"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return config_schema(builtin_only)


@pytest.fixture(scope="module")
def validator(schema):
    return jsonschema.Draft202012Validator(schema)


def config_data(text: str) -> Any:
    """YAML as trainctl and the YAML language server read it (1.2: `1e-3` is a number, not a string)."""
    return read_yaml(text, "config")[0]


def problems(validator, data: dict[str, Any]) -> list[tuple[str, str]]:
    """Each schema error as (dotted path, message), at the deepest key it reaches."""
    found = [most_specific(error) for error in validator.iter_errors(data)]
    return sorted((".".join(map(str, error.absolute_path)), error.message) for error in found)


def most_specific(error):
    """Where a value may take several shapes (a list or null, one of several names), the error of
    the shape that gets deepest into the value, as long as one gets deeper: what an editor underlines."""
    while error.context:
        deeper = max(error.context, key=lambda candidate: len(candidate.absolute_path))
        if len(deeper.absolute_path) <= len(error.absolute_path):
            break
        error = deeper
    return error


DIGITS = config_data((REPO / "configs" / "digits_mlp.yaml").read_text())


def with_changes(**sections: Any) -> dict[str, Any]:
    return {**DIGITS, **sections}


# ---- the committed file and the shipped configs -----------------------------------------------------


def test_the_committed_schema_is_the_one_the_code_writes(schema):
    assert COMMITTED.is_file(), REGENERATE
    assert COMMITTED.read_text(encoding="utf-8") == schema_text(schema), f"{SCHEMA_FILE} is stale: {REGENERATE}"


def test_the_schema_is_a_valid_draft_2020_12_schema(schema):
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_every_shipped_config_names_its_schema_on_its_first_line_and_follows_it(path, validator):
    first_line, _, _ = path.read_text(encoding="utf-8").partition("\n")
    assert first_line.startswith(MODELINE), f"{path}: the first line must be {MODELINE}PATH"
    referenced = (path.parent / first_line.removeprefix(MODELINE)).resolve()
    if path.is_relative_to(PLUGIN_EXAMPLE):  # its components come from the plugin: a schema of its own
        assert referenced == PLUGIN_EXAMPLE / SCHEMA_FILE
        validator = jsonschema.Draft202012Validator(json.loads(referenced.read_text(encoding="utf-8")))
    else:
        assert referenced == COMMITTED
    assert problems(validator, config_data(path.read_text(encoding="utf-8"))) == []


# ---- what the schema refuses -----------------------------------------------------------------------


def test_an_unknown_component_name_fails(validator):
    assert problems(validator, with_changes(loss={"name": "hubr"})) == [
        ("loss.name", "'hubr' is not valid under any of the given schemas")
    ]


def test_a_parameter_of_the_wrong_type_or_out_of_bounds_fails(validator):
    assert problems(validator, with_changes(loss={"name": "huber", "delta": "big"})) == [
        ("loss.delta", "'big' is not of type 'number'")
    ]
    assert problems(validator, with_changes(optimizer={"name": "adam", "lr": 0})) == [
        ("optimizer.lr", "0 is less than or equal to the minimum of 0")
    ]


def test_unknown_keys_fail_in_components_settings_and_at_the_top(validator):
    assert problems(validator, with_changes(loss={"name": "huber", "dleta": 1.0})) == [
        ("loss", "Additional properties are not allowed ('dleta' was unexpected)")
    ]
    assert problems(validator, with_changes(trainer={"epoch": 3})) == [
        ("trainer", "Additional properties are not allowed ('epoch' was unexpected)")
    ]
    assert problems(validator, with_changes(optimiser={"name": "adam"})) == [
        ("", "Additional properties are not allowed ('optimiser' was unexpected)")
    ]


def test_nested_components_are_checked_by_their_own_names(validator):
    terms = [{"name": "cross_entropy", "weight": 1.0}, {"name": "focal", "gamma": "x"}, {"name": "sum", "terms": []}]
    assert problems(validator, with_changes(loss={"name": "sum", "terms": terms})) == [
        ("loss.terms.1.gamma", "'x' is not of type 'number'"),
        ("loss.terms.2.name", "'sum' is not valid under any of the given schemas"),  # composites do not nest
    ]
    groups = [{"params": "0", "lr": 0.1}, {"params": "1", "momentum": 0.9}]
    assert problems(validator, with_changes(optimizer={"name": "adam", "groups": groups})) == [
        ("optimizer.groups.1", "Additional properties are not allowed ('momentum' was unexpected)")
    ]
    assert problems(validator, with_changes(metrics=["accuracy", "acuracy"])) == [
        ("metrics.1", "'acuracy' is not valid under any of the given schemas")
    ]
    data = {"name": "mnist", "root": "data", "transforms": {"train": [{"name": "rotation", "degres": 10}]}}
    assert problems(validator, with_changes(data=data)) == [
        ("data.transforms.train.0", "Additional properties are not allowed ('degres' was unexpected)")
    ]


def test_a_config_without_extends_needs_its_sections_and_names(validator):
    assert problems(validator, {key: value for key, value in DIGITS.items() if key != "model"}) == [
        ("", "'model' is a required property")
    ]
    assert problems(validator, with_changes(model={"hidden": [8]})) == [("model", "'name' is a required property")]
    # A data section without a name is the default dataset's (digits), which has no path.
    assert problems(validator, with_changes(data={"batch_size": 8, "path": "x.csv"})) == [
        ("data", "Additional properties are not allowed ('path' was unexpected)")
    ]


def test_a_config_that_extends_a_base_may_leave_out_what_the_base_gives(validator):
    child = config_data("extends: base.yaml\nmodel: {hidden: [8], _replace_: true}\noptimizer: {lr: 3e-3}\n")
    assert problems(validator, child) == []
    assert problems(validator, {"extends": ["a.yaml", "b.yaml"], "data": {"path": "x.csv"}}) == []
    assert problems(validator, {"extends": 5}) == [("extends", "5 is not valid under any of the given schemas")]
    assert problems(validator, {"extends": "a.yaml", "trainer": {"_replace_": "yes"}}) == [
        ("trainer._replace_", "'yes' is not of type 'boolean'")
    ]


# ---- what an editor shows ---------------------------------------------------------------------------


def test_names_complete_with_the_registry_s_summaries_and_parameters_with_defaults(schema):
    defs = schema["$defs"]
    names = defs["loss"]["properties"]["name"]["oneOf"]
    assert {"const": "huber", "description": LOSSES.get("huber").summary} in names
    assert [name["const"] for name in names] == [entry.name for entry in LOSSES if entry.source.is_builtin]
    huber = defs["loss.huber"]["properties"]["delta"]
    assert (huber["type"], huber["default"], huber["exclusiveMinimum"]) == ("number", 1.0, 0)
    # Descriptions are the comments beside each default in the source.
    assert defs["TrainerSettings"]["properties"]["accumulate"]["description"] == (
        "micro-batches (of data.batch_size each) per optimizer step"
    )
    assert defs["model.cnn"]["properties"]["channels"]["description"] == "one conv block per entry"
    assert defs["optimizer.adam"]["properties"]["weight_decay"]["description"] == (
        "L2 penalty added to the gradient (use adamw for decoupled decay)"
    )


# ---- the command -------------------------------------------------------------------------------------


def test_schema_prints_or_writes_and_keeps_an_existing_file(tmp_path, cli, schema):
    printed = cli("schema")
    assert printed.exit_code == 0 and json.loads(printed.stdout) == schema
    target = tmp_path / "editor.schema.json"
    assert cli("schema", "-o", target).stdout == f"written: {target}\n"
    assert json.loads(target.read_text(encoding="utf-8")) == schema
    target.write_text("{}")
    refused = cli("schema", "-o", target)
    assert (refused.exit_code, refused.stderr) == (
        2,
        f"error: --output {target}: already exists; add --force to replace it\n",
    )
    assert target.read_text() == "{}"
    assert cli("schema", "-o", target, "--force").exit_code == 0
    assert json.loads(target.read_text(encoding="utf-8")) == schema


PLUGIN = """
from typing import Annotated, Literal
from pydantic import Field
from trainctl import register

@register.loss("squared_hinge", summary="Hinge loss, squared", task="classification", target="index",
               input="logits", formula="mean(max(0, 1 - margin)^2)", output="logits", use_when="a test")
def squared_hinge(context, *, margin: Annotated[float, Field(gt=0)] = 1.0,  # how far past the boundary
                  reduction: Literal["mean", "sum"] = "mean"):
    raise NotImplementedError
"""


@pytest.mark.subprocess
def test_a_plugin_s_components_are_in_the_schema_and_torch_is_never_imported(tmp_path):
    plugin = tmp_path / "hinge.py"
    plugin.write_text(PLUGIN)
    probe = (
        "import sys, time\nstarted = time.perf_counter()\nfrom trainctl.cli import app\n"
        f"try:\n    app(['--plugin', {str(plugin)!r}, 'schema', '-o', {str(tmp_path / 's.json')!r}])\n"
        "except SystemExit as done:\n"
        "    print(done.code, 'torch' in sys.modules, f'{time.perf_counter() - started:.2f}', file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    code, torch_imported, seconds = result.stderr.split()
    assert (code, torch_imported) == ("0", "False"), result.stderr
    print(f"trainctl schema with a plugin: {seconds} s in-process")
    written = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    loss = written["$defs"]["loss.squared_hinge"]
    assert loss["description"] == "Hinge loss, squared"
    assert loss["properties"]["margin"] == {
        "default": 1.0,
        "exclusiveMinimum": 0,
        "type": "number",
        "description": "how far past the boundary",
    }
    assert loss["properties"]["reduction"]["enum"] == ["mean", "sum"]
    assert {"const": "squared_hinge", "description": "Hinge loss, squared"} in written["$defs"]["loss"]["properties"][
        "name"
    ]["oneOf"]


@pytest.mark.subprocess
def test_the_plugin_example_s_schema_is_the_one_the_code_writes(tmp_path):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN_EXAMPLE), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    result = subprocess.run(
        [TRAINCTL, "--no-plugins", "--plugin", "trainctl_example_plugin.components", "schema"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    print(f"trainctl schema, the whole command: {time.perf_counter() - started:.2f} s")
    assert result.returncode == 0, result.stderr
    committed = PLUGIN_EXAMPLE / SCHEMA_FILE
    assert committed.read_text(encoding="utf-8") == result.stdout, (
        f"{committed.relative_to(REPO)} is stale: run PYTHONPATH=examples/plugin trainctl --no-plugins --plugin "
        f"trainctl_example_plugin.components schema -o examples/plugin/{SCHEMA_FILE} --force"
    )
