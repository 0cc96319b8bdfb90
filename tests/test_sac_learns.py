"""SAC learns: one short Pendulum-v1 run on torch, then a deterministic evaluation (the
mean action, 5 episodes) of its checkpoint.

4,000 env steps of the Pendulum preset with batches of 64 (one gradient step per env step
after 500) leave the training mean near -1,100 (the early episodes) while the mean action
already swings the pendulum up: -153, -601 and -151 for seeds 0-2 (random play scores
about -1,200 to -1,500). What breaks learning misses the bar of -900: with the actor's
loss negated, seed 0 scored -1,428; with the bootstrap dropped from the critics' target
(rewards alone), -1,122. The issue's Pendulum bar (a last-100 mean of -200 within 50k env
steps for 3 seeds on torch and one on TensorFlow) and its InvertedPendulum-v5 bar (950
within 30k) are measured by ``bench/sac_learning.py``."""

from __future__ import annotations

import pytest

from learnerkit.loops import TrainConfig, evaluate_checkpoint, train

pytestmark = pytest.mark.slow

STEPS = 4_000
BAR = -900.0


def test_sac_swings_the_pendulum_up_after_4k_env_steps(tmp_path):
    summary = train(
        TrainConfig(
            algorithm="sac",
            env_id="Pendulum-v1",
            seed=0,
            stop_timesteps=STEPS,
            overrides={"learning_starts": 500, "train_batch_size": 64, "training_intensity": 64},
            out_dir=str(tmp_path),
            progress=False,
        )
    )
    assert summary.timesteps_total >= STEPS
    mean, returns = evaluate_checkpoint(str(tmp_path), num_episodes=5)
    assert mean >= BAR, f"returns {returns} (training mean {summary.episode_return_mean})"
