"""The synchronous on-policy loop (``training_loop="on_policy"``): PPO and its kind.

Each iteration: ship the current weights to every env runner, gather one fragment from each
(``max(1, num_env_runners) * num_envs_per_env_runner * rollout_fragment_length`` env
steps), compute GAE, train on the batch for ``num_epochs`` passes of ``minibatch_size``
rows, then run the non-gradient update. What it needs from an algorithm is in
``OnPolicySettings`` and the docs' "Training loops" page.

With a PettingZoo env the batch is a ``MultiAgentBatch``: every module trains on the rows
of the agents mapped to it (a module that sampled nothing this iteration sits it out), and
learner results are reported per module (``learner/MODULE/NAME``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from learnerkit import MultiAgentBatch
from learnerkit.hookspecs import PER_ROW
from learnerkit.loops.contract import Iteration, Run, on_policy_batch
from learnerkit.model_config import check_fragments_hold_sequences, common_sequence_length


class OnPolicyLoop:
    """Sample with the latest weights, learn from that batch only, repeat."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.version = 0
        specs = run.runners.spec.module_specs
        check_fragments_hold_sequences(
            {m: spec.model_config for m, spec in specs.items()}, run.hps.rollout_fragment_length
        )

    @classmethod
    def learner_group_options(cls, hps: Any) -> dict[str, Any]:
        return {}

    def start(self) -> None:
        self._ship_weights()

    def _ship_weights(self) -> None:
        self.run.runners.set_weights(self.run.group.get_weights(), self.version)

    def step(self, timesteps: int) -> Iteration:
        run, hps = self.run, self.run.hps
        t0 = time.perf_counter()
        fragments = run.runners.sample()
        # Recurrent modules train on whole sequences of their max_seq_len steps.
        specs = run.runners.spec.module_specs
        seq_len = common_sequence_length({m: spec.model_config for m, spec in specs.items()})
        batch = on_policy_batch(
            fragments, gamma=hps.gamma, lambda_=hps.lambda_, sequence_length=seq_len
        )
        env_steps = sum(f.env_steps for f in fragments)
        t1 = time.perf_counter()
        results = run.group.update(
            batch,
            minibatch_size=hps.minibatch_size,
            num_epochs=hps.num_epochs,
            sequence_length=seq_len,
        )
        self.version += 1
        # The loop's contract: a module's `mean_kl` result comes back as sampled_kl_values.
        kl = {mid: r["mean_kl"] for mid, r in results.items() if "mean_kl" in r}
        extra = run.group.additional_update(timestep=timesteps + env_steps, sampled_kl_values=kl)
        self._ship_weights()
        metrics: dict[str, Any] = {
            "num_env_steps_trained": env_steps,
            "sample_time_s": t1 - t0,
            "learn_time_s": time.perf_counter() - t1,
        }
        metrics.update(run.runners.metrics())
        # Per-row values (hookspecs.PER_ROW) are for the loop, not for metrics.csv.
        results = {m: {k: v for k, v in r.items() if k != PER_ROW} for m, r in results.items()}
        if isinstance(batch, MultiAgentBatch):
            metrics["num_agent_steps_trained"] = batch.count
            for module_id, module_batch in batch.items():
                metrics[f"module_steps/{module_id}"] = module_batch.count
            for module_id in sorted(set(results) | set(extra)):
                learner = {**results.get(module_id, {}), **extra.get(module_id, {})}
                metrics.update({f"learner/{module_id}/{k}": v for k, v in learner.items()})
        else:
            learner = {**results[run.module_id], **extra[run.module_id]}
            metrics.update({f"learner/{name}": value for name, value in learner.items()})
        return Iteration(
            env_steps=env_steps,
            episodes=[e for f in fragments for e in f.episodes],
            metrics=metrics,
            agent_returns=[r for f in fragments for r in f.agent_returns],
        )

    def get_state(self) -> dict[str, Any]:
        return {"weights_version": self.version}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.version = int(state.get("weights_version", 0))
