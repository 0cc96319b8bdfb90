"""What the contract kit tests: a ``Subject`` (an algorithm with the settings and spaces to
test it in) and the synthetic batches it trains on, every column a built-in loop produces,
with the dtypes it gives."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import gymnasium as gym
import numpy as np

import learnerkit
from learnerkit import Algorithm, Columns, LearnerkitError
from learnerkit.replay import ReplayColumns

BOX_OBS = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
TWO_ACTIONS = gym.spaces.Discrete(2)


@attrs.frozen(kw_only=True)
class Subject:
    """An algorithm under test and what to test it with."""

    algorithm: str
    hyperparameters: Mapping[str, Any] = attrs.field(factory=dict)
    """Overrides of the algorithm's defaults (small sizes keep the checks fast)."""
    observation_space: Any = BOX_OBS
    action_space: Any = TWO_ACTIONS
    rows: int = 64
    """Rows per batch (sequence loops: two fragments of ``rollout_fragment_length``)."""
    allow_no_gradient: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    """``fnmatch`` patterns of parameter names the loss may leave without a gradient (BC
    does not train the default module's value tower: ``("vf.*",)``)."""
    additional_update_kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    """Extra keyword arguments for ``additional_update`` (the built-in loops' are given)."""

    @property
    def declared(self) -> Algorithm:
        return learnerkit.get_algorithm(self.algorithm)

    def hps(self) -> Any:
        return self.declared.hyperparameters(**self.hyperparameters)

    def spec(self, framework: str, **kwargs: Any) -> learnerkit.LearnerSpec:
        module_spec = learnerkit.ModuleSpec(self.observation_space, self.action_space)
        return learnerkit.LearnerSpec(
            algorithm=self.algorithm,
            framework=framework,
            module_spec=module_spec,
            hyperparameters=self.hps(),
            **kwargs,
        )

    def learner(self, framework: str) -> learnerkit.Learner:
        spec = self.spec(framework)
        learner = (spec.learner_class or learnerkit.Learner)(spec)
        learner.build()
        return learner

    def sequence_length(self) -> int | None:
        """The loop's sequence length, for a loop that trains on whole sequences."""
        loop = self.declared.training_loop
        info = _loop_or_none(loop) if loop is not None else None
        if info is None or not info.sequences:
            return None
        return getattr(self.hps(), "rollout_fragment_length", None)

    def batch(self, seed: int = 0) -> learnerkit.SampleBatch:
        length = self.sequence_length()
        rows = 2 * length if length else self.rows
        return synthetic_batch(
            rows, self.observation_space, self.action_space, seed, sequence_length=length
        )

    def update(self, learner: Any, batch: Any) -> dict[str, Any]:
        return learner.update(batch, num_epochs=1, sequence_length=self.sequence_length())

    def additional_update(self, learner: Any, timestep: int) -> dict[str, Any]:
        kwargs = {
            "sampled_kl_values": {mid: 0.01 for mid in learner.module},
            "num_updates": 1,
            **self.additional_update_kwargs,
        }
        return learner.additional_update(timestep=timestep, **kwargs)


def _loop_or_none(name: str) -> Any:
    try:
        return learnerkit.get_training_loop(name)
    except LearnerkitError:
        return None


def synthetic_batch(
    rows: int,
    observation_space: Any,
    action_space: Any,
    seed: int = 0,
    *,
    sequence_length: int | None = None,
) -> learnerkit.SampleBatch:
    """A batch with every column the built-in loops produce, consistent where a loss relies
    on it (``action_logp`` is the log-probability of ``actions`` under
    ``action_dist_inputs``; ``value_targets`` = ``vf_preds + advantages``)."""
    rng = np.random.default_rng(seed)

    def observations() -> np.ndarray:
        low = np.nan_to_num(observation_space.low, neginf=-1.0, posinf=1.0)
        high = np.nan_to_num(observation_space.high, neginf=-1.0, posinf=1.0)
        shape = (rows, *observation_space.shape)
        return rng.uniform(low, high, size=shape).astype(observation_space.dtype)

    if hasattr(action_space, "n"):
        logits = rng.normal(size=(rows, int(action_space.n))).astype(np.float32)
        actions = rng.integers(0, action_space.n, size=rows)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        action_logp = log_probs[np.arange(rows), actions]
    else:
        size = int(np.prod(action_space.shape))
        mean = rng.normal(scale=0.1, size=(rows, size)).astype(np.float32)
        log_std = np.full((rows, size), -0.5, np.float32)
        logits = np.concatenate([mean, log_std], axis=1)
        actions = (mean + np.exp(log_std) * rng.normal(size=mean.shape)).astype(np.float32)
        actions = np.clip(actions, action_space.low, action_space.high).reshape(rows, -1)
        z = (actions - mean) / np.exp(log_std)
        action_logp = (-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi)).sum(axis=1)
    terminateds = np.zeros(rows, bool)
    ends = sequence_length or 16
    terminateds[ends - 1 :: ends] = True  # episodes end inside the batch, as sampled ones do
    vf_preds = rng.normal(size=rows).astype(np.float32)
    advantages = rng.normal(size=rows).astype(np.float32)
    return learnerkit.SampleBatch(
        {
            Columns.OBS: observations(),
            Columns.NEXT_OBS: observations(),
            Columns.ACTIONS: actions,
            Columns.REWARDS: rng.normal(size=rows).astype(np.float32),
            Columns.TERMINATEDS: terminateds,
            Columns.TRUNCATEDS: np.zeros(rows, bool),
            Columns.VF_PREDS: vf_preds,
            Columns.ACTION_DIST_INPUTS: logits,
            Columns.ACTION_LOGP: action_logp.astype(np.float32),
            Columns.ADVANTAGES: advantages,
            Columns.VALUE_TARGETS: vf_preds + advantages,
            ReplayColumns.DISCOUNTS: np.where(terminateds, 0.0, 0.99).astype(np.float32),
            ReplayColumns.WEIGHTS: np.ones(rows, np.float32),
            ReplayColumns.BATCH_INDEXES: np.arange(rows, dtype=np.int64),
        }
    )
