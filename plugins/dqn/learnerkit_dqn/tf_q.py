"""DQN's Q-network in TensorFlow: the torch module's function and weight names
(``q_network``), the exploration epsilon a non-trainable variable that travels with the
weights. Weights are drawn from TensorFlow's global seed (which the backend sets before
building a module class), orthogonal as in torch."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from learnerkit import Columns
from learnerkit.backends.tf.encoders import TFConvEncoder
from learnerkit.conv_encoders import conv_stack
from learnerkit_dqn.q_network import EPSILON, heads, num_actions, resolve_q_config

Q_VALUES = "q_values"
Q_VALUES_NEXT = "q_values_next"
_ACTIVATIONS = {"tanh": tf.tanh, "relu": tf.nn.relu, "elu": tf.nn.elu, "silu": tf.nn.silu}


def _orthogonal(rng: np.random.Generator, n_in: int, n_out: int, gain: float) -> np.ndarray:
    """An ``[n_in, n_out]`` kernel, orthogonal as ``torch.nn.init.orthogonal_`` draws it."""
    flat = rng.standard_normal((max(n_in, n_out), min(n_in, n_out)))
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    weight = q if n_out >= n_in else q.T  # [n_out, n_in]
    return (gain * weight).T.astype(np.float32)


class TFQNetwork(tf.Module):
    """Q-values for every action of a Discrete space."""

    numpy_copy = "learnerkit_dqn.q_network:NumpyQNetwork"
    """What env runners act with (``learnerkit.rollouts.acting.NumpyModule``)."""

    def __init__(self, observation_space: Any, action_space: Any, model_config: Mapping) -> None:
        super().__init__(name="q_network")
        config = resolve_q_config(model_config, observation_space)
        # Seeded by TensorFlow's global seed, which the backend sets from the learner's.
        rng = np.random.default_rng(int(tf.random.uniform([], maxval=2**31, dtype=tf.int64)))
        self.n_actions = num_actions(action_space)
        self.obs_dim = int(np.prod(observation_space.shape))
        stack = conv_stack(observation_space, config)
        self.conv = None if stack is None else TFConvEncoder("conv", stack, rng)
        if stack is not None:
            self.obs_dim = stack.output_size
        self.activation = _ACTIVATIONS[config["activation"]]
        sizes = [self.obs_dim, *map(int, config["hiddens"])]
        self.encoder = [
            self._dense(f"encoder.{2 * i}", n_in, n_out, math.sqrt(2), rng)
            for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes))
        ]
        self.heads = {
            head: self._dense(head, sizes[-1], size, 1.0, rng)
            for head, size in heads(config, self.n_actions).items()
        }
        self.epsilon = tf.Variable(1.0, trainable=False, name=EPSILON)

    @staticmethod
    def _dense(name: str, n_in: int, n_out: int, gain: float, rng: np.random.Generator):
        kernel = tf.Variable(_orthogonal(rng, n_in, n_out, gain), name=f"{name}.kernel")
        return kernel, tf.Variable(tf.zeros([n_out], tf.float32), name=f"{name}.bias")

    def q_values(self, obs: tf.Tensor) -> tf.Tensor:
        if self.conv is None:
            x = tf.reshape(tf.cast(obs, tf.float32), [-1, self.obs_dim])
        else:
            x = self.conv(obs)
        for kernel, bias in self.encoder:
            x = self.activation(tf.matmul(x, kernel) + bias)
        out = {head: tf.matmul(x, kernel) + bias for head, (kernel, bias) in self.heads.items()}
        if "q" in out:
            return out["q"]
        advantage = out["advantage"]
        return out["value"] + advantage - tf.reduce_mean(advantage, axis=-1, keepdims=True)

    def forward_train(self, batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Q-values of ``obs`` and, in the same pass, of ``new_obs`` when the batch has it."""
        obs = batch[Columns.OBS]
        if Columns.NEXT_OBS not in batch:
            return {Q_VALUES: self.q_values(obs)}
        both = self.q_values(tf.concat([obs, batch[Columns.NEXT_OBS]], 0))
        n = tf.shape(obs)[0]
        return {Q_VALUES: both[:n], Q_VALUES_NEXT: both[n:]}

    __call__ = forward_train

    @tf.function(reduce_retracing=True, autograph=False)
    def forward_exploration(self, obs: tf.Tensor) -> dict[str, tf.Tensor]:
        """Epsilon-greedy actions."""
        actions = tf.argmax(self.q_values(obs), axis=-1)
        n = tf.shape(actions)
        explore = tf.random.uniform(n) < self.epsilon
        random = tf.random.uniform(n, maxval=self.n_actions, dtype=tf.int64)
        return {Columns.ACTIONS: tf.where(explore, random, actions)}

    @tf.function(reduce_retracing=True, autograph=False)
    def forward_inference(self, obs: tf.Tensor) -> dict[str, tf.Tensor]:
        """Greedy actions."""
        return {Columns.ACTIONS: tf.argmax(self.q_values(obs), axis=-1)}

    def set_epsilon(self, value: float) -> None:
        self.epsilon.assign(float(value))
