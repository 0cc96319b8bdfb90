"""Behaviour cloning learns: cloned from a hand-written CartPole controller, the policy
balances the pole (mean greedy return >= 450 of 500), in torch and in TensorFlow."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pytest

import learnerkit
from learnerkit import Columns, Learner, LearnerSpec, ModuleSpec, SampleBatch
from learnerkit.backends import policy_fn


def expert_action(obs: np.ndarray) -> int:
    """Push toward where the pole is falling: balances CartPole-v1 for 500 steps."""
    x, x_dot, theta, theta_dot = obs
    return int(theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0)


def expert_data(num_episodes: int = 10, noise: float = 0.2, seed: int = 0) -> SampleBatch:
    """States visited while sometimes acting at random, labelled with the expert's action,
    so the clone also sees how to recover from small mistakes."""
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    obs_rows, actions = [], []
    for episode in range(num_episodes):
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            label = expert_action(obs)
            obs_rows.append(obs)
            actions.append(label)
            act = int(rng.integers(2)) if rng.random() < noise else label
            obs, _, terminated, truncated, _ = env.step(act)
            done = terminated or truncated
    env.close()
    return SampleBatch({Columns.OBS: np.array(obs_rows, np.float32), Columns.ACTIONS: actions})


def greedy_returns(policy, num_episodes: int = 10, seed: int = 1000) -> list[float]:
    env = gym.make("CartPole-v1")
    returns = []
    for episode in range(num_episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            action = policy(obs[None].astype(np.float32))[Columns.ACTIONS][0]
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total += reward
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def test_the_expert_balances_the_pole():
    returns = greedy_returns(lambda obs: {Columns.ACTIONS: [expert_action(obs[0])]})
    assert np.mean(returns) == 500


@pytest.mark.slow  # 5-20 s per framework on 2 cores
def test_bc_clones_the_expert_well_enough_to_balance_the_pole(framework):
    start = time.perf_counter()
    data = expert_data()
    env = gym.make("CartPole-v1")
    spec = LearnerSpec(
        algorithm="bc",
        framework=framework,
        module_spec=ModuleSpec(env.observation_space, env.action_space),
        hyperparameters=learnerkit.get_algorithm("bc").hyperparameters(learning_rate=3e-3),
    )
    learner = Learner(spec)
    learner.build()
    first = learner.update(data, minibatch_size=256)["default_policy"]
    last = learner.update(data, minibatch_size=256, num_epochs=30)["default_policy"]
    assert last["policy_loss"] < 0.5 * first["policy_loss"]

    module = learner.module["default_policy"]
    returns = greedy_returns(policy_fn(learner.backend, module, explore=False))
    seconds = time.perf_counter() - start
    print(
        f"\nBC ({framework}) on {data.count} expert samples: loss {first['policy_loss']:.3f} -> "
        f"{last['policy_loss']:.3f}, greedy return {np.mean(returns):.1f} "
        f"(min {min(returns):.0f}) in {seconds:.1f} s"
    )
    assert np.mean(returns) >= 450
