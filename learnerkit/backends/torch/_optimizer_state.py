"""A torch optimizer's state as checkpoints hold it (numpy arrays and JSON values), and the
check that one fits an optimizer before any of it is loaded.

``Optimizer.load_state_dict`` takes nearly anything: per-parameter states of the wrong
shape broadcast, a missing ``exp_avg`` or a string learning rate surface at the next step as
a raw ``KeyError`` or ``TypeError`` (issue 21). So a state is checked first: its structure
and the kinds of its hyperparameters against the optimizer's own, each per-parameter array
against its parameter's shape, then by one step of a scratch copy of the optimizer on zero
parameters, which runs the optimizer's own code on the state without touching the real one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch

from learnerkit._checkpoint import check_array_values, sorted_names
from learnerkit.errors import CheckpointError

__all__ = ["as_torch_state", "check_torch_optimizer_state"]


def as_torch_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A checked state (``check_torch_optimizer_state``) as ``load_state_dict`` takes it."""
    return {
        "state": {
            int(i): {k: torch.tensor(np.asarray(v)) for k, v in s.items()}
            for i, s in state["state"].items()
        },
        "param_groups": [
            {k: tuple(v) if k == "betas" else v for k, v in g.items()}
            for g in state["param_groups"]
        ],
    }


def _kind(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return "a bool"
    if isinstance(value, Real):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "None"
    if isinstance(value, Sequence):
        return ("a list", tuple(_kind(v) for v in value))
    return type(value).__name__


def _describe(kind: Any) -> str:
    if isinstance(kind, tuple):
        return f"a list of {len(kind[1])} ({', '.join(_describe(k) for k in kind[1])})"
    return kind


def _same_indices(given: Any, own: list[int]) -> bool:
    """``given`` is the list of parameter indices ``own``: whole numbers, no bools, arrays
    or strings (an array among them would make ``==`` ambiguous, not False)."""
    if not isinstance(given, Sequence) or isinstance(given, str):
        return False
    numbers = [i for i in given if isinstance(i, Integral) and not isinstance(i, bool)]
    return len(numbers) == len(given) and [int(i) for i in numbers] == list(own)


def _check_groups(optimizer: torch.optim.Optimizer, groups: Any) -> None:
    own = optimizer.state_dict()["param_groups"]
    if not isinstance(groups, Sequence) or isinstance(groups, str) or len(groups) != len(own):
        raise CheckpointError(
            f"'param_groups' should be a list of {len(own)} parameter groups, not {groups!r:.80}"
        )
    for n, (mine, given) in enumerate(zip(own, groups, strict=True)):
        if not isinstance(given, Mapping):
            raise CheckpointError(f"parameter group {n} is a {type(given).__name__}, not a mapping")
        params = given.get("params", ())
        if not _same_indices(params, mine["params"]):
            raise CheckpointError(
                f"parameter group {n} covers parameters {given.get('params')!r:.80}; this "
                f"optimizer's covers {mine['params']}"
            )
        for key in mine.keys() & given.keys() - {"params"}:
            wanted, found = _kind(mine[key]), _kind(given[key])
            # Flags torch leaves None ("foreach", "fused") mean "let torch choose": a bool is fine.
            if wanted != found and not (wanted == "None" and found == "a bool"):
                raise CheckpointError(
                    f"parameter group {n}: {key!r} is {given[key]!r:.40} ({_describe(found)}); "
                    f"this optimizer needs {_describe(wanted)}"
                )


def _check_per_parameter(optimizer: torch.optim.Optimizer, per_param: Any) -> None:
    params = [p for group in optimizer.param_groups for p in group["params"]]
    own = optimizer.state_dict()["state"]
    if not isinstance(per_param, Mapping):
        raise CheckpointError(f"'state' is a {type(per_param).__name__}, not a mapping")
    key_sets = set()
    for index, entry in per_param.items():
        i = int(index) if str(index).isdigit() else -1
        if not 0 <= i < len(params):
            raise CheckpointError(
                f"'state' has an entry for parameter {index!r}; this optimizer has parameters "
                f"0 to {len(params) - 1}"
            )
        if not isinstance(entry, Mapping):
            raise CheckpointError(f"the state of parameter {i} is not a mapping")
        key_sets.add(frozenset(entry))
        if i in own and set(own[i]) != set(entry):
            raise CheckpointError(
                f"the state of parameter {i} holds {sorted_names(entry)}; this optimizer keeps "
                f"{sorted(own[i])}"
            )
        for name, value in entry.items():
            mine = own.get(i, {}).get(name)
            needed = tuple(mine.shape) if torch.is_tensor(mine) else None
            shape = tuple(np.shape(value))
            if needed is None and shape not in ((), tuple(params[i].shape)):
                needed = tuple(params[i].shape)  # a per-element moment, or a scalar count
            if needed is not None and shape != needed:
                raise CheckpointError(
                    f"{name!r} of parameter {i} has shape {shape}; this optimizer needs {needed}"
                )
            check_array_values(value, np.dtype(np.float64), f"{name!r} of parameter {i}")
    if len(key_sets) > 1:
        raise CheckpointError(
            f"the parameters' states hold different entries: "
            f"{sorted_names(sorted_names(k) for k in key_sets)}"
        )


def _trial_step(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """One step of a scratch copy of ``optimizer`` (same class and groups, on zeros) from
    ``state``: the optimizer's own code meets every entry it reads."""
    scratch = iter(
        [
            torch.zeros_like(p, requires_grad=True)
            for group in optimizer.param_groups
            for p in group["params"]
        ]
    )
    groups = [{**g, "params": [next(scratch) for _ in g["params"]]} for g in optimizer.param_groups]
    try:
        trial = type(optimizer)(groups)
    except Exception:
        return  # a class that cannot be built from its groups alone: the checks above stand
    try:
        trial.load_state_dict(as_torch_state(state))
        for group in trial.param_groups:
            for p in group["params"]:
                p.grad = torch.zeros_like(p)
        trial.step()
    except Exception as exc:
        raise CheckpointError(
            f"one step of this optimizer from it fails ({type(exc).__name__}: {exc})"
        ) from exc


def check_torch_optimizer_state(optimizer: torch.optim.Optimizer, state: Any) -> None:
    """A CheckpointError (naming the entry) unless ``state`` fits ``optimizer``."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"it is a {type(state).__name__}, not a mapping")
    missing = [k for k in ("state", "param_groups") if k not in state]
    if missing:
        raise CheckpointError(
            f"it lacks {missing} (was it saved by a TensorFlow learner, or edited?)"
        )
    _check_groups(optimizer, state["param_groups"])
    _check_per_parameter(optimizer, state["state"])
    if state["state"]:
        _trial_step(optimizer, state)
