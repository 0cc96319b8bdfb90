"""Deprecated, kept for one release: ``learnerkit.rollouts.runners`` moved to
``learnerkit.rollouts._contract``, ``learnerkit.rollouts.module_copies`` (RunnerModule) and
``learnerkit.rollouts.local_env_runners`` (LocalEnvRunners)."""

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
from learnerkit.rollouts.local_env_runners import LocalEnvRunners
from learnerkit.rollouts.module_copies import RunnerModule

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
    "learnerkit.rollouts._contract, module_copies (RunnerModule) and local_env_runners"
    " (LocalEnvRunners)",
    LearnerkitDeprecationWarning,
    stacklevel=2,
)
