"""Training loops: how ``learnerkit train`` turns an algorithm's hooks into a trained policy.

Each loop is a named building block that an algorithm picks with
``Algorithm(training_loop=NAME)``; the loop declares the settings it reads as a
hyperparameters base class (``learnerkit.settings``) that the algorithm's own
hyperparameters derive from. The host never asks which algorithm it trains.

- ``"on_policy"`` (``OnPolicySettings``; PPO): one synchronous batch per iteration, with
  GAE ``advantages`` and ``value_targets``, trained for several epochs of minibatches.
- ``"async"`` (``AsyncSettings``; IMPALA, APPO): continuously sampled fragments handed to
  ``async_update`` as sequences (``new_obs`` included), for losses that run V-trace.
- ``"offline"`` (``OfflineSettings``; BC): no environment sampling; episodes of a Minari
  dataset (``--dataset``) streamed in chunks, with periodic greedy evaluation episodes.

The table of loops (``TRAINING_LOOPS``, ``LoopInfo``) lives in ``learnerkit.training_loops``
and the settings in ``learnerkit.settings``, below the algorithm registry; both are
re-exported here. Only names and settings classes are imported, so that listing plugins
stays light; a loop's code is imported when it trains. Hosts train with
``learnerkit.loops.train(learnerkit.loops.TrainConfig(...))`` and evaluate with
``learnerkit.loops.evaluate_checkpoint(run_dir)``, and record a trained policy as a Minari
dataset with ``learnerkit.loops.collect_dataset(run_dir, ...)``.
"""

from __future__ import annotations

import importlib
from typing import Any

from learnerkit.settings import (
    AsyncSettings,
    OfflineSettings,
    OnPolicySettings,
    SamplingSettings,
)
from learnerkit.training_loops import TRAINING_LOOPS, LoopInfo

_LAZY = {
    "TrainConfig": "learnerkit.loops.contract",
    "TrainSummary": "learnerkit.loops.contract",
    "train": "learnerkit.loops.trainer",
    "evaluate_checkpoint": "learnerkit.loops.evaluation",
    "collect_dataset": "learnerkit.loops.collect",
}


def __getattr__(name: str) -> Any:
    # The training machinery imports numpy, gymnasium and the learner: only on first use.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'learnerkit.loops' has no attribute {name!r}")


__all__ = [
    "TRAINING_LOOPS",
    "AsyncSettings",
    "LoopInfo",
    "OfflineSettings",
    "OnPolicySettings",
    "SamplingSettings",
    "TrainConfig",
    "TrainSummary",
    "collect_dataset",
    "evaluate_checkpoint",
    "train",
]
