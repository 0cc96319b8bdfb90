"""DQN's Q-network in torch: an MLP encoder and a Q head (or dueling value and advantage
heads), with the exploration epsilon as a buffer, so that it travels with the weights to
the env runners and into checkpoints. Weight names and maths: ``q_network``."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from learnerkit import Columns
from learnerkit.backends.torch.encoders import TorchConvEncoder
from learnerkit.conv_encoders import conv_stack
from learnerkit_dqn.q_network import EPSILON, heads, num_actions, resolve_q_config

Q_VALUES = "q_values"
Q_VALUES_NEXT = "q_values_next"
_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}


def _linear(n_in: int, n_out: int, gain: float) -> nn.Linear:
    linear = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(linear.weight, gain)
    nn.init.zeros_(linear.bias)
    return linear


class TorchQNetwork(nn.Module):
    """Q-values for every action of a Discrete space."""

    numpy_copy = "learnerkit_dqn.q_network:NumpyQNetwork"
    """What env runners act with (``learnerkit.rollouts.acting.NumpyModule``)."""

    def __init__(self, observation_space: Any, action_space: Any, model_config: Mapping) -> None:
        super().__init__()
        config = resolve_q_config(model_config, observation_space)
        self.n_actions = num_actions(action_space)
        stack = conv_stack(observation_space, config)
        self.conv = None if stack is None else TorchConvEncoder(stack)
        n_in = int(np.prod(observation_space.shape)) if stack is None else stack.output_size
        sizes = [n_in, *map(int, config["hiddens"])]
        layers: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(sizes):
            layers += [_linear(n_in, n_out, math.sqrt(2)), _ACTIVATIONS[config["activation"]]()]
        self.encoder = nn.Sequential(*layers)
        self.heads = list(heads(config, self.n_actions))
        for head, size in heads(config, self.n_actions).items():
            setattr(self, head, _linear(sizes[-1], size, 1.0))
        self.register_buffer(EPSILON, torch.tensor(1.0))

    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.flatten(1).to(torch.float32) if self.conv is None else self.conv(obs)
        features = self.encoder(x)
        if "q" in self.heads:
            return self.q(features)
        advantage = self.advantage(features)
        return self.value(features) + advantage - advantage.mean(dim=-1, keepdim=True)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The training forward pass: Q-values of ``obs`` and, in the same pass, of
        ``new_obs`` when the batch has it (double Q picks the next action with them)."""
        obs = batch[Columns.OBS]
        if Columns.NEXT_OBS not in batch:
            return {Q_VALUES: self.q_values(obs)}
        both = self.q_values(torch.cat([obs, batch[Columns.NEXT_OBS]]))
        return {Q_VALUES: both[: len(obs)], Q_VALUES_NEXT: both[len(obs) :]}

    forward_train = forward

    @torch.no_grad()
    def forward_exploration(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Epsilon-greedy actions."""
        actions = self.q_values(obs).argmax(dim=-1)
        explore = torch.rand(len(actions), device=actions.device) < self.epsilon
        random = torch.randint(self.n_actions, actions.shape, device=actions.device)
        return {Columns.ACTIONS: torch.where(explore, random, actions)}

    @torch.no_grad()
    def forward_inference(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Greedy actions."""
        return {Columns.ACTIONS: self.q_values(obs).argmax(dim=-1)}

    @torch.no_grad()
    def set_epsilon(self, value: float) -> None:
        self.epsilon.fill_(float(value))
