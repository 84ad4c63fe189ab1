"""The package layout and its import rules (CONTRIBUTING.md, "Layout"): each folder is one stage,
and a module imports only from its own stage, the foundations and the stages before it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "trainctl"

# The stages in data-flow order; a module may import from its own stage and from earlier ones.
STAGES = ["foundations", "nn", "data", "components", "config", "training", "reports", "sweeps", "commands"]
FOUNDATIONS = {"errors", "files", "limits", "output", "ranks", "registry", "run_contents", "runs", "yaml_source"}
COMMANDS = {
    "__main__",
    "api",
    "cli",
    "completion",
    "completion_hook",
    "export",
    "plugins",
    "prediction",
    "register",
    "repeats",
    "starter",
    "sweep_worker",
    "workflows",
}


def stage_of(module: str) -> str:
    """The stage of a dotted module name below trainctl ("training.trainer" -> "training")."""
    head = module.split(".")[0]
    if head in FOUNDATIONS or head == "":
        return "foundations"
    if head in COMMANDS:
        return "commands"
    if head in STAGES:
        return head
    raise AssertionError(f"trainctl.{module} belongs to no stage: add it to a folder or to the lists above")


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every trainctl module a file imports, at its top or inside functions, with the line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "trainctl":
            base = node.module.removeprefix("trainctl").lstrip(".")
            for alias in node.names:
                # `from trainctl.training import distributed` imports the module training.distributed
                candidate = f"{base}.{alias.name}" if base else alias.name
                is_module = (PACKAGE / Path(*candidate.split("."))).with_suffix(".py").exists()
                found.append((node.lineno, candidate if is_module else base))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "trainctl":
                    found.append((node.lineno, alias.name.removeprefix("trainctl").lstrip(".")))
    return found


def modules() -> list[tuple[str, Path]]:
    return [
        (".".join(path.relative_to(PACKAGE).with_suffix("").parts), path)
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "__init__.py"
    ]


def test_every_module_belongs_to_a_stage() -> None:
    stages = {stage_of(name) for name, _ in modules()}
    assert stages == set(STAGES)


@pytest.mark.parametrize(("name", "path"), modules(), ids=[name for name, _ in modules()])
def test_imports_point_one_way(name: str, path: Path) -> None:
    own = STAGES.index(stage_of(name))
    backwards = [
        f"line {line}: trainctl.{target} ({stage_of(target)})"
        for line, target in imports_of(path)
        if target != "" and STAGES.index(stage_of(target)) > own
    ]
    assert not backwards, f"trainctl.{name} ({STAGES[own]}) imports a later stage: {'; '.join(backwards)}"


def imports_run_on_import(tree: ast.Module) -> list[ast.stmt]:
    """The import statements a module runs when it is imported: at its top level and inside its
    top-level if/try/with blocks, but not in function bodies (run when called) nor under
    `if TYPE_CHECKING:` (read by type checkers only)."""
    found: list[ast.stmt] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If):
            for_type_checkers = isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
            pending += node.orelse if for_type_checkers else node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
        elif isinstance(node, ast.With):
            pending += node.body
    return found


def test_package_init_files_import_nothing() -> None:
    """So `--help` and the listings never pay for a subpackage's imports (trainctl/__init__.py
    reaches the Python API through a module __getattr__, on first use)."""
    for init in sorted(PACKAGE.rglob("__init__.py")):
        statements = imports_run_on_import(ast.parse(init.read_text()))
        assert not statements, f"{init.relative_to(PACKAGE.parent)} imports {ast.unparse(statements[0])}"


def test_the_init_rule_allows_imports_for_type_checkers_only() -> None:
    tree = ast.parse(
        "TYPE_CHECKING = False\n"
        "if TYPE_CHECKING:\n    import torch\nelse:\n    import json\n"
        "def f():\n    import numpy\n"
        "if True:\n    import yaml\n"
        "try:\n    pass\nexcept ImportError:\n    import rich\n"
    )
    assert [ast.unparse(node) for node in imports_run_on_import(tree)] == ["import json", "import yaml", "import rich"]


def test_the_rule_catches_a_backward_import(tmp_path: Path) -> None:
    """The checker itself: a data module importing the trainer is reported."""
    source = tmp_path / "bad.py"
    source.write_text("def f():\n    from trainctl.training.trainer import Trainer\n")
    assert imports_of(source) == [(2, "training.trainer")]
    assert STAGES.index(stage_of("training.trainer")) > STAGES.index(stage_of("data.prepare"))
