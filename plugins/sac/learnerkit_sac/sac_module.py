"""SAC's module, framework-free: its ``model_config`` (keys, defaults, checks), the names and
shapes of its weights in either framework, the squashed Gaussian's maths in numpy, and the
numpy copy env runners act with (``learnerkit.rollouts.acting.NumpyModule``).

The torch (``torch_sac.TorchSACModule``) and TensorFlow (``tf_sac.TFSACModule``) modules
compute the same functions with weights of the same names:

- ``pi.<2i>.weight`` / ``.kernel`` and ``.bias``: the policy, an MLP from the observation
  to the mean and log standard deviation (clipped to [-20, 2]) of a Gaussian whose sample
  ``x`` is squashed, ``u = tanh(x)``, and scaled to the Box, ``low + (u + 1) (high - low) /
  2``;
- ``qf.*`` and, with ``twin_q``, ``qf_twin.*``: MLPs from the observation and the squashed
  action ``u`` (in [-1, 1]) to Q;
- ``log_alpha``: the entropy temperature's logarithm.

Log-probabilities are those of ``u`` (Haarnoja et al. 2018, appendix C: the Gaussian's
minus ``sum log(1 - tanh(x)^2)``), as SB3 and RLlib compute them; the Box scaling's constant
log-determinant is left out, so ``target_entropy="auto"`` (``-|A|``) means the same for every
Box.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from learnerkit import Columns, ConfigError
from learnerkit.rollouts.acting import ACTIVATIONS, DenseStack, check_same_shapes

__all__ = [
    "LOG_STD_MAX",
    "LOG_STD_MIN",
    "SAC_MODEL_DEFAULTS",
    "NumpySACPolicy",
    "action_scale",
    "resolve_sac_config",
    "sac_layout",
]

SAC_MODEL_DEFAULTS: dict[str, Any] = {
    "hiddens": (256, 256),
    "activation": "relu",
    "twin_q": True,
    "initial_alpha": 1.0,
}
"""``model_config`` keys of SAC's module (``twin_q`` and ``initial_alpha`` come from SAC's
hyperparameters, ``Algorithm.module_settings``)."""
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
LOG_ALPHA = "log_alpha"
_MATRIX = {"torch": "weight", "tf": "kernel"}


def resolve_sac_config(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in; an unknown key or activation is a ConfigError naming the choices."""
    unknown = sorted(set(model_config) - set(SAC_MODEL_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"unknown model_config key(s) {unknown} for SAC's module; known: "
            f"{sorted(SAC_MODEL_DEFAULTS)}"
        )
    config = {**SAC_MODEL_DEFAULTS, **model_config}
    if config["activation"] not in ACTIVATIONS:
        raise ConfigError(
            f"model_config['activation'] must be one of {sorted(ACTIVATIONS)}, got "
            f"{config['activation']!r}"
        )
    if not config["hiddens"] or any(int(h) < 1 for h in config["hiddens"]):
        raise ConfigError(
            f"model_config['hiddens'] must be one or more layer sizes >= 1, got "
            f"{config['hiddens']!r}"
        )
    if not float(config["initial_alpha"]) > 0:
        raise ConfigError(
            f"model_config['initial_alpha'] must be > 0, got {config['initial_alpha']!r}"
        )
    return config


def action_dim(action_space: Any) -> int:
    if hasattr(action_space, "n") or not hasattr(action_space, "low"):
        raise ConfigError(
            f"SAC needs a Box action space (continuous actions), got {action_space}; for "
            "Discrete actions use DQN or PPO"
        )
    low, high = np.asarray(action_space.low), np.asarray(action_space.high)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ConfigError(
            f"SAC squashes actions into the Box's bounds, which must be finite; got {action_space}"
        )
    return int(np.prod(action_space.shape))


def action_scale(action_space: Any) -> tuple[np.ndarray, np.ndarray]:
    """The Box's centre and half-width, flat float32: ``action = centre + half * u``."""
    low = np.asarray(action_space.low, dtype=np.float64).reshape(-1)
    high = np.asarray(action_space.high, dtype=np.float64).reshape(-1)
    return ((high + low) / 2).astype(np.float32), ((high - low) / 2).astype(np.float32)


def towers(
    observation_space: Any, action_space: Any, model_config: Mapping[str, Any]
) -> dict[str, list[int]]:
    """Each MLP's layer sizes, input first."""
    config = resolve_sac_config(model_config)
    obs_dim = int(np.prod(observation_space.shape))
    n_actions = action_dim(action_space)
    hiddens = [int(h) for h in config["hiddens"]]
    out = {"pi": [obs_dim, *hiddens, 2 * n_actions], "qf": [obs_dim + n_actions, *hiddens, 1]}
    if config["twin_q"]:
        out["qf_twin"] = list(out["qf"])
    return out


def sac_layout(module_spec: Any, framework: str) -> dict[str, tuple[int, ...]]:
    """The module's weight names and shapes in ``framework``, from its spec alone."""
    matrix = _MATRIX[framework]
    layout: dict[str, tuple[int, ...]] = {}
    spec = module_spec
    for tower, sizes in towers(
        spec.observation_space, spec.action_space, spec.model_config
    ).items():
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            shape = (fan_out, fan_in) if framework == "torch" else (fan_in, fan_out)
            layout[f"{tower}.{2 * i}.{matrix}"] = shape
            layout[f"{tower}.{2 * i}.bias"] = (fan_out,)
    layout[LOG_ALPHA] = ()
    return layout


class NumpySACPolicy:
    """SAC's policy in numpy, for env runners: ``forward_exploration`` samples the squashed
    Gaussian, ``forward_inference`` takes its mean (``tanh`` of the Gaussian's mean), both
    scaled to the Box."""

    def __init__(
        self,
        pi: DenseStack,
        activation: str,
        centre: np.ndarray,
        half: np.ndarray,
        shape: tuple[int, ...],
        rng: np.random.Generator,
    ) -> None:
        self.pi, self.activation = pi, ACTIVATIONS[activation]
        self.centre, self.half, self.shape, self.rng = centre, half, shape, rng

    @classmethod
    def weight_layout(cls, module_spec: Any, framework: str) -> dict[str, tuple[int, ...]]:
        return sac_layout(module_spec, framework)

    @classmethod
    def from_weights(
        cls,
        weights: Mapping[str, np.ndarray],
        module_spec: Any,
        framework: str,
        rng: np.random.Generator,
    ) -> NumpySACPolicy:
        check_same_shapes(sac_layout(module_spec, framework), weights, "SAC's module")
        config = resolve_sac_config(module_spec.model_config)
        matrix = _MATRIX[framework]
        kernels, biases = [], []
        n_layers = len(config["hiddens"]) + 1
        for i in range(n_layers):
            kernel = np.asarray(weights[f"pi.{2 * i}.{matrix}"], dtype=np.float32)
            kernels.append(np.ascontiguousarray(kernel.T if framework == "torch" else kernel))
            biases.append(np.array(weights[f"pi.{2 * i}.bias"], dtype=np.float32))
        centre, half = action_scale(module_spec.action_space)
        shape = tuple(module_spec.action_space.shape)
        pi = DenseStack(kernels=kernels, biases=biases)
        return cls(pi, config["activation"], centre, half, shape, rng)

    def mean_log_std(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(obs).reshape(len(obs), -1).astype(np.float32, copy=False)
        mean, log_std = np.split(self.pi(x, self.activation), 2, axis=-1)
        return mean, np.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)

    def _to_box(self, u: np.ndarray) -> np.ndarray:
        return (self.centre + self.half * u).reshape(len(u), *self.shape)

    def forward_exploration(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        mean, log_std = self.mean_log_std(obs)
        x = mean + np.exp(log_std) * self.rng.standard_normal(mean.shape, dtype=np.float32)
        return {Columns.ACTIONS: self._to_box(np.tanh(x))}

    def forward_inference(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        mean, _ = self.mean_log_std(obs)
        return {Columns.ACTIONS: self._to_box(np.tanh(mean))}
