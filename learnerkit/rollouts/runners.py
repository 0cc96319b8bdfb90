"""Env runners as the training loops see them: a set of samplers, each with its own copy of
the module, that return `Fragment`s.

Two implementations share one interface (`EnvRunners`): `LocalEnvRunners` samples in this
process (``num_env_runners=0``), and `learnerkit.distributed.env_runners.RayEnvRunners`
runs that many Ray actors. A loop either gathers one fragment from every runner with the
current weights (`sample`, on-policy) or takes whatever fragments have finished while the
runners keep sampling (`poll`, asynchronous).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import attrs
import numpy as np

from learnerkit.rollouts.env_runner import EnvRunner, Rollout
from learnerkit.specs import ModuleSpec

Weights = Mapping[str, np.ndarray]


@attrs.frozen(kw_only=True)
class EnvRunnerSpec:
    """Everything a runner needs to build itself, anywhere (the driver or a Ray actor)."""

    env_id: str
    framework: str
    module_spec: ModuleSpec
    num_envs: int
    rollout_fragment_length: int
    normalize_observations: bool = False
    seed: int = 0
    env_kwargs: Mapping[str, Any] = attrs.field(factory=dict)

    def runner_seed(self, index: int) -> int:
        """Runner ``index``'s environments are seeded apart from every other runner's."""
        return self.seed + 10_000 * index


@attrs.frozen(kw_only=True, eq=False)
class Fragment:
    """One `Rollout` sampled by one runner, with what the loop needs to know about it."""

    rollout: Rollout
    episodes: list[tuple[float, int]]
    """(return, length) of each episode that ended in this fragment."""
    weights_version: int
    """The version of the weights the runner acted with (the learner updates they had)."""
    runner_index: int
    obs_increment: Mapping[str, np.ndarray] = attrs.field(factory=dict)
    """Statistics of the raw observations seen (empty without normalisation)."""

    @property
    def env_steps(self) -> int:
        return self.rollout.num_steps * self.rollout.num_envs


class EnvRunners(Protocol):
    """What a training loop uses to sample."""

    num_runners: int
    observation_space: Any
    action_space: Any

    def set_weights(self, weights: Weights, version: int) -> None:
        """New module weights (and the merged observation statistics) for every runner."""

    def sample(self) -> list[Fragment]:
        """One fragment from every runner, all sampled with the latest weights."""

    def poll(self, timeout: float) -> list[Fragment]:
        """The fragments finished since the last call, waiting up to ``timeout`` seconds for
        at least one; every runner that finished starts its next fragment at once."""

    def get_state(self) -> dict[str, Any]:
        """The observation statistics all runners share (empty without normalisation)."""

    def set_state(self, state: Mapping[str, Any]) -> None: ...

    def metrics(self) -> dict[str, Any]:
        """Counters to report: restarts, errors."""

    def close(self) -> None: ...


class RunnerModule:
    """A runner's own copy of the module: a numpy policy and value function over it."""

    def __init__(self, spec: EnvRunnerSpec) -> None:
        from learnerkit.backends import make_backend

        self.backend = make_backend(spec.framework)
        self.module = self.backend.build_module(spec.module_spec, spec.seed)
        self.policy = self.backend.policy_fn(self.module, explore=True)
        self.value = self.backend.value_fn(self.module)
        self.version = 0

    def set_weights(self, weights: Weights, version: int) -> None:
        self.backend.set_module_state(self.module, weights, "the env runner's module")
        self.version = version


class LocalEnvRunners:
    """``num_env_runners=0``: one `EnvRunner` in this process, sampling when asked.

    Its observation statistics are the shared ones: no merging is needed.
    """

    num_runners = 1

    def __init__(self, spec: EnvRunnerSpec) -> None:
        self.spec = spec
        self.runner = EnvRunner(
            spec.env_id,
            num_envs=spec.num_envs,
            seed=spec.runner_seed(0),
            normalize_obs=spec.normalize_observations,
            env_kwargs=spec.env_kwargs,
        )
        self.observation_space = self.runner.observation_space
        self.action_space = self.runner.action_space
        self.module = RunnerModule(spec)

    def set_weights(self, weights: Weights, version: int) -> None:
        self.module.set_weights(weights, version)

    def sample(self) -> list[Fragment]:
        module = self.module
        rollout = self.runner.sample(module.policy, module.value, self.spec.rollout_fragment_length)
        self.runner.pop_obs_increment()  # the runner's own statistics are the shared ones
        return [
            Fragment(
                rollout=rollout,
                episodes=self.runner.pop_episode_stats(),
                weights_version=module.version,
                runner_index=0,
            )
        ]

    def poll(self, timeout: float) -> list[Fragment]:
        return self.sample()

    def get_state(self) -> dict[str, Any]:
        return self.runner.get_state()

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.runner.set_state(state)

    def metrics(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self.runner.close()
