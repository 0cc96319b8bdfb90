"""The torch conv encoder of the default modules (``learnerkit.conv_encoders``): HWC pixels
in, flat features out, in HWC order like the TensorFlow and numpy ones. Public: a module of
its own (DQN's Q-network, a recurrent module) puts the same encoder first."""

from __future__ import annotations

import math

import torch
from torch import nn

from learnerkit.conv_encoders import ConvStack

__all__ = ["TorchConvEncoder"]

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}


class TorchConvEncoder(nn.Sequential):
    """``stack``'s convolutions (weights ``<name>.<2i>.weight``), orthogonally initialised
    with gain sqrt(2) as the MLP layers; ``forward`` takes ``[B, H, W, C]`` observations of
    any dtype (uint8 pixels are scaled inside, so batches stay uint8 until here)."""

    def __init__(self, stack: ConvStack) -> None:
        layers: list[nn.Module] = []
        for c_in, c_out, kernel, stride in stack.layers:
            conv = nn.Conv2d(c_in, c_out, kernel, stride)
            nn.init.orthogonal_(conv.weight, math.sqrt(2))
            nn.init.zeros_(conv.bias)
            layers += [conv, _ACTIVATIONS[stack.activation]()]
        super().__init__(*layers)
        self.scale = stack.scale
        self.output_size = stack.output_size

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.to(torch.float32)
        if self.scale != 1.0:
            x = x * self.scale
        x = super().forward(x.permute(0, 3, 1, 2))
        return x.permute(0, 2, 3, 1).flatten(1)
