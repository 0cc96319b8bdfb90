"""SAC (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications": twin Q,
a learnt temperature) as a learnerkit plugin trained by the replay loop
(``training_loop="replay"``), for Box actions.

The module (``sac_module``; ``torch_sac``, ``tf_sac``) holds a squashed-Gaussian policy,
the critics ``Q1``, ``Q2`` and ``log_alpha``; the host keeps a target copy of it
(``Algorithm(target_network=True)``) whose critics give the bootstrap values. On a minibatch
of the replay buffer (``obs``, ``actions``, ``rewards`` = the n-step return, ``new_obs``,
``discounts`` = ``gamma ** n`` or 0 after a termination, importance ``weights``):

1. ``a' ~ pi(new_obs)``, ``target = rewards + discounts * (min_i Q_i_target(new_obs, a') -
   alpha * log pi(a'|new_obs))``, no gradient through it;
2. ``critic_loss = sum_i mean(weights * (Q_i(obs, actions) - target)^2 / 2)``;
3. ``a ~ pi(obs)`` (reparameterised), ``actor_loss = mean(alpha * log pi(a|obs) - min_i
   Q_i(obs, a))``;
4. ``alpha_loss = -mean(log_alpha * (log pi(a|obs) + target_entropy))``.

Three optimizers (``actor`` over ``pi.*``, ``critic`` over ``qf.*`` and ``qf_twin.*``,
``alpha`` over ``log_alpha``), each stepping its own parameters with the gradient of its
own loss only (``learnerkit.OPTIMIZER_LOSSES``): the actor's loss, which runs through the
critics, never moves them, and the critics' never move the policy. All three losses are
computed on the same weights, then applied (as RLlib's SAC does; SB3 steps the critics
before computing the actor's loss).

``additional_update`` (after every learner update) moves the target critics towards the
critics by polyak averaging with ``tau`` per gradient step taken since the last move (``1 -
(1 - tau) ** k`` for k steps, applied every ``target_network_update_freq`` env steps), as
if it ran after each gradient step. Env runners act with the numpy copy of the policy
(``NumpySACPolicy``, a sample of the squashed Gaussian); evaluation takes its mean.

``update()`` reports ``critic_loss``, ``actor_loss``, ``alpha_loss``, ``total_loss`` (their
sum), ``q_mean``, ``td_error_mean``, ``entropy`` (``-log pi`` of the policy's actions) and
``alpha``; ``additional_update`` adds ``alpha`` and ``target_updates_total``.
"""

from __future__ import annotations

from typing import Any

import attrs

from learnerkit import (
    OPTIMIZER_LOSSES,
    PER_ROW,
    Algorithm,
    Columns,
    ConfigError,
    ReplaySettings,
    hookimpl,
)
from learnerkit.fields import non_negative_int, positive, positive_int
from learnerkit.replay import ReplayColumns

__all__ = ["SACHyperparameters", "algorithm"]

_LAST_TARGET_UPDATE = "timestep_at_last_target_update"
_STEPS_AT_TARGET_UPDATE = "gradient_steps_at_last_target_update"


def _in_half_open_unit_interval(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not 0.0 < value <= 1.0:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} must be in (0, 1] (1.0 copies the "
            f"critics into their targets), got {value!r}"
        )


def _target_entropy(value: Any) -> Any:
    try:
        return value if value == "auto" else float(value)
    except (TypeError, ValueError):
        return value  # refused by the validator, naming the field


@attrs.frozen(kw_only=True)
class SACHyperparameters(ReplaySettings):
    """SAC's settings, RLlib's names (``SACConfig``) where they exist; the replay settings
    (``train_batch_size``, ``training_intensity``, ``learning_starts``, ``n_step``,
    ``replay_buffer_capacity``, ``prioritized_replay``...) are ``learnerkit.ReplaySettings``'.
    The defaults are SB3's and RLlib's (256-256 ReLU networks, Adam at 3e-4, batches of 256,
    one gradient step per env step, tau 0.005)."""

    actor_lr: float = attrs.field(default=3e-4, converter=float, validator=positive)
    """The policy's Adam step size."""
    critic_lr: float = attrs.field(default=3e-4, converter=float, validator=positive)
    """The critics' Adam step size."""
    alpha_lr: float = attrs.field(default=3e-4, converter=float, validator=positive)
    """The temperature's Adam step size."""
    initial_alpha: float = attrs.field(default=1.0, converter=float, validator=positive)
    """The entropy temperature to start from; read by the module (``module_settings``)."""
    target_entropy: Any = attrs.field(default="auto", converter=_target_entropy)
    """The policy entropy the temperature is tuned towards: ``"auto"`` is ``-|A|`` (minus
    the number of action dimensions, Haarnoja et al. 2018), or a number."""
    twin_q: bool = attrs.field(default=True, converter=bool)
    """Two critics, the minimum of their values in the target and the actor's loss (clipped
    double Q, Fujimoto et al. 2018); read by the module (``module_settings``)."""
    tau: float = attrs.field(default=0.005, converter=float, validator=_in_half_open_unit_interval)
    """Polyak coefficient per gradient step: ``target <- tau * critic + (1 - tau) * target``."""
    target_network_update_freq: int = attrs.field(default=0, validator=non_negative_int)
    """Env steps sampled between two target moves (0: after every learner update); each move
    accounts for every gradient step since the last."""
    train_batch_size: int = attrs.field(default=256, validator=positive_int)
    """Rows per gradient step."""
    training_intensity: float | None = attrs.field(default=256.0, validator=positive)
    """Rows sampled for training per env step: 256 / 256 = one gradient step per env step."""
    learning_starts: int = attrs.field(default=1000, validator=non_negative_int)
    """Rows in the buffer before training begins (the policy acts untrained until then)."""
    replay_buffer_capacity: int = attrs.field(default=1_000_000, validator=positive_int)
    """Transitions the buffer holds."""

    @target_entropy.validator
    def _check_target_entropy(self, attribute: attrs.Attribute, value: Any) -> None:
        if value != "auto" and not isinstance(value, float):
            raise ConfigError(
                f"SACHyperparameters.target_entropy must be 'auto' or a number, got {value!r}"
            )

    def target_entropy_for(self, action_size: int) -> float:
        """``target_entropy``, with ``"auto"`` resolved to ``-action_size`` (``-|A|``)."""
        return -float(action_size) if self.target_entropy == "auto" else self.target_entropy


@hookimpl
def configure_optimizers(learner, module, hyperparameters, ops):
    hps = hyperparameters
    shares: dict[str, list[Any]] = {"actor": [], "critic": [], "alpha": []}
    for name, parameter in learner.named_parameters(module).items():
        if name.startswith("pi."):
            shares["actor"].append(parameter)
        elif name.startswith("qf"):
            shares["critic"].append(parameter)
        else:  # log_alpha
            shares["alpha"].append(parameter)
    rates = {"actor": hps.actor_lr, "critic": hps.critic_lr, "alpha": hps.alpha_lr}
    return {name: ops.adam(module, rates[name], parameters=shares[name]) for name in shares}


def _min(values: list[Any], ops: Any) -> Any:
    return values[0] if len(values) == 1 else ops.minimum(values[0], values[1])


@hookimpl
def compute_loss(learner, module_id, module, hyperparameters, batch, fwd_out, ops):
    hps = hyperparameters
    log_alpha = fwd_out["log_alpha"]
    alpha = ops.stop_gradient(ops.exp(log_alpha))
    # The policy's actions, drawn from the learner's generator (its state is checkpointed):
    # reparameterised at obs, without gradient at new_obs.
    u, logp_pi = module.sample(*fwd_out["pi"], learner.loss_generator)
    u_next, logp_next = module.sample(*fwd_out["pi_next"], learner.loss_generator)
    # 1. The soft bootstrap target, from the target critics at the policy's next action.
    q_next = _min(
        list(learner.target_module(module_id).q_values(batch[Columns.NEXT_OBS], u_next)), ops
    )
    soft_next = q_next - alpha * logp_next
    target = ops.stop_gradient(batch[Columns.REWARDS] + batch[ReplayColumns.DISCOUNTS] * soft_next)
    # 2. The critics' regression on it (importance-weighted under prioritized replay).
    weights = batch[ReplayColumns.WEIGHTS]
    td_errors = [q - target for q in fwd_out["q"]]
    critic_loss = sum(ops.mean(weights * 0.5 * ops.square(td)) for td in td_errors)
    # 3. The policy's loss through the critics at its own (reparameterised) actions.
    actor_loss = ops.mean(alpha * logp_pi - _min(list(module.q_values(batch[Columns.OBS], u)), ops))
    # 4. The temperature, towards the target entropy.
    target_entropy = hps.target_entropy_for(module.action_size)
    alpha_loss = -ops.mean(log_alpha * ops.stop_gradient(logp_pi + target_entropy))
    td_error = sum(ops.abs(td) for td in td_errors) / len(td_errors)
    return {
        "critic_loss": critic_loss,
        "actor_loss": actor_loss,
        "alpha_loss": alpha_loss,
        "q_mean": ops.mean(fwd_out["q"][0]),
        "td_error_mean": ops.mean(td_error),
        "entropy": -ops.mean(logp_pi),
        "alpha": alpha,
        OPTIMIZER_LOSSES: {"critic": critic_loss, "actor": actor_loss, "alpha": alpha_loss},
        PER_ROW: {"td_error": ops.stop_gradient(td_error)},
    }


@hookimpl
def additional_update(learner, module_id, module, hyperparameters, state, timestep, update_kwargs):
    hps = hyperparameters
    steps = int(update_kwargs.get("num_gradient_steps", 0))
    if steps == 0:  # called by hand, not by the replay loop: one learner update
        steps = state[_STEPS_AT_TARGET_UPDATE] + 1
    since = steps - state[_STEPS_AT_TARGET_UPDATE]
    if since > 0 and timestep - state[_LAST_TARGET_UPDATE] >= hps.target_network_update_freq:
        # tau per gradient step, for the k steps since the last move, in one move.
        learner.update_target_module(module_id, 1.0 - (1.0 - hps.tau) ** since)
        state[_LAST_TARGET_UPDATE] = timestep
        state[_STEPS_AT_TARGET_UPDATE] = steps
    return {"target_updates_total": learner.num_target_updates(module_id)}


algorithm = Algorithm(
    name="sac",
    hyperparameters=SACHyperparameters,
    frameworks=("torch", "tf"),
    required_columns=(
        Columns.OBS,
        Columns.ACTIONS,
        Columns.REWARDS,
        Columns.NEXT_OBS,
        ReplayColumns.DISCOUNTS,
        ReplayColumns.WEIGHTS,
    ),
    initial_state=lambda hps: {_LAST_TARGET_UPDATE: 0, _STEPS_AT_TARGET_UPDATE: 0},
    training_loop="replay",
    target_network=True,
    module_classes={
        "torch": "learnerkit_sac.torch_sac:TorchSACModule",
        "tf": "learnerkit_sac.tf_sac:TFSACModule",
        "numpy": "learnerkit_sac.sac_module:NumpySACPolicy",
    },
    module_settings=("twin_q", "initial_alpha"),
    env_presets={
        # Small tasks learn as well with 64-64 networks at 1e-3 (SB3's zoo step size for
        # Pendulum) as with 256-256 at 3e-4, at a third of the cost of a gradient step
        # (4.3 against 14.6 ms of CPU on this machine): bench/sac_learning.py.
        # One env sampled 32 steps at a time: episodes end one by one, not 8 at once, and an
        # update still trains 32 gradient steps (the learner's overhead paid once for them).
        "Pendulum-v1": {
            "model_config": {"hiddens": [64, 64]},
            "actor_lr": 1e-3,
            "critic_lr": 1e-3,
            "alpha_lr": 1e-3,
            "num_envs_per_env_runner": 1,
            "rollout_fragment_length": 32,
            "stop": {"reward": -200.0, "timesteps": 50_000},
        },
        "InvertedPendulum-v5": {
            "model_config": {"hiddens": [64, 64]},
            "actor_lr": 1e-3,
            "critic_lr": 1e-3,
            "alpha_lr": 1e-3,
            # Judged on the mean action's return (bench/sac_learning.py, after the
            # whole budget): with episodes of up
            # to 1,000 steps a last-100 training mean of 950 takes ~95k steps of balancing.
            "stop": {"timesteps": 30_000},
        },
        "HalfCheetah-v5": {"learning_starts": 10_000, "stop": {"timesteps": 300_000}},
    },
    description="SAC: squashed-Gaussian policy, twin Q, learnt temperature (Box actions)",
)
