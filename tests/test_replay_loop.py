"""The replay loop: declared like the other loops, its settings validated, fragments into a
buffer and minibatches out at ``training_intensity`` after ``learning_starts``, checkpoints
with and without the buffer, refusals that name the fix, and (Ray) two env runners acting in
numpy and a Ray learner sending priorities back."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import make_plugin

import learnerkit
from learnerkit import Columns, ConfigError, PluginError, ReplaySettings
from learnerkit.loops import TrainConfig, train
from learnerkit.rollouts import EnvRunner

# Small and quick: 4 envs x 8 steps per fragment, iterations of 256 env steps.
QUICK = {
    "num_envs_per_env_runner": 4,
    "rollout_fragment_length": 8,
    "min_sample_timesteps_per_iteration": 256,
    "learning_starts": 300,
    "replay_buffer_capacity": 5_000,
    "training_intensity": 8.0,
    "train_batch_size": 32,
    "target_network_update_freq": 200,
}


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))


def quick_run(out: Path, stop: int, resume: str | None = None, **overrides):
    config = TrainConfig(
        algorithm="dqn",
        env_id="CartPole-v1",
        stop_timesteps=stop,
        overrides={**QUICK, **overrides},
        out_dir=str(out),
        progress=False,
        resume=resume,
    )
    return train(config)


def test_the_replay_loop_is_declared_like_the_others_and_asks_only_for_actions():
    info = learnerkit.get_training_loop("replay")
    assert info.package == "learnerkit" and info.settings is ReplaySettings
    assert info.policy_outputs == (Columns.ACTIONS,)
    assert not info.multi_agent
    assert learnerkit.get_algorithm("dqn").training_loop == "replay"


def test_training_intensity_is_rows_sampled_per_env_step_with_rllibs_natural_default():
    assert ReplaySettings(training_intensity=64, train_batch_size=32).updates_per_env_step == 2
    natural = ReplaySettings(num_envs_per_env_runner=4, rollout_fragment_length=8)
    assert natural.updates_per_env_step == pytest.approx(1 / 32)  # one step per fragment
    two_runners = ReplaySettings(num_env_runners=2, num_envs_per_env_runner=4)
    assert two_runners.updates_per_env_step == pytest.approx(1 / (4 * 4 * 2))


def test_runners_record_only_what_the_loop_asks_for():
    with EnvRunner("CartPole-v1", num_envs=2, seed=0) as runner:

        def policy(obs):
            return {Columns.ACTIONS: np.zeros(len(obs), np.int64)}

        rollout = runner.sample(policy, None, 5, outputs=(Columns.ACTIONS,))
    assert rollout.actions.shape == (5, 2) and rollout.vf_preds is None
    assert rollout.next_values is None
    with pytest.raises(learnerkit.BatchError, match=r"computes GAE.*policy_outputs"):
        rollout.to_sample_batch(gamma=0.99, lambda_=0.95)


def test_the_loop_trains_after_learning_starts_at_the_training_intensity(tmp_path):
    # DQN's default prioritized replay, its importance exponent annealed over the run.
    summary = quick_run(tmp_path / "run", 1024, prioritized_replay_beta_annealing_timesteps=1024)
    assert summary.timesteps_total == 1024
    table = rows(tmp_path / "run")
    steps = [int(r["num_gradient_steps"]) for r in table]
    assert steps[0] == 0  # 256 rows < learning_starts
    # 8 rows per env step / 32 per minibatch: one gradient step per 4 env steps.
    assert sum(steps) == pytest.approx((1024 - 320) / 4, abs=8)
    last = table[-1]
    assert float(last["learner/epsilon"]) < 1.0
    assert int(float(last["learner/target_updates_total"])) >= 2
    for name in ("learner/total_loss", "learner/q_mean", "learner/td_error_mean"):
        assert np.isfinite(float(last[name]))
    assert "learner/per_row" not in last
    for name in ("sample_time_s", "buffer_time_s", "learn_time_s"):
        assert float(last[name]) >= 0
    betas = [float(r["prioritized_replay_beta"]) for r in table]
    assert betas == sorted(betas) and betas[-1] == pytest.approx(1.0)
    assert betas[0] == pytest.approx(0.4 + 0.6 * 256 / 1024)


@pytest.mark.slow  # two runs (three with the buffer)
@pytest.mark.parametrize("store", [True, False], ids=["with-buffer", "without-buffer"])
def test_a_resumed_run_continues_with_or_without_its_buffer(tmp_path, store):
    out = tmp_path / "run"
    # The prioritized buffer's state round trip with it; uniform replay without it.
    quick_run(out, 768, store_buffer_in_checkpoints=store, prioritized_replay=store)
    saved = (out / "checkpoint" / "loop_state.npz").exists()
    assert saved == store
    before = rows(out)
    summary = quick_run(out, 1280, resume=str(out))
    assert summary.timesteps_total == 1280
    after = rows(out)[len(before) :]
    total = int(before[-1]["num_gradient_steps_total"])
    if store:
        # The buffer came back: it keeps growing, and training goes on at once.
        assert int(after[0]["replay_buffer_size"]) > int(before[-1]["replay_buffer_size"])
        assert int(after[0]["num_gradient_steps"]) > 0
    else:
        # An empty buffer refills to learning_starts before training again.
        assert int(after[0]["replay_buffer_size"]) < 300
        assert int(after[0]["num_gradient_steps"]) == 0
        assert int(after[1]["num_gradient_steps"]) > 0
    assert int(after[-1]["num_gradient_steps_total"]) > total  # counters carry on
    if store:
        # With its buffer (pending n-step windows included), the runners' generators and
        # envs, a resumed run is the uninterrupted one, bit for bit (issue 21 §3).
        whole = tmp_path / "whole"
        quick_run(whole, 1280, store_buffer_in_checkpoints=True, prioritized_replay=True)
        timings = {"time_total_s", "env_steps_per_s", "sample_time_s", "buffer_time_s"}
        timings |= {"learn_time_s", "iteration_time_s"}

        def measured(table):
            return [{k: v for k, v in r.items() if k not in timings} for r in table]

        assert measured(rows(out)) == measured(rows(whole))
        with (
            np.load(out / "checkpoint" / "learner_state.npz") as resumed,
            np.load(whole / "checkpoint" / "learner_state.npz") as uninterrupted,
        ):
            assert resumed.files == uninterrupted.files
            for name in resumed.files:
                np.testing.assert_array_equal(resumed[name], uninterrupted[name])


def test_a_pettingzoo_env_is_refused_naming_the_loops_that_take_one():
    with pytest.raises(ConfigError, match=r"'replay' loop.*gymnasium envs only.*multi_agent"):
        train(TrainConfig(algorithm="dqn", env_id="pettingzoo:multi_agent_envs:coordination"))


def test_prioritized_replay_without_per_row_td_errors_is_refused_with_the_fix(register, tmp_path):
    def cloning_loss(module, batch, fwd_out, ops):
        dist = module.action_dist(fwd_out[Columns.ACTION_DIST_INPUTS])
        return {"total_loss": -ops.mean(dist.logp(batch[Columns.ACTIONS]))}

    register(
        make_plugin(
            "replaycloning",
            hyperparameters=ReplaySettings,
            training_loop="replay",
            compute_loss=cloning_loss,
        )
    )
    config = TrainConfig(
        algorithm="replaycloning",
        stop_timesteps=1024,
        overrides={
            "prioritized_replay": True,
            "learning_starts": 64,
            "min_sample_timesteps_per_iteration": 256,
        },
        out_dir=str(tmp_path / "run"),
        progress=False,
    )
    with pytest.raises(PluginError, match=r"no per-row 'td_error'.*prioritized_replay=False"):
        train(config)


@pytest.mark.ray
def test_two_ray_env_runners_act_in_numpy_and_a_ray_learner_sends_priorities_back(tmp_path):
    seen = []

    def check_runners(ctx):
        import ray

        if not seen:
            seen.extend(ray.get([a.imported_frameworks.remote() for a in ctx.runners.actors]))

    config = TrainConfig(
        algorithm="dqn",
        num_learners=1,  # with the runners' 2 x 0.5, the 2 CPUs the tests' Ray has
        stop_timesteps=1024,
        overrides={
            **QUICK,
            "num_env_runners": 2,
            "num_cpus_per_env_runner": 0.5,
            "prioritized_replay": True,
        },
        out_dir=str(tmp_path / "run"),
        progress=False,
    )
    summary = train(config, on_iteration=check_runners)
    assert summary.timesteps_total >= 1024
    assert seen == [[], []]  # the Q-network's numpy copy: no torch in the runners
    table = rows(tmp_path / "run")
    assert sum(int(r["num_gradient_steps"]) for r in table) > 100  # ~(1024 - 300) / 4
    assert int(table[-1]["env_runner_restarts"]) == 0
    # Priorities came back from the learner actor: the loop would have stopped otherwise.
    assert np.isfinite(float(table[-1]["learner/td_error_mean"]))
