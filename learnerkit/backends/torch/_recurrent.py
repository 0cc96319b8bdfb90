"""The default recurrent torch module (``model_config["use_lstm"]``): encoder, LSTM, heads.

The encoder (the default module's MLP, with an activation after its last layer, after the
conv encoder ``conv`` for image observations, ``learnerkit.conv_encoders``) feeds an LSTM
of ``lstm_cell_size`` units, optionally with the previous action (one-hot for Discrete) and
reward appended to its input, as RLlib's ``use_lstm`` wrapper does; the LSTM's output
feeds a linear policy head and a linear value head. As in the feed-forward module,
``vf_share_layers=False`` (the default) gives the value function a trunk of its own
(``vf_conv``, ``vf_encoder``, ``vf_lstm``), as Stable-Baselines3's ``RecurrentPPO`` does with
``enable_critic_lstm``: on the masked CartPole a shared trunk learns the value's features,
which ignore the pole's direction the policy needs, and PPO does not learn at all.

State, one flat row per env: ``[h, c]`` of each trunk (``2 * lstm_cell_size`` floats per
trunk), zeros at an episode's start (``initial_state``). ``forward_train`` sees rows in
whole sequences of ``max_seq_len`` consecutive steps (the loop trains with
``sequence_length=max_seq_len``, or a multiple of it): it starts each from the ``state_in``
recorded at its first row and resets the state to zeros after a row whose episode ended
(``terminateds | truncateds``), so one sequence may hold the end of an episode and the start
of the next without padding. With ``lstm_burn_in=N`` the first N steps of each sequence
only warm the state up: no gradient flows back through them (R2D2's burn-in), and the
learner masks their rows out of the loss (``Columns.LOSS_MASK``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from learnerkit._batch import Columns
from learnerkit.backends.torch.encoders import TorchConvEncoder
from learnerkit.backends.torch.modules import _ACTIVATIONS, _mlp
from learnerkit.conv_encoders import conv_stack, module_config_for
from learnerkit.distributions import dist_class_for, exploration_outputs


def prev_action_size(action_space: Any) -> int:
    """How many inputs the previous action takes: a one-hot for Discrete, else its size."""
    if hasattr(action_space, "n"):
        return int(action_space.n)
    return int(np.prod(action_space.shape))


def _segments(ended: torch.Tensor) -> list[int]:
    """Where the time axis of ``ended [B, L]`` splits into segments no episode ends inside:
    ``[0, ..., L]``, cut after every step at which some sequence's episode ended."""
    seq_len = ended.shape[1]
    cuts = torch.nonzero(ended[:, :-1].any(dim=0)).flatten().tolist()
    return [0, *(t + 1 for t in cuts), seq_len]


def _at_step(column: torch.Tensor, b: int, seq_len: int, t: int) -> torch.Tensor:
    return column.reshape(b, seq_len, *column.shape[1:])[:, t]


class _Trunk(NamedTuple):
    """One trunk's pieces (registered on the module under their own names)."""

    conv: TorchConvEncoder | None
    encoder: nn.Module
    lstm: nn.LSTM


class TorchLSTMActorCritic(nn.Module):
    """Encoder, then LSTM, then policy and value heads (see the module docstring)."""

    numpy_copy = "learnerkit.rollouts._recurrent_acting:NumpyLSTMActorCritic"
    """What env runners act with (``ModuleSpec.numpy_copy``): a numpy copy, ~3.5x faster
    per step than this module on a runner's handful of envs (docs/guides/recurrent.md)."""

    def __init__(self, observation_space: Any, action_space: Any, model_config: Mapping) -> None:
        super().__init__()
        from learnerkit.backends.torch._ops import TORCH_OPS

        config = module_config_for(model_config, observation_space)
        self.ops = TORCH_OPS
        self.action_dist_class = dist_class_for(action_space)
        self.continuous = not hasattr(action_space, "n")
        self.discrete_n = None if self.continuous else int(action_space.n)
        act = _ACTIVATIONS[config["activation"]]
        obs_dim = int(np.prod(observation_space.shape))
        stack = conv_stack(observation_space, config)
        if stack is not None:
            obs_dim = stack.output_size
        hiddens = [int(h) for h in config["hiddens"]]
        features = hiddens[-1] if hiddens else obs_dim
        self.use_prev_action = bool(config["lstm_use_prev_action"])
        self.use_prev_reward = bool(config["lstm_use_prev_reward"])
        if self.use_prev_action:
            features += prev_action_size(action_space)
        if self.use_prev_reward:
            features += 1
        self.cell_size = int(config["lstm_cell_size"])
        self.max_seq_len = int(config["max_seq_len"])
        self.burn_in = int(config["lstm_burn_in"])

        def encoder() -> nn.Sequential:
            layers = _mlp([obs_dim, *hiddens], act, math.sqrt(2))
            if hiddens:
                layers.append(act())
            return layers

        def conv() -> TorchConvEncoder | None:
            return None if stack is None else TorchConvEncoder(stack)

        self.conv, self.encoder = conv(), encoder()
        self.lstm = nn.LSTM(features, self.cell_size, batch_first=True)
        self.trunks: list[_Trunk] = [_Trunk(self.conv, self.encoder, self.lstm)]
        if not config["vf_share_layers"]:
            self.vf_conv, self.vf_encoder = conv(), encoder()
            self.vf_lstm = nn.LSTM(features, self.cell_size, batch_first=True)
            self.trunks.append(_Trunk(self.vf_conv, self.vf_encoder, self.vf_lstm))
        n_out = self.action_dist_class.inputs_size(action_space)
        n_policy_out = n_out // 2 if self.continuous else n_out
        self.pi = _mlp([self.cell_size, n_policy_out], act, 0.01)
        self.vf = _mlp([self.cell_size, 1], act, 1.0)
        if self.continuous:
            self.log_std = nn.Parameter(torch.full((n_policy_out,), config["initial_log_std"]))

    # State -----------------------------------------------------------------------------
    def initial_state(self, n: int) -> torch.Tensor:
        """The state of ``n`` envs at an episode's start: ``[h, c]`` of each trunk, zeros."""
        size = 2 * self.cell_size * len(self.trunks)
        return torch.zeros(n, size, device=self.pi[0].weight.device)

    # The pieces ------------------------------------------------------------------------
    def _lstm_inputs(
        self, trunk: _Trunk, inputs: Mapping[str, torch.Tensor], obs_key: str
    ) -> torch.Tensor:
        obs = inputs[obs_key]
        x = trunk.encoder(
            obs.flatten(1).to(torch.float32) if trunk.conv is None else trunk.conv(obs)
        )
        parts = [x]
        if self.use_prev_action:
            prev = inputs[Columns.PREV_ACTIONS]
            if self.discrete_n is not None:
                prev = nn.functional.one_hot(prev.long(), self.discrete_n)
            parts.append(prev.reshape(len(x), -1).to(torch.float32))
        if self.use_prev_reward:
            parts.append(inputs[Columns.PREV_REWARDS].reshape(-1, 1).to(torch.float32))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else x

    @staticmethod
    def _cell(
        lstm: nn.LSTM, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One LSTM step for a batch of rows (``x [B, F]``, ``h, c [B, H]``)."""
        _, (h, c) = lstm(x[:, None], (h[None], c[None]))
        return h[0], c[0]

    def _logits(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.pi(features)
        if self.continuous:
            logits = torch.cat([logits, self.log_std.expand_as(logits)], dim=-1)
        return logits

    def _value(self, features: torch.Tensor) -> torch.Tensor:
        return self.vf(features).squeeze(-1)

    def _step(self, inputs: Mapping[str, torch.Tensor]):
        """One acting step: (dist inputs, value, state out) from ``obs`` and ``state_in``."""
        states = inputs[Columns.STATE_IN].to(torch.float32).chunk(len(self.trunks), dim=-1)
        outs, new_states = [], []
        for trunk, state in zip(self.trunks, states, strict=True):
            x = self._lstm_inputs(trunk, inputs, Columns.OBS)
            h, c = self._cell(trunk.lstm, x, *state.chunk(2, dim=-1))
            outs.append(h)
            new_states += [h, c]
        return self._logits(outs[0]), self._value(outs[-1]), torch.cat(new_states, dim=-1)

    # Training --------------------------------------------------------------------------
    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The training forward pass over whole sequences of ``max_seq_len`` rows; with
        ``new_obs`` in the batch, also ``next_vf_preds`` (V-trace bootstraps from them)."""
        seq_len = self.max_seq_len
        rows = batch[Columns.OBS].shape[0]
        if rows % seq_len:
            from learnerkit.errors import BatchError

            raise BatchError(
                f"the recurrent module got {rows} rows, not whole sequences of max_seq_len="
                f"{seq_len}: train with Learner.update(..., sequence_length=<a multiple of "
                f"{seq_len}>) and a minibatch_size that is a multiple of it"
            )
        b = rows // seq_len
        starts = batch[Columns.STATE_IN].to(torch.float32).view(b, seq_len, -1)[:, 0]
        ended = (batch[Columns.TERMINATEDS] | batch[Columns.TRUNCATEDS]).view(b, seq_len)
        bounds = _segments(ended)
        if self.burn_in:  # the warm-up ends a segment: no gradient flows back through it
            bounds = sorted({*bounds, self.burn_in})
        trunk_outs = [
            self._run_trunk(trunk, batch, start, ended, bounds)
            for trunk, start in zip(
                self.trunks, starts.chunk(len(self.trunks), dim=-1), strict=True
            )
        ]
        values = self._value(trunk_outs[-1][0].reshape(rows, -1))
        out = {
            Columns.ACTION_DIST_INPUTS: self._logits(trunk_outs[0][0].reshape(rows, -1)),
            Columns.VF_PREDS: values,
        }
        if Columns.NEXT_OBS in batch:
            ends = trunk_outs[-1][1]
            out[Columns.NEXT_VF_PREDS] = self._next_values(batch, values.view(b, seq_len), ends)
        return out

    forward_train = forward

    def _run_trunk(
        self,
        trunk: _Trunk,
        batch: Mapping[str, torch.Tensor],
        start: torch.Tensor,
        ended: torch.Tensor,
        bounds: list[int],
    ) -> tuple[torch.Tensor, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
        """The trunk's outputs ``[B, L, H]`` over the sequences, run segment by segment
        (one fused LSTM call each, ~10x faster than a step at a time on a CPU), and the
        state after each segment's last step ``t`` (before the reset), by ``t``."""
        b, seq_len = ended.shape
        x = self._lstm_inputs(trunk, batch, Columns.OBS).view(b, seq_len, -1)
        h, c = start.chunk(2, dim=-1)
        outs, ends = [], {}
        for first, stop in itertools.pairwise(bounds):
            y, (h, c) = trunk.lstm(x[:, first:stop], (h[None].contiguous(), c[None].contiguous()))
            h, c = h[0], c[0]
            outs.append(y)
            ends[stop - 1] = (h, c)
            if stop == self.burn_in:  # R2D2's burn-in: the warmed-up state, as a constant
                h, c = h.detach(), c.detach()
            # Where an episode ended at the segment's last step, the next starts from zeros.
            keep = (~ended[:, stop - 1]).to(torch.float32)[:, None]
            h, c = h * keep, c * keep
        return torch.cat(outs, dim=1), ends

    def _next_values(
        self,
        batch: Mapping[str, torch.Tensor],
        values: torch.Tensor,
        ends: dict[int, tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        """V of each row's ``new_obs``: the next row's value where the episode goes on in
        the sequence; after a segment's last step (an episode's or the sequence's end), one
        step on from the state that step ended in, with its action and reward as the
        previous ones."""
        b, seq_len = values.shape
        trunk = self.trunks[-1]
        columns = [*values[:, 1:].unbind(1), values[:, 0]]  # the last is replaced
        for t, (h, c) in ends.items():
            following = {
                Columns.NEXT_OBS: _at_step(batch[Columns.NEXT_OBS], b, seq_len, t),
                Columns.PREV_ACTIONS: _at_step(batch[Columns.ACTIONS], b, seq_len, t),
                Columns.PREV_REWARDS: _at_step(batch[Columns.REWARDS], b, seq_len, t),
            }
            x = self._lstm_inputs(trunk, following, Columns.NEXT_OBS)
            columns[t] = self._value(self._cell(trunk.lstm, x, h, c)[0])
        return torch.stack(columns, dim=1).reshape(-1)

    def action_dist(self, dist_inputs: torch.Tensor):
        return self.action_dist_class(dist_inputs, self.ops)

    # Acting (env runners act with the numpy copy; these serve tests and evaluation) -----
    @torch.no_grad()
    def forward_exploration(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sampled actions and what the learner needs, and ``state_out``, for one step of a
        batch of envs: ``obs``, ``state_in`` (and ``prev_actions``/``prev_rewards`` if used)."""
        logits, value, state = self._step(inputs)
        out = exploration_outputs(self.action_dist(logits), logits, value)
        out[Columns.STATE_OUT] = state
        return out

    @torch.no_grad()
    def forward_inference(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Greedy actions and ``state_out`` for one step."""
        logits, _, state = self._step(inputs)
        actions = self.action_dist(logits).deterministic_sample()
        return {Columns.ACTIONS: actions, Columns.STATE_OUT: state}

    @torch.no_grad()
    def value(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """V of ``obs`` stepped from ``state_in``."""
        return self._step(inputs)[1]
