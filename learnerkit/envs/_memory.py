"""Partially observed gymnasium envs that only a policy with memory solves (registered by
``learnerkit.envs``, which env runners import for a ``learnerkit/`` id):

- ``learnerkit/StatelessCartPole-v1``: CartPole-v1 with the velocities removed from the
  observation (cart position and pole angle only), as RLlib's ``StatelessCartPole``. A
  feed-forward policy cannot tell which way the pole moves; a recurrent one infers it from
  consecutive observations (``model_config={"use_lstm": True}``).
- ``learnerkit/RepeatAfterMe-v0``: each step shows one of ``num_symbols`` symbols (one-hot)
  and rewards +1 for naming the symbol shown ``delay`` steps earlier (as RLlib's
  ``RepeatAfterMeEnv``); chance level for a policy without memory. A test of the mechanics
  of recurrent training that learns in seconds.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

__all__ = ["RepeatAfterMe", "StatelessCartPole"]

# CartPole's observation: x, x_dot, theta, theta_dot. Kept: x and theta.
_POSITIONS = np.array([0, 2])


class StatelessCartPole(CartPoleEnv):
    """CartPole whose observation holds the cart position and pole angle, no velocities."""

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        high = self.observation_space.high[_POSITIONS]
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs[_POSITIONS], reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed, options=options)
        return obs[_POSITIONS], info


class RepeatAfterMe(gymnasium.Env):
    """Name the symbol shown ``delay`` steps ago; episodes of ``episode_length`` steps."""

    def __init__(self, num_symbols: int = 2, delay: int = 1, episode_length: int = 20) -> None:
        if not 0 <= delay < episode_length:
            raise ValueError(
                f"RepeatAfterMe: delay must be in [0, episode_length), got {delay} for "
                f"episode_length={episode_length}"
            )
        self.num_symbols, self.delay, self.episode_length = num_symbols, delay, episode_length
        self.observation_space = spaces.Box(0.0, 1.0, (num_symbols,), dtype=np.float32)
        self.action_space = spaces.Discrete(num_symbols)
        self._shown: list[int] = []

    def _observe(self) -> np.ndarray:
        symbol = int(self.np_random.integers(self.num_symbols))
        self._shown.append(symbol)
        return np.eye(self.num_symbols, dtype=np.float32)[symbol]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._shown = []
        return self._observe(), {}

    def step(self, action: Any):
        t = len(self._shown) - 1  # the step being answered
        reward = 0.0
        if t >= self.delay:
            reward = 1.0 if int(action) == self._shown[t - self.delay] else 0.0
        terminated = len(self._shown) >= self.episode_length
        return self._observe(), reward, terminated, False, {}
