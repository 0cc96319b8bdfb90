"""Exact resume (issue 21 §3): `learnerkit train ppo` stopped and resumed with `--resume`
trains as the uninterrupted run, bit for bit: checkpoints hold the learner's shuffling
generator, the env runners' action-sampling generators, and their envs mid-episode
(``EnvRunner.get_env_state``), or where an env holds more than plain data, the
generators its resets draw from."""

from __future__ import annotations

import csv
import json
import logging

import gymnasium
import numpy as np
import pytest

from learnerkit.cli import main
from learnerkit.rollouts import EnvRunner

# Columns that measure time, which no two runs share.
TIMINGS = {"time_total_s", "env_steps_per_s", "sample_time_s", "learn_time_s"}


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _arrays(run_dir):
    with np.load(run_dir / "checkpoint" / "learner_state.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.mark.slow  # three short training runs, about 3 s
def test_ppo_stopped_and_resumed_reproduces_the_uninterrupted_run_bitwise(tmp_path):
    config = tmp_path / "small.json"
    config.write_text(json.dumps({"rollout_fragment_length": 32, "num_epochs": 2}))
    base = ["train", "ppo", "--quiet", "--seed", "3", "--config", str(config)]
    base += ["--num-env-runners", "0"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main([*base, "--stop-timesteps", "1024", "--out", str(whole)]) == 0
    assert main([*base, "--stop-timesteps", "512", "--out", str(parts)]) == 0
    assert main(["train", "--quiet", "--resume", str(parts), "--stop-timesteps", "1024"]) == 0

    expected, got = _rows(whole), _rows(parts)
    assert [r["iteration"] for r in got] == ["1", "2", "3", "4"]
    for want, row in zip(expected, got, strict=True):
        assert {k: v for k, v in row.items() if k not in TIMINGS} == {
            k: v for k, v in want.items() if k not in TIMINGS
        }
    # Weights, optimizer state, generators and counters: every byte of the learner state.
    want, have = _arrays(whole), _arrays(parts)
    assert set(want) == set(have)
    for name in want:
        np.testing.assert_array_equal(have[name], want[name], err_msg=name)


def test_a_cartpole_captured_mid_episode_steps_on_as_the_original(tmp_path):
    def make():
        return EnvRunner("CartPole-v1", num_envs=3, seed=5)

    def policy(obs):
        return {"actions": (obs[:, 2] > 0).astype(np.int64)}

    with make() as original, make() as copy:
        original.sample(policy, None, 30, outputs=("actions",))
        # Another history than the original's: the restored state replaces it.
        copy.sample(policy, None, 7, outputs=("actions",))
        assert copy.set_env_state(original.get_env_state()) is None
        a = original.sample(policy, None, 40, outputs=("actions",))
        b = copy.sample(policy, None, 40, outputs=("actions",))
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.rewards, b.rewards)
        assert original.pop_episode_stats() == copy.pop_episode_stats()


class _Engine:
    """State an env keeps outside plain data (a physics engine's, say)."""


class _EngineEnv(gymnasium.Env):
    observation_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def __init__(self):
        self.engine = _Engine()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), {}

    def step(self, action):
        obs = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return obs, 1.0, bool(obs[0] > 0.9), False, {}


@pytest.fixture
def engine_env():
    gymnasium.register("EngineEnv-v0", entry_point=_EngineEnv, max_episode_steps=20)
    yield "EngineEnv-v0"
    gymnasium.registry.pop("EngineEnv-v0")


def test_an_env_holding_more_than_plain_data_restarts_from_its_saved_generators(engine_env):
    def policy(obs):
        return {"actions": np.zeros(len(obs), dtype=np.int64)}

    with EnvRunner(engine_env, num_envs=2, seed=1) as runner:
        runner.sample(policy, None, 15, outputs=("actions",))
        state = runner.get_env_state()
    assert state["envs"] is None and "engine is a" in state["why"]
    samples = []
    for seed in (7, 8):  # built apart, restored alike: they reset from the saved generators
        with EnvRunner(engine_env, num_envs=2, seed=seed) as copy:
            assert "engine is a" in copy.set_env_state(state)
            samples.append(copy.sample(policy, None, 10, outputs=("actions",)).obs)
    np.testing.assert_array_equal(samples[0], samples[1])


@pytest.mark.slow  # two training runs of an iteration each
def test_a_resume_that_cannot_be_exact_says_why(tmp_path, engine_env, caplog):
    from learnerkit.loops import TrainConfig, train

    small = {"rollout_fragment_length": 16, "num_envs_per_env_runner": 2, "minibatch_size": 16}
    config = TrainConfig(
        env_id=engine_env,
        stop_timesteps=32,
        out_dir=str(tmp_path),
        progress=False,
        overrides=small,
    )
    train(config)
    with caplog.at_level(logging.WARNING, logger="learnerkit"):
        train(TrainConfig(stop_timesteps=64, resume=str(tmp_path), progress=False))
    assert "env runner 0 does not continue exactly" in caplog.text
    assert "engine is a" in caplog.text
