"""What a run is made of, before it starts: the algorithm's training loop (its declaration
and its code), its settings (presets, overrides, stop criteria), and the environment and
its spaces. Decided from what the loop declares (``LoopInfo``), never from its name: the
host treats learnerkit's own loops and a third party's alike.
"""

from __future__ import annotations

from typing import Any

from learnerkit._plugins import Algorithm, list_plugins
from learnerkit.errors import ConfigError, PluginError, UnknownTrainingLoopError
from learnerkit.loops.contract import REQUIRED_LOOP_METHODS, LoopInfo, TrainConfig, probe_spaces
from learnerkit.rollouts.pettingzoo_envs import is_pettingzoo
from learnerkit.specs import check_base_fields, current_field_names, structure_hyperparameters
from learnerkit.training_loops import get_training_loop, list_training_loops

DEFAULT_ENV_ID = "CartPole-v1"


def training_loop_of(algorithm: Algorithm) -> LoopInfo:
    """The training loop an algorithm declared, or an error saying why it cannot train."""
    name = algorithm.training_loop
    if name is None:
        installed = ", ".join(row.name for row in list_training_loops() if row.status == "ok")
        raise ConfigError(
            f"algorithm {algorithm.name!r} declares no training loop, so `learnerkit train` "
            "cannot train it: train it through the Learner API (Learner.update / "
            "LearnerGroup.update with your own batches), or give its Algorithm a "
            f"training_loop (installed: {installed or 'none'})"
        )
    try:
        info = get_training_loop(name)
    except (UnknownTrainingLoopError, PluginError) as exc:
        raise type(exc)(f"algorithm {algorithm.name!r} cannot train: {exc}") from exc
    # Checked at load when the loop was installed then; an algorithm loaded before its loop
    # is checked here.
    if not issubclass(algorithm.hyperparameters, info.settings):
        raise PluginError(
            f"algorithm {algorithm.name!r} trains with the {name!r} loop, so its "
            f"hyperparameters class {algorithm.hyperparameters.__qualname__} must derive from "
            f"{info.settings.__module__}.{info.settings.__qualname__}: subclass it"
        )
    return info


def load_loop(info: LoopInfo) -> Any:
    """The loop's class, imported, with the members the host calls."""
    loop_cls = info.load()
    missing = [m for m in REQUIRED_LOOP_METHODS if not callable(getattr(loop_cls, m, None))]
    if missing:
        raise PluginError(
            f"training loop {info.name!r} ({info.target}, of {info.package}) lacks "
            f"{', '.join(missing)}: a loop class implements "
            "learnerkit.loops.contract.TrainingLoop"
        )
    return loop_cls


SCHEDULED = (("learning_rate", "lr_schedule"), ("entropy_coeff", "entropy_coeff_schedule"))
"""Hyperparameters and the schedules that override them."""


def resolve_settings(
    config: TrainConfig, algorithm: Algorithm, info: LoopInfo | None = None
) -> tuple[Any, dict[str, Any], Any, int | None]:
    """Hyperparameters, model config, stop reward and stop timesteps (None: none given)."""
    preset = dict(algorithm.env_presets.get(config.env_id, {}))
    stop = preset.pop("stop", {})
    # A constant given by the user replaces the preset's schedule of it: a preset's
    # lr_schedule would otherwise override the user's learning_rate after one iteration.
    # Old setting names renamed before the preset's new ones are merged in.
    overrides = current_field_names(
        algorithm.hyperparameters, config.overrides, where=" (--config)", stacklevel=2
    )
    for constant, schedule in SCHEDULED:
        if constant in overrides and schedule not in overrides:
            preset.pop(schedule, None)
    model_config = {**preset.pop("model_config", {}), **(config.model_config or {})}
    values = {**preset, **overrides, "seed": config.seed}
    hps = structure_hyperparameters(algorithm.hyperparameters, values)
    check_base_fields(hps, (info or training_loop_of(algorithm)).settings)
    stop_reward = config.stop_reward if config.stop_reward is not None else stop.get("reward")
    stop_timesteps = config.stop_timesteps or stop.get("timesteps")
    return hps, model_config, stop_reward, None if stop_timesteps is None else int(stop_timesteps)


def _trained_with(declared: str) -> str:
    """The installed loops that declare ``declared``, each with the algorithms it trains."""
    loops = [r.name for r in list_training_loops() if r.declares and r.declares[declared]]
    by_loop = {name: [] for name in loops}
    for row in list_plugins():
        if row.training_loop in by_loop:
            by_loop[row.training_loop].append(row.name)
    shown = [f"{name!r} ({', '.join(algos) or 'no algorithm'})" for name, algos in by_loop.items()]
    return ", ".join(shown) or "none"


def environment(info: LoopInfo, loop_cls: Any, config: TrainConfig) -> tuple[str, Any, Any]:
    """The run's env id and spaces: the loop's, or those of the env it samples."""
    if config.dataset is not None and not info.reads_dataset:
        why = "learns by sampling environments" if info.uses_env_runners else "reads no dataset"
        raise ConfigError(
            f"algorithm {config.algorithm!r} {why} (training loop {info.name!r}), not from a "
            "dataset: drop --dataset (TrainConfig.dataset), or train an algorithm whose loop "
            f"reads datasets on it (installed: {_trained_with('reads_dataset')})"
        )
    env_id = config.env_id or DEFAULT_ENV_ID
    if config.env_id is not None and is_pettingzoo(env_id) and not info.multi_agent:
        raise ConfigError(
            f"algorithm {config.algorithm!r} trains with the {info.name!r} loop, which "
            f"trains in gymnasium envs only; the PettingZoo env {env_id!r} trains with a loop "
            f"that declares multi_agent (installed: {_trained_with('multi_agent')})"
        )
    if hasattr(loop_cls, "environment"):
        return loop_cls.environment(config)
    if is_pettingzoo(env_id):
        return env_id, None, None  # spaces per module: see multi_agent_modules
    return (env_id, *probe_spaces(env_id))
