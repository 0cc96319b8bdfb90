"""``num_env_runners=0``: sampling in the training process, through the `EnvRunners`
interface (``learnerkit.rollouts._contract``) the loops use for Ray actors too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from learnerkit._specs import ModuleSpec
from learnerkit.rollouts._contract import (
    EnvRunnerSpec,
    Fragment,
    ModuleWeights,
    Weights,
    spec_with_module,
)
from learnerkit.rollouts._pettingzoo_envs import PolicyMapping
from learnerkit.rollouts._sampler import make_sampler

__all__ = ["LocalEnvRunners"]


class LocalEnvRunners:
    """``num_env_runners=0``: one sampler in this process, sampling when asked.

    Its observation statistics are the shared ones: no merging is needed.
    """

    num_runners = 1

    def __init__(self, spec: EnvRunnerSpec) -> None:
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

    def get_runner_states(self) -> list[dict[str, Any]]:
        return [self.sampler.get_runner_state()]

    def set_runner_states(self, states: list[Mapping[str, Any] | None]) -> list[str | None]:
        if not states or states[0] is None:
            return ["no state saved for runner 0"]
        return [self.sampler.set_runner_state(states[0])]

    def metrics(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self.sampler.close()
