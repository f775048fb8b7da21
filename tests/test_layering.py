"""Imports point one way: cli -> stages -> engine -> models/data/manifests/runs -> foundations.

Every `fertrain.*` import in every module (top level or inside a function: an import moved into
a function to dodge a cycle is still an upward edge) must go to a lower layer, or stay inside
its own package. Packages of one layer do not import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fertrain"

LAYERS: list[set[str]] = [
    {"lazy"},
    {"errors", "labels", "console", "configs", "cores", "timestamps", "__init__"},
    {"atomic", "serialization", "yaml_files"},
    {"plots"},
    {"calibration", "manifests"},
    {"data", "runs"},
    {"models"},
    {"engine"},
    {"ensemble", "export"},
    {"softlabels", "posthoc", "deploy"},
    {"teacher", "student"},
    {"bench"},
    {"demo", "pipeline"},
    {"cli"},
    {"__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def unit_of(path: Path) -> str:
    """The top-level package (or module) of `fertrain` that a file belongs to."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def imported_units(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "fertrain":
                names = [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
                found += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "fertrain" and len(parts) > 1:
                    found.append((node.lineno, parts[1]))
    return found


def test_every_package_has_a_layer():
    units = {unit_of(p) for p in PACKAGE.rglob("*.py")}
    assert units <= set(RANK), f"give these a layer in tests/test_layering.py: {sorted(units - set(RANK))}"


def test_imports_point_down_the_layers():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = unit_of(path)
        for line, there in imported_units(ast.parse(path.read_text(encoding="utf-8"))):
            if there == "__version__":
                there = "__init__"
            if there == here:
                continue
            if RANK.get(there, -1) >= RANK[here]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {here} (layer {RANK[here]}) imports "
                              f"{there} (layer {RANK.get(there)})")  # fmt: skip
    assert not upward, "imports that do not point down the layers:\n" + "\n".join(upward)


@pytest.mark.parametrize("source, expected", [
    ("from fertrain.engine import Trainer\n", [(1, "engine")]),
    ("def f():\n    from fertrain.cli import main\n", [(2, "cli")]),
    ("import fertrain.models.factory\n", [(1, "models")]),
    ("from fertrain import __version__\n", [(1, "__version__")]),
])  # fmt: skip
def test_the_import_walker_sees_function_level_and_dotted_imports(source, expected):
    assert imported_units(ast.parse(source)) == expected
