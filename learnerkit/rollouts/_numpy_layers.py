"""The numpy pieces every numpy copy of a module is built from: the default modules'
activations, dense layer stacks, and the array functions ``learnerkit.distributions`` uses.
Public through ``learnerkit.rollouts.acting``, which re-exports them; here so that copies of
several module kinds (``acting``, ``recurrent_acting``) share them without importing each
other."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

__all__ = ["ACTIVATIONS", "DenseStack", "NumpyOps"]


def _silu(x: np.ndarray) -> np.ndarray:
    return x * (0.5 + 0.5 * np.tanh(0.5 * x))  # x * sigmoid(x), without exp overflow


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0),
    "elu": _elu,
    "silu": _silu,
}
"""The default modules' activations (``learnerkit.model_config.ACTIVATIONS``) in numpy."""


class NumpyOps:
    """The array functions ``learnerkit.distributions`` uses, in numpy, float32, sampling
    from the given generator."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def log_softmax(self, logits: np.ndarray) -> np.ndarray:
        shifted = logits - logits.max(axis=-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))

    def take_along_last(self, x: np.ndarray, indices: np.ndarray) -> np.ndarray:
        return np.take_along_axis(x, indices[..., None].astype(np.int64), axis=-1)[..., 0]

    def sample_categorical(self, logits: np.ndarray) -> np.ndarray:
        # Gumbel-max, as the torch and TF ops sample.
        u = np.maximum(self.rng.random(logits.shape, dtype=np.float32), np.float32(1e-20))
        return (logits - np.log(-np.log(u))).argmax(axis=-1)

    def random_normal_like(self, x: np.ndarray) -> np.ndarray:
        return self.rng.standard_normal(x.shape, dtype=np.float32)

    def argmax_last(self, x: np.ndarray) -> np.ndarray:
        return x.argmax(axis=-1)

    def split_last(self, x: np.ndarray, parts: int) -> tuple[np.ndarray, ...]:
        return tuple(np.split(x, parts, axis=-1))

    def sum(self, x: np.ndarray, axis: int | None = None) -> np.ndarray:
        return np.sum(x, axis=axis)

    def exp(self, x: np.ndarray) -> np.ndarray:
        return np.exp(x)

    def square(self, x: np.ndarray) -> np.ndarray:
        return np.square(x)


@attrs.frozen
class DenseStack:
    """Dense layers ``x @ kernel + bias`` with the activation between them (and after the
    last if ``act_last``, as a shared encoder has it). Kernels are ``[in, out]``."""

    kernels: Sequence[np.ndarray]
    biases: Sequence[np.ndarray]
    act_last: bool = False

    def __call__(self, x: np.ndarray, activation: Any) -> np.ndarray:
        last = len(self.kernels) - 1
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases, strict=True)):
            x = x @ kernel + bias
            if i < last or self.act_last:
                x = activation(x)
        return x
