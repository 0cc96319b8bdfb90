"""Evaluating a trained policy: greedy episodes from a checkpoint written by training."""

from __future__ import annotations

from typing import Any

import numpy as np

from learnerkit._plugins import get_algorithm
from learnerkit.learner import Learner
from learnerkit.loops.trainer import checkpoint_dir, read_run, read_trainer_state
from learnerkit.rollouts.env_runner import EnvRunner
from learnerkit.specs import LearnerSpec, ModuleSpec, structure_hyperparameters


def evaluate_checkpoint(
    path: str, *, env_id: str | None = None, num_episodes: int = 10, seed: int = 1000
) -> tuple[float, list[float]]:
    """Mean return of the greedy policy saved at ``path`` (a run or checkpoint directory)."""
    checkpoint = checkpoint_dir(path)
    run = read_run(path)
    algorithm = get_algorithm(run["algorithm"])
    hps = structure_hyperparameters(algorithm.hyperparameters, run["hyperparameters"])
    env_id = env_id or run["env"]
    runner = EnvRunner(
        env_id, num_envs=1, seed=seed, normalize_obs=getattr(hps, "normalize_observations", False)
    )
    runner.set_state(read_trainer_state(path)["obs_normalizer"])
    spec = LearnerSpec(
        algorithm=run["algorithm"],
        framework=run["framework"],
        module_spec=ModuleSpec(
            runner.observation_space, runner.action_space, model_config=run["model_config"]
        ),
        hyperparameters=hps,
    )
    runner.close()
    learner = Learner(spec)
    learner.build()
    learner.load_state(checkpoint)
    module = next(iter(learner.module.values()))
    policy = learner.backend.policy_fn(module, explore=False)
    returns = run_episodes(env_id, policy, num_episodes, seed=seed, normalize=runner.normalize)
    return float(np.mean(returns)), returns


def run_episodes(
    env_id: str,
    policy: Any,
    num_episodes: int,
    *,
    seed: int = 0,
    normalize: Any = None,
) -> list[float]:
    """Returns of ``num_episodes`` episodes of ``policy`` (numpy in, ``{"actions": ...}`` out)."""
    import gymnasium

    env = gymnasium.make(env_id)
    low = getattr(env.action_space, "low", None)
    high = getattr(env.action_space, "high", None)
    returns = []
    for episode in range(num_episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            x = np.asarray(obs, dtype=np.float32)[None]
            action = policy(normalize(x) if normalize else x)["actions"][0]
            if low is not None:
                action = np.clip(action, low, high)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns
