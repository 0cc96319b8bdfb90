"""What a run is made of, before it starts: the algorithm's training loop (its declaration
and its code), its settings (presets, overrides, stop criteria), and the environment and
its spaces, the modules it trains, and what a resumed run keeps of the run it continues.
Decided from what the loop declares (``LoopInfo``), never from its name: the
host treats learnerkit's own loops and a third party's alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from learnerkit._plugins import Algorithm, get_algorithm, list_plugins
from learnerkit._specs import (
    ModuleSpec,
    check_base_fields,
    current_field_names,
    structure_hyperparameters,
)
from learnerkit.conv_encoders import is_image_space
from learnerkit.errors import ConfigError, PluginError, UnknownTrainingLoopError
from learnerkit.loops._multi_agent import multi_agent_modules
from learnerkit.loops._run_files import read_run, read_trainer_state
from learnerkit.loops.contract import REQUIRED_LOOP_METHODS, LoopInfo, TrainConfig, probe_spaces
from learnerkit.rollouts._atari import atari_settings
from learnerkit.rollouts._pettingzoo_envs import is_pettingzoo
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
    stop_timesteps = (
        config.stop_timesteps if config.stop_timesteps is not None else stop.get("timesteps")
    )
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
    return (env_id, *probe_spaces(env_id, atari_settings(env_id, config.atari_preprocessing)))


def run_modules(
    config: TrainConfig,
    env_id: str,
    observation_space: Any,
    action_space: Any,
    model_config: dict[str, Any],
) -> tuple[Any, Any, dict[str, dict[str, Any]], set[str] | None]:
    """The run's modules: ``(module_spec, policy_mapping, module_hyperparameters,
    modules_to_train)`` (None: all). A PettingZoo env gets a module per policy its mapping
    names; a resumed one the modules its checkpoint describes."""
    if is_pettingzoo(env_id):
        saved = read_trainer_state(Path(config.resume)) if config.resume else {}
        module_spec, mapping, described = multi_agent_modules(
            env_id, config.policy_mapping, model_config, saved
        )
    else:
        module_spec = ModuleSpec(observation_space, action_space, model_config=model_config)
        mapping, described = "shared", {}
    frozen = {m for m, d in described.items() if not d.get("train", True)}
    trained = set(config.modules_to_train) if config.modules_to_train is not None else None
    if frozen and trained is None:
        trained = set(module_spec) - frozen
    # A resumed run's checkpoint records each module's hyperparameters and whether it
    # trains, as they were when it was saved (changes while training included); the
    # config's, given again, win.
    module_hps = {m: dict(d.get("hyperparameters") or {}) for m, d in described.items()}
    for module_id, values in config.module_hyperparameters.items():
        module_hps[module_id] = {**module_hps.get(module_id, {}), **values}
    return module_spec, mapping, module_hps, trained


def check_pixels_not_normalized(hps: Any, module_specs: Any) -> None:
    """A ConfigError when observations are normalised for a module with a conv encoder over
    uint8 pixels (the default modules' and DQN's, unless ``conv_filters=[]``): the encoder
    divides by 255 itself (its scale is fixed by the observation space), so normalised
    frames would reach it shrunk 255 times. A module class of one's own is not checked."""
    if not getattr(hps, "normalize_observations", False):
        return
    specs = module_specs.values() if isinstance(module_specs, Mapping) else [module_specs]
    for spec in specs:
        encoder_off = spec.model_config.get("conv_filters", None) == []
        if spec.module_class is None and is_image_space(spec.observation_space) and not encoder_off:
            raise ConfigError(
                "normalize_observations=True with uint8 image observations "
                f"{spec.observation_space.shape}: the conv encoder scales pixels to [0, 1] "
                "itself; set normalize_observations=False (or model_config "
                "conv_filters=[] for an MLP on normalised pixels)"
            )


def continue_run(config: TrainConfig) -> TrainConfig:
    """A resumed run keeps the algorithm, env, framework, hyperparameters and model of the
    run it continues; explicit overrides still apply on top."""
    run = read_run(config.resume)
    if config.env_id is not None and config.env_id != run["env"]:
        raise ConfigError(
            f"the run at {config.resume} trains in {run['env']!r}, and a resumed run keeps its "
            f"env: drop env_id={config.env_id!r} (--env), or start a new run"
        )
    hyperparameters = {k: v for k, v in run["hyperparameters"].items() if k != "seed"}
    # Renamed first, so that an old name given now overrides the new name the run saved.
    overrides = current_field_names(
        get_algorithm(run["algorithm"]).hyperparameters, config.overrides, where=" (--config)"
    )
    return attrs.evolve(
        config,
        algorithm=run["algorithm"],
        env_id=run["env"],
        dataset=config.dataset or run.get("dataset"),
        framework=run["framework"],
        overrides={**hyperparameters, **overrides},
        model_config={**run["model_config"], **(config.model_config or {})},
        atari_preprocessing=saved_atari_preprocessing(run),
        # The mapping the run began with (the checkpoint holds the current one); a callable
        # cannot be saved and is passed again.
        policy_mapping=(
            run["policy_mapping"]
            if run.get("policy_mapping") is not None and config.policy_mapping == "shared"
            else config.policy_mapping
        ),
    )


def saved_atari_preprocessing(run: dict[str, Any]) -> bool | dict[str, Any]:
    """A run's Atari preprocessing as ``TrainConfig.atari_preprocessing`` takes it: its
    recorded settings, False when it had none (runs from before it was recorded: True)."""
    if "atari_preprocessing" not in run:
        return True
    return run["atari_preprocessing"] or False


def seed_and_threads(framework: str, seed: int) -> None:
    """Seed the framework's global generator (action sampling draws from it), and keep
    torch to one thread: small MLPs run fastest so, and the other core steps the envs."""
    if framework == "torch":
        import torch

        torch.manual_seed(seed)
        torch.set_num_threads(1)
    else:
        import tensorflow as tf

        tf.random.set_seed(seed)
