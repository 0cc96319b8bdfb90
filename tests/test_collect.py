"""`learnerkit collect`: a trained policy, recorded as a Minari dataset that carries Minari's
metadata and the environment's own observations. Every dataset goes to a private store."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import run_learnerkit

from learnerkit.errors import DatasetError
from learnerkit.loops import TrainConfig, collect_dataset, load_policy, train
from learnerkit.rollouts import datasets

SMALL = {"rollout_fragment_length": 32, "num_epochs": 2}
PERMALINK = "https://example.org/learnerkit/commit/0123456789abcdef"
METADATA = {"author": "Ada", "author_email": "ada@example.org", "code_permalink": PERMALINK}


@pytest.fixture
def store(tmp_path, monkeypatch):
    path = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    """A briefly trained PPO run, observations normalised (shared by the tests here)."""
    out = tmp_path_factory.mktemp("ppo")
    train(
        TrainConfig(
            stop_timesteps=2048,
            out_dir=str(out),
            progress=False,
            overrides={**SMALL, "normalize_observations": True},
        )
    )
    return out


def test_collect_records_a_trained_policy_with_minari_metadata(store, ppo_run):
    summary = collect_dataset(
        str(ppo_run),
        num_episodes=3,
        dataset_id="cartpole/ppo-v0",
        **METADATA,
    )
    assert summary.episodes == 3 and summary.env == "CartPole-v1"
    dataset = datasets.open_dataset("cartpole/ppo-v0")
    assert dataset.total_episodes == 3 and dataset.total_steps == summary.steps
    env = gym.make("CartPole-v1")
    assert dataset.observation_space == env.observation_space
    assert dataset.action_space == env.action_space
    metadata = dataset.storage.metadata
    assert metadata["algorithm_name"] == "learnerkit-ppo"
    assert metadata["code_permalink"] == PERMALINK
    assert metadata["author"] == {"Ada"} and metadata["author_email"] == {"ada@example.org"}
    assert "ppo (torch, trained by learnerkit)" in metadata["description"]
    assert datasets.dataset_env_id(dataset) == "CartPole-v1"
    returns = datasets.episode_returns(dataset)
    assert summary.episode_return_mean == pytest.approx(np.mean(returns))


@pytest.mark.filterwarnings("ignore:`author")
def test_the_policy_sees_normalised_observations_and_the_dataset_raw_ones(store, ppo_run):
    trained = load_policy(str(ppo_run))
    raw = np.array([[0.5, -0.5, 0.1, -0.1]], np.float32)
    assert not np.allclose(trained.normalize(raw), raw)  # the run did normalise
    # Minari asks for what lets others trust a shared dataset; collect passes its warnings on.
    with pytest.warns(UserWarning, match="`code_permalink` is set to None"):
        collect_dataset(str(ppo_run), num_episodes=2, dataset_id="cartpole/greedy-v0", greedy=True)
    dataset = datasets.open_dataset("cartpole/greedy-v0")
    env = gym.make("CartPole-v1")
    for seed, episode in enumerate(dataset.iterate_episodes()):
        # Replaying the recorded actions reproduces the recorded observations: they are the
        # environment's own, not normalised ones.
        obs, _ = env.reset(seed=seed)
        np.testing.assert_array_equal(episode.observations[0], obs)
        for t, action in enumerate(episode.actions):
            obs, *_ = env.step(int(action))
            np.testing.assert_array_equal(episode.observations[t + 1], obs)
        # The greedy actions are the policy's on normalised observations.
        greedy = trained.policy(trained.normalize(episode.observations[:-1]))["actions"]
        np.testing.assert_array_equal(greedy, episode.actions)


@pytest.mark.slow  # a training run of a second or more
def test_the_cli_collects_into_the_store(store, ppo_run):
    proc = run_learnerkit(
        "-m",
        "learnerkit",
        "collect",
        str(ppo_run),
        "--episodes",
        "2",
        "--dataset-id",
        "cartpole/cli-v0",
        "--greedy",
        "--code-permalink",
        PERMALINK,
        env={"MINARI_DATASETS_PATH": str(store)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "recorded 2 episodes" in proc.stdout
    assert "learnerkit train bc --dataset cartpole/cli-v0" in proc.stdout
    assert datasets.local_dataset_ids() == ["cartpole/cli-v0"]


def test_an_existing_or_malformed_dataset_id_is_refused_before_recording(store, ppo_run):
    collect_dataset(str(ppo_run), num_episodes=1, dataset_id="taken-v0", **METADATA)
    with pytest.raises(DatasetError, match="'taken-v0' already exists"):
        collect_dataset(str(ppo_run), num_episodes=1, dataset_id="taken-v0")
    with pytest.raises(DatasetError, match=r"not in Minari's form \[NAMESPACE/\]NAME-vVERSION"):
        collect_dataset(str(ppo_run), num_episodes=1, dataset_id="cartpole/ppo")
