"""What a training loop gets and gives: the run's configuration (``TrainConfig``), what a
loop is built with (``Run``), what one iteration returns (``Iteration``), the methods a loop
implements (``TrainingLoop``), a run's ``TrainSummary``, and what a host's callback gets
between iterations (``IterationContext``). The machinery that drives a loop is
``learnerkit.loops.trainer``."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    from learnerkit._plugins import Algorithm
    from learnerkit.learner_group import LearnerGroup
    from learnerkit.rollouts.contract import EnvRunners, Weights
    from learnerkit.rollouts.pettingzoo_envs import PolicyMapping
    from learnerkit.specs import ModuleSpec


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
    """For an offline algorithm (training loop ``"offline"``), the Minari dataset it learns
    from: an id in the local Minari store, or a dataset directory. Refused by the others."""
    framework: str = "torch"
    seed: int = 0
    num_learners: int = 0
    stop_reward: float | None = None
    stop_timesteps: int | None = None
    """Timesteps to train for: env steps sampled, or offline, rows trained (None: the
    preset's, else the loop's own end, else 1,000,000)."""
    out_dir: str | None = None
    overrides: Mapping[str, Any] = attrs.field(factory=dict)
    module_hyperparameters: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    """Multi-agent: hyperparameters of single modules on top of the run's, e.g.
    ``{"player_1": {"learning_rate": 1e-4}}`` (``LearnerSpec.module_hyperparameters``);
    kept with the run and its checkpoints."""
    modules_to_train: Collection[str] | None = None
    """Multi-agent: the modules that learn (None: all); the others act but stay frozen."""
    model_config: Mapping[str, Any] | None = None
    checkpoint_every: int = 50
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
    """What a loop implements; the trainer builds it with ``Loop(run)`` (a ``Run``).

    Three members are optional, with the defaults of the loops that sample (on-policy,
    async): ``uses_env_runners`` (default True), ``environment`` (default: ``env_id`` or
    CartPole-v1, its spaces probed) and ``max_timesteps`` (default: no end of its own).
    """

    uses_env_runners: bool
    """Whether the run builds env runners (``Run.runners``); False: ``Run.runners`` is None,
    and the loop learns from ``TrainConfig.dataset`` instead (it is refused otherwise)."""

    @classmethod
    def environment(cls, config: TrainConfig) -> tuple[str, Any, Any]:
        """The run's env id (reported, and evaluated in) and the module's observation and
        action spaces; raises a ConfigError when ``config`` lacks what the loop needs."""

    @classmethod
    def learner_group_options(cls, hps: Any) -> dict[str, Any]:
        """Keyword arguments for the ``LearnerGroup`` (``max_async_updates``...)."""

    def max_timesteps(self) -> int | None:
        """The timesteps after which the loop has nothing left to train (offline: its
        epochs); the run stops there, or earlier at ``stop_timesteps``."""

    def start(self) -> None:
        """Called once the learners hold their (restored) state: ship the first weights."""

    def step(self, timesteps: int) -> Iteration:
        """One iteration; ``timesteps`` is the env steps sampled before it."""

    def get_state(self) -> dict[str, Any]:
        """The loop's own counters, as JSON values, for checkpoints."""

    def set_state(self, state: Mapping[str, Any]) -> None: ...


@attrs.frozen(kw_only=True)
class Run:
    """What a loop works with: resolved settings, the learners, the env runners."""

    config: TrainConfig
    algorithm: Algorithm
    hps: Any
    module_id: str
    group: LearnerGroup
    runners: EnvRunners | None
    """None for a loop that uses no env runners."""
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
