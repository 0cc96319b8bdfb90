"""The default modules' conv encoder in numpy (``learnerkit.conv_encoders``), for the env
runners' copy of a pixel module: each convolution is one matrix product over the image's
patches (im2col), which keeps the runner free of torch and TensorFlow.

Per-step cost against the framework module with one thread is measured by
``bench/conv_acting.py`` and stated in ``docs/guides/pixels.md``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from learnerkit.conv_encoders import ConvStack

__all__ = ["NumpyConvStack"]


@attrs.frozen
class NumpyConvStack:
    """Convolutions as ``patches @ matrix + bias``: ``matrices[i]`` is ``[in * k * k, out]``
    with rows in (channel, row, column) order, the order of ``_patches``' columns."""

    matrices: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    scale: float

    @classmethod
    def from_weights(
        cls, weights: Mapping[str, np.ndarray], stack: ConvStack, tower: str, framework: str
    ) -> NumpyConvStack:
        matrices, biases = [], []
        for i, (c_in, c_out, k, _) in enumerate(stack.layers):
            if framework == "torch":
                weight = np.asarray(weights[f"{tower}.{2 * i}.weight"], np.float32)
            else:  # [k, k, in, out] -> [out, in, k, k]
                kernel = np.asarray(weights[f"{tower}.{2 * i}.kernel"], np.float32)
                weight = kernel.transpose(3, 2, 0, 1)
            matrices.append(np.ascontiguousarray(weight.reshape(c_out, c_in * k * k).T))
            biases.append(np.array(weights[f"{tower}.{2 * i}.bias"], np.float32))
        return cls(
            matrices=tuple(matrices),
            biases=tuple(biases),
            kernels=tuple(k for *_, k, _ in stack.layers),
            strides=tuple(s for *_, s in stack.layers),
            scale=stack.scale,
        )

    def __call__(self, obs: np.ndarray, activation: Any) -> np.ndarray:
        """Flat features, in HWC order, of ``[B, H, W, C]`` observations."""
        x = np.asarray(obs, dtype=np.float32)
        if self.scale != 1.0:
            x = x * np.float32(self.scale)
        for matrix, bias, k, s in zip(
            self.matrices, self.biases, self.kernels, self.strides, strict=True
        ):
            patches = _patches(x, k, s)
            b, h, w = patches.shape[:3]
            x = activation(patches.reshape(b * h * w, -1) @ matrix + bias).reshape(b, h, w, -1)
        return x.reshape(len(x), -1)


def _patches(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """``[B, H', W', C, k, k]``: each output position's input window, no padding."""
    windows = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(1, 2))
    return windows[:, ::stride, ::stride]
