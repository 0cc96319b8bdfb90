"""The on-policy training loop behind ``learnerkit train``: sample, learn, report, checkpoint.

Works for any algorithm whose hyperparameters carry the on-policy settings (``gamma``,
``lambda_``, ``num_envs``, ``rollout_fragment_length``, ``minibatch_size``, ``num_epochs``),
PPO first among them. Hosts can call ``train(TrainConfig(...))`` directly.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from learnerkit._checkpoint import write_json_atomic
from learnerkit._plugins import Algorithm, get_algorithm
from learnerkit.backends import make_backend
from learnerkit.errors import CheckpointError, ConfigError
from learnerkit.learner_group import LearnerGroup
from learnerkit.loops._run_output import RunOutput, read_config_file
from learnerkit.rollouts.env_runner import EnvRunner
from learnerkit.specs import LearnerSpec, ModuleSpec, ScalingConfig, structure_hyperparameters

ON_POLICY_SETTINGS = (
    "gamma",
    "lambda_",
    "num_envs",
    "rollout_fragment_length",
    "minibatch_size",
    "num_epochs",
)
RETURN_WINDOW = 100  # episodes in the reported mean return (the usual "last 100")
RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoint"
TRAINER_STATE_FILE = "trainer_state.json"


@attrs.frozen(kw_only=True)
class TrainConfig:
    """One training run. ``overrides`` are hyperparameters on top of the algorithm's
    defaults and its tuned preset for ``env_id``; ``model_config`` goes to the module."""

    algorithm: str = "ppo"
    env_id: str = "CartPole-v1"
    framework: str = "torch"
    seed: int = 0
    num_learners: int = 0
    stop_reward: float | None = None
    stop_timesteps: int | None = None
    out_dir: str | None = None
    overrides: Mapping[str, Any] = attrs.field(factory=dict)
    model_config: Mapping[str, Any] | None = None
    checkpoint_every: int = 50
    resume: str | None = None
    progress: bool = True


@attrs.frozen(kw_only=True)
class TrainSummary:
    algorithm: str
    env: str
    framework: str
    seed: int
    timesteps_total: int
    iterations: int
    episodes_total: int
    episode_return_mean: float | None
    wall_seconds: float
    reached_stop_reward: bool
    stop_reward: float | None
    checkpoint: str
    curve: str | None
    interrupted: bool = False


def _resolve(config: TrainConfig, algorithm: Algorithm) -> tuple[Any, dict[str, Any], float, int]:
    """Hyperparameters, model config, stop reward and stop timesteps for this run."""
    preset = dict(algorithm.env_presets.get(config.env_id, {}))
    stop = preset.pop("stop", {})
    model_config = {**preset.pop("model_config", {}), **(config.model_config or {})}
    values = {**preset, **config.overrides, "seed": config.seed}
    hps = structure_hyperparameters(algorithm.hyperparameters, values)
    missing = [name for name in ON_POLICY_SETTINGS if not hasattr(hps, name)]
    if missing:
        raise ConfigError(
            f"algorithm {algorithm.name!r} cannot be trained by `learnerkit train`: its "
            f"hyperparameters lack the on-policy settings {missing} (an offline algorithm like "
            "BC learns from your own batches: use Learner.update)"
        )
    stop_reward = config.stop_reward if config.stop_reward is not None else stop.get("reward")
    stop_timesteps = config.stop_timesteps or stop.get("timesteps") or 1_000_000
    return hps, model_config, stop_reward, int(stop_timesteps)


class _Trainer:
    def __init__(self, config: TrainConfig) -> None:
        if config.resume:
            config = _continue_run(config)
        self.config = config
        self.algorithm = get_algorithm(config.algorithm)
        self.hps, self.model_config, self.stop_reward, self.stop_timesteps = _resolve(
            config, self.algorithm
        )
        self.runner = EnvRunner(
            config.env_id,
            num_envs=self.hps.num_envs,
            seed=config.seed,
            normalize_obs=getattr(self.hps, "normalize_observations", False),
        )
        module_spec = ModuleSpec(
            self.runner.observation_space, self.runner.action_space, model_config=self.model_config
        )
        self.spec = LearnerSpec(
            algorithm=config.algorithm,
            framework=config.framework,
            module_spec=module_spec,
            hyperparameters=self.hps,
            scaling=ScalingConfig(num_learners=config.num_learners),
        )
        # Sampling runs here, with its own copy of the module kept in sync after each update.
        self.backend = make_backend(config.framework)
        self.module_id, module_spec = next(iter(self.spec.module_specs.items()))
        self.actor = self.backend.build_module(module_spec, self.hps.seed)
        self.policy = self.backend.policy_fn(self.actor, explore=True)
        self.value = self.backend.value_fn(self.actor)
        self.group = LearnerGroup(self.spec)
        self.returns: deque[float] = deque(maxlen=RETURN_WINDOW)
        self.lengths: deque[int] = deque(maxlen=RETURN_WINDOW)
        self.timesteps = self.iteration = self.episodes = 0
        self.elapsed_before = 0.0
        self.out = RunOutput(Path(config.out_dir))
        if config.resume:
            self._restore(Path(config.resume))
        self._sync_actor()

    def _sync_actor(self) -> None:
        weights = self.group.get_weights()[self.module_id]
        self.backend.set_module_state(self.actor, weights, "the sampling module")

    # Checkpoints -------------------------------------------------------------------------
    def run_metadata(self) -> dict[str, Any]:
        return {
            "algorithm": self.config.algorithm,
            "env": self.config.env_id,
            "framework": self.config.framework,
            "seed": self.config.seed,
            "model_config": self.model_config,
            "hyperparameters": attrs.asdict(self.hps),
        }

    def save_checkpoint(self) -> Path:
        path = self.out.dir / CHECKPOINT_DIR
        self.group.save_state(path)
        trainer_state = {
            "timesteps": self.timesteps,
            "iteration": self.iteration,
            "episodes": self.episodes,
            "elapsed": self.elapsed_before + time.perf_counter() - self.started,
            "returns": list(self.returns),
            "lengths": list(self.lengths),
            "obs_normalizer": {k: v.tolist() for k, v in self.runner.get_state().items()},
        }
        write_json_atomic(path / TRAINER_STATE_FILE, trainer_state)
        write_json_atomic(path / RUN_FILE, self.run_metadata())
        return path

    def _restore(self, path: Path) -> None:
        state = read_trainer_state(path)
        self.group.load_state(checkpoint_dir(path))
        self.timesteps, self.iteration = state["timesteps"], state["iteration"]
        self.episodes, self.elapsed_before = state["episodes"], state["elapsed"]
        self.returns.extend(state["returns"])
        self.lengths.extend(state["lengths"])
        self.runner.set_state(state["obs_normalizer"])

    # The loop ----------------------------------------------------------------------------
    def mean_return(self) -> float | None:
        return float(np.mean(self.returns)) if self.returns else None

    def reached(self) -> bool:
        # Only a full window counts: a few lucky early episodes do not make a solved task.
        return (
            self.stop_reward is not None
            and len(self.returns) == RETURN_WINDOW
            and self.mean_return() >= self.stop_reward
        )

    def step(self) -> dict[str, Any]:
        hps = self.hps
        t0 = time.perf_counter()
        rollout = self.runner.sample(self.policy, self.value, hps.rollout_fragment_length)
        batch = rollout.to_sample_batch(gamma=hps.gamma, lambda_=hps.lambda_)
        t1 = time.perf_counter()
        results = self.group.update(
            batch, minibatch_size=hps.minibatch_size, num_epochs=hps.num_epochs
        )
        self.timesteps += batch.count
        self.iteration += 1
        kl = {mid: r["mean_kl"] for mid, r in results.items() if "mean_kl" in r}
        extra = self.group.additional_update(timestep=self.timesteps, sampled_kl_values=kl)
        self._sync_actor()
        t2 = time.perf_counter()
        for episode_return, length in self.runner.pop_episode_stats():
            self.returns.append(episode_return)
            self.lengths.append(length)
            self.episodes += 1
        row = {
            "iteration": self.iteration,
            "timesteps_total": self.timesteps,
            "episodes_total": self.episodes,
            "episode_return_mean": self.mean_return(),
            "episode_len_mean": float(np.mean(self.lengths)) if self.lengths else None,
            "time_total_s": self.elapsed_before + t2 - self.started,
            "env_steps_per_s": batch.count / (t2 - t0),
            "sample_time_s": t1 - t0,
            "learn_time_s": t2 - t1,
        }
        for name, value in {**results[self.module_id], **extra[self.module_id]}.items():
            row[f"learner/{name}"] = value
        return row

    def run(self) -> TrainSummary:
        self.started = time.perf_counter()
        self.out.start(self.run_metadata(), resume=bool(self.config.resume))
        interrupted = False
        try:
            with self.out.progress(self.stop_timesteps, enabled=self.config.progress) as bar:
                bar.advance_to(self.timesteps, self.iteration, self.mean_return(), 0.0)
                while self.timesteps < self.stop_timesteps and not self.reached():
                    row = self.step()
                    self.out.log(row)
                    bar.advance_to(
                        self.timesteps,
                        self.iteration,
                        row["episode_return_mean"],
                        row["env_steps_per_s"],
                    )
                    if self.iteration % self.config.checkpoint_every == 0:
                        self.save_checkpoint()
        except KeyboardInterrupt:
            interrupted = True
        checkpoint = self.save_checkpoint()
        curve = self.out.plot_curve(self.stop_reward)
        summary = TrainSummary(
            algorithm=self.config.algorithm,
            env=self.config.env_id,
            framework=self.config.framework,
            seed=self.config.seed,
            timesteps_total=self.timesteps,
            iterations=self.iteration,
            episodes_total=self.episodes,
            episode_return_mean=self.mean_return(),
            wall_seconds=self.elapsed_before + time.perf_counter() - self.started,
            reached_stop_reward=self.reached(),
            stop_reward=self.stop_reward,
            checkpoint=str(checkpoint),
            curve=str(curve) if curve else None,
            interrupted=interrupted,
        )
        self.out.finish(attrs.asdict(summary))
        return summary

    def close(self) -> None:
        self.group.shutdown()
        self.runner.close()


def checkpoint_dir(path: str | os.PathLike) -> Path:
    """The checkpoint directory of a run directory, or ``path`` itself if it is one."""
    path = Path(path)
    return path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).is_dir() else path


def read_run(path: str | os.PathLike) -> dict[str, Any]:
    """What a run was trained with (``run.json`` of its checkpoint)."""
    run_file = checkpoint_dir(path) / RUN_FILE
    if not run_file.is_file():
        raise CheckpointError(
            f"{path} is not a learnerkit training checkpoint ({RUN_FILE} is missing); pass the "
            "run directory written by `learnerkit train`"
        )
    return json.loads(run_file.read_text())


def read_trainer_state(path: str | os.PathLike) -> dict[str, Any]:
    """The training loop's own state in a checkpoint (counters, recent returns, and the
    observation normaliser's statistics as numpy arrays)."""
    state_file = checkpoint_dir(path) / TRAINER_STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(
            f"{path} is not a learnerkit training checkpoint: {state_file} is missing"
        )
    state = json.loads(state_file.read_text())
    state["obs_normalizer"] = {k: np.asarray(v) for k, v in state["obs_normalizer"].items()}
    return state


def _continue_run(config: TrainConfig) -> TrainConfig:
    """A resumed run keeps the algorithm, env, framework, hyperparameters and model of the
    run it continues; explicit overrides still apply on top."""
    run = read_run(config.resume)
    hyperparameters = {k: v for k, v in run["hyperparameters"].items() if k != "seed"}
    return attrs.evolve(
        config,
        algorithm=run["algorithm"],
        env_id=run["env"],
        framework=run["framework"],
        overrides={**hyperparameters, **config.overrides},
        model_config={**run["model_config"], **(config.model_config or {})},
    )


def default_out_dir(algorithm: str, env_id: str, seed: int) -> str:
    return os.path.join("runs", f"{algorithm}-{env_id}-seed{seed}")


def _seed_and_threads(framework: str, seed: int) -> None:
    """Seed the framework's global generator (action sampling draws from it), and keep
    torch to one thread: small MLPs run fastest so, and the other core steps the envs."""
    if framework == "torch":
        import torch

        torch.manual_seed(seed)
        torch.set_num_threads(1)
    else:
        import tensorflow as tf

        tf.random.set_seed(seed)


def train(config: TrainConfig) -> TrainSummary:
    """Train until the stop reward (mean of the last 100 episodes) or the step budget."""
    if config.out_dir is None:
        config = attrs.evolve(
            config, out_dir=default_out_dir(config.algorithm, config.env_id, config.seed)
        )
    _seed_and_threads(config.framework, config.seed)
    trainer = _Trainer(config)
    try:
        return trainer.run()
    finally:
        trainer.close()


def run_training_from_args(args: Any) -> int:
    """``learnerkit train``: build a TrainConfig from parsed arguments and print the result."""
    overrides: dict[str, Any] = {}
    model_config = None
    if args.config:
        overrides = read_config_file(args.config)
        model_config = overrides.pop("model_config", None)
    if args.num_envs is not None:
        overrides["num_envs"] = args.num_envs
    resume = args.resume
    # Resuming a run directory continues writing into it.
    is_run_dir = resume and (Path(resume) / CHECKPOINT_DIR).is_dir()
    out_dir = args.out or (resume if is_run_dir else None)
    config = TrainConfig(
        algorithm=args.algorithm,
        env_id=args.env,
        framework=args.framework,
        seed=args.seed,
        num_learners=args.num_learners,
        stop_reward=args.stop_reward,
        stop_timesteps=args.stop_timesteps,
        out_dir=out_dir,
        overrides=overrides,
        model_config=model_config,
        resume=resume,
        progress=not args.quiet,
    )
    summary = train(config)
    ret = summary.episode_return_mean
    shown = "n/a" if ret is None else f"{ret:.1f}"
    print(
        f"{summary.algorithm} on {summary.env}: mean return {shown}"
        f" over the last {RETURN_WINDOW} episodes after {summary.timesteps_total} env steps in "
        f"{summary.wall_seconds:.1f} s"
        + (" (stop reward reached)" if summary.reached_stop_reward else "")
    )
    print(f"learning curve: {summary.curve}")
    print(f"checkpoint:     {summary.checkpoint}")
    print(f"evaluate with:  learnerkit evaluate {summary.checkpoint}")
    return 130 if summary.interrupted else 0
