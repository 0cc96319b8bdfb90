"""The PettingZoo adapter of the sampling engine (``learnerkit.rollouts._sampling``): step
several PettingZoo parallel envs, each agent acting with the module its policy mapping
names, into per-module trajectories.

PettingZoo agents come and go: an agent that terminates or is truncated leaves
``env.agents`` and acts no more, one may join mid-episode, and the episode ends when no
agent is left. So nothing here is a ``[T, N]`` grid with padding: each agent's steps in a
fragment form one *segment* (``multi_agent_rollout.Segment``), stored row after row, and a
segment ends where the agent's episode ended (terminated: no bootstrap; truncated: the
value of its final observation) or where the fragment ended (the value of its current
observation, as ``Rollout`` does for the last step). Each step the live agents' observations
are grouped by module: one normalisation, policy call and output check per module, by the
engine, as the gymnasium adapter does for its N envs.

A recurrent module acts through an ``AgentStatePolicy``: each agent carries its state (and
its previous action and reward) in its episode's record from step to step, starts from the
initial state when its episode starts (the env is reset, or it joins), and every row
records what it acted with (``state_in``, ``prev_actions``, ``prev_rewards``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import numpy as np
from gymnasium import spaces

from learnerkit._batch import Columns
from learnerkit._columns import RECURRENT_INPUTS
from learnerkit.errors import BatchError, ConfigError
from learnerkit.fields import _is_integer
from learnerkit.rollouts._multi_agent_rollout import (
    MultiAgentRollout,
    Segment,
    columns_of_segments,
)
from learnerkit.rollouts._recurrent import AgentState, AgentStatePolicy
from learnerkit.rollouts._sampling import (
    POLICY_COLUMNS,
    EpisodeLog,
    ObsNormalizers,
    Policy,
    ValueFn,
    check_policy_outputs,
    env_actions,
    stored_obs_dtype,
)

__all__ = ["MultiAgentEnvRunner"]


@attrs.define
class _Episode:
    """What one env's running episode holds between steps."""

    eps_id: int
    obs: dict[str, np.ndarray] = attrs.Factory(dict)  # raw, of the agents about to act
    modules: dict[str, str] = attrs.Factory(dict)  # agent: module id, for this episode
    returns: dict[str, float] = attrs.Factory(dict)
    length: int = 0
    segments: dict[str, Segment] = attrs.Factory(dict)  # open segments, by agent
    states: dict[str, AgentState] = attrs.Factory(dict)  # a recurrent module's, by agent


class MultiAgentEnvRunner:
    """Steps ``num_envs`` PettingZoo parallel envs (made by ``make_env``) together.

    Each step, the observations of every live agent in every env are grouped by module and
    each module's policy runs once on its group. The agent-to-module mapping is evaluated
    when an agent first acts in an episode and holds until the episode ends. With
    ``normalize_obs``, each module has its own observation statistics (``ObsNormalizers``),
    counted over the observations of the agents it acts for.
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
        normalize_obs: bool = False,
    ) -> None:
        if not (_is_integer(num_envs) and num_envs >= 1):
            raise ConfigError(
                f"MultiAgentEnvRunner: num_envs must be an integer >= 1, got {num_envs!r}"
            )
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
        self._log = EpisodeLog()
        self.normalizers = ObsNormalizers(
            normalize_obs,
            by_module=True,
            owner=f"MultiAgentEnvRunner of {env_name} (build it with normalize_obs=True)",
        )
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

    def remove_module(self, module_id: str) -> None:
        """Forget a module: the running episodes that act with it end here, unreported, and
        its observation statistics go."""
        if self.module_in_use(module_id):
            self.restart_episodes()
        self.normalizers.drop(module_id)

    # Sampling ---------------------------------------------------------------------------
    def sample(
        self, policies: Mapping[str, Policy], value_fns: Mapping[str, ValueFn], num_steps: int
    ) -> MultiAgentRollout:
        """Run ``num_steps`` steps of every env; ``policies`` and ``value_fns`` by module id
        (a module no agent is mapped to is never called)."""
        finished, open_segments = self.step_segments(policies, num_steps)
        by_module: dict[str, list[Segment]] = {}
        for segment in finished + open_segments:
            by_module.setdefault(segment.module_id, []).append(segment)
        modules = {
            module_id: columns_of_segments(
                segments, value_fns[module_id], f"{self.env_name}: module {module_id!r}"
            )
            for module_id, segments in by_module.items()
        }
        return MultiAgentRollout(modules=modules, num_steps=num_steps, num_envs=self.num_envs)

    sample_modules = sample  # the engine's adapter interface

    def step_segments(
        self, policies: Mapping[str, Policy], num_steps: int
    ) -> tuple[list[Segment], list[Segment]]:
        """Run ``num_steps`` steps of every env: the segments that ended (in the order they
        ended) and those cut by the fragment's end. Every row holds ``new_obs``, the
        observation its agent reached (its final one where its episode ended), as its module
        sees it."""
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
                segment.bootstrap = agent in episode.obs
                segment.bootstrap_state = episode.states.get(agent)
                open_segments.append(segment)
            episode.segments = {}
        if self.normalizers.enabled:
            self._normalize_new_obs(finished + open_segments)
        return finished, open_segments

    def _reset(self, i: int) -> None:
        seed = None if self._seed is None or self._resets >= self.num_envs else self._seed + i
        self._resets += 1
        obs, _ = self._envs[i].reset(seed=seed)
        self._episodes[i] = _Episode(eps_id=self._next_eps_id, obs=self._observations(obs))
        self._next_eps_id += 1

    def _observations(self, obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        # uint8 frames stay uint8 unless normalised (``stored_obs_dtype``), as single-agent.
        enabled = self.normalizers.enabled
        return {
            a: np.asarray(o, dtype=stored_obs_dtype(np.asarray(o).dtype, enabled))
            for a, o in obs.items()
        }

    def _act(self, policies: Mapping[str, Policy]) -> list[dict[str, dict[str, Any]]]:
        """Each live agent's observation as its module saw it and its policy outputs (one
        policy call per module), by env and agent."""
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
            raw = np.stack([self._episodes[i].obs[agent] for i, agent in who])
            obs = self.normalizers.observe(module_id, raw) if self.normalizers.enabled else raw
            policy = policies[module_id]
            names = POLICY_COLUMNS
            if isinstance(policy, AgentStatePolicy):
                carried = [self._episodes[i].states.get(agent, policy.initial) for i, agent in who]
                out = policy(obs, carried)
                names = (*POLICY_COLUMNS, *RECURRENT_INPUTS, Columns.STATE_OUT)
            else:
                out = policy(obs)
            where = f"{self.env_name}: module {module_id!r}"
            space = self.action_spaces.get(who[0][1])
            check_policy_outputs(out, len(who), space, where, "agents")
            for row, (i, agent) in enumerate(who):
                acting[i][agent] = {Columns.OBS: obs[row]}
                acting[i][agent].update((name, out[name][row]) for name in names)
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
            state_out = out.pop(Columns.STATE_OUT, None)  # a recurrent module's
            if state_out is not None:
                reward = float(rewards.get(agent, 0.0))
                episode.states[agent] = AgentState(state_out, out[Columns.ACTIONS], reward)
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
                    **out,
                    # The raw observation reached, normalised with the fragment's end.
                    Columns.NEXT_OBS: obs.get(agent, episode.obs[agent]),
                    Columns.REWARDS: float(rewards.get(agent, 0.0)),
                    Columns.TERMINATEDS: terminated,
                    Columns.TRUNCATEDS: truncated,
                    Columns.T: episode.length,
                }
            )
            if terminated or truncated:
                # A truncated agent's future is bootstrapped from its final observation
                # (PettingZoo returns it with the step that truncated it).
                segment.bootstrap = truncated
                # Should it come back, from a new start; its value from where it ended.
                segment.bootstrap_state = episode.states.pop(agent, None)
                finished.append(episode.segments.pop(agent))
        episode.length += 1
        episode.obs = {agent: obs[agent] for agent in env.agents if agent in obs}
        if not env.agents:
            returns = dict(episode.returns)
            self._log.add(float(sum(returns.values())), episode.length, returns)
            for segment in episode.segments.values():  # an env that ended without saying so
                segment.bootstrap = False
                segment.rows[-1][Columns.TERMINATEDS] = True
                finished.append(segment)
            self._episodes[i] = None

    def _env_action(self, agent: str, action: Any) -> Any:
        space = self.action_spaces.get(agent)
        action = env_actions(action, space)
        return int(action) if isinstance(space, spaces.Discrete) else action

    def _normalize_new_obs(self, segments: list[Segment]) -> None:
        """Every row's ``new_obs`` as its module sees it: the next row's observation inside
        a segment, its last row's normalised now (not counted: as the gymnasium adapter
        does with its final and last observations)."""
        last_rows: dict[str, list[dict[str, Any]]] = {}
        for segment in segments:
            for row, following in itertools.pairwise(segment.rows):
                row[Columns.NEXT_OBS] = following[Columns.OBS]
            last_rows.setdefault(segment.module_id, []).append(segment.rows[-1])
        for module_id, rows in last_rows.items():
            raw = np.stack([row[Columns.NEXT_OBS] for row in rows])
            for row, new_obs in zip(rows, self.normalizers.normalize(module_id, raw), strict=True):
                row[Columns.NEXT_OBS] = new_obs

    # Statistics and state ---------------------------------------------------------------
    def pop_episode_stats(self) -> tuple[list[tuple[float, int]], list[dict[str, float]]]:
        """(team return, length) of each episode completed since the last call, and each
        one's return per agent (the team return is their sum)."""
        return self._log.pop()

    pop_episodes = pop_episode_stats  # the engine's adapter interface

    def pop_obs_increment(self) -> dict[str, Any]:
        """Each module's statistics of the raw observations counted since the last call
        (empty without normalisation), by module id."""
        return self.normalizers.pop_increments()

    def get_state(self) -> dict[str, np.ndarray]:
        """The modules' observation statistics, ``"<module_id>/obs_mean"``... (empty
        without normalisation)."""
        return self.normalizers.get_state()

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.normalizers.set_state(state)

    def close(self) -> None:
        for env in self._envs:
            env.close()
