"""The replay loop (``training_loop="replay"``): DQN, and SAC-like algorithms.

Runners sample continuously (``EnvRunners.poll``: local runners when asked, Ray runners
without waiting for the learner) with the weights they last received. Each fragment goes
into a replay buffer (``learnerkit.replay``), n-step returns computed as it is added; a
fragment of a runner just (re)built first flushes that runner's streams, whose episodes were
abandoned. Once the buffer holds ``learning_starts`` sampleable rows, every fragment is
followed by one ``LearnerGroup.update`` on rows drawn from the buffer: as many minibatches
of ``train_batch_size`` rows as ``training_intensity`` (RLlib's replay ratio: rows sampled
for training per env step added) makes due for its env steps, fractions carried over. Then:

- prioritized replay: the loss's per-row TD errors (``learnerkit.hookspecs.PER_ROW``, name
  ``"td_error"``, aligned to the batch's rows) become the rows' priorities; rows a learner
  did not train on (NaN: the remainder Ray learners' equal shards drop) keep theirs; the
  importance exponent ``beta`` is annealed over env steps;
- ``additional_update(timestep=env steps sampled, num_gradient_steps=gradient steps taken
  so far)``: the algorithm moves its target networks (``target_network_update_freq``,
  ``tau``; SAC's polyak averaging accounts for every gradient step since its last move) and
  exploration schedule (DQN's epsilon lives in the module's weights, so it reaches the
  runners with them);
- every ``broadcast_interval`` updates, the weights go to the runners.

Checkpoints hold the loop's counters and sampling generator, and the buffer when
``store_buffer_in_checkpoints`` (a resumed run without it refills ``learning_starts`` rows
before training again). Gymnasium envs only: a PettingZoo env is refused by the host (the
loop does not declare ``multi_agent``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from learnerkit.errors import PluginError
from learnerkit.hookspecs import PER_ROW
from learnerkit.loops.contract import Fragment, Iteration, Run, combine_results
from learnerkit.model_config import refuse_recurrent
from learnerkit.replay import PrioritizedReplayBuffer, ReplayColumns, UniformReplayBuffer

TD_ERROR = "td_error"
"""The per-row value prioritized replay takes priorities from."""
_STATE_BUFFER = "buffer"


class ReplayLoop:
    """Sample into a replay buffer, train on minibatches drawn from it, repeat."""

    def __init__(self, run: Run) -> None:
        self.run, self.hps = run, run.hps
        refuse_recurrent(
            {m: spec.model_config for m, spec in run.group.spec.module_specs.items()},
            type(self).__name__,
        )
        hps = self.hps
        if hps.prioritized_replay:
            self.buffer: Any = PrioritizedReplayBuffer(
                hps.replay_buffer_capacity,
                alpha=hps.prioritized_replay_alpha,
                n_step=hps.n_step,
                gamma=hps.gamma,
                epsilon=hps.prioritized_replay_eps,
            )
        else:
            self.buffer = UniformReplayBuffer(
                hps.replay_buffer_capacity, n_step=hps.n_step, gamma=hps.gamma
            )
        # The buffer's draws: apart from the runners' seeds and the learners' shuffling.
        self.rng = np.random.default_rng([hps.seed, 0x5E1A])
        self.updates = 0  # LearnerGroup.update calls
        self.gradient_steps = 0
        self.rows_trained = 0
        self.owed = 0.0  # gradient steps due but not taken yet (a fraction)
        self.version = 0
        self._since_broadcast = 0
        self._it: dict[str, Any] = {}

    def start(self) -> None:
        self._broadcast()

    # One iteration -------------------------------------------------------------------------
    def step(self, timesteps: int) -> Iteration:
        hps, run = self.hps, self.run
        it = self._it = {
            "sampled": 0,
            "episodes": [],
            "results": [],
            "extra": {},
            "steps": 0,
            "sample_s": 0.0,
            "buffer_s": 0.0,
            "learn_s": 0.0,
        }
        t0 = time.perf_counter()
        while it["sampled"] < hps.min_sample_timesteps_per_iteration:
            t_sample = time.perf_counter()
            fragments = run.runners.poll(hps.sample_timeout_s)
            it["sample_s"] += time.perf_counter() - t_sample
            for fragment in fragments:
                it["sampled"] += fragment.env_steps
                it["episodes"].extend(fragment.episodes)
                self._add(fragment)
                self._train(fragment.env_steps, timesteps + it["sampled"])
        return Iteration(
            env_steps=it["sampled"],
            episodes=it["episodes"],
            metrics=self._row(time.perf_counter() - t0, timesteps + it["sampled"]),
        )

    def _add(self, fragment: Fragment) -> None:
        t0 = time.perf_counter()
        if fragment.first_of_runner:
            # A runner (re)built: its envs were reset, its earlier streams end here.
            envs = fragment.rollout.num_envs
            self.buffer.flush([(fragment.runner_index, n) for n in range(envs)])
        self.buffer.add_rollout(fragment.rollout, runner_index=fragment.runner_index)
        self._it["buffer_s"] += time.perf_counter() - t0

    def _train(self, env_steps: int, timestep: int) -> None:
        hps, group, it = self.hps, self.run.group, self._it
        if len(self.buffer) < max(1, hps.learning_starts):
            return
        self.owed += env_steps * hps.updates_per_env_step
        steps = int(self.owed)
        if steps == 0:
            return
        self.owed -= steps
        t0 = time.perf_counter()
        size = steps * hps.train_batch_size
        if hps.prioritized_replay:
            batch = self.buffer.sample(size, self.rng, beta=self.beta(timestep))
        else:
            batch = self.buffer.sample(size, self.rng)
        t1 = time.perf_counter()
        results = group.update(batch, minibatch_size=hps.train_batch_size)
        t2 = time.perf_counter()
        module_results = dict(results[self.run.module_id])
        per_row = module_results.pop(PER_ROW, {})
        if hps.prioritized_replay:
            self._prioritize(batch[ReplayColumns.BATCH_INDEXES], per_row)
        t3 = time.perf_counter()
        self.gradient_steps += steps
        it["extra"] = group.additional_update(
            timestep=timestep, num_gradient_steps=self.gradient_steps
        )
        self.updates += 1
        self.rows_trained += size
        it["steps"] += steps
        it["results"].append(module_results)
        self._since_broadcast += 1
        if self._since_broadcast >= hps.broadcast_interval:
            self._broadcast()
        it["buffer_s"] += (t1 - t0) + (t3 - t2)
        it["learn_s"] += (t2 - t1) + (time.perf_counter() - t3)

    def _prioritize(self, indexes: np.ndarray, per_row: Mapping[str, np.ndarray]) -> None:
        if TD_ERROR not in per_row:
            raise PluginError(
                f"prioritized_replay is on, but algorithm {self.run.algorithm.name!r} returned "
                f"no per-row {TD_ERROR!r} from compute_loss (it returned "
                f"{sorted(per_row) or 'none'}): return {{'{PER_ROW}': {{'{TD_ERROR}': "
                "td_errors}}}} with one TD error per row, or set prioritized_replay=False"
            )
        td = per_row[TD_ERROR]
        trained = np.isfinite(td)  # NaN: a row no learner trained on keeps its priority
        self.buffer.update_priorities(indexes[trained], td[trained])

    def beta(self, timestep: int) -> float:
        """Prioritized replay's importance exponent at ``timestep``, annealed linearly."""
        hps = self.hps
        frac = min(1.0, timestep / hps.prioritized_replay_beta_annealing_timesteps)
        start, end = hps.prioritized_replay_beta, hps.final_prioritized_replay_beta
        return start + frac * (end - start)

    def _broadcast(self) -> None:
        self.version = self.updates
        self.run.runners.set_weights(self.run.group.get_weights(), self.version)
        self._since_broadcast = 0

    # Reporting and state -------------------------------------------------------------------
    def _row(self, seconds: float, timestep: int) -> dict[str, Any]:
        it, hps = self._it, self.hps
        row: dict[str, Any] = {
            "num_env_steps_sampled": it["sampled"],
            "num_env_steps_trained": it["steps"] * hps.train_batch_size,
            "num_gradient_steps": it["steps"],
            "num_updates": len(it["results"]),
            "num_gradient_steps_total": self.gradient_steps,
            "replay_buffer_size": len(self.buffer),
            "replay_buffer_bytes": self.buffer.nbytes,
            "sample_time_s": it["sample_s"],
            "buffer_time_s": it["buffer_s"],
            "learn_time_s": it["learn_s"],
            "iteration_time_s": seconds,
            **self.run.runners.metrics(),
        }
        if hps.prioritized_replay:
            row["prioritized_replay_beta"] = self.beta(timestep)
        module_id = self.run.module_id
        learner = {**combine_results(it["results"]), **it["extra"].get(module_id, {})}
        row.update({f"learner/{name}": value for name, value in learner.items()})
        return row

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "updates": self.updates,
            "gradient_steps": self.gradient_steps,
            "rows_trained": self.rows_trained,
            "owed": self.owed,
            "rng": self.rng.bit_generator.state,
        }
        if self.hps.store_buffer_in_checkpoints:
            state[_STATE_BUFFER] = self.buffer.get_state()
        return state

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.updates = self.version = int(state.get("updates", 0))
        self.gradient_steps = int(state.get("gradient_steps", 0))
        self.rows_trained = int(state.get("rows_trained", 0))
        self.owed = float(state.get("owed", 0.0))
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]
        if _STATE_BUFFER in state and self.hps.store_buffer_in_checkpoints:
            self.buffer.set_state(state[_STATE_BUFFER])
