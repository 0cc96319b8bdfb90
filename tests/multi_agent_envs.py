"""Small PettingZoo parallel envs for the multi-agent tests (PettingZoo's own envs need
pygame, which is not installed). Named by tests as ``pettingzoo:multi_agent_envs:FACTORY``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv


class CoordinationGame(ParallelEnv):
    """Two agents see one signal (one-hot of 0/1, and the time left); agent "a" should
    answer the signal, agent "b" its opposite. Each step both get half a point per agent
    that answered right, so the team gets up to 2 a step and 2 * ``max_steps`` an
    episode. Agent "b" is out (terminated) the first time it answers wrong; "a" goes on
    alone until the time limit (truncated). A random pair scores about 5 of 16; one
    shared module without knowing who it is cannot score more than that of "b"'s half.

    ``b_obs_size`` other than 3 gives "b" a different observation space (a module cannot
    be shared then)."""

    metadata: ClassVar[dict] = {"name": "coordination_v0"}

    def __init__(self, max_steps: int = 8, b_obs_size: int = 3) -> None:
        self.possible_agents = ["a", "b"]
        self.max_steps = max_steps
        self._obs_spaces = {
            "a": spaces.Box(0.0, 1.0, (3,), np.float32),
            "b": spaces.Box(0.0, 1.0, (b_obs_size,), np.float32),
        }
        self._rng = np.random.default_rng()

    def observation_space(self, agent):
        return self._obs_spaces[agent]

    def action_space(self, agent):
        return spaces.Discrete(2)

    def _obs(self):
        left = 1.0 - self.t / self.max_steps
        out = {}
        for agent in self.agents:
            size = self._obs_spaces[agent].shape[0]
            obs = np.zeros(size, np.float32)
            obs[self.signal] = 1.0
            obs[2] = left
            out[agent] = obs
        return out

    def reset(self, seed=None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.t = 0
        self.signal = int(self._rng.integers(2))
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions):
        right = {"a": actions.get("a") == self.signal, "b": actions.get("b") == 1 - self.signal}
        reward = 0.5 * sum(bool(right[a]) for a in self.agents if a in actions)
        self.t += 1
        rewards = {a: reward for a in self.agents}
        terminations = {a: False for a in self.agents}
        truncations = {a: self.t >= self.max_steps for a in self.agents}
        if "b" in self.agents and not right["b"]:
            terminations["b"] = True
        self.signal = int(self._rng.integers(2))
        obs = self._obs()
        self.agents = [a for a in self.agents if not (terminations[a] or truncations[a])]
        return obs, rewards, terminations, truncations, {a: {} for a in rewards}


def coordination(**kwargs) -> CoordinationGame:
    return CoordinationGame(**kwargs)


def uneven_coordination() -> CoordinationGame:
    """The game with agent b seeing 4 numbers to a's 3: the agents cannot share a module."""
    return CoordinationGame(b_obs_size=4)


class ScriptedEnv(ParallelEnv):
    """A fixed script, for checking batches row by row. Observations are [t, agent number];
    rewards are the agent number each step (a: 1, b: 2, c: 3).

    - "a" acts every step and is truncated after step 4 (5 steps), ending the episode.
    - "b" acts at steps 0 and 1 and terminates at step 1.
    - "c" joins at step 1 (observed after step 0) and terminates at step 2.
    """

    metadata: ClassVar[dict] = {"name": "scripted_v0"}
    NUMBER: ClassVar[dict[str, int]] = {"a": 1, "b": 2, "c": 3}

    def __init__(self) -> None:
        self.possible_agents = ["a", "b", "c"]

    def observation_space(self, agent):
        return spaces.Box(-100.0, 100.0, (2,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(2)

    def _obs(self, agents):
        return {a: np.array([self.t, self.NUMBER[a]], np.float32) for a in agents}

    def reset(self, seed=None, options=None):
        self.t = 0
        self.agents = ["a", "b"]
        return self._obs(self.agents), {a: {} for a in self.agents}

    def step(self, actions):
        assert set(actions) == set(self.agents), (actions, self.agents)
        acting = list(self.agents)
        self.t += 1
        rewards = {a: float(self.NUMBER[a]) for a in acting}
        terminations = {a: (a == "b" and self.t == 2) or (a == "c" and self.t == 3) for a in acting}
        truncations = {a: a == "a" and self.t == 5 for a in acting}
        self.agents = [a for a in acting if not (terminations[a] or truncations[a])]
        if self.t == 1:
            self.agents.append("c")
        obs = self._obs(set(acting) | set(self.agents))
        return obs, rewards, terminations, truncations, {a: {} for a in acting}


def scripted() -> ScriptedEnv:
    return ScriptedEnv()


class ScriptedPixels(ScriptedEnv):
    """``ScriptedEnv`` with uint8 observations, as image envs have."""

    def observation_space(self, agent):
        return spaces.Box(0, 255, (2,), np.uint8)

    def _obs(self, agents):
        return {a: np.array([self.t, self.NUMBER[a]], np.uint8) for a in agents}


def scripted_pixels() -> ScriptedPixels:
    return ScriptedPixels()


def not_parallel():
    return object()


class RepeatedPennies(ParallelEnv):
    """Matching pennies for ``max_steps`` rounds, zero-sum: "player_0" scores 1 when the
    coins match, "player_1" when they differ. Each sees the last round's two coins and the
    time left. For self-play examples."""

    metadata: ClassVar[dict] = {"name": "pennies_v0"}

    def __init__(self, max_steps: int = 8) -> None:
        self.possible_agents = ["player_0", "player_1"]
        self.max_steps = max_steps

    def observation_space(self, agent):
        return spaces.Box(0.0, 1.0, (5,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(2)

    def _obs(self, last):
        obs = np.zeros(5, np.float32)
        if last is not None:
            obs[last[0]] = obs[2 + last[1]] = 1.0
        obs[4] = 1.0 - self.t / self.max_steps
        return {a: obs.copy() for a in self.possible_agents}

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return self._obs(None), {a: {} for a in self.agents}

    def step(self, actions):
        coins = (int(actions["player_0"]), int(actions["player_1"]))
        match = float(coins[0] == coins[1])
        self.t += 1
        rewards = {"player_0": match, "player_1": 1.0 - match}
        done = self.t >= self.max_steps
        obs = self._obs(coins)
        self.agents = [] if done else list(self.possible_agents)
        flags = {a: done for a in self.possible_agents}
        return obs, rewards, {a: False for a in flags}, flags, {a: {} for a in flags}


def pennies() -> RepeatedPennies:
    return RepeatedPennies()


# The coordination game as the training tests name it, and the team return they require:
# up to 16 an episode; a random pair scores ~4, and 14 means both modules nearly always
# answer right.
GAME = "pettingzoo:multi_agent_envs:coordination"
THRESHOLD = 14.0


def game_config(tmp_path: Any, algorithm: str, overrides: dict, **changes: Any):
    """A TrainConfig training one module per agent of the coordination game to THRESHOLD."""
    from learnerkit.loops import TrainConfig

    values = {
        "algorithm": algorithm,
        "env_id": GAME,
        "policy_mapping": "per_agent",
        "stop_reward": THRESHOLD,
        "stop_timesteps": 40_000,
        "out_dir": str(tmp_path / "run"),
        "overrides": overrides,
        "model_config": {"hiddens": [32]},
        "progress": False,
        **changes,
    }
    return TrainConfig(**values)
