"""TensorFlow variables as checkpoints hold them: names that are the same in every process,
module and optimizer state as numpy arrays, and the checks that a state fits before any of
it is assigned (``TFBackend``'s state methods).

Keras names variables by per-process paths (``dense_2/kernel``, ``adam_1/...``), so a state
keyed by them would not load into another process's module: keys here are each variable's
own name (modules) or its position (optimizers), as torch keys its state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from learnerkit._checkpoint import check_arrays
from learnerkit.errors import CheckpointError

__all__ = [
    "check_module_state",
    "check_optimizer_state",
    "module_state",
    "named_variables",
    "optimizer_state",
    "set_module_state",
    "set_optimizer_state",
    "variable_names",
]


def variable_names(variables: Sequence[Any]) -> list[str]:
    """Names that are the same for every instance of a module or optimizer: each variable's
    own name (``pi.0.kernel``; ``kernel`` for a Keras layer's), never its path, where Keras
    numbers layers and optimizers per process (``dense_2/kernel``, ``adam_1/...``), and
    repeated names numbered in order (``kernel``, ``kernel_1``...)."""
    names, seen = [], {}
    for v in variables:
        name = v.name.removesuffix(":0")
        count = seen.get(name, 0)
        seen[name] = count + 1
        names.append(name if count == 0 else f"{name}_{count}")
    return names


def _slots(optimizer: keras.optimizers.Optimizer) -> dict[str, Any]:
    """The optimizer's variables (step count, learning rate, moments) by position, as torch
    keys its optimizer state: Keras names moments after the weights' per-process paths."""
    return {str(i): v for i, v in enumerate(optimizer.variables)}


def _layout(variables: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each variable's shape and numpy dtype, by name (what ``check_arrays`` compares)."""
    return {
        k: (tuple(v.shape), np.dtype(tf.as_dtype(v.dtype).as_numpy_dtype))
        for k, v in variables.items()
    }


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def named_variables(module: tf.Module) -> dict[str, tf.Variable]:
    """Every variable of ``module`` (trainable or not) by ``variable_names``' name."""
    variables = list(module.variables)
    return dict(zip(variable_names(variables), variables, strict=True))


def module_state(module: tf.Module) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in named_variables(module).items()}


def check_module_state(module: tf.Module, state: Any, where: str) -> None:
    """A CheckpointError naming ``where`` unless ``state`` has every variable of
    ``module``, each of its shape and a castable dtype."""
    check_arrays(_layout(named_variables(module)), state, where)


def set_module_state(module: tf.Module, state: Mapping[str, Any], where: str) -> None:
    """Assign ``state`` (checked first: nothing is assigned from one that does not fit)."""
    own = named_variables(module)
    check_module_state(module, state, where)
    for name, variable in own.items():
        variable.assign(np.asarray(state[name], tf.as_dtype(variable.dtype).as_numpy_dtype))


def optimizer_state(optimizer: keras.optimizers.Optimizer) -> dict[str, Any]:
    config = {k: v for k, v in optimizer.get_config().items() if _jsonable(v)}
    slots = _slots(optimizer)
    return {
        "variables": {k: np.asarray(v.numpy()).copy() for k, v in slots.items()},
        "names": [v.name for v in slots.values()],  # for people reading a checkpoint
        "config": config,
    }


def check_optimizer_state(optimizer: keras.optimizers.Optimizer, state: Any, where: str) -> None:
    """A CheckpointError naming ``where`` unless ``state`` holds every variable of
    ``optimizer`` (step count, learning rate, moments), each of its shape and a
    castable dtype. Its ``config`` is for people reading a checkpoint: not loaded."""
    given = state.get("variables") if isinstance(state, Mapping) else None
    try:
        if not isinstance(given, Mapping):
            raise CheckpointError("it has no 'variables' (was it saved by a torch learner?)")
        check_arrays(_layout(_slots(optimizer)), given, "the optimizer")
    except CheckpointError as exc:
        raise CheckpointError(
            f"optimizer state of {where} does not fit this learner: {exc}"
        ) from exc


def set_optimizer_state(
    optimizer: keras.optimizers.Optimizer, state: Mapping[str, Any], where: str
) -> None:
    """Assign ``state`` (checked first: nothing is assigned from one that does not fit)."""
    own = _slots(optimizer)
    check_optimizer_state(optimizer, state, where)
    given = state["variables"]
    for name, variable in own.items():
        variable.assign(np.asarray(given[name], tf.as_dtype(variable.dtype).as_numpy_dtype))
