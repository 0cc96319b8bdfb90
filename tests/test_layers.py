"""The host's layers, as its folders show them, import only downwards: backends never import
Ray or a loop, only `learnerkit.distributed` imports Ray, nothing below the CLI imports it,
and rollouts know nothing of loops or Ray. Checked on the source, import by import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "learnerkit"


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (lazy imports inside functions too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def modules_under(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def _violations(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in paths
        for name in sorted(imports_of(path))
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("backends", ("ray", "learnerkit.distributed", "learnerkit.loops", "learnerkit.cli")),
        ("rollouts", ("ray", "learnerkit.distributed", "learnerkit.loops", "learnerkit.cli")),
        ("distributed", ("learnerkit.loops", "learnerkit.cli")),
        ("loops", ("learnerkit.cli",)),
    ],
)
def test_a_layer_imports_nothing_above_it(folder, forbidden):
    assert _violations(modules_under(folder), forbidden) == []


def test_only_the_distributed_package_imports_ray():
    outside = [p for p in PACKAGE.rglob("*.py") if "distributed" not in p.parts]
    assert _violations(outside, ("ray",)) == []


def test_nothing_but_the_entry_module_imports_the_cli():
    others = [p for p in PACKAGE.rglob("*.py") if p.name not in ("cli.py", "__main__.py")]
    assert _violations(others, ("learnerkit.cli",)) == []


def test_the_contract_modules_import_no_framework_at_module_level():
    # Listing plugins imports these: no torch, TensorFlow or Ray at import time.
    for name in ("__init__.py", "hookspecs.py", "_plugins.py", "specs.py", "loops/settings.py"):
        tree = ast.parse((PACKAGE / name).read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        mods = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module for n in top if isinstance(n, ast.ImportFrom) and n.module}
        heavy = {m for m in mods if m.split(".")[0] in ("torch", "tensorflow", "keras", "ray")}
        assert not heavy, f"{name} imports {heavy}"
