"""What a training run adds for a PettingZoo env: the modules a policy mapping names, the
callback context that changes modules between iterations, per-agent returns, and what a
checkpoint records so that resume and evaluation rebuild the same modules.

Checkpoints hold no pickles: each module is recorded as the agent whose spaces it has, its
model config, whether it trains, and its module class as ``module:qualname``.
"""

from __future__ import annotations

import importlib
from collections import deque
from collections.abc import Callable, Collection, Mapping
from typing import Any

import attrs
import numpy as np

from learnerkit._learner_group import LearnerGroup
from learnerkit._specs import ModuleSpec
from learnerkit.errors import ConfigError
from learnerkit.rollouts._contract import EnvRunners, Weights
from learnerkit.rollouts._pettingzoo_envs import (
    PolicyMapping,
    make_parallel_env,
    module_spaces,
    policy_mapping_fn,
)


def agent_spaces(env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> dict[str, tuple]:
    """Each possible agent's (observation space, action space)."""
    env = make_parallel_env(env_id, env_kwargs)
    try:
        return {a: (env.observation_space(a), env.action_space(a)) for a in env.possible_agents}
    finally:
        env.close()


def mapped_module_specs(
    env_id: str, mapping: PolicyMapping, model_config: Mapping[str, Any]
) -> dict[str, ModuleSpec]:
    """A default module per module id the mapping names over the env's agents."""
    env = make_parallel_env(env_id)
    try:
        grouped = module_spaces(env_id, env, policy_mapping_fn(mapping))
    finally:
        env.close()
    return {
        module_id: ModuleSpec(s.observation_space, s.action_space, model_config=model_config)
        for module_id, s in grouped.items()
    }


def multi_agent_modules(
    env_id: str,
    mapping: PolicyMapping,
    model_config: Mapping[str, Any],
    saved_state: Mapping[str, Any],
) -> tuple[dict[str, ModuleSpec], PolicyMapping, dict[str, Any]]:
    """The modules a run builds, its policy mapping, and the modules a resumed run's
    checkpoint describes (``saved_state``: its trainer state; empty for a new run). A
    resumed run continues with the checkpoint's mapping and modules (self-play snapshots
    included), unless its mapping was a callable, which is passed again."""
    described = dict(saved_state.get("modules", {}))
    if saved_state.get("policy_mapping") is not None:
        mapping = saved_state["policy_mapping"]
    specs = mapped_module_specs(env_id, mapping, model_config)
    specs.update(rebuild_module_specs(env_id, described))
    return specs, mapping, described


def module_state(
    env_id: str, group: LearnerGroup, runners: EnvRunners, agent_returns: AgentReturns
) -> dict[str, Any]:
    """What a multi-agent checkpoint adds to the trainer state: the current mapping and
    modules (they may have changed since the run began), and each agent's returns."""
    return {
        "policy_mapping": saved_mapping(runners.spec.policy_mapping),
        "modules": describe_modules(
            group.spec.module_specs,
            agent_spaces(env_id),
            group.modules_to_train,
            group.spec.module_hyperparameters,
        ),
        "agent_returns": agent_returns.get_state(),
    }


def saved_mapping(mapping: PolicyMapping) -> str | dict[str, str] | None:
    """The mapping as JSON (None for a callable, which cannot be saved)."""
    if callable(mapping):
        return None
    return mapping if isinstance(mapping, str) else dict(mapping)


def describe_modules(
    specs: Mapping[str, ModuleSpec],
    spaces_by_agent: Mapping[str, tuple],
    trained: Collection[str],
    hyperparameters: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Each module as JSON: an agent with its spaces, model config, class, training, and
    its own hyperparameters (overrides of the run's)."""
    hyperparameters = hyperparameters or {}
    out = {}
    for module_id, spec in specs.items():
        agent = next(
            (
                a
                for a, (obs, act) in spaces_by_agent.items()
                if obs == spec.observation_space and act == spec.action_space
            ),
            None,
        )
        cls = spec.module_class
        out[module_id] = {
            "agent": agent,
            "model_config": dict(spec.model_config or {}),
            "module_class": _import_path(cls),
            "train": module_id in trained,
            "hyperparameters": _as_json(hyperparameters.get(module_id, {})),
        }
    return out


def _import_path(cls: type | str | None) -> str | None:
    if cls is None or isinstance(cls, str):
        return cls
    return f"{cls.__module__}:{cls.__qualname__}"


def _as_json(values: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameter values as JSON takes them (schedules' tuples as lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value.item() if isinstance(value, np.generic) else value

    return {k: plain(v) for k, v in values.items()}


def rebuild_module_specs(
    env_id: str, described: Mapping[str, Mapping[str, Any]]
) -> dict[str, ModuleSpec]:
    """The module specs ``describe_modules`` recorded, for resume and evaluation."""
    spaces_by_agent = agent_spaces(env_id)
    specs = {}
    for module_id, d in described.items():
        if d["agent"] not in spaces_by_agent:
            raise ConfigError(
                f"the checkpoint's module {module_id!r} has the spaces of no agent of env "
                f"{env_id!r}; it cannot be rebuilt here"
            )
        cls = None
        if d.get("module_class"):
            module, _, qualname = d["module_class"].partition(":")
            cls = importlib.import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
        obs, act = spaces_by_agent[d["agent"]]
        specs[module_id] = ModuleSpec(obs, act, module_class=cls, model_config=d["model_config"])
    return specs


class AgentReturns:
    """Each agent's returns over its last ``window`` episodes."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.returns: dict[str, deque[float]] = {}

    def add(self, episodes: list[dict[str, float]]) -> None:
        for per_agent in episodes:
            for agent, value in per_agent.items():
                self.returns.setdefault(agent, deque(maxlen=self.window)).append(value)

    def means(self) -> dict[str, float]:
        return {a: float(np.mean(r)) for a, r in sorted(self.returns.items()) if r}

    def get_state(self) -> dict[str, list[float]]:
        return {a: list(r) for a, r in self.returns.items()}

    def set_state(self, state: Mapping[str, list[float]]) -> None:
        self.returns = {a: deque(r, maxlen=self.window) for a, r in state.items()}


@attrs.define(kw_only=True)
class ModuleControl:
    """The ``IterationContext`` a trainer hands ``on_iteration``; see
    ``learnerkit.loops.contract.IterationContext`` for what each method promises."""

    iteration: int
    timesteps: int
    metrics: Mapping[str, Any]
    group: LearnerGroup
    runners: EnvRunners | None
    on_change: Callable[[], None] = lambda: None
    """Told after every change (the trainer records the modules for checkpoints)."""

    def _runners(self) -> EnvRunners:
        if self.runners is None:
            raise ConfigError("this run has no env runners: modules change only while sampling")
        return self.runners

    def add_module(
        self,
        module_id: str,
        module_spec: ModuleSpec | None = None,
        *,
        copy_of: str | None = None,
        weights: Weights | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        train: bool = True,
    ) -> None:
        if (module_spec is None) == (copy_of is None):
            raise ConfigError(
                f"add_module({module_id!r}): give either module_spec or copy_of (the id of a "
                "module to snapshot), not both or neither"
            )
        if copy_of is not None:
            specs = self.group.spec.module_specs
            if copy_of not in specs:
                raise ConfigError(
                    f"add_module({module_id!r}, copy_of={copy_of!r}): no such module (the "
                    f"learners have {sorted(specs)})"
                )
            module_spec = specs[copy_of]
            weights = self.group.get_weights()[copy_of]
        runners = self._runners()
        self.group.add_module(module_id, module_spec, hyperparameters=hyperparameters, train=train)
        if weights is not None:
            self.group.set_weights({module_id: weights})  # only that module's
        runners.add_module(module_id, module_spec, self.group.get_weights()[module_id])
        self.on_change()

    def remove_module(self, module_id: str) -> None:
        self._runners().remove_module(module_id)
        self.group.remove_module(module_id)
        self.on_change()

    def set_policy_mapping(self, mapping: PolicyMapping) -> None:
        self._runners().set_policy_mapping(mapping)
        self.on_change()

    def set_modules_to_train(self, module_ids: Collection[str] | None) -> None:
        self.group.set_modules_to_train(module_ids)
        self.on_change()
