"""Target networks: a frozen copy of each module that follows it slowly, for algorithms
that declare ``Algorithm(target_network=True)`` (APPO; DQN- and SAC-style plugins).

The Learner builds the copies with the modules (equal to them at the start), never hands
them to an optimizer, and keeps them, with how often each moved, in its per-module records,
its state and checkpoints. A hook moves them with ``learner.update_target_module(module_id,
tau)`` (usually from ``additional_update``, every ``target_network_update_freq`` learner
updates): polyak averaging ``target <- tau * module + (1 - tau) * target``, an exact copy at
``tau=1``. Updates are the same arithmetic on the same weights on every data-parallel
learner, so the copies stay bitwise identical across Ray learners, like the weights.

Pure functions over what they are given: a backend and the records (anything with
``module``, ``target`` and ``num_target_updates``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from learnerkit.errors import CheckpointError, ConfigError


def make_target(backend: Any, module: Any, build: Callable[[], Any]) -> Any:
    """``module``'s target: ``build()`` makes a fresh module like it, set equal and frozen."""
    target = build()
    backend.polyak_update(target, module, 1.0)
    backend.freeze(target)
    return target


def move_target(backend: Any, record: Any, tau: float) -> None:
    """``record.target <- tau * record.module + (1 - tau) * record.target``, counted."""
    if not 0.0 < tau <= 1.0:
        raise ConfigError(
            f"update_target_module: tau must be in (0, 1] (1.0 is a hard copy), got {tau!r}"
        )
    backend.polyak_update(record.target, record.module, float(tau))
    record.num_target_updates += 1


def get_state(backend: Any, records: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "modules": {mid: backend.get_module_state(r.target) for mid, r in records.items()},
        "num_updates": {mid: r.num_target_updates for mid, r in records.items()},
    }


def set_state(
    backend: Any, records: Mapping[str, Any], state: Mapping[str, Any] | None, source: str
) -> None:
    if state is None:
        raise CheckpointError(
            f"{source} holds no target networks, but this algorithm keeps one per module "
            "(was it written by another algorithm, or before it declared target_network?)"
        )
    if set(state["modules"]) != set(records):
        raise CheckpointError(
            f"{source} has target networks for {sorted(state['modules'])}; this learner "
            f"has modules {sorted(records)}"
        )
    for module_id, weights in state["modules"].items():
        backend.set_module_state(
            records[module_id].target, weights, f"target network of {module_id!r} in {source}"
        )
    for module_id, count in state["num_updates"].items():
        records[module_id].num_target_updates = int(count)
