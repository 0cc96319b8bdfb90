"""What one env runner is, wherever it runs (this process or a Ray actor): envs, copies of
the modules, and a ``sample()`` that returns a `Fragment`.

`SingleAgentSampler` steps a gymnasium vector env (`EnvRunner`) with one module;
`MultiAgentSampler` steps PettingZoo parallel envs (`MultiAgentEnvRunner`) with a module
per id, following a policy mapping that may change, as may the set of modules (self-play,
leagues). `make_sampler` picks one from the env string.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from learnerkit.errors import ConfigError
from learnerkit.rollouts.contract import EnvRunnerSpec, Fragment, ModuleWeights, Weights
from learnerkit.rollouts.gymnasium_sampling import EnvRunner
from learnerkit.rollouts.module_copies import RunnerModule
from learnerkit.rollouts.multi_agent_sequences import SequenceStreams
from learnerkit.rollouts.pettingzoo_envs import (
    PolicyMapping,
    check_agent_spaces,
    make_parallel_env,
    mapping_fn,
)
from learnerkit.rollouts.pettingzoo_sampling import MultiAgentEnvRunner
from learnerkit.specs import ModuleSpec

__all__ = ["MultiAgentSampler", "SingleAgentSampler", "make_sampler"]


def _unknown_modules(given: ModuleWeights, own: Mapping[str, Any]) -> ConfigError:
    return ConfigError(
        f"weights for modules {sorted(set(given) - set(own))}, which the env runners do not "
        f"have (they have {sorted(own)}): add them to the env runners first (add_module)"
    )


class SingleAgentSampler:
    """A gymnasium vector env and the one module that acts in it."""

    def __init__(
        self,
        spec: EnvRunnerSpec,
        index: int,
        env_id: str | None = None,
        framework_setup: Callable[[], None] | None = None,
    ) -> None:
        self.spec, self.index = spec, index
        self.runner = EnvRunner(
            env_id or spec.env_id,
            num_envs=spec.num_envs,
            seed=spec.runner_seed(index),
            normalize_obs=spec.normalize_observations,
            env_kwargs=spec.env_kwargs,
        )
        self.observation_space = self.runner.observation_space
        self.action_space = self.runner.action_space
        (self.module_id,) = spec.module_specs
        self.module = RunnerModule.from_spec(
            spec,
            self.module_id,
            sampling_seed=spec.sampling_seed(index, self.module_id),
            framework_setup=framework_setup,
        )

    def get_weights(self) -> dict[str, dict[str, Any]]:
        return {self.module_id: self.module.get_weights()}

    def weight_shapes(self) -> dict[str, dict[str, tuple[int, ...]]]:
        return {self.module_id: self.module.weight_shapes()}

    def set_weights(self, weights: ModuleWeights, version: int) -> None:
        if set(weights) - {self.module_id}:
            raise _unknown_modules(weights, {self.module_id: None})
        if self.module_id in weights:
            self.module.set_weights(weights[self.module_id], version)
        self.module.version = version

    def add_module(self, module_id: str, module_spec: ModuleSpec, weights: Any = None) -> None:
        raise ConfigError(
            f"the gymnasium env {self.spec.env_id!r} has one agent and one module; modules are "
            "added only for PettingZoo envs ('pettingzoo:...')"
        )

    remove_module = set_policy_mapping = add_module  # type: ignore[assignment]

    def sample(self, runner_index: int) -> Fragment:
        module = self.module
        rollout = self.runner.sample(module.policy, module.value, self.spec.rollout_fragment_length)
        return Fragment(
            rollout=rollout,
            episodes=self.runner.pop_episode_stats(),
            weights_version=module.version,
            runner_index=runner_index,
            obs_increment=self.runner.pop_obs_increment(),
        )

    def get_state(self) -> dict[str, Any]:
        return self.runner.get_state()

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.runner.set_state(state)

    def close(self) -> None:
        self.runner.close()


class MultiAgentSampler:
    """PettingZoo parallel envs and a module copy per module id. Modules and the mapping
    may change between fragments."""

    def __init__(
        self,
        spec: EnvRunnerSpec,
        index: int,
        factory: Callable[..., Any] | None = None,
        framework_setup: Callable[[], None] | None = None,
    ) -> None:
        self.spec, self.index = spec, index
        self._framework_setup = framework_setup
        self.runner = MultiAgentEnvRunner(
            lambda: make_parallel_env(spec.env_id, spec.env_kwargs, factory=factory),
            num_envs=spec.num_envs,
            mapping=mapping_fn(spec.policy_mapping),
            seed=spec.runner_seed(index),
            env_name=f"env {spec.env_id!r}",
            # Episode ids unique over runners, for a batch that mixes their rows.
            episode_id_offset=index * 1_000_000_000,
        )
        for agent in self.runner.possible_agents:
            check_agent_spaces(
                spec.env_id,
                agent,
                self.runner.observation_spaces[agent],
                self.runner.action_spaces[agent],
            )
        self.modules = {
            module_id: self._module(module_id, module_spec)
            for module_id, module_spec in spec.module_specs.items()
        }
        self.version = 0
        self.streams = SequenceStreams(spec.rollout_fragment_length) if spec.sequences else None

    def _module(self, module_id: str, module_spec: ModuleSpec) -> RunnerModule:
        return RunnerModule(
            self.spec.framework,
            module_spec,
            self.spec.seed,
            sampling_seed=self.spec.sampling_seed(self.index, module_id),
            framework_setup=self._framework_setup,
        )

    def get_weights(self) -> dict[str, dict[str, Any]]:
        return {module_id: m.get_weights() for module_id, m in self.modules.items()}

    def weight_shapes(self) -> dict[str, dict[str, tuple[int, ...]]]:
        return {module_id: m.weight_shapes() for module_id, m in self.modules.items()}

    def set_weights(self, weights: ModuleWeights, version: int) -> None:
        if set(weights) - set(self.modules):
            raise _unknown_modules(weights, self.modules)
        for module_id, module_weights in weights.items():
            self.modules[module_id].set_weights(module_weights, version)
        self.version = version

    def add_module(
        self, module_id: str, module_spec: ModuleSpec, weights: Weights | None = None
    ) -> None:
        if module_id in self.modules:
            raise ConfigError(f"the env runner already has module {module_id!r}")
        module = self._module(module_id, module_spec)
        if weights is not None:
            module.set_weights(weights, self.version)
        self.modules[module_id] = module

    def remove_module(self, module_id: str) -> None:
        if module_id not in self.modules:
            raise ConfigError(
                f"the env runner has no module {module_id!r} (it has {sorted(self.modules)})"
            )
        if self.runner.module_in_use(module_id):
            # Agents of running episodes act with it: those episodes end here, unreported.
            self.runner.restart_episodes()
        del self.modules[module_id]

    def set_policy_mapping(self, mapping: PolicyMapping) -> None:
        self.runner.set_mapping(mapping_fn(mapping))
        self.spec = attrs.evolve(self.spec, policy_mapping=mapping)

    def sample(self, runner_index: int) -> Fragment:
        policies = {m: module.policy for m, module in self.modules.items()}
        if self.streams is not None:
            rollout = self.streams.sample(self.runner, policies, version=self.version)
        else:
            rollout = self.runner.sample(
                policies,
                {m: module.value for m, module in self.modules.items()},
                self.spec.rollout_fragment_length,
            )
        episodes, agent_returns = self.runner.pop_episode_stats()
        return Fragment(
            rollout=rollout,
            episodes=episodes,
            weights_version=self.version,
            runner_index=runner_index,
            agent_returns=agent_returns,
        )

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: Mapping[str, Any]) -> None:
        if state:
            raise ConfigError(
                f"got observation statistics {sorted(state)} for the PettingZoo env "
                f"{self.spec.env_id!r}, which is sampled without normalisation"
            )

    def close(self) -> None:
        self.runner.close()


def make_sampler(
    spec: EnvRunnerSpec,
    index: int,
    env_source: Any = None,
    framework_setup: Callable[[], None] | None = None,
) -> SingleAgentSampler | MultiAgentSampler:
    """The sampler for ``spec``'s env. ``env_source`` stands in for the env string where it
    cannot be resolved (a Ray actor): a gymnasium env id, or a PettingZoo factory.
    ``framework_setup`` runs before a module first imports its framework (`RunnerModule`)."""
    if spec.multi_agent:
        return MultiAgentSampler(spec, index, env_source, framework_setup)
    return SingleAgentSampler(spec, index, env_source, framework_setup)
