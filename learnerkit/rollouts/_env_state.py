"""A gymnasium env's state as plain data, for checkpoints that hold no pickle (issue 21).

`capture` walks an env's wrappers down to the env itself and keeps every attribute whose
value is plain data: ``None``, numbers, strings, numpy arrays and scalars, random
generators (as their bit generator's state), and tuples, lists and string-keyed dicts of
these. What does not change while it runs is left out (spaces, the ``EnvSpec``, metadata,
constructor arguments, functions). An env holding anything else (a physics engine's data,
a renderer, a socket) cannot be captured so: `capture` raises `NotCapturable` naming the
attribute, and a runner falls back to `generator_state`, the state of the generator its
resets draw from, which every gymnasium env has (``env.np_random``).

Classic control and toy-text envs (CartPole, Pendulum, Acrobot, MountainCar, FrozenLake...)
are captured whole: `restore` puts an env built alike back where it was, mid-episode, so
that it steps on exactly as the captured one would have.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping
from typing import Any

import gymnasium
import numpy as np

__all__ = ["NotCapturable", "capture", "check", "generator_state", "restore", "set_generator_state"]

# Attributes that do not change while an env runs (and may hold anything).
_STATIC = frozenset(
    {"_saved_kwargs", "metadata", "_metadata", "spec", "_cached_spec", "render_mode", "env"}
)
_FUNCTIONS = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    functools.partial,
)
_KIND = "__env_value__"


class NotCapturable(Exception):
    """The env holds state that is not plain data; the message names where."""


def _layers(env: Any) -> list[Any]:
    layers = [env]
    while isinstance(layers[-1], gymnasium.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _static(name: str, value: Any) -> bool:
    return (
        name in _STATIC
        or isinstance(value, (gymnasium.Space, gymnasium.envs.registration.EnvSpec))
        or isinstance(value, _FUNCTIONS)
    )


def _encode(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise NotCapturable(f"{where} is an array of dtype {value.dtype}")
        return value.copy()
    if isinstance(value, np.generic):
        return {_KIND: "scalar", "dtype": value.dtype.str, "value": value.item()}
    if isinstance(value, np.random.Generator):
        return {_KIND: "generator", "state": value.bit_generator.state}
    if isinstance(value, (tuple, list)):
        items = [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return {_KIND: type(value).__name__, "items": items}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        items = {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
        return {_KIND: "dict", "items": items}
    raise NotCapturable(f"{where} is a {type(value).__module__}.{type(value).__qualname__}")


def _decode(value: Any, current: Any) -> Any:
    if not isinstance(value, Mapping) or _KIND not in value:
        return value
    kind = value[_KIND]
    if kind == "scalar":
        return np.dtype(value["dtype"]).type(value["value"])
    if kind == "generator":
        state = value["state"]
        generator = current
        if not isinstance(current, np.random.Generator):
            generator = np.random.Generator(getattr(np.random, state["bit_generator"])())
        generator.bit_generator.state = state
        return generator
    if kind in ("tuple", "list"):
        items = [_decode(v, None) for v in value["items"]]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict":
        return {k: _decode(v, None) for k, v in value["items"].items()}
    raise ValueError(f"unknown kind of value {kind!r}")


def capture(env: Any) -> list[dict[str, Any]]:
    """The env's state, layer by layer (its wrappers, then itself): each layer's class and
    the attributes that change while it runs. `NotCapturable` if one is not plain data."""
    layers = []
    for layer in _layers(env):
        name = type(layer).__qualname__
        values = {
            attr: _encode(value, f"{name}.{attr}")
            for attr, value in vars(layer).items()
            if not _static(attr, value)
        }
        layers.append({"class": name, "attributes": values})
    return layers


def check(env: Any, layers: list[Mapping[str, Any]]) -> None:
    """A ValueError unless ``env``'s layers are the captured ones (`restore` would fit)."""
    own = _layers(env)
    names = [type(layer).__qualname__ for layer in own]
    saved = [layer["class"] for layer in layers]
    if names != saved:
        raise ValueError(f"the env's layers are {names}, the saved state's {saved}")
    for layer, state in zip(own, layers, strict=True):
        unknown = sorted(set(state["attributes"]) - set(vars(layer)))
        if unknown:
            raise ValueError(f"{type(layer).__qualname__} has no attributes {unknown}")


def restore(env: Any, layers: list[Mapping[str, Any]]) -> None:
    """Put `capture`'s state into ``env``, built as the captured one was; a ValueError if
    its layers are not the captured ones (nothing is changed then)."""
    check(env, layers)
    for layer, state in zip(_layers(env), layers, strict=True):
        for attr, value in state["attributes"].items():
            setattr(layer, attr, _decode(value, getattr(layer, attr)))


def generator_state(env: Any) -> dict[str, Any]:
    """The state of the generator the env's resets draw from (``env.np_random``)."""
    return env.unwrapped.np_random.bit_generator.state


def set_generator_state(env: Any, state: Mapping[str, Any]) -> None:
    """Restore `generator_state`'s value: the env's next resets draw as the saved one's."""
    generator = np.random.Generator(getattr(np.random, state["bit_generator"])())
    generator.bit_generator.state = dict(state)
    env.unwrapped.np_random = generator
