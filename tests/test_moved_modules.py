"""Modules that moved keep working at their old paths for a release: importing one warns
with a DeprecationWarning naming the new place, and its names are the new ones. Nothing
inside learnerkit imports an old path."""

from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

import pytest

import learnerkit
import learnerkit.rollouts as rollouts
from learnerkit.api import MOVED_MODULES

PACKAGE = Path(__file__).parent.parent / "learnerkit"
MOVED = {
    "learnerkit.rollouts.env_runner": ("learnerkit.rollouts", ["EnvRunner"]),
    "learnerkit.rollouts.runners": (
        "learnerkit.loops.contract",
        ["EnvRunnerSpec", "Fragment", "LocalEnvRunners", "RunnerModule", "on_policy_batch"],
    ),
    "learnerkit.rollouts.samplers": (
        "learnerkit.rollouts",
        ["SingleAgentSampler", "MultiAgentSampler", "make_sampler"],
    ),
    "learnerkit.rollouts.multi_agent": (
        "learnerkit.rollouts",
        ["MultiAgentEnvRunner", "MultiAgentRollout"],
    ),
    "learnerkit.distributed.env_runners": (
        "learnerkit.loops.contract",
        ["RayEnvRunners"],
    ),
    "learnerkit.distributed.env_runner_worker": (
        "learnerkit._distributed.env_runner_actor",
        ["RemoteRunner"],
    ),
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_warns_naming_the_new_one_and_still_works(old):
    new, names = MOVED[old]
    sys.modules.pop(old, None)  # imported afresh, so that it warns again
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated: import from {new}"):
        module = importlib.import_module(old)
    for name in names:
        assert getattr(module, name) is not None, name
    assert set(module.__all__) >= set(names)


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_a_name_read_from_a_module_made_private_warns_naming_where_to_import_it(old):
    # Each of these modules had a name that learnerkit exports.
    module = importlib.import_module(old)
    public = [name for name in learnerkit.__all__ if hasattr(module, name)]
    assert public, old
    with pytest.warns(DeprecationWarning, match=f"{old}.{public[0]} is deprecated: import"):
        value = getattr(module, public[0])
    assert value is getattr(learnerkit, public[0])
    with pytest.raises(AttributeError, match="no attribute 'nothing_of_that_name'"):
        module.nothing_of_that_name  # noqa: B018


def test_an_internal_name_read_from_a_module_made_private_warns_that_it_is_internal():
    import learnerkit.learner_group as old

    with pytest.warns(DeprecationWarning, match=r"internal now \(learnerkit\._learner_group\."):
        assert old.Results is not None


def test_the_rollouts_package_names_keep_working():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # an old path, tested above
        from learnerkit.rollouts.env_runner import EnvRunner

    assert rollouts.EnvRunner is EnvRunner
    for name in ("Rollout", "RunningMeanStd", "compute_gae", "explained_variance"):
        assert name in rollouts.__all__ and hasattr(rollouts, name)


def test_nothing_inside_learnerkit_imports_an_old_path():
    importers = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            old = set(MOVED) | set(MOVED_MODULES)
            importers += [f"{path.relative_to(PACKAGE)}: {n}" for n in names if n in old]
    assert importers == []
