"""The host's layers import only downwards. Between folders: backends never import Ray or a
loop, only `learnerkit._distributed` and the sweeps on Ray Tune (`learnerkit.tune`, at the
top, beside the CLI) import Ray, nothing below the CLI imports it, and
rollouts know nothing of loops or Ray. Inside the core: the whole module graph (every
import: top level, inside functions, under TYPE_CHECKING) has no circle, and each floor of
the stack (leaves, settings, the hook contract, registries, the learner spec, backends, the
Learner) imports nothing above it. Checked on the source, import by import."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "learnerkit"


@functools.cache
def imports_of(path: Path) -> frozenset[str]:
    """Every module ``path`` imports, at any depth (lazy imports inside functions too); read
    once per run."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return frozenset(names)


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
        ("backends", ("ray", "learnerkit._distributed", "learnerkit.loops", "learnerkit.cli")),
        ("rollouts", ("ray", "learnerkit._distributed", "learnerkit.loops", "learnerkit.cli")),
        ("_distributed", ("learnerkit.loops", "learnerkit.cli")),
        ("loops", ("learnerkit.cli", "learnerkit.tune")),
        ("tune", ("learnerkit.cli",)),
    ],
)
def test_a_layer_imports_nothing_above_it(folder, forbidden):
    assert _violations(modules_under(folder), forbidden) == []


def test_only_the_distributed_and_tune_packages_import_ray():
    outside = [p for p in PACKAGE.rglob("*.py") if not {"_distributed", "tune"} & set(p.parts)]
    assert _violations(outside, ("ray",)) == []


def test_nothing_but_the_entry_module_imports_the_cli():
    others = [p for p in PACKAGE.rglob("*.py") if p.name not in ("cli.py", "__main__.py")]
    assert _violations(others, ("learnerkit.cli",)) == []


def test_the_contract_modules_import_no_framework_at_module_level():
    # Listing plugins imports these: no torch, TensorFlow or Ray at import time.
    for name in (
        "__init__.py",
        "api.py",
        "hookspecs.py",
        "_plugins.py",
        "_entry_points.py",
        "_specs.py",
        "settings.py",
        "training_loops.py",
        "loops/builtin.py",
        "loops/contract.py",
        "_learner_spec.py",
        "fields.py",
        "coefficients.py",
        "loops/settings.py",
    ):
        tree = ast.parse((PACKAGE / name).read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        mods = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module for n in top if isinstance(n, ast.ImportFrom) and n.module}
        heavy = {m for m in mods if m.split(".")[0] in ("torch", "tensorflow", "keras", "ray")}
        assert not heavy, f"{name} imports {heavy}"


# The whole module graph -------------------------------------------------------------------
def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolved_imports(path: Path, known: set[str], package: Path = PACKAGE) -> set[str]:
    """The learnerkit modules ``path`` imports, anywhere in it: relative imports resolved,
    ``from pkg import sub`` counted as ``pkg.sub`` when that is a module, and an imported
    name that is not a module counted as the module it comes from."""
    name = module_name(path, package)
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                stem = base[: len(base) - (node.level - 1)]
                module = ".".join(stem + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [
                f"{module}.{a.name}" if f"{module}.{a.name}" in known else module
                for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def module_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    if package == PACKAGE:
        return {name: set(targets) for name, targets in _the_package_graph().items()}
    paths = {module_name(p, package): p for p in package.rglob("*.py")}
    known = set(paths)
    return {name: resolved_imports(path, known, package) for name, path in paths.items()}


@functools.cache
def _the_package_graph() -> dict[str, frozenset[str]]:
    """learnerkit's graph, read once per run (its source does not change during one): each
    test that reads it gets its own copy."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: frozenset(resolved_imports(path, set(paths))) for name, path in paths.items()}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def describe(graph: dict[str, set[str]], group: list[str]) -> str:
    members = set(group)
    edges = [f"{m} imports {t}" for m in group for t in sorted(graph[m] & members)]
    return f"circle of {len(group)} modules: " + "; ".join(edges)


def test_no_module_of_the_package_imports_itself_back():
    graph = module_graph()
    assert import_circles(graph) == [], "\n".join(describe(graph, g) for g in import_circles(graph))


def test_the_graph_sees_lazy_type_only_and_relative_imports(tmp_path):
    # On the real package: a lazy import inside a function (learner_group's Ray learners),
    # a TYPE_CHECKING one (hookspecs' Hyperparameters), `from pkg import sub` as the
    # submodule (learner's _checkpoint).
    graph = module_graph()
    assert "learnerkit._distributed.learners" in graph["learnerkit._learner_group"]
    assert "learnerkit._specs" in graph["learnerkit.hookspecs"]
    assert "learnerkit._checkpoint" in graph["learnerkit._learner"]
    # Relative imports, lazy and type-only, closing a circle through a subpackage.
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from .sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import f\n"
    )
    (package / "c.py").write_text("from pkg import a\n")
    graph = module_graph(package)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"}
    assert import_circles(graph) == [["pkg.a", "pkg.sub.b"]]


# Floors of the core, bottom-up: each imports nothing from the floors above it -------------
LEAVES = {
    "learnerkit.api",
    "learnerkit.errors",
    "learnerkit._columns",
    "learnerkit.fields",
    "learnerkit.coefficients",
    "learnerkit.ops",
    "learnerkit.model_config",
    "learnerkit.distributions",
    "learnerkit._batch",
    "learnerkit._checkpoint",
    "learnerkit._finite",
}
ABOVE_THE_REGISTRIES = (
    "learnerkit._learner",
    "learnerkit._learner_group",
    "learnerkit._learner_spec",
    "learnerkit._learner_modules",
    "learnerkit._learner_state",
    "learnerkit._minibatches",
    "learnerkit._gradient_stages",
    "learnerkit._algorithm_stages",
    "learnerkit.data_parallel",
    "learnerkit.backends",
    "learnerkit.rollouts",
    "learnerkit.loops",
    "learnerkit._distributed",
    "learnerkit.cli",
)
THE_LEARNER = ("learnerkit._learner", "learnerkit._learner_group")


def _above(graph: dict[str, set[str]], modules, forbidden) -> list[str]:
    return [
        f"{m} imports {t}"
        for m in sorted(modules)
        for t in sorted(graph[m])
        if any(t == f or t.startswith(f + ".") for f in forbidden)
    ]


def test_the_leaves_import_only_leaves():
    graph = module_graph()
    assert [f"{m} imports {t}" for m in sorted(LEAVES) for t in sorted(graph[m] - LEAVES)] == []


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        # Settings and the hook contract: no registry, nothing that uses them.
        (
            ["learnerkit._specs", "learnerkit.settings", "learnerkit.hookspecs"],
            (
                "learnerkit._plugins",
                "learnerkit.training_loops",
                "learnerkit._entry_points",
                *ABOVE_THE_REGISTRIES,
            ),
        ),
        # The registries of algorithms and loops: never the loops or the Learner.
        (
            ["learnerkit._plugins", "learnerkit.training_loops", "learnerkit._entry_points"],
            ABOVE_THE_REGISTRIES,
        ),
        # The learner spec and the host's default hooks: below every user of a spec.
        (
            ["learnerkit._learner_spec", "learnerkit._defaults"],
            tuple(f for f in ABOVE_THE_REGISTRIES if f != "learnerkit._learner_spec"),
        ),
        # Backends: no sampling, no Learner, no registry or spec lookups.
        (
            [m for m in module_graph() if m.startswith("learnerkit.backends")],
            (
                "learnerkit.rollouts",
                "learnerkit._plugins",
                "learnerkit._learner_spec",
                "learnerkit.data_parallel",
                *THE_LEARNER,
                "learnerkit._learner_modules",
                "learnerkit._learner_state",
                "learnerkit._minibatches",
                "learnerkit._gradient_stages",
                "learnerkit._algorithm_stages",
            ),
        ),
        # The Learner's helpers and seam are handed what they need: they never import it.
        (
            [
                "learnerkit._learner_modules",
                "learnerkit._learner_state",
                "learnerkit._minibatches",
                "learnerkit._gradient_stages",
                "learnerkit._algorithm_stages",
                "learnerkit._target_networks",
                "learnerkit.data_parallel",
            ],
            (*THE_LEARNER, "learnerkit._distributed", "learnerkit.rollouts", "learnerkit.loops"),
        ),
    ],
    ids=["settings-and-contract", "registries", "learner-spec", "backends", "learner-helpers"],
)
def test_a_floor_of_the_core_imports_nothing_above_it(modules, forbidden):
    assert _above(module_graph(), modules, forbidden) == []
