"""What runs inside each env runner's Ray actor: one `EnvRunner` and the module copy it
samples with (see ``learnerkit.distributed.env_runners`` for the driver's side)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium
import ray

from learnerkit.distributed.start import actor_info
from learnerkit.rollouts.env_runner import EnvRunner
from learnerkit.rollouts.runners import EnvRunnerSpec, Fragment, RunnerModule, Weights


class _RunnerWorker:
    """Runs in a Ray actor: one `EnvRunner` and the module it samples with."""

    def __init__(self, spec: EnvRunnerSpec, index: int, env_spec: Any) -> None:
        # An environment registered in code in the driver (a notebook, a test) does not
        # exist in this process until registered again.
        if env_spec.id not in gymnasium.registry:
            gymnasium.registry[env_spec.id] = env_spec
        _setup_framework(spec.framework, spec.runner_seed(index))
        self.spec, self.index = spec, index
        self.runner = EnvRunner(
            env_spec.id,
            num_envs=spec.num_envs,
            seed=spec.runner_seed(index),
            normalize_obs=spec.normalize_observations,
            env_kwargs=spec.env_kwargs,
        )
        self.module = RunnerModule(spec)

    def info(self) -> dict[str, Any]:
        return {
            **actor_info(),
            "observation_space": self.runner.observation_space,
            "action_space": self.runner.action_space,
            "weights": self.module.backend.get_module_state(self.module.module),
        }

    def load(self, weights: Weights | None, version: int, obs_state: Mapping[str, Any]) -> None:
        if weights is not None:
            self.module.set_weights(weights, version)
        if obs_state:
            self.runner.set_state(obs_state)

    def sample(self) -> Fragment:
        module = self.module
        rollout = self.runner.sample(module.policy, module.value, self.spec.rollout_fragment_length)
        return Fragment(
            rollout=rollout,
            episodes=self.runner.pop_episode_stats(),
            weights_version=module.version,
            runner_index=self.index,
            obs_increment=self.runner.pop_obs_increment(),
        )

    def get_state(self) -> dict[str, Any]:
        return self.runner.get_state()


RemoteRunner = ray.remote(max_restarts=0, max_task_retries=0)(_RunnerWorker)


def _setup_framework(framework: str, seed: int) -> None:
    """One thread per runner (several share a node's cores), and a sampling seed of its own."""
    if framework == "torch":
        import torch

        torch.set_num_threads(1)
        torch.manual_seed(seed)
    else:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.random.set_seed(seed)
