"""A hyperparameter sweep on Ray Tune, as ``learnerkit tune`` runs it: check the search
space and the resources before any trial starts, run the trials under a scheduler (FIFO,
ASHA, or population-based training), then write what a user needs next: the best trial's
settings as a file ``learnerkit train --config`` reads, its checkpoint, and one plot of
every trial's learning curve.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from learnerkit._plugins import get_algorithm
from learnerkit._specs import evolve_hyperparameters
from learnerkit.errors import ConfigError, LearnerkitError
from learnerkit.loops._setup import DEFAULT_ENV_ID, resolve_settings, training_loop_of
from learnerkit.loops.contract import TrainConfig
from learnerkit.model_config import resolve_model_config
from learnerkit.tune._trials import trial_bundles, trial_config
from learnerkit.tune.space import (
    Domain,
    SearchSpace,
    nest_values,
    validate_space,
)

__all__ = [
    "SCHEDULERS",
    "SweepConfig",
    "SweepSummary",
    "check_resources",
    "check_sweep",
    "count_exploits",
    "sweep",
]

SCHEDULERS = ("fifo", "asha", "pbt")
BEST_CONFIG_FILE = "best_config.json"
CURVES_FILE = "learning_curves.png"
EXPERIMENT = "tune"  # the experiment's folder under the sweep's output directory
PBT_LOG = "pbt_global.txt"  # Tune's log of exploits, one JSON list per line


@attrs.frozen(kw_only=True)
class SweepConfig:
    """One sweep: the base run, the space searched on top of it, and how Tune searches."""

    train: TrainConfig
    """The run every trial starts from (algorithm, env, framework, seed, stop criteria,
    learners, Ray address); each trial's values go on top (``trial_config``)."""
    space: SearchSpace = attrs.field(factory=dict)
    """``--param`` names to a ``Domain`` or a constant."""
    num_samples: int = 1
    """Samples of the space (with grids: per grid point)."""
    scheduler: str = attrs.field(default="fifo")
    """``fifo`` (every trial to its end), ``asha`` (stop the worst early) or ``pbt``
    (population-based training: the worst clone the best and perturb the space's values)."""
    max_concurrent: int | None = None
    """Trials running at once (None: as many as the cluster's resources hold)."""
    metric: str = "episode_return_mean"
    mode: str = "max"
    perturbation_interval: int = 4
    """PBT: training iterations between exploits."""
    grace_period: int = 4
    """ASHA: iterations every trial gets before it may be stopped."""
    out_dir: str = "runs/tune"
    verbose: int = 1
    """Tune's console output: 0 silent, 1 a table of trials now and then, 2 every result."""

    @scheduler.validator
    def _known(self, attribute: attrs.Attribute, value: str) -> None:
        if value not in SCHEDULERS:
            raise ConfigError(f"--scheduler {value!r}: use one of {', '.join(SCHEDULERS)}")


@attrs.frozen(kw_only=True)
class SweepSummary:
    trials: int
    best_trial: str
    best_values: Mapping[str, Any]
    """The best trial's search-space values, by ``--param`` name."""
    best_metric: float | None
    best_config: str
    """A file ``learnerkit train --config`` reads: the best trial's settings."""
    best_checkpoint: str | None
    """A run checkpoint: ``learnerkit evaluate`` and ``learnerkit train --resume`` read it."""
    curves: str | None
    exploits: int
    """PBT: how many times a trial was restored from another's checkpoint."""
    out_dir: str


def check_sweep(config: SweepConfig) -> list[list[dict[str, float]]]:
    """Every check that needs no Ray, before Ray starts: the algorithm, the scheduler's
    needs, and every value the space can give against the algorithm's validators. Returns
    the placement-group bundles of the trials tried, for the check of the resources."""
    if config.num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1, got {config.num_samples}")
    if config.max_concurrent is not None and config.max_concurrent < 1:
        raise ConfigError(f"--max-concurrent must be >= 1, got {config.max_concurrent}")
    # Tune's schedulers refuse these with an AssertionError or a ValueError of their own.
    if config.scheduler == "asha" and config.grace_period < 1:
        raise ConfigError(f"--grace-period must be >= 1 iteration, got {config.grace_period}")
    if config.scheduler == "pbt" and config.perturbation_interval < 1:
        raise ConfigError(
            f"--perturbation-interval must be >= 1 iteration, got {config.perturbation_interval}"
        )
    if config.mode not in ("max", "min"):
        raise ConfigError(f"--mode must be 'max' or 'min', got {config.mode!r}")
    if config.scheduler == "pbt":
        grids = [n for n, v in config.space.items() if isinstance(v, Domain) and v.kind == "grid"]
        if grids:
            raise ConfigError(
                f"--scheduler pbt perturbs the space's values, and cannot perturb a grid "
                f"({', '.join(grids)}): use choice(...) instead"
            )
        shaped = [
            n
            for n, v in config.space.items()
            if isinstance(v, Domain) and n.startswith("model_config.")
        ]
        if shaped:
            raise ConfigError(
                f"--scheduler pbt clones trials' weights, so the model cannot vary between "
                f"trials ({', '.join(shaped)}): give it as a constant, or sweep it with "
                "--scheduler asha or fifo"
            )
        if not any(isinstance(v, Domain) for v in config.space.values()):
            raise ConfigError(
                "--scheduler pbt needs at least one --param to perturb, e.g. "
                "learning_rate=loguniform(1e-4, 1e-2) entropy_coeff=uniform(0, 0.01)"
            )
    algorithm = get_algorithm(config.train.algorithm)
    info = training_loop_of(algorithm)
    bundles: list[list[dict[str, float]]] = []

    def check(values: Mapping[str, Any]) -> None:
        run = trial_config(config.train, values)
        hps, model_config, _, _ = resolve_settings(run, algorithm, info)
        for module_id, given in run.module_hyperparameters.items():
            evolve_hyperparameters(hps, given, module_id=module_id)
        if not algorithm.module_classes:  # the default module: its keys are known here
            resolve_model_config(model_config)
        bundles.append(trial_bundles(run))

    validate_space(config.space, check)
    return bundles


def check_resources(
    bundles: list[list[dict[str, float]]], nodes: list[Mapping[str, float]]
) -> None:
    """A ConfigError, before any trial starts, when a trial needs more than the Ray cluster
    has: a bundle that no node of ``nodes`` (each node's resources) holds, or more than all
    of them."""
    total: dict[str, float] = {}
    for node in nodes:
        for kind, amount in node.items():
            total[kind] = total.get(kind, 0.0) + amount
    for trial in bundles:
        needs: dict[str, float] = {}
        for bundle in trial:
            for kind, amount in bundle.items():
                needs[kind] = needs.get(kind, 0.0) + amount
        asked = ", ".join(f"{v:g} {k}" for k, v in needs.items())
        has = ", ".join(f"{total.get(k, 0):g} {k}" for k in needs)
        fix = (
            "lower num_learners, num_env_runners, num_cpus_per_env_runner or "
            "num_gpus_per_learner, or join a bigger cluster (--ray-address)"
        )
        if any(needs[k] > total.get(k, 0) for k in needs):
            raise ConfigError(
                f"a trial needs {asked} (1 CPU for its driver, plus its learners and env "
                f"runners) and the Ray cluster has {has} in all: {fix}"
            )
        for bundle in trial:
            if not any(all(node.get(k, 0) >= v for k, v in bundle.items()) for node in nodes):
                raise ConfigError(
                    f"a trial needs {bundle} on one node (a learner or env runner), and no "
                    f"node of the Ray cluster has that much: {fix}"
                )


def _scheduler(config: SweepConfig) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    if config.scheduler == "asha":
        # max_t: a trial ends at its stop reward or timesteps (``done``), not at ASHA's
        # default of 100 iterations.
        return ASHAScheduler(
            time_attr="training_iteration", grace_period=config.grace_period, max_t=2**31
        )
    if config.scheduler == "pbt":
        mutations = {n: v.to_tune() for n, v in config.space.items() if isinstance(v, Domain)}
        return PopulationBasedTraining(
            time_attr="training_iteration",
            perturbation_interval=config.perturbation_interval,
            hyperparam_mutations=mutations,
            # Every trial reaches each perturbation point before the worst clone the best:
            # a fair comparison, and with two trials an exploit at every point.
            synch=True,
        )
    return FIFOScheduler()


def _param_space(space: SearchSpace) -> dict[str, Any]:
    return {n: v.to_tune() if isinstance(v, Domain) else v for n, v in space.items()}


def sweep(config: SweepConfig) -> SweepSummary:
    """Run the sweep and write its results under ``config.out_dir``: Tune's experiment
    (``tune/``, a trial folder each with its checkpoints), ``best_config.json`` and
    ``learning_curves.png``."""
    bundles = check_sweep(config)
    import ray
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from learnerkit._distributed.start import ensure_ray
    from learnerkit.tune._trial_actor import trainable

    ensure_ray(config.train.ray_address)
    check_resources(bundles, [n["Resources"] for n in ray.nodes() if n.get("Alive")])
    out = Path(config.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tuner = tune.Tuner(
        trainable(config.train),
        param_space=_param_space(config.space),
        tune_config=tune.TuneConfig(
            metric=config.metric,
            mode=config.mode,
            num_samples=config.num_samples,
            scheduler=_scheduler(config),
            # The space is sampled reproducibly, from the run's seed; Tune ignores
            # max_concurrent_trials beside a search algorithm, which limits them itself.
            search_alg=BasicVariantGenerator(
                random_state=config.train.seed, max_concurrent=config.max_concurrent or 0
            ),
            reuse_actors=True,  # reset_config: no new process per trial or exploit
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT,
            storage_path=str(out),
            verbose=config.verbose,
            # PBT clones from the checkpoints other trials keep: a few more of them.
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=4 if config.scheduler == "pbt" else 2, checkpoint_at_end=True
            ),
            failure_config=tune.FailureConfig(fail_fast=True),
        ),
    )
    exploits_before = count_exploits(out / EXPERIMENT)  # an earlier sweep's, same --out
    results = tuner.fit()
    errors = [r.error for r in results if r.error is not None]
    if errors:
        raise LearnerkitError(
            f"{len(errors)} trial(s) failed (their error.txt is in the trial folders under "
            f"{out / EXPERIMENT}); the first: {errors[0]}"
        )
    best = results.get_best_result(config.metric, config.mode, scope="last")
    values = {n: best.config[n] for n in config.space if n in best.config}
    best_config = out / BEST_CONFIG_FILE
    best_config.write_text(json.dumps(nest_values(values), indent=2, default=str) + "\n")
    curves = _plot(results, config, out / CURVES_FILE)
    metric = best.metrics.get(config.metric)
    return SweepSummary(
        trials=len(results),
        best_trial=best.path and os.path.basename(best.path),
        best_values=values,
        best_metric=None if metric is None else float(metric),
        best_config=str(best_config),
        best_checkpoint=best.checkpoint.path if best.checkpoint else None,
        curves=curves,
        exploits=count_exploits(out / EXPERIMENT) - exploits_before,
        out_dir=str(out),
    )


def count_exploits(experiment: Path) -> int:
    """PBT's exploits so far: lines of Tune's ``pbt_global.txt`` in the experiment."""
    log = experiment / PBT_LOG
    return len(log.read_text().splitlines()) if log.is_file() else 0


def _plot(results: Any, config: SweepConfig, out: Path) -> str | None:
    from learnerkit.loops._learning_curve import draw_curves

    curves = []
    for result in results:
        progress = Path(result.path) / "progress.csv"
        if progress.is_file():
            shown = ", ".join(f"{n}={_short(result.config.get(n))}" for n in _varied(config))
            curves.append((f"{result.metrics.get('trial_id', '?')} {shown}", str(progress)))
    if not curves:
        return None
    algorithm = get_algorithm(config.train.algorithm)
    stop_reward = config.train.stop_reward
    if stop_reward is None:
        preset = algorithm.env_presets.get(config.train.env_id or DEFAULT_ENV_ID, {})
        stop_reward = preset.get("stop", {}).get("reward")
    draw_curves(curves, str(out), stop_reward)
    return str(out)


def _varied(config: SweepConfig) -> list[str]:
    return [n for n, v in config.space.items() if isinstance(v, Domain)]


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
