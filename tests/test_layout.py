"""The package is grouped by job, and its imports only run downwards.

Layers, lowest first: a module imports only from lower layers or from its own subpackage. ``pisasr/__init__.py``
(the public API) and the moved-module aliases at the top may import anything; so may a ``__main__`` block.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pisasr"

LAYERS = [
    {"errors", "compat"},
    {"io", "devices"},
    {"config"},
    {"model"},
    {"data", "losses"},  # losses use the model's LoRA targets (vsd's fake score)
    {"regions"},
    {"inference"},
    {"training", "evaluation", "demo", "export"},
    {"cli", "testing"},
]
LAYER = {group: level for level, groups in enumerate(LAYERS) for group in groups}
CORE = {"devices", "errors", "compat"}  # the top-level modules besides the aliases
ALIASES = {"pipeline": "pisasr.inference.pipeline", "image_io": "pisasr.io.images"}


def group_of(module: str) -> str:
    """``pisasr.inference.batch`` -> ``inference``; ``pisasr.config`` -> ``config``."""
    return module.split(".")[1]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every pisasr import in the file, at any depth, except under ``if __name__ == "__main__"``."""
    tree = ast.parse(path.read_text())
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "pisasr":
                found += [(node.lineno, f"pisasr.{alias.name}") for alias in node.names]
            elif node.module.startswith("pisasr."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("pisasr.")]
    return found


def package_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "resources" not in p.parts)


def test_every_subpackage_and_top_module_has_a_layer():
    tops = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"} - set(ALIASES)
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert tops == CORE
    assert subpackages <= set(LAYER), subpackages - set(LAYER)
    assert len(tops | set(ALIASES)) <= 6


def test_imports_run_only_downwards():
    wrong = []
    for path in package_modules():
        relative = path.relative_to(PACKAGE)
        if len(relative.parts) == 1 and (relative.stem == "__init__" or relative.stem in ALIASES):
            continue
        own = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        for line, module in imported_modules(path):
            target = group_of(module)
            if target != own and LAYER[target] >= LAYER[own]:
                wrong.append(
                    f"{relative}:{line} ({own}, layer {LAYER[own]}) imports {module} (layer {LAYER[target]})"
                )
    assert not wrong, "\n".join(wrong)


def test_no_package_module_is_over_450_lines():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in package_modules()
        if (n := len(p.read_text().splitlines())) > 450
    }
    assert not long, long


def test_the_documented_names_import():
    from pisasr import LambdaMap, Pipeline, RegionMap, protect
    from pisasr.inference.pipeline import Pipeline as Moved
    from pisasr.regions import LambdaMap as Maps

    assert Pipeline is Moved and LambdaMap is Maps and RegionMap and protect


@pytest.mark.parametrize("old, new", sorted(ALIASES.items()))
def test_moved_modules_still_import_with_a_deprecation_warning(old, new):
    import importlib
    import sys

    sys.modules.pop(f"pisasr.{old}", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(f"pisasr.{old}")
    assert module is importlib.import_module(new)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)
