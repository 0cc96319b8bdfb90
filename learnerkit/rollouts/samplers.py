"""Deprecated, kept for one release: ``learnerkit.rollouts.samplers`` moved to
``learnerkit.rollouts._sampler``."""

import warnings

from learnerkit.errors import LearnerkitDeprecationWarning
from learnerkit.rollouts._sampler import Sampler, make_sampler

# The single- and multi-agent samplers of earlier releases are one class now.
SingleAgentSampler = MultiAgentSampler = Sampler

__all__ = ["MultiAgentSampler", "Sampler", "SingleAgentSampler", "make_sampler"]

warnings.warn(
    "learnerkit.rollouts.samplers is deprecated: import from learnerkit.rollouts "
    "(Sampler, make_sampler)",
    LearnerkitDeprecationWarning,
    stacklevel=2,
)
