"""The default recurrent torch module (``model_config["use_lstm"]``): encoder, LSTM, heads.

The encoder (the default module's MLP, with an activation after its last layer) feeds an
LSTM of ``lstm_cell_size`` units, optionally with the previous action (one-hot for Discrete)
and reward appended to its input, as RLlib's ``use_lstm`` wrapper does; the LSTM's output
feeds a linear policy head and a linear value head.

State, one flat row per env: ``[h, c]`` (``2 * lstm_cell_size`` floats), zeros at an
episode's start (``initial_state``). ``forward_train`` sees rows in whole sequences of
``max_seq_len`` consecutive steps (the loop trains with ``sequence_length=max_seq_len``, or
a multiple of it): it starts each from the ``state_in`` recorded at its first row and resets
the state to zeros after a row whose episode ended (``terminateds | truncateds``), so one
sequence may hold the end of an episode and the start of the next without padding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from learnerkit.backends.torch.modules import _ACTIVATIONS, _mlp
from learnerkit.batch import Columns
from learnerkit.distributions import dist_class_for, exploration_outputs
from learnerkit.model_config import resolve_model_config


def prev_action_size(action_space: Any) -> int:
    """How many inputs the previous action takes: a one-hot for Discrete, else its size."""
    if hasattr(action_space, "n"):
        return int(action_space.n)
    return int(np.prod(action_space.shape))


class TorchLSTMActorCritic(nn.Module):
    """Encoder, then LSTM, then policy and value heads (see the module docstring)."""

    numpy_copy = "learnerkit.rollouts.recurrent_acting:NumpyLSTMActorCritic"
    """What env runners act with (``ModuleSpec.numpy_copy``): a numpy copy, ~4x faster per
    step than this module on a runner's handful of envs (docs/guides/recurrent.md)."""

    def __init__(self, observation_space: Any, action_space: Any, model_config: Mapping) -> None:
        super().__init__()
        from learnerkit.backends.torch.ops import TORCH_OPS

        config = resolve_model_config(model_config)
        self.ops = TORCH_OPS
        self.action_dist_class = dist_class_for(action_space)
        self.continuous = not hasattr(action_space, "n")
        self.discrete_n = None if self.continuous else int(action_space.n)
        act = _ACTIVATIONS[config["activation"]]
        obs_dim = int(np.prod(observation_space.shape))
        hiddens = [int(h) for h in config["hiddens"]]
        # The encoder: what the CNN encoder replaces for image observations.
        self.encoder = _mlp([obs_dim, *hiddens], act, math.sqrt(2))
        if hiddens:
            self.encoder.append(act())
        features = hiddens[-1] if hiddens else obs_dim
        self.use_prev_action = bool(config["lstm_use_prev_action"])
        self.use_prev_reward = bool(config["lstm_use_prev_reward"])
        if self.use_prev_action:
            features += prev_action_size(action_space)
        if self.use_prev_reward:
            features += 1
        self.cell_size = int(config["lstm_cell_size"])
        self.max_seq_len = int(config["max_seq_len"])
        self.lstm = nn.LSTM(features, self.cell_size, batch_first=True)
        n_out = self.action_dist_class.inputs_size(action_space)
        n_policy_out = n_out // 2 if self.continuous else n_out
        self.pi = _mlp([self.cell_size, n_policy_out], act, 0.01)
        self.vf = _mlp([self.cell_size, 1], act, 1.0)
        if self.continuous:
            self.log_std = nn.Parameter(torch.full((n_policy_out,), config["initial_log_std"]))

    # State -----------------------------------------------------------------------------
    def initial_state(self, n: int) -> torch.Tensor:
        """The state of ``n`` envs at an episode's start: ``[n, 2 * lstm_cell_size]`` zeros."""
        return torch.zeros(n, 2 * self.cell_size, device=self.pi[0].weight.device)

    # The pieces ------------------------------------------------------------------------
    def _lstm_inputs(self, inputs: Mapping[str, torch.Tensor], obs_key: str) -> torch.Tensor:
        x = self.encoder(inputs[obs_key].flatten(1).to(torch.float32))
        parts = [x]
        if self.use_prev_action:
            prev = inputs[Columns.PREV_ACTIONS]
            if self.discrete_n is not None:
                prev = nn.functional.one_hot(prev.long(), self.discrete_n)
            parts.append(prev.reshape(len(x), -1).to(torch.float32))
        if self.use_prev_reward:
            parts.append(inputs[Columns.PREV_REWARDS].reshape(-1, 1).to(torch.float32))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else x

    def _cell(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One LSTM step for a batch of rows (``x [B, F]``, ``h, c [B, H]``)."""
        _, (h, c) = self.lstm(x[:, None], (h[None], c[None]))
        return h[0], c[0]

    def _heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.pi(features)
        if self.continuous:
            logits = torch.cat([logits, self.log_std.expand_as(logits)], dim=-1)
        return logits, self.vf(features).squeeze(-1)

    def _step(self, inputs: Mapping[str, torch.Tensor]):
        """One acting step: (dist inputs, value, state out) from ``obs`` and ``state_in``."""
        state = inputs[Columns.STATE_IN].to(torch.float32)
        h, c = self._cell(self._lstm_inputs(inputs, Columns.OBS), *state.chunk(2, dim=-1))
        logits, value = self._heads(h)
        return logits, value, torch.cat([h, c], dim=-1)

    # Training --------------------------------------------------------------------------
    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The training forward pass over whole sequences of ``max_seq_len`` rows; with
        ``new_obs`` in the batch, also ``next_vf_preds`` (V-trace bootstraps from them)."""
        seq_len = self.max_seq_len
        x = self._lstm_inputs(batch, Columns.OBS)
        rows = x.shape[0]
        if rows % seq_len:
            from learnerkit.errors import BatchError

            raise BatchError(
                f"the recurrent module got {rows} rows, not whole sequences of max_seq_len="
                f"{seq_len}: train with Learner.update(..., sequence_length=<a multiple of "
                f"{seq_len}>) and a minibatch_size that is a multiple of it"
            )
        b = rows // seq_len
        x = x.view(b, seq_len, -1)
        h, c = batch[Columns.STATE_IN].to(torch.float32).view(b, seq_len, -1)[:, 0].chunk(2, -1)
        ended = (batch[Columns.TERMINATEDS] | batch[Columns.TRUNCATEDS]).view(b, seq_len)
        keep = (~ended).to(torch.float32)[..., None]
        hs, cs = [], []
        for t in range(seq_len):
            h, c = self._cell(x[:, t], h, c)
            hs.append(h)
            cs.append(c)
            # An episode ended at step t: step t + 1 starts the next one from zeros.
            h, c = h * keep[:, t], c * keep[:, t]
        outs = torch.stack(hs, dim=1).reshape(rows, -1)
        logits, value = self._heads(outs)
        out = {Columns.ACTION_DIST_INPUTS: logits, Columns.VF_PREDS: value}
        if Columns.NEXT_OBS in batch:
            out[Columns.NEXT_VF_PREDS] = self._next_values(batch, outs, torch.stack(cs, 1))
        return out

    forward_train = forward

    def _next_values(
        self, batch: Mapping[str, torch.Tensor], h: torch.Tensor, c: torch.Tensor
    ) -> torch.Tensor:
        """V of each row's ``new_obs``, one step on from the state the row's step ended in
        (before any reset), with the row's action and reward as the previous ones."""
        following = {
            Columns.NEXT_OBS: batch[Columns.NEXT_OBS],
            Columns.PREV_ACTIONS: batch[Columns.ACTIONS],
            Columns.PREV_REWARDS: batch[Columns.REWARDS],
        }
        x = self._lstm_inputs(following, Columns.NEXT_OBS)
        h_next, _ = self._cell(x, h, c.reshape(len(h), -1))
        return self._heads(h_next)[1]

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
