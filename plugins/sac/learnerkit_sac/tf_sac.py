"""SAC's module in TensorFlow: the torch module's functions and weight names
(``sac_module``). Layers start as torch's ``nn.Linear`` draws them (uniform in
``+-1/sqrt(fan_in)``), from TensorFlow's global seed, which the backend sets before building
a module class."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from learnerkit import Columns
from learnerkit_sac.sac_module import (
    LOG_ALPHA,
    LOG_STD_MAX,
    LOG_STD_MIN,
    action_scale,
    resolve_sac_config,
    towers,
)

_ACTIVATIONS = {"tanh": tf.tanh, "relu": tf.nn.relu, "elu": tf.nn.elu, "silu": tf.nn.silu}
_LOG_2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class _Dense(tf.Module):
    def __init__(self, name: str, n_in: int, n_out: int, rng: np.random.Generator) -> None:
        super().__init__(name=None)
        bound = 1.0 / math.sqrt(n_in)
        kernel = rng.uniform(-bound, bound, (n_in, n_out)).astype(np.float32)
        bias = rng.uniform(-bound, bound, (n_out,)).astype(np.float32)
        self.kernel = tf.Variable(kernel, name=f"{name}.kernel")
        self.bias = tf.Variable(bias, name=f"{name}.bias")


class _MLP(tf.Module):
    def __init__(self, tower: str, sizes: list[int], activation: Any, rng) -> None:
        super().__init__(name=None)
        self.layers = [
            _Dense(f"{tower}.{2 * i}", n_in, n_out, rng)
            for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes))
        ]
        self.activation = activation

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        for i, layer in enumerate(self.layers):
            x = tf.matmul(x, layer.kernel) + layer.bias
            if i < len(self.layers) - 1:
                x = self.activation(x)
        return x


class TFSACModule(tf.Module):
    """SAC's policy and critics (see ``sac_module``)."""

    numpy_copy = "learnerkit_sac.sac_module:NumpySACPolicy"
    """What env runners act with (``learnerkit.rollouts.acting.NumpyModule``)."""

    def __init__(self, observation_space: Any, action_space: Any, model_config: Mapping) -> None:
        super().__init__(name="sac")
        config = resolve_sac_config(model_config)
        # Seeded by TensorFlow's global seed, which the backend sets from the learner's.
        rng = np.random.default_rng(int(tf.random.uniform([], maxval=2**31, dtype=tf.int64)))
        sizes = towers(observation_space, action_space, model_config)
        activation = _ACTIVATIONS[config["activation"]]
        self.obs_dim = int(np.prod(observation_space.shape))
        self.pi = _MLP("pi", sizes["pi"], activation, rng)
        self.critics = [_MLP("qf", sizes["qf"], activation, rng)]
        if config["twin_q"]:
            self.critics.append(_MLP("qf_twin", sizes["qf_twin"], activation, rng))
        initial = math.log(float(config["initial_alpha"]))
        self.log_alpha = tf.Variable(initial, dtype=tf.float32, name=LOG_ALPHA)
        centre, half = action_scale(action_space)
        self.action_centre, self.action_half = tf.constant(centre), tf.constant(half)
        self.action_shape = tuple(action_space.shape)
        self.action_size = len(centre)

    # The policy --------------------------------------------------------------------------
    def mean_log_std(self, obs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = tf.reshape(tf.cast(obs, tf.float32), [-1, self.obs_dim])
        mean, log_std = tf.split(self.pi(x), 2, axis=-1)
        return mean, tf.clip_by_value(log_std, LOG_STD_MIN, LOG_STD_MAX)

    def sample(
        self, mean: tf.Tensor, log_std: tf.Tensor, generator: tf.random.Generator | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """A reparameterised squashed action ``u`` in [-1, 1] of the policy's Gaussian and
        its log-probability (see the torch module's ``sample``)."""
        shape = tf.shape(mean)
        noise = tf.random.normal(shape) if generator is None else generator.normal(shape)
        x = mean + tf.exp(log_std) * noise
        gaussian = tf.reduce_sum(-0.5 * tf.square(noise) - log_std - _HALF_LOG_2PI, -1)
        squash = tf.reduce_sum(2.0 * (_LOG_2 - x - tf.nn.softplus(-2.0 * x)), -1)
        return tf.tanh(x), gaussian - squash

    def to_box(self, u: tf.Tensor) -> tf.Tensor:
        return tf.reshape(self.action_centre + self.action_half * u, [-1, *self.action_shape])

    def from_box(self, actions: tf.Tensor) -> tf.Tensor:
        flat = tf.reshape(tf.cast(actions, tf.float32), [-1, self.action_size])
        return (flat - self.action_centre) / self.action_half

    # The critics -------------------------------------------------------------------------
    def q_values(self, obs: tf.Tensor, u: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """Q of each critic for observations and squashed actions ``u``, ``[B]`` each."""
        x = tf.concat([tf.reshape(tf.cast(obs, tf.float32), [-1, self.obs_dim]), u], -1)
        return tuple(tf.squeeze(q(x), -1) for q in self.critics)

    def forward_train(self, batch: Mapping[str, tf.Tensor]) -> dict[str, Any]:
        """The training pass (see the torch module's ``forward``)."""
        obs = batch[Columns.OBS]
        next_mean, next_log_std = self.mean_log_std(batch[Columns.NEXT_OBS])
        return {
            "q": self.q_values(obs, self.from_box(batch[Columns.ACTIONS])),
            "pi": self.mean_log_std(obs),
            "pi_next": (tf.stop_gradient(next_mean), tf.stop_gradient(next_log_std)),
            "log_alpha": self.log_alpha,
        }

    __call__ = forward_train

    @tf.function(reduce_retracing=True, autograph=False)
    def forward_exploration(self, obs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {Columns.ACTIONS: self.to_box(self.sample(*self.mean_log_std(obs))[0])}

    @tf.function(reduce_retracing=True, autograph=False)
    def forward_inference(self, obs: tf.Tensor) -> dict[str, tf.Tensor]:
        """The mean action (deterministic evaluation)."""
        return {Columns.ACTIONS: self.to_box(tf.tanh(self.mean_log_std(obs)[0]))}
