"""What one trial of a sweep is, without Ray: its ``TrainConfig`` (the base run with the
trial's search-space values on top, as ``learnerkit train --config`` would apply them) and
the resources it reserves (a placement group's bundles)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from learnerkit._plugins import get_algorithm
from learnerkit._specs import ScalingConfig
from learnerkit.loops._setup import resolve_settings, training_loop_of
from learnerkit.loops.contract import TrainConfig
from learnerkit.tune.space import config_parts

__all__ = ["trial_bundles", "trial_config"]


def trial_config(base: TrainConfig, values: Mapping[str, Any]) -> TrainConfig:
    """``base`` with one trial's search-space ``values`` on top (overrides, model config and
    per-module hyperparameters merged key by key)."""
    parts = config_parts(values)
    module_hps = {m: dict(v) for m, v in base.module_hyperparameters.items()}
    for module_id, given in parts["module_hyperparameters"].items():
        module_hps[module_id] = {**module_hps.get(module_id, {}), **given}
    model_config = {**(base.model_config or {}), **(parts["model_config"] or {})}
    return attrs.evolve(
        base,
        overrides={**base.overrides, **parts["overrides"]},
        model_config=model_config or None,
        module_hyperparameters=module_hps,
    )


def trial_bundles(config: TrainConfig) -> list[dict[str, float]]:
    """The resources one trial of ``config`` needs, as placement-group bundles: the trial's
    driver (1 CPU; the learner's GPU when it learns in the driver), then one bundle per Ray
    learner and one per env-runner actor."""
    algorithm = get_algorithm(config.algorithm)
    hps = resolve_settings(config, algorithm, training_loop_of(algorithm))[0]
    scaling = ScalingConfig(
        num_learners=config.num_learners,
        num_cpus_per_learner=config.num_cpus_per_learner,
        num_gpus_per_learner=config.num_gpus_per_learner,
    )
    # A local learner trains in the driver, on the GPU Tune gives the trial (0.5: two trials
    # share one).
    local_gpu = config.num_gpus_per_learner if config.num_learners == 0 else 0.0
    driver = {"CPU": 1.0, "GPU": float(local_gpu)}
    learner = {
        "CPU": float(scaling.num_cpus_per_learner),
        "GPU": float(scaling.num_gpus_per_learner),
    }
    runners = getattr(hps, "num_env_runners", 0)
    runner = {"CPU": float(getattr(hps, "num_cpus_per_env_runner", 1.0))}
    bundles = [driver] + [learner] * config.num_learners + [runner] * runners
    # Ray refuses empty bundles; an actor asking for nothing goes anywhere in the group.
    bundles = [{k: v for k, v in b.items() if v > 0} for b in bundles]
    return [b for b in bundles if b]
