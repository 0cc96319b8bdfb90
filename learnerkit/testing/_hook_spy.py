"""The contract kit's spy on an algorithm's hooks: a copy of the algorithm, registered for a
block, whose hooks record each call (``HookCall``) and check its result against the hook's
spec; and the argument checks ``check_hooks`` applies to the recorded calls."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import attrs
import numpy as np
import pluggy

import learnerkit
from learnerkit import hookspecs
from learnerkit.testing._subject import Subject

ARGUMENT_CHECKS: dict[str, Callable[[Any], bool]] = {
    "learner": lambda v: isinstance(v, learnerkit.Learner),
    "module_id": lambda v: isinstance(v, str),
    "module": lambda v: v is not None,
    "batch": lambda v: isinstance(v, Mapping) or hasattr(v, "keys"),
    "fwd_out": lambda v: isinstance(v, Mapping),
    "state": lambda v: isinstance(v, Mapping),
    "ops": lambda v: hasattr(v, "framework"),
    "timestep": lambda v: isinstance(v, (int, np.integer)),
    "update_kwargs": lambda v: isinstance(v, Mapping),
    "metrics": lambda v: isinstance(v, Mapping),
}
RESULT_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "compute_loss": (
        lambda r: (
            isinstance(r, Mapping)
            and ("total_loss" in r or isinstance(r.get(hookspecs.OPTIMIZER_LOSSES), Mapping))
        ),
        f'a mapping with "total_loss" (or "{hookspecs.OPTIMIZER_LOSSES}": a loss per optimizer)',
    ),
    "additional_update": (lambda r: r is None or isinstance(r, Mapping), "a mapping or None"),
    "compile_results": (lambda r: r is None or isinstance(r, Mapping), "a mapping or None"),
    "configure_optimizers": (lambda r: True, "an optimizer, a mapping of them, or None"),
}


@attrs.define
class HookCall:
    hook: str
    arguments: dict[str, Any]
    result: Any


def _spy_on(plugin: Any, calls: list[HookCall]) -> Any:
    """A plugin module whose hooks wrap ``plugin``'s, recording each call."""
    spied = types.ModuleType(f"{getattr(plugin, '__name__', 'plugin')}_spied")
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    for caller in pm.get_hookcallers(plugin) or ():
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin:
                wrapped = _wrap(caller.name, impl.function, impl.argnames, calls)
                setattr(spied, caller.name, learnerkit.hookimpl(**impl.opts)(wrapped))
    return spied


def _wrap(hook: str, function: Callable, argnames: tuple[str, ...], calls: list) -> Callable:
    def spy(*args: Any) -> Any:
        result = function(*args)
        calls.append(HookCall(hook, dict(zip(argnames, args, strict=True)), result))
        ok, expected = RESULT_CHECKS[hook]
        # Here, before the host trips over it with an error of its own.
        assert ok(result), f"the {hook} hook returned {result!r}; expected {expected}"
        return result

    # pluggy reads the argument names through __wrapped__: the spy asks for what the hook asks.
    spy.__wrapped__ = function  # type: ignore[attr-defined]
    return spy


@contextmanager
def spied_algorithm(subject: Subject) -> Iterator[list[HookCall]]:
    """Registers, for the block, a copy of the algorithm whose hooks record their calls."""
    original = subject.declared
    calls: list[HookCall] = []
    spied = _spy_on(original.plugin, calls)
    spied.algorithm = attrs.evolve(original, plugin=None, package=None, version=None)
    learnerkit.register_algorithm(spied, replace=True)
    try:
        yield calls
    finally:
        learnerkit.unregister_algorithm(subject.algorithm)
        if original.package == "(registered in code)":
            learnerkit.register_algorithm(original.plugin, replace=True)
