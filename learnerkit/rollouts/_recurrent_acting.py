"""Acting in numpy with the default recurrent module (``model_config["use_lstm"]``): the
copy env runners step with, and the weights' layout known without a framework.

Measured with ``python bench/lstm_cartpole.py --acting`` (PPO's masked-CartPole preset: a
64-unit encoder and LSTM per trunk, 8 envs, on a shared 2-core machine under load): one
acting step costs ~120 us in this copy, ~450 us in the torch module and ~760 us in
TensorFlow's compiled function, so runners act in numpy, as they do for the feed-forward
module (``learnerkit.rollouts.acting``).

The weights are the framework module's (``get_weights``): torch's ``lstm.weight_ih_l0``
``[4H, F]``, ``lstm.weight_hh_l0`` ``[4H, H]`` and two biases, or TensorFlow's
``lstm.kernel`` ``[F, 4H]``, ``lstm.recurrent_kernel`` ``[H, 4H]`` and ``lstm.bias``; the
gates in torch's order (input, forget, cell, output) in both. Without ``vf_share_layers``
the value function's trunk has its own, prefixed ``vf_`` (``vf_encoder.0.weight``,
``vf_lstm.kernel``...). Image observations go through the conv encoder first (``conv.*``,
``vf_conv.*``; ``learnerkit.rollouts._numpy_conv``), so a recurrent pixel module acts in
numpy too: runners carry its state only through a numpy copy.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from learnerkit._batch import Columns
from learnerkit._checkpoint import check_same_shapes
from learnerkit._specs import ModuleSpec
from learnerkit.conv_encoders import conv_stack, module_config_for
from learnerkit.distributions import dist_class_for, exploration_outputs
from learnerkit.rollouts._numpy_conv import NumpyConvStack
from learnerkit.rollouts._numpy_layers import ACTIVATIONS, DenseStack, NumpyOps

__all__ = ["LSTMTrunk", "NumpyLSTMActorCritic", "lstm_module_layout"]

_MATRIX = {"torch": "weight", "tf": "kernel"}


def _prev_action_size(action_space: Any) -> int:
    if hasattr(action_space, "n"):
        return int(action_space.n)
    return int(np.prod(action_space.shape))


def lstm_module_layout(module_spec: ModuleSpec, framework: str) -> dict[str, tuple[int, ...]]:
    """The names and shapes of the default recurrent module's weights, without building it."""
    config = module_config_for(module_spec.model_config, module_spec.observation_space)
    action_space = module_spec.action_space
    n_out = dist_class_for(action_space).inputs_size(action_space)
    continuous = not hasattr(action_space, "n")
    n_policy = n_out // 2 if continuous else n_out
    obs_dim = int(np.prod(module_spec.observation_space.shape))
    stack = conv_stack(module_spec.observation_space, config)
    if stack is not None:
        obs_dim = stack.output_size
    hiddens = [int(h) for h in config["hiddens"]]
    features = hiddens[-1] if hiddens else obs_dim
    features += _prev_action_size(action_space) if config["lstm_use_prev_action"] else 0
    features += 1 if config["lstm_use_prev_reward"] else 0
    cell = int(config["lstm_cell_size"])
    matrix = _MATRIX[framework]
    layout: dict[str, tuple[int, ...]] = {}
    if stack is not None:
        for prefix in _trunk_prefixes(config):
            layout.update(stack.layout(f"{prefix}conv", framework))
    towers = {"pi": [cell, n_policy], "vf": [cell, 1]}
    for prefix in _trunk_prefixes(config):
        towers[f"{prefix}encoder"] = [obs_dim, *hiddens]
    for tower, sizes in towers.items():
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            shape = (fan_out, fan_in) if framework == "torch" else (fan_in, fan_out)
            layout[f"{tower}.{2 * i}.{matrix}"] = shape
            layout[f"{tower}.{2 * i}.bias"] = (fan_out,)
    for prefix in _trunk_prefixes(config):
        lstm = f"{prefix}lstm"
        if framework == "torch":
            layout[f"{lstm}.weight_ih_l0"] = (4 * cell, features)
            layout[f"{lstm}.weight_hh_l0"] = (4 * cell, cell)
            layout[f"{lstm}.bias_ih_l0"] = (4 * cell,)
            layout[f"{lstm}.bias_hh_l0"] = (4 * cell,)
        else:
            layout[f"{lstm}.kernel"] = (features, 4 * cell)
            layout[f"{lstm}.recurrent_kernel"] = (cell, 4 * cell)
            layout[f"{lstm}.bias"] = (4 * cell,)
    if continuous:
        layout["log_std"] = (n_policy,)
    return layout


def _trunk_prefixes(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The policy's trunk, then the value function's where it has its own."""
    return ("",) if config["vf_share_layers"] else ("", "vf_")


@attrs.frozen
class LSTMTrunk:
    """A conv encoder for images (None otherwise), an encoder, then one LSTM step: kernels
    ``[F, 4H]``, ``[H, 4H]``, gates in torch's order."""

    encoder: DenseStack
    kernel: np.ndarray
    recurrent_kernel: np.ndarray
    bias: np.ndarray
    conv: NumpyConvStack | None = None

    def step(self, x: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gates = x @ self.kernel + h @ self.recurrent_kernel + self.bias
        i, f, g, o = np.split(gates, 4, axis=-1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        return _sigmoid(o) * np.tanh(c), c


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * x)  # no exp overflow


class NumpyLSTMActorCritic:
    """The acting half of the default recurrent module, one step at a time: ``initial_state``
    and ``forward_exploration`` / ``forward_inference`` / ``value`` on a mapping of ``obs``,
    ``state_in`` (and ``prev_actions``, ``prev_rewards`` where the module uses them)."""

    def __init__(
        self,
        *,
        trunks: Sequence[LSTMTrunk],
        pi: DenseStack,
        vf: DenseStack,
        activation: str,
        dist_class: Any,
        log_std: np.ndarray | None,
        discrete_n: int | None,
        use_prev_action: bool,
        use_prev_reward: bool,
        rng: np.random.Generator,
        conv_activation: str = "relu",
    ) -> None:
        self.trunks, self.pi, self.vf = tuple(trunks), pi, vf
        self.cell_size = self.trunks[0].recurrent_kernel.shape[0]
        self.activation = ACTIVATIONS[activation]
        self.conv_activation = ACTIVATIONS[conv_activation]
        self.dist_class = dist_class
        self.log_std = log_std
        self.discrete_n = discrete_n
        self.use_prev_action, self.use_prev_reward = use_prev_action, use_prev_reward
        self.ops = NumpyOps(rng)

    @classmethod
    def weight_layout(cls, module_spec: ModuleSpec, framework: str) -> dict[str, tuple[int, ...]]:
        return lstm_module_layout(module_spec, framework)

    @classmethod
    def from_weights(
        cls,
        weights: Mapping[str, np.ndarray],
        module_spec: ModuleSpec,
        framework: str,
        rng: np.random.Generator,
        where: str = "the env runner's module",
    ) -> NumpyLSTMActorCritic:
        layout = lstm_module_layout(module_spec, framework)
        check_same_shapes(layout, weights, where)
        config = module_config_for(module_spec.model_config, module_spec.observation_space)
        image_stack = conv_stack(module_spec.observation_space, config)
        matrix = _MATRIX[framework]

        def f32(name: str) -> np.ndarray:
            return np.array(weights[name], dtype=np.float32)

        def stack(tower: str, act_last: bool = False) -> DenseStack:
            count = sum(name.startswith(f"{tower}.") for name in layout) // 2
            kernels, biases = [], []
            for i in range(count):
                kernel = f32(f"{tower}.{2 * i}.{matrix}")
                kernels.append(np.ascontiguousarray(kernel.T if framework == "torch" else kernel))
                biases.append(f32(f"{tower}.{2 * i}.bias"))
            return DenseStack(kernels=kernels, biases=biases, act_last=act_last)

        def trunk(prefix: str) -> LSTMTrunk:
            lstm = f"{prefix}lstm"
            if framework == "torch":
                kernel = np.ascontiguousarray(f32(f"{lstm}.weight_ih_l0").T)
                recurrent = np.ascontiguousarray(f32(f"{lstm}.weight_hh_l0").T)
                bias = f32(f"{lstm}.bias_ih_l0") + f32(f"{lstm}.bias_hh_l0")
            else:
                kernel, bias = f32(f"{lstm}.kernel"), f32(f"{lstm}.bias")
                recurrent = f32(f"{lstm}.recurrent_kernel")
            encoder = stack(f"{prefix}encoder", act_last=True)
            conv = None
            if image_stack is not None:
                conv = NumpyConvStack.from_weights(weights, image_stack, f"{prefix}conv", framework)
            return LSTMTrunk(encoder, kernel, recurrent, bias, conv)

        action_space = module_spec.action_space
        log_std = weights.get("log_std")
        return cls(
            trunks=[trunk(prefix) for prefix in _trunk_prefixes(config)],
            pi=stack("pi"),
            vf=stack("vf"),
            activation=config["activation"],
            dist_class=dist_class_for(action_space),
            log_std=None if log_std is None else np.array(log_std, dtype=np.float32),
            discrete_n=int(action_space.n) if hasattr(action_space, "n") else None,
            use_prev_action=bool(config["lstm_use_prev_action"]),
            use_prev_reward=bool(config["lstm_use_prev_reward"]),
            rng=rng,
            conv_activation=config["conv_activation"],
        )

    def initial_state(self, n: int) -> np.ndarray:
        """The state of ``n`` envs at an episode's start: ``[h, c]`` of each trunk, zeros."""
        return np.zeros((n, 2 * self.cell_size * len(self.trunks)), dtype=np.float32)

    def _lstm_inputs(self, trunk: LSTMTrunk, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        obs = np.asarray(inputs[Columns.OBS])
        if trunk.conv is not None:
            x = trunk.conv(obs, self.conv_activation)
        else:
            x = obs.reshape(len(obs), -1).astype(np.float32, copy=False)
        if trunk.encoder.kernels:
            x = trunk.encoder(x, self.activation)
        parts = [x]
        if self.use_prev_action:
            prev = np.asarray(inputs[Columns.PREV_ACTIONS])
            if self.discrete_n is not None:
                prev = np.eye(self.discrete_n, dtype=np.float32)[prev.astype(np.int64)]
            parts.append(prev.reshape(len(x), -1).astype(np.float32, copy=False))
        if self.use_prev_reward:
            parts.append(np.asarray(inputs[Columns.PREV_REWARDS], np.float32).reshape(-1, 1))
        return np.concatenate(parts, axis=-1) if len(parts) > 1 else x

    def _step(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        state = np.asarray(inputs[Columns.STATE_IN], dtype=np.float32)
        outs, new_states = [], []
        for trunk, trunk_state in zip(
            self.trunks, np.split(state, len(self.trunks), axis=-1), strict=True
        ):
            x = self._lstm_inputs(trunk, inputs)
            h, c = trunk.step(x, *np.split(trunk_state, 2, axis=-1))
            outs.append(h)
            new_states += [h, c]
        logits = self.pi(outs[0], self.activation)
        if self.log_std is not None:
            logits = np.concatenate([logits, np.broadcast_to(self.log_std, logits.shape)], -1)
        value = self.vf(outs[-1], self.activation)[:, 0]
        return logits, value, np.concatenate(new_states, axis=-1)

    def forward_exploration(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        logits, value, state = self._step(inputs)
        out = exploration_outputs(self.dist_class(logits, self.ops), logits, value)
        out[Columns.STATE_OUT] = state
        return out

    def forward_inference(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        logits, _, state = self._step(inputs)
        actions = self.dist_class(logits, self.ops).deterministic_sample()
        return {Columns.ACTIONS: actions, Columns.STATE_OUT: state}

    def value(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self._step(inputs)[1]
