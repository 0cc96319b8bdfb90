"""A recurrent run (``use_lstm``, here reading the previous action and reward) evaluated and
recorded: ``learnerkit evaluate`` and ``learnerkit collect`` carry its state from step to
step and reset it at each episode's start, so the memory task scores as in training (a
policy whose state were lost would score ~9.5 of 19), and the previous reward reaches the
policy."""

from __future__ import annotations

import numpy as np
import pytest
from memory_task import MEMORY, PPO_MEMORY_SETTINGS, SMALL_LSTM

from learnerkit import ConfigError
from learnerkit.loops import TrainConfig, collect_dataset, evaluate_checkpoint, load_policy, train
from learnerkit.rollouts import datasets

CHANCE = 9.5

pytestmark = pytest.mark.slow  # one training run (~4 s), shared by the tests here


@pytest.fixture(scope="module")
def memory_run(tmp_path_factory):
    """PPO with an LSTM that reads the previous action and reward, trained on the memory
    task to a mean of 17 (shared by the tests here)."""
    out = tmp_path_factory.mktemp("memory")
    summary = train(
        TrainConfig(
            algorithm="ppo",
            env_id=MEMORY,
            seed=0,
            out_dir=str(out),
            stop_reward=17.0,
            stop_timesteps=12_000,
            progress=False,
            overrides=PPO_MEMORY_SETTINGS,
            model_config={**SMALL_LSTM, "lstm_use_prev_action": True, "lstm_use_prev_reward": True},
        )
    )
    assert summary.reached_stop_reward, summary.episode_return_mean
    return out


def test_evaluating_a_module_that_reads_the_previous_reward_carries_its_state(memory_run):
    mean, returns = evaluate_checkpoint(str(memory_run), num_episodes=5)
    assert mean > 15.0 > CHANCE, returns


def test_the_previous_reward_reaches_the_policy(memory_run):
    policy = load_policy(str(memory_run), explore=True).policy
    obs = np.zeros((1, 2), np.float32)
    outputs = []
    for reward in (1.0, -1.0):
        policy.reset()
        policy(obs)
        policy.reward(np.array([reward], np.float32))
        outputs.append(policy(obs)["action_dist_inputs"])
    assert not np.allclose(outputs[0], outputs[1])
    # A step without the reward of the last one is refused, not taken with a stale reward.
    with pytest.raises(ConfigError, match=r"call policy.reward\(rewards\) after each env step"):
        policy(obs)


def test_collect_records_a_recurrent_run_episode_by_episode(memory_run, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    summary = collect_dataset(
        str(memory_run),
        num_episodes=3,
        dataset_id="memory/ppo-lstm-v0",
        greedy=True,
        author="Ada",
        author_email="ada@example.org",
        code_permalink="https://example.org/learnerkit",
    )
    dataset = datasets.open_dataset("memory/ppo-lstm-v0")
    assert dataset.total_episodes == 3
    returns = datasets.episode_returns(dataset)
    assert summary.episode_return_mean == pytest.approx(np.mean(returns))
    assert min(returns) > 15.0 > CHANCE, returns
