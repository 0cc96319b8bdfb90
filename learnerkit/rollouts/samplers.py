"""Deprecated, kept for one release: ``learnerkit.rollouts.samplers`` moved to
``learnerkit.rollouts.sampler``."""

import warnings

from learnerkit.rollouts.sampler import MultiAgentSampler, SingleAgentSampler, make_sampler

__all__ = ["MultiAgentSampler", "SingleAgentSampler", "make_sampler"]

warnings.warn(
    "learnerkit.rollouts.samplers is deprecated: import from learnerkit.rollouts.sampler",
    DeprecationWarning,
    stacklevel=2,
)
