"""Sampling: step a gymnasium vector environment with a numpy policy into time-major arrays.

`EnvRunner.sample` returns a `Rollout` (`learnerkit.rollouts.rollout`) of `[T, N, ...]`
arrays. Episodes end inside fragments; the final observation of an ended episode is kept
(gymnasium's same-step autoreset puts it in `infos["final_obs"]`) as the step's `next_obs`,
so that the value of a time-limited state is bootstrapped from that state, not from the
next episode's start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from learnerkit.batch import Columns
from learnerkit.errors import BatchError, ConfigError
from learnerkit.rollouts.postprocessing import RunningMeanStd
from learnerkit.rollouts.rollout import Rollout

__all__ = [
    "POLICY_COLUMNS",
    "EnvRunner",
    "Policy",
    "Rollout",
    "ValueFn",
    "load_obs_normalizer_state",
    "obs_normalizer_state",
]

Policy = Callable[[np.ndarray], Mapping[str, np.ndarray]]
ValueFn = Callable[[np.ndarray], np.ndarray]

# What the policy must return for each step, besides the actions.
POLICY_COLUMNS = (
    Columns.ACTIONS,
    Columns.ACTION_LOGP,
    Columns.VF_PREDS,
    Columns.ACTION_DIST_INPUTS,
)


class EnvRunner:
    """Steps `num_envs` copies of a gymnasium environment in one process.

    Observations must be a Box (cast to float32); actions Discrete or Box. Box actions are
    clipped to the space's bounds when stepping the environment, but the unclipped action is
    stored, because that is the one whose log-probability the policy recorded.

    With `normalize_obs`, a `RunningMeanStd` is updated with every raw observation handed to
    the policy (final observations of ended episodes are normalised but not counted, as in
    Stable-Baselines3's VecNormalize); the policy, `value_fn` and the stored rollout all see
    normalised observations. Save `get_state()` with the model: it is part of the policy.
    """

    def __init__(
        self,
        env_id: str,
        *,
        num_envs: int = 8,
        seed: int | None = None,
        normalize_obs: bool = False,
        env_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if num_envs < 1:
            raise ConfigError(f"EnvRunner: num_envs must be >= 1, got {num_envs}")
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
        if isinstance(self.action_space, spaces.Discrete):
            self._action_low = self._action_high = None
        elif isinstance(self.action_space, spaces.Box):
            self._action_low = self.action_space.low
            self._action_high = self.action_space.high
        else:
            env.close()
            raise ConfigError(
                f"EnvRunner: environment {env_id!r} has action space {self.action_space}; "
                "only Discrete and Box actions are supported"
            )
        self._obs_shape = tuple(self.observation_space.shape)
        self._obs_rms = RunningMeanStd(self._obs_shape) if normalize_obs else None
        # What this runner saw since `pop_obs_increment`, for merging runners' statistics.
        self._obs_increment = RunningMeanStd(self._obs_shape, epsilon=0.0)
        raw_obs, _ = env.reset(seed=seed)
        self._raw_obs = np.array(raw_obs, dtype=np.float32)
        self._episode_return = np.zeros(num_envs, dtype=np.float64)
        self._episode_length = np.zeros(num_envs, dtype=np.int64)
        self._episode_stats: list[tuple[float, int]] = []
        self.num_env_steps = 0

    # Sampling ---------------------------------------------------------------------------
    def sample(self, policy: Policy, value_fn: ValueFn, num_steps: int) -> Rollout:
        """Run `num_steps` vector steps and return them as a `Rollout`.

        `policy(obs[N, ...])` returns at least actions, action_logp, vf_preds and
        action_dist_inputs for the N observations (other keys are ignored). `value_fn` is
        called once, on the final observations of truncated episodes followed by the N
        observations after the last step.
        """
        if num_steps < 1:
            raise ConfigError(f"EnvRunner.sample: num_steps must be >= 1, got {num_steps}")
        steps, n = num_steps, self.num_envs
        obs = np.empty((steps, n, *self._obs_shape), dtype=np.float32)
        rewards = np.empty((steps, n), dtype=np.float32)
        terminateds = np.empty((steps, n), dtype=bool)
        truncateds = np.empty((steps, n), dtype=bool)
        buffers: dict[str, np.ndarray] = {}
        # (step, env), final observation and whether it was truncated, of each ended episode.
        ended_at: list[tuple[int, int]] = []
        final_obs: list[np.ndarray] = []
        was_truncated: list[bool] = []
        raw_obs = self._raw_obs
        steps_done = 0
        try:
            for t in range(steps):
                if self._obs_rms is not None:
                    self._obs_rms.update(raw_obs)
                    self._obs_increment.update(raw_obs)
                    obs[t] = self._obs_rms.normalize(raw_obs)
                else:
                    obs[t] = raw_obs
                out = policy(obs[t])
                if t == 0:
                    buffers = self._allocate(out, steps)
                for name, buffer in buffers.items():
                    buffer[t] = out[name]
                actions = buffers[Columns.ACTIONS][t]
                if self._action_low is not None:
                    actions = np.clip(actions, self._action_low, self._action_high)
                raw_obs, reward, terminated, truncated, infos = self._env.step(actions)
                rewards[t] = reward
                terminateds[t] = terminated
                truncateds[t] = truncated
                self._episode_return += reward
                self._episode_length += 1
                done = terminated | truncated
                if done.any():
                    self._end_episodes(
                        t, done, terminated, infos, ended_at, final_obs, was_truncated
                    )
                steps_done += 1
        finally:
            # Kept even if the policy raised mid-fragment, so the next sample starts from the
            # environments' real state. A copy: the vector env reuses its buffer (copy=False).
            self._raw_obs = np.array(raw_obs, dtype=np.float32)
            self.num_env_steps += steps_done * n
        next_obs = np.empty_like(obs)
        next_obs[:-1] = obs[1:]
        next_obs[-1] = self.normalize(self._raw_obs)
        if ended_at:
            steps_, envs_ = zip(*ended_at, strict=True)
            next_obs[list(steps_), list(envs_)] = self.normalize(np.stack(final_obs))
        truncated_at = [at for at, trunc in zip(ended_at, was_truncated, strict=True) if trunc]
        next_values = self._next_values(
            value_fn, buffers[Columns.VF_PREDS], terminateds, truncated_at, next_obs
        )
        return Rollout(
            obs=obs,
            next_obs=next_obs,
            actions=buffers[Columns.ACTIONS],
            rewards=rewards,
            terminateds=terminateds,
            truncateds=truncateds,
            vf_preds=buffers[Columns.VF_PREDS],
            action_logp=buffers[Columns.ACTION_LOGP],
            action_dist_inputs=buffers[Columns.ACTION_DIST_INPUTS],
            next_values=next_values,
        )

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
            self._episode_stats.append(
                (float(self._episode_return[i]), int(self._episode_length[i]))
            )
            ended_at.append((t, int(i)))
            # Copied: an env may reuse (and its reset overwrite) this array.
            final_obs.append(np.array(infos["final_obs"][i], dtype=np.float32))
            # A step both terminated and truncated has no future: it counts as terminated.
            was_truncated.append(not terminated[i])
        self._episode_return[done] = 0.0
        self._episode_length[done] = 0

    def _allocate(self, out: Mapping[str, Any], steps: int) -> dict[str, np.ndarray]:
        """Check the policy's first output and preallocate `[T, N, ...]` buffers after it."""
        n = self.num_envs
        missing = [name for name in POLICY_COLUMNS if name not in out]
        if missing:
            raise BatchError(
                f"EnvRunner.sample: the policy returned {sorted(out)}; it must also return "
                f"{missing} (one row per environment)"
            )
        if isinstance(self.action_space, spaces.Discrete):
            action_shape, action_dtype = (), np.int64
        else:
            action_shape, action_dtype = tuple(self.action_space.shape), np.float32
        expected = {
            Columns.ACTIONS: (n, *action_shape),
            Columns.ACTION_LOGP: (n,),
            Columns.VF_PREDS: (n,),
        }
        buffers = {}
        for name in POLICY_COLUMNS:
            shape = np.shape(out[name])
            want = expected.get(name)
            if (want is not None and shape != want) or (want is None and shape[:1] != (n,)):
                wanted = want if want is not None else f"({n}, ...)"
                raise BatchError(
                    f"EnvRunner.sample: the policy's {name!r} has shape {shape}; expected "
                    f"{wanted} for {n} environments and action space {self.action_space}"
                )
            dtype = action_dtype if name == Columns.ACTIONS else np.float32
            buffers[name] = np.empty((steps, *shape), dtype=dtype)
        return buffers

    def _next_values(
        self,
        value_fn: ValueFn,
        vf_preds: np.ndarray,
        terminateds: np.ndarray,
        truncated_at: list[tuple[int, int]],
        next_obs: np.ndarray,
    ) -> np.ndarray:
        """V of the observation each step reached; see `Rollout`. One `value_fn` call for
        the final observations of truncated episodes and the observations after the last
        step."""
        k = len(truncated_at)
        steps, envs = (list(x) for x in zip(*truncated_at, strict=True)) if k else ([], [])
        inputs = np.concatenate([next_obs[steps, envs], next_obs[-1]]) if k else next_obs[-1]
        values = np.asarray(value_fn(inputs), dtype=np.float32)
        if values.shape != (len(inputs),):
            raise BatchError(
                f"EnvRunner.sample: value_fn returned shape {values.shape} for "
                f"{len(inputs)} observations; it must return one value per observation, "
                f"shape ({len(inputs)},)"
            )
        next_values = np.empty_like(vf_preds)
        next_values[:-1] = vf_preds[1:]
        next_values[-1] = values[k:]
        # An episode that ended at step t continues as a new one at t+1: vf_preds[t + 1] is
        # the value of the reset observation, which must not leak into step t.
        next_values[terminateds] = 0.0
        if k:
            next_values[steps, envs] = values[:k]
        return next_values

    # Statistics and state ---------------------------------------------------------------
    def pop_episode_stats(self) -> list[tuple[float, int]]:
        """(return, length) of each episode completed since the last call, in raw reward."""
        stats, self._episode_stats = self._episode_stats, []
        return stats

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """Observations as the policy sees them (normalised if enabled), float32, without
        updating the statistics; for evaluation."""
        if self._obs_rms is None:
            return np.array(obs, dtype=np.float32)
        return self._obs_rms.normalize(obs)

    def pop_obs_increment(self) -> dict[str, np.ndarray]:
        """Statistics of the raw observations counted since the last call (empty without
        normalisation): what a driver merges into the statistics all runners share."""
        if self._obs_rms is None:
            return {}
        increment = self._obs_increment.get_state()
        self._obs_increment = RunningMeanStd(self._obs_shape, epsilon=0.0)
        return increment

    def get_state(self) -> dict[str, np.ndarray]:
        """The observation normaliser's statistics (empty without normalisation)."""
        return obs_normalizer_state(self._obs_rms)

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore statistics saved by `get_state`."""
        load_obs_normalizer_state(
            self._obs_rms, state, "EnvRunner (build it with normalize_obs=True)"
        )

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> EnvRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_OBS_PREFIX = "obs_"


def obs_normalizer_state(rms: RunningMeanStd | None) -> dict[str, np.ndarray]:
    """An observation normaliser's statistics as a runner's state: ``obs_mean``,
    ``obs_var``, ``obs_count`` (empty without normalisation)."""
    if rms is None:
        return {}
    return {f"{_OBS_PREFIX}{k}": v for k, v in rms.get_state().items()}


def load_obs_normalizer_state(
    rms: RunningMeanStd | None, state: Mapping[str, Any], owner: str
) -> None:
    """Restore ``obs_normalizer_state``'s statistics into ``rms``; statistics for an
    ``owner`` that does not normalise are a ConfigError saying how to make one that does."""
    if rms is None:
        if state:
            raise ConfigError(
                f"got observation normaliser statistics {sorted(state)}, but this {owner} "
                "does not normalise observations"
            )
        return
    n = len(_OBS_PREFIX)
    rms.set_state({k[n:]: v for k, v in state.items() if k.startswith(_OBS_PREFIX)})
