"""What the training loops see of sampling: `EnvRunnerSpec` (what a runner is built from),
`Fragment` (what it returns), the train batches made of fragments, and `EnvRunners`, the
interface a loop samples through.

Two implementations meet `EnvRunners`: ``learnerkit.rollouts._local_env_runners.
LocalEnvRunners`` samples in this process (``num_env_runners=0``), and
``learnerkit._distributed.ray_env_runners.RayEnvRunners`` runs that many Ray actors. A loop
either gathers one fragment from every runner with the current weights (`sample`,
on-policy) or takes whatever fragments have finished while the runners keep sampling
(`poll`, asynchronous). What one runner does is ``learnerkit.rollouts._sampler.Sampler``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, Protocol

import attrs
import numpy as np

from learnerkit._batch import MultiAgentBatch, SampleBatch
from learnerkit._columns import ACTOR_CRITIC_OUTPUTS, DEFAULT_MODULE_ID
from learnerkit._specs import ModuleSpec
from learnerkit.errors import ConfigError
from learnerkit.rollouts._atari import AtariSettings
from learnerkit.rollouts._multi_agent_rollout import MultiAgentRollout
from learnerkit.rollouts._multi_agent_sequences import MultiAgentSequences
from learnerkit.rollouts._pettingzoo_envs import PolicyMapping, is_pettingzoo
from learnerkit.rollouts._rollout import Rollout

__all__ = [
    "EnvRunnerSpec",
    "EnvRunners",
    "Fragment",
    "ModuleWeights",
    "Weights",
    "on_policy_batch",
    "sequence_batch",
    "spec_with_module",
]

Weights = Mapping[str, np.ndarray]
ModuleWeights = Mapping[str, Weights]
"""Weights by module id, as ``LearnerGroup.get_weights()`` returns them."""


@attrs.frozen(kw_only=True)
class EnvRunnerSpec:
    """Everything a runner needs to build itself, anywhere (the driver or a Ray actor)."""

    env_id: str
    """A gymnasium env id, or ``pettingzoo:MODULE[:FACTORY]`` for a PettingZoo parallel env
    (see ``learnerkit.rollouts._pettingzoo_envs``)."""
    framework: str
    module_spec: ModuleSpec | Mapping[str, ModuleSpec]
    """The module, or (multi-agent) the modules by id that the policy mapping names."""
    num_envs: int
    rollout_fragment_length: int
    normalize_observations: bool = False
    seed: int = 0
    env_kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    atari: AtariSettings | None = None
    """A gymnasium env's Atari preprocessing (``learnerkit.rollouts._atari``; the loops set
    it for ``ALE/`` ids), None for none."""
    policy_mapping: PolicyMapping = "shared"
    """Multi-agent only: which module acts for each agent."""
    sequences: bool = False
    """Multi-agent only: fragments of whole sequences of ``rollout_fragment_length`` steps
    per agent (`MultiAgentSequences`, for V-trace: the asynchronous loop) instead of GAE
    segments (`MultiAgentRollout`, the on-policy loop)."""
    policy_outputs: tuple[str, ...] = attrs.field(default=ACTOR_CRITIC_OUTPUTS, converter=tuple)
    """What the policy must return for each observation and the fragments keep (the loop's
    ``LoopInfo.policy_outputs``): ``actions`` at least; with ``vf_preds`` the runners also
    bootstrap values (`Rollout.next_values`). Multi-agent runners record all four
    actor-critic columns."""

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
    obs_increment: Mapping[str, Any] = attrs.field(factory=dict)
    """Statistics of the raw observations seen (empty without normalisation), by module id
    for a PettingZoo env (``ObsNormalizers.pop_increments``)."""
    agent_returns: list[dict[str, float]] = attrs.field(factory=list)
    """Multi-agent: each ended episode's return per agent, in the order of ``episodes``."""
    first_of_runner: bool = False
    """The first fragment of a runner just built (at the start, or restarted after a
    failure): its envs were reset, so nothing of an earlier fragment of ``runner_index``
    continues into it (a replay buffer flushes that runner's streams first)."""

    @property
    def env_steps(self) -> int:
        return self.rollout.num_steps * self.rollout.num_envs


def on_policy_batch(
    fragments: list[Fragment], *, gamma: float, lambda_: float, sequence_length: int | None = None
) -> SampleBatch | MultiAgentBatch:
    """The fragments as one train batch with GAE ``advantages`` and ``value_targets``: a
    `SampleBatch` for a gymnasium env, a `MultiAgentBatch` by module id for a PettingZoo
    env (a module that sampled nothing is left out). With ``sequence_length`` (a recurrent
    module's), rows in whole sequences of that many steps (``Rollout.to_sample_batch``;
    PettingZoo agents' segments padded, with ``Columns.LOSS_MASK``)."""
    rollouts = [f.rollout for f in fragments]
    if isinstance(rollouts[0], MultiAgentRollout):
        rollout = MultiAgentRollout.concat(rollouts)
        return rollout.to_multi_agent_batch(
            gamma=gamma, lambda_=lambda_, sequence_length=sequence_length
        )
    return Rollout.concat(rollouts).to_sample_batch(
        gamma=gamma, lambda_=lambda_, sequence_length=sequence_length
    )


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

    def get_runner_states(self) -> list[dict[str, Any] | None]:
        """Each runner's generators and envs (``Sampler.get_runner_state``), by index, for
        checkpoints; None for a runner that could not answer (it died)."""

    def set_runner_states(self, states: list[Mapping[str, Any] | None]) -> list[str | None]:
        """Restore `get_runner_states`'s value before sampling, by runner index; returns,
        per runner, None where it samples on exactly as the saved one would, else why
        not."""

    def metrics(self) -> dict[str, Any]:
        """Counters to report: restarts, errors."""

    def close(self) -> None: ...


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
