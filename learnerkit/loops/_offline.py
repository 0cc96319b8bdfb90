"""The offline loop (``training_loop="offline"``): behaviour cloning and offline RL.

``learnerkit train ALGO --dataset DATASET`` trains on the episodes of a Minari dataset (an
id in the local Minari store, or a dataset directory) instead of sampling environments;
no env runner is built (it declares ``uses_env_runners=False, reads_dataset=True``). What
it reads from an algorithm is in ``OfflineSettings``.

Data. Each epoch visits the dataset's episodes in a fresh random order, read
``dataset_chunk_episodes`` at a time into one SampleBatch holding the columns the algorithm
declares (``Algorithm.required_columns``, of ``obs``, ``new_obs``, ``actions``,
``rewards``, ``terminateds``, ``truncateds``; all six if it declares none). A chunk's rows
are shuffled and trained in minibatches of ``train_batch_size`` (the last one of a chunk
may be smaller), every row once per epoch; then the chunk is dropped and the next read.
Memory is bounded by the chunk, whatever the size of the dataset.

Iterations and timesteps. One iteration is ``evaluation_interval`` gradient steps followed
by an evaluation: ``evaluation_num_episodes`` greedy episodes in the dataset's environment
(or ``--env``), whose returns fill the trainer's last-100-episode window (so
``--stop-reward`` works) and whose mean is reported as ``evaluation/episode_return_mean``.
A timestep is a row passed (trained on, or with Ray learners dropped for an even split:
``num_rows_trained`` and ``num_rows_dropped``): ``timesteps_total`` counts rows,
``--stop-timesteps`` bounds them (exactly: the last iteration stops short), and the run ends after
``num_epochs`` epochs. ``additional_update`` runs once per iteration, after its gradient
steps, with ``timestep`` the rows trained so far (so ``lr_schedule`` is over rows).
Resuming continues at the same row of the same chunk and epoch.

Ray learners. With ``--num-learners N`` each learner reads its own share of every chunk
(``datasets.ChunkShards``): the chunk's episodes are dealt out in turn, learner i taking
episodes i, i + N, ..., and each learner trains on as many of its rows as the smallest
share holds (the rows beyond it are dropped, still counted as timesteps, so an epoch is
still one pass). The driver reads only the episodes' lengths from the dataset's metadata
and sends each learner where its rows are, never the rows themselves. Each learner holds
one chunk share in memory; the dataset must be readable where the learners run (their
Minari store, or the same path). ``dataset_chunk_episodes`` must be at least N.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from learnerkit.errors import DatasetError
from learnerkit.loops.contract import (
    Iteration,
    Run,
    TrainConfig,
    combine_results,
    evaluation_episodes,
    probe_spaces,
)
from learnerkit.model_config import refuse_recurrent
from learnerkit.rollouts import datasets

# Evaluation episodes are seeded apart from anything else the run seeds.
_EVAL_SEED_OFFSET = 1_000_000


def _fits(dataset_space: Any, env_space: Any) -> bool:
    """Whether a module built for one space acts in the other: same kind and shape (and
    number of actions)."""
    return (
        type(dataset_space) is type(env_space)
        and getattr(dataset_space, "shape", None) == getattr(env_space, "shape", None)
        and getattr(dataset_space, "n", None) == getattr(env_space, "n", None)
    )


@attrs.frozen
class _Chunk:
    episodes: tuple[tuple[int, ...], ...]  # positions each learner reads
    rows: int  # trained: the same number from every learner
    dropped: int


class OfflineLoop:
    """Epochs over a dataset streamed in chunks, with periodic evaluation episodes."""

    @classmethod
    def environment(cls, config: TrainConfig) -> tuple[str, Any, Any]:
        """The env to evaluate in (``--env``, else the dataset's) and the dataset's spaces,
        which the module is built for."""
        if config.dataset is None:
            raise DatasetError(
                f"algorithm {config.algorithm!r} learns from a dataset (training loop "
                "'offline'): pass one with --dataset ID_OR_PATH (TrainConfig.dataset), a "
                "Minari dataset id in the local store or a dataset directory; `learnerkit "
                "collect RUN_DIR --episodes N --dataset-id ID` records one from a trained policy"
            )
        dataset = datasets.open_dataset(config.dataset)
        obs_space, action_space = dataset.observation_space, dataset.action_space
        recorded = datasets.describe_spaces(obs_space, action_space)
        if type(obs_space).__name__ != "Box" or type(action_space).__name__ not in (
            "Discrete",
            "Box",
        ):
            raise DatasetError(
                f"dataset {config.dataset!r} has {recorded}; the modules learnerkit builds "
                "take Box observations and Discrete or Box actions"
            )
        env_id = config.env_id or datasets.dataset_env_id(dataset)
        if env_id is None:
            raise DatasetError(
                f"dataset {config.dataset!r} names no environment to evaluate the policy in; "
                "pass one with --env ENV (TrainConfig.env_id)"
            )
        env_obs, env_actions = probe_spaces(env_id)
        if not (_fits(obs_space, env_obs) and _fits(action_space, env_actions)):
            raise DatasetError(
                f"dataset {config.dataset!r} has {recorded}, but environment {env_id!r} has "
                f"{datasets.describe_spaces(env_obs, env_actions)}: a policy learnt from the "
                "dataset cannot act there; evaluate in the dataset's environment (drop --env) "
                "or use a dataset recorded in this one"
            )
        return env_id, obs_space, action_space

    @classmethod
    def learner_group_options(cls, hps: Any) -> dict[str, Any]:
        return {}

    def __init__(self, run: Run) -> None:
        self.run = run
        refuse_recurrent(
            {m: spec.model_config for m, spec in run.group.spec.module_specs.items()},
            type(self).__name__,
        )
        self.hps = run.hps
        self.dataset = datasets.open_dataset(run.config.dataset)
        self.num_episodes = int(self.dataset.total_episodes)
        self.num_rows = int(self.dataset.total_steps)
        if self.num_episodes == 0 or self.num_rows == 0:
            raise DatasetError(f"dataset {run.config.dataset!r} holds no steps to train on")
        self.module_spec = run.group.spec.module_specs[run.module_id]
        self.columns = self._columns(run)
        self.num_chunks = -(-self.num_episodes // self.hps.dataset_chunk_episodes)
        # Where the loop stands: epoch, chunk of that epoch, next row of that chunk.
        self.epoch = self.chunk_index = self.cursor = 0
        self.gradient_steps = 0
        self.evaluations = 0
        # The chunk being trained (episodes dealt to the learners, rows each trains on,
        # rows dropped): planned from episode lengths, read by the learners themselves.
        self._chunk: _Chunk | None = None
        self._eval: tuple[Any, Any] | None = None
        if self.hps.dataset_chunk_episodes < run.group.num_learners:
            raise DatasetError(
                f"dataset_chunk_episodes={self.hps.dataset_chunk_episodes} is fewer than the "
                f"{run.group.num_learners} learners, each of which reads whole episodes of "
                f"every chunk: set dataset_chunk_episodes >= {run.group.num_learners}"
            )

    def _columns(self, run: Run) -> tuple[str, ...]:
        required = tuple(run.algorithm.required_columns)
        missing = [c for c in required if c not in datasets.DATASET_COLUMNS]
        if missing:
            raise DatasetError(
                f"algorithm {run.algorithm.name!r} needs columns {missing}, which an offline "
                f"dataset does not give (its episodes give {list(datasets.DATASET_COLUMNS)})"
            )
        return required or datasets.DATASET_COLUMNS

    def max_timesteps(self) -> int:
        """``num_epochs`` passes over the dataset, in rows."""
        return self.hps.num_epochs * self.num_rows

    def start(self) -> None:
        pass

    # Data --------------------------------------------------------------------------------
    def _episode_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.hps.seed, epoch]).permutation(self.num_episodes)

    def _plan_chunk(self) -> _Chunk:
        n = self.run.group.num_learners
        size = self.hps.dataset_chunk_episodes
        start = self.chunk_index * size
        positions = self._episode_order(self.epoch)[start : start + size]
        lengths = datasets.episode_lengths(self.dataset, positions)
        # Episodes dealt out in turn; each learner trains on as many rows as the smallest
        # share holds (a share with no episode, in a short last chunk, makes that none).
        share_rows = min(int(lengths[i::n].sum()) for i in range(n))
        return _Chunk(
            episodes=tuple(tuple(int(p) for p in positions[i::n]) for i in range(n)),
            rows=share_rows * n,
            dropped=int(lengths.sum()) - share_rows * n,
        )

    def _shards(self, start: int, stop: int) -> datasets.ChunkShards:
        """Rows ``start:stop`` (of the chunk's trained rows) as each learner's share."""
        n = self.run.group.num_learners
        return datasets.ChunkShards(
            dataset=self.run.config.dataset,
            episodes=self._chunk.episodes,
            columns=self.columns,
            action_space=self.module_spec.action_space,
            seed=(self.hps.seed, self.epoch, self.chunk_index),
            start=start // n,
            stop=stop // n,
            module_id=self.run.module_id,
        )

    def _next_chunk(self) -> None:
        self._chunk = None
        self.cursor = 0
        self.chunk_index += 1
        if self.chunk_index == self.num_chunks:
            self.epoch, self.chunk_index = self.epoch + 1, 0

    # One iteration -----------------------------------------------------------------------
    def step(self, timesteps: int) -> Iteration:
        hps, group = self.hps, self.run.group
        limit = min(self.max_timesteps(), self.run.stop_timesteps or self.max_timesteps())
        budget = limit - timesteps
        # consumed: rows passed (timesteps); trained: those a learner trained on.
        steps_left, consumed, trained, steps, chunk_rows = hps.evaluation_interval, 0, 0, 0, 0
        results = []
        t0 = time.perf_counter()
        n = group.num_learners
        while steps_left > 0 and consumed < budget:
            if self._chunk is None:
                self._chunk = self._plan_chunk()
            chunk_rows = max(chunk_rows, self._chunk.rows + self._chunk.dropped)
            take = min(
                steps_left * hps.train_batch_size, self._chunk.rows - self.cursor, budget - consumed
            )
            take -= take % n  # every learner takes an equal share
            if take > 0:
                shards = self._shards(self.cursor, self.cursor + take)
                out = group.update(shards, minibatch_size=hps.train_batch_size, num_epochs=1)
                results.append(out[self.run.module_id])
                done = -(-take // hps.train_batch_size)
                steps, steps_left = steps + done, steps_left - done
                trained += take
            else:
                # Fewer rows left in the budget than learners: so few are left out.
                take = min(self._chunk.rows - self.cursor, budget - consumed)
            self.cursor += take
            consumed += take
            if self.cursor == self._chunk.rows:
                consumed += self._chunk.dropped  # rows no learner could take evenly
                self._next_chunk()
        self.gradient_steps += steps
        extra = group.additional_update(timestep=timesteps + consumed)[self.run.module_id]
        t1 = time.perf_counter()
        episodes = self._evaluate()
        returns = [r for r, _ in episodes]
        metrics: dict[str, Any] = {
            "num_rows_trained": trained,
            "num_rows_dropped": consumed - trained,
            "num_gradient_steps": steps,
            "num_gradient_steps_total": self.gradient_steps,
            "epoch": (timesteps + consumed) / self.num_rows,
            "dataset_chunk_rows": chunk_rows,
            "evaluation/episode_return_mean": float(np.mean(returns)) if returns else None,
            "learn_time_s": t1 - t0,
            "evaluation_time_s": time.perf_counter() - t1,
        }
        learner = {**combine_results(results), **extra}
        metrics.update({f"learner/{k}": v for k, v in learner.items()})
        return Iteration(env_steps=consumed, episodes=episodes, metrics=metrics)

    def _evaluate(self) -> list[tuple[float, int]]:
        """Greedy episodes of the current weights, side by side, each evaluation seeded
        afresh."""
        n = self.hps.evaluation_num_episodes
        if n == 0:
            return []
        if self._eval is None:
            from learnerkit.backends import make_backend

            backend = make_backend(self.run.config.framework)
            self._eval = backend, backend.build_module(self.module_spec, self.hps.seed)
        backend, module = self._eval
        weights = self.run.group.get_weights()[self.run.module_id]
        backend.set_module_state(module, weights, "the offline loop's evaluation module")
        seed = self.run.config.seed + _EVAL_SEED_OFFSET + self.evaluations * n
        self.evaluations += 1
        return evaluation_episodes(self.run.config.env_id, backend, module, n, seed=seed)

    # State -------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "chunk_index": self.chunk_index,
            "cursor": self.cursor,
            "gradient_steps": self.gradient_steps,
            "evaluations": self.evaluations,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.epoch = int(state.get("epoch", 0))
        self.chunk_index = int(state.get("chunk_index", 0))
        self.cursor = int(state.get("cursor", 0))
        self.gradient_steps = int(state.get("gradient_steps", 0))
        self.evaluations = int(state.get("evaluations", 0))
        self._chunk = None  # planned again, in the same order, when needed
