"""Modules that moved keep working at their old paths for a release: importing one warns
with a DeprecationWarning naming the new place, and its names are the new ones. Nothing
inside learnerkit imports an old path."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

import learnerkit.rollouts as rollouts

PACKAGE = Path(__file__).parent.parent / "learnerkit"
MOVED = {
    "learnerkit.rollouts.env_runner": ("learnerkit.rollouts.gymnasium_sampling", ["EnvRunner"]),
    "learnerkit.rollouts.runners": (
        "learnerkit.rollouts.contract",
        ["EnvRunnerSpec", "Fragment", "LocalEnvRunners", "RunnerModule", "on_policy_batch"],
    ),
    "learnerkit.rollouts.samplers": (
        "learnerkit.rollouts.sampler",
        ["SingleAgentSampler", "MultiAgentSampler", "make_sampler"],
    ),
    "learnerkit.rollouts.multi_agent": (
        "learnerkit.rollouts.pettingzoo_sampling",
        ["MultiAgentEnvRunner", "MultiAgentRollout"],
    ),
    "learnerkit.distributed.env_runners": (
        "learnerkit.distributed.ray_env_runners",
        ["RayEnvRunners"],
    ),
    "learnerkit.distributed.env_runner_worker": (
        "learnerkit.distributed.env_runner_actor",
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


def test_the_rollouts_package_names_keep_working():
    from learnerkit.rollouts.gymnasium_sampling import EnvRunner

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
            importers += [f"{path.relative_to(PACKAGE)}: {n}" for n in names if n in MOVED]
    assert importers == []
