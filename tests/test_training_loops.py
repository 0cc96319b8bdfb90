"""Training loops as building blocks: an algorithm picks one by name, the loop's settings are
validated as its hyperparameters, and a third-party algorithm trains through the same door
as the built-in ones."""

from __future__ import annotations

import csv
import time

import attrs
import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, make_plugin

import learnerkit
from learnerkit import (
    AsyncSettings,
    BatchError,
    Columns,
    ConfigError,
    Learner,
    LearnerSpec,
    ModuleSpec,
    OnPolicySettings,
    PluginError,
    SampleBatch,
)
from learnerkit.loops import TrainConfig, Trainer, train
from learnerkit.rollouts import EnvRunner


def pg_loss(module, batch, fwd_out, ops):
    """A vanilla policy gradient on GAE advantages: the smallest on-policy algorithm."""
    dist = module.action_dist(fwd_out[Columns.ACTION_DIST_INPUTS])
    pg = -ops.mean(dist.logp(batch[Columns.ACTIONS]) * batch[Columns.ADVANTAGES])
    vf = ops.mean(ops.square(fwd_out[Columns.VF_PREDS] - batch[Columns.VALUE_TARGETS]))
    return {"total_loss": pg + 0.5 * vf, "policy_loss": pg, "vf_loss": vf}


def sequence_pg_loss(module, batch, fwd_out, ops):
    """A policy gradient on each fragment's rewards-to-go: a minimal asynchronous one."""
    dist = module.action_dist(fwd_out[Columns.ACTION_DIST_INPUTS])
    pg = -ops.mean(dist.logp(batch[Columns.ACTIONS]) * batch[Columns.REWARDS])
    return {"total_loss": pg, "policy_loss": pg, "mean_kl": pg * 0.0}


def seqpg_plugin():
    return make_plugin(
        "seqpg", hyperparameters=AsyncSettings, training_loop="async", compute_loss=sequence_pg_loss
    )


# Small fragments, batches and iterations: 4 envs x 20 steps, 2 fragments per update.
SEQPG_OVERRIDES = {
    "rollout_fragment_length": 20,
    "num_envs_per_env_runner": 4,
    "train_batch_size": 160,
    "min_sample_timesteps_per_iteration": 400,
}


@attrs.frozen(kw_only=True)
class PGHyperparameters(OnPolicySettings):
    minibatch_size: int = 128
    num_epochs: int = 1


def test_every_loop_names_its_settings_and_its_code():
    rows = [row for row in learnerkit.list_training_loops() if row.status == "ok"]
    assert {row.name for row in rows} >= {"on_policy", "async", "offline"}
    for row in rows:
        info = learnerkit.get_training_loop(row.name)
        assert issubclass(info.settings, learnerkit.Hyperparameters)
        loop = info.load()
        assert callable(loop.step) and callable(loop.get_state)


def test_hyperparameters_must_derive_from_the_loops_settings(register):
    plugin = make_plugin("x", training_loop="async", compute_loss=pg_loss)
    with pytest.raises(PluginError, match=r"must derive from learnerkit\.settings\.AsyncSettings"):
        register(plugin)


def test_loop_settings_are_validated_with_the_fix():
    with pytest.raises(ConfigError, match="learner_queue_policy must be one of"):
        AsyncSettings(learner_queue_policy="drop_newest")
    with pytest.raises(ConfigError, match="multiple of rollout_fragment_length"):
        AsyncSettings(minibatch_size=70, rollout_fragment_length=50)
    with pytest.raises(ConfigError, match="num_env_runners must be an integer >= 0"):
        OnPolicySettings(num_env_runners=-1)
    with pytest.raises(ConfigError, match="exceeds the samples per iteration"):
        OnPolicySettings(minibatch_size=10_000)


def test_a_redefined_loop_setting_is_still_checked_by_the_loop(register, tmp_path):
    # PGHyperparameters redefines minibatch_size without a validator: the loop checks it.
    register(
        make_plugin(
            "pg",
            hyperparameters=PGHyperparameters,
            training_loop="on_policy",
            compute_loss=pg_loss,
        )
    )
    with pytest.raises(ConfigError, match="minibatch_size must be an integer >= 1"):
        Trainer(TrainConfig(algorithm="pg", out_dir=str(tmp_path), overrides={"minibatch_size": 0}))


def test_a_third_party_on_policy_algorithm_trains_and_improves(register, tmp_path):
    register(
        make_plugin(
            "pg",
            hyperparameters=PGHyperparameters,
            training_loop="on_policy",
            compute_loss=pg_loss,
        )
    )
    summary = train(
        TrainConfig(
            algorithm="pg",
            out_dir=str(tmp_path),
            stop_timesteps=20_000,
            progress=False,
            overrides={"learning_rate": 3e-3},
        )
    )
    # A random policy averages about 22 on CartPole.
    assert summary.timesteps_total >= 20_000 and summary.episode_return_mean > 40


def test_the_async_loop_trains_a_registered_algorithm_and_reports_its_queues(register, tmp_path):
    register(seqpg_plugin())
    overrides = SEQPG_OVERRIDES
    summary = train(
        TrainConfig(
            algorithm="seqpg",
            out_dir=str(tmp_path),
            stop_timesteps=1200,
            progress=False,
            overrides=overrides,
        )
    )
    assert summary.iterations == 3 and summary.timesteps_total == 1200
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for name in (
        "num_env_steps_trained",
        "env_steps_trained_per_s",
        "policy_lag_mean",
        "policy_lag_max",
        "learner_queue_size",
        "dropped_batches",
        "dropped_env_steps",
        "learner/policy_loss",
    ):
        assert name in rows[0], name
    trained = sum(int(r["num_env_steps_trained"]) for r in rows)
    # Everything sampled is trained (block policy) but what the last row left waiting: a
    # partial batch (< 160 rows) and at most max_requests_in_flight=2 updates in flight.
    last = rows[-1]
    assert int(last["learner_queue_size"]) == 0
    assert 1200 - 160 - 160 * int(last["updates_in_flight"]) < trained <= 1200
    assert all(int(r["dropped_batches"]) == 0 for r in rows)


def test_drop_oldest_counts_what_it_drops(register, tmp_path):
    def slow_loss(module, batch, fwd_out, ops):
        time.sleep(0.05)  # learners far slower than sampling
        return sequence_pg_loss(module, batch, fwd_out, ops)

    register(
        make_plugin(
            "slowpg", hyperparameters=AsyncSettings, training_loop="async", compute_loss=slow_loss
        )
    )
    overrides = {
        "rollout_fragment_length": 10,
        "num_envs_per_env_runner": 2,
        "train_batch_size": 20,
        "learner_queue_policy": "drop_oldest",
        "learner_queue_size": 1,
        "max_requests_in_flight": 1,
        "broadcast_interval": 50,
        "min_sample_timesteps_per_iteration": 2000,
    }
    train(
        TrainConfig(
            algorithm="slowpg",
            out_dir=str(tmp_path),
            stop_timesteps=2000,
            progress=False,
            overrides=overrides,
        )
    )
    with open(tmp_path / "metrics.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    dropped = int(row["dropped_env_steps"])
    trained = int(row["num_env_steps_trained"])
    assert int(row["dropped_batches"]) > 0 and dropped == 20 * int(row["dropped_batches"])
    # Nothing is lost silently: every sampled step is trained, dropped, or still waiting.
    waiting = 2000 - trained - dropped
    assert 0 <= waiting <= 20 * (1 + 1 + 1)  # a partial batch, the queue, one in flight


# Sequences --------------------------------------------------------------------------------
def test_rollout_to_sequences_lays_out_each_environment_in_order_with_next_obs():
    with EnvRunner("CartPole-v1", num_envs=3, seed=0) as runner:

        def policy(obs):
            n = len(obs)
            return {
                Columns.ACTIONS: np.zeros(n, dtype=np.int64),  # always left: short episodes
                Columns.ACTION_LOGP: np.zeros(n, np.float32),
                Columns.VF_PREDS: np.zeros(n, np.float32),
                Columns.ACTION_DIST_INPUTS: np.zeros((n, 2), np.float32),
            }

        rollout = runner.sample(policy, lambda obs: np.zeros(len(obs), np.float32), 25)
    batch = rollout.to_sequences()
    assert batch.count == 75
    for n in range(3):
        rows = slice(n * 25, (n + 1) * 25)
        np.testing.assert_array_equal(batch[Columns.OBS][rows], rollout.obs[:, n])
        np.testing.assert_array_equal(batch[Columns.NEXT_OBS][rows], rollout.next_obs[:, n])
    # Within an episode next_obs is the next step's obs; at an episode's end it is not the
    # reset observation but the final one (the pole far from upright).
    ended = np.flatnonzero(rollout.terminateds[:, 0])
    assert ended.size and ended[0] < 24
    t = ended[0]
    np.testing.assert_array_equal(rollout.next_obs[:t, 0], rollout.obs[1 : t + 1, 0])
    assert not np.array_equal(rollout.next_obs[t, 0], rollout.obs[t + 1, 0])
    assert abs(rollout.next_obs[t, 0][2]) > 0.2  # past CartPole's 12-degree limit


def _recording_learner(seen):
    def loss(module, batch, fwd_out, ops):
        seen.append(ops.to_numpy(batch["seq"]).copy())
        return {"total_loss": ops.mean(fwd_out[Columns.VF_PREDS]) * 0.0}

    learnerkit.register_algorithm(make_plugin("rec", compute_loss=loss), replace=True)
    learner = Learner(
        LearnerSpec(algorithm="rec", module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS))
    )
    learner.build()
    return learner


def _sequence_batch(num_sequences: int, length: int) -> SampleBatch:
    n = num_sequences * length
    return SampleBatch(
        {
            Columns.OBS: np.zeros((n, 4), np.float32),
            Columns.ACTIONS: np.zeros(n, np.int64),
            "seq": np.repeat(np.arange(num_sequences), length) * 100
            + np.tile(np.arange(length), num_sequences),
        }
    )


def test_updates_with_a_sequence_length_shuffle_whole_sequences():
    seen: list[np.ndarray] = []
    learner = _recording_learner(seen)
    learner.update(_sequence_batch(6, 5), minibatch_size=10, num_epochs=3, sequence_length=5)
    assert len(seen) == 9
    orders = []
    for minibatch in seen:
        sequences = minibatch.reshape(-1, 5)
        # Each sequence arrives whole and in order: ids k*100 + 0..4.
        np.testing.assert_array_equal(sequences % 100, np.tile(np.arange(5), (2, 1)))
        assert (sequences // 100 == sequences[:, :1] // 100).all()
        orders.extend(sequences[:, 0] // 100)
    assert sorted(orders[:6]) == list(range(6)) and orders[:6] != list(range(6))


def test_a_batch_of_partial_sequences_or_minibatch_is_refused():
    learner = _recording_learner([])
    with pytest.raises(BatchError, match="not a multiple of sequence_length=5"):
        learner.update(_sequence_batch(3, 5).slice(0, 12), sequence_length=5)
    with pytest.raises(ValueError, match="multiple of sequence_length"):
        learner.update(_sequence_batch(3, 5), minibatch_size=7, sequence_length=5)


def test_shards_keep_sequences_whole():
    batch = _sequence_batch(5, 4)
    shards = batch.shard(2, sequence_length=4)
    assert [s.count for s in shards] == [8, 8]
    np.testing.assert_array_equal(shards[1]["seq"][:4], [200, 201, 202, 203])


@pytest.mark.slow  # a training run of a second or more
def test_an_async_run_resumes_with_its_counters(register, tmp_path):
    register(seqpg_plugin())
    overrides = SEQPG_OVERRIDES
    config = TrainConfig(
        algorithm="seqpg",
        out_dir=str(tmp_path),
        stop_timesteps=800,
        progress=False,
        overrides=overrides,
    )
    train(config)
    resumed = train(attrs.evolve(config, stop_timesteps=1600, resume=str(tmp_path)))
    assert resumed.timesteps_total == 1600 and resumed.iterations == 4
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    updates = [int(r["num_updates_total"]) for r in rows]
    # The count goes on from the checkpoint's (it is not reset to 0). The first iteration
    # after the resume may finish no update (its sampling can outpace the learner), the run
    # as a whole does.
    assert updates == sorted(updates) and updates[1] > 0 and updates[3] > updates[1]
