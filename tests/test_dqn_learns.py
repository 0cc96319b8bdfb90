"""DQN learns: the cheapest runs that still fail when learning breaks (a sign or a target
wrong in the loss leaves CartPole's returns near random play, ~20). The bar of issue 18
(last-100 mean of 400 and greedy evaluation of 475 within 100k env steps, 3 seeds, Ray
runners, TensorFlow, Acrobot) is measured by ``bench/dqn_learning.py``."""

from __future__ import annotations

import pytest

from learnerkit.loops import TrainConfig, evaluate_checkpoint, train

pytestmark = pytest.mark.slow


def test_dqn_on_torch_lifts_cartpole_far_above_random_play_in_20k_steps(tmp_path):
    summary = train(
        TrainConfig(
            algorithm="dqn",
            seed=0,
            stop_reward=150.0,
            stop_timesteps=20_000,
            out_dir=str(tmp_path),
            progress=False,
        )
    )
    assert summary.reached_stop_reward, f"mean return {summary.episode_return_mean}"
    greedy, _ = evaluate_checkpoint(str(tmp_path), num_episodes=5)
    assert greedy >= 150.0


def test_dqn_on_tensorflow_learns_cartpole_too(tmp_path):
    summary = train(
        TrainConfig(
            algorithm="dqn",
            framework="tf",
            seed=0,
            stop_reward=100.0,
            stop_timesteps=15_000,
            out_dir=str(tmp_path),
            progress=False,
        )
    )
    assert summary.reached_stop_reward, f"mean return {summary.episode_return_mean}"
