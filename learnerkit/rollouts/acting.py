"""Acting in numpy: what env runners call every step. The default MLP actor-critic's copy,
and the protocol any module class's numpy copy meets.

A runner's policy runs on a handful of observations at a time (one per environment copy),
where a framework's per-operation overhead dwarfs the arithmetic: for CartPole's 64-64
towers on 8 observations, torch takes ~60 us per call, TensorFlow's compiled function
~220 us, this numpy copy ~20 us. Runners of the default modules (``TorchMLPActorCritic``,
``TFMLPActorCritic``) act with it; a custom module acts through its framework as before.

The distributions are ``learnerkit.distributions``' own, over ``NumpyOps``, so sampling,
log-probabilities and greedy actions mean exactly what they mean in the learner's loss. The
weights are a copy, refreshed by the runner whenever it receives new ones.

``default_module_layout`` and ``NumpyActorCritic.from_weights`` know the default modules'
weight names and shapes without their framework: an env runner given weights never imports
torch or TensorFlow (~200 MB and a second of start-up per Ray runner).

Any module class can offer the same (``NumpyModule``): a class attribute ``numpy_copy``
naming a numpy class (or ``ModuleSpec(numpy_copy=...)``, or an algorithm's
``Algorithm.module_classes["numpy"]``), built from the weights with ``from_weights``.
``numpy_copy_class`` says which class a module spec's runners act with.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from learnerkit._batch import Columns
from learnerkit._checkpoint import check_same_shapes
from learnerkit._import_path import resolve
from learnerkit._specs import ModuleSpec
from learnerkit.conv_encoders import conv_stack, module_config_for
from learnerkit.distributions import dist_class_for, exploration_outputs
from learnerkit.rollouts._numpy_conv import NumpyConvStack
from learnerkit.rollouts._numpy_layers import ACTIVATIONS, DenseStack, NumpyOps
from learnerkit.rollouts._recurrent_acting import NumpyLSTMActorCritic, lstm_module_layout

__all__ = [
    "ACTIVATIONS",
    "DenseStack",
    "NumpyActorCritic",
    "NumpyConvStack",
    "NumpyLSTMActorCritic",
    "NumpyModule",
    "NumpyOps",
    "check_same_shapes",
    "default_module_layout",
    "numpy_copy_class",
]

# A dense layer's matrix in each framework's weights: torch's ``weight`` is [out, in],
# TensorFlow's ``kernel`` [in, out]. Layer i of a tower is named "<tower>.<2i>" in both
# (the activations take the odd places of torch's nn.Sequential).
_MATRIX = {"torch": "weight", "tf": "kernel"}


def default_module_layout(module_spec: ModuleSpec, framework: str) -> dict[str, tuple[int, ...]]:
    """The names and shapes of the default module's weights (``get_weights``), without
    building it. Only for a spec without ``module_class``."""
    if module_spec.model_config.get("use_lstm", False):
        return lstm_module_layout(module_spec, framework)
    config = module_config_for(module_spec.model_config, module_spec.observation_space)
    action_space = module_spec.action_space
    n_out = dist_class_for(action_space).inputs_size(action_space)
    continuous = not hasattr(action_space, "n")
    n_policy = n_out // 2 if continuous else n_out
    obs_dim = int(np.prod(module_spec.observation_space.shape))
    hiddens = [int(h) for h in config["hiddens"]]
    layout: dict[str, tuple[int, ...]] = {}
    stack = conv_stack(module_spec.observation_space, config)
    if stack is not None:
        obs_dim = stack.output_size
        convs = ["conv"] if config["vf_share_layers"] else ["pi_conv", "vf_conv"]
        for tower in convs:
            layout.update(stack.layout(tower, framework))
    if config["vf_share_layers"]:
        towers = {
            "encoder": [obs_dim, *hiddens],
            "pi": [hiddens[-1], n_policy],
            "vf": [hiddens[-1], 1],
        }
    else:
        towers = {"pi": [obs_dim, *hiddens, n_policy], "vf": [obs_dim, *hiddens, 1]}
    matrix = _MATRIX[framework]
    if continuous:
        layout["log_std"] = (n_policy,)
    for tower, sizes in towers.items():
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            shape = (fan_out, fan_in) if framework == "torch" else (fan_in, fan_out)
            layout[f"{tower}.{2 * i}.{matrix}"] = shape
            layout[f"{tower}.{2 * i}.bias"] = (fan_out,)
    return layout


class NumpyModule(Protocol):
    """A module's numpy copy, what env runners act with instead of the framework module: on
    a handful of observations per step numpy beats a framework's per-operation overhead,
    and a runner that acts in numpy never imports the framework.

    A module class offers one with a class attribute ``numpy_copy`` (the class, or its
    import path ``"package.module:QualName"``, to keep the module's file free of sampling
    code), declared on the class itself: a subclass, which may compute something else, does
    not inherit it. ``ModuleSpec(numpy_copy=...)`` names one for any spec, and an algorithm
    declares its default module's with ``Algorithm.module_classes["numpy"]``.

    Two members are optional: ``value`` (the state value, needed by loops whose policy
    outputs include ``vf_preds``, which bootstrap from it) and ``weight_layout`` (the
    weights' names and shapes from the spec alone, so a runner reports them without
    building the framework module; without it, the runner builds the module once).
    """

    @classmethod
    def from_weights(
        cls, weights: Mapping[str, np.ndarray], module_spec: ModuleSpec, framework: str, rng: Any
    ) -> NumpyModule:
        """The copy of a module of ``module_spec`` from its weights (``get_weights``' names
        in ``framework``), sampling from ``rng`` (a ``numpy.random.Generator``); a
        CheckpointError if they do not fit (``check_same_shapes`` against its layout)."""

    def forward_exploration(self, obs: np.ndarray) -> Mapping[str, np.ndarray]:
        """The loop's policy outputs (``actions`` at least) for a batch of observations, as
        the module's ``forward_exploration`` computes them."""

    def forward_inference(self, obs: np.ndarray) -> Mapping[str, np.ndarray]:
        """Greedy ``actions``, as the module's ``forward_inference``."""


def numpy_copy_class(module_spec: ModuleSpec) -> type | None:
    """The numpy class runners of ``module_spec`` act with (``NumpyModule``), or None when
    they act through the framework: the spec's ``numpy_copy``, else the module class's own
    ``numpy_copy`` attribute (a class given by import path is imported to read it), else
    ``NumpyActorCritic`` for the default module (``NumpyLSTMActorCritic`` with ``use_lstm``),
    unless it has a conv encoder: its runners
    act through the framework with one thread, which beats numpy's im2col at 84x84x4 on 8
    envs (torch 4.2 ms a step, TF 3.2 ms, numpy 7.1 ms; ``bench/conv_acting.py``). Naming
    ``NumpyActorCritic`` as the spec's ``numpy_copy`` acts in numpy anyway (faster with one
    env per runner, and the runner never imports the framework)."""
    if module_spec.numpy_copy is not None:
        return resolve(module_spec.numpy_copy, "ModuleSpec.numpy_copy")
    if module_spec.module_class is None:
        if module_spec.model_config.get("use_lstm", False):
            return NumpyLSTMActorCritic
        config = module_config_for(module_spec.model_config, module_spec.observation_space)
        has_conv = conv_stack(module_spec.observation_space, config) is not None
        return None if has_conv else NumpyActorCritic
    module_class = resolve(module_spec.module_class, "ModuleSpec.module_class")
    declared = vars(module_class).get("numpy_copy")  # not inherited, on purpose
    return None if declared is None else resolve(declared, f"{module_class.__name__}.numpy_copy")


class NumpyActorCritic:
    """The acting half of a default MLP actor-critic: ``forward_exploration``,
    ``forward_inference`` and ``value`` on numpy observations, as the module computes them
    (observations flattened and cast to float32, or images through the conv encoders
    ``convs``, by tower: ``conv`` shared, or ``pi_conv`` and ``vf_conv``; a Box action
    space's log standard deviation appended to the means)."""

    def __init__(
        self,
        *,
        pi: DenseStack,
        vf: DenseStack,
        encoder: DenseStack | None,
        activation: str,
        dist_class: Any,
        log_std: np.ndarray | None,
        rng: np.random.Generator,
        convs: Mapping[str, NumpyConvStack] | None = None,
        conv_activation: str = "relu",
    ) -> None:
        self.pi, self.vf, self.encoder = pi, vf, encoder
        self.convs = dict(convs or {})
        self.activation = ACTIVATIONS[activation]
        self.conv_activation = ACTIVATIONS[conv_activation]
        self.dist_class = dist_class
        self.log_std = log_std
        self.ops = NumpyOps(rng)

    @classmethod
    def weight_layout(cls, module_spec: ModuleSpec, framework: str) -> dict[str, tuple[int, ...]]:
        """``default_module_layout``: the default module's weight names and shapes."""
        return default_module_layout(module_spec, framework)

    @classmethod
    def from_weights(
        cls,
        weights: Mapping[str, np.ndarray],
        module_spec: ModuleSpec,
        framework: str,
        rng: np.random.Generator,
        where: str = "the env runner's module",
    ) -> NumpyActorCritic:
        """The copy of a default module from its weights (``get_weights``' names), checked
        against ``default_module_layout``: a CheckpointError names what does not fit."""
        layout = default_module_layout(module_spec, framework)
        check_same_shapes(layout, weights, where)
        config = module_config_for(module_spec.model_config, module_spec.observation_space)
        image_stack = conv_stack(module_spec.observation_space, config)
        matrix = _MATRIX[framework]

        def stack(tower: str, act_last: bool = False) -> DenseStack:
            count = sum(name.startswith(f"{tower}.") for name in layout) // 2
            kernels, biases = [], []
            for i in range(count):
                kernel = np.asarray(weights[f"{tower}.{2 * i}.{matrix}"], dtype=np.float32)
                kernels.append(np.ascontiguousarray(kernel.T if framework == "torch" else kernel))
                biases.append(np.array(weights[f"{tower}.{2 * i}.bias"], dtype=np.float32))
            return DenseStack(kernels=kernels, biases=biases, act_last=act_last)

        log_std = weights.get("log_std")
        towers = ["conv"] if config["vf_share_layers"] else ["pi_conv", "vf_conv"]
        convs = {}
        if image_stack is not None:
            convs = {
                t: NumpyConvStack.from_weights(weights, image_stack, t, framework) for t in towers
            }
        return cls(
            pi=stack("pi"),
            vf=stack("vf"),
            encoder=stack("encoder", act_last=True) if config["vf_share_layers"] else None,
            activation=config["activation"],
            dist_class=dist_class_for(module_spec.action_space),
            log_std=None if log_std is None else np.array(log_std, dtype=np.float32),
            rng=rng,
            convs=convs,
            conv_activation=config["conv_activation"],
        )

    def _inputs(self, obs: np.ndarray, conv_tower: str) -> np.ndarray:
        """What a tower takes: the conv encoder's features, or the flat observations."""
        conv = self.convs.get(conv_tower)
        if conv is None:
            return np.asarray(obs).reshape(len(obs), -1).astype(np.float32, copy=False)
        return conv(obs, self.conv_activation)

    def _dist_inputs_and_value(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.encoder is not None:  # vf_share_layers
            pi_in = vf_in = self.encoder(self._inputs(obs, "conv"), self.activation)
        else:
            pi_in, vf_in = self._inputs(obs, "pi_conv"), self._inputs(obs, "vf_conv")
        logits = self.pi(pi_in, self.activation)
        value = self.vf(vf_in, self.activation)[:, 0]
        if self.log_std is not None:
            logits = np.concatenate([logits, np.broadcast_to(self.log_std, logits.shape)], -1)
        return logits, value

    def forward_exploration(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        dist_inputs, value = self._dist_inputs_and_value(obs)
        return exploration_outputs(self.dist_class(dist_inputs, self.ops), dist_inputs, value)

    def forward_inference(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        dist_inputs, _ = self._dist_inputs_and_value(obs)
        return {Columns.ACTIONS: self.dist_class(dist_inputs, self.ops).deterministic_sample()}

    def value(self, obs: np.ndarray) -> np.ndarray:
        return self._dist_inputs_and_value(obs)[1]
