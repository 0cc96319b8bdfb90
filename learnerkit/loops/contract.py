"""The contract between the host and a training loop: everything a loop package needs, by
public name, in one place.

- A loop is declared by a ``LoopInfo`` (light: its name, settings class, where its code is,
  and what it asks of the host) that an entry point of the group
  ``learnerkit.training_loops`` names.
- Its code is a class meeting ``TrainingLoop``: built with a ``Run`` (resolved settings,
  the learners, the env runners), it returns an ``Iteration`` per ``step``.
- What a loop uses to do so: ``combine_results`` (learner results of several updates as
  one row), ``probe_spaces`` (an env's spaces, checked as env runners check them),
  ``make_env_runners`` (env runners of its own, e.g. for evaluation),
  ``evaluation_episodes`` (a module's greedy episodes, without env runners), and the sampling
  contract re-exported from ``learnerkit.rollouts._contract`` (``EnvRunners``,
  ``EnvRunnerSpec``, ``Fragment``, ``on_policy_batch``, ``sequence_batch``).
- What the host gives every loop alike (``learnerkit.loops._trainer``): the progress
  display, ``metrics.csv``, TensorBoard, the learning curve, checkpoints (the loop's
  ``get_state``), ``--resume`` (its ``set_state``), Ctrl-C, ``summary.json`` and the
  ``on_iteration`` callback (``IterationContext``).

Also here: a run's configuration (``TrainConfig``) and its ``TrainSummary``. This module
stays light (the sampling names load on first use), so hosts can build a ``TrainConfig``
cheaply.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from learnerkit._specs import FRAMEWORKS
from learnerkit.errors import ConfigError
from learnerkit.fields import (
    _whole_to_int,
    non_negative_int,
    one_of,
    optional_positive_int,
    positive_int,
)
from learnerkit.training_loops import LoopInfo

if TYPE_CHECKING:
    from learnerkit._learner_group import LearnerGroup
    from learnerkit._plugins import Algorithm
    from learnerkit._specs import ModuleSpec
    from learnerkit.rollouts._contract import (
        EnvRunners,
        EnvRunnerSpec,
        Fragment,
        ModuleWeights,
        Weights,
        on_policy_batch,
        sequence_batch,
    )
    from learnerkit.rollouts._pettingzoo_envs import PolicyMapping
    from learnerkit.settings import SamplingSettings

__all__ = [
    "REQUIRED_LOOP_METHODS",
    "EnvRunnerSpec",
    "EnvRunners",
    "Fragment",
    "Iteration",
    "IterationContext",
    "LoopInfo",
    "ModuleWeights",
    "OnIteration",
    "Run",
    "TrainConfig",
    "TrainSummary",
    "TrainingLoop",
    "Weights",
    "combine_results",
    "evaluation_episodes",
    "make_env_runners",
    "on_policy_batch",
    "probe_spaces",
    "sequence_batch",
]

_SAMPLING = (
    "EnvRunnerSpec",
    "EnvRunners",
    "Fragment",
    "ModuleWeights",
    "Weights",
    "on_policy_batch",
    "sequence_batch",
)


def evaluation_episodes(
    env_id: str, backend: Any, module: Any, num_episodes: int, *, seed: int = 0
) -> list[tuple[float, int]]:
    """(return, length) of ``num_episodes`` episodes of ``module``'s greedy policy (built by
    ``backend``, a ``learnerkit.backends.Backend``), one per copy of the env ``env_id``,
    stepped together so the module runs once per step for all of them; episode k is reset
    with ``seed + k``. What the offline loop evaluates with."""
    from learnerkit.backends import policy_fn
    from learnerkit.loops._episodes import run_episodes_side_by_side

    policy = policy_fn(backend, module, explore=False)
    return run_episodes_side_by_side(env_id, policy, num_episodes, seed=seed)


def __getattr__(name: str) -> Any:
    # The sampling contract imports numpy and the batch classes: only when a loop uses it.
    if name in _SAMPLING:
        from learnerkit.rollouts import _contract as sampling

        return getattr(sampling, name)
    raise AttributeError(f"module 'learnerkit.loops.contract' has no attribute {name!r}")


def _optional_finite(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not (isinstance(value, numbers.Real) and math.isfinite(value)):
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} must be a finite number or None, "
            f"got {value!r}"
        )


@attrs.frozen(kw_only=True)
class TrainConfig:
    """One training run. ``overrides`` are hyperparameters on top of the algorithm's
    defaults and its tuned preset for ``env_id``; ``model_config`` goes to the module."""

    algorithm: str = "ppo"
    env_id: str | None = None
    """The gymnasium env the loops that sample train in (None: CartPole-v1), or a
    PettingZoo parallel env, ``pettingzoo:MODULE[:FACTORY]`` (multi-agent; the on-policy
    and asynchronous loops); for the offline loop, the env its policy is evaluated in
    (None: the dataset's)."""
    policy_mapping: Any = "shared"
    """Multi-agent: which module acts for each agent: ``"shared"`` (one module,
    ``default_policy``), ``"per_agent"`` (a module named after each agent), a dict of agent
    to module id, or a callable ``agent -> module id`` (not saved with the run: pass it
    again to resume). Modules are built for the ids it names over the env's agents."""
    dataset: str | None = None
    """For an algorithm whose loop reads a dataset (``LoopInfo.reads_dataset``: the
    ``"offline"`` loop), the dataset it learns from (offline: a Minari dataset id in the
    local store, or a dataset directory). Refused by the other loops."""
    framework: str = attrs.field(default="torch", validator=one_of(*FRAMEWORKS))
    seed: int = attrs.field(default=0, converter=_whole_to_int, validator=non_negative_int)
    num_learners: int = 0
    num_cpus_per_learner: float = 1
    """CPUs each Ray learner reserves (``ScalingConfig.num_cpus_per_learner``; 0.5: two
    learners and an env runner fit on a 2-core machine); a learner's torch or TensorFlow
    threads follow it (at least one)."""
    num_gpus_per_learner: float = 0
    """GPUs per learner (``ScalingConfig.num_gpus_per_learner``): with ``num_learners=0``
    any value above 0 trains on the first visible GPU; Ray learners reserve that share of a
    GPU each (at most 1). Env runners act on the CPU whatever this is."""
    stop_reward: float | None = attrs.field(default=None, validator=_optional_finite)
    stop_timesteps: int | None = attrs.field(
        default=None, converter=_whole_to_int, validator=optional_positive_int
    )
    """Timesteps to train for, as the loop counts them (``Iteration.env_steps``: env steps
    sampled, or offline, rows trained; None: the preset's, else the loop's own end, else
    1,000,000)."""
    out_dir: str | None = None
    overrides: Mapping[str, Any] = attrs.field(factory=dict)
    module_hyperparameters: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    """Multi-agent: hyperparameters of single modules on top of the run's, e.g.
    ``{"player_1": {"learning_rate": 1e-4}}`` (``LearnerSpec.module_hyperparameters``);
    kept with the run and its checkpoints."""
    modules_to_train: Collection[str] | None = None
    """Multi-agent: the modules that learn (None: all); the others act but stay frozen."""
    model_config: Mapping[str, Any] | None = None
    atari_preprocessing: bool | Mapping[str, Any] = True
    """For an Atari game (``ALE/...``): the standard preprocessing (True), none (False), or
    settings changed from its defaults (``{"terminal_on_life_loss": True}``; the fields of
    ``learnerkit.rollouts._atari.AtariSettings``). Recorded with the run; evaluation and
    collection apply the same. Other envs take no settings."""
    checkpoint_every: int = attrs.field(default=50, converter=_whole_to_int, validator=positive_int)
    """Iterations between the checkpoints a run writes (and one at its end)."""
    resume: str | None = None
    progress: bool = True
    ray_address: str | None = None
    """A Ray cluster for learners and env runners (else ``RAY_ADDRESS``, else a local Ray,
    started only when ``num_learners`` or ``num_env_runners`` asks for Ray)."""


@attrs.frozen(kw_only=True)
class TrainSummary:
    algorithm: str
    env: str
    framework: str
    seed: int
    timesteps_total: int
    iterations: int
    episodes_total: int
    episode_return_mean: float | None
    wall_seconds: float
    reached_stop_reward: bool
    stop_reward: float | None
    checkpoint: str
    curve: str | None
    interrupted: bool = False
    dataset: str | None = None
    agent_return_mean: Mapping[str, float] | None = None
    """Multi-agent: each agent's mean return over its last 100 episodes;
    ``episode_return_mean`` is then the team return (the sum over agents per episode)."""


@attrs.frozen(kw_only=True)
class Iteration:
    """What one iteration of a loop did."""

    env_steps: int
    """Env steps sampled, or for the offline loop rows trained: they advance
    ``timesteps_total`` and the schedules."""
    episodes: list[tuple[float, int]]
    """(return, length) of the episodes that ended."""
    metrics: dict[str, Any]
    """Columns for ``metrics.csv`` / TensorBoard (learner results as ``learner/NAME``, or
    multi-agent ``learner/MODULE/NAME``)."""
    agent_returns: list[dict[str, float]] = attrs.field(factory=list)
    """Multi-agent: each ended episode's return per agent, in the order of ``episodes``
    (whose returns are then the team returns, the sums of these)."""


class TrainingLoop(Protocol):
    """What a loop's code implements (the class ``LoopInfo.target`` names). The host builds
    it with ``Loop(run)`` (a ``Run``) once the learners and env runners exist, calls
    ``start()`` once their state is restored, then ``step(timesteps)`` until the run ends;
    ``get_state`` goes into every checkpoint and ``set_state`` gets it back on resume.

    Three members are optional (the host checks for them): ``environment`` (default: the
    gymnasium env ``TrainConfig.env_id``, else CartPole-v1, its spaces probed; for a loop
    declaring ``multi_agent``, a PettingZoo env's modules come from the policy mapping),
    ``learner_group_options`` (default: none) and ``max_timesteps`` (default: no end of its
    own). Everything a user sees of a run comes from the host, not from the loop.
    """

    def __init__(self, run: Run) -> None: ...

    @classmethod
    def environment(cls, config: TrainConfig) -> tuple[str, Any, Any]:
        """Optional. The run's env id (reported, evaluated in) and the module's observation
        and action spaces; raises a ConfigError when ``config`` lacks what the loop needs."""

    @classmethod
    def learner_group_options(cls, hps: Any) -> dict[str, Any]:
        """Optional. Keyword arguments for the ``LearnerGroup`` (``max_async_updates``...)."""

    def max_timesteps(self) -> int | None:
        """Optional. The timesteps after which the loop has nothing left to train (offline:
        its epochs); the run stops there, or earlier at ``stop_timesteps``."""

    def start(self) -> None:
        """Called once the learners hold their (restored) state: ship the first weights."""

    def step(self, timesteps: int) -> Iteration:
        """One iteration (one row of ``metrics.csv``); ``timesteps`` is the total before it."""

    def get_state(self) -> dict[str, Any]:
        """The loop's own state for checkpoints: nested dicts and lists of JSON values and
        numpy arrays (arrays go to a ``.npz`` beside ``trainer_state.json``; a replay
        buffer may, counters are JSON)."""

    def set_state(self, state: Mapping[str, Any]) -> None:
        """What ``get_state`` returned, when a run resumes (before ``start``)."""


REQUIRED_LOOP_METHODS = ("start", "step", "get_state", "set_state")
"""The members of ``TrainingLoop`` a loop class must have; the host checks them before
building anything."""


@attrs.frozen(kw_only=True)
class Run:
    """What a loop works with: resolved settings, the learners, the env runners."""

    config: TrainConfig
    """The run's configuration, ``env_id`` resolved (``environment``)."""
    algorithm: Algorithm
    hps: Any
    """The algorithm's hyperparameters: an instance of a subclass of the loop's settings."""
    module_id: str
    """The first module's id (``default_policy`` for a gymnasium env)."""
    group: LearnerGroup
    runners: EnvRunners | None
    """None for a loop that uses no env runners (``LoopInfo.uses_env_runners``)."""
    stop_timesteps: int | None = None
    """The timestep budget of ``--stop-timesteps`` or the preset (None: none given)."""


class IterationContext(Protocol):
    """What ``train(config, on_iteration=callback)`` hands its callback after every
    iteration: where the run is, and the way to change the modules between iterations
    (self-play, leagues), learners and env runners together. The next iteration samples
    and trains with the changes; checkpoints hold the modules as they are then.

    A callback that only reads the metrics may ignore the methods; one that changes
    modules runs in a multi-agent run (a PettingZoo env)."""

    iteration: int
    timesteps: int
    metrics: Mapping[str, Any]
    """The iteration's row of ``metrics.csv``."""
    group: LearnerGroup
    runners: EnvRunners | None

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
        """Add a module to the learners and the env runners. ``copy_of=ID`` takes that
        module's spec and current weights (a snapshot); else ``module_spec``, with
        ``weights`` or fresh ones. ``train=False`` freezes it: its rows are sampled (an
        opponent acts with it) but never trained on."""

    def remove_module(self, module_id: str) -> None:
        """Drop a module from the learners and the env runners; map its agents elsewhere
        first."""

    def set_policy_mapping(self, mapping: PolicyMapping) -> None:
        """A new agent-to-module mapping for the env runners, from the next episode on."""

    def set_modules_to_train(self, module_ids: Collection[str] | None) -> None:
        """Train only these modules from the next update on (None: all)."""


OnIteration = Callable[[IterationContext], None]
"""A host's callback, called after each iteration with an ``IterationContext``."""


# What loops use ---------------------------------------------------------------------------
def combine_results(results: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Each learner statistic over several updates, as one row: running totals
    (``*_total``) as of the last one, counts (``num_*``) summed, everything else averaged;
    values that are not numbers are left out."""
    if not results:
        return {}
    merged: dict[str, Any] = {}
    for key in results[0]:
        values = [r[key] for r in results if key in r]
        if not all(isinstance(v, numbers.Real) for v in values):
            continue
        if key.endswith("_total"):
            merged[key] = float(values[-1])
        elif key.startswith("num_"):
            merged[key] = math.fsum(float(v) for v in values)
        else:
            merged[key] = math.fsum(float(v) for v in values) / len(values)
    return merged


def probe_spaces(env_id: str, atari: Any = None) -> tuple[Any, Any]:
    """A gymnasium env's observation and action spaces (preprocessed as ``atari``, an
    ``AtariSettings``, says), with the checks and errors of the env runners (a space the
    modules cannot take is a ConfigError naming it)."""
    from learnerkit.rollouts._gymnasium_sampling import EnvRunner

    with EnvRunner(env_id, num_envs=1, atari=atari) as probe:
        return probe.observation_space, probe.action_space


def make_env_runners(
    spec: EnvRunnerSpec, settings: SamplingSettings, *, ray_address: str | None = None
) -> EnvRunners:
    """Env runners built from ``spec``: in this process when ``settings.num_env_runners``
    is 0, else that many Ray actors (``num_cpus_per_env_runner``,
    ``max_env_runner_restarts``, ``sample_timeout_s``), in the Ray of ``ray_address`` (None:
    the run's, else a local one). The host builds a run's own (``Run.runners``) so."""
    if settings.num_env_runners == 0:
        from learnerkit.rollouts._local_env_runners import LocalEnvRunners

        return LocalEnvRunners(spec)
    from learnerkit._distributed.ray_env_runners import RayEnvRunners

    return RayEnvRunners(
        spec,
        num_runners=settings.num_env_runners,
        num_cpus_per_runner=settings.num_cpus_per_env_runner,
        max_restarts=settings.max_env_runner_restarts,
        sample_timeout_s=settings.sample_timeout_s,
        ray_address=ray_address,
    )
