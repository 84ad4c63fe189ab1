"""Print the shape of the trainctl package: modules by folder, the longest functions and the largest parameter lists.

Used for the architecture notes (before/after figures): `python tools/code_shape.py [--top N]`.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "trainctl"


def functions(tree: ast.AST):
    """Yield (qualified name, line count, parameter count) for every function, methods included."""

    def walk(node: ast.AST, prefix: str):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                args = child.args
                names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
                names = [n for n in names if n not in ("self", "cls")]
                count = len(names) + (args.vararg is not None) + (args.kwarg is not None)
                lines = (child.end_lineno or child.lineno) - child.lineno + 1
                yield f"{prefix}{child.name}", lines, count
                yield from walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")

    yield from walk(tree, "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--top", type=int, default=5)
    top = parser.parse_args().top
    rows = []
    by_folder: dict[str, list[str]] = {}
    total = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        relative = path.relative_to(PACKAGE)
        total += source.count("\n")
        by_folder.setdefault(str(relative.parent), []).append(f"{relative.name} ({source.count(chr(10))})")
        for name, lines, params in functions(ast.parse(source)):
            rows.append((f"{relative.with_suffix('')}.{name}".replace("/", "."), lines, params))
    print(f"{total} lines in {sum(len(v) for v in by_folder.values())} modules")
    for folder, modules in by_folder.items():
        print(f"  {folder}/: {', '.join(modules)}")
    print("longest functions:")
    for name, lines, _ in sorted(rows, key=lambda r: -r[1])[:top]:
        print(f"  {lines:4d} lines  {name}")
    print("largest parameter lists:")
    for name, _, params in sorted(rows, key=lambda r: -r[2])[:top]:
        print(f"  {params:4d} params {name}")


if __name__ == "__main__":
    main()
