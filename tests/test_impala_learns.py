"""IMPALA learns CartPole-v1 with its defaults, on torch and TensorFlow, and a trained
run's checkpoint evaluates to a trained policy. (With two Ray env runners:
``test_ray_training.py``.)

Each test is one run to a last-100 mean of 200 within 150k env steps: a random policy
averages about 22, seed 0 passes 200 at ~31k (torch) and ~36k (TensorFlow), so a learning
rate of 0, a loss of the wrong sign, V-trace off its targets or a loop that trains on stale
or wrong rows fails; a run can collapse after passing 400 (1 of 55 runs once), long after
this bar. The issue's bar (450 within 500k, two seeds of three) is measured by
``bench/learning_bars.py``."""

from __future__ import annotations

import pytest

from learnerkit.loops import TrainConfig, evaluate_checkpoint, train

pytestmark = pytest.mark.slow

BAR, BUDGET = 200.0, 150_000


def _train(out_dir, **kwargs):
    return train(
        TrainConfig(
            algorithm="impala",
            out_dir=str(out_dir),
            progress=False,
            stop_reward=BAR,
            stop_timesteps=BUDGET,
            **kwargs,
        )
    )


def test_impala_learns_cartpole_on_torch(tmp_path):
    summary = _train(tmp_path)
    assert summary.reached_stop_reward, summary


def test_impala_learns_cartpole_on_tensorflow_and_its_checkpoint_evaluates(tmp_path):
    summary = _train(tmp_path, framework="tf")
    assert summary.reached_stop_reward, summary
    mean, _ = evaluate_checkpoint(summary.checkpoint, num_episodes=3)
    assert mean > 100  # greedy, from the checkpoint: a random policy scores about 22
