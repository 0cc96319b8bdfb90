"""`learnerkit train` with env runners on Ray: IMPALA learns with two runners, PPO gathers
its on-policy batch from them, a runner killed mid-training is restarted and training goes
on, and on a two-node cluster runners and learners spread over both nodes and learn.

One Ray session serves the module (started by the first run, as a user's would be); the
two-node cluster test comes last and brings its own.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import ray

from learnerkit.loops import TrainConfig, train
from learnerkit.loops.trainer import Trainer

pytestmark = pytest.mark.ray

# Two runners fit beside the driver (and two learners) on this 2-core machine.
SMALL_RUNNERS = {"num_env_runners": 2, "num_cpus_per_env_runner": 0.5}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_impala_solves_cartpole_with_two_env_runners(tmp_path, seed):
    summary = train(
        TrainConfig(
            algorithm="impala",
            seed=seed,
            out_dir=str(tmp_path),
            progress=False,
            overrides=SMALL_RUNNERS,
        )
    )
    assert summary.reached_stop_reward and summary.timesteps_total <= 500_000, summary


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


def test_runners_and_learners_spread_over_two_nodes_and_learn(tmp_path):
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2)
    trainer = None
    try:
        trainer = Trainer(
            TrainConfig(
                algorithm="impala",
                num_learners=2,
                ray_address=cluster.address,
                out_dir=str(tmp_path),
                progress=False,
                overrides={**SMALL_RUNNERS, "min_sample_timesteps_per_iteration": 4000},
            )
        )
        runner_nodes = {info["node_id"] for info in trainer.runners.info_by_index.values()}
        learner_nodes = set(
            trainer.group.foreach_learner(lambda _: ray.get_runtime_context().get_node_id())
        )
        assert len(runner_nodes) == len(learner_nodes) == 2
        trainer.started = 0.0
        rows = [trainer.step() for _ in range(6)]
        assert rows[-1]["num_updates_total"] >= 20
        assert all(r["num_env_steps_trained"] > 0 for r in rows)
        # Training progresses: the last iterations' episodes are longer than a random
        # policy's (about 22 steps on CartPole).
        assert rows[-1]["episode_len_mean"] > 30
        # Data-parallel IMPALA keeps the two learners' weights bitwise identical.
        first, second = trainer.group.foreach_learner(lambda learner: learner.get_module_state())
        for name, array in first["default_policy"].items():
            np.testing.assert_array_equal(array, second["default_policy"][name])
    finally:
        if trainer is not None:
            trainer.close()
        ray.shutdown()
        cluster.shutdown()
