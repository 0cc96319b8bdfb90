"""`learnerkit train` with env runners on Ray: IMPALA learns with two runners, PPO gathers
its on-policy batch from them, a runner killed mid-training is restarted and training goes
on. (On a two-node cluster: ``test_two_node_cluster.py``.)
"""

from __future__ import annotations

import logging

import pytest
import ray

from learnerkit.loops import TrainConfig, Trainer, train

pytestmark = pytest.mark.ray

# Two runners fit beside the driver (and two learners) on this 2-core machine.
SMALL_RUNNERS = {"num_env_runners": 2, "num_cpus_per_env_runner": 0.5}


@pytest.mark.slow
def test_impala_learns_cartpole_with_two_env_runners(tmp_path):
    """One run to a last-100 mean of 200 within 150k env steps (random: about 22; seed 0
    passes at ~36k): fails if the runners' fragments, their weights or the learner's
    updates are broken; the issue's bar over seeds is in ``bench/learning_bars.py``."""
    summary = train(
        TrainConfig(
            algorithm="impala",
            out_dir=str(tmp_path),
            progress=False,
            stop_reward=200.0,
            stop_timesteps=150_000,
            overrides=SMALL_RUNNERS,
        )
    )
    assert summary.reached_stop_reward, summary


def test_ppo_gathers_one_batch_from_every_runner_per_iteration(tmp_path):
    overrides = {**SMALL_RUNNERS, "rollout_fragment_length": 32, "normalize_observations": True}
    trainer = Trainer(TrainConfig(out_dir=str(tmp_path), progress=False, overrides=overrides))
    try:
        trainer.started = 0.0
        rows = [trainer.step() for _ in range(3)]
        # 2 runners x 8 envs x 32 steps per iteration, all trained on.
        assert [r["timesteps_total"] for r in rows] == [512, 1024, 1536]
        assert all(r["num_env_steps_trained"] == 512 for r in rows)
        # The shared observation statistics count every step of both runners.
        stats = trainer.runners.get_state()
        assert float(stats["obs_count"]) == pytest.approx(1536 + 1e-4)
    finally:
        trainer.close()


def test_a_runner_killed_mid_training_is_restarted_and_training_goes_on(tmp_path, caplog):
    overrides = {**SMALL_RUNNERS, "min_sample_timesteps_per_iteration": 2000}
    trainer = Trainer(
        TrainConfig(algorithm="impala", out_dir=str(tmp_path), progress=False, overrides=overrides)
    )
    try:
        trainer.started = 0.0
        first = trainer.step()
        assert first["env_runner_restarts"] == 0
        ray.kill(trainer.runners.actors[1], no_restart=True)
        with caplog.at_level(logging.WARNING, logger="learnerkit"):
            rows = [trainer.step() for _ in range(2)]
        assert "env runner 1" in caplog.text and "its actor died" in caplog.text
        assert rows[-1]["env_runner_restarts"] == 1
        assert rows[-1]["timesteps_total"] >= first["timesteps_total"] + 4000
        assert rows[-1]["num_updates_total"] > first["num_updates_total"]
        # The restarted runner samples with the current weights again.
        assert rows[-1]["policy_lag_max"] <= 10
    finally:
        trainer.close()
