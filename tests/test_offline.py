"""The offline loop: `learnerkit train bc --dataset ID` learns from a Minari dataset, streamed in
chunks, with the same run outputs as the other loops. Every dataset is recorded here, into a
private Minari store: nothing is downloaded."""

from __future__ import annotations

import csv
import json

import attrs
import numpy as np
import pytest
from conftest import make_plugin, run_learnerkit

import learnerkit
from learnerkit import Columns, ConfigError
from learnerkit.errors import DatasetError
from learnerkit.loops import OfflineSettings, TrainConfig, evaluate_checkpoint, train
from learnerkit.rollouts import datasets

CONTROLLER_ID = "cartpole/controller-v0"
METADATA = {
    "algorithm_name": "hand-written controller",
    "author": "learnerkit tests",
    "author_email": "tests@example.org",
    "code_permalink": "https://example.org/learnerkit/tests/test_offline.py",
    "description": "a PD controller on the pole angle",
}
# Small, fast BC runs: every test dataset holds a few thousand rows.
QUICK = {"evaluation_num_episodes": 0}


def controller(obs: np.ndarray) -> int:
    """Push toward where the pole is falling: balances CartPole-v1 for 500 steps."""
    return int(obs[2] + 0.5 * obs[3] > 0)


def noisy_controller(seed: int = 0):
    """The controller with one action in four random: episodes of varied, short lengths."""
    rng = np.random.default_rng(seed)
    return lambda obs: int(rng.integers(2)) if rng.random() < 0.25 else controller(obs)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A private local Minari store for this test."""
    path = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path


def record(dataset_id=CONTROLLER_ID, act=controller, episodes=10, env_id="CartPole-v1"):
    return datasets.record_dataset(
        env_id, act, num_episodes=episodes, dataset_id=dataset_id, seed=0, **METADATA
    )


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


# Datasets --------------------------------------------------------------------------------
def test_a_recorded_dataset_holds_its_episodes_spaces_and_minari_metadata(store):
    dataset = record(episodes=3)
    assert dataset.total_episodes == 3 and dataset.total_steps == 1500
    assert datasets.episode_returns(dataset) == [500.0, 500.0, 500.0]
    assert datasets.dataset_env_id(dataset) == "CartPole-v1"
    again = datasets.open_dataset(CONTROLLER_ID)  # by id, from the store
    assert again.action_space == dataset.action_space
    assert datasets.open_dataset(str(store / CONTROLLER_ID)).total_episodes == 3  # by path
    metadata = again.storage.metadata
    assert metadata["algorithm_name"] == METADATA["algorithm_name"]
    assert metadata["code_permalink"] == METADATA["code_permalink"]
    assert metadata["author"] == {METADATA["author"]}


def test_episodes_become_rows_with_the_observation_each_step_reached(store):
    dataset = record(act=noisy_controller(), episodes=2)
    episodes = datasets.read_episodes(dataset, [0, 1])
    batch = datasets.episodes_to_batch(episodes, dataset.action_space)
    first = episodes[0]
    t = len(first)
    assert batch.count == len(first) + len(episodes[1])
    assert batch[Columns.OBS].dtype == np.float32 and batch[Columns.ACTIONS].dtype == np.int64
    np.testing.assert_array_equal(batch[Columns.OBS][:t], first.observations[:-1])
    np.testing.assert_array_equal(batch[Columns.NEXT_OBS][:t], first.observations[1:])
    assert batch[Columns.TERMINATEDS][t - 1] and not batch[Columns.TERMINATEDS][: t - 1].any()
    only = datasets.episodes_to_batch(episodes, dataset.action_space, (Columns.OBS,))
    assert list(only) == [Columns.OBS]


# Learning --------------------------------------------------------------------------------
@pytest.mark.slow  # a training run of a second or more
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_bc_clones_a_recorded_policy_to_95_percent_of_its_return(store, tmp_path, framework):
    dataset = record(episodes=10)
    recorded = float(np.mean(datasets.episode_returns(dataset)))
    summary = train(
        TrainConfig(
            algorithm="bc",
            dataset=CONTROLLER_ID,
            framework=framework,
            out_dir=str(tmp_path / "run"),
            progress=False,
        )
    )
    assert summary.env == "CartPole-v1" and summary.dataset == CONTROLLER_ID
    assert summary.timesteps_total == 20 * dataset.total_steps  # num_epochs passes
    mean, _ = evaluate_checkpoint(str(tmp_path / "run"), num_episodes=10)
    print(f"\nBC ({framework}): recorded {recorded:.1f}, clone {mean:.1f} (greedy)")
    assert mean >= 0.95 * recorded


@pytest.mark.slow  # a training run of a second or more
def test_the_cli_trains_bc_on_a_dataset_and_evaluates_it(store, tmp_path):
    record(episodes=10)
    env = {"MINARI_DATASETS_PATH": str(store)}
    out = tmp_path / "run"
    args = ("-m", "learnerkit", "train", "bc", "--dataset", CONTROLLER_ID, "--out", str(out))
    proc = run_learnerkit(*args, "--quiet", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"bc on dataset {CONTROLLER_ID}" in proc.stdout and "rows trained" in proc.stdout
    proc = run_learnerkit("-m", "learnerkit", "evaluate", str(out), "--episodes", "5", env=env)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.rsplit(":", 1)[1]) >= 0.95 * 500


# Streaming -------------------------------------------------------------------------------
def test_chunks_bound_the_rows_held_and_every_row_is_trained_once_per_epoch(
    store, tmp_path, register, monkeypatch
):
    seen: list[np.ndarray] = []

    def recording_loss(module, batch, fwd_out, ops):
        seen.append(ops.to_numpy(batch[Columns.OBS]).copy())
        dist = module.action_dist(fwd_out[Columns.ACTION_DIST_INPUTS])
        loss = -ops.mean(dist.logp(batch[Columns.ACTIONS]))
        return {"total_loss": loss, "policy_loss": loss}

    register(_offline_plugin("rec", recording_loss))
    dataset = record(act=noisy_controller(), episodes=7)
    lengths = [len(e) for e in dataset.iterate_episodes()]
    chunks: list[tuple[int, int]] = []
    real = datasets.episodes_to_batch

    def spy(episodes, *args, **kwargs):
        batch = real(episodes, *args, **kwargs)
        chunks.append((len(episodes), batch.count))
        return batch

    monkeypatch.setattr(datasets, "episodes_to_batch", spy)
    overrides = {
        **QUICK,
        "dataset_chunk_episodes": 2,
        "train_batch_size": 16,
        "num_epochs": 1,
        "evaluation_interval": 3,
    }
    summary = train(
        TrainConfig(
            algorithm="rec",
            dataset=CONTROLLER_ID,
            out_dir=str(tmp_path / "run"),
            progress=False,
            overrides=overrides,
        )
    )
    # Four chunks of at most two episodes, never more rows than the two longest episodes.
    assert [n for n, _ in chunks] == [2, 2, 2, 1]
    assert max(rows for _, rows in chunks) <= sum(sorted(lengths)[-2:])
    assert all(len(minibatch) <= 16 for minibatch in seen)
    # Every row of the dataset once, in an order other than the dataset's.
    trained = np.concatenate(seen)
    expected = np.concatenate([e.observations[:-1] for e in dataset.iterate_episodes()])
    assert summary.timesteps_total == len(trained) == len(expected) == sum(lengths)
    np.testing.assert_array_equal(_sorted_rows(trained), _sorted_rows(expected))
    assert not np.array_equal(trained, expected)
    rows = _rows(tmp_path / "run")
    assert all(int(r["num_gradient_steps"]) <= 3 for r in rows)
    assert max(int(r["dataset_chunk_rows"]) for r in rows) == max(n for _, n in chunks)


def _sorted_rows(array: np.ndarray) -> np.ndarray:
    return array[np.lexsort(array.T[::-1])]


def _offline_plugin(name, loss, required_columns=(Columns.OBS, Columns.ACTIONS)):
    return make_plugin(
        name,
        hyperparameters=OfflineSettings,
        training_loop="offline",
        required_columns=required_columns,
        compute_loss=loss,
    )


# Outputs and resume ----------------------------------------------------------------------
@pytest.mark.slow  # a training run of a second or more
def test_a_run_writes_the_outputs_and_resumes_at_the_same_row(store, tmp_path):
    dataset = record(act=noisy_controller(), episodes=20)
    rows_total = dataset.total_steps
    overrides = {
        "dataset_chunk_episodes": 4,
        "train_batch_size": 32,
        "num_epochs": 2,
        "evaluation_interval": 10,
        "evaluation_num_episodes": 2,
    }
    out = tmp_path / "run"
    config = TrainConfig(
        algorithm="bc",
        dataset=CONTROLLER_ID,
        out_dir=str(out),
        progress=False,
        overrides=overrides,
        stop_timesteps=rows_total - 7,  # stops inside a chunk, between minibatches
    )
    first = train(config)
    assert first.timesteps_total == rows_total - 7
    written = json.loads((out / "summary.json").read_text())
    assert written["dataset"] == CONTROLLER_ID and written["timesteps_total"] == rows_total - 7
    assert written["episodes_total"] == 2 * first.iterations  # evaluation episodes
    assert (out / "learning_curve.png").stat().st_size > 0
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    rows = _rows(out)
    assert 0 < float(rows[-1]["epoch"]) < 1  # stopped inside the first epoch
    assert {"evaluation/episode_return_mean", "learner/policy_loss", "epoch"} <= set(rows[0])

    resumed = train(attrs.evolve(config, stop_timesteps=None, resume=str(out)))
    assert resumed.timesteps_total == 2 * rows_total  # the rest of the two epochs
    iterations = [int(r["iteration"]) for r in _rows(out)]
    assert iterations == list(range(1, resumed.iterations + 1))
    assert float(_rows(out)[-1]["epoch"]) == 2.0
    mean, returns = evaluate_checkpoint(str(out), num_episodes=2)
    assert len(returns) == 2 and mean > 0


@pytest.mark.slow  # a training run of a second or more
def test_stop_reward_is_reached_on_evaluation_episodes(store, tmp_path):
    record(episodes=10)
    summary = train(
        TrainConfig(
            algorithm="bc",
            dataset=CONTROLLER_ID,
            out_dir=str(tmp_path / "run"),
            progress=False,
            stop_reward=400,
            overrides={"evaluation_interval": 50, "evaluation_num_episodes": 50},
        )
    )
    # The window is full after two evaluations of 50 episodes.
    assert summary.reached_stop_reward and summary.episodes_total >= 100
    assert summary.timesteps_total < 20 * 5000


# Errors ----------------------------------------------------------------------------------
def test_an_unknown_dataset_lists_the_local_ones_and_how_to_get_one(store, tmp_path):
    config = TrainConfig(algorithm="bc", dataset="cartpole/nothing-v0", out_dir=str(tmp_path))
    with pytest.raises(DatasetError, match=r"holds no datasets.*minari download cartpole/nothing"):
        train(config)
    record()
    record("other-v1", episodes=1)
    with pytest.raises(DatasetError) as error:
        train(config)
    message = str(error.value)
    assert f"local datasets are {CONTROLLER_ID}, other-v1" in message
    assert str(store) in message and "MINARI_DATASETS_PATH" in message
    assert "`minari download cartpole/nothing-v0`" in message
    assert isinstance(error.value, ConfigError)


def test_dataset_and_loop_must_go_together(store, tmp_path):
    record(episodes=1)
    with pytest.raises(
        ConfigError, match=r"learns by sampling environments.*installed: 'offline' \(bc\)"
    ):
        train(TrainConfig(algorithm="ppo", dataset=CONTROLLER_ID, out_dir=str(tmp_path)))
    with pytest.raises(DatasetError, match=r"learns from a dataset.*--dataset ID_OR_PATH"):
        train(TrainConfig(algorithm="bc", out_dir=str(tmp_path)))
    proc = run_learnerkit(
        "-m",
        "learnerkit",
        "train",
        "ppo",
        "--dataset",
        CONTROLLER_ID,
        env={"MINARI_DATASETS_PATH": str(store)},
    )
    assert proc.returncode == 2 and "drop --dataset" in proc.stderr


def test_a_dataset_that_does_not_fit_the_environment_names_both(store, tmp_path):
    record(
        "pendulum/still-v0",
        act=lambda obs: np.zeros(1, np.float32),
        episodes=1,
        env_id="Pendulum-v1",
    )
    with pytest.raises(DatasetError) as error:
        train(
            TrainConfig(
                algorithm="bc",
                dataset="pendulum/still-v0",
                env_id="CartPole-v1",
                out_dir=str(tmp_path),
            )
        )
    message = str(error.value)
    assert "dataset 'pendulum/still-v0' has observation space Box([-1. -1. -8.]" in message
    assert "action space Box(-2.0, 2.0, (1,)" in message
    assert "environment 'CartPole-v1' has observation space Box(" in message
    assert "action space Discrete(2)" in message


def test_an_algorithm_needing_columns_a_dataset_lacks_is_refused(store, tmp_path, register):
    def loss(module, batch, fwd_out, ops):
        return {"total_loss": ops.mean(batch[Columns.ADVANTAGES])}

    register(_offline_plugin("needsadv", loss, (Columns.OBS, Columns.ADVANTAGES)))
    record(episodes=1)
    with pytest.raises(DatasetError, match=r"needs columns \['advantages'\].*its episodes give"):
        train(TrainConfig(algorithm="needsadv", dataset=CONTROLLER_ID, out_dir=str(tmp_path)))


def test_offline_settings_are_validated_and_the_loop_is_registered():
    assert learnerkit.get_training_loop("offline").settings is OfflineSettings
    assert learnerkit.get_algorithm("bc").training_loop == "offline"
    with pytest.raises(ConfigError, match="dataset_chunk_episodes must be an integer >= 1"):
        OfflineSettings(dataset_chunk_episodes=0)
    with pytest.raises(ConfigError, match="evaluation_num_episodes must be an integer >= 0"):
        OfflineSettings(evaluation_num_episodes=-1)
    with pytest.raises(DatasetError, match="not in Minari's form"):
        datasets.record_dataset("CartPole-v1", controller, num_episodes=1, dataset_id="no-version")


@pytest.mark.ray
def test_ray_learners_each_read_their_own_share_of_every_chunk(store, tmp_path, monkeypatch):
    dataset = record(episodes=11)

    def driver_reads(*args, **kwargs):
        raise AssertionError("the driver read episodes: the learners should read them")

    monkeypatch.setattr(datasets, "read_episodes", driver_reads)  # here, not in the learners
    # By its directory: the shared Ray session's workers started before this test set
    # MINARI_DATASETS_PATH, so they would not find the id in this test's store.
    summary = train(
        TrainConfig(
            algorithm="bc",
            dataset=str(store / CONTROLLER_ID),
            num_learners=2,
            out_dir=str(tmp_path / "run"),
            progress=False,
            overrides={"num_epochs": 10, "evaluation_num_episodes": 5},
        )
    )
    # The one chunk's 11 episodes are dealt out 6 and 5: each learner trains on 2500 rows
    # and the 500 left over are dropped, but counted, so each epoch is still one pass.
    assert summary.timesteps_total == 10 * dataset.total_steps
    rows = _rows(tmp_path / "run")
    assert int(rows[0]["dataset_chunk_rows"]) == 5500
    assert sum(int(r["num_rows_trained"]) for r in rows) == 10 * 5000
    assert sum(int(r["num_rows_dropped"]) for r in rows) == 10 * 500
    assert summary.episode_return_mean >= 0.95 * 500
