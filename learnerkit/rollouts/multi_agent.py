"""Deprecated, kept for one release: ``learnerkit.rollouts.multi_agent`` moved to
``learnerkit.rollouts`` (``MultiAgentEnvRunner``, ``MultiAgentRollout``)."""

import warnings

from learnerkit.errors import LearnerkitDeprecationWarning
from learnerkit.rollouts import MultiAgentEnvRunner, MultiAgentRollout

__all__ = ["MultiAgentEnvRunner", "MultiAgentRollout"]

warnings.warn(
    "learnerkit.rollouts.multi_agent is deprecated: import from learnerkit.rollouts "
    "(MultiAgentEnvRunner, MultiAgentRollout)",
    LearnerkitDeprecationWarning,
    stacklevel=2,
)
