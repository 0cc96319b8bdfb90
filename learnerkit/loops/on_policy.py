"""The synchronous on-policy loop (``training_loop="on_policy"``): PPO and its kind.

Each iteration: ship the current weights to every env runner, gather one fragment from each
(``max(1, num_env_runners) * num_envs_per_env_runner * rollout_fragment_length`` steps),
compute GAE, train on the batch for ``num_epochs`` passes of ``minibatch_size`` rows, then
run the non-gradient update. What it needs from an algorithm is in ``OnPolicySettings`` and
the README's plugin section.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from learnerkit.loops.contract import Iteration, Run
from learnerkit.rollouts.env_runner import Rollout


class OnPolicyLoop:
    """Sample with the latest weights, learn from that batch only, repeat."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.version = 0

    @classmethod
    def learner_group_options(cls, hps: Any) -> dict[str, Any]:
        return {}

    def start(self) -> None:
        self._ship_weights()

    def _ship_weights(self) -> None:
        weights = self.run.group.get_weights()[self.run.module_id]
        self.run.runners.set_weights(weights, self.version)

    def step(self, timesteps: int) -> Iteration:
        run, hps = self.run, self.run.hps
        t0 = time.perf_counter()
        fragments = run.runners.sample()
        rollout = Rollout.concat([f.rollout for f in fragments])
        batch = rollout.to_sample_batch(gamma=hps.gamma, lambda_=hps.lambda_)
        t1 = time.perf_counter()
        results = run.group.update(
            batch, minibatch_size=hps.minibatch_size, num_epochs=hps.num_epochs
        )
        self.version += 1
        # The loop's contract: a module's `mean_kl` result comes back as sampled_kl_values.
        kl = {mid: r["mean_kl"] for mid, r in results.items() if "mean_kl" in r}
        extra = run.group.additional_update(timestep=timesteps + batch.count, sampled_kl_values=kl)
        self._ship_weights()
        metrics: dict[str, Any] = {
            "num_env_steps_trained": batch.count,
            "sample_time_s": t1 - t0,
            "learn_time_s": time.perf_counter() - t1,
        }
        metrics.update(run.runners.metrics())
        learner = {**results[run.module_id], **extra[run.module_id]}
        metrics.update({f"learner/{name}": value for name, value in learner.items()})
        return Iteration(
            env_steps=batch.count,
            episodes=[e for f in fragments for e in f.episodes],
            metrics=metrics,
        )

    def get_state(self) -> dict[str, Any]:
        return {"weights_version": self.version}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.version = int(state.get("weights_version", 0))
