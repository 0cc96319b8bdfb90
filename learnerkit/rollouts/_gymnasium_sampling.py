"""The gymnasium adapter of the sampling engine (``learnerkit.rollouts._sampling``): step a
gymnasium vector env of N copies with one module's numpy policy into time-major arrays.

`EnvRunner.sample` returns a `Rollout` (`learnerkit.rollouts._rollout`) of `[T, N, ...]`
arrays, preallocated, with one policy call per step for all N envs and no Python loop over
them (the engine's normalisation, output check and clipping run on the whole batch).
Episodes end inside fragments; the final observation of an ended episode is kept
(gymnasium's same-step autoreset puts it in `infos["final_obs"]`) as the step's `next_obs`,
so that the value of a time-limited state is bootstrapped from that state, not from the
next episode's start. Seen from the engine, each env's column is one track of rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from learnerkit._batch import Columns
from learnerkit._columns import DEFAULT_MODULE_ID, RECURRENT_INPUTS
from learnerkit.errors import ConfigError
from learnerkit.fields import _is_integer
from learnerkit.rollouts import _env_state as env_state
from learnerkit.rollouts._atari import AtariSettings
from learnerkit.rollouts._env_ids import register_env_id, vector_env_options
from learnerkit.rollouts._recurrent import StateCarrier
from learnerkit.rollouts._rollout import Rollout
from learnerkit.rollouts._sampling import (
    POLICY_COLUMNS,
    EpisodeLog,
    ObsNormalizers,
    Policy,
    ValueFn,
    bootstrap_values,
    check_policy_outputs,
    env_actions,
    load_obs_normalizer_state,
    next_values,
    obs_normalizer_state,
    stored_obs_dtype,
)

__all__ = [
    "POLICY_COLUMNS",
    "EnvRunner",
    "Policy",
    "Rollout",
    "ValueFn",
    "load_obs_normalizer_state",
    "obs_normalizer_state",
]

_WHERE = "EnvRunner.sample"


class EnvRunner:
    """Steps `num_envs` copies of a gymnasium environment in one process.

    Observations must be a Box (cast to float32; uint8 ones stay uint8 unless normalised,
    ``stored_obs_dtype``); actions Discrete or Box. Box actions are
    clipped to the space's bounds when stepping the environment, but the unclipped action is
    stored, because that is the one whose log-probability the policy recorded.

    With `normalize_obs`, the module's `ObsNormalizer` counts every raw observation handed to
    the policy (final observations of ended episodes are normalised but not counted, as in
    Stable-Baselines3's VecNormalize); the policy, `value_fn` and the stored rollout all see
    normalised observations. Save `get_state()` with the model: it is part of the policy.

    With `atari` (``learnerkit.rollouts._atari.AtariSettings``; the loops pass it for
    ``ALE/`` ids) each env is preprocessed. With `clip_rewards` (default: the ``atari``
    setting's, else off) the rollout holds the sign of each reward, while the episode
    returns reported are the env's own.
    """

    def __init__(
        self,
        env_id: str,
        *,
        num_envs: int = 8,
        seed: int | None = None,
        normalize_obs: bool = False,
        env_kwargs: Mapping[str, Any] | None = None,
        atari: AtariSettings | None = None,
        clip_rewards: bool | None = None,
    ) -> None:
        if not (_is_integer(num_envs) and num_envs >= 1):
            raise ConfigError(f"EnvRunner: num_envs must be an integer >= 1, got {num_envs!r}")
        register_env_id(env_id)
        try:
            env = gymnasium.make_vec(
                env_id,
                num_envs=num_envs,
                vectorization_mode="sync",
                # copy=False: every observation is copied into the rollout's buffer anyway.
                vector_kwargs={
                    "autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP,
                    "copy": False,
                },
                **vector_env_options(atari),
                **dict(env_kwargs or {}),
            )
        except (gymnasium.error.UnregisteredEnv, gymnasium.error.DeprecatedEnv) as e:
            raise ConfigError(
                f"EnvRunner: cannot make environment {env_id!r}: {e} "
                "(check the id against gymnasium.pprint_registry(), and import the package "
                "that registers it before building the runner)"
            ) from e
        self._env = env
        self.num_envs = num_envs
        self.observation_space = env.single_observation_space
        self.action_space = env.single_action_space
        if not isinstance(self.observation_space, spaces.Box):
            env.close()
            raise ConfigError(
                f"EnvRunner: environment {env_id!r} has observation space "
                f"{self.observation_space}; only Box observations are supported (flatten "
                "others with gymnasium.wrappers.FlattenObservation)"
            )
        if not isinstance(self.action_space, (spaces.Discrete, spaces.Box)):
            env.close()
            raise ConfigError(
                f"EnvRunner: environment {env_id!r} has action space {self.action_space}; "
                "only Discrete and Box actions are supported"
            )
        if clip_rewards is None:
            clip_rewards = atari is not None and atari.clip_rewards
        self._clip_rewards = clip_rewards
        self._obs_shape = tuple(self.observation_space.shape)
        self._obs_dtype = stored_obs_dtype(self.observation_space.dtype, normalize_obs)
        self._normalizers = ObsNormalizers(
            normalize_obs, by_module=False, owner="EnvRunner (build it with normalize_obs=True)"
        )
        self._normalizer = self._normalizers.ensure(DEFAULT_MODULE_ID, self._obs_shape)
        raw_obs, _ = env.reset(seed=seed)
        self._raw_obs = np.array(raw_obs, dtype=self._obs_dtype)
        self._episode_return = np.zeros(num_envs, dtype=np.float64)
        self._episode_length = np.zeros(num_envs, dtype=np.int64)
        self._episodes = EpisodeLog()
        self.num_env_steps = 0

    # Sampling ---------------------------------------------------------------------------
    def sample(
        self,
        policy: Policy,
        value_fn: ValueFn | None,
        num_steps: int,
        outputs: tuple[str, ...] = POLICY_COLUMNS,
        carrier: StateCarrier | None = None,
    ) -> Rollout:
        """Run `num_steps` vector steps and return them as a `Rollout`.

        `policy(obs[N, ...])` returns at least the `outputs` for the N observations (other
        keys are ignored): by default actions, action_logp, vf_preds and action_dist_inputs.
        With vf_preds among them, `value_fn` is called once, on the final observations of
        truncated episodes followed by the N observations after the last step; without, it
        is not called (and may be None), and the rollout has no `next_values`.

        A recurrent module acts through its `StateCarrier` (``carrier``; ``policy`` and
        ``value_fn`` are then its ``policy`` and ``bootstrap_values``): it is told of every
        step's ends, and the rollout's ``extra`` holds the inputs it records per row.
        """
        if num_steps < 1:
            raise ConfigError(f"EnvRunner.sample: num_steps must be >= 1, got {num_steps}")
        steps, n = num_steps, self.num_envs
        recorded = outputs if carrier is None else (*outputs, *carrier.columns)
        if carrier is not None:
            carrier.start_fragment()
        obs = np.empty((steps, n, *self._obs_shape), dtype=self._obs_dtype)
        rewards = np.empty((steps, n), dtype=np.float32)
        terminateds = np.empty((steps, n), dtype=bool)
        truncateds = np.empty((steps, n), dtype=bool)
        buffers: dict[str, np.ndarray] = {}
        # (step, env), final observation and whether it was truncated, of each ended episode.
        ended_at: list[tuple[int, int]] = []
        final_obs: list[np.ndarray] = []
        was_truncated: list[bool] = []
        normalizer, action_space = self._normalizer, self.action_space
        raw_obs = self._raw_obs
        steps_done = 0
        try:
            for t in range(steps):
                if normalizer is not None:
                    normalizer.observe(raw_obs, out=obs[t])
                else:
                    obs[t] = raw_obs
                out = policy(obs[t])
                if t == 0:
                    # Checked once: later steps write into buffers of these shapes.
                    check_policy_outputs(out, n, action_space, _WHERE, "environments", recorded)
                    buffers = self._allocate(out, steps, recorded)
                for name, buffer in buffers.items():
                    buffer[t] = out[name]
                actions = env_actions(buffers[Columns.ACTIONS][t], action_space)
                raw_obs, reward, terminated, truncated, infos = self._env.step(actions)
                rewards[t] = np.sign(reward) if self._clip_rewards else reward
                terminateds[t] = terminated
                truncateds[t] = truncated
                self._episode_return += reward
                self._episode_length += 1
                done = terminated | truncated
                if carrier is not None:
                    carrier.after_step(buffers[Columns.ACTIONS][t], reward, terminated, done)
                if done.any():
                    self._end_episodes(
                        t, done, terminated, infos, ended_at, final_obs, was_truncated
                    )
                steps_done += 1
        finally:
            # Kept even if the policy raised mid-fragment, so the next sample starts from the
            # environments' real state. A copy: the vector env reuses its buffer (copy=False).
            self._raw_obs = np.array(raw_obs, dtype=self._obs_dtype)
            self.num_env_steps += steps_done * n
        next_obs = np.empty_like(obs)
        next_obs[:-1] = obs[1:]
        next_obs[-1] = self.normalize(self._raw_obs)
        if ended_at:
            steps_, envs_ = zip(*ended_at, strict=True)
            next_obs[list(steps_), list(envs_)] = self.normalize(np.stack(final_obs))
        truncated_at = [at for at, trunc in zip(ended_at, was_truncated, strict=True) if trunc]
        vf_preds = buffers.get(Columns.VF_PREDS)
        extra = {} if carrier is None else {name: buffers[name] for name in carrier.columns}
        return Rollout(
            obs=obs,
            next_obs=next_obs,
            actions=buffers[Columns.ACTIONS],
            rewards=rewards,
            terminateds=terminateds,
            truncateds=truncateds,
            vf_preds=vf_preds,
            action_logp=buffers.get(Columns.ACTION_LOGP),
            action_dist_inputs=buffers.get(Columns.ACTION_DIST_INPUTS),
            next_values=None
            if vf_preds is None
            else self._next_values(value_fn, vf_preds, terminateds, truncated_at, next_obs),
            extra=extra,
        )

    def sample_modules(
        self,
        policies: Mapping[str, Policy],
        value_fns: Mapping[str, ValueFn | None],
        num_steps: int,
        outputs: tuple[str, ...] = POLICY_COLUMNS,
    ) -> Rollout:
        """`sample` with the one module of ``policies`` (the engine's adapter interface)."""
        ((module_id, policy),) = policies.items()
        return self.sample(policy, value_fns[module_id], num_steps, outputs)

    def _end_episodes(
        self,
        t: int,
        done: np.ndarray,
        terminated: np.ndarray,
        infos: Mapping[str, Any],
        ended_at: list[tuple[int, int]],
        final_obs: list[np.ndarray],
        was_truncated: list[bool],
    ) -> None:
        """Record the episodes that ended at step t and their final observations (the
        truncated ones are bootstrapped from them)."""
        for i in np.flatnonzero(done):
            self._episodes.add(float(self._episode_return[i]), int(self._episode_length[i]))
            ended_at.append((t, int(i)))
            # Copied: an env may reuse (and its reset overwrite) this array.
            final_obs.append(np.array(infos["final_obs"][i], dtype=self._obs_dtype))
            # A step both terminated and truncated has no future: it counts as terminated.
            was_truncated.append(not terminated[i])
        self._episode_return[done] = 0.0
        self._episode_length[done] = 0

    def _allocate(
        self, out: Mapping[str, Any], steps: int, outputs: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        """`[T, N, ...]` buffers shaped after the policy's first (checked) output."""
        discrete = isinstance(self.action_space, spaces.Discrete)
        buffers = {}
        for name in outputs:
            dtype = np.float32
            if name == Columns.ACTIONS:
                dtype = np.int64 if discrete else np.float32
            elif name in RECURRENT_INPUTS:
                dtype = np.asarray(out[name]).dtype
            buffers[name] = np.empty((steps, *np.shape(out[name])), dtype=dtype)
        return buffers

    def _next_values(
        self,
        value_fn: ValueFn,
        vf_preds: np.ndarray,
        terminateds: np.ndarray,
        truncated_at: list[tuple[int, int]],
        next_obs: np.ndarray,
    ) -> np.ndarray:
        """The engine's `next_values`: each env's column is a track, cut by the fragment's
        end. One `value_fn` call, on the final observations of truncated episodes and the
        observations after the last step."""
        k, last = len(truncated_at), len(vf_preds) - 1
        steps, envs = (np.array(x) for x in zip(*truncated_at, strict=True)) if k else ((), ())
        inputs = np.concatenate([next_obs[steps, envs], next_obs[-1]]) if k else next_obs[-1]
        values = bootstrap_values(value_fn, inputs, _WHERE)
        following = np.empty_like(vf_preds)
        following[:-1] = vf_preds[1:]
        if not k:
            return next_values(following, terminateds, last, values)
        # An env truncated at the last step is in both parts of the inputs (its last-row
        # input is that final observation too): its row takes the truncated part's value.
        rest = np.ones(self.num_envs, dtype=bool)
        rest[envs[steps == last]] = False
        (rest_envs,) = np.nonzero(rest)
        at = (
            np.concatenate([steps, np.full(len(rest_envs), last)]),
            np.concatenate([envs, rest_envs]),
        )
        return next_values(
            following, terminateds, at, np.concatenate([values[:k], values[k:][rest]])
        )

    # Statistics and state ---------------------------------------------------------------
    def pop_episode_stats(self) -> list[tuple[float, int]]:
        """(return, length) of each episode completed since the last call, in raw reward."""
        return self._episodes.pop()[0]

    def pop_episodes(self) -> tuple[list[tuple[float, int]], list[dict[str, float]]]:
        """`pop_episode_stats`, and no per-agent returns (the adapter interface)."""
        return self._episodes.pop()

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """Observations as the policy sees them (normalised if enabled; float32, or uint8
        ``stored_obs_dtype``), without
        updating the statistics; for evaluation."""
        return self._normalizers.normalize(DEFAULT_MODULE_ID, obs)

    def pop_obs_increment(self) -> dict[str, np.ndarray]:
        """Statistics of the raw observations counted since the last call (empty without
        normalisation): what a driver merges into the statistics all runners share."""
        return self._normalizers.pop_increments()

    def get_state(self) -> dict[str, np.ndarray]:
        """The observation normaliser's statistics (empty without normalisation)."""
        return self._normalizers.get_state()

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore statistics saved by `get_state`."""
        self._normalizers.set_state(state)

    def get_env_state(self) -> dict[str, Any]:
        """Where the envs are, for an exact resume (``env_state``): every env captured
        whole, mid-episode, when it holds plain data only (``"envs"``), else the state of
        the generator each env's resets draw from (``"env_generators"``, with ``"why"``);
        the observations the next step acts on, and the running episodes' returns and
        lengths."""
        envs = getattr(self._env, "envs", None) or []
        state: dict[str, Any] = {
            "num_envs": self.num_envs,
            "num_env_steps": self.num_env_steps,
            "raw_obs": self._raw_obs.copy(),
            "episode_return": self._episode_return.copy(),
            "episode_length": self._episode_length.copy(),
        }
        try:
            state["envs"] = [env_state.capture(env) for env in envs] if envs else None
        except env_state.NotCapturable as exc:
            state["envs"], state["why"] = None, str(exc)
        if state["envs"] is None:
            state["env_generators"] = [env_state.generator_state(env) for env in envs]
        return state

    def set_env_state(self, state: Mapping[str, Any]) -> str | None:
        """Restore `get_env_state`'s value into envs built alike (same env, ``num_envs``).
        Captured envs continue their episodes exactly; otherwise their generators are
        restored and they are reset, starting new episodes (returns None, or why not
        exact). A ValueError, with nothing changed, if the state is not of such envs."""
        if int(state.get("num_envs", -1)) != self.num_envs:
            raise ValueError(
                f"the saved env state is of {state.get('num_envs')} envs, this runner has "
                f"{self.num_envs}"
            )
        envs = getattr(self._env, "envs", None) or []
        if state.get("envs") is not None and len(envs) == len(state["envs"]):
            raw_obs = np.asarray(state["raw_obs"], dtype=self._obs_dtype)
            if raw_obs.shape != self._raw_obs.shape:
                raise ValueError(
                    f"the saved observations have shape {raw_obs.shape}, this runner's "
                    f"{self._raw_obs.shape}"
                )
            for env, layers in zip(envs, state["envs"], strict=True):
                env_state.check(env, layers)
            for env, layers in zip(envs, state["envs"], strict=True):
                env_state.restore(env, layers)
            self._raw_obs = raw_obs.copy()
            self._episode_return = np.array(state["episode_return"], dtype=np.float64)
            self._episode_length = np.array(state["episode_length"], dtype=np.int64)
            self.num_env_steps = int(state["num_env_steps"])
            return None
        generators = state.get("env_generators") or []
        if len(generators) == len(envs):
            for env, generator in zip(envs, generators, strict=True):
                env_state.set_generator_state(env, generator)
        raw_obs, _ = self._env.reset()
        self._raw_obs = np.array(raw_obs, dtype=self._obs_dtype)
        self._episode_return[:] = 0.0
        self._episode_length[:] = 0
        self.num_env_steps = int(state.get("num_env_steps", 0))
        return state.get("why") or "the saved state holds no envs"

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> EnvRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
