"""The asynchronous loop (``training_loop="async"``): IMPALA, APPO and their kind.

Runners sample continuously with the weights they last received. The driver waits on them
with a timeout (``EnvRunners.poll``: no empty spinning), groups finished fragments into
train batches of whole sequences (``Rollout.to_sequences``), and hands each batch to
``LearnerGroup.async_update`` without waiting for the update; results are collected as
they finish. Every ``broadcast_interval`` finished updates the runners get new weights and
the learners run ``additional_update``. Each batch's policy lag (learner updates between
the weights it was sampled with and the update that trains on it) is measured.

Every queue is bounded: fragments not yet a full batch (less than one batch), batches
waiting for the learners (``learner_queue_size``), updates in flight
(``max_requests_in_flight``), and results (collected every iteration, at most the updates
in flight). When the learners fall behind, ``learner_queue_policy`` says what gives:
``"block"`` waits for a learner slot before taking more fragments (back-pressure; runners
finish the fragment they are on and wait), ``"drop_oldest"`` keeps sampling and drops the
oldest waiting batch. Dropped batches and env steps are counted in every row.

With a PettingZoo env the runners sample whole sequences per agent
(it declares ``sequences``: ``EnvRunnerSpec.sequences``, see
``learnerkit.rollouts.SequenceStreams``): a batch of
fragments is a ``MultiAgentBatch`` of the sequences they completed, each module training on
its own (a module with no full sequence yet sits the update out; a batch with none at all
is not submitted). Batches are still formed by env steps, not agent steps; the policy lag is
measured per sequence, from its oldest row, and learner results are reported per module
(``learner/MODULE/NAME``) with each ended episode's team and per-agent returns.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from learnerkit import MultiAgentBatch
from learnerkit.loops.contract import Fragment, Iteration, Run, combine_results, sequence_batch
from learnerkit.model_config import check_fragments_hold_sequences
from learnerkit.rollouts import MultiAgentSequences


class AsyncLoop:
    """Continuous sampling, asynchronous updates on sequences, periodic weight broadcast."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.hps = run.hps
        specs = run.runners.spec.module_specs
        check_fragments_hold_sequences(
            {m: spec.model_config for m, spec in specs.items()}, run.hps.rollout_fragment_length
        )
        self.multi_agent = run.runners.spec.multi_agent
        self._fragments: list[Fragment] = []  # not yet a full train batch
        self._batches: deque[list[Fragment]] = deque()  # waiting for a learner slot
        self._in_flight: deque[int] = deque()  # rows of each update in flight, in order
        self.updates_submitted = 0
        self.updates_finished = 0
        self.weights_version = 0
        self.env_steps_trained = 0
        self.dropped_batches = 0
        self.dropped_env_steps = 0
        self._since_broadcast = 0
        self._iteration: dict[str, Any] = self._new_iteration()

    @classmethod
    def learner_group_options(cls, hps: Any) -> dict[str, Any]:
        return {"max_async_updates": hps.max_requests_in_flight}

    def start(self) -> None:
        self._broadcast()

    # One iteration -----------------------------------------------------------------------
    def step(self, timesteps: int) -> Iteration:
        hps, run = self.hps, self.run
        it = self._iteration = self._new_iteration()
        t0 = time.perf_counter()
        while it["sampled"] < hps.min_sample_timesteps_per_iteration:
            t_wait = time.perf_counter()
            fragments = run.runners.poll(hps.sample_timeout_s)
            it["wait_s"] += time.perf_counter() - t_wait
            for fragment in fragments:
                it["sampled"] += fragment.env_steps
                it["episodes"].extend(fragment.episodes)
                it["agent_returns"].extend(fragment.agent_returns)
                self._fragments.append(fragment)
            # Broadcast before feeding: the broadcast waits for the updates in flight, and
            # the update about to be submitted should not be one of them.
            self._collect(run.group.collect_async_updates())
            if self._since_broadcast >= hps.broadcast_interval:
                self._broadcast(timesteps + it["sampled"])
            self._form_batches()
            self._feed_learners()
        seconds = time.perf_counter() - t0
        return Iteration(
            env_steps=it["sampled"],
            episodes=it["episodes"],
            metrics=self._row(seconds),
            agent_returns=it["agent_returns"],
        )

    @staticmethod
    def _new_iteration() -> dict[str, Any]:
        """What one iteration gathers for its row."""
        return {
            "sampled": 0,
            "trained": 0,
            "episodes": [],
            "agent_returns": [],
            "module_steps": {},
            "lags": [],
            "results": [],
            "extra": {},
            "dropped_batches": 0,
            "dropped_env_steps": 0,
            "wait_s": 0.0,
        }

    def _form_batches(self) -> None:
        """Whole fragments, oldest first, until a batch holds ``train_batch_size`` rows."""
        while sum(f.env_steps for f in self._fragments) >= self.hps.train_batch_size:
            rows, taken = 0, 0
            while rows < self.hps.train_batch_size:
                rows += self._fragments[taken].env_steps
                taken += 1
            self._batches.append(self._fragments[:taken])
            del self._fragments[:taken]
        if self.hps.learner_queue_policy == "drop_oldest":
            while len(self._batches) > self.hps.learner_queue_size:
                dropped = self._batches.popleft()
                self._iteration["dropped_batches"] += 1
                self._iteration["dropped_env_steps"] += sum(f.env_steps for f in dropped)

    def _feed_learners(self) -> None:
        """Submit waiting batches. Under "block" every batch is submitted, waiting for a
        learner slot if need be; under "drop_oldest" only while a slot is free."""
        group, hps = self.run.group, self.hps
        while self._batches:
            if hps.learner_queue_policy == "drop_oldest" and (
                group.num_in_flight >= hps.max_requests_in_flight
            ):
                return
            fragments = self._batches.popleft()
            batch = sequence_batch(fragments)
            if batch.count == 0:
                continue  # multi-agent, no sequence complete yet: its rows wait in the streams
            self._iteration["lags"].extend(self._lags(fragments))
            if isinstance(batch, MultiAgentBatch):
                steps = self._iteration["module_steps"]
                for module_id, module_batch in batch.items():
                    steps[module_id] = steps.get(module_id, 0) + module_batch.count
            finished = group.async_update(
                batch,
                minibatch_size=hps.minibatch_size,
                num_epochs=hps.num_epochs,
                sequence_length=hps.rollout_fragment_length,
            )
            self._in_flight.append(sum(f.env_steps for f in fragments))
            self.updates_submitted += 1
            self._collect(finished)

    def _lags(self, fragments: list[Fragment]) -> list[int]:
        """Learner updates between the weights each sequence was sampled with (multi-agent:
        its oldest row's) and the update about to train on it; one per fragment for a
        gymnasium env (all its sequences share the weights)."""
        if isinstance(fragments[0].rollout, MultiAgentSequences):
            return [
                self.updates_submitted - int(v)
                for f in fragments
                for versions in f.rollout.weights_versions.values()
                for v in versions
            ]
        return [self.updates_submitted - f.weights_version for f in fragments]

    def _collect(self, finished: list[Mapping[str, Mapping[str, Any]]]) -> None:
        for results in finished:
            rows = self._in_flight.popleft()
            self._iteration["trained"] += rows
            self.env_steps_trained += rows
            self._iteration["results"].append(results)
            self.updates_finished += 1
            self._since_broadcast += 1

    def _broadcast(self, timesteps: int | None = None) -> None:
        """Finish the updates in flight, run the non-gradient update, ship the weights."""
        group = self.run.group
        self._collect(group.wait_async_updates())
        if timesteps is not None:
            results = self._iteration["results"][-self._since_broadcast :]
            # The loop's contract, as the on-policy loop's: `mean_kl` results come back as
            # sampled_kl_values, and num_updates says how many updates ran since last time.
            kl: dict[str, list[float]] = {}
            for by_module in results:
                for module_id, r in by_module.items():
                    if "mean_kl" in r:
                        kl.setdefault(module_id, []).append(r["mean_kl"])
            self._iteration["extra"] = group.additional_update(
                timestep=timesteps,
                num_updates=self._since_broadcast,
                sampled_kl_values={m: float(np.mean(v)) for m, v in kl.items()},
            )
        self.weights_version = self.updates_finished
        self.run.runners.set_weights(group.get_weights(), self.weights_version)
        self._since_broadcast = 0

    # Reporting and state ---------------------------------------------------------------
    def _row(self, seconds: float) -> dict[str, Any]:
        it = self._iteration
        self.dropped_batches += it["dropped_batches"]
        self.dropped_env_steps += it["dropped_env_steps"]
        lags = it["lags"]
        row: dict[str, Any] = {
            "num_env_steps_sampled": it["sampled"],
            "num_env_steps_trained": it["trained"],
            "env_steps_trained_per_s": it["trained"] / seconds,
            "num_updates": len(it["results"]),
            "num_updates_total": self.updates_finished,
            "policy_lag_mean": float(np.mean(lags)) if lags else None,
            "policy_lag_max": int(np.max(lags)) if lags else None,
            "learner_queue_size": len(self._batches),
            "updates_in_flight": len(self._in_flight),
            "dropped_batches": it["dropped_batches"],
            "dropped_env_steps": it["dropped_env_steps"],
            "dropped_env_steps_total": self.dropped_env_steps,
            "num_env_steps_trained_total": self.env_steps_trained,
            "pending_env_steps": self.pending_env_steps(),
            "sample_wait_s": it["wait_s"],
            **self.run.runners.metrics(),
        }
        if not self.multi_agent:
            module_id = self.run.module_id
            learner = {
                **combine_results([r[module_id] for r in it["results"]]),
                **it["extra"].get(module_id, {}),
            }
            row.update({f"learner/{name}": value for name, value in learner.items()})
            return row
        row["num_agent_steps_trained"] = sum(it["module_steps"].values())
        row.update({f"module_steps/{m}": n for m, n in sorted(it["module_steps"].items())})
        modules = {m for r in it["results"] for m in r} | set(it["extra"])
        for module_id in sorted(modules):
            learner = {
                **combine_results([r[module_id] for r in it["results"] if module_id in r]),
                **it["extra"].get(module_id, {}),
            }
            row.update({f"learner/{module_id}/{k}": v for k, v in learner.items()})
        return row

    def pending_env_steps(self) -> int:
        """Env steps sampled but neither trained nor dropped yet: fragments short of a
        batch, batches waiting for a learner, updates in flight. For a gymnasium env,
        ``timesteps_total`` = ``num_env_steps_trained_total`` + ``dropped_env_steps_total``
        + this, in every row."""
        waiting = sum(f.env_steps for f in self._fragments)
        waiting += sum(f.env_steps for batch in self._batches for f in batch)
        return waiting + sum(self._in_flight)

    def get_state(self) -> dict[str, Any]:
        # Updates a checkpoint's save waited for (LearnerGroup keeps their results) are in
        # the learners' state: counted here as trained, not as pending.
        self._collect(self.run.group.collect_async_updates())
        return {
            "updates_finished": self.updates_finished,
            "env_steps_trained": self.env_steps_trained,
            "dropped_batches": self.dropped_batches,
            "dropped_env_steps": self.dropped_env_steps,
            "pending_env_steps": self.pending_env_steps(),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.updates_finished = self.updates_submitted = int(state.get("updates_finished", 0))
        self.env_steps_trained = int(state.get("env_steps_trained", 0))
        self.dropped_batches = int(state.get("dropped_batches", 0))
        # What was pending when the checkpoint was saved is not in it: dropped, so that
        # the counters still add up (docs/faults.md).
        self.dropped_env_steps = int(state.get("dropped_env_steps", 0))
        self.dropped_env_steps += int(state.get("pending_env_steps", 0))
