"""The tests go through learnerkit's public API only, so that they pin behaviour, not the
implementation: no test file imports a private module (a path with a ``_name`` part), or a
private name from a learnerkit module, touches a ``_name`` attribute of anything but its own
``self``/``cls``, or hands a ``"_name"`` to getattr, setattr or monkeypatch; code run in a
subprocess (a string that imports learnerkit) is held to the same rule. Attributes of other
libraries (``os._exit``, ``torch._dynamo``) are theirs to name. The check itself is tested on
planted files."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
PACKAGE = "learnerkit"
NAME_ARGUMENT = {"getattr": 1, "setattr": 1, "delattr": 1, "hasattr": 1}  # the name's position
# An import statement inside a string (code for ``python -c``).
IMPORT_IN_TEXT = re.compile(
    rf"\b(?:from\s+({PACKAGE}(?:\.\w+)*)\s+import\s+\(?([\w\s,]+)"
    rf"|import\s+({PACKAGE}(?:\.\w+)*))"
)


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_path(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == PACKAGE and any(is_private(part) for part in parts)


def foreign_names(tree: ast.Module) -> set[str]:
    """Names a file binds to other libraries' modules and objects (``import os``,
    ``from numpy import testing``): their private attributes are not learnerkit's."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != PACKAGE:
                    names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != PACKAGE:
                names |= {alias.asname or alias.name for alias in node.names}
    return names


def root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def private_imports_in_text(text: str) -> list[str]:
    found = []
    for match in IMPORT_IN_TEXT.finditer(text):
        module = match.group(1) or match.group(3)
        names = [n.strip() for n in (match.group(2) or "").replace("\n", ",").split(",")]
        names = [n.split()[0] for n in names if n.strip()]
        if private_path(module) or any(is_private(name) for name in names):
            found.append(match.group(0).split("\n")[0].strip())
    return found


def private_uses(source: str, filename: str = "<test>") -> list[str]:
    """Where ``source`` reaches into learnerkit's private modules or attributes, as
    ``file:line: what`` lines."""
    tree = ast.parse(source, filename)
    foreign = foreign_names(tree)
    found = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{node.lineno}: {what}")

    def touches_learnerkit(obj: ast.expr) -> bool:
        return root_name(obj) not in foreign

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if private_path(alias.name):
                    report(node, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if private_path(node.module):
                report(node, f"from {node.module} import ...")
            elif node.module.split(".")[0] == PACKAGE:
                for alias in node.names:
                    if is_private(alias.name):
                        report(node, f"from {node.module} import {alias.name}")
        elif isinstance(node, ast.Attribute) and is_private(node.attr):
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not own and touches_learnerkit(node.value):
                report(node, f"{ast.unparse(node)}")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            is_patch = isinstance(func, ast.Attribute) and root_name(func) == "monkeypatch"
            args = node.args
            if name in ("import_module", "__import__") and args:
                if isinstance(args[0], ast.Constant) and private_path(str(args[0].value)):
                    report(node, f"{name}({args[0].value!r})")
            position = NAME_ARGUMENT.get(name) if not is_patch else None
            if is_patch and name in ("setattr", "delattr") and args:
                target = args[0]
                if isinstance(target, ast.Constant) and isinstance(target.value, str):
                    if private_path(target.value):  # monkeypatch.setattr("pkg._mod.x", ...)
                        report(node, f"monkeypatch.{name}({target.value!r})")
                    continue
                position = 1
            if position is not None and len(args) > position:
                given = args[position]
                if (
                    isinstance(given, ast.Constant)
                    and isinstance(given.value, str)
                    and is_private(given.value)
                    and touches_learnerkit(args[0])
                ):
                    report(node, f"{ast.unparse(node)}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            for statement in private_imports_in_text(node.value):
                report(node, f"code in a string: {statement}")
    return found


def test_no_test_reaches_into_a_private_module_or_attribute_of_learnerkit():
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        found += private_uses(path.read_text(), str(path.relative_to(TESTS)))
    assert found == []


# The planted violations name the package through {lk}, so this file itself stays clean.
PLANTED = {
    "import {lk}._plugins": "import {lk}._plugins",
    "import {lk}.loops._setup as setup": "import {lk}.loops._setup",
    "from {lk}._checkpoint import load": "from {lk}._checkpoint import ...",
    "from {lk} import Learner, _plugins": "from {lk} import _plugins",
    "from {lk}.loops import _run_files": "from {lk}.loops import _run_files",
    "import {lk}\n{lk}.learner_group._LocalLearners": "{lk}.learner_group._LocalLearners",
    "group._learners.actors[1]": "group._learners",
    "self.group._in_flight": "self.group._in_flight",
    "getattr(group, '_learners')": "getattr(group, '_learners')",
    "monkeypatch.setattr(trainer, '_restore', print)": "monkeypatch.setattr(trainer, '_restore'",
    "monkeypatch.setattr('{lk}._plugins.reset_registry', print)": "monkeypatch.setattr(",
    "import importlib\nimportlib.import_module('{lk}._defaults')": "import_module(",
    "code = 'from {lk}._plugins import list_plugins'": "code in a string: from {lk}._",
    "code = f'import sys, {lk}; from {lk}.loops import _setup{{x}}'": "code in a string",
}
ALLOWED = [
    "self._rng = None",
    "cls._instances = {{}}",
    "import os\nos._exit(0)",
    "import torch\nassert 'torch._dynamo' not in modules and torch._C",
    "from {lk} import Learner\nLearner.__init__",
    "import {lk}.loops.trainer\ngetattr(module, '__annotations__')",
    "monkeypatch.setattr(trainer, 'step', print)",
    "names = ['{lk}._checkpoint', '{lk}._plugins']  # module names as data, not imports",
    "code = 'import {lk}; {lk}.list_plugins()'",
]


@pytest.mark.parametrize("planted", sorted(PLANTED))
def test_the_check_finds_a_private_use_planted_in_a_test_file(tmp_path, planted):
    path = tmp_path / "test_planted.py"
    path.write_text(planted.format(lk=PACKAGE) + "\n")
    found = private_uses(path.read_text(), path.name)
    assert len(found) == 1 and PLANTED[planted].format(lk=PACKAGE) in found[0], found
    assert found[0].startswith("test_planted.py:")


@pytest.mark.parametrize("allowed", ALLOWED)
def test_the_check_lets_public_names_and_other_libraries_private_ones_pass(allowed):
    assert private_uses(allowed.format(lk=PACKAGE)) == []
