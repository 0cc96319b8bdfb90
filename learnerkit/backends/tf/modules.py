"""The default TensorFlow RL module: the same MLP actor-critic as the torch one (public, to
build a module of one's own on).

Same ``model_config`` keys, same layer sizes, same orthogonal initialisation gains, same
free log standard deviation for Box actions, the same conv encoders for image observations
(``learnerkit.backends.tf.encoders``), and the same methods (``forward_train``,
``action_dist``, ``forward_exploration``, ``forward_inference``, ``value``). Weights are
made eagerly from a numpy generator seeded by the backend, so they exist right after
construction and the same seed gives the same weights without touching TensorFlow's global
random state.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from learnerkit._batch import Columns
from learnerkit.backends.tf.encoders import TFConvEncoder
from learnerkit.backends.tf.encoders import orthogonal_kernel as _orthogonal
from learnerkit.conv_encoders import conv_stack, module_config_for
from learnerkit.distributions import dist_class_for, exploration_outputs

__all__ = ["TFMLPActorCritic"]

_ACTIVATIONS = {"tanh": tf.tanh, "relu": tf.nn.relu, "elu": tf.nn.elu, "silu": tf.nn.silu}


class _MLP(tf.Module):
    """Dense layers with an activation between them (and after the last if ``act_last``);
    variables named like the torch module's layers (``pi.0.kernel``, ``pi.2.bias``...)."""

    def __init__(
        self,
        prefix: str,
        sizes: list[int],
        activation: Any,
        out_gain: float,
        rng: np.random.Generator,
        act_last: bool = False,
    ) -> None:
        super().__init__(name=None)
        self.activation = activation
        self.act_last = act_last
        self.kernels, self.biases = [], []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            # Orthogonal init with these gains is what makes PPO reliable on small control
            # tasks (Engstrom et al. 2020, "Implementation Matters in Deep RL").
            gain = out_gain if i == len(sizes) - 2 else math.sqrt(2)
            index = 2 * i  # torch's nn.Sequential index, activations included
            self.kernels.append(
                tf.Variable(_orthogonal(rng, n_in, n_out, gain), name=f"{prefix}.{index}.kernel")
            )
            self.biases.append(
                tf.Variable(tf.zeros([n_out], tf.float32), name=f"{prefix}.{index}.bias")
            )

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        last = len(self.kernels) - 1
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases, strict=True)):
            x = tf.matmul(x, kernel) + bias
            if i < last or self.act_last:
                x = self.activation(x)
        return x


class TFMLPActorCritic(tf.Module):
    """Separate (or shared, ``vf_share_layers``) MLPs for the policy and the value function,
    each after its own conv encoder (or one shared) for image observations.

    For a Box action space the log standard deviation is a free variable per action
    dimension, independent of the observation.
    """

    numpy_copy = "learnerkit.rollouts.acting:NumpyActorCritic"
    """What env runners act with: a numpy copy of this module (``ModuleSpec.numpy_copy``)."""

    def __init__(
        self,
        observation_space: Any,
        action_space: Any,
        model_config: Mapping,
        *,
        seed: int = 0,
    ) -> None:
        super().__init__(name="mlp_actor_critic")
        from learnerkit.backends.tf._ops import TF_OPS

        config = module_config_for(model_config, observation_space)
        rng = np.random.default_rng(seed)
        self.ops = TF_OPS
        self.action_dist_class = dist_class_for(action_space)
        self.continuous = not hasattr(action_space, "n")
        self.obs_dim = int(np.prod(observation_space.shape))
        stack = conv_stack(observation_space, config)
        self.conv = self.pi_conv = self.vf_conv = None
        if stack is not None:
            if config["vf_share_layers"]:
                self.conv = TFConvEncoder("conv", stack, rng)
            else:
                self.pi_conv = TFConvEncoder("pi_conv", stack, rng)
                self.vf_conv = TFConvEncoder("vf_conv", stack, rng)
            self.obs_dim = stack.output_size
        hiddens = [int(h) for h in config["hiddens"]]
        act = _ACTIVATIONS[config["activation"]]
        n_out = self.action_dist_class.inputs_size(action_space)
        n_policy_out = n_out // 2 if self.continuous else n_out
        self.shared = bool(config["vf_share_layers"])
        if self.shared:
            self.encoder = _MLP("encoder", [self.obs_dim, *hiddens], act, math.sqrt(2), rng, True)
            self.pi = _MLP("pi", [hiddens[-1], n_policy_out], act, 0.01, rng)
            self.vf = _MLP("vf", [hiddens[-1], 1], act, 1.0, rng)
        else:
            self.pi = _MLP("pi", [self.obs_dim, *hiddens, n_policy_out], act, 0.01, rng)
            self.vf = _MLP("vf", [self.obs_dim, *hiddens, 1], act, 1.0, rng)
        if self.continuous:
            self.log_std = tf.Variable(
                tf.fill([n_policy_out], float(config["initial_log_std"])), name="log_std"
            )

    def _dist_inputs_and_value(self, obs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if self.conv is not None:
            obs = self.conv(obs)
        elif self.pi_conv is None:
            obs = tf.reshape(tf.cast(obs, tf.float32), [-1, self.obs_dim])
        if self.shared:
            features = self.encoder(obs)
            logits, value = self.pi(features), self.vf(features)
        elif self.pi_conv is not None:
            logits, value = self.pi(self.pi_conv(obs)), self.vf(self.vf_conv(obs))
        else:
            logits, value = self.pi(obs), self.vf(obs)
        if self.continuous:
            logits = tf.concat([logits, tf.broadcast_to(self.log_std, tf.shape(logits))], -1)
        return logits, tf.squeeze(value, -1)

    def forward_train(self, batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The training forward pass."""
        dist_inputs, value = self._dist_inputs_and_value(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: dist_inputs, Columns.VF_PREDS: value}

    __call__ = forward_train

    def action_dist(self, dist_inputs: tf.Tensor):
        return self.action_dist_class(dist_inputs, self.ops)

    # Acting runs compiled: an eager MLP call costs more than the env step it serves.
    @tf.function(reduce_retracing=True, autograph=False)
    def forward_exploration(self, obs: tf.Tensor) -> dict[str, tf.Tensor]:
        """Sample actions for acting in the environment, with what the learner needs."""
        dist_inputs, value = self._dist_inputs_and_value(obs)
        return exploration_outputs(self.action_dist(dist_inputs), dist_inputs, value)

    @tf.function(reduce_retracing=True, autograph=False)
    def forward_inference(self, obs: tf.Tensor) -> dict[str, tf.Tensor]:
        """Greedy actions for evaluation."""
        dist_inputs, _ = self._dist_inputs_and_value(obs)
        return {Columns.ACTIONS: self.action_dist(dist_inputs).deterministic_sample()}

    @tf.function(reduce_retracing=True, autograph=False)
    def value(self, obs: tf.Tensor) -> tf.Tensor:
        return self._dist_inputs_and_value(obs)[1]
