"""PettingZoo parallel environments by name, and which module acts for which agent.

An env string ``pettingzoo:MODULE:FACTORY`` names a function that returns a
``pettingzoo.ParallelEnv`` (``pettingzoo:my_pkg.envs:make_game``); ``pettingzoo:MODULE``
follows PettingZoo's own convention, a module exposing ``parallel_env()``
(``pettingzoo:pettingzoo.mpe.simple_spread_v3``). Keyword arguments (``env_kwargs``) go to
the factory.

A policy mapping says which module acts for an agent: ``"shared"`` (every agent acts with
one module, ``default_policy``), ``"per_agent"`` (each agent with a module named after it),
a dict of agent to module id, or, in the programmatic API, a callable ``agent -> module
id``. It is evaluated when an agent enters an episode and holds for that episode, so a
callable that draws an opponent at random plays a league.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from gymnasium import spaces

from learnerkit._columns import DEFAULT_MODULE_ID
from learnerkit.errors import ConfigError

__all__ = [
    "PETTINGZOO_PREFIX",
    "POLICY_MAPPINGS",
    "AgentSpaces",
    "PolicyMapping",
    "is_pettingzoo",
    "make_parallel_env",
    "policy_mapping_fn",
    "module_spaces",
    "parallel_env_factory",
]

PETTINGZOO_PREFIX = "pettingzoo:"
POLICY_MAPPINGS = ("shared", "per_agent")
PolicyMapping = str | Mapping[str, str] | Callable[[str], str]
"""``"shared"``, ``"per_agent"``, a dict of agent to module id, or ``agent -> module id``."""

_FACTORY_HELP = (
    "name a PettingZoo env as 'pettingzoo:MODULE:FACTORY' (a function returning a "
    "pettingzoo.ParallelEnv) or 'pettingzoo:MODULE' (a module exposing parallel_env())"
)


def is_pettingzoo(env_id: str | None) -> bool:
    """Whether ``env_id`` names a PettingZoo env (multi-agent sampling) rather than a
    gymnasium one."""
    return env_id is not None and env_id.startswith(PETTINGZOO_PREFIX)


def parallel_env_factory(env_id: str) -> Callable[..., Any]:
    """The function ``env_id`` names; a ConfigError naming the env string and the fix when
    it names nothing importable."""
    if not is_pettingzoo(env_id):
        raise ConfigError(f"{env_id!r} is not a PettingZoo env string: {_FACTORY_HELP}")
    target = env_id[len(PETTINGZOO_PREFIX) :]
    module_name, _, attr = target.partition(":")
    attr = attr or "parallel_env"
    if not module_name:
        raise ConfigError(f"env {env_id!r} names no module: {_FACTORY_HELP}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"env {env_id!r}: cannot import module {module_name!r} ({exc}); install it, or put "
            "it on the Python path (PYTHONPATH=. for a file in the current directory; Ray "
            f"env runners inherit it). ({_FACTORY_HELP})"
        ) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(
            f"env {env_id!r}: module {module_name!r} has no callable {attr!r}; {_FACTORY_HELP}"
        )
    return factory


def make_parallel_env(
    env_id: str,
    env_kwargs: Mapping[str, Any] | None = None,
    *,
    factory: Callable[..., Any] | None = None,
) -> Any:
    """A fresh ``pettingzoo.ParallelEnv`` from ``env_id`` (or the ``factory`` already
    resolved from it, as Ray actors get it); a ConfigError when the factory returns an AEC
    env or anything else."""
    from pettingzoo import AECEnv, ParallelEnv

    factory = factory or parallel_env_factory(env_id)
    env = factory(**dict(env_kwargs or {}))
    if isinstance(env, AECEnv):
        raise ConfigError(
            f"env {env_id!r} is a PettingZoo AEC (turn-based) env; learnerkit steps parallel "
            "envs: return pettingzoo.utils.conversions.aec_to_parallel(env) from the factory, "
            "or name the module's parallel_env()"
        )
    if not isinstance(env, ParallelEnv):
        raise ConfigError(
            f"env {env_id!r} made a {type(env).__name__}, not a pettingzoo.ParallelEnv; "
            f"{_FACTORY_HELP} (a gymnasium env id needs no 'pettingzoo:' prefix)"
        )
    return env


def policy_mapping_fn(mapping: PolicyMapping) -> Callable[[str], str]:
    """The function ``agent -> module id`` that a policy-mapping setting stands for."""
    if callable(mapping):
        return mapping
    if isinstance(mapping, Mapping):
        return _ByTable(dict(mapping))
    if mapping == "shared":
        return _Shared()
    if mapping == "per_agent":
        return _PerAgent()
    raise ConfigError(
        f"policy mapping {mapping!r} is not one of {list(POLICY_MAPPINGS)}, a dict of agent to "
        "module id, or a callable agent -> module id"
    )


# Classes rather than lambdas: they pickle to Ray actors and print readably in errors.
@attrs.frozen
class _Shared:
    def __call__(self, agent: str) -> str:
        return DEFAULT_MODULE_ID


@attrs.frozen
class _PerAgent:
    def __call__(self, agent: str) -> str:
        return str(agent)


@attrs.frozen
class _ByTable:
    table: dict[str, str]

    def __call__(self, agent: str) -> str:
        try:
            return self.table[agent]
        except KeyError:
            raise ConfigError(
                f"policy mapping {self.table} has no module for agent {agent!r}: add the agent "
                "to the mapping (or use 'shared' / 'per_agent')"
            ) from None


@attrs.frozen
class AgentSpaces:
    """The spaces of the agents one module acts for (they must all be the same)."""

    observation_space: Any
    action_space: Any
    agents: tuple[str, ...]


def check_agent_spaces(env_id: str, agent: str, observation_space: Any, action_space: Any) -> None:
    """The spaces the default modules and the runner support: Box observations, Discrete
    or Box actions."""
    if not isinstance(observation_space, spaces.Box):
        raise ConfigError(
            f"env {env_id!r}: agent {agent!r} has observation space {observation_space}; only "
            "Box observations are supported (flatten others in the env, e.g. with "
            "gymnasium.spaces.flatten)"
        )
    if not isinstance(action_space, (spaces.Discrete, spaces.Box)):
        raise ConfigError(
            f"env {env_id!r}: agent {agent!r} has action space {action_space}; only Discrete "
            "and Box actions are supported"
        )


def module_spaces(env_id: str, env: Any, mapping: Callable[[str], str]) -> dict[str, AgentSpaces]:
    """Module id to the spaces of the agents mapped to it, over ``env.possible_agents``; a
    ConfigError when two agents with different spaces share a module."""
    grouped: dict[str, AgentSpaces] = {}
    for agent in env.possible_agents:
        module_id = mapping(agent)
        obs_space, act_space = env.observation_space(agent), env.action_space(agent)
        check_agent_spaces(env_id, agent, obs_space, act_space)
        seen = grouped.get(module_id)
        if seen is None:
            grouped[module_id] = AgentSpaces(obs_space, act_space, (agent,))
            continue
        if seen.observation_space != obs_space or seen.action_space != act_space:
            raise ConfigError(
                f"env {env_id!r}: agents {seen.agents[0]!r} and {agent!r} are both mapped to "
                f"module {module_id!r}, but have different spaces ({seen.observation_space}, "
                f"{seen.action_space} vs {obs_space}, {act_space}): map them to different "
                "modules (policy mapping 'per_agent', or a dict of agent to module id)"
            )
        grouped[module_id] = attrs.evolve(seen, agents=(*seen.agents, agent))
    if not grouped:
        raise ConfigError(f"env {env_id!r} has no possible_agents")
    return grouped
