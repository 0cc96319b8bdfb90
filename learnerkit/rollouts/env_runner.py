"""Deprecated, kept for one release: ``learnerkit.rollouts.env_runner`` moved to
``learnerkit.rollouts._gymnasium_sampling``."""

import warnings

from learnerkit.errors import LearnerkitDeprecationWarning
from learnerkit.rollouts._gymnasium_sampling import (
    POLICY_COLUMNS,
    EnvRunner,
    Policy,
    Rollout,
    ValueFn,
    load_obs_normalizer_state,
    obs_normalizer_state,
)

__all__ = [
    "EnvRunner",
    "POLICY_COLUMNS",
    "Policy",
    "Rollout",
    "ValueFn",
    "load_obs_normalizer_state",
    "obs_normalizer_state",
]

warnings.warn(
    "learnerkit.rollouts.env_runner is deprecated: import from learnerkit.rollouts "
    "(EnvRunner; the rest is internal, in learnerkit.rollouts._gymnasium_sampling)",
    LearnerkitDeprecationWarning,
    stacklevel=2,
)
