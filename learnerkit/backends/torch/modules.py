"""The default torch RL module: an MLP actor-critic for Discrete and Box action spaces, with
a conv encoder first for image observations (``learnerkit.conv_encoders``). Public so that a
module of one's own can build on it (``ModuleSpec(module_class=MySubclass)``)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from learnerkit._batch import Columns
from learnerkit.backends.torch.encoders import TorchConvEncoder
from learnerkit.conv_encoders import conv_stack, module_config_for
from learnerkit.distributions import dist_class_for, exploration_outputs

__all__ = ["TorchMLPActorCritic"]

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}


def _mlp(sizes: list[int], activation: type[nn.Module], out_gain: float) -> nn.Sequential:
    # Orthogonal init with these gains is what makes PPO reliable on small control tasks
    # (Engstrom et al. 2020, "Implementation Matters in Deep RL").
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        linear = nn.Linear(n_in, n_out)
        last = i == len(sizes) - 2
        nn.init.orthogonal_(linear.weight, out_gain if last else math.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(activation())
    return nn.Sequential(*layers)


class TorchMLPActorCritic(nn.Module):
    """Separate (or shared, ``vf_share_layers``) MLPs for the policy and the value function,
    each after its own conv encoder (or one shared) for image observations.

    For a Box action space the log standard deviation is a free parameter per action
    dimension, independent of the observation.
    """

    numpy_copy = "learnerkit.rollouts.acting:NumpyActorCritic"
    """What env runners act with: a numpy copy of this module (``ModuleSpec.numpy_copy``)."""

    def __init__(self, observation_space: Any, action_space: Any, model_config: Mapping) -> None:
        super().__init__()
        from learnerkit.backends.torch._ops import TORCH_OPS

        config = module_config_for(model_config, observation_space)
        self.ops = TORCH_OPS
        self.action_dist_class = dist_class_for(action_space)
        self.continuous = not hasattr(action_space, "n")
        obs_dim = int(np.prod(observation_space.shape))
        stack = conv_stack(observation_space, config)
        self.conv = self.pi_conv = self.vf_conv = None
        if stack is not None:
            obs_dim = stack.output_size
            if config["vf_share_layers"]:
                self.conv = TorchConvEncoder(stack)
            else:
                self.pi_conv, self.vf_conv = TorchConvEncoder(stack), TorchConvEncoder(stack)
        hiddens = [int(h) for h in config["hiddens"]]
        act = _ACTIVATIONS[config["activation"]]
        n_out = self.action_dist_class.inputs_size(action_space)
        n_policy_out = n_out // 2 if self.continuous else n_out
        self.shared = config["vf_share_layers"]
        if self.shared:
            self.encoder = _mlp([obs_dim, *hiddens], act, math.sqrt(2))
            self.encoder.append(act())
            self.pi = _mlp([hiddens[-1], n_policy_out], act, 0.01)
            self.vf = _mlp([hiddens[-1], 1], act, 1.0)
        else:
            self.pi = _mlp([obs_dim, *hiddens, n_policy_out], act, 0.01)
            self.vf = _mlp([obs_dim, *hiddens, 1], act, 1.0)
        if self.continuous:
            self.log_std = nn.Parameter(torch.full((n_policy_out,), config["initial_log_std"]))

    def _dist_inputs_and_value(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.conv is not None:
            obs = self.conv(obs)
        elif self.pi_conv is None:
            obs = obs.flatten(1).to(torch.float32)  # integer or bool observations, as TF's
        if self.shared:
            features = self.encoder(obs)
            logits, value = self.pi(features), self.vf(features)
        elif self.pi_conv is not None:
            logits, value = self.pi(self.pi_conv(obs)), self.vf(self.vf_conv(obs))
        else:
            logits, value = self.pi(obs), self.vf(obs)
        if self.continuous:
            logits = torch.cat([logits, self.log_std.expand_as(logits)], dim=-1)
        return logits, value.squeeze(-1)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The training forward pass (``forward`` so DistributedDataParallel hooks see it)."""
        dist_inputs, value = self._dist_inputs_and_value(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: dist_inputs, Columns.VF_PREDS: value}

    forward_train = forward

    def action_dist(self, dist_inputs: torch.Tensor):
        return self.action_dist_class(dist_inputs, self.ops)

    @torch.no_grad()
    def forward_exploration(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Sample actions for acting in the environment, with what the learner needs."""
        dist_inputs, value = self._dist_inputs_and_value(obs)
        return exploration_outputs(self.action_dist(dist_inputs), dist_inputs, value)

    @torch.no_grad()
    def forward_inference(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Greedy actions for evaluation."""
        dist_inputs, _ = self._dist_inputs_and_value(obs)
        return {Columns.ACTIONS: self.action_dist(dist_inputs).deterministic_sample()}

    @torch.no_grad()
    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self._dist_inputs_and_value(obs)[1]
