"""What runs inside each env runner's Ray actor: one sampler, its envs and the module
copies it samples with (``learnerkit._distributed.ray_env_runners`` is the driver's side)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from typing import Any

import gymnasium
import ray

from learnerkit._distributed.start import actor_info
from learnerkit._specs import ModuleSpec
from learnerkit.rollouts._contract import EnvRunnerSpec, Fragment, ModuleWeights, Weights
from learnerkit.rollouts._pettingzoo_envs import PolicyMapping
from learnerkit.rollouts._sampler import make_sampler


class _RunnerWorker:
    """Runs in a Ray actor: one sampler (`make_sampler`) for runner ``index``.

    ``env_source`` is what the driver resolved from the env string: a gymnasium
    registration (re-registered here, since an env registered in code in the driver, a
    notebook or a test, does not exist in this process), or a PettingZoo env factory.
    """

    def __init__(self, spec: EnvRunnerSpec, index: int, env_source: Any) -> None:
        if isinstance(env_source, gymnasium.envs.registration.EnvSpec):
            if env_source.id not in gymnasium.registry:
                gymnasium.registry[env_source.id] = env_source
            env_source = env_source.id
        self.index = index
        # The framework is imported only if a module needs it: a default module acts in
        # numpy from the weights the driver sends before the first sample.
        setup = functools.partial(_setup_framework, spec.framework, spec.runner_seed(index))
        self.sampler = make_sampler(spec, index, env_source, framework_setup=setup)

    def info(self) -> dict[str, Any]:
        return {
            **actor_info(),
            "observation_space": getattr(self.sampler, "observation_space", None),
            "action_space": getattr(self.sampler, "action_space", None),
            "weight_shapes": self.sampler.weight_shapes(),
        }

    def module_weight_shapes(self, module_id: str) -> dict[str, tuple[int, ...]]:
        return self.sampler.weight_shapes()[module_id]

    def imported_frameworks(self) -> list[str]:
        """Which frameworks this runner imported (none while default modules act in numpy
        from the weights sent)."""
        return [name for name in ("torch", "tensorflow") if name in sys.modules]

    def module_weights(self, module_id: str) -> Weights:
        return self.sampler.get_weights()[module_id]

    def load(
        self, weights: ModuleWeights | None, version: int, obs_state: Mapping[str, Any]
    ) -> None:
        if weights is not None:
            self.sampler.set_weights(weights, version)
        if obs_state:
            self.sampler.set_state(obs_state)

    def add_module(self, module_id: str, module_spec: ModuleSpec, weights: Any) -> None:
        self.sampler.add_module(module_id, module_spec, weights)

    def remove_module(self, module_id: str) -> None:
        self.sampler.remove_module(module_id)

    def set_policy_mapping(self, mapping: PolicyMapping) -> None:
        self.sampler.set_policy_mapping(mapping)

    def sample(self) -> Fragment:
        return self.sampler.sample(self.index)

    def get_state(self) -> dict[str, Any]:
        return self.sampler.get_state()

    def runner_state(self) -> dict[str, Any]:
        return self.sampler.get_runner_state()

    def set_runner_state(self, state: Mapping[str, Any]) -> str | None:
        return self.sampler.set_runner_state(state)


RemoteRunner = ray.remote(max_restarts=0, max_task_retries=0)(_RunnerWorker)


@functools.cache
def _setup_framework(framework: str, seed: int) -> None:
    """One thread per runner (several share a node's cores), and a sampling seed of its own.
    Runs once, before the framework's first import in this runner."""
    if framework == "torch":
        import torch

        torch.set_num_threads(1)
        torch.manual_seed(seed)
    else:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.random.set_seed(seed)
