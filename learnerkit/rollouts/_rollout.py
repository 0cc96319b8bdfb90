"""A fragment of sampling as time-major arrays, and the batches a Learner trains on.

`Rollout.to_sample_batch` adds GAE advantages and value targets and flattens it into the
`SampleBatch` the on-policy loop trains on; `Rollout.to_sequences` flattens it env by env
into sequences of T consecutive steps for losses that run along time (V-trace, in the
asynchronous loop).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import numpy as np

from learnerkit._batch import Columns, SampleBatch
from learnerkit.errors import BatchError
from learnerkit.rollouts._postprocessing import compute_gae

__all__ = ["Rollout"]

# What GAE needs beyond what every fragment has.
_ACTOR_CRITIC = ("vf_preds", "action_logp", "action_dist_inputs", "next_values")


@attrs.frozen(eq=False)
class Rollout:
    """One fragment of `T` steps from `N` environments; every array is time-major `[T, N, ...]`.

    `next_obs[t, n]` is the observation that step t reached: the next step's observation
    while the episode goes on, the episode's final observation when it ended at step t, and
    the observation after the fragment's last step. `next_values[t, n]` is V of it (see
    `compute_gae`), as the sampling module saw it: the next step's `vf_preds` while the
    episode goes on, `value_fn` of the final observation when a time limit truncated it, 0
    when it terminated, and `value_fn` of the current observation after the last step.

    The actor-critic columns (`vf_preds`, `action_logp`, `action_dist_inputs`, and
    `next_values`, which comes with `vf_preds`) are None when the loop did not ask the policy
    for them (``EnvRunnerSpec.policy_outputs``): a replay loop's fragments hold only what
    was sampled.

    ``extra`` holds further per-step columns by name, ``[T, N, ...]`` too: what a recurrent
    module's runner records (``state_in``, ``prev_actions``, ``prev_rewards``).
    """

    obs: np.ndarray
    next_obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminateds: np.ndarray
    truncateds: np.ndarray
    vf_preds: np.ndarray | None = None
    action_logp: np.ndarray | None = None
    action_dist_inputs: np.ndarray | None = None
    next_values: np.ndarray | None = None
    extra: Mapping[str, np.ndarray] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        leading = self.rewards.shape
        arrays = {f.name: getattr(self, f.name) for f in attrs.fields(Rollout) if f.name != "extra"}
        arrays.update({f"extra[{name!r}]": array for name, array in self.extra.items()})
        for name, array in arrays.items():
            if array is not None and array.shape[:2] != leading:
                raise BatchError(
                    f"Rollout.{name} has shape {array.shape}; every array must start "
                    f"with [T, N] = {list(leading)}"
                )

    @property
    def num_steps(self) -> int:
        return self.rewards.shape[0]

    @property
    def num_envs(self) -> int:
        return self.rewards.shape[1]

    def to_sample_batch(
        self, *, gamma: float, lambda_: float, sequence_length: int | None = None
    ) -> SampleBatch:
        """Compute GAE and flatten to `T * N` rows, time-major: row `t * N + n` is step t of
        environment n (a free reshape; PPO shuffles the rows anyway).

        With ``sequence_length=L`` (a recurrent module's ``max_seq_len``, which must divide
        T) the rows go env by env instead, as `to_sequences` orders them: every L rows from
        row 0 on are L consecutive steps of one env (train with ``sequence_length=L``)."""
        missing = [name for name in _ACTOR_CRITIC if getattr(self, name) is None]
        if missing:
            raise BatchError(
                f"Rollout.to_sample_batch computes GAE, but this fragment has no {missing}: "
                "sample with the actor-critic policy outputs (EnvRunnerSpec.policy_outputs, "
                "the default)"
            )
        advantages, value_targets = compute_gae(
            self.rewards,
            self.vf_preds,
            self.next_values,
            self.terminateds,
            self.truncateds,
            gamma=gamma,
            lambda_=lambda_,
        )
        rows = self.num_steps * self.num_envs
        if sequence_length is not None and self.num_steps % sequence_length:
            raise BatchError(
                f"a fragment of {self.num_steps} steps does not split into sequences of "
                f"{sequence_length}: make rollout_fragment_length a multiple of the module's "
                "max_seq_len"
            )

        def flat(array: np.ndarray) -> np.ndarray:
            if sequence_length is not None:
                array = np.swapaxes(array, 0, 1)
            return array.reshape(rows, *array.shape[2:])

        return SampleBatch(
            {
                **{name: flat(array) for name, array in self.extra.items()},
                Columns.OBS: flat(self.obs),
                Columns.ACTIONS: flat(self.actions),
                Columns.REWARDS: flat(self.rewards),
                Columns.TERMINATEDS: flat(self.terminateds),
                Columns.TRUNCATEDS: flat(self.truncateds),
                Columns.VF_PREDS: flat(self.vf_preds),
                Columns.ACTION_LOGP: flat(self.action_logp),
                Columns.ACTION_DIST_INPUTS: flat(self.action_dist_inputs),
                Columns.ADVANTAGES: flat(advantages),
                Columns.VALUE_TARGETS: flat(value_targets),
            }
        )

    def to_sequences(self) -> SampleBatch:
        """Flatten env by env: rows `n * T` to `n * T + T - 1` are the T consecutive steps of
        environment n (train with `sequence_length=T`). Holds the sampled columns and
        `new_obs`, no GAE: a loss that runs V-trace computes its own targets from them."""

        def by_env(array: np.ndarray) -> np.ndarray:
            rows = self.num_envs * self.num_steps
            return np.swapaxes(array, 0, 1).reshape(rows, *array.shape[2:])

        columns = {
            Columns.OBS: self.obs,
            Columns.NEXT_OBS: self.next_obs,
            Columns.ACTIONS: self.actions,
            Columns.REWARDS: self.rewards,
            Columns.TERMINATEDS: self.terminateds,
            Columns.TRUNCATEDS: self.truncateds,
            Columns.VF_PREDS: self.vf_preds,
            Columns.ACTION_LOGP: self.action_logp,
            Columns.ACTION_DIST_INPUTS: self.action_dist_inputs,
            **self.extra,
        }
        return SampleBatch({k: by_env(v) for k, v in columns.items() if v is not None})

    @staticmethod
    def concat(rollouts: list[Rollout]) -> Rollout:
        """Fragments of the same length side by side: `[T, N1 + N2 + ..., ...]`."""
        if len({r.num_steps for r in rollouts}) != 1:
            raise BatchError(
                "Rollout.concat: fragments have different lengths "
                f"{[r.num_steps for r in rollouts]}; concatenate fragments of one length"
            )
        if len(rollouts) == 1:
            return rollouts[0]
        kept = [
            f.name
            for f in attrs.fields(Rollout)
            if f.name != "extra" and getattr(rollouts[0], f.name) is not None
        ]
        extra = sorted(rollouts[0].extra)
        if any(getattr(r, name) is None for r in rollouts for name in kept) or any(
            sorted(r.extra) != extra for r in rollouts
        ):
            raise BatchError(
                "Rollout.concat: fragments hold different columns; concatenate fragments "
                "sampled with the same policy outputs"
            )
        return Rollout(
            **{name: np.concatenate([getattr(r, name) for r in rollouts], axis=1) for name in kept},
            extra={n: np.concatenate([r.extra[n] for r in rollouts], axis=1) for n in extra},
        )
