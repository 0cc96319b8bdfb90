"""The table of training loops: each loop's name, the settings class it reads, and where its
code is. Algorithms name a loop in ``Algorithm(training_loop=NAME)``; the algorithm registry
checks that name and the hyperparameters' base class here, below the loops themselves, so
that checking a plugin never imports a loop (``learnerkit.loops`` re-exports this table).

Only names and settings classes: a loop's code is imported when it trains.
"""

from __future__ import annotations

import importlib
from typing import Any

import attrs

from learnerkit.settings import AsyncSettings, OfflineSettings, OnPolicySettings

__all__ = ["TRAINING_LOOPS", "LoopInfo"]


@attrs.frozen
class LoopInfo:
    """A training loop as algorithms name it."""

    name: str
    settings: type
    """The hyperparameters base class whose settings the loop reads."""
    target: str
    """``module:Class`` of the loop, imported when it trains."""
    summary: str

    def load(self) -> Any:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


TRAINING_LOOPS: dict[str, LoopInfo] = {
    info.name: info
    for info in (
        LoopInfo(
            "on_policy",
            OnPolicySettings,
            "learnerkit.loops.on_policy:OnPolicyLoop",
            "synchronous sampling, GAE, several epochs of minibatches per batch",
        ),
        LoopInfo(
            "async",
            AsyncSettings,
            "learnerkit.loops.asynchronous:AsyncLoop",
            "continuous sampling, async updates on fragments for off-policy correction",
        ),
        LoopInfo(
            "offline",
            OfflineSettings,
            "learnerkit.loops.offline:OfflineLoop",
            "epochs over a Minari dataset streamed in chunks, periodic evaluation episodes",
        ),
    )
}
