"""Multi-agent sampling: step several PettingZoo parallel envs, each agent acting with the
module its policy mapping names, into per-module trajectories.

PettingZoo agents come and go: an agent that terminates or is truncated leaves
``env.agents`` and acts no more, one may join mid-episode, and the episode ends when no
agent is left. So nothing here is a ``[T, N]`` grid with padding: each agent's steps in a
fragment form one *segment*, stored row after row, and a segment ends where the agent's
episode ended (terminated: no bootstrap; truncated: the value of its final observation) or
where the fragment ended (the value of its current observation, as ``Rollout`` does for the
last step). ``MultiAgentRollout.to_multi_agent_batch`` runs GAE over each segment with
``compute_gae`` and returns a ``MultiAgentBatch`` keyed by module id.

Observations are not normalised here (no running statistics per module): modules see the
env's own observations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import numpy as np
from gymnasium import spaces

from learnerkit.batch import Columns
from learnerkit.errors import BatchError, ConfigError
from learnerkit.rollouts.gymnasium_sampling import POLICY_COLUMNS, Policy, ValueFn
from learnerkit.rollouts.multi_agent_rollout import (
    MultiAgentRollout,
    Segment,
    columns_of_segments,
)

__all__ = ["MultiAgentEnvRunner"]


@attrs.define
class _Episode:
    """What one env's running episode holds between steps."""

    eps_id: int
    obs: dict[str, np.ndarray] = attrs.Factory(dict)  # of the agents about to act
    modules: dict[str, str] = attrs.Factory(dict)  # agent: module id, for this episode
    returns: dict[str, float] = attrs.Factory(dict)
    length: int = 0
    segments: dict[str, Segment] = attrs.Factory(dict)  # open segments, by agent


class MultiAgentEnvRunner:
    """Steps ``num_envs`` PettingZoo parallel envs (made by ``make_env``) together.

    Each step, the observations of every live agent in every env are grouped by module and
    each module's policy runs once on its group. The agent-to-module mapping is evaluated
    when an agent first acts in an episode and holds until the episode ends.
    """

    def __init__(
        self,
        make_env: Callable[[], Any],
        *,
        num_envs: int,
        mapping: Callable[[str], str],
        seed: int | None = None,
        env_name: str = "env",
        episode_id_offset: int = 0,
    ) -> None:
        if num_envs < 1:
            raise ConfigError(f"MultiAgentEnvRunner: num_envs must be >= 1, got {num_envs}")
        self.env_name = env_name
        self._envs = [make_env() for _ in range(num_envs)]
        self.num_envs = num_envs
        first = self._envs[0]
        self.possible_agents = list(first.possible_agents)
        self._agent_index = {agent: i for i, agent in enumerate(self.possible_agents)}
        self.observation_spaces = {a: first.observation_space(a) for a in self.possible_agents}
        self.action_spaces = {a: first.action_space(a) for a in self.possible_agents}
        self._mapping = mapping
        self._seed = seed
        self._next_eps_id = episode_id_offset
        self._episodes: list[_Episode | None] = [None] * num_envs  # None: reset before acting
        self._episode_stats: list[tuple[float, int]] = []
        self._agent_returns: list[dict[str, float]] = []
        self.num_env_steps = 0
        self._resets = 0

    # Modules and mapping ------------------------------------------------------------------
    def set_mapping(self, mapping: Callable[[str], str]) -> None:
        """A new mapping, for episodes that start from now on: the running ones are
        abandoned (their steps so far were bootstrapped at the fragment's end, as any
        fragment's are), so no episode mixes two mappings."""
        self._mapping = mapping
        self.restart_episodes()

    def restart_episodes(self) -> None:
        """Reset every env before the next step; the running episodes are not reported."""
        self._episodes = [None] * self.num_envs

    def module_in_use(self, module_id: str) -> bool:
        return any(e is not None and module_id in e.modules.values() for e in self._episodes)

    # Sampling ---------------------------------------------------------------------------
    def sample(
        self, policies: Mapping[str, Policy], value_fns: Mapping[str, ValueFn], num_steps: int
    ) -> MultiAgentRollout:
        """Run ``num_steps`` steps of every env; ``policies`` and ``value_fns`` by module id
        (a module no agent is mapped to is never called)."""
        finished, open_segments = self.step_segments(policies, num_steps)
        return self._rollout(finished, open_segments, value_fns, num_steps)

    def step_segments(
        self, policies: Mapping[str, Policy], num_steps: int
    ) -> tuple[list[Segment], list[Segment]]:
        """Run ``num_steps`` steps of every env: the segments that ended (in the order they
        ended) and those cut by the fragment's end. Every row holds ``new_obs``, the
        observation its agent reached (its final one where its episode ended)."""
        if num_steps < 1:
            raise ConfigError(
                f"MultiAgentEnvRunner.sample: num_steps must be >= 1, got {num_steps}"
            )
        finished: list[Segment] = []
        for _ in range(num_steps):
            for i in range(self.num_envs):
                if self._episodes[i] is None:
                    self._reset(i)
            acting = self._act(policies)
            for i, env in enumerate(self._envs):
                self._step(i, env, acting[i], finished)
            self.num_env_steps += self.num_envs
        # Still running: cut at the fragment's end, bootstrapped from the current obs.
        open_segments = []
        for episode in self._episodes:
            if episode is None:
                continue
            for agent, segment in episode.segments.items():
                segment.bootstrap_obs = episode.obs.get(agent)
                open_segments.append(segment)
            episode.segments = {}
        return finished, open_segments

    def _reset(self, i: int) -> None:
        seed = None if self._seed is None or self._resets >= self.num_envs else self._seed + i
        self._resets += 1
        obs, _ = self._envs[i].reset(seed=seed)
        self._episodes[i] = _Episode(eps_id=self._next_eps_id, obs=self._observations(obs))
        self._next_eps_id += 1

    def _observations(self, obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {a: np.asarray(o, dtype=np.float32) for a, o in obs.items()}

    def _act(self, policies: Mapping[str, Policy]) -> list[dict[str, dict[str, Any]]]:
        """Each live agent's policy outputs (one policy call per module), by env and agent."""
        queries: dict[str, list[tuple[int, str]]] = {}
        for i, (env, episode) in enumerate(zip(self._envs, self._episodes, strict=True)):
            for agent in env.agents:
                if agent not in episode.obs:
                    raise BatchError(
                        f"{self.env_name}: agent {agent!r} is in env.agents but got no "
                        "observation from reset/step; a ParallelEnv must return one for every "
                        "live agent"
                    )
                if agent not in episode.modules:
                    episode.modules[agent] = self._module_for(agent, policies)
                queries.setdefault(episode.modules[agent], []).append((i, agent))
        acting: list[dict[str, dict[str, Any]]] = [{} for _ in self._envs]
        for module_id, who in queries.items():
            obs = np.stack([self._episodes[i].obs[agent] for i, agent in who])
            out = policies[module_id](obs)
            self._check_outputs(module_id, out, len(who))
            for row, (i, agent) in enumerate(who):
                acting[i][agent] = {name: out[name][row] for name in POLICY_COLUMNS}
        return acting

    def _module_for(self, agent: str, policies: Mapping[str, Policy]) -> str:
        module_id = self._mapping(agent)
        if module_id not in policies:
            raise ConfigError(
                f"{self.env_name}: the policy mapping sent agent {agent!r} to module "
                f"{module_id!r}, which this runner does not have (it has {sorted(policies)}): "
                "add the module first (add_module on the env runners and the learner group), "
                "or map the agent to one of those"
            )
        return module_id

    def _check_outputs(self, module_id: str, out: Mapping[str, Any], rows: int) -> None:
        missing = [name for name in POLICY_COLUMNS if name not in out]
        if missing:
            raise BatchError(
                f"{self.env_name}: module {module_id!r}'s policy returned {sorted(out)}; it must "
                f"also return {missing}"
            )
        for name in POLICY_COLUMNS:
            if np.shape(out[name])[:1] != (rows,):
                raise BatchError(
                    f"{self.env_name}: module {module_id!r}'s {name!r} has shape "
                    f"{np.shape(out[name])}; expected one row per agent, ({rows}, ...)"
                )

    def _step(
        self, i: int, env: Any, acting: dict[str, dict[str, Any]], finished: list[Segment]
    ) -> None:
        episode = self._episodes[i]
        actions = {
            agent: self._env_action(agent, out[Columns.ACTIONS]) for agent, out in acting.items()
        }
        obs, rewards, terminations, truncations, _ = env.step(actions)
        obs = self._observations(obs)
        for agent, reward in rewards.items():
            episode.returns[agent] = episode.returns.get(agent, 0.0) + float(reward)
        for agent, out in acting.items():
            segment = episode.segments.get(agent)
            if segment is None:
                segment = episode.segments[agent] = Segment(
                    episode.modules[agent],
                    self._agent_index.get(agent, -1),
                    episode.eps_id,
                    env_index=i,
                    agent=agent,
                )
            terminated = bool(terminations.get(agent, False))
            truncated = bool(truncations.get(agent, False)) and not terminated
            segment.rows.append(
                {
                    Columns.OBS: episode.obs[agent],
                    # Read by the sequence mode only (multi_agent_sequences); GAE uses values.
                    Columns.NEXT_OBS: obs.get(agent, episode.obs[agent]),
                    **out,
                    Columns.REWARDS: float(rewards.get(agent, 0.0)),
                    Columns.TERMINATEDS: terminated,
                    Columns.TRUNCATEDS: truncated,
                    Columns.T: episode.length,
                }
            )
            if terminated or truncated:
                # A truncated agent's future is bootstrapped from its final observation
                # (PettingZoo returns it with the step that truncated it).
                segment.bootstrap_obs = obs.get(agent, episode.obs[agent]) if truncated else None
                finished.append(episode.segments.pop(agent))
        episode.length += 1
        episode.obs = {agent: obs[agent] for agent in env.agents if agent in obs}
        if not env.agents:
            self._episode_stats.append((float(sum(episode.returns.values())), episode.length))
            self._agent_returns.append(dict(episode.returns))
            for segment in episode.segments.values():  # an env that ended without saying so
                segment.bootstrap_obs = None
                segment.rows[-1][Columns.TERMINATEDS] = True
                finished.append(segment)
            self._episodes[i] = None

    def _env_action(self, agent: str, action: Any) -> Any:
        space = self.action_spaces.get(agent)
        if isinstance(space, spaces.Box):
            return np.clip(action, space.low, space.high)  # stored unclipped, as EnvRunner
        return int(action) if isinstance(space, spaces.Discrete) else action

    def _rollout(
        self,
        finished: list[Segment],
        open_segments: list[Segment],
        value_fns: Mapping[str, ValueFn],
        num_steps: int,
    ) -> MultiAgentRollout:
        """Flatten segments into rows per module, with one value call per module for the
        bootstraps (truncated and fragment-end segments)."""
        by_module: dict[str, list[Segment]] = {}
        for segment in finished + open_segments:
            by_module.setdefault(segment.module_id, []).append(segment)
        modules = {}
        for module_id, segments in by_module.items():
            boot = [s for s in segments if s.bootstrap_obs is not None]
            values = (
                np.asarray(value_fns[module_id](np.stack([s.bootstrap_obs for s in boot])))
                if boot
                else np.zeros(0)
            )
            value_of = {id(s): float(v) for s, v in zip(boot, values, strict=True)}
            modules[module_id] = columns_of_segments(segments, value_of)
        return MultiAgentRollout(modules=modules, num_steps=num_steps, num_envs=self.num_envs)

    # Statistics -------------------------------------------------------------------------
    def pop_episode_stats(self) -> tuple[list[tuple[float, int]], list[dict[str, float]]]:
        """(team return, length) of each episode completed since the last call, and each
        one's return per agent (the team return is their sum)."""
        stats, returns = self._episode_stats, self._agent_returns
        self._episode_stats, self._agent_returns = [], []
        return stats, returns

    def close(self) -> None:
        for env in self._envs:
            env.close()
