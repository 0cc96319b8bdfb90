"""The TensorFlow backend: module building, the compiled minibatch step, state as numpy
(the variables' names and state, and their checks, in ``variable_state``).

Same methods and meaning as ``learnerkit.backends.torch._backend.TorchBackend`` (both meet
``learnerkit.backends._base.Backend``). The
minibatch steps (``train_step.TrainStep``) are one ``tf.function`` (gather, forward, the
algorithm's loss, gradients, clipping, Adam, in a graph loop over minibatches), traced once
per batch layout: the batch dimension is left unknown so the smaller last minibatch does not
retrace, and the algorithm
state's numbers enter as tensors so that a new KL coefficient does not retrace either.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from numbers import Number
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from learnerkit._batch import SampleBatch, training_arrays
from learnerkit._import_path import resolve
from learnerkit._specs import ModuleSpec
from learnerkit.backends._base import AllReduce, Forward, GradientHooks, Gradients, LossFn
from learnerkit.backends.tf import _variable_state as variable_state
from learnerkit.backends.tf._ops import OPTIMIZER_VARIABLES, TF_OPS
from learnerkit.backends.tf._train_step import TrainStep, clip_pairs
from learnerkit.backends.tf._variable_state import named_variables, variable_names
from learnerkit.errors import CheckpointError, ConfigError, PluginError


def tf_device_name(device: str | None) -> str:
    """A TensorFlow device scope for ``device``: None or ``"cpu"`` is ``"/CPU:0"``; torch-style
    ``"cuda"``, ``"cuda:1"``, ``"gpu:1"`` map to ``"/GPU:N"``; ``"/GPU:0"`` and other TF device
    strings pass as they are. A device this machine lacks is a ConfigError, because
    TensorFlow would otherwise quietly run on the CPU."""
    text = "cpu" if device is None else str(device).strip()
    kind, _, index = text.lower().partition(":")
    if kind == "cpu" and not index:
        name = "/CPU:0"
    elif kind in ("cuda", "gpu") and (index or "0").isdigit():
        name = f"/GPU:{index or 0}"
    else:
        name = text
    try:
        spec = tf.DeviceSpec.from_string(name)
        if not name.startswith("/"):
            raise ValueError("a TensorFlow device name starts with '/'")
    except ValueError as exc:
        raise ConfigError(
            f"device {device!r} is not a TensorFlow device (try '/GPU:0', 'cuda:0' or 'cpu'): {exc}"
        ) from exc
    available = tf.config.list_logical_devices()
    wanted_type = (spec.device_type or "CPU").upper()
    wanted_index = spec.device_index or 0
    for logical in available:
        found = tf.DeviceSpec.from_string(logical.name)
        if found.device_type.upper() == wanted_type and (found.device_index or 0) == wanted_index:
            return name
    raise ConfigError(
        f"device {device!r} is not on this machine; TensorFlow sees {[d.name for d in available]}"
    )


def _state_value(value: Any) -> Any:
    """Numbers and arrays become tensors (fed to the step, so a new value does not retrace);
    flags, strings and the like stay python values (a new one retraces, as it should)."""
    if isinstance(value, bool | np.bool_):
        return value
    if isinstance(value, Number | np.number):
        return tf.constant(value, tf.float32)
    if isinstance(value, np.ndarray):
        return tf.constant(value.astype(np.float32) if value.dtype == np.float64 else value)
    return value


class TFBackend:
    """Everything framework-specific a Learner needs, for TensorFlow."""

    framework = "tf"
    ops = TF_OPS

    def __init__(self, device: str | None = None) -> None:
        self.device = tf_device_name(device)

    # Modules and optimizers --------------------------------------------------------------
    def build_module(self, spec: ModuleSpec, seed: int) -> tf.Module:
        from learnerkit.backends.tf._recurrent import TFLSTMActorCritic
        from learnerkit.backends.tf.modules import TFMLPActorCritic

        with tf.device(self.device):
            if spec.module_class is None:
                default = (
                    TFLSTMActorCritic if spec.model_config.get("use_lstm") else TFMLPActorCritic
                )
                return default(
                    spec.observation_space, spec.action_space, spec.model_config, seed=seed
                )
            # TensorFlow cannot fork its random state as torch does, so a custom module
            # class is built under the global seed: the same seed gives the same weights.
            tf.random.set_seed(seed)
            module_class = resolve(spec.module_class, "ModuleSpec.module_class")
            return module_class(spec.observation_space, spec.action_space, spec.model_config)

    def parameters(self, module: tf.Module) -> list[tf.Variable]:
        return list(module.trainable_variables)

    def freeze(self, module: tf.Module) -> None:
        """Nothing to do: only the module's own optimizer ever updates variables, and a
        target network has none."""

    def polyak_update(self, target: tf.Module, source: tf.Module, tau: float) -> None:
        """``target <- tau * source + (1 - tau) * target``; a bitwise copy at ``tau=1``."""
        own, theirs = named_variables(target), named_variables(source)
        for name, variable in own.items():
            if tau == 1.0:
                variable.assign(theirs[name])
            else:
                variable.assign(tau * theirs[name] + (1.0 - tau) * variable)

    # Data --------------------------------------------------------------------------------
    def to_tensors(self, batch: SampleBatch) -> dict[str, tf.Tensor]:
        """Numeric columns as tensors on the device; every float becomes float32."""
        tensors = {}
        with tf.device(self.device):
            for name, array in training_arrays(batch):
                # identity() copies to the scope's device; constant() alone stays on the host.
                tensors[name] = tf.identity(array)
        return tensors

    def permutation(self, n: int, generator: np.random.Generator) -> np.ndarray:
        # Indices stay numpy: slicing them per minibatch is free, eager tensor slicing is not.
        return generator.permutation(n)

    def arange(self, n: int) -> np.ndarray:
        return np.arange(n, dtype=np.int64)

    def state_for_step(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """Algorithm state as the train step takes it: numbers as float32 scalar tensors."""
        return {k: _state_value(v) for k, v in state.items()}

    def make_generator(self, seed: int) -> np.random.Generator:
        return np.random.default_rng(seed)

    def get_generator_state(self, generator: np.random.Generator) -> dict[str, Any]:
        """The generator's state as JSON values (checkpoints keep it, for an exact resume)."""
        return dict(generator.bit_generator.state)

    def set_generator_state(self, generator: np.random.Generator, state: Any, where: str) -> None:
        """Restore ``get_generator_state``'s value; a CheckpointError if it is not one."""
        kind = type(generator.bit_generator).__name__
        if not isinstance(state, Mapping) or state.get("bit_generator") != kind:
            raise CheckpointError(
                f"{where}: the shuffling generator's state is not a numpy {kind} state "
                "(written by another framework?)"
            )
        try:
            generator.bit_generator.state = dict(state)
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise CheckpointError(f"{where}: invalid generator state: {exc}") from exc

    def make_loss_generator(self, seed: int) -> tf.random.Generator:
        # A stateful generator (its state a variable): a compiled step draws from it and
        # advances it, and its state can be saved and restored, unlike tf.random.normal's.
        with tf.device(self.device):
            return tf.random.Generator.from_seed(seed, alg="philox")

    def get_loss_generator_state(self, generator: tf.random.Generator) -> np.ndarray:
        return generator.state.numpy().copy()

    def set_loss_generator_state(
        self, generator: tf.random.Generator, state: Any, where: str
    ) -> None:
        array = np.asarray(state)
        own = generator.state
        if array.dtype != own.dtype.as_numpy_dtype or array.shape != tuple(own.shape):
            raise CheckpointError(
                f"{where}: the loss generator's state is {array.dtype}{list(array.shape)}; "
                f"a TensorFlow generator's is {own.dtype.name}{list(own.shape)} (written by "
                "another framework?)"
            )
        generator.reset(array)

    def optimizer_parameters(self, optimizer: keras.optimizers.Optimizer) -> list | None:
        """The variables an optimizer made by ``ops.adam`` covers; None for another one
        (Keras keeps that list private)."""
        return OPTIMIZER_VARIABLES.get(optimizer)

    def parameter_names(self, module: tf.Module) -> dict[int, str]:
        """Variable names by ``id`` of the variable (for error messages)."""
        variables = list(module.trainable_variables)
        return {id(v): n for v, n in zip(variables, variable_names(variables), strict=True)}

    def param_ref(self, param: tf.Variable) -> Hashable:
        """``param.ref()`` (a variable is not hashable), as RLlib's TF learner."""
        return param.ref()

    def _groups(
        self, module: tf.Module, optimizers: Mapping[str, keras.optimizers.Optimizer]
    ) -> list[tuple[keras.optimizers.Optimizer, list[tf.Variable]]]:
        """Each optimizer with its variables (a lone one not made by ``ops.adam``: all)."""
        groups = []
        for optimizer in optimizers.values():
            variables = self.optimizer_parameters(optimizer)
            groups.append((optimizer, self.parameters(module) if variables is None else variables))
        return groups

    # Gradient stages (the Learner's defaults when one of them is customised) -------------
    def compute_gradients(self, module: tf.Module, total_loss: tf.Tensor, tape: Any) -> Gradients:
        """``tape.gradient`` of ``total_loss``, seeded as the fast path's (NaN for a
        non-finite loss); called while the step is traced."""
        params = self.parameters(module)
        seed = tf.where(tf.math.is_finite(total_loss), 1.0, np.nan)
        grads = tape.gradient(total_loss, params, output_gradients=tf.cast(seed, total_loss.dtype))
        return {p.ref(): g for p, g in zip(params, grads, strict=True) if g is not None}

    def clip_gradients(
        self,
        module: tf.Module,
        optimizers: Mapping[str, keras.optimizers.Optimizer],
        gradients: Gradients,
        clip: float,
        by: str,
    ) -> Gradients:
        """The fast path's clipping (per optimizer's variables), on the traced gradients."""
        out = dict(gradients)
        for _, variables in self._groups(module, optimizers):
            pairs = [(gradients[v.ref()], v) for v in variables if v.ref() in gradients]
            if pairs:
                out.update((v.ref(), g) for g, v in clip_pairs(pairs, float(clip), by, None))
        return out

    def apply_gradients(
        self,
        module: tf.Module,
        optimizers: Mapping[str, keras.optimizers.Optimizer],
        gradients: Gradients,
    ) -> None:
        """Each optimizer applies its variables' ``gradients`` (one with none: not called,
        so its step count stays)."""
        groups = self._groups(module, optimizers)
        known = {v.ref() for _, variables in groups for v in variables}
        if any(ref not in known for ref in gradients):
            raise PluginError(
                "gradients are keyed by something other than a trainable variable of the "
                "module (key gradients by learner.get_param_ref(variable))"
            )
        for optimizer, variables in groups:
            pairs = [(gradients[v.ref()], v) for v in variables if v.ref() in gradients]
            if pairs:
                optimizer.apply_gradients(pairs)

    # The minibatch step ------------------------------------------------------------------
    def make_train_step(
        self,
        forward: Forward,
        module: tf.Module,
        optimizers: Mapping[str, keras.optimizers.Optimizer],
        loss_fn: LossFn,
        *,
        grad_clip: float | None,
        grad_clip_by: str = "global_norm",
        allreduce_gradients: AllReduce | None = None,
        gradient_hooks: GradientHooks | None = None,
    ) -> TrainStep:
        """A function ``(tensors, minibatches, state, stop_on_skip)`` running one optimizer
        step on ``tensors[indices]`` for each ``indices`` of ``minibatches``: one gradient of
        the total loss (or, when the loss returns ``OPTIMIZER_LOSSES``, of each optimizer's
        loss with respect to its own variables), clipped (``grad_clip_by``; a global norm per
        optimizer), then each optimizer applies its variables' gradients. Each step's
        statistics: the loss statistics, the pre-clipping global gradient norm over the
        module, and ``skipped`` (1.0 when the step applied nothing, because the loss or the
        gradient norm was not finite or, with ``stop_on_skip``, an earlier step was skipped:
        weights and optimizer states are then exactly as before); ``metrics_table`` reads
        them.

        ``allreduce_gradients`` (data-parallel learners) maps the list of gradients, as numpy
        arrays, to their mean over the learners; the step calls it once, inside the compiled
        function, before clipping, so every learner clips and applies the same gradients.

        ``gradient_hooks`` (a Learner customising its gradient stages) are traced into the
        step in place of the gradient, clipping and applying (``TrainStep``)."""
        groups = []
        for name, optimizer in optimizers.items():
            variables = self.optimizer_parameters(optimizer)
            if variables is None:  # a lone optimizer not made by ops.adam: the whole module
                variables = self.parameters(module)
            if not optimizer.built:
                # Variables can only be made on a tf.function's first trace; make them now.
                optimizer.build(variables)
            groups.append((name, optimizer, variables))
        return TrainStep(
            self.device,
            forward,
            groups,
            loss_fn,
            grad_clip,
            grad_clip_by,
            allreduce_gradients,
            gradient_hooks,
        )

    def metrics_table(self, step_output: Any) -> tuple[list[str], np.ndarray]:
        """The minibatch steps' statistics as one array (a row per step, a column per key),
        with one device sync."""
        keys, tables = step_output.keys, step_output.tables
        if step_output.names:  # per-row values follow the statistics in each row
            tables = [t[:, : len(keys)] for t in tables]
        return keys, tf.concat(tables, 0).numpy().astype(np.float64)

    def per_row_values(self, step_output: Any) -> tuple[list[str], list[Any]]:
        """The per-row values the loss returned (``PER_ROW``): their names and, for each
        step in order, ``(row indices [size], values [names, size])`` as numpy; no names
        and no steps when the loss returned none."""
        names = step_output.names
        if not names:
            return [], []
        width, steps = len(step_output.keys), []
        for table, rows in zip(step_output.tables, step_output.runs, strict=True):
            values = table[:, width:].numpy().reshape(len(rows), len(names), rows.shape[1])
            steps.extend(zip(rows, values, strict=True))
        return names, steps

    # State as numpy (variable_state.py) -------------------------------------------------
    def get_module_state(self, module: tf.Module) -> dict[str, np.ndarray]:
        return variable_state.module_state(module)

    def check_module_state(self, module: tf.Module, state: Any, where: str) -> None:
        """A CheckpointError naming ``where`` unless ``state`` has every variable of
        ``module``, each of its shape and a castable dtype."""
        variable_state.check_module_state(module, state, where)

    def set_module_state(self, module: tf.Module, state: Mapping[str, Any], where: str) -> None:
        variable_state.set_module_state(module, state, where)

    def get_optimizer_state(self, optimizer: keras.optimizers.Optimizer) -> dict[str, Any]:
        return variable_state.optimizer_state(optimizer)

    def check_optimizer_state(
        self, optimizer: keras.optimizers.Optimizer, state: Any, where: str
    ) -> None:
        """A CheckpointError naming ``where`` unless ``state`` holds every variable of
        ``optimizer`` (step count, learning rate, moments), each of its shape and a
        castable dtype. Its ``config`` is for people reading a checkpoint: not loaded."""
        variable_state.check_optimizer_state(optimizer, state, where)

    def set_optimizer_state(
        self, optimizer: keras.optimizers.Optimizer, state: Mapping[str, Any], where: str
    ) -> None:
        variable_state.set_optimizer_state(optimizer, state, where)

    # Acting ------------------------------------------------------------------------------
    def numpy_call(self, fn: Callable[[tf.Tensor], Any], obs: np.ndarray) -> Any:
        """``fn`` run on ``obs`` as a float32 tensor on the device (uint8 pixels as uint8:
        the module scales them); its output as numpy."""
        obs = np.asarray(obs)
        with tf.device(self.device):
            out = fn(tf.convert_to_tensor(obs if obs.dtype == np.uint8 else obs.astype(np.float32)))
        if isinstance(out, Mapping):
            return {k: v.numpy() for k, v in out.items()}
        return out.numpy()
