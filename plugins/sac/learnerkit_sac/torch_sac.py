"""SAC's module in torch: the policy, the twin Q-networks and the temperature's logarithm
in one ``nn.Module`` (weight names and maths: ``sac_module``). Layers start as torch's
``nn.Linear`` draws them, as in SB3 and RLlib."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from learnerkit import Columns
from learnerkit_sac.sac_module import (
    LOG_STD_MAX,
    LOG_STD_MIN,
    action_scale,
    resolve_sac_config,
    towers,
)

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}
_LOG_2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _mlp(sizes: list[int], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), activation()]
    return nn.Sequential(*layers[:-1])


class TorchSACModule(nn.Module):
    """SAC's policy and critics (see ``sac_module``)."""

    numpy_copy = "learnerkit_sac.sac_module:NumpySACPolicy"
    """What env runners act with (``learnerkit.rollouts.acting.NumpyModule``)."""

    def __init__(self, observation_space: Any, action_space: Any, model_config: Mapping) -> None:
        super().__init__()
        config = resolve_sac_config(model_config)
        sizes = towers(observation_space, action_space, model_config)
        act = _ACTIVATIONS[config["activation"]]
        self.pi = _mlp(sizes["pi"], act)
        self.qf = _mlp(sizes["qf"], act)
        self.qf_twin = _mlp(sizes["qf_twin"], act) if config["twin_q"] else None
        self.log_alpha = nn.Parameter(torch.tensor(math.log(float(config["initial_alpha"]))))
        centre, half = action_scale(action_space)
        self.register_buffer("action_centre", torch.from_numpy(centre), persistent=False)
        self.register_buffer("action_half", torch.from_numpy(half), persistent=False)
        self.action_shape = tuple(action_space.shape)
        self.action_size = len(centre)

    # The policy --------------------------------------------------------------------------
    def mean_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.pi(obs.flatten(1).to(torch.float32)).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(
        self, mean: torch.Tensor, log_std: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised squashed action ``u`` in [-1, 1] of the policy's Gaussian
        ``mean``, ``log_std`` and its log-probability; the noise drawn from ``generator``
        (the loss passes ``Learner.loss_generator``; None: torch's global generator)."""
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        x = mean + log_std.exp() * noise
        gaussian = (-0.5 * noise.square() - log_std - _HALF_LOG_2PI).sum(-1)
        # log(1 - tanh(x)^2) = 2 (log 2 - x - softplus(-2x)), stable for large |x|.
        squash = (2.0 * (_LOG_2 - x - nn.functional.softplus(-2.0 * x))).sum(-1)
        return torch.tanh(x), gaussian - squash

    def to_box(self, u: torch.Tensor) -> torch.Tensor:
        return (self.action_centre + self.action_half * u).reshape(len(u), *self.action_shape)

    def from_box(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions.flatten(1).to(torch.float32) - self.action_centre) / self.action_half

    # The critics -------------------------------------------------------------------------
    def q_values(self, obs: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Q of each critic for observations and squashed actions ``u``, ``[B]`` each."""
        x = torch.cat([obs.flatten(1).to(torch.float32), u], dim=-1)
        critics = (self.qf,) if self.qf_twin is None else (self.qf, self.qf_twin)
        return tuple(q(x).squeeze(-1) for q in critics)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """The training pass: the policy's Gaussian on ``obs`` (for the actor's loss) and on
        ``new_obs`` (no gradient: the target's next action), each critic on the batch's
        actions. The loss draws the actions from these Gaussians with the learner's
        generator, which a forward pass does not see (see ``learnerkit_sac``). Separate
        calls rather than one on stacked rows: each loss's backward pass then runs over its
        own rows only."""
        obs = batch[Columns.OBS]
        with torch.no_grad():
            pi_next = self.mean_log_std(batch[Columns.NEXT_OBS])
        return {
            "q": self.q_values(obs, self.from_box(batch[Columns.ACTIONS])),
            "pi": self.mean_log_std(obs),
            "pi_next": pi_next,
            "log_alpha": self.log_alpha,
        }

    forward_train = forward

    @torch.no_grad()
    def forward_exploration(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        return {Columns.ACTIONS: self.to_box(self.sample(*self.mean_log_std(obs))[0])}

    @torch.no_grad()
    def forward_inference(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The mean action (deterministic evaluation)."""
        return {Columns.ACTIONS: self.to_box(torch.tanh(self.mean_log_std(obs)[0]))}
