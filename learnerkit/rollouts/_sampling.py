"""The sampling engine: what sampling does with a module's observations and outputs, whatever
environment they came from. Written once here, used by both env adapters:

- ``gymnasium_sampling.EnvRunner`` steps a gymnasium vector env of N copies with one module:
  each step is one policy call on all N observations, stored in preallocated ``[T, N]``
  arrays (a ``Rollout``). Its step loop is vectorised: no Python loop over the envs.
- ``_pettingzoo_sampling.MultiAgentEnvRunner`` steps PettingZoo parallel envs with a module
  per agent group (the policy mapping): each step is one policy call per module on its live
  agents, stored as each agent's *segment* of rows (a ``MultiAgentRollout``).

Both are the same sampling underneath; what they share:

- `ObsNormalizers`: running observation statistics per module, counted over the raw
  observations handed to the policy, merged over runners by a driver, saved with checkpoints.
- `check_policy_outputs`: what a policy must return, one row per observation.
- `env_actions`: Box actions clipped to the space for the env; the unclipped ones are
  stored, since the policy's log-probabilities are of them.
- `bootstrap_values` and `next_values`: the value each row bootstraps from, with one
  ``value_fn`` call per module and fragment.
- `EpisodeLog`: the returns and lengths of ended episodes.
- `stored_obs_dtype`: uint8 images stay uint8 unless normalised; everything else float32.

``sampler.Sampler`` puts an adapter together with the runner's module copies and returns
``Fragment``s (``contract``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
from gymnasium import spaces

from learnerkit._batch import Columns
from learnerkit._columns import ACTOR_CRITIC_OUTPUTS, DEFAULT_MODULE_ID
from learnerkit.errors import BatchError, ConfigError
from learnerkit.rollouts._postprocessing import RunningMeanStd

__all__ = [
    "POLICY_COLUMNS",
    "EnvAdapter",
    "EpisodeLog",
    "ObsNormalizer",
    "ObsNormalizers",
    "Policy",
    "ValueFn",
    "bootstrap_values",
    "check_policy_outputs",
    "env_actions",
    "load_obs_normalizer_state",
    "next_values",
    "obs_normalizer_state",
    "stored_obs_dtype",
]

Policy = Callable[[np.ndarray], Mapping[str, np.ndarray]]
ValueFn = Callable[[np.ndarray], np.ndarray]


def stored_obs_dtype(dtype: Any, normalized: bool = False) -> type:
    """The dtype observations of ``dtype`` are stored in and handed to the policy: uint8
    stays uint8 when not normalised (image frames: a quarter of float32's bytes through
    fragments, batches, Ray's object store, minibatches and replay buffers; the module
    scales them, ``learnerkit.conv_encoders``), anything else float32."""
    return np.uint8 if not normalized and np.dtype(dtype) == np.uint8 else np.float32


# What an actor-critic policy returns for each observation (the default of what a loop asks
# for: EnvRunnerSpec.policy_outputs).
POLICY_COLUMNS = ACTOR_CRITIC_OUTPUTS


class EnvAdapter(Protocol):
    """What ``sampler.Sampler`` asks of an env adapter (``EnvRunner``,
    ``MultiAgentEnvRunner``)."""

    def sample_modules(
        self, policies: Mapping[str, Policy], value_fns: Mapping[str, ValueFn], num_steps: int
    ) -> Any:
        """A fragment of ``num_steps`` steps, acting with ``policies`` by module id."""

    def pop_episodes(self) -> tuple[list[tuple[float, int]], list[dict[str, float]]]:
        """(return, length) of the episodes ended since the last call, and each one's
        return per agent (empty for a gymnasium env)."""

    def pop_obs_increment(self) -> dict[str, Any]: ...

    def get_state(self) -> dict[str, np.ndarray]: ...

    def set_state(self, state: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


# Policy outputs and actions ----------------------------------------------------------------
def check_policy_outputs(
    out: Mapping[str, Any],
    rows: int,
    action_space: Any,
    where: str,
    rows_are: str,
    required: tuple[str, ...] = POLICY_COLUMNS,
) -> None:
    """A BatchError unless ``out`` holds every ``required`` entry (the loop's policy
    outputs) with one row per observation: actions shaped by ``action_space`` (``[rows]``
    for Discrete), one log-probability and one value each, distribution inputs
    ``[rows, ...]`` (and actions too for another action space)."""
    missing = [name for name in required if name not in out]
    if missing:
        raise BatchError(
            f"{where}: the policy returned {sorted(out)}; it must also return {missing} "
            f"(one row per observation: the training loop samples {list(required)})"
        )
    expected = {Columns.ACTION_LOGP: (rows,), Columns.VF_PREDS: (rows,)}
    if isinstance(action_space, spaces.Discrete):
        expected[Columns.ACTIONS] = (rows,)
    elif isinstance(action_space, spaces.Box):
        expected[Columns.ACTIONS] = (rows, *action_space.shape)
    for name in required:
        shape = np.shape(out[name])
        want = expected.get(name)
        if (want is not None and shape != want) or (want is None and shape[:1] != (rows,)):
            wanted = want if want is not None else f"({rows}, ...)"
            raise BatchError(
                f"{where}: the policy's {name!r} has shape {shape}; expected {wanted} for "
                f"{rows} {rows_are} and action space {action_space}"
            )


def env_actions(actions: np.ndarray, action_space: Any) -> np.ndarray:
    """The actions to step the env with: a Box's clipped to its bounds, others as given."""
    if isinstance(action_space, spaces.Box):
        return np.clip(actions, action_space.low, action_space.high)
    return actions


# Bootstrapping -----------------------------------------------------------------------------
def bootstrap_values(value_fn: ValueFn, obs: np.ndarray, where: str) -> np.ndarray:
    """``value_fn(obs)``, float32, checked to be one value per observation (no call for no
    observations)."""
    if len(obs) == 0:
        return np.zeros(0, dtype=np.float32)
    values = np.asarray(value_fn(obs), dtype=np.float32)
    if values.shape != (len(obs),):
        raise BatchError(
            f"{where}: value_fn returned shape {values.shape} for {len(obs)} observations; it "
            f"must return one value per observation, shape ({len(obs)},)"
        )
    return values


def next_values(
    following: np.ndarray,
    terminated: np.ndarray,
    at: Any,
    values: np.ndarray,
) -> np.ndarray:
    """V of the observation each row reached, what ``compute_gae`` bootstraps from.

    A row is one step of one agent (of one env, for a gymnasium env); rows form *tracks*
    in time order: an env's column of a ``Rollout``, an agent's segment of a
    ``MultiAgentRollout``. ``following`` holds, where a track goes on, the next row's
    ``vf_preds``; rows ``at`` (unique) take ``values`` (`bootstrap_values` of the final
    observation of a truncated episode, or of the current one where the fragment cut the
    track: that state had a future, Pardo et al. 2018); a terminated row takes 0. Returns
    ``following``, filled in.
    """
    following[at] = values
    # An episode that ended at step t may continue as a new one at t+1 in the same track:
    # the next row's prediction is of the reset observation and must not leak into t.
    following[terminated] = 0.0
    return following


# Observation normalisation -----------------------------------------------------------------
_OBS_PREFIX = "obs_"


class ObsNormalizer:
    """One module's observation statistics: ``stats`` over every raw observation handed to
    its policy, and ``increment``, the same since the last ``pop_increment`` (what a driver
    merges over runners). Final observations of ended episodes and those bootstrapped from
    are normalised but not counted, as in Stable-Baselines3's VecNormalize."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.stats = RunningMeanStd(shape)
        self.increment = RunningMeanStd(shape, epsilon=0.0)

    def observe(self, raw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Count ``raw`` and return it normalised (into ``out`` if given)."""
        self.stats.update(raw)
        self.increment.update(raw)
        if out is None:
            return self.stats.normalize(raw)
        out[...] = self.stats.normalize(raw)
        return out

    def pop_increment(self) -> dict[str, np.ndarray]:
        increment = self.increment.get_state()
        self.increment = RunningMeanStd(self.stats.shape, epsilon=0.0)
        return increment


class ObsNormalizers:
    """The observation normalisers of a runner's (or a driver's) modules, by module id; each
    made when its module is first seen (``ensure``, or its first observations or
    statistics). Inert when not ``enabled``: observations pass as float32, or uint8
    (``stored_obs_dtype``).

    State (``get_state``, what checkpoints hold): ``obs_mean``, ``obs_var``, ``obs_count``
    for a gymnasium env's one module, the format checkpoints have always had; with
    ``by_module`` (PettingZoo), the same per module, ``"<module_id>/obs_mean"`` and so on.
    Increments (``pop_increments``, folded in with ``merge``): ``RunningMeanStd.get_state()``
    (``mean``, ``var``, ``count``), by module id with ``by_module``.
    """

    def __init__(self, enabled: bool, *, by_module: bool, owner: str) -> None:
        self.enabled, self.by_module, self.owner = enabled, by_module, owner
        self.modules: dict[str, ObsNormalizer] = {}

    def ensure(self, module_id: str, shape: tuple[int, ...]) -> ObsNormalizer | None:
        """The module's normaliser (made for observations of ``shape`` if new); None when
        not enabled."""
        if not self.enabled:
            return None
        if not self.by_module:
            module_id = DEFAULT_MODULE_ID  # one module, whatever its id
        normalizer = self.modules.get(module_id)
        if normalizer is None:
            normalizer = self.modules[module_id] = ObsNormalizer(tuple(shape))
        return normalizer

    def observe(self, module_id: str, raw: np.ndarray) -> np.ndarray:
        """A batch of a module's raw observations as its policy sees them, counted."""
        normalizer = self.ensure(module_id, raw.shape[1:])
        if normalizer is None:
            return np.asarray(raw, dtype=stored_obs_dtype(raw.dtype))
        return normalizer.observe(raw)

    def normalize(self, module_id: str, raw: np.ndarray) -> np.ndarray:
        """As ``observe``, without counting (final observations, evaluation)."""
        raw = np.asarray(raw)
        normalizer = self.ensure(module_id, raw.shape[1:])
        if normalizer is None:
            return np.array(raw, dtype=stored_obs_dtype(raw.dtype))
        return normalizer.stats.normalize(raw)

    def drop(self, module_id: str) -> None:
        """Forget a removed module's statistics."""
        self.modules.pop(module_id, None)

    def pop_increments(self) -> dict[str, Any]:
        """The statistics counted since the last call (empty when not enabled)."""
        if not self.by_module:
            one = self.modules.get(DEFAULT_MODULE_ID)
            return {} if one is None else one.pop_increment()
        return {m: n.pop_increment() for m, n in self.modules.items() if n.increment.count}

    def merge(self, increments: Mapping[str, Any]) -> None:
        """Fold in another runner's ``pop_increments``."""
        if not self.enabled or not increments:
            return
        by_module = increments if self.by_module else {DEFAULT_MODULE_ID: increments}
        for module_id, increment in by_module.items():
            if float(np.asarray(increment["count"])) > 0:  # a module that did not act: none
                self.ensure(module_id, np.shape(increment["mean"])).stats.merge(increment)

    def get_state(self) -> dict[str, np.ndarray]:
        if not self.by_module:
            one = self.modules.get(DEFAULT_MODULE_ID)
            return obs_normalizer_state(None if one is None else one.stats)
        return {
            f"{module_id}/{key}": value
            for module_id, n in self.modules.items()
            for key, value in obs_normalizer_state(n.stats).items()
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore ``get_state``'s statistics; a ConfigError when not enabled."""
        if not self.enabled:
            load_obs_normalizer_state(None, state, self.owner)
            return
        if not self.by_module:
            by_module = {DEFAULT_MODULE_ID: dict(state)}
        else:
            by_module = {}
            for key, value in state.items():
                module_id, _, name = key.rpartition("/")
                by_module.setdefault(module_id, {})[name] = value
        for module_id, values in by_module.items():
            shape = np.shape(values.get(f"{_OBS_PREFIX}mean", ()))
            load_obs_normalizer_state(self.ensure(module_id, shape).stats, values, self.owner)


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


# Episodes ------------------------------------------------------------------------------------
class EpisodeLog:
    """(return, length) of each episode ended since the last ``pop`` (in raw reward; for
    several agents the team return, their sum), and each one's return per agent."""

    def __init__(self) -> None:
        self.stats: list[tuple[float, int]] = []
        self.agent_returns: list[dict[str, float]] = []

    def add(self, episode_return: float, length: int, agent_returns: Any = None) -> None:
        self.stats.append((episode_return, length))
        if agent_returns is not None:
            self.agent_returns.append(agent_returns)

    def pop(self) -> tuple[list[tuple[float, int]], list[dict[str, float]]]:
        popped = self.stats, self.agent_returns
        self.stats, self.agent_returns = [], []
        return popped
