"""Environments learnerkit ships, registered with gymnasium under ``learnerkit/`` ids when
this package is imported (env runners import it for such an id):

- ``learnerkit/PixelGrid-v0``: a 16x16 uint8 image task for pixel modules
  (``pixel_grid.PixelGrid``).
- ``learnerkit/StatelessCartPole-v1``: CartPole-v1 without the velocities, for recurrent
  modules (``memory.StatelessCartPole``; RLlib's ``StatelessCartPole``).
- ``learnerkit/RepeatAfterMe-v0``: name the symbol shown one step ago
  (``memory.RepeatAfterMe``; RLlib's ``RepeatAfterMeEnv``).

And one PettingZoo env, named by its factory (not registered; it needs PettingZoo):
``pettingzoo:learnerkit.envs.multi_agent_memory:repeat_after_me``, the same memory task for
two agents, one of which leaves half way.
"""

from __future__ import annotations

import gymnasium

__all__ = ["PIXEL_GRID_ID", "REPEAT_AFTER_ME_ID", "STATELESS_CARTPOLE_ID"]

PIXEL_GRID_ID = "learnerkit/PixelGrid-v0"
STATELESS_CARTPOLE_ID = "learnerkit/StatelessCartPole-v1"
REPEAT_AFTER_ME_ID = "learnerkit/RepeatAfterMe-v0"

if PIXEL_GRID_ID not in gymnasium.registry:
    gymnasium.register(PIXEL_GRID_ID, entry_point="learnerkit.envs._pixel_grid:PixelGrid")
if STATELESS_CARTPOLE_ID not in gymnasium.registry:
    gymnasium.register(
        STATELESS_CARTPOLE_ID,
        entry_point="learnerkit.envs._memory:StatelessCartPole",
        max_episode_steps=500,
        reward_threshold=475.0,
    )
if REPEAT_AFTER_ME_ID not in gymnasium.registry:
    gymnasium.register(REPEAT_AFTER_ME_ID, entry_point="learnerkit.envs._memory:RepeatAfterMe")
