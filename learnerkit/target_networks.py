"""Target networks: a frozen copy of each module that follows it slowly, for algorithms
that declare ``Algorithm(target_network=True)`` (APPO; DQN- and SAC-style plugins).

The Learner builds the copies with the modules (equal to them at the start), never hands
them to an optimizer, and keeps them in its state and checkpoints. A hook moves them with
``learner.update_target_module(module_id, tau)`` (usually from ``additional_update``, every
``target_network_update_freq`` learner updates): polyak averaging
``target <- tau * module + (1 - tau) * target``, an exact copy at ``tau=1``. Updates are
the same arithmetic on the same weights on every data-parallel learner, so the copies stay
bitwise identical across Ray learners, like the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from learnerkit.errors import CheckpointError, ConfigError


class TargetNetworks:
    """The target copies of a Learner's modules and how often each was updated."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.modules: dict[str, Any] = {}
        self.num_updates: dict[str, int] = {}

    def add(self, module_id: str, module: Any, build: Callable[[], Any]) -> None:
        """Make ``module``'s target: ``build()`` makes a fresh module like it, set equal."""
        target = build()
        self.backend.polyak_update(target, module, 1.0)
        self.backend.freeze(target)
        self.modules[module_id] = target
        self.num_updates[module_id] = 0

    def remove(self, module_id: str) -> None:
        self.modules.pop(module_id, None)
        self.num_updates.pop(module_id, None)

    def update(self, module_id: str, source: Any, tau: float) -> None:
        if not 0.0 < tau <= 1.0:
            raise ConfigError(
                f"update_target_module: tau must be in (0, 1] (1.0 is a hard copy), got {tau!r}"
            )
        self.backend.polyak_update(self.modules[module_id], source, float(tau))
        self.num_updates[module_id] += 1

    def get_state(self) -> dict[str, Any]:
        return {
            "modules": {mid: self.backend.get_module_state(m) for mid, m in self.modules.items()},
            "num_updates": dict(self.num_updates),
        }

    def set_state(self, state: Mapping[str, Any] | None, source: str) -> None:
        if state is None:
            raise CheckpointError(
                f"{source} holds no target networks, but this algorithm keeps one per module "
                "(was it written by another algorithm, or before it declared target_network?)"
            )
        if set(state["modules"]) != set(self.modules):
            raise CheckpointError(
                f"{source} has target networks for {sorted(state['modules'])}; this learner "
                f"has modules {sorted(self.modules)}"
            )
        for module_id, weights in state["modules"].items():
            self.backend.set_module_state(
                self.modules[module_id], weights, f"target network of {module_id!r} in {source}"
            )
        self.num_updates.update({k: int(v) for k, v in state["num_updates"].items()})
