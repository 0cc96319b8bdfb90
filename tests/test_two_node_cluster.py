"""On a two-node Ray cluster (two Ray nodes on this machine): a group's learners sit on
both nodes and train in lockstep, a run spreads its env runners and learners over both
and learns, and a sweep's trials sit on both nodes. One cluster serves the tests; they run
after every other Ray test (conftest), since the cluster replaces this process's Ray
session."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import ray
from conftest import CARTPOLE_OBS, TWO_ACTIONS, end_ray_session, random_batch

from learnerkit import LearnerGroup, LearnerSpec, ModuleSpec, ScalingConfig
from learnerkit.loops import TrainConfig, Trainer
from learnerkit.tune import SweepConfig, parse_space, sweep

pytestmark = pytest.mark.ray

NODE_CPUS = 2


@pytest.fixture(scope="module")
def two_node_cluster():
    """The address of a cluster of two nodes of ``NODE_CPUS`` CPUs each (no dashboard, as
    in the local Ray a run starts: it would cost seconds to start and CPU all along)."""
    from ray.cluster_utils import Cluster

    end_ray_session()
    head = {"num_cpus": NODE_CPUS, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    cluster.add_node(num_cpus=NODE_CPUS)
    try:
        yield cluster.address
    finally:
        end_ray_session()
        cluster.shutdown()


def test_learners_on_two_nodes_of_a_cluster_train_in_lockstep(two_node_cluster):
    # A learner asks for a whole node, so the two must sit on different nodes.
    spec = LearnerSpec(
        algorithm="bc",
        module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
        scaling=ScalingConfig(num_learners=2, num_cpus_per_learner=NODE_CPUS),
    )
    with LearnerGroup(spec, ray_address=two_node_cluster) as spread:
        nodes = spread.foreach_learner(lambda learner: ray.get_runtime_context().get_node_id())
        assert len(set(nodes)) == 2
        for seed in range(3):
            spread.update(random_batch(64, seed=seed), minibatch_size=16)
        first, second = spread.foreach_learner(lambda learner: learner.get_module_state())
        np.testing.assert_equal(first, second)


def test_runners_and_learners_spread_over_two_nodes_and_learn(two_node_cluster, tmp_path):
    trainer = Trainer(
        TrainConfig(
            algorithm="impala",
            num_learners=2,
            ray_address=two_node_cluster,
            out_dir=str(tmp_path),
            progress=False,
            overrides={
                "num_env_runners": 2,
                "num_cpus_per_env_runner": 0.5,
                "min_sample_timesteps_per_iteration": 4000,
            },
        )
    )
    try:
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
        trainer.close()


@pytest.mark.slow
def test_a_sweep_places_its_trials_on_both_nodes(two_node_cluster, tmp_path):
    # A trial of one env-runner actor needs 2 CPUs (its driver's and the runner's): a whole
    # node each, so two trials at once sit on both nodes, each runner inside its trial's
    # placement group (a reservation of its own would find no free CPU and time out).
    seen: dict[str, set[str]] = {}
    stop = threading.Event()

    def watch_placement_groups() -> None:
        while not stop.wait(0.2):
            for pg_id, pg in ray.util.placement_group_table().items():
                if pg["state"] == "CREATED":
                    seen.setdefault(pg_id, set()).update(pg["bundles_to_node_id"].values())

    config = SweepConfig(
        train=TrainConfig(
            algorithm="ppo",
            stop_timesteps=8 * 256,
            ray_address=two_node_cluster,
            overrides={"num_env_runners": 1, "num_envs_per_env_runner": 4},
        ),
        space=parse_space(["learning_rate=grid(1e-3, 3e-3)"]),
        out_dir=str(tmp_path),
        verbose=0,
    )
    watcher = threading.Thread(target=watch_placement_groups, daemon=True)
    # The watcher's Ray session, which the sweep joins (an earlier test may have left this
    # process connected to the cluster already).
    ray.init(address=two_node_cluster, ignore_reinit_error=True)
    watcher.start()
    try:
        summary = sweep(config)
    finally:
        stop.set()
        watcher.join()
    assert summary.trials == 2
    assert summary.best_checkpoint is not None
    trial_groups = [nodes for nodes in seen.values() if nodes]
    assert len(trial_groups) == 2  # no group but the trials': runners reserved nothing more
    assert all(len(nodes) == 1 for nodes in trial_groups)  # each trial packed on one node
    assert len(set.union(*trial_groups)) == 2
