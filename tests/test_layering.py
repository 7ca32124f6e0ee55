"""Imports flow one way: hardware_specs <- model <- simulator <- validation <- app (ARCHITECTURE.md)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["hardware_specs", "model", "simulator", "validation", "app"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
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


def test_the_layering_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from app.cli import main\nimport simulator.engine\n")
    assert _imports(bad) == {"app", "simulator"}
