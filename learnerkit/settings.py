"""The settings each training loop reads, declared by the loop.

An algorithm trained by a loop derives its hyperparameters class from that loop's settings
class (``class PPOHyperparameters(OnPolicySettings)``), so every setting the loop reads
exists, is validated when the hyperparameters are built, and is documented once, here.
Settings that name an RLlib concept use RLlib's name. (``learnerkit.loops.settings``
re-exports them: they sit here, below the algorithm registry that checks an algorithm's
hyperparameters against its loop's settings.) Also here, for a host: hyperparameters built
from a config file's table (``structure_hyperparameters``) and one module's variant of them
(``evolve_hyperparameters``), each checked by the class's validators.

Metadata only: importing this module loads no framework, no Ray and no gymnasium, because
plugins import it when ``learnerkit list-plugins`` lists them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from learnerkit._specs import Hyperparameters, evolve_hyperparameters, structure_hyperparameters
from learnerkit.errors import ConfigError
from learnerkit.fields import (
    in_unit_interval,
    non_negative,
    non_negative_int,
    optional_float,
    optional_positive_int,
    positive,
    positive_int,
)

__all__ = [
    "evolve_hyperparameters",
    "structure_hyperparameters",
    "QUEUE_POLICIES",
    "AsyncSettings",
    "OfflineSettings",
    "OnPolicySettings",
    "ReplaySettings",
    "SamplingSettings",
]

QUEUE_POLICIES = ("block", "drop_oldest")


@attrs.frozen(kw_only=True)
class SamplingSettings(Hyperparameters):
    """What every loop that samples from environments reads: where and how much to sample.

    ``num_env_runners=0`` samples in the driver process; ``>= 1`` runs that many env-runner
    Ray actors, each stepping ``num_envs_per_env_runner`` environments with its own copy of
    the module (they share the Ray session, or cluster, of the learners).
    """

    renamed_fields: ClassVar[dict[str, str]] = {"num_envs": "num_envs_per_env_runner"}
    """``num_envs`` became ``num_envs_per_env_runner`` (RLlib's name) in 0.2."""

    gamma: float = attrs.field(default=0.99, converter=float, validator=in_unit_interval)
    """Discount factor of future rewards."""
    num_env_runners: int = attrs.field(default=0, validator=non_negative_int)
    """Env-runner Ray actors (0: sample in the driver, no Ray needed)."""
    num_envs_per_env_runner: int = attrs.field(default=8, validator=positive_int)
    """Environment copies each runner (or the driver) steps as one gymnasium vector env."""
    num_cpus_per_env_runner: float = attrs.field(default=1.0, converter=float, validator=positive)
    """CPUs each env-runner actor reserves through Ray."""
    rollout_fragment_length: int = attrs.field(default=64, validator=positive_int)
    """Steps per environment in one sampled fragment: a fragment holds
    ``num_envs_per_env_runner * rollout_fragment_length`` env steps."""
    normalize_observations: bool = attrs.field(default=False, converter=bool)
    """Normalise observations by running mean and variance while sampling (as SB3's
    VecNormalize does); the statistics are merged over all runners, shipped with the
    weights, and saved with the checkpoint."""
    max_env_runner_restarts: int = attrs.field(default=5, validator=non_negative_int)
    """How many times a dead env-runner actor, or one whose environment raised, is
    restarted (with the current weights) before training stops with its error."""
    sample_timeout_s: float = attrs.field(default=120.0, converter=float, validator=positive)
    """Seconds to wait for any runner's fragment before reporting the runners as stuck."""


@attrs.frozen(kw_only=True)
class OnPolicySettings(SamplingSettings):
    """The synchronous on-policy loop (``training_loop="on_policy"``: PPO and the like).

    Each iteration every runner samples one fragment with the current weights, GAE turns
    the fragments into ``advantages`` and ``value_targets``, and the learners train on the
    whole batch for ``num_epochs`` passes of ``minibatch_size`` rows.
    """

    lambda_: float = attrs.field(default=0.95, converter=float, validator=in_unit_interval)
    """GAE's lambda (Schulman et al. 2016): 0 is one-step TD advantages, 1 Monte-Carlo
    returns minus the value."""
    minibatch_size: int = attrs.field(default=256, validator=positive_int)
    """Rows per gradient step; at most the samples per iteration."""
    num_epochs: int = attrs.field(default=10, validator=positive_int)
    """Passes over each iteration's batch, reshuffled every pass."""

    @property
    def train_batch_size(self) -> int:
        """Samples per iteration: ``max(1, num_env_runners) * num_envs_per_env_runner *
        rollout_fragment_length``."""
        runners = max(1, self.num_env_runners)
        return runners * self.num_envs_per_env_runner * self.rollout_fragment_length

    def __attrs_post_init__(self) -> None:
        if self.minibatch_size > self.train_batch_size:
            raise ConfigError(
                f"{type(self).__name__}.minibatch_size ({self.minibatch_size}) exceeds the "
                f"samples per iteration, max(1, num_env_runners) * num_envs_per_env_runner * "
                f"rollout_fragment_length = {self.train_batch_size}; lower it or sample more"
            )


@attrs.frozen(kw_only=True)
class AsyncSettings(SamplingSettings):
    """The asynchronous loop (``training_loop="async"``: IMPALA, APPO and the like).

    Runners sample continuously with whatever weights they last received; the driver
    groups finished fragments into train batches of at least ``train_batch_size`` rows and
    hands them to ``LearnerGroup.async_update`` without waiting for each update. Rows come
    as whole fragments of ``rollout_fragment_length`` consecutive steps of one environment
    (``sequence_length`` in ``Learner.update``), so a loss can run V-trace along them.
    """

    rollout_fragment_length: int = attrs.field(default=50, validator=positive_int)
    """Steps per environment in one fragment, and the sequence length of the train batch."""
    train_batch_size: int = attrs.field(default=500, validator=positive_int)
    """Rows per learner update (whole fragments are taken until at least this many)."""
    minibatch_size: int | None = attrs.field(default=None, validator=optional_positive_int)
    """Rows per gradient step, a multiple of ``rollout_fragment_length`` (None: the whole
    train batch in one step)."""
    num_epochs: int = attrs.field(default=1, validator=positive_int)
    """Passes over each train batch."""
    broadcast_interval: int = attrs.field(default=1, validator=positive_int)
    """Send new weights to the runners after every this many learner updates."""
    max_requests_in_flight: int = attrs.field(default=2, validator=positive_int)
    """Learner updates that may run at once (``LearnerGroup(max_async_updates=...)``)."""
    learner_queue_size: int = attrs.field(default=4, validator=positive_int)
    """Train batches that may wait for the learners while they are busy."""
    learner_queue_policy: str = attrs.field(default="block")
    """What happens when the learners fall behind and the queue is full: ``"block"``
    (back-pressure: no new fragments are asked for until the learners catch up, so runners
    wait and nothing is lost) or ``"drop_oldest"`` (runners keep sampling; the oldest
    waiting batch is dropped). Dropped batches and env steps are counted and reported."""
    min_sample_timesteps_per_iteration: int = attrs.field(default=5000, validator=positive_int)
    """Env steps sampled between two reported iterations (one metrics row each)."""

    @learner_queue_policy.validator
    def _check_queue_policy(self, attribute: attrs.Attribute, value: Any) -> None:
        if value not in QUEUE_POLICIES:
            raise ConfigError(
                f"{type(self).__name__}.learner_queue_policy must be one of "
                f"{list(QUEUE_POLICIES)}, got {value!r}"
            )

    def __attrs_post_init__(self) -> None:
        if self.minibatch_size is not None and self.minibatch_size % self.rollout_fragment_length:
            raise ConfigError(
                f"{type(self).__name__}.minibatch_size ({self.minibatch_size}) must be a "
                f"multiple of rollout_fragment_length ({self.rollout_fragment_length}): "
                "minibatches are made of whole fragments"
            )


@attrs.frozen(kw_only=True)
class OfflineSettings(Hyperparameters):
    """The offline loop (``training_loop="offline"``: behaviour cloning, offline RL).

    ``learnerkit train ALGO --dataset DATASET`` trains on the episodes of a Minari dataset,
    streamed ``dataset_chunk_episodes`` at a time, for ``num_epochs`` passes, and evaluates
    the greedy policy in the dataset's environment every ``evaluation_interval`` gradient
    steps. Shuffling is global at the granularity of episodes and local for rows: every
    epoch visits the episodes in a fresh random order (so each chunk is a random sample of
    episodes), and the rows of each chunk are shuffled before they are cut into
    minibatches. Both orders are drawn from ``seed``, the epoch and the chunk, so a resumed
    run continues with the same rows.

    Offline, a timestep is a row (one transition) trained on: ``--stop-timesteps`` bounds
    the rows trained, and one epoch is as many timesteps as the dataset has steps.
    """

    train_batch_size: int = attrs.field(default=128, validator=positive_int)
    """Rows per gradient step (the last minibatch of a chunk may be smaller). With Ray
    learners each takes an equal share of every minibatch."""
    num_epochs: int = attrs.field(default=20, validator=positive_int)
    """Passes over the whole dataset; the run ends after them (or earlier at
    ``--stop-timesteps`` rows trained, or at ``--stop-reward``)."""
    dataset_chunk_episodes: int = attrs.field(default=100, validator=positive_int)
    """Episodes read into memory at once: the streaming bound. The loop holds one chunk's
    rows (plus the slice of it being trained), never the whole dataset, so memory depends
    on this setting and the episodes' length, not on the size of the dataset."""
    evaluation_interval: int = attrs.field(default=500, validator=positive_int)
    """Gradient steps between evaluations of the policy; each evaluation ends an iteration
    (one metrics row). The last iteration of a run may be shorter and is evaluated too."""
    evaluation_num_episodes: int = attrs.field(default=10, validator=non_negative_int)
    """Greedy episodes per evaluation, run side by side in the dataset's environment (or
    ``--env``); their returns fill the last-100-episode window the run reports, so
    ``--stop-reward`` works. 0 turns evaluation off (no returns are reported)."""


@attrs.frozen(kw_only=True)
class ReplaySettings(SamplingSettings):
    """The replay loop (``training_loop="replay"``: DQN, and SAC-like algorithms).

    Runners sample continuously (``EnvRunners.poll``) with the weights they last received;
    the driver adds each fragment to a replay buffer (``learnerkit.replay``: n-step returns
    computed at insertion, uniform or prioritized) and, once it holds ``learning_starts``
    sampleable rows, trains on rows drawn from it: after each fragment, one
    ``LearnerGroup.update`` of as many minibatches of ``train_batch_size`` rows as
    ``training_intensity`` makes due for the fragment's env steps (the learner's overhead is
    paid per fragment, not per minibatch), then ``additional_update(timestep=env steps
    sampled)`` (target networks, exploration schedules), and every ``broadcast_interval``
    such updates new weights to the runners. A batch holds ``obs``, ``actions``,
    ``rewards`` (the n-step return), ``new_obs``, ``terminateds``, ``discounts`` (what the
    bootstrap value is multiplied by: ``gamma ** k``, 0 after a termination), ``weights``
    (importance weights; ones when uniform) and ``batch_indexes``.
    """

    rollout_fragment_length: int = attrs.field(default=4, validator=positive_int)
    """Steps per environment in one fragment: a fragment of ``num_envs_per_env_runner *
    rollout_fragment_length`` env steps is added and trained on at a time."""
    train_batch_size: int = attrs.field(default=32, validator=positive_int)
    """Rows per gradient step (RLlib's ``train_batch_size_per_learner``; with Ray learners
    each takes an equal share of every minibatch)."""
    training_intensity: float | None = attrs.field(
        default=None, converter=optional_float, validator=positive
    )
    """RLlib's replay ratio: rows sampled from the buffer for training per env step added,
    so ``training_intensity / train_batch_size`` gradient steps per env step (fractions carry
    over from fragment to fragment). None: RLlib's "natural" value, ``train_batch_size /
    (num_envs_per_env_runner * rollout_fragment_length * max(1, num_env_runners))``, one
    gradient step per round of fragments."""
    learning_starts: int = attrs.field(default=1000, validator=non_negative_int)
    """Sampleable rows the buffer must hold before training begins (a resumed run whose
    checkpoint holds no buffer refills it this far before training again)."""
    n_step: int = attrs.field(default=1, validator=positive_int)
    """Rewards summed into each row's return before bootstrapping (n-step Q-learning); the
    buffer computes them when rows are added, never across an episode's end."""
    replay_buffer_capacity: int = attrs.field(default=50_000, validator=positive_int)
    """Transitions the buffer holds (RLlib's ``replay_buffer_config["capacity"]``); the
    oldest are evicted first."""
    prioritized_replay: bool = attrs.field(default=False, converter=bool)
    """Proportional prioritized replay (Schaul et al. 2016): rows drawn in proportion to
    ``(|TD error| + prioritized_replay_eps) ** prioritized_replay_alpha``, with importance
    weights. The algorithm's loss returns each row's TD error as the per-row value
    ``"td_error"`` (``learnerkit.hookspecs.PER_ROW``)."""
    prioritized_replay_alpha: float = attrs.field(
        default=0.6, converter=float, validator=non_negative
    )
    """How much priorities matter (0: uniform)."""
    prioritized_replay_beta: float = attrs.field(
        default=0.4, converter=float, validator=non_negative
    )
    """Importance-weight exponent at the start, annealed linearly by the loop to
    ``final_prioritized_replay_beta`` over ``prioritized_replay_beta_annealing_timesteps``
    env steps (1 corrects the sampling bias fully)."""
    final_prioritized_replay_beta: float = attrs.field(
        default=1.0, converter=float, validator=non_negative
    )
    """The importance-weight exponent at the end of annealing."""
    prioritized_replay_beta_annealing_timesteps: int = attrs.field(
        default=100_000, validator=positive_int
    )
    """Env steps over which ``prioritized_replay_beta`` moves to its final value."""
    prioritized_replay_eps: float = attrs.field(default=1e-6, converter=float, validator=positive)
    """Added to ``|TD error|`` so that no row's priority is 0."""
    broadcast_interval: int = attrs.field(default=1, validator=positive_int)
    """Send new weights to the runners after every this many learner updates (one update
    per fragment trained on)."""
    min_sample_timesteps_per_iteration: int = attrs.field(default=1000, validator=positive_int)
    """Env steps sampled between two reported iterations (one metrics row each)."""
    store_buffer_in_checkpoints: bool = attrs.field(default=False, converter=bool)
    """Save the replay buffer with every checkpoint (``loop_state.npz``; it can be
    gigabytes: ``replay_buffer_capacity`` rows of observations). Off, ``--resume`` starts
    from an empty buffer and refills it to ``learning_starts`` rows before training again."""

    @property
    def updates_per_env_step(self) -> float:
        """Gradient steps per env step sampled: ``training_intensity / train_batch_size``."""
        intensity = self.training_intensity
        if intensity is None:
            per_round = self.num_envs_per_env_runner * self.rollout_fragment_length
            intensity = self.train_batch_size / (per_round * max(1, self.num_env_runners))
        return intensity / self.train_batch_size

    def __attrs_post_init__(self) -> None:
        if self.replay_buffer_capacity <= self.n_step:
            raise ConfigError(
                f"{type(self).__name__}.replay_buffer_capacity ({self.replay_buffer_capacity}) "
                f"must exceed n_step ({self.n_step}): a row waits for its n following steps"
            )
