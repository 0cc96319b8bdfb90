"""The Q-network's shape, framework-free: its ``model_config`` (keys, defaults, checks), the
names and shapes of its weights in either framework, and its numpy copy, what env runners
act with (``learnerkit.rollouts.acting.NumpyModule``): epsilon-greedy over the Q-values,
with the epsilon the learner last set, which travels in the weights.

The torch (``torch_q.TorchQNetwork``) and TensorFlow (``tf_q.TFQNetwork``) modules compute
the same function with weights of the same names: ``encoder.<2i>.weight`` / ``.kernel``
and ``.bias`` for the hidden layers, then a ``q`` head, or with ``dueling`` (Wang et al.
2016) a ``value`` head and an ``advantage`` head, ``Q = V + A - mean(A)``; and ``epsilon``.
Image observations go through learnerkit's conv encoder first (``conv.<2i>.*``, the Nature
CNN at 84x84, ``learnerkit.conv_encoders``), as in Mnih et al. 2015.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from learnerkit import Columns, ConfigError
from learnerkit.conv_encoders import CONV_DEFAULTS, conv_stack, module_config_for
from learnerkit.rollouts.acting import (
    ACTIVATIONS,
    DenseStack,
    NumpyConvStack,
    check_same_shapes,
)

__all__ = ["Q_MODEL_DEFAULTS", "NumpyQNetwork", "q_layout", "resolve_q_config"]

Q_MODEL_DEFAULTS: dict[str, Any] = {"hiddens": (64, 64), "activation": "relu", "dueling": True}
"""``model_config`` keys of the Q-network (``dueling`` comes from DQN's hyperparameters)."""
EPSILON = "epsilon"
_MATRIX = {"torch": "weight", "tf": "kernel"}


def resolve_q_config(model_config: Mapping[str, Any], observation_space: Any) -> dict[str, Any]:
    """Defaults filled in (an image's: its conv filters, 512 or 256 units); an unknown key
    or activation is a ConfigError naming the choices."""
    config = module_config_for(
        model_config,
        observation_space,
        {**Q_MODEL_DEFAULTS, **CONV_DEFAULTS},
        module="DQN's Q-network",
    )
    if not config["hiddens"] or any(int(h) < 1 for h in config["hiddens"]):
        raise ConfigError(
            f"model_config['hiddens'] must be one or more layer sizes >= 1, got "
            f"{config['hiddens']!r}"
        )
    return config


def num_actions(action_space: Any) -> int:
    if not hasattr(action_space, "n"):
        raise ConfigError(
            f"DQN needs a Discrete action space (one Q-value per action), got {action_space}; "
            "for continuous actions use an actor-critic algorithm (SAC, PPO)"
        )
    return int(action_space.n)


def heads(config: Mapping[str, Any], n_actions: int) -> dict[str, int]:
    """Each output head and its size."""
    return {"value": 1, "advantage": n_actions} if config["dueling"] else {"q": n_actions}


def q_layout(module_spec: Any, framework: str) -> dict[str, tuple[int, ...]]:
    """The Q-network's weight names and shapes in ``framework``, from its spec alone."""
    space = module_spec.observation_space
    config = resolve_q_config(module_spec.model_config, space)
    n_actions = num_actions(module_spec.action_space)
    stack = conv_stack(space, config)
    n_in = int(np.prod(space.shape)) if stack is None else stack.output_size
    sizes = [n_in, *map(int, config["hiddens"])]
    matrix = _MATRIX[framework]

    def dense(name: str, fan_in: int, fan_out: int) -> dict[str, tuple[int, ...]]:
        shape = (fan_out, fan_in) if framework == "torch" else (fan_in, fan_out)
        return {f"{name}.{matrix}": shape, f"{name}.bias": (fan_out,)}

    layout: dict[str, tuple[int, ...]] = {} if stack is None else stack.layout("conv", framework)
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        layout.update(dense(f"encoder.{2 * i}", fan_in, fan_out))
    for head, size in heads(config, n_actions).items():
        layout.update(dense(head, sizes[-1], size))
    layout[EPSILON] = ()
    return layout


class NumpyQNetwork:
    """The Q-network in numpy, for env runners: ``forward_exploration`` is epsilon-greedy
    (a uniformly random action with probability ``epsilon``, else the greedy one),
    ``forward_inference`` greedy."""

    def __init__(
        self,
        encoder: DenseStack,
        heads: Mapping[str, tuple[np.ndarray, np.ndarray]],
        activation: str,
        epsilon: float,
        rng: np.random.Generator,
        conv: NumpyConvStack | None = None,
        conv_activation: str = "relu",
    ) -> None:
        self.conv, self.conv_activation = conv, ACTIVATIONS[conv_activation]
        self.encoder, self.heads = encoder, dict(heads)
        self.activation = ACTIVATIONS[activation]
        self.epsilon, self.rng = float(epsilon), rng

    @classmethod
    def weight_layout(cls, module_spec: Any, framework: str) -> dict[str, tuple[int, ...]]:
        return q_layout(module_spec, framework)

    @classmethod
    def from_weights(
        cls,
        weights: Mapping[str, np.ndarray],
        module_spec: Any,
        framework: str,
        rng: np.random.Generator,
    ) -> NumpyQNetwork:
        check_same_shapes(q_layout(module_spec, framework), weights, "DQN's Q-network")
        space = module_spec.observation_space
        config = resolve_q_config(module_spec.model_config, space)
        stack = conv_stack(space, config)
        conv = (
            None
            if stack is None
            else NumpyConvStack.from_weights(weights, stack, "conv", framework)
        )
        matrix = _MATRIX[framework]

        def dense(name: str) -> tuple[np.ndarray, np.ndarray]:
            kernel = np.asarray(weights[f"{name}.{matrix}"], dtype=np.float32)
            kernel = np.ascontiguousarray(kernel.T if framework == "torch" else kernel)
            return kernel, np.array(weights[f"{name}.bias"], dtype=np.float32)

        layers = [dense(f"encoder.{2 * i}") for i in range(len(config["hiddens"]))]
        encoder = DenseStack(
            kernels=[k for k, _ in layers], biases=[b for _, b in layers], act_last=True
        )
        n_actions = num_actions(module_spec.action_space)
        return cls(
            encoder,
            {head: dense(head) for head in heads(config, n_actions)},
            config["activation"],
            float(np.asarray(weights[EPSILON])),
            rng,
            conv,
            config["conv_activation"],
        )

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        if self.conv is not None:
            x = self.conv(obs, self.conv_activation)
        else:
            x = np.asarray(obs).reshape(len(obs), -1).astype(np.float32, copy=False)
        features = self.encoder(x, self.activation)
        out = {head: features @ kernel + bias for head, (kernel, bias) in self.heads.items()}
        if "q" in out:
            return out["q"]
        advantage = out["advantage"]
        return out["value"] + advantage - advantage.mean(axis=-1, keepdims=True)

    def forward_exploration(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        greedy = self.q_values(obs).argmax(axis=-1)
        explore = self.rng.random(len(greedy)) < self.epsilon
        if explore.any():
            n_actions = self.heads.get("q", self.heads.get("advantage"))[1].shape[0]
            greedy[explore] = self.rng.integers(n_actions, size=int(explore.sum()))
        return {Columns.ACTIONS: greedy}

    def forward_inference(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        return {Columns.ACTIONS: self.q_values(obs).argmax(axis=-1)}
