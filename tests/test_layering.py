"""Imports flow one way: hardware_specs <- model <- simulator <- validation <- app (ARCHITECTURE.md), all under the
`roofsim` namespace; the public API module `roofsim/__init__.py` may use every layer but app."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["hardware_specs", "model", "simulator", "validation", "app"]
CODE_DIRS = [*ORDER, "roofsim", "tests", "scripts", "benchmarks"]


def _imports(path: Path) -> set[str]:
    """Layer names a module imports: `roofsim.model.x` -> "model"; a bare `model.x` -> "bare:model"."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    modules: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
    for mod in modules:
        parts = mod.split(".")
        if parts[0] == "roofsim" and len(parts) > 1:
            names.add(parts[1])
        elif parts[0] in ORDER:
            names.add(f"bare:{parts[0]}")
        else:
            names.add(parts[0])
    return names


@pytest.mark.parametrize("package", ORDER)
def test_imports_flow_one_way(package: str) -> None:
    allowed = set(ORDER[: ORDER.index(package) + 1])
    files = list((ROOT / package).rglob("*.py"))
    assert files, f"package {package} has no modules"
    for path in files:
        imported = _imports(path)
        upward = (imported & set(ORDER)) - allowed
        assert not upward, f"{path.relative_to(ROOT)} imports {sorted(upward)} (layering violation)"
        if package != "simulator":
            assert "simpy" not in imported, f"{path.relative_to(ROOT)}: only simulator/ may import simpy"
        if package != "app":
            assert "streamlit" not in imported, f"{path.relative_to(ROOT)}: only app/ may import streamlit"


def test_public_api_does_not_import_app() -> None:
    """The library API never pulls in the front ends; roofsim/__main__.py (the console entry) is the command line."""
    for path in (ROOT / "roofsim").rglob("*.py"):
        if path.name != "__main__.py":
            assert "app" not in _imports(path), f"{path.relative_to(ROOT)} imports roofsim.app"
    assert "app" in _imports(ROOT / "roofsim" / "__main__.py")


@pytest.mark.parametrize("folder", CODE_DIRS)
def test_everything_imports_through_the_namespace(folder: str) -> None:
    """`from model.cost import ...` would only work from a checkout; installed code lives under roofsim."""
    for path in (ROOT / folder).rglob("*.py"):
        bare = sorted(n for n in _imports(path) if n.startswith("bare:"))
        assert not bare, f"{path.relative_to(ROOT)} imports {bare} outside the roofsim namespace"


def test_the_layering_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from roofsim.app.cli import main\nimport roofsim.simulator.engine\nimport model.cost\n")
    assert _imports(bad) == {"app", "simulator", "bare:model"}
