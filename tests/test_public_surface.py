"""The stable public surface (issue 19, section 1): the modules a plugin may import
(``learnerkit.api.PUBLIC_MODULES``) each declare ``__all__``, the docs list them, the
plugins shipped in ``plugins/`` import nothing else, and the version and the plugin API's
version agree. The check on plugins extends the one on tests
(``test_tests_use_the_public_api.py``): besides no private module or attribute, a plugin
imports only public modules, and from them only the names in their ``__all__``."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
from test_tests_use_the_public_api import private_uses

import learnerkit
from learnerkit.api import API_VERSION, MOVED_MODULES, PUBLIC_MODULES

REPO = Path(__file__).parent.parent
PLUGINS = REPO / "plugins"


def is_learnerkit(module: str) -> bool:
    return module == "learnerkit" or module.startswith("learnerkit.")


def exported(module: str, name: str) -> bool:
    """``name`` is public in ``module``: in its ``__all__``, or a public submodule."""
    if f"{module}.{name}" in PUBLIC_MODULES:
        return True
    return name in importlib.import_module(module).__all__


def non_public_uses(source: str, filename: str = "<plugin>") -> list[str]:
    """Where ``source`` imports a learnerkit module that is not public, or a name a public
    module does not export (``from M import N``, ``import M``, ``M.N`` on an imported M), as
    ``file:line: what`` lines."""
    tree = ast.parse(source, filename)
    found = []
    bound: dict[str, str] = {}  # local name -> public learnerkit module

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not is_learnerkit(alias.name):
                    continue
                if alias.name not in PUBLIC_MODULES:
                    report(node, f"import {alias.name} (not a public module)")
                elif alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    bound["learnerkit"] = "learnerkit"
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not is_learnerkit(node.module):
                continue
            if node.module not in PUBLIC_MODULES:
                report(node, f"from {node.module} import ... (not a public module)")
                continue
            for alias in node.names:
                if not exported(node.module, alias.name):
                    report(node, f"from {node.module} import {alias.name} (not in its __all__)")
                elif f"{node.module}.{alias.name}" in PUBLIC_MODULES:
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def module_of(node: ast.expr) -> str | None:
        """The public module ``node`` names (``learnerkit.loops`` for ``lk.loops``), if any."""
        if isinstance(node, ast.Name):
            return bound.get(node.id)
        if isinstance(node, ast.Attribute):
            parent = module_of(node.value)
            if parent and f"{parent}.{node.attr}" in PUBLIC_MODULES:
                return f"{parent}.{node.attr}"
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            module = module_of(node.value)
            if module and not exported(module, node.attr):
                report(node, f"{ast.unparse(node)} (not in {module}.__all__)")
    return found


def plugin_files() -> list[Path]:
    # The packages' sources, not pip's build/ copies of them.
    return sorted(
        path for path in PLUGINS.glob("*/**/*.py") if "build" not in path.relative_to(PLUGINS).parts
    )


def test_the_plugins_in_plugins_import_only_public_names():
    assert plugin_files(), "no plugin sources found"
    found = []
    for path in plugin_files():
        source, name = path.read_text(), str(path.relative_to(REPO))
        found += private_uses(source, name) + non_public_uses(source, name)
    assert found == []


PLANTED = {
    "from learnerkit.learner import Learner": "not a public module",
    "import learnerkit.batch": "not a public module",
    "from learnerkit.rollouts.sampling import Sampler": "not a public module",
    "from learnerkit.fields import attrs": "not in its __all__",
    "from learnerkit.loops import deprecated_table": "not in its __all__",
    "import learnerkit\nlearnerkit.loops.trainer.train": "not in learnerkit.loops.__all__",
    "from learnerkit import ops\nops.Protocol": "not in learnerkit.ops.__all__",
}
ALLOWED = [
    "from learnerkit import Algorithm, hookimpl",
    "from learnerkit.ops import Tensor",
    "from learnerkit.loops import contract\ncontract.TrainingLoop",
    "import learnerkit.replay as replay\nreplay.ReplayColumns",
    "import learnerkit\nlearnerkit.Columns.OBS",
    "import learnerkit\nlearnerkit.loops.contract.TrainingLoop",
    "from learnerkit_ppo.losses import pg_loss",
]


@pytest.mark.parametrize("planted", sorted(PLANTED))
def test_the_check_finds_a_non_public_import_planted_in_a_plugin(planted):
    found = non_public_uses(planted)
    assert len(found) == 1 and PLANTED[planted] in found[0], found


@pytest.mark.parametrize("allowed", ALLOWED)
def test_the_check_lets_public_names_pass(allowed):
    assert non_public_uses(allowed) == []


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_module_declares_all_and_every_name_in_it_exists(module):
    loaded = importlib.import_module(module)
    names = loaded.__all__
    assert names and len(names) == len(set(names)), module
    missing = [name for name in names if not hasattr(loaded, name)]
    assert missing == []


# Old paths that still import for a release, with a DeprecationWarning naming the new place.
DEPRECATED_PATHS = {
    *MOVED_MODULES,
    "learnerkit.rollouts.env_runner",
    "learnerkit.rollouts.runners",
    "learnerkit.rollouts.samplers",
    "learnerkit.rollouts.multi_agent",
    "learnerkit.distributed.env_runners",
    "learnerkit.distributed.env_runner_worker",
    "learnerkit.distributed",  # the folder of the two shims above (learnerkit._distributed)
}


def learnerkit_modules() -> list[str]:
    package = REPO / "learnerkit"
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def test_every_module_outside_the_public_surface_is_private_by_name():
    # A package that holds public modules keeps its name (``learnerkit.backends``).
    holders = {m.rsplit(".", n)[0] for m in PUBLIC_MODULES for n in range(m.count("."))}
    exempt = set(PUBLIC_MODULES) | holders | DEPRECATED_PATHS
    named = [m for m in learnerkit_modules() if m not in exempt]
    assert [m for m in named if not any(p.startswith("_") for p in m.split("."))] == []


def test_the_docs_list_every_public_module():
    section = (REPO / "docs/reference/api/index.md").read_text()
    listed = set(re.findall(r"`(learnerkit(?:\.\w+)*)`", section))
    assert set(PUBLIC_MODULES) <= listed, sorted(set(PUBLIC_MODULES) - listed)


def test_the_version_the_api_version_and_the_package_metadata_agree():
    # The package metadata's version (pyproject.toml's [project] table, its first version).
    version = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M)
    assert version.group(1) == learnerkit.__version__ == "0.2.0"
    assert learnerkit.__version__.rsplit(".", 1)[0] == API_VERSION == learnerkit.API_VERSION


def test_the_changelog_has_deprecated_and_removed_sections_for_this_release():
    changelog = (REPO / "CHANGELOG.md").read_text()
    release = changelog.split(f"## [{learnerkit.__version__}]")[1].split("\n## [")[0]
    for section in ("### Deprecated", "### Removed", "### For plugin authors"):
        assert section in release, section
