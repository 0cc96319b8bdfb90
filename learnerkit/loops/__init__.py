"""Training loops: how ``learnerkit train`` turns an algorithm's hooks into a trained policy.

A loop is a plugin, found as algorithms are: an entry point of the group
``learnerkit.training_loops`` names its declaration (``learnerkit.LoopInfo``: its name, the
settings class it reads, where its code is, what it asks of the host). An algorithm picks
one with ``Algorithm(training_loop=NAME)`` and derives its hyperparameters from the loop's
settings class. learnerkit's own loops register the same way (``learnerkit.loops.builtin``):

- ``"on_policy"`` (``OnPolicySettings``; PPO): one synchronous batch per iteration, with
  GAE ``advantages`` and ``value_targets``, trained for several epochs of minibatches.
- ``"async"`` (``AsyncSettings``; IMPALA, APPO): continuously sampled fragments handed to
  ``async_update`` as sequences (``new_obs`` included), for losses that run V-trace.
- ``"replay"`` (``ReplaySettings``; DQN): continuously sampled fragments added to a replay
  buffer, minibatches drawn from it at ``training_intensity``, target networks and
  exploration moved by ``additional_update``.
- ``"offline"`` (``OfflineSettings``; BC): no environment sampling; episodes of a Minari
  dataset (``--dataset``) streamed in chunks, with periodic greedy evaluation episodes.

What a loop gets and gives, and everything it may use, is ``learnerkit.loops.contract``;
the host (``learnerkit.loops._trainer``) treats every loop alike. Hosts train with
``learnerkit.loops.train(learnerkit.loops.TrainConfig(...))``, evaluate with
``learnerkit.loops.evaluate_checkpoint(run_dir)``, and record a trained policy as a Minari
dataset with ``learnerkit.loops.collect_dataset(run_dir, ...)``. Importing this package
stays light: the machinery loads on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from learnerkit.settings import (
    AsyncSettings,
    OfflineSettings,
    OnPolicySettings,
    ReplaySettings,
    SamplingSettings,
)
from learnerkit.training_loops import LoopInfo, deprecated_table

_LAZY = {
    "TrainConfig": "learnerkit.loops.contract",
    "TrainSummary": "learnerkit.loops.contract",
    "Trainer": "learnerkit.loops._trainer",
    "TrainedPolicy": "learnerkit.loops._evaluation",
    "load_policy": "learnerkit.loops._evaluation",
    "train": "learnerkit.loops._trainer",
    "evaluate_checkpoint": "learnerkit.loops._evaluation",
    "collect_dataset": "learnerkit.loops._collect",
}


def __getattr__(name: str) -> Any:
    # The training machinery imports numpy, gymnasium and the learner: only on first use.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "TRAINING_LOOPS":
        return deprecated_table("learnerkit.loops", stacklevel=2)
    raise AttributeError(f"module 'learnerkit.loops' has no attribute {name!r}")


__all__ = [
    "AsyncSettings",
    "LoopInfo",
    "OfflineSettings",
    "OnPolicySettings",
    "ReplaySettings",
    "SamplingSettings",
    "TrainConfig",
    "TrainSummary",
    "TrainedPolicy",
    "Trainer",
    "collect_dataset",
    "evaluate_checkpoint",
    "load_policy",
    "train",
]
