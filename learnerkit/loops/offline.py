"""The offline loop (``training_loop="offline"``): behaviour cloning and offline RL.

``learnerkit train ALGO --dataset DATASET`` trains on the episodes of a Minari dataset (an
id in the local Minari store, or a dataset directory) instead of sampling environments;
no env runner is built. What it reads from an algorithm is in ``OfflineSettings``.

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
A timestep is a row trained on: ``timesteps_total`` counts rows, ``--stop-timesteps``
bounds them (exactly: the last iteration stops short), and the run ends after
``num_epochs`` epochs. ``additional_update`` runs once per iteration, after its gradient
steps, with ``timestep`` the rows trained so far (so ``lr_schedule`` is over rows).
Resuming continues at the same row of the same chunk and epoch.

Ray learners. With ``--num-learners N`` the driver reads the chunks and the LearnerGroup
gives each learner an equal share of every slice it trains (remainder rows of a slice,
fewer than N, are dropped); the learners do not read the dataset themselves.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from learnerkit.errors import DatasetError
from learnerkit.loops._run_output import combine_results
from learnerkit.loops.contract import Iteration, Run, TrainConfig
from learnerkit.loops.evaluation import run_episodes_side_by_side
from learnerkit.loops.trainer import probe_spaces
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


class OfflineLoop:
    """Epochs over a dataset streamed in chunks, with periodic evaluation episodes."""

    uses_env_runners = False

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
        self._chunk: Any = None
        self._row_order: np.ndarray | None = None
        self._eval: tuple[Any, Any] | None = None

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

    def _load_chunk(self) -> None:
        size = self.hps.dataset_chunk_episodes
        start = self.chunk_index * size
        positions = self._episode_order(self.epoch)[start : start + size]
        episodes = datasets.read_episodes(self.dataset, positions)
        self._chunk = datasets.episodes_to_batch(
            episodes, self.module_spec.action_space, self.columns
        )
        rng = np.random.default_rng([self.hps.seed, self.epoch, self.chunk_index])
        self._row_order = rng.permutation(self._chunk.count)

    def _next_chunk(self) -> None:
        self._chunk = self._row_order = None
        self.cursor = 0
        self.chunk_index += 1
        if self.chunk_index == self.num_chunks:
            self.epoch, self.chunk_index = self.epoch + 1, 0

    # One iteration -----------------------------------------------------------------------
    def step(self, timesteps: int) -> Iteration:
        hps, group = self.hps, self.run.group
        limit = min(self.max_timesteps(), self.run.stop_timesteps or self.max_timesteps())
        budget = limit - timesteps
        steps_left, trained, steps, chunk_rows = hps.evaluation_interval, 0, 0, 0
        results = []
        t0 = time.perf_counter()
        while steps_left > 0 and trained < budget:
            if self._chunk is None:
                self._load_chunk()
            chunk_rows = max(chunk_rows, self._chunk.count)
            take = min(
                steps_left * hps.train_batch_size, self._chunk.count - self.cursor, budget - trained
            )
            rows = self._row_order[self.cursor : self.cursor + take]
            # Fewer rows than Ray learners cannot be shared; so few are left out.
            if take >= group.num_learners:
                out = group.update(
                    self._chunk.take(rows), minibatch_size=hps.train_batch_size, num_epochs=1
                )
                results.append(out[self.run.module_id])
            n = -(-take // hps.train_batch_size)
            steps, steps_left = steps + n, steps_left - n
            self.cursor += take
            trained += take
            if self.cursor == self._chunk.count:
                self._next_chunk()
        self.gradient_steps += steps
        extra = group.additional_update(timestep=timesteps + trained)[self.run.module_id]
        t1 = time.perf_counter()
        episodes = self._evaluate()
        returns = [r for r, _ in episodes]
        metrics: dict[str, Any] = {
            "num_rows_trained": trained,
            "num_gradient_steps": steps,
            "num_gradient_steps_total": self.gradient_steps,
            "epoch": (timesteps + trained) / self.num_rows,
            "dataset_chunk_rows": chunk_rows,
            "evaluation/episode_return_mean": float(np.mean(returns)) if returns else None,
            "learn_time_s": t1 - t0,
            "evaluation_time_s": time.perf_counter() - t1,
        }
        learner = {**combine_results(results), **extra}
        metrics.update({f"learner/{k}": v for k, v in learner.items()})
        return Iteration(env_steps=trained, episodes=episodes, metrics=metrics)

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
        return run_episodes_side_by_side(
            self.run.config.env_id, backend.policy_fn(module, explore=False), n, seed=seed
        )

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
        self._chunk = self._row_order = None  # reloaded, in the same order, when needed
