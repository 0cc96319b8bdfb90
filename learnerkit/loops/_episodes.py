"""Greedy evaluation episodes of a policy in copies of one env stepped together: the offline
loop's evaluation (``learnerkit.loops.contract.evaluation_episodes``). A leaf of the loops:
it needs only gymnasium and numpy, so the light contract can reach it without a circle."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

Policy = Callable[[np.ndarray], Mapping[str, np.ndarray]]


def run_episodes_side_by_side(
    env_id: str, policy: Policy, num_episodes: int, *, seed: int = 0
) -> list[tuple[float, int]]:
    """(return, length) of ``num_episodes`` episodes of ``policy``, one per copy of the
    environment, stepped together so the policy runs once per step for all of them (what
    the offline loop evaluates with; episode k is reset with ``seed + k``)."""
    import gymnasium

    env = gymnasium.make_vec(
        env_id,
        num_envs=num_episodes,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP},
    )
    space = env.single_action_space
    low, high = getattr(space, "low", None), getattr(space, "high", None)
    returns = np.zeros(num_episodes)
    lengths = np.zeros(num_episodes, dtype=np.int64)
    running = np.ones(num_episodes, dtype=bool)
    try:
        obs, _ = env.reset(seed=seed)
        if hasattr(policy, "reset"):
            policy.reset()
        while running.any():
            actions = np.asarray(policy(np.asarray(obs, dtype=np.float32))["actions"])
            if low is not None:
                actions = np.clip(actions, low, high)
            obs, rewards, terminated, truncated, _ = env.step(actions)
            # An environment that finished its episode restarts at once; its later steps
            # are not counted.
            returns += np.where(running, rewards, 0.0)
            lengths += running
            running &= ~(terminated | truncated)
    finally:
        env.close()
    return [(float(r), int(n)) for r, n in zip(returns, lengths, strict=True)]
