"""Deprecated, kept for one release: ``learnerkit.rollouts.runners`` moved to
``learnerkit.rollouts._contract`` (public in ``learnerkit.loops.contract``),
``learnerkit.rollouts`` (RunnerModule) and ``learnerkit.rollouts._local_env_runners``
(LocalEnvRunners, internal)."""

import warnings

from learnerkit.errors import LearnerkitDeprecationWarning
from learnerkit.rollouts._contract import (
    EnvRunners,
    EnvRunnerSpec,
    Fragment,
    ModuleWeights,
    Weights,
    on_policy_batch,
    sequence_batch,
    spec_with_module,
)
from learnerkit.rollouts._local_env_runners import LocalEnvRunners
from learnerkit.rollouts._module_copies import RunnerModule

__all__ = [
    "EnvRunnerSpec",
    "EnvRunners",
    "Fragment",
    "LocalEnvRunners",
    "ModuleWeights",
    "RunnerModule",
    "Weights",
    "on_policy_batch",
    "sequence_batch",
    "spec_with_module",
]

warnings.warn(
    "learnerkit.rollouts.runners is deprecated: import from "
    "learnerkit.loops.contract (RunnerModule from learnerkit.rollouts; LocalEnvRunners is "
    "internal, in learnerkit.rollouts._local_env_runners)",
    LearnerkitDeprecationWarning,
    stacklevel=2,
)
