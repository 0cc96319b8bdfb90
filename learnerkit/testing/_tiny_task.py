"""A task small enough to learn in seconds, for "does it learn at all" checks: two states,
shown one-hot; the reward is 1 when the action equals the state, else 0; the next state is
random; an episode is ``EPISODE_LENGTH`` steps. A random policy's return averages
``EPISODE_LENGTH / 2``, a learned one's approaches ``EPISODE_LENGTH``. It needs memory of
nothing and credit assignment over one step, so a wrong sign, a learning rate of 0 or a
loss without the policy term fails it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

TWO_STATE_ENV_ID = "learnerkit/TwoState-v0"
EPISODE_LENGTH = 10


class TwoStateEnv(gym.Env):
    """Match the state: reward 1 for action == state (see the module docstring)."""

    observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self._state = 0
        self._t = 0

    def _obs(self) -> np.ndarray:
        return np.eye(2, dtype=np.float32)[self._state]

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple:
        super().reset(seed=seed)
        self._state, self._t = int(self.np_random.integers(2)), 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple:
        reward = float(int(action) == self._state)
        self._state, self._t = int(self.np_random.integers(2)), self._t + 1
        return self._obs(), reward, self._t >= EPISODE_LENGTH, False, {}


def register_two_state_env() -> str:
    """Register ``TWO_STATE_ENV_ID`` with gymnasium (once) and return it."""
    if TWO_STATE_ENV_ID not in gym.registry:
        gym.register(TWO_STATE_ENV_ID, entry_point=f"{__name__}:TwoStateEnv")
    return TWO_STATE_ENV_ID


def check_learns_tiny_task(
    algorithm: str,
    framework: str,
    out_dir: Path,
    *,
    budget: int = 20_000,
    threshold: float = 0.8 * EPISODE_LENGTH,
    hyperparameters: dict[str, Any] | None = None,
    seed: int = 0,
) -> float:
    """Train ``algorithm`` with its own training loop on the two-state task for ``budget``
    env steps (in this process, no Ray); its last-100-episode mean return must reach
    ``threshold`` (random: 5 of 10). Returns that mean. Loops that sample no environment
    (offline) cannot run it."""
    import learnerkit
    from learnerkit.loops import TrainConfig, train

    loop = learnerkit.get_algorithm(algorithm).training_loop
    info = learnerkit.get_training_loop(loop) if loop is not None else None
    assert info is not None and info.uses_env_runners, (
        f"{algorithm}: the tiny task is learned through a training loop that samples "
        f"environments; its loop {loop!r} does not"
    )
    summary = train(
        TrainConfig(
            algorithm=algorithm,
            env_id=register_two_state_env(),
            framework=framework,
            seed=seed,
            stop_timesteps=budget,
            stop_reward=threshold,
            overrides={"num_env_runners": 0, **(hyperparameters or {})},
            out_dir=str(out_dir),
            progress=False,
        )
    )
    mean = summary.episode_return_mean
    assert mean is not None and mean >= threshold, (
        f"{algorithm} ({framework}) reached a mean return of {mean} on {TWO_STATE_ENV_ID} "
        f"within {budget} env steps; {threshold} needed (a random policy gets "
        f"{EPISODE_LENGTH / 2})"
    )
    return float(mean)
