"""What one env runner is, wherever it runs (this process or a Ray actor): a `Sampler`, one
env adapter of the sampling engine with a copy of each module, whose ``sample()`` returns a
`Fragment`.

The adapter is ``gymnasium_sampling.EnvRunner`` (a gymnasium vector env, one module) or
``_pettingzoo_sampling.MultiAgentEnvRunner`` (PettingZoo parallel envs, a module per agent
group following a policy mapping that may change, as may the set of modules: self-play,
leagues); the env string picks it. Everything else, weights, module copies, observation
statistics, fragments, is the same for both. For whole sequences of T steps (V-trace, the
asynchronous loop) a gymnasium fragment of T steps already is one sequence per env
(``Rollout.to_sequences``); PettingZoo agents come and go, so their rows wait in streams
(``_multi_agent_sequences``). A recurrent module acts through a
``StateCarrier`` that keeps its state per env from fragment to fragment; in PettingZoo
envs (the asynchronous loop's streams) through an ``AgentStatePolicy``, each agent's state
kept in its episode (the on-policy loop's segments too: their bootstrap values step from
what each agent carried).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from learnerkit._specs import ModuleSpec
from learnerkit.errors import ConfigError
from learnerkit.rollouts._contract import EnvRunnerSpec, Fragment, ModuleWeights, Weights
from learnerkit.rollouts._gymnasium_sampling import EnvRunner
from learnerkit.rollouts._module_copies import RunnerModule
from learnerkit.rollouts._multi_agent_sequences import SequenceStreams
from learnerkit.rollouts._pettingzoo_envs import (
    PolicyMapping,
    check_agent_spaces,
    make_parallel_env,
    policy_mapping_fn,
)
from learnerkit.rollouts._pettingzoo_sampling import MultiAgentEnvRunner
from learnerkit.rollouts._recurrent import AgentStatePolicy, StateCarrier, check_can_act
from learnerkit.rollouts._sampling import POLICY_COLUMNS, EnvAdapter

__all__ = ["Sampler", "make_sampler"]


class Sampler:
    """Runner ``index`` of ``spec``: its envs (an `EnvAdapter`) and a `RunnerModule` per
    module id. Modules and the policy mapping may change between fragments (PettingZoo).

    ``env_source`` stands in for the env string where it cannot be resolved (a Ray actor):
    a gymnasium env id, or a PettingZoo factory. ``framework_setup`` runs before a module
    first imports its framework (`RunnerModule`).
    """

    def __init__(
        self,
        spec: EnvRunnerSpec,
        index: int,
        env_source: Any = None,
        framework_setup: Callable[[], None] | None = None,
    ) -> None:
        self.spec, self.index = spec, index
        self._framework_setup = framework_setup
        self.observation_space = self.action_space = None  # a gymnasium env's
        self.envs: EnvAdapter = self._make_envs(env_source)
        self.modules = {
            module_id: self._module(module_id, module_spec)
            for module_id, module_spec in spec.module_specs.items()
        }
        self.version = 0
        self.fragments_sampled = 0
        self.policy_outputs = tuple(spec.policy_outputs)
        if spec.multi_agent and set(self.policy_outputs) != set(POLICY_COLUMNS):
            raise ConfigError(
                f"multi-agent env runners record the actor-critic columns {list(POLICY_COLUMNS)}"
                f"; EnvRunnerSpec.policy_outputs {list(self.policy_outputs)} is for a gymnasium "
                "env (a loop asking for other outputs does not declare multi_agent)"
            )
        self.streams = (
            SequenceStreams(spec.rollout_fragment_length)
            if spec.multi_agent and spec.sequences
            else None
        )
        self._carrier: StateCarrier | None = None  # a recurrent module's, made when it acts
        self._agent_policies: dict[str, AgentStatePolicy] = {}  # PettingZoo recurrent modules

    def _make_envs(self, env_source: Any) -> EnvAdapter:
        spec, index = self.spec, self.index
        if not spec.multi_agent:
            envs = EnvRunner(
                env_source or spec.env_id,
                num_envs=spec.num_envs,
                seed=spec.runner_seed(index),
                normalize_obs=spec.normalize_observations,
                env_kwargs=spec.env_kwargs,
                atari=spec.atari,
            )
            self.observation_space, self.action_space = envs.observation_space, envs.action_space
            return envs
        envs = MultiAgentEnvRunner(
            lambda: make_parallel_env(spec.env_id, spec.env_kwargs, factory=env_source),
            num_envs=spec.num_envs,
            mapping=policy_mapping_fn(spec.policy_mapping),
            seed=spec.runner_seed(index),
            env_name=f"env {spec.env_id!r}",
            # Episode ids unique over runners, for a batch that mixes their rows.
            episode_id_offset=index * 1_000_000_000,
            normalize_obs=spec.normalize_observations,
        )
        for agent in envs.possible_agents:
            obs_space, action_space = envs.observation_spaces[agent], envs.action_spaces[agent]
            check_agent_spaces(spec.env_id, agent, obs_space, action_space)
        return envs

    def _module(self, module_id: str, module_spec: ModuleSpec) -> RunnerModule:
        check_can_act(module_spec)
        return RunnerModule(
            self.spec.framework,
            module_spec,
            self.spec.seed,
            sampling_seed=self.spec.sampling_seed(self.index, module_id),
            framework_setup=self._framework_setup,
        )

    # Weights and modules -----------------------------------------------------------------
    def get_weights(self) -> dict[str, dict[str, Any]]:
        return {module_id: m.get_weights() for module_id, m in self.modules.items()}

    def weight_shapes(self) -> dict[str, dict[str, tuple[int, ...]]]:
        return {module_id: m.weight_shapes() for module_id, m in self.modules.items()}

    def set_weights(self, weights: ModuleWeights, version: int) -> None:
        if set(weights) - set(self.modules):
            raise ConfigError(
                f"weights for modules {sorted(set(weights) - set(self.modules))}, which the env "
                f"runners do not have (they have {sorted(self.modules)}): add them to the env "
                "runners first (add_module)"
            )
        for module_id, module_weights in weights.items():
            self.modules[module_id].set_weights(module_weights, version)
        self.version = version

    def _multi_agent_only(self) -> MultiAgentEnvRunner:
        if not isinstance(self.envs, MultiAgentEnvRunner):
            raise ConfigError(
                f"the gymnasium env {self.spec.env_id!r} has one agent and one module; modules "
                "are added only for PettingZoo envs ('pettingzoo:...')"
            )
        return self.envs

    def add_module(
        self, module_id: str, module_spec: ModuleSpec, weights: Weights | None = None
    ) -> None:
        self._multi_agent_only()
        if module_id in self.modules:
            raise ConfigError(f"the env runner already has module {module_id!r}")
        module = self._module(module_id, module_spec)
        if weights is not None:
            module.set_weights(weights, self.version)
        self.modules[module_id] = module

    def remove_module(self, module_id: str) -> None:
        envs = self._multi_agent_only()
        if module_id not in self.modules:
            raise ConfigError(
                f"the env runner has no module {module_id!r} (it has {sorted(self.modules)})"
            )
        # Agents of running episodes that act with it: those episodes end here, unreported.
        envs.remove_module(module_id)
        del self.modules[module_id]
        self._agent_policies.pop(module_id, None)

    def set_policy_mapping(self, mapping: PolicyMapping) -> None:
        self._multi_agent_only().set_mapping(policy_mapping_fn(mapping))
        self.spec = attrs.evolve(self.spec, policy_mapping=mapping)

    # Sampling ----------------------------------------------------------------------------
    def sample(self, runner_index: int) -> Fragment:
        policies = {m: self._agent_policy(m, module) for m, module in self.modules.items()}
        length = self.spec.rollout_fragment_length
        if self.streams is not None:
            rollout = self.streams.sample(self.envs, policies, version=self.version)
        elif isinstance(self.envs, EnvRunner):
            module = next(iter(self.modules.values()))
            carrier = self._state_carrier(module)
            if carrier is not None:
                rollout = self.envs.sample(
                    carrier.policy,
                    carrier.bootstrap_values,
                    length,
                    self.policy_outputs,
                    carrier=carrier,
                )
            else:
                rollout = self.envs.sample(module.policy, module.value, length, self.policy_outputs)
        else:
            values = {m: self._agent_value(m, module) for m, module in self.modules.items()}
            rollout = self.envs.sample_modules(policies, values, length)
        episodes, agent_returns = self.envs.pop_episodes()
        first, self.fragments_sampled = self.fragments_sampled == 0, self.fragments_sampled + 1
        return Fragment(
            rollout=rollout,
            episodes=episodes,
            weights_version=self.version,
            runner_index=runner_index,
            obs_increment=self.envs.pop_obs_increment(),
            agent_returns=agent_returns,
            first_of_runner=first,
        )

    def _agent_policy(self, module_id: str, module: RunnerModule) -> Any:
        """What PettingZoo agents act with: a recurrent module's `AgentStatePolicy` (its
        agents' states are kept in their episodes), else the module's policy."""
        if not (module.recurrent and self.spec.multi_agent):
            return module.policy
        policy = self._agent_policies.get(module_id)
        if policy is None:
            action_space = module.module_spec.action_space
            policy = self._agent_policies[module_id] = AgentStatePolicy(
                module.numpy_copy, action_space
            )
        return policy

    def _agent_value(self, module_id: str, module: RunnerModule) -> Any:
        """A module's value function for PettingZoo agents' bootstraps: a recurrent one
        steps from what each agent carried (``AgentStatePolicy.value``)."""
        if not module.recurrent:
            return module.value
        return self._agent_policy(module_id, module).value

    def _state_carrier(self, module: RunnerModule) -> StateCarrier | None:
        if not module.recurrent:
            return None
        if self._carrier is None:
            self._carrier = StateCarrier(module.numpy_copy, self.spec.num_envs, self.action_space)
        return self._carrier

    def get_state(self) -> dict[str, Any]:
        """The observation statistics (empty without normalisation)."""
        return self.envs.get_state()

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.envs.set_state(state)

    def get_runner_state(self) -> dict[str, Any]:
        """What the runner's next fragments depend on besides weights and observation
        statistics, for an exact resume: each module's action-sampling generator, and
        (a gymnasium env) where the envs are (``EnvRunner.get_env_state``)."""
        get_env_state = getattr(self.envs, "get_env_state", None)
        state = {
            "generators": {m: module.generator_state() for m, module in self.modules.items()},
            "envs": get_env_state() if get_env_state is not None else None,
            "fragments_sampled": self.fragments_sampled,
        }
        if self._carrier is not None:
            state["recurrent_state"] = self._carrier.get_state()
        return state

    def set_runner_state(self, state: Mapping[str, Any]) -> str | None:
        """Restore `get_runner_state`'s value into a runner built alike. Returns None when
        it samples on exactly as the saved one would, else why not (its envs were reset:
        their state was not plain data, or the saved state is of other envs or modules)."""
        generators = state.get("generators") or {}
        missing = sorted(set(self.modules) - set(generators))
        why = f"no saved generators for modules {missing}" if missing else None
        try:
            for module_id, module in self.modules.items():
                if module_id in generators:
                    module.set_generator_state(generators[module_id])
            envs = state.get("envs")
            set_env_state = getattr(self.envs, "set_env_state", None)
            if envs is None or set_env_state is None:
                return why or "the envs' state is not saved for this kind of env"
            not_exact = set_env_state(envs)
        except (ValueError, TypeError, KeyError) as exc:
            return f"the saved state does not fit this runner ({exc})"
        not_exact = self._restore_carrier(state, not_exact)
        if not_exact is None:
            # Its envs continue: nothing to flush (a replay buffer's streams go on).
            self.fragments_sampled = int(state.get("fragments_sampled", 0))
        return why or not_exact

    def _restore_carrier(self, state: Mapping[str, Any], not_exact: str | None) -> str | None:
        """A recurrent module's carried state: restored where its envs continue, else
        started afresh with their new episodes."""
        module = next(iter(self.modules.values()))
        carrier = self._state_carrier(module) if isinstance(self.envs, EnvRunner) else None
        if carrier is None:
            return not_exact
        saved = state.get("recurrent_state")
        if not_exact is None and saved is not None:
            try:
                carrier.set_state(saved)
                return None
            except (ValueError, KeyError) as exc:
                not_exact = f"the saved recurrent state does not fit ({exc})"
        carrier.reset()
        if hasattr(self.envs, "set_env_state") and not_exact is None:
            not_exact = "the saved state holds no recurrent state"
        return not_exact

    def close(self) -> None:
        self.envs.close()


def make_sampler(
    spec: EnvRunnerSpec,
    index: int,
    env_source: Any = None,
    framework_setup: Callable[[], None] | None = None,
) -> Sampler:
    """The sampler of runner ``index`` of ``spec`` (see `Sampler`)."""
    return Sampler(spec, index, env_source, framework_setup)
