"""The TensorFlow conv encoder of the default modules (``learnerkit.conv_encoders``): HWC
pixels in, flat features out, in HWC order like the torch and numpy ones. Public: a module of
its own (DQN's Q-network, a recurrent module) puts the same encoder first."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from learnerkit.conv_encoders import ConvStack

__all__ = ["TFConvEncoder", "orthogonal_kernel"]

_ACTIVATIONS = {"tanh": tf.tanh, "relu": tf.nn.relu, "elu": tf.nn.elu, "silu": tf.nn.silu}


def orthogonal_kernel(rng: np.random.Generator, n_in: int, n_out: int, gain: float) -> np.ndarray:
    """``torch.nn.init.orthogonal_`` on an ``[n_out, n_in]`` weight, returned as an
    ``[n_in, n_out]`` kernel."""
    rows, cols = n_out, n_in
    flat = rng.standard_normal((rows, cols) if rows >= cols else (cols, rows))
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))  # makes the decomposition unique, hence uniformly distributed
    weight = q if rows >= cols else q.T
    return (gain * weight).T.astype(np.float32)


class TFConvEncoder(tf.Module):
    """``stack``'s convolutions (variables ``<prefix>.<2i>.kernel``, ``[k, k, in, out]``, and
    ``.bias``), orthogonal with gain sqrt(2) from ``rng``; called on ``[B, H, W, C]``
    observations of any dtype (uint8 pixels are scaled inside)."""

    def __init__(self, prefix: str, stack: ConvStack, rng: np.random.Generator) -> None:
        super().__init__(name=None)
        self.activation: Any = _ACTIVATIONS[stack.activation]
        self.scale = stack.scale
        self.strides = [s for *_, s in stack.layers]
        self.output_size = stack.output_size
        self.kernels, self.biases = [], []
        for i, (c_in, c_out, k, _) in enumerate(stack.layers):
            kernel = orthogonal_kernel(rng, k * k * c_in, c_out, math.sqrt(2))
            self.kernels.append(
                tf.Variable(kernel.reshape(k, k, c_in, c_out), name=f"{prefix}.{2 * i}.kernel")
            )
            self.biases.append(tf.Variable(tf.zeros([c_out]), name=f"{prefix}.{2 * i}.bias"))

    def __call__(self, obs: tf.Tensor) -> tf.Tensor:
        x = tf.cast(obs, tf.float32)
        if self.scale != 1.0:
            x = x * self.scale
        for kernel, bias, stride in zip(self.kernels, self.biases, self.strides, strict=True):
            x = self.activation(tf.nn.conv2d(x, kernel, stride, "VALID") + bias)
        return tf.reshape(x, [-1, self.output_size])
