"""The package layout is a promise: no harness package imports one above it in the pipeline, and
leaderboards/ and dashboards/ see the harness only through harness.public; zoo/ sees none of them."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The order a run goes through the harness (harness/__init__.py); a package may import those before it.
LAYERS = ["harness.settings", "harness.data", "harness.scoring", "harness.runs", "harness.ads", "harness.cli"]
SHARED = {"harness.progress", "harness.public", "harness.cache", "harness.catalogue", "harness.precision"}  # utilities outside the layers


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement in `path` names, lazy imports inside functions included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update([node.module] + [f"{node.module}.{alias.name}" for alias in node.names])
    return names


def layer_of(module: str) -> int | None:
    """Index of the harness package `module` belongs to, or None outside the layers."""
    for index, package in enumerate(LAYERS):
        if module == package or module.startswith(package + "."):
            return index
    return None


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", sources("harness"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_harness_package_imports_one_above_it(path: Path):
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    own = layer_of(module)
    if own is None:
        return
    upward = [name for name in imported_modules(path) if (layer_of(name) or -1) > own]
    assert not upward, f"{module} imports {upward}, above its own layer {LAYERS[own]}"


@pytest.mark.parametrize("folder", ["leaderboards", "dashboards"])
def test_readers_import_only_the_public_surface(folder: str):
    offending = {f"{p.relative_to(ROOT)}: {name}" for p in sources(folder) for name in imported_modules(p)
                 if name.startswith("harness") and name != "harness.public"
                 and not name.startswith("harness.public.")}
    assert not offending, sorted(offending)


def test_zoo_knows_nothing_of_the_harness_ray_or_mlflow():
    offending = {f"{p.relative_to(ROOT)}: {name}" for p in sources("zoo") for name in imported_modules(p)
                 if name.split(".")[0] in {"harness", "leaderboards", "dashboards", "ray", "mlflow"}}
    assert not offending, sorted(offending)


def test_the_layer_check_sees_an_upward_import(tmp_path: Path):
    """The check above can fail: a scoring module that imports a runs module is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from harness.runs.tracking import client\n")
    assert [n for n in imported_modules(bad) if layer_of(n) == LAYERS.index("harness.runs")]
    assert layer_of("harness.scoring.metrics") < layer_of("harness.runs.tracking")
