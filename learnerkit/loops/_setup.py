"""What a run is made of, before it starts: the algorithm's training loop, its settings
(presets, overrides, stop criteria), the environment and its spaces, and the env runners.
"""

from __future__ import annotations

from typing import Any

from learnerkit._plugins import Algorithm, list_plugins
from learnerkit.errors import ConfigError
from learnerkit.loops import TRAINING_LOOPS
from learnerkit.loops.contract import TrainConfig
from learnerkit.rollouts.contract import EnvRunners, EnvRunnerSpec
from learnerkit.rollouts.gymnasium_sampling import EnvRunner
from learnerkit.rollouts.local_env_runners import LocalEnvRunners
from learnerkit.rollouts.pettingzoo_envs import is_pettingzoo
from learnerkit.specs import check_base_fields, structure_hyperparameters

DEFAULT_ENV_ID = "CartPole-v1"
MULTI_AGENT_LOOPS = ("on_policy", "async")
"""The training loops that sample PettingZoo envs."""


def loop_info(algorithm: Algorithm):
    """The training loop an algorithm declared, or a ConfigError saying why there is none."""
    if algorithm.training_loop is None:
        raise ConfigError(
            f"algorithm {algorithm.name!r} declares no training loop, so `learnerkit train` "
            "cannot train it: train it through the Learner API (Learner.update / "
            "LearnerGroup.update with your own batches), or give its Algorithm a "
            f"training_loop (one of {sorted(TRAINING_LOOPS)})"
        )
    return TRAINING_LOOPS[algorithm.training_loop]


SCHEDULED = (("learning_rate", "lr_schedule"), ("entropy_coeff", "entropy_coeff_schedule"))
"""Hyperparameters and the schedules that override them."""


def resolve_settings(
    config: TrainConfig, algorithm: Algorithm
) -> tuple[Any, dict[str, Any], Any, int | None]:
    """Hyperparameters, model config, stop reward and stop timesteps (None: none given)."""
    preset = dict(algorithm.env_presets.get(config.env_id, {}))
    stop = preset.pop("stop", {})
    # A constant given by the user replaces the preset's schedule of it: a preset's
    # lr_schedule would otherwise override the user's learning_rate after one iteration.
    for constant, schedule in SCHEDULED:
        if constant in config.overrides and schedule not in config.overrides:
            preset.pop(schedule, None)
    model_config = {**preset.pop("model_config", {}), **(config.model_config or {})}
    values = {**preset, **config.overrides, "seed": config.seed}
    hps = structure_hyperparameters(algorithm.hyperparameters, values)
    check_base_fields(hps, loop_info(algorithm).settings)
    stop_reward = config.stop_reward if config.stop_reward is not None else stop.get("reward")
    stop_timesteps = config.stop_timesteps or stop.get("timesteps")
    return hps, model_config, stop_reward, None if stop_timesteps is None else int(stop_timesteps)


def make_env_runners(spec: EnvRunnerSpec, hps: Any, ray_address: str | None) -> EnvRunners:
    """Sampling in this process (``num_env_runners=0``) or in Ray actors."""
    if hps.num_env_runners == 0:
        return LocalEnvRunners(spec)
    from learnerkit.distributed.ray_env_runners import RayEnvRunners

    return RayEnvRunners(
        spec,
        num_runners=hps.num_env_runners,
        num_cpus_per_runner=hps.num_cpus_per_env_runner,
        max_restarts=hps.max_env_runner_restarts,
        sample_timeout_s=hps.sample_timeout_s,
        ray_address=ray_address,
    )


def probe_spaces(env_id: str) -> tuple[Any, Any]:
    """The environment's spaces, with the env runner's checks and errors."""
    with EnvRunner(env_id, num_envs=1) as probe:
        return probe.observation_space, probe.action_space


def environment(info: Any, loop_cls: Any, config: TrainConfig) -> tuple[str, Any, Any]:
    """The run's env id and spaces: the loop's, or those of the env it samples."""
    uses_env_runners = getattr(loop_cls, "uses_env_runners", True)
    if config.dataset is not None and uses_env_runners:
        offline = sorted(row.name for row in list_plugins() if row.training_loop == "offline")
        raise ConfigError(
            f"algorithm {config.algorithm!r} learns by sampling environments (training loop "
            f"{info.name!r}), not from a dataset: drop "
            "--dataset (TrainConfig.dataset), or train an offline algorithm (training loop "
            f"'offline'; installed: {', '.join(offline) or 'none'}) on it"
        )
    if hasattr(loop_cls, "environment"):
        return loop_cls.environment(config)
    env_id = config.env_id or DEFAULT_ENV_ID
    if is_pettingzoo(env_id):
        if info.name not in MULTI_AGENT_LOOPS:
            raise ConfigError(
                f"algorithm {config.algorithm!r} trains with the {info.name!r} loop, which "
                f"samples gymnasium envs only; the PettingZoo env {env_id!r} trains with the "
                "'on_policy' loop (e.g. ppo) or the 'async' loop (e.g. impala, appo)"
            )
        return env_id, None, None  # spaces per module: see multi_agent_modules
    return (env_id, *probe_spaces(env_id))
