"""Hyperparameter sweeps on Ray Tune (``learnerkit tune``; guide: docs/guides/tune.md).

- ``trainable(TrainConfig)``: a Tune trainable for any installed algorithm and loop, with
  its resources attached; each Tune iteration is a training iteration, checkpoints are the
  run's own.
- ``sweep(SweepConfig)``: what ``learnerkit tune`` runs (checks, Tune, best config, plot).
- The search-space syntax of ``--param NAME=SPEC``: ``parse_space``, ``Domain``.
- What is checked before any trial starts: ``check_sweep`` (names and values against the
  algorithm's validators), ``check_resources`` (a trial's bundles, ``trial_bundles``,
  against the cluster's nodes).

Importing this package loads no Ray: ``trainable``, ``trial_resources``, ``sweep`` and the
rest load Ray Tune on first use (``pip install 'learnerkit[ray]'``).
"""

from __future__ import annotations

import importlib
from typing import Any

from learnerkit.tune.space import (
    DOMAINS,
    Domain,
    SearchSpace,
    parse_param,
    parse_space,
    read_space_file,
)

__all__ = [
    "DOMAINS",
    "SCHEDULERS",
    "Domain",
    "SearchSpace",
    "SweepConfig",
    "SweepSummary",
    "check_resources",
    "check_sweep",
    "count_exploits",
    "parse_param",
    "parse_space",
    "read_space_file",
    "sweep",
    "trainable",
    "trial_bundles",
    "trial_config",
    "trial_resources",
]

_LAZY = {
    "SCHEDULERS": "learnerkit.tune._sweeps",
    "SweepConfig": "learnerkit.tune._sweeps",
    "SweepSummary": "learnerkit.tune._sweeps",
    "sweep": "learnerkit.tune._sweeps",
    "check_resources": "learnerkit.tune._sweeps",
    "check_sweep": "learnerkit.tune._sweeps",
    "count_exploits": "learnerkit.tune._sweeps",
    "trial_bundles": "learnerkit.tune._trials",
    "trainable": "learnerkit.tune._trial_actor",
    "trial_config": "learnerkit.tune._trials",
    "trial_resources": "learnerkit.tune._trial_actor",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'learnerkit.tune' has no attribute {name!r}")
