"""Offline datasets in Minari's format: find them, stream their episodes as SampleBatches,
and record new ones.

A dataset is named by a Minari dataset id in the local Minari store (the directory
``MINARI_DATASETS_PATH`` names, else ``~/.minari/datasets``), or by the path of a dataset
directory (the one holding ``data/``, or ``data/`` itself); an existing path wins over an
id. Episodes are read by position, a chunk at a time (``read_episodes``), so a loop never
holds more than a chunk of them. Minari stores each episode's T steps with T + 1
observations: step t's observation is ``observations[t]`` and the one it reached
``observations[t + 1]`` (the final one at the end), which become ``obs`` and ``new_obs``.

Framework-free, and Minari (with h5py) is imported only inside these functions, so that
importing learnerkit or listing plugins stays light (``pip install learnerkit[offline]``
brings it).
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from learnerkit._batch import Columns, MultiAgentBatch, SampleBatch, ShardedBatch
from learnerkit.errors import DatasetError

__all__ = [
    "DATASET_COLUMNS",
    "ChunkShards",
    "dataset_env_id",
    "describe_spaces",
    "episode_lengths",
    "episode_returns",
    "episodes_to_batch",
    "local_dataset_ids",
    "local_store",
    "open_dataset",
    "read_episodes",
    "record_dataset",
]

STORE_ENV = "MINARI_DATASETS_PATH"
# Minari's dataset id, [NAMESPACE/]NAME-vVERSION; the version is required to create one.
_DATASET_ID = re.compile(r"(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+?-v\d+")
# The columns an offline batch can hold, all made from a Minari episode.
DATASET_COLUMNS = (
    Columns.OBS,
    Columns.NEXT_OBS,
    Columns.ACTIONS,
    Columns.REWARDS,
    Columns.TERMINATEDS,
    Columns.TRUNCATEDS,
)


def _minari() -> Any:
    try:
        import minari
    except ImportError as exc:
        raise DatasetError(
            "offline datasets need Minari: pip install 'learnerkit[offline]' (or "
            f"'minari[hdf5]') ({exc})"
        ) from exc
    return minari


def local_store() -> Path:
    """The local Minari store: ``MINARI_DATASETS_PATH``, else ``~/.minari/datasets``."""
    return Path(os.environ.get(STORE_ENV) or Path("~/.minari/datasets").expanduser())


def local_dataset_ids() -> list[str]:
    """The ids of the datasets in the local store, sorted (none if it does not exist)."""
    if not local_store().is_dir():
        return []
    minari = _minari()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari warns about every misconfigured directory
        return sorted(minari.list_local_datasets())


def _unknown(name: str) -> DatasetError:
    store = local_store()
    if os.environ.get(STORE_ENV):
        where = f"{store} ({STORE_ENV})"
    else:
        where = f"{store} (set {STORE_ENV} to use another)"
    ids = local_dataset_ids()
    listing = f"the local datasets are {', '.join(ids)}" if ids else "it holds no datasets"
    return DatasetError(
        f"no Minari dataset {name!r}: it is neither a dataset directory nor an id in the "
        f"local Minari store {where}, and {listing}. Record one from a trained policy with "
        "`learnerkit collect RUN_DIR --episodes N --dataset-id NAME-v0`, or fetch a "
        f"published one with `minari download {name}` where the network allows it"
    )


def _data_dir(name: str) -> Path:
    """The ``data/`` directory (Minari's data path) of a dataset path or id."""
    path = Path(name).expanduser()
    if path.exists():
        for candidate in (path / "data", path):
            if (candidate / "metadata.json").is_file():
                return candidate
        raise DatasetError(
            f"{name} is not a Minari dataset directory: neither it nor {path / 'data'} holds "
            "a metadata.json (pass the directory a dataset id names in the Minari store)"
        )
    data = local_store() / name / "data"
    if not (data / "metadata.json").is_file():
        raise _unknown(name)
    return data


def open_dataset(name: str) -> Any:
    """The ``minari.MinariDataset`` a path or local id names; a DatasetError listing the
    local ids, and how to get one, when there is none."""
    data = _data_dir(name)
    minari = _minari()
    try:
        return minari.MinariDataset(data)
    except (ValueError, KeyError, OSError) as exc:
        raise DatasetError(f"cannot read Minari dataset {name!r} at {data}: {exc}") from exc


def dataset_env_id(dataset: Any) -> str | None:
    """The id of the environment to evaluate on: the dataset's evaluation env if it names
    one, else the env it was recorded in (None if it records neither)."""
    eval_spec = dataset.storage.metadata.get("eval_env_spec")
    if eval_spec:
        from gymnasium.envs.registration import EnvSpec

        try:
            return EnvSpec.from_json(eval_spec).id
        except Exception:  # an unreadable eval spec: fall back to the recording env
            pass
    return dataset.env_spec.id if dataset.env_spec is not None else None


def describe_spaces(observation_space: Any, action_space: Any) -> str:
    return f"observation space {observation_space} and action space {action_space}"


# Reading ---------------------------------------------------------------------------------
def read_episodes(dataset: Any, positions: Sequence[int]) -> list[Any]:
    """The ``minari.EpisodeData`` at ``positions`` of the dataset's episodes, in order."""
    ids = np.asarray(dataset.episode_indices)[np.asarray(positions, dtype=np.int64)]
    return list(dataset.iterate_episodes(episode_indices=ids.tolist()))


def episode_lengths(dataset: Any, positions: Sequence[int]) -> np.ndarray:
    """The steps of the episodes at ``positions``, from Minari's episode metadata (no
    episode data is read)."""
    ids = np.asarray(dataset.episode_indices)[np.asarray(positions, dtype=np.int64)]
    metadata = dataset.storage.get_episode_metadata(ids.tolist())
    return np.array([int(m["total_steps"]) for m in metadata], dtype=np.int64)


@attrs.frozen
class ChunkShards(ShardedBatch):
    """Rows ``start:stop`` of each learner's part of one chunk of a dataset's episodes, read
    by the learner itself (``LearnerGroup.update`` takes it in place of a batch).

    Learner ``i`` reads the episodes at ``episodes[i]`` (positions in the dataset), puts
    their rows in the order ``seed + (i,)`` draws, and trains on rows ``start:stop`` of
    that order; the caller makes every part hold at least ``stop`` rows. The part stays
    cached in the learner's process (one part at a time), so the next slice of the same
    chunk reads nothing. The dataset is opened by name where the shard is read: on a
    cluster, every learner's node needs it in its Minari store (or at that path).
    """

    dataset: str
    episodes: tuple[tuple[int, ...], ...]
    columns: tuple[str, ...]
    action_space: Any
    seed: tuple[int, ...]
    start: int
    stop: int
    module_id: str

    @property
    def num_shards(self) -> int:  # type: ignore[override]
        return len(self.episodes)

    def read(self, shard: int) -> MultiAgentBatch:
        part, order = _chunk_part(self, shard)
        return MultiAgentBatch({self.module_id: part.take(order[self.start : self.stop])})


# The one chunk part this process holds: (key, rows, row order).
_cached_part: tuple[Any, SampleBatch, np.ndarray] | None = None


def _chunk_part(shards: ChunkShards, shard: int) -> tuple[SampleBatch, np.ndarray]:
    global _cached_part
    key = (shards.dataset, shards.episodes[shard], shards.columns, shards.seed, shard)
    if _cached_part is None or _cached_part[0] != key:
        _cached_part = None  # drop the old part before reading the new one
        dataset = open_dataset(shards.dataset)
        episodes = read_episodes(dataset, shards.episodes[shard])
        part = episodes_to_batch(episodes, shards.action_space, shards.columns)
        order = np.random.default_rng([*shards.seed, shard]).permutation(part.count)
        _cached_part = (key, part, order)
    return _cached_part[1], _cached_part[2]


def episodes_to_batch(
    episodes: Sequence[Any], action_space: Any, columns: Sequence[str] = DATASET_COLUMNS
) -> SampleBatch:
    """One row per step of ``episodes``, in order, with the ``columns`` asked for (of
    ``DATASET_COLUMNS``): observations as float32, Discrete actions as int64, Box actions as
    float32, rewards float32, terminations and truncations bool."""
    discrete = hasattr(action_space, "n")
    make: dict[str, Callable[[Any], np.ndarray]] = {
        Columns.OBS: lambda e: np.asarray(e.observations[:-1], np.float32),
        Columns.NEXT_OBS: lambda e: np.asarray(e.observations[1:], np.float32),
        Columns.ACTIONS: lambda e: np.asarray(e.actions, np.int64 if discrete else np.float32),
        Columns.REWARDS: lambda e: np.asarray(e.rewards, np.float32),
        Columns.TERMINATEDS: lambda e: np.asarray(e.terminations, bool),
        Columns.TRUNCATEDS: lambda e: np.asarray(e.truncations, bool),
    }
    unknown = sorted(set(columns) - set(make))
    if unknown:
        raise DatasetError(
            f"a Minari dataset has no column {unknown}; its episodes give {list(DATASET_COLUMNS)}"
        )
    return SampleBatch(
        {name: np.concatenate([make[name](e) for e in episodes]) for name in columns}
    )


def episode_returns(dataset: Any) -> list[float]:
    """The undiscounted return of every episode, in order (reads the whole dataset, one
    episode at a time)."""
    return [float(np.sum(e.rewards)) for e in dataset.iterate_episodes()]


# Recording -------------------------------------------------------------------------------
def record_dataset(
    env_id: str,
    act: Callable[[np.ndarray], Any],
    *,
    num_episodes: int,
    dataset_id: str,
    seed: int = 0,
    algorithm_name: str | None = None,
    author: str | None = None,
    author_email: str | None = None,
    code_permalink: str | None = None,
    description: str | None = None,
    atari: Any = None,
) -> Any:
    """Run ``num_episodes`` episodes of ``act`` (the environment's observation in, the
    action to step with out) in ``env_id`` and save them as the Minari dataset
    ``dataset_id`` in the local store, with Minari's metadata (``algorithm_name``,
    ``author``, ``author_email``, ``code_permalink``, ``description``; the environment is
    also its evaluation env). Episode k is reset with ``seed + k``. The observations
    recorded are the environment's own. Returns the ``minari.MinariDataset``.

    An ``act`` that carries a state (a recurrent policy) may have ``reset()``, called before
    each episode, and ``reward(r)``, called with each step's reward after the step.

    Each episode is written to disk as it ends (the first creates the dataset, the others
    are appended), so recording holds one episode in memory. Minari's ``DataCollector``
    wrapper would do the same but needs jax (``minari[create]``); the buffers it writes
    (``EpisodeBuffer``) and the functions that store them need only ``minari[hdf5]``. If
    recording fails, the partial dataset is removed.
    """
    from learnerkit.rollouts._env_ids import make_env

    minari = _minari()
    if num_episodes < 1:
        raise DatasetError(f"record at least one episode, got num_episodes={num_episodes}")
    _check_new_id(dataset_id)
    env = make_env(env_id, atari)  # preprocessed as the policy was trained, with ``atari``
    dataset = None
    try:
        for episode in range(num_episodes):
            buffer = _run_episode(env, act, seed + episode)
            if dataset is None:
                dataset = minari.create_dataset_from_buffers(
                    dataset_id,
                    [buffer],
                    env=env_id,
                    eval_env=env_id,
                    algorithm_name=algorithm_name,
                    author=author,
                    author_email=author_email,
                    code_permalink=code_permalink,
                    description=description,
                    data_format="hdf5",
                )
            else:
                dataset.update_dataset_from_buffer([buffer])
    except BaseException:
        shutil.rmtree(local_store() / dataset_id, ignore_errors=True)
        raise
    finally:
        env.close()
    return dataset


def _run_episode(env: Any, act: Callable[[np.ndarray], Any], seed: int) -> Any:
    """One episode as Minari's ``EpisodeBuffer``: T + 1 observations, T of the rest."""
    from minari.data_collector import EpisodeBuffer

    obs, _ = env.reset(seed=seed)
    if hasattr(act, "reset"):  # a recurrent policy: each episode from the initial state
        act.reset()
    observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
    done = False
    while not done:
        action = act(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        if hasattr(act, "reward"):
            act.reward(float(reward))
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        truncations.append(bool(truncated))
        done = terminated or truncated
    return EpisodeBuffer(
        seed=seed,
        observations=np.stack(observations),
        actions=np.stack([np.asarray(a) for a in actions]),
        rewards=np.asarray(rewards, dtype=np.float64),
        terminations=np.asarray(terminations),
        truncations=np.asarray(truncations),
        infos={},
    )


def _check_new_id(dataset_id: str) -> None:
    """A well-formed id that names no dataset yet (Minari would refuse either only after
    everything is recorded)."""
    if not _DATASET_ID.fullmatch(dataset_id):
        raise DatasetError(
            f"dataset id {dataset_id!r} is not in Minari's form [NAMESPACE/]NAME-vVERSION, "
            "e.g. cartpole/expert-v0"
        )
    if (local_store() / dataset_id).exists():
        raise DatasetError(
            f"a Minari dataset {dataset_id!r} already exists in {local_store()}; pick another "
            f"id or version, or delete it with `minari delete {dataset_id}`"
        )
