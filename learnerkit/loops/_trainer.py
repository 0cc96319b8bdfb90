"""The machinery every training loop shares: resolve the run's settings, build the
learners and env runners, iterate the algorithm's loop, and report, checkpoint and resume.

A loop (learnerkit's own or a third party's: ``learnerkit.loops.contract``) only decides
what one iteration does, and where its data comes from; everything a user sees of a run
(progress display, ``metrics.csv``, TensorBoard, the learning curve, checkpoints,
``--resume``, Ctrl-C, ``summary.json``) is made here, the same for every loop, from what
its declaration (``LoopInfo``) says and nothing else. Hosts can call
``train(TrainConfig(...))`` directly, with an ``on_iteration`` callback that may change
the modules between iterations (``learnerkit.loops.contract.IterationContext``).

A PettingZoo env (``pettingzoo:...``) trains every module its policy mapping names; the
reported return, and ``--stop-reward``, is then the team return (the sum over agents per
episode), and each agent's mean return is reported beside it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from learnerkit._checkpoint import write_json_atomic
from learnerkit._learner_group import LearnerGroup
from learnerkit._learner_spec import LearnerSpec
from learnerkit._plugins import get_algorithm
from learnerkit._specs import ScalingConfig
from learnerkit.loops._multi_agent import (
    AgentReturns,
    ModuleControl,
    module_state,
    saved_mapping,
)
from learnerkit.loops._run_files import (
    CHECKPOINT_DIR,
    RUN_FILE,
    TRAINER_STATE_FILE,
    checkpoint_dir,
    default_out_dir,
    read_trainer_state,
)
from learnerkit.loops._run_output import AGENT_RETURN_PREFIX, RunOutput
from learnerkit.loops._setup import (
    check_pixels_not_normalized,
    continue_run,
    environment,
    load_loop,
    resolve_settings,
    run_modules,
    seed_and_threads,
    training_loop_of,
)
from learnerkit.loops._trainer_checkpoint import (
    load_loop_state,
    restore_runner_states,
    save_loop_state,
    save_runner_states,
)
from learnerkit.loops.contract import (
    OnIteration,
    Run,
    TrainConfig,
    TrainingLoop,
    TrainSummary,
    make_env_runners,
)
from learnerkit.rollouts._atari import atari_settings
from learnerkit.rollouts._contract import EnvRunnerSpec
from learnerkit.rollouts._pettingzoo_envs import is_pettingzoo

logger = logging.getLogger(__name__)

RETURN_WINDOW = 100  # episodes in the reported mean return (the usual "last 100")
DEFAULT_STOP_TIMESTEPS = 1_000_000


class Trainer:
    """Builds a run and iterates its loop; ``run()`` trains, ``close()`` releases."""

    def __init__(self, config: TrainConfig, on_iteration: OnIteration | None = None) -> None:
        if config.resume:
            config = continue_run(config)
        self.algorithm = get_algorithm(config.algorithm)
        info = training_loop_of(self.algorithm)
        loop_cls = load_loop(info)
        env_id, observation_space, action_space = environment(info, loop_cls, config)
        config = attrs.evolve(
            config,
            env_id=env_id,
            out_dir=config.out_dir or default_out_dir(config.algorithm, env_id, config.seed),
        )
        self.config = config
        self.atari = atari_settings(env_id, config.atari_preprocessing) if env_id else None
        self.hps, self.model_config, self.stop_reward, given_stop = resolve_settings(
            config, self.algorithm, info
        )
        ray_address = config.ray_address or os.environ.get("RAY_ADDRESS")
        module_spec, mapping, module_hps, trained = run_modules(
            config, env_id, observation_space, action_space, self.model_config
        )
        check_pixels_not_normalized(self.hps, module_spec)
        self.multi_agent = is_pettingzoo(env_id)
        self.policy_mapping = mapping
        self.on_iteration = on_iteration
        self.spec = LearnerSpec(
            algorithm=config.algorithm,
            framework=config.framework,
            module_spec=module_spec,
            hyperparameters=self.hps,
            scaling=ScalingConfig(
                num_learners=config.num_learners,
                num_cpus_per_learner=config.num_cpus_per_learner,
                num_gpus_per_learner=config.num_gpus_per_learner,
            ),
            module_hyperparameters={m: v for m, v in module_hps.items() if v},
            modules_to_train=None if trained is None else sorted(trained),
        )
        self.group = self.runners = None
        self.out = RunOutput(Path(config.out_dir))  # its output child starts with run()
        try:
            options = getattr(loop_cls, "learner_group_options", None)
            self.group = LearnerGroup(
                self.spec, ray_address=ray_address, **(options(self.hps) if options else {})
            )
            if info.uses_env_runners:
                # The learners' specs: a module class the algorithm declares filled in.
                acting = self.spec.module_specs
                self.runners = make_env_runners(
                    EnvRunnerSpec(
                        env_id=env_id,
                        framework=config.framework,
                        module_spec=acting if self.multi_agent else next(iter(acting.values())),
                        num_envs=self.hps.num_envs_per_env_runner,
                        rollout_fragment_length=self.hps.rollout_fragment_length,
                        normalize_observations=self.hps.normalize_observations,
                        seed=config.seed,
                        atari=self.atari,
                        policy_mapping=mapping,
                        # Multi-agent: whole sequences per agent for a loop that asks.
                        sequences=info.sequences,
                        policy_outputs=info.policy_outputs,
                    ),
                    self.hps,
                    ray_address=ray_address,
                )
            self.loop: TrainingLoop = loop_cls(
                Run(
                    config=config,
                    algorithm=self.algorithm,
                    hps=self.hps,
                    module_id=next(iter(self.spec.module_specs)),
                    group=self.group,
                    runners=self.runners,
                    stop_timesteps=given_stop,
                )
            )
            # The run ends at the budget given, or where the loop runs out of data.
            own_end = self.loop.max_timesteps() if hasattr(self.loop, "max_timesteps") else None
            budgets = [t for t in (given_stop, own_end) if t is not None]
            self.stop_timesteps = min(budgets) if budgets else DEFAULT_STOP_TIMESTEPS
            self.returns: deque[float] = deque(maxlen=RETURN_WINDOW)
            self.lengths: deque[int] = deque(maxlen=RETURN_WINDOW)
            self.agent_returns = AgentReturns(RETURN_WINDOW)
            self.timesteps = self.iteration = self.episodes = 0
            self.elapsed_before = 0.0
            self.started = time.perf_counter()  # again when run() starts
            if config.resume:
                self._restore(Path(config.resume))
            self.loop.start()
        except BaseException:
            self.close()
            raise

    # Checkpoints -------------------------------------------------------------------------
    def run_metadata(self) -> dict[str, Any]:
        metadata = {
            "algorithm": self.config.algorithm,
            "env": self.config.env_id,
            "framework": self.config.framework,
            "seed": self.config.seed,
            "model_config": self.model_config,
            "hyperparameters": attrs.asdict(self.hps),
            "atari_preprocessing": None if self.atari is None else attrs.asdict(self.atari),
        }
        if self.config.dataset is not None:
            metadata["dataset"] = self.config.dataset
        if self.multi_agent:
            metadata["policy_mapping"] = saved_mapping(self.config.policy_mapping)
        return metadata

    def save_checkpoint(self, path: Path | None = None) -> Path:
        """The run's checkpoint, in its ``checkpoint/`` directory or in ``path`` (a Tune
        trial's checkpoint directory): the same files either way, so either resumes."""
        path = self.out.dir / CHECKPOINT_DIR if path is None else Path(path)
        self.group.save_state(path)
        trainer_state = {
            "timesteps": self.timesteps,
            "iteration": self.iteration,
            "episodes": self.episodes,
            "elapsed": self.elapsed_before + time.perf_counter() - self.started,
            "returns": list(self.returns),
            "lengths": list(self.lengths),
            "obs_normalizer": {
                k: np.asarray(v).tolist()
                for k, v in (self.runners.get_state() if self.runners else {}).items()
            },
            **save_loop_state(self.loop.get_state(), path),
            **save_runner_states(self.runners, path),
            **(
                module_state(self.config.env_id, self.group, self.runners, self.agent_returns)
                if self.multi_agent
                else {}
            ),
        }
        write_json_atomic(path / TRAINER_STATE_FILE, trainer_state)
        write_json_atomic(path / RUN_FILE, self.run_metadata())
        return path

    def _restore(self, path: Path) -> None:
        state = read_trainer_state(path)
        self.group.load_state(checkpoint_dir(path))
        # The optimizers' rates come back with their states; the run's own learning_rate
        # (given anew on resume, or a population-based-training perturbation) wins.
        self.group.foreach_learner(follow_learning_rate)
        self.timesteps, self.iteration = state["timesteps"], state["iteration"]
        self.episodes, self.elapsed_before = state["episodes"], state["elapsed"]
        self.returns.extend(state["returns"])
        self.lengths.extend(state["lengths"])
        if self.runners is not None:
            self.runners.set_state(state["obs_normalizer"])
            restore_runner_states(self.runners, path, state)
        self.agent_returns.set_state(state.get("agent_returns", {}))
        self.loop.set_state(load_loop_state(path, state))

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
        """One iteration of the loop, as a row of metrics."""
        t0 = time.perf_counter()
        result = self.loop.step(self.timesteps)
        seconds = time.perf_counter() - t0
        self.timesteps += result.env_steps
        self.iteration += 1
        for episode_return, length in result.episodes:
            self.returns.append(episode_return)
            self.lengths.append(length)
            self.episodes += 1
        self.agent_returns.add(result.agent_returns)
        means = self.agent_returns.means()
        per_agent = {f"{AGENT_RETURN_PREFIX}{a}": r for a, r in means.items()}
        return {
            "iteration": self.iteration,
            "timesteps_total": self.timesteps,
            "episodes_total": self.episodes,
            "episode_return_mean": self.mean_return(),
            "episode_len_mean": float(np.mean(self.lengths)) if self.lengths else None,
            "time_total_s": self.elapsed_before + time.perf_counter() - self.started,
            "env_steps_per_s": result.env_steps / seconds,
            **per_agent,
            **result.metrics,
        }

    def _call_back(self, row: dict[str, Any]) -> None:
        if self.on_iteration is not None:
            self.on_iteration(
                ModuleControl(
                    iteration=self.iteration,
                    timesteps=self.timesteps,
                    metrics=row,
                    group=self.group,
                    runners=self.runners,
                )
            )

    def _stop_on_ctrl_c(self) -> Any:
        """The first Ctrl-C (SIGINT) ends the run after the iteration in progress, so that
        its checkpoint holds whole iterations (a learner update interrupted half way would
        be in the weights but not in the counters); a second one stops at once. Returns
        the previous handler (None: not the main thread, where no handler can be set)."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_sigint(signum: int, frame: Any) -> None:
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            print(
                "learnerkit: stopping after this iteration, with a checkpoint (Ctrl-C again "
                "to stop at once)",
                file=sys.stderr,
            )

        return signal.signal(signal.SIGINT, on_sigint)

    def run(self) -> TrainSummary:
        self.started = time.perf_counter()
        self.out.start(self.run_metadata(), resume=bool(self.config.resume))
        interrupted = self.stop_requested = False
        previous_handler = self._stop_on_ctrl_c()
        try:
            with self.out.progress(self.stop_timesteps, enabled=self.config.progress) as bar:
                bar.advance_to(self.timesteps, self.iteration, self.mean_return(), 0.0)
                while (
                    self.timesteps < self.stop_timesteps
                    and not self.reached()
                    and not self.stop_requested
                ):
                    row = self.step()
                    self.out.log(row)
                    self._call_back(row)
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
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        interrupted = interrupted or self.stop_requested
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
            dataset=self.config.dataset,
            agent_return_mean=self.agent_returns.means() if self.multi_agent else None,
        )
        self.out.finish(attrs.asdict(summary))
        return summary

    def close(self) -> None:
        self.out.close()
        if self.runners is not None:
            self.runners.close()
        if self.group is not None:
            self.group.shutdown()


def follow_learning_rate(learner: Any) -> None:
    """Set each optimizer of each module without an ``lr_schedule`` to the rate
    ``configure_optimizers`` gave it under the learner's hyperparameters (a module with a
    schedule gets the schedule's rate at its next ``additional_update``, as before)."""
    ops = learner.backend.ops
    for module_id in learner.module:
        if learner.hyperparameters_for(module_id).lr_schedule is not None:
            continue
        for name, optimizer in learner.optimizers(module_id).items():
            ops.set_learning_rate(optimizer, learner.initial_learning_rate(module_id, name))


def train(config: TrainConfig, *, on_iteration: OnIteration | None = None) -> TrainSummary:
    """Train until the stop reward (mean of the last 100 episodes; multi-agent, of the team
    return) or the step budget (``out_dir`` None: ``runs/ALGO-ENV-seedS``).

    ``on_iteration(ctx)`` is called after every iteration (its row logged) with an
    ``IterationContext``: the metrics, the learner group and env runners, and methods that
    add or remove modules and change the policy mapping for the next iteration."""
    seed_and_threads(config.framework, config.seed)
    trainer = Trainer(config, on_iteration)
    try:
        return trainer.run()
    finally:
        trainer.close()
