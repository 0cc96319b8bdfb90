"""Action distributions written once over ``ops``, so torch and TensorFlow share them.

Public for modules of one's own: the default modules' ``action_dist`` returns one
(``dist_class_for(action_space)``), and ``exploration_outputs`` is what their
``forward_exploration`` returns."""

from __future__ import annotations

import math
from typing import Any

from learnerkit._batch import Columns
from learnerkit.ops import Ops, Tensor

__all__ = ["Categorical", "DiagGaussian", "dist_class_for", "exploration_outputs"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class Categorical:
    """A categorical distribution over ``K`` actions from logits ``[B, K]``."""

    def __init__(self, inputs: Tensor, ops: Ops) -> None:
        self.ops = ops
        self.logits = inputs
        self.log_probs = ops.log_softmax(inputs)

    @classmethod
    def inputs_size(cls, action_space: Any) -> int:
        return int(action_space.n)

    def logp(self, actions: Tensor) -> Tensor:
        return self.ops.take_along_last(self.log_probs, actions)

    def entropy(self) -> Tensor:
        return -self.ops.sum(self.ops.exp(self.log_probs) * self.log_probs, axis=-1)

    def kl(self, other: Categorical) -> Tensor:
        """KL(self || other), per row."""
        diff = self.log_probs - other.log_probs
        return self.ops.sum(self.ops.exp(self.log_probs) * diff, axis=-1)

    def sample(self) -> Tensor:
        return self.ops.sample_categorical(self.logits)

    def deterministic_sample(self) -> Tensor:
        return self.ops.argmax_last(self.logits)


class DiagGaussian:
    """A diagonal Gaussian from inputs ``[B, 2 * D]``: means, then log standard deviations."""

    def __init__(self, inputs: Tensor, ops: Ops) -> None:
        self.ops = ops
        self.mean, self.log_std = ops.split_last(inputs, 2)
        self.std = ops.exp(self.log_std)

    @classmethod
    def inputs_size(cls, action_space: Any) -> int:
        return 2 * int(math.prod(action_space.shape))

    def logp(self, actions: Tensor) -> Tensor:
        z = (actions - self.mean) / self.std
        return self.ops.sum(-0.5 * self.ops.square(z) - self.log_std - _HALF_LOG_2PI, axis=-1)

    def entropy(self) -> Tensor:
        return self.ops.sum(self.log_std + (0.5 + _HALF_LOG_2PI), axis=-1)

    def kl(self, other: DiagGaussian) -> Tensor:
        """KL(self || other), per row."""
        ratio = (self.ops.square(self.std) + self.ops.square(self.mean - other.mean)) / (
            2.0 * self.ops.square(other.std)
        )
        return self.ops.sum(other.log_std - self.log_std + ratio - 0.5, axis=-1)

    def sample(self) -> Tensor:
        return self.mean + self.std * self.ops.random_normal_like(self.mean)

    def deterministic_sample(self) -> Tensor:
        return self.mean


def dist_class_for(action_space: Any) -> type[Categorical] | type[DiagGaussian]:
    """The distribution the default modules use for ``action_space``."""
    return Categorical if hasattr(action_space, "n") else DiagGaussian


def exploration_outputs(dist: Any, dist_inputs: Tensor, value: Tensor) -> dict[str, Tensor]:
    """What a module returns when acting: sampled actions with what the learner needs."""
    actions = dist.sample()
    return {
        Columns.ACTIONS: actions,
        Columns.ACTION_LOGP: dist.logp(actions),
        Columns.VF_PREDS: value,
        Columns.ACTION_DIST_INPUTS: dist_inputs,
    }
