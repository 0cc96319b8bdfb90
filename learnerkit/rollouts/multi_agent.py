"""Deprecated, kept for one release: ``learnerkit.rollouts.multi_agent`` moved to
``learnerkit.rollouts.pettingzoo_sampling`` (MultiAgentEnvRunner) and
``learnerkit.rollouts._multi_agent_rollout`` (MultiAgentRollout)."""

import warnings

from learnerkit.errors import LearnerkitDeprecationWarning
from learnerkit.rollouts._multi_agent_rollout import MultiAgentRollout
from learnerkit.rollouts.pettingzoo_sampling import MultiAgentEnvRunner

__all__ = ["MultiAgentEnvRunner", "MultiAgentRollout"]

warnings.warn(
    "learnerkit.rollouts.multi_agent is deprecated: import from "
    "learnerkit.rollouts.pettingzoo_sampling (MultiAgentEnvRunner) and "
    "multi_agent_rollout (MultiAgentRollout)",
    LearnerkitDeprecationWarning,
    stacklevel=2,
)
