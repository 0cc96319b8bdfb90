"""``learnerkit/PixelGrid-v0``: a pixel task small enough for CI, which only a policy that
reads the image can solve.

A ``size`` x ``size`` grid drawn as a ``uint8`` HWC image (``cell`` pixels a side per
cell; 16x16x3 by default), the agent in the red channel, the goal in the green one, both
placed at random each episode. Actions: up, down, left, right (into a wall: no move).
Reward -0.05 a step and +1 on reaching the goal, which ends the episode; truncated after
``max_steps``. The best policy scores about 0.9 on average (the goal is ~2.7 steps away
on the default 4x4 grid); a random policy about -0.25, and the best policy blind to the
image (a fixed sweep) below 0.3 (``tests/test_pixel_learning.py`` measures both)."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["PixelGrid"]

_MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])


class PixelGrid(gym.Env):
    """Reach the green cell; see the module docstring."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}

    def __init__(self, size: int = 4, cell: int = 4, max_steps: int = 16) -> None:
        self.size, self.cell, self.max_steps = int(size), int(cell), int(max_steps)
        side = self.size * self.cell
        self.observation_space = spaces.Box(0, 255, (side, side, 3), np.uint8)
        self.action_space = spaces.Discrete(4)
        self.render_mode = "rgb_array"
        self._agent = np.zeros(2, np.int64)
        self._goal = np.zeros(2, np.int64)
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: Any = None):
        super().reset(seed=seed)
        cells = self.np_random.choice(self.size * self.size, 2, replace=False)
        self._agent = np.array(divmod(int(cells[0]), self.size))
        self._goal = np.array(divmod(int(cells[1]), self.size))
        self._steps = 0
        return self._image(), {}

    def step(self, action: int):
        self._agent = np.clip(self._agent + _MOVES[int(action)], 0, self.size - 1)
        self._steps += 1
        reached = bool((self._agent == self._goal).all())
        reward = 1.0 - 0.05 if reached else -0.05
        return self._image(), reward, reached, self._steps >= self.max_steps, {}

    def render(self) -> np.ndarray:
        return self._image()

    def _image(self) -> np.ndarray:
        image = np.zeros(self.observation_space.shape, np.uint8)
        for channel, (row, col) in ((0, self._agent), (1, self._goal)):
            c = self.cell
            image[row * c : (row + 1) * c, col * c : (col + 1) * c, channel] = 255
        return image
