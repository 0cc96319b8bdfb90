"""Atari games by id (``ALE/Pong-v5``, with the ``atari`` extra) get the standard
preprocessing by default: 84x84x4 uint8 frames, rewards clipped for training while the
returns reported stay the env's; it is switchable, its settings are checked, recorded with
the run, and the checkpoint's policy is rebuilt with them."""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest

from learnerkit import Columns, ConfigError
from learnerkit.loops import TrainConfig, load_policy, train
from learnerkit.rollouts import AtariSettings, EnvRunner, atari_settings


def _random_policy(n_actions):
    rng = np.random.default_rng(0)

    def policy(obs):
        n = len(obs)
        return {
            Columns.ACTIONS: rng.integers(n_actions, size=n),
            Columns.ACTION_LOGP: np.zeros(n, np.float32),
            Columns.VF_PREDS: np.zeros(n, np.float32),
            Columns.ACTION_DIST_INPUTS: np.zeros((n, n_actions), np.float32),
        }

    return policy


def test_an_ale_id_is_made_by_id_with_stacked_84x84_grey_frames():
    pytest.importorskip("ale_py")
    with EnvRunner("ALE/Pong-v5", num_envs=2, seed=0, atari=AtariSettings()) as runner:
        assert runner.observation_space.shape == (84, 84, 4)
        rollout = runner.sample(_random_policy(6), lambda obs: np.zeros(len(obs)), 8)
    assert rollout.obs.dtype == np.uint8 and rollout.obs.shape == (8, 2, 84, 84, 4)
    assert rollout.obs.nbytes == 8 * 2 * 84 * 84 * 4  # a quarter of float32's 4 bytes a pixel
    # The stack's newest frame is the last channel: consecutive steps share frames.
    np.testing.assert_array_equal(rollout.obs[1, :, :, :, 2], rollout.obs[0, :, :, :, 3])


def test_clipped_rewards_are_trained_on_and_the_envs_own_returns_reported():
    with EnvRunner("learnerkit/PixelGrid-v0", num_envs=4, seed=0, clip_rewards=True) as runner:
        rollout = runner.sample(_random_policy(4), lambda obs: np.zeros(len(obs)), 64)
        returns = [r for r, _ in runner.pop_episode_stats()]
    assert set(np.unique(rollout.rewards)) <= {-1.0, 1.0}
    # A reached goal pays 0.95 after -0.05 a step: fractional returns, not sums of signs.
    assert any(r != round(r) for r in returns)


@pytest.mark.parametrize(
    ("env_id", "given", "expected"),
    [
        ("ALE/Pong-v5", True, AtariSettings()),
        ("ALE/Pong-v5", False, None),
        (
            "ALE/Breakout-v5",
            {"terminal_on_life_loss": True},
            AtariSettings(terminal_on_life_loss=True),
        ),
        ("CartPole-v1", True, None),
    ],
)
def test_the_preprocessing_is_on_for_ale_ids_and_switchable(env_id, given, expected):
    assert atari_settings(env_id, given) == expected


@pytest.mark.parametrize(
    ("env_id", "given", "says"),
    [
        ("CartPole-v1", {"frame_stack": 2}, "not an Atari game"),
        ("ALE/Pong-v5", {"frame_stacks": 2}, "unknown atari preprocessing setting"),
        ("ALE/Pong-v5", {"frame_skip": 0}, "frame_skip must be an integer >= 1"),
    ],
)
def test_bad_preprocessing_settings_are_config_errors(env_id, given, says):
    with pytest.raises(ConfigError, match=says):
        atari_settings(env_id, given)


@pytest.mark.slow  # a training run and its resume
def test_a_run_records_its_preprocessing_and_is_rebuilt_and_resumed_with_it(tmp_path):
    pytest.importorskip("ale_py")
    summary = train(
        TrainConfig(
            algorithm="ppo",
            env_id="ALE/Pong-v5",
            atari_preprocessing={"frame_stack": 2},
            stop_timesteps=32,
            out_dir=str(tmp_path),
            progress=False,
            overrides={
                "num_envs_per_env_runner": 2,
                "rollout_fragment_length": 16,
                "minibatch_size": 16,
                "num_epochs": 1,
            },
        )
    )
    recorded = json.loads((tmp_path / "config.json").read_text())["atari_preprocessing"]
    assert recorded == {**attrs.asdict(AtariSettings()), "frame_stack": 2}
    trained = load_policy(summary.checkpoint)
    assert trained.observation_space.shape == (84, 84, 2)
    assert trained.atari == AtariSettings(frame_stack=2)
    # Resumed, the run keeps its 2-frame stack (4 frames would not fit its conv weights).
    resumed = train(TrainConfig(resume=str(tmp_path), stop_timesteps=64, progress=False))
    assert resumed.timesteps_total == 64
