"""Env runners as the training loops see them: a set of samplers, each with its own copies
of the modules, that return `Fragment`s.

Two implementations share one interface (`EnvRunners`): `LocalEnvRunners` samples in this
process (``num_env_runners=0``), and `learnerkit.distributed.env_runners.RayEnvRunners`
runs that many Ray actors. A loop either gathers one fragment from every runner with the
current weights (`sample`, on-policy) or takes whatever fragments have finished while the
runners keep sampling (`poll`, asynchronous). What one runner does (a gymnasium vector env,
or PettingZoo parallel envs with a policy mapping) is a sampler
(``learnerkit.rollouts.samplers``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
import numpy as np

from learnerkit.batch import MultiAgentBatch, SampleBatch
from learnerkit.columns import DEFAULT_MODULE_ID
from learnerkit.errors import ConfigError
from learnerkit.rollouts.acting import NumpyActorCritic, default_module_layout
from learnerkit.rollouts.env_runner import Policy, ValueFn
from learnerkit.rollouts.multi_agent import MultiAgentRollout
from learnerkit.rollouts.multi_agent_sequences import MultiAgentSequences
from learnerkit.rollouts.pettingzoo_envs import PolicyMapping, is_pettingzoo
from learnerkit.rollouts.rollout import Rollout
from learnerkit.specs import ModuleSpec

Weights = Mapping[str, np.ndarray]
ModuleWeights = Mapping[str, Weights]
"""Weights by module id, as ``LearnerGroup.get_weights()`` returns them."""


@attrs.frozen(kw_only=True)
class EnvRunnerSpec:
    """Everything a runner needs to build itself, anywhere (the driver or a Ray actor)."""

    env_id: str
    """A gymnasium env id, or ``pettingzoo:MODULE[:FACTORY]`` for a PettingZoo parallel env
    (see ``learnerkit.rollouts.pettingzoo_envs``)."""
    framework: str
    module_spec: ModuleSpec | Mapping[str, ModuleSpec]
    """The module, or (multi-agent) the modules by id that the policy mapping names."""
    num_envs: int
    rollout_fragment_length: int
    normalize_observations: bool = False
    seed: int = 0
    env_kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    policy_mapping: PolicyMapping = "shared"
    """Multi-agent only: which module acts for each agent."""
    sequences: bool = False
    """Multi-agent only: fragments of whole sequences of ``rollout_fragment_length`` steps
    per agent (`MultiAgentSequences`, for V-trace: the asynchronous loop) instead of GAE
    segments (`MultiAgentRollout`, the on-policy loop)."""

    def __attrs_post_init__(self) -> None:
        if self.multi_agent and self.normalize_observations:
            raise ConfigError(
                f"normalize_observations is not supported for the PettingZoo env "
                f"{self.env_id!r} (no per-module statistics): set it to False, or normalise "
                "in the env"
            )

    @property
    def multi_agent(self) -> bool:
        return is_pettingzoo(self.env_id)

    @property
    def module_specs(self) -> dict[str, ModuleSpec]:
        if isinstance(self.module_spec, ModuleSpec):
            return {DEFAULT_MODULE_ID: self.module_spec}
        return dict(self.module_spec)

    def runner_seed(self, index: int) -> int:
        """Runner ``index``'s environments are seeded apart from every other runner's."""
        return self.seed + 10_000 * index

    def sampling_seed(self, index: int, module_id: str) -> list[int]:
        """The seed of runner ``index``'s action sampling with ``module_id``: apart from its
        environments' seeds (``runner_seed``) and from its other modules'."""
        # The trailing 1 names this use of the seed; other streams derived from the same
        # runner seed would take other constants.
        return [self.runner_seed(index), zlib.crc32(module_id.encode()), 1]


@attrs.frozen(kw_only=True, eq=False)
class Fragment:
    """One rollout sampled by one runner, with what the loop needs to know about it."""

    rollout: Rollout | MultiAgentRollout | MultiAgentSequences
    """A `Rollout` (gymnasium env), or for a PettingZoo env a `MultiAgentRollout` (GAE
    segments) or `MultiAgentSequences` (whole sequences, ``EnvRunnerSpec.sequences``)."""
    episodes: list[tuple[float, int]]
    """(return, length) of each episode that ended in this fragment; multi-agent, the team
    return (the sum over agents) and the env steps."""
    weights_version: int
    """The version of the weights the runner acted with (the learner updates they had)."""
    runner_index: int
    obs_increment: Mapping[str, np.ndarray] = attrs.field(factory=dict)
    """Statistics of the raw observations seen (empty without normalisation)."""
    agent_returns: list[dict[str, float]] = attrs.field(factory=list)
    """Multi-agent: each ended episode's return per agent, in the order of ``episodes``."""

    @property
    def env_steps(self) -> int:
        return self.rollout.num_steps * self.rollout.num_envs


def on_policy_batch(
    fragments: list[Fragment], *, gamma: float, lambda_: float
) -> SampleBatch | MultiAgentBatch:
    """The fragments as one train batch with GAE ``advantages`` and ``value_targets``: a
    `SampleBatch` for a gymnasium env, a `MultiAgentBatch` by module id for a PettingZoo
    env (a module that sampled nothing is left out)."""
    rollouts = [f.rollout for f in fragments]
    if isinstance(rollouts[0], MultiAgentRollout):
        rollout = MultiAgentRollout.concat(rollouts)
        return rollout.to_multi_agent_batch(gamma=gamma, lambda_=lambda_)
    return Rollout.concat(rollouts).to_sample_batch(gamma=gamma, lambda_=lambda_)


def sequence_batch(fragments: list[Fragment]) -> SampleBatch | MultiAgentBatch:
    """The fragments as one train batch of whole sequences of ``rollout_fragment_length``
    rows (``Learner.update(..., sequence_length=T)``), without GAE: a `SampleBatch` (one
    sequence per env) for a gymnasium env, a `MultiAgentBatch` of the sequences the
    fragments completed for a PettingZoo env (possibly empty: none completed yet)."""
    rollouts = [f.rollout for f in fragments]
    if isinstance(rollouts[0], MultiAgentSequences):
        return MultiAgentSequences.concat(rollouts).to_sequences()
    if isinstance(rollouts[0], MultiAgentRollout):
        raise ConfigError(
            "these multi-agent fragments hold GAE segments, not whole sequences: build the "
            "env runners with EnvRunnerSpec(sequences=True) to train on sequences"
        )
    return SampleBatch.concat([r.to_sequences() for r in rollouts])


class EnvRunners(Protocol):
    """What a training loop uses to sample."""

    num_runners: int
    spec: EnvRunnerSpec
    """The spec runners are built from, following `add_module`, `remove_module` and
    `set_policy_mapping` (a restarted runner is built from it)."""

    def set_weights(self, weights: ModuleWeights, version: int) -> None:
        """New module weights by module id (and the merged observation statistics) for
        every runner; a runner's modules not in ``weights`` keep theirs."""

    def add_module(
        self, module_id: str, module_spec: ModuleSpec, weights: Weights | None = None
    ) -> None:
        """Multi-agent: a new module on every runner (with ``weights``, else its initial
        ones), for the policy mapping to name."""

    def remove_module(self, module_id: str) -> None:
        """Multi-agent: drop a module no agent is mapped to any more."""

    def set_policy_mapping(self, mapping: PolicyMapping) -> None:
        """Multi-agent: a new mapping; the running episodes are abandoned so that no episode
        mixes two mappings."""

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
    """A runner's own copy of one module: a numpy policy and value function over it.

    The default modules (a spec without ``module_class``) act through a numpy copy of the
    weights last given (``learnerkit.rollouts.acting``), drawing actions from
    ``np.random.default_rng(sampling_seed)`` (``seed`` when not given): a runner that gets
    weights before it samples never imports its framework. Until then, and for any other
    module, the module is built in its framework from ``seed`` (as the learner builds it);
    ``framework_setup`` runs just before that import (a Ray runner limits its threads)."""

    def __init__(
        self,
        framework: str,
        module_spec: ModuleSpec,
        seed: int,
        *,
        sampling_seed: int | Sequence[int] | None = None,
        framework_setup: Callable[[], None] | None = None,
    ) -> None:
        self.framework, self.module_spec, self.seed = framework, module_spec, seed
        self.default_module = module_spec.module_class is None
        self._rng = np.random.default_rng(seed if sampling_seed is None else sampling_seed)
        self._framework_setup = framework_setup
        self.backend: Any = None
        self.module: Any = None  # the framework module, once built
        self._weights: Weights | None = None  # a default module's weights, acted with
        self._acting: tuple[Policy, ValueFn] | None = None
        self.version = 0

    @classmethod
    def from_spec(
        cls,
        spec: EnvRunnerSpec,
        module_id: str = DEFAULT_MODULE_ID,
        *,
        sampling_seed: int | Sequence[int] | None = None,
        framework_setup: Callable[[], None] | None = None,
    ) -> RunnerModule:
        return cls(
            spec.framework,
            spec.module_specs[module_id],
            spec.seed,
            sampling_seed=sampling_seed,
            framework_setup=framework_setup,
        )

    @property
    def policy(self) -> Policy:
        return self._bound()[0]

    @property
    def value(self) -> ValueFn:
        return self._bound()[1]

    def _bound(self) -> tuple[Policy, ValueFn]:
        if self._acting is None:
            self._build()
            self._bind_module()
        return self._acting

    def _build(self) -> None:
        if self.module is None:
            if self._framework_setup is not None:
                self._framework_setup()
            from learnerkit.backends import make_backend

            self.backend = make_backend(self.framework)
            self.module = self.backend.build_module(self.module_spec, self.seed)

    def _bind_module(self) -> None:
        if self.default_module:
            weights = self.backend.get_module_state(self.module)
            acting = NumpyActorCritic.from_weights(
                weights, self.module_spec, self.framework, self._rng
            )
            self._acting = (acting.forward_exploration, acting.value)
        else:
            from learnerkit.backends import policy_fn, value_fn

            self._acting = (
                policy_fn(self.backend, self.module),
                value_fn(self.backend, self.module),
            )

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """The names and shapes weights for this module must have."""
        if self.default_module:
            return default_module_layout(self.module_spec, self.framework)
        return {name: tuple(np.shape(w)) for name, w in self.get_weights().items()}

    def get_weights(self) -> dict[str, np.ndarray]:
        if self._weights is not None:
            return dict(self._weights)
        self._build()
        return self.backend.get_module_state(self.module)

    def set_weights(self, weights: Weights, version: int) -> None:
        if self.default_module:
            acting = NumpyActorCritic.from_weights(
                weights, self.module_spec, self.framework, self._rng
            )
            self._weights, self.module = dict(weights), None
            self._acting = (acting.forward_exploration, acting.value)
        else:
            self._build()
            self.backend.set_module_state(self.module, weights, "the env runner's module")
            self._bind_module()
        self.version = version


def spec_with_module(
    spec: EnvRunnerSpec, module_id: str, module_spec: ModuleSpec | None
) -> EnvRunnerSpec:
    """``spec`` with a module added (``module_spec``) or removed (None); a ConfigError for a
    gymnasium env (one module) or an id that is already there, or not."""
    if not spec.multi_agent:
        raise ConfigError(
            f"env runners of the gymnasium env {spec.env_id!r} hold one module; modules are "
            "added and removed only for PettingZoo envs ('pettingzoo:...')"
        )
    specs = spec.module_specs
    if module_spec is not None and module_id in specs:
        raise ConfigError(
            f"the env runners already have module {module_id!r}; remove it first, or pick "
            "another id"
        )
    if module_spec is None and module_id not in specs:
        raise ConfigError(
            f"the env runners have no module {module_id!r} (they have {sorted(specs)})"
        )
    if module_spec is None:
        del specs[module_id]
    else:
        specs[module_id] = module_spec
    return attrs.evolve(spec, module_spec=specs)


class LocalEnvRunners:
    """``num_env_runners=0``: one sampler in this process, sampling when asked.

    Its observation statistics are the shared ones: no merging is needed.
    """

    num_runners = 1

    def __init__(self, spec: EnvRunnerSpec) -> None:
        from learnerkit.rollouts.samplers import make_sampler

        self.spec = spec
        self.sampler = make_sampler(spec, 0)
        self.observation_space = getattr(self.sampler, "observation_space", None)
        self.action_space = getattr(self.sampler, "action_space", None)

    def set_weights(self, weights: ModuleWeights, version: int) -> None:
        self.sampler.set_weights(weights, version)

    def add_module(
        self, module_id: str, module_spec: ModuleSpec, weights: Weights | None = None
    ) -> None:
        self.spec = spec_with_module(self.spec, module_id, module_spec)
        self.sampler.add_module(module_id, module_spec, weights)

    def remove_module(self, module_id: str) -> None:
        self.spec = spec_with_module(self.spec, module_id, None)
        self.sampler.remove_module(module_id)

    def set_policy_mapping(self, mapping: PolicyMapping) -> None:
        self.sampler.set_policy_mapping(mapping)
        self.spec = attrs.evolve(self.spec, policy_mapping=mapping)

    def sample(self) -> list[Fragment]:
        fragment = self.sampler.sample(0)
        return [attrs.evolve(fragment, obs_increment={})]  # its statistics are the shared ones

    def poll(self, timeout: float) -> list[Fragment]:
        return self.sample()

    def get_state(self) -> dict[str, Any]:
        return self.sampler.get_state()

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.sampler.set_state(state)

    def metrics(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self.sampler.close()
