"""A PettingZoo memory task for recurrent modules in multi-agent runs:
``--env pettingzoo:learnerkit.envs.multi_agent_memory:repeat_after_me`` (needs the
``multiagent`` extra, PettingZoo; imported only for that env string).

Each of two agents is shown a symbol of its own each step and scores for naming the one it
saw the step before (``learnerkit/RepeatAfterMe-v0``, per agent); one agent leaves half way,
so the runner's per-agent state meets an agent that is gone. Only a policy with memory
beats chance.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

__all__ = ["MultiAgentRepeatAfterMe", "repeat_after_me"]


class MultiAgentRepeatAfterMe(ParallelEnv):
    """Each agent sees a random symbol of its own each step (one-hot of 0/1) and scores 1
    for naming the one it saw the step before: a memory task (RLlib's ``RepeatAfterMeEnv``,
    per agent). "b" leaves (terminated) after ``max_steps // 2`` steps, "a" is truncated at
    ``max_steps``. A policy without memory scores half of ``1.5 * max_steps - 2`` (each
    agent's first step scores nothing)."""

    metadata: ClassVar[dict] = {"name": "repeat_after_me_v0"}

    def __init__(self, max_steps: int = 10) -> None:
        self.possible_agents = ["a", "b"]
        self.max_steps = max_steps
        self._rng = np.random.default_rng()

    def observation_space(self, agent: str) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (2,), np.float32)

    def action_space(self, agent: str) -> spaces.Discrete:
        return spaces.Discrete(2)

    def _obs(self) -> dict[str, np.ndarray]:
        self.shown = {a: int(self._rng.integers(2)) for a in self.agents}
        return {a: np.eye(2, dtype=np.float32)[s] for a, s in self.shown.items()}

    def reset(self, seed: int | None = None, options: Any = None) -> tuple[dict, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents, self.t, self.before = list(self.possible_agents), 0, {}
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        acting = list(self.agents)
        rewards = {a: float(self.before.get(a) == int(actions[a])) for a in acting}
        self.t += 1
        terminations = {a: a == "b" and self.t >= self.max_steps // 2 for a in acting}
        truncations = {a: a == "a" and self.t >= self.max_steps for a in acting}
        self.before = dict(self.shown)
        self.agents = [a for a in acting if not (terminations[a] or truncations[a])]
        obs = {**{a: np.zeros(2, np.float32) for a in acting}, **self._obs()}
        return obs, rewards, terminations, truncations, {a: {} for a in acting}


def repeat_after_me(**kwargs: Any) -> MultiAgentRepeatAfterMe:
    """The env of ``pettingzoo:learnerkit.envs.multi_agent_memory:repeat_after_me``."""
    return MultiAgentRepeatAfterMe(**kwargs)
