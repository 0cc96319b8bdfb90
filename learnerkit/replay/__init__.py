"""Replay buffers for off-policy algorithms (DQN, SAC, TD3), framework-free (numpy only).

- `UniformReplayBuffer` and `PrioritizedReplayBuffer` (proportional, sum-tree): n-step
  returns computed as rows are added, observations stored once, FIFO eviction, dtypes
  kept, checkpointable state.
- `MultiAgentReplayBuffer`: one buffer per module.
- `ReplayColumns`: the columns a sampled batch has beyond ``learnerkit.Columns``.
- `n_step_windows`: the n-step maths on its own; `SumTree`: what prioritized sampling
  draws from.

Importing this package loads no numpy until a buffer is used (an algorithm plugin may
import ``ReplayColumns`` while plugins are listed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from learnerkit.replay._columns import ReplayColumns

if TYPE_CHECKING:
    from learnerkit.replay._buffers import PrioritizedReplayBuffer, UniformReplayBuffer
    from learnerkit.replay._multi_agent import MultiAgentReplayBuffer
    from learnerkit.replay._n_step import NStepWindows, n_step_windows
    from learnerkit.replay._sum_tree import SumTree

_LAZY = {
    "MultiAgentReplayBuffer": "learnerkit.replay._multi_agent",
    "NStepWindows": "learnerkit.replay._n_step",
    "PrioritizedReplayBuffer": "learnerkit.replay._buffers",
    "SumTree": "learnerkit.replay._sum_tree",
    "UniformReplayBuffer": "learnerkit.replay._buffers",
    "n_step_windows": "learnerkit.replay._n_step",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'learnerkit.replay' has no attribute {name!r}")


__all__ = [
    "MultiAgentReplayBuffer",
    "NStepWindows",
    "PrioritizedReplayBuffer",
    "ReplayColumns",
    "SumTree",
    "UniformReplayBuffer",
    "n_step_windows",
]
