"""The default recurrent TensorFlow module (``model_config["use_lstm"]``): the torch one's
twin (``learnerkit.backends.torch._recurrent``): encoder (after the conv encoder for image
observations), LSTM, policy and value heads (the value function with its own conv encoder,
encoder and LSTM, ``vf_``, unless ``vf_share_layers``); state ``[h, c]`` of each trunk per
env; sequences of ``max_seq_len`` rows reset after a row whose episode ended. The sequence
loop runs a step at a time, unrolled in the compiled step. With ``lstm_burn_in=N`` no
gradient flows back through the first N steps of a sequence (R2D2's burn-in).

The LSTM is written out (``lstm.kernel [F, 4H]``, ``lstm.recurrent_kernel [H, 4H]``,
``lstm.bias``, gates in torch's order) rather than a Keras layer, so its variables have
stable names, it is made eagerly from the backend's numpy generator like the rest of the
default module, and its sequence loop unrolls inside the compiled train step. Initialised
as torch initialises ``nn.LSTM``: uniform in ``[-1/sqrt(H), 1/sqrt(H)]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from learnerkit._batch import Columns
from learnerkit.backends.tf.encoders import TFConvEncoder
from learnerkit.backends.tf.modules import _ACTIVATIONS, _MLP
from learnerkit.conv_encoders import ConvStack, conv_stack, module_config_for
from learnerkit.distributions import dist_class_for, exploration_outputs
from learnerkit.errors import BatchError


def _prev_action_size(action_space: Any) -> int:
    if hasattr(action_space, "n"):
        return int(action_space.n)
    return int(np.prod(action_space.shape))


class _Trunk(tf.Module):
    """A conv encoder for images (``<prefix>conv.*``), an encoder (``<prefix>encoder.*``),
    then an LSTM (``<prefix>lstm.kernel``...)."""

    def __init__(
        self,
        prefix: str,
        stack: ConvStack | None,
        encoder_sizes: list[int],
        features: int,
        cell: int,
        activation: Any,
        rng: np.random.Generator,
    ) -> None:
        super().__init__(name=None)
        self.conv = None if stack is None else TFConvEncoder(f"{prefix}conv", stack, rng)
        self.obs_dim = encoder_sizes[0]
        self.encoder = _MLP(
            f"{prefix}encoder", encoder_sizes, activation, math.sqrt(2), rng, act_last=True
        )
        bound = 1.0 / math.sqrt(cell)

        def uniform(*shape: int) -> np.ndarray:
            return rng.uniform(-bound, bound, shape).astype(np.float32)

        self.kernel = tf.Variable(uniform(features, 4 * cell), name=f"{prefix}lstm.kernel")
        self.recurrent_kernel = tf.Variable(
            uniform(cell, 4 * cell), name=f"{prefix}lstm.recurrent_kernel"
        )
        self.bias = tf.Variable(uniform(4 * cell), name=f"{prefix}lstm.bias")

    def encode(self, obs: tf.Tensor) -> tf.Tensor:
        """The LSTM's input features (before the previous action and reward) of ``obs``."""
        if self.conv is not None:
            return self.encoder(self.conv(obs))
        return self.encoder(tf.reshape(tf.cast(obs, tf.float32), [-1, self.obs_dim]))

    def cell(self, x: tf.Tensor, h: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        gates = tf.matmul(x, self.kernel) + tf.matmul(h, self.recurrent_kernel) + self.bias
        i, f, g, o = tf.split(gates, 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        return tf.sigmoid(o) * tf.tanh(c), c


class TFLSTMActorCritic(tf.Module):
    """Encoder, then LSTM, then policy and value heads (see the module docstring)."""

    numpy_copy = "learnerkit.rollouts._recurrent_acting:NumpyLSTMActorCritic"
    """What env runners act with (``ModuleSpec.numpy_copy``)."""

    def __init__(
        self,
        observation_space: Any,
        action_space: Any,
        model_config: Mapping,
        *,
        seed: int = 0,
    ) -> None:
        super().__init__(name="lstm_actor_critic")
        from learnerkit.backends.tf._ops import TF_OPS

        config = module_config_for(model_config, observation_space)
        rng = np.random.default_rng(seed)
        self.ops = TF_OPS
        self.action_dist_class = dist_class_for(action_space)
        self.continuous = not hasattr(action_space, "n")
        self.discrete_n = None if self.continuous else int(action_space.n)
        self.obs_dim = int(np.prod(observation_space.shape))
        stack = conv_stack(observation_space, config)
        if stack is not None:
            self.obs_dim = stack.output_size
        act = _ACTIVATIONS[config["activation"]]
        hiddens = [int(h) for h in config["hiddens"]]
        features = hiddens[-1] if hiddens else self.obs_dim
        self.use_prev_action = bool(config["lstm_use_prev_action"])
        self.use_prev_reward = bool(config["lstm_use_prev_reward"])
        features += _prev_action_size(action_space) if self.use_prev_action else 0
        features += 1 if self.use_prev_reward else 0
        cell = self.cell_size = int(config["lstm_cell_size"])
        self.max_seq_len = int(config["max_seq_len"])
        self.burn_in = int(config["lstm_burn_in"])
        prefixes = ("",) if config["vf_share_layers"] else ("", "vf_")
        self.trunks = [
            _Trunk(prefix, stack, [self.obs_dim, *hiddens], features, cell, act, rng)
            for prefix in prefixes
        ]
        n_out = self.action_dist_class.inputs_size(action_space)
        n_policy_out = n_out // 2 if self.continuous else n_out
        self.pi = _MLP("pi", [cell, n_policy_out], act, 0.01, rng)
        self.vf = _MLP("vf", [cell, 1], act, 1.0, rng)
        if self.continuous:
            self.log_std = tf.Variable(
                tf.fill([n_policy_out], float(config["initial_log_std"])), name="log_std"
            )

    def initial_state(self, n: int) -> tf.Tensor:
        """The state of ``n`` envs at an episode's start: ``[h, c]`` of each trunk, zeros."""
        return tf.zeros([n, 2 * self.cell_size * len(self.trunks)], tf.float32)

    # The pieces ------------------------------------------------------------------------
    def _lstm_inputs(
        self, trunk: _Trunk, inputs: Mapping[str, tf.Tensor], obs_key: str
    ) -> tf.Tensor:
        x = trunk.encode(inputs[obs_key])
        parts = [x]
        if self.use_prev_action:
            prev = inputs[Columns.PREV_ACTIONS]
            if self.discrete_n is not None:
                prev = tf.one_hot(tf.cast(prev, tf.int32), self.discrete_n)
            parts.append(tf.reshape(tf.cast(prev, tf.float32), [tf.shape(x)[0], -1]))
        if self.use_prev_reward:
            parts.append(tf.reshape(tf.cast(inputs[Columns.PREV_REWARDS], tf.float32), [-1, 1]))
        return tf.concat(parts, -1) if len(parts) > 1 else x

    def _logits(self, features: tf.Tensor) -> tf.Tensor:
        logits = self.pi(features)
        if self.continuous:
            logits = tf.concat([logits, tf.broadcast_to(self.log_std, tf.shape(logits))], -1)
        return logits

    def _value(self, features: tf.Tensor) -> tf.Tensor:
        return tf.squeeze(self.vf(features), -1)

    def _step(self, inputs: Mapping[str, tf.Tensor]):
        states = tf.split(tf.cast(inputs[Columns.STATE_IN], tf.float32), len(self.trunks), -1)
        outs, new_states = [], []
        for trunk, state in zip(self.trunks, states, strict=True):
            h, c = tf.split(state, 2, axis=-1)
            h, c = trunk.cell(self._lstm_inputs(trunk, inputs, Columns.OBS), h, c)
            outs.append(h)
            new_states += [h, c]
        return self._logits(outs[0]), self._value(outs[-1]), tf.concat(new_states, -1)

    # Training --------------------------------------------------------------------------
    def forward_train(self, batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The training forward pass over whole sequences of ``max_seq_len`` rows; with
        ``new_obs`` in the batch, also ``next_vf_preds`` (V-trace bootstraps from them)."""
        seq_len = self.max_seq_len
        rows = batch[Columns.OBS].shape[0]
        if rows is not None and rows % seq_len:
            raise BatchError(
                f"the recurrent module got {rows} rows, not whole sequences of max_seq_len="
                f"{seq_len}: train with Learner.update(..., sequence_length=<a multiple of "
                f"{seq_len}>) and a minibatch_size that is a multiple of it"
            )
        n = len(self.trunks)
        state = tf.cast(batch[Columns.STATE_IN], tf.float32)
        starts = tf.split(tf.reshape(state, [-1, seq_len, 2 * self.cell_size * n])[:, 0], n, -1)
        ended = tf.logical_or(batch[Columns.TERMINATEDS], batch[Columns.TRUNCATEDS])
        keep = tf.reshape(1.0 - tf.cast(ended, tf.float32), [-1, seq_len, 1])
        outs = []
        for trunk, start in zip(self.trunks, starts, strict=True):
            x = self._lstm_inputs(trunk, batch, Columns.OBS)
            x = tf.reshape(x, [-1, seq_len, x.shape[-1]])
            h, c = tf.split(start, 2, axis=-1)
            hs, cs = [], []
            for t in range(seq_len):  # unrolled when traced: seq_len is a Python int
                h, c = trunk.cell(x[:, t], h, c)
                hs.append(h)
                cs.append(c)
                h, c = h * keep[:, t], c * keep[:, t]
                if t == self.burn_in - 1:  # R2D2's burn-in: the warmed-up state, a constant
                    h, c = tf.stop_gradient(h), tf.stop_gradient(c)
            flat = [tf.reshape(tf.stack(v, 1), [-1, self.cell_size]) for v in (hs, cs)]
            outs.append(flat)
        out = {
            Columns.ACTION_DIST_INPUTS: self._logits(outs[0][0]),
            Columns.VF_PREDS: self._value(outs[-1][0]),
        }
        if Columns.NEXT_OBS in batch:
            # V of each row's new_obs, one step on from the state its step ended in.
            trunk, (h, c) = self.trunks[-1], outs[-1]
            following = {
                Columns.NEXT_OBS: batch[Columns.NEXT_OBS],
                Columns.PREV_ACTIONS: batch[Columns.ACTIONS],
                Columns.PREV_REWARDS: batch[Columns.REWARDS],
            }
            x = self._lstm_inputs(trunk, following, Columns.NEXT_OBS)
            out[Columns.NEXT_VF_PREDS] = self._value(trunk.cell(x, h, c)[0])
        return out

    __call__ = forward_train

    def action_dist(self, dist_inputs: tf.Tensor):
        return self.action_dist_class(dist_inputs, self.ops)

    # Acting (env runners act with the numpy copy; these serve tests and evaluation) -----
    @tf.function(reduce_retracing=True, autograph=False)
    def forward_exploration(self, inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Sampled actions, what the learner needs, and ``state_out``, for one step."""
        logits, value, state = self._step(inputs)
        out = exploration_outputs(self.action_dist(logits), logits, value)
        out[Columns.STATE_OUT] = state
        return out

    @tf.function(reduce_retracing=True, autograph=False)
    def forward_inference(self, inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Greedy actions and ``state_out`` for one step."""
        logits, _, state = self._step(inputs)
        actions = self.action_dist(logits).deterministic_sample()
        return {Columns.ACTIONS: actions, Columns.STATE_OUT: state}

    @tf.function(reduce_retracing=True, autograph=False)
    def value(self, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """V of ``obs`` stepped from ``state_in``."""
        return self._step(inputs)[1]
