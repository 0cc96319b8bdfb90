"""APPO (asynchronous PPO; "IMPACT", Luo et al. 2020), as a learnerkit plugin: IMPALA's
V-trace with PPO's clipped surrogate, measured against a slowly moving *target network*.

Trained by the asynchronous loop like IMPALA (``training_loop="async"``): train batches of
whole fragments, ``learner.update(batch, sequence_length=rollout_fragment_length, ...)``.
The loss follows RLlib's new-stack ``APPOTorchLearner.compute_loss_for_module`` (Ray 2.4x),
written again over ``ops``; it imports IMPALA's V-trace functions
(``learnerkit_impala.fragments``) and inherits nothing.

Three policies meet in the loss, each scoring the sampled action ``a`` of every row:

- mu, the *behaviour* policy that sampled it (``action_logp`` in the batch);
- pi_target, the *target network* (``learner.target_module(module_id)``), a copy of the
  module that ``additional_update`` moves towards it every ``target_network_update_freq``
  learner updates (polyak, ``tau``; 1.0 is a hard copy); no gradient flows into it;
- pi, the *current* module being trained.

The loss, reading top to bottom (means over the minibatch's rows, time-major ``[T, B]``
where V-trace needs it):

1. V-trace between target and behaviour (RLlib's choice; IMPALA uses pi instead of
   pi_target): ``log_rhos = log pi_target(a) - log mu(a)``, with the current values V of
   ``obs`` and of ``new_obs`` -> targets ``vs`` and advantages ``A`` (rho-bar,
   pg-rho-bar and c-bar caps as in IMPALA; see ``learnerkit_impala.vtrace``).
2. The importance ratio of the surrogate, RLlib's "target-worker clipping" (IMPACT eq. 5):
   ``is_ratio = clip(mu(a) / pi_target(a), 0, target_worker_clipping)`` (no gradient) and
   ``ratio = is_ratio * pi(a) / mu(a)``. While ``is_ratio`` is not clipped this is
   ``pi(a) / pi_target(a)``: the trust region is centred on the target network, not on the
   (possibly much older) behaviour policy. Both log differences are clamped to
   ``[-20, 20]`` before exponentiating (as ``vtrace`` does) so that no ``inf * 0`` can make
   a NaN; RLlib does not clamp them.
3. ``policy_loss = -mean(min(ratio * A, clip(ratio, 1 - clip_param, 1 + clip_param) * A))``.
4. ``vf_loss = 0.5 * mean((V - vs)^2)``.
5. ``entropy = mean(H(pi))``.
6. ``mean_kl = mean(KL(pi_target || pi))``, reported always, added to the loss only with
   ``use_kl_loss``.

``total_loss = policy_loss + vf_loss_coeff * vf_loss - entropy_coeff * entropy
(+ kl_coeff * mean_kl)``.

Differs from RLlib's loss: RLlib multiplies its V-trace discounts by ``lambda_``, which
also shortens the bootstrap horizon to ``gamma * lambda_``; here ``lambda_`` scales the
trace coefficients (``c_t = lambda_ * min(c-bar, rho_t)``, the IMPALA paper's remark), so
the targets stay estimates of the ``gamma``-discounted value. Equal at the default 1.0. Its
loss mask is left out (the loop sends no padding).

``additional_update`` (every ``broadcast_interval`` finished updates in the asynchronous
loop) steps the entropy schedule, updates the target network once at least
``target_network_update_freq`` learner updates have passed since the last target update,
and, with ``use_kl_loss``, adapts ``kl_coeff`` from ``sampled_kl_values[module_id]`` (the
mean ``mean_kl`` of the updates since the last call): x1.5 above ``2 * kl_target``, x0.5
below ``kl_target / 2``, then clipped to ``kl_coeff_bounds``. Like RLlib's new stack (its
``APPOLearner.after_gradient_based_update``) the coefficient adapts on every call, whether
or not the target network moved; RLlib's old stack adapted it only with target updates.

``update()`` reports, per module: ``total_loss``, ``policy_loss``, ``vf_loss``, ``entropy``,
``mean_kl``, ``mean_ratio`` (the surrogate's ratio, before clipping), ``clip_fraction``
(rows whose ratio left ``[1 - clip_param, 1 + clip_param]``), ``vf_explained_var``,
``kl_coeff``, ``entropy_coeff`` and ``target_updates_total``; the host adds
``gradient_norm`` (before clipping), ``learning_rate`` and ``num_samples``.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
from learnerkit_impala.fragments import (
    FRAGMENT_COLUMN_SPECS,
    FRAGMENT_COLUMNS,
    exp_clamped,
    explained_variance,
    time_major,
    time_major_mask,
    vtrace_on_fragments,
)
from learnerkit_impala.optimizers import actor_critic_optimizers

from learnerkit import (
    Algorithm,
    AsyncSettings,
    Columns,
    ConfigError,
    hookimpl,
)
from learnerkit.coefficients import adapted_kl_coeff, scheduled
from learnerkit.fields import (
    in_unit_interval,
    non_negative,
    non_negative_schedule,
    optional_float,
    optional_positive_int,
    positive,
    positive_int,
    to_schedule,
)
from learnerkit.loss_mask import loss_mask, masked_mean

__all__ = ["APPOHyperparameters", "algorithm"]

# The algorithm-state key holding learner.num_updates(module_id) at the last target update.
_LAST_TARGET_UPDATE = "num_updates_at_last_target_update"


def _in_half_open_unit_interval(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not 0.0 < value <= 1.0:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} must be in (0, 1] (1.0 copies the "
            f"module into the target network), got {value!r}"
        )


def _to_bounds(value: Any) -> Any:
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return value  # the validator says what is wrong


def _check_bounds(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    ok = (
        isinstance(value, tuple)
        and len(value) == 2
        and all(math.isfinite(v) and v > 0 for v in value)
        and value[0] < value[1]
    )
    if not ok:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} must be two finite numbers "
            f"0 < min < max, got {value!r}"
        )


@attrs.frozen(kw_only=True)
class APPOHyperparameters(AsyncSettings):
    """APPO's settings. Names follow RLlib's ``APPOConfig``; the sampling and
    asynchronous-loop settings (``gamma``, ``rollout_fragment_length``,
    ``train_batch_size``...) are ``learnerkit.AsyncSettings``'. ``rollout_fragment_length``
    is also the loss's sequence length T.
    """

    learning_rate: float = attrs.field(default=1e-3, converter=float, validator=positive)
    """Adam step size (overridden by ``lr_schedule`` once ``additional_update`` has run).
    IMPALA's default, a starting point (RLlib's APPO uses 5e-4 with one step per batch)."""
    minibatch_size: int | None = attrs.field(default=200, validator=optional_positive_int)
    """Rows (whole fragments) per gradient step; None: the whole train batch in one step.
    IMPALA's default, a starting point."""
    grad_clip: float | None = attrs.field(
        default=40.0, converter=optional_float, validator=positive
    )
    """Clip each update's gradients to this global norm (None: no clipping); RLlib's 40."""
    adam_epsilon: float = attrs.field(default=1e-8, converter=float, validator=positive)
    """Adam's epsilon (1e-8: torch's default)."""
    vf_lr_ratio: float = attrs.field(default=5.0, converter=float, validator=positive)
    """The value tower's step size as a multiple of ``learning_rate`` (its own Adam
    optimizer, ``"vf"``; 1: one optimizer), as IMPALA's (``learnerkit_impala.optimizers``).
    CartPole-v1 reached 450 in 99k-161k env steps over seeds 0-5 at 5x (125k-260k at 1x);
    the Pendulum preset uses 3."""

    # The loss ---------------------------------------------------------------------------
    clip_param: float = attrs.field(default=0.4, converter=float, validator=positive)
    """How far the surrogate's ratio (about ``pi / pi_target``) may move from 1 before the
    surrogate stops rewarding the move; RLlib's APPO default 0.4."""
    target_worker_clipping: float | None = attrs.field(
        default=2.0, converter=optional_float, validator=positive
    )
    """Cap on ``mu / pi_target`` in the surrogate's ratio (IMPACT's rho, 2.0 there and in
    RLlib); None: no cap."""
    vf_loss_coeff: float = attrs.field(default=0.5, converter=float, validator=non_negative)
    """Weight of the value loss ``0.5 * mean((vs - V)^2)`` in the total loss."""
    entropy_coeff: float = attrs.field(default=0.0, converter=float, validator=non_negative)
    """Weight of the entropy bonus; larger keeps the policy exploring longer. 0 as in
    RLlib's tuned CartPole APPO: on CartPole-v1 it reached 450 in 125k-260k env steps over
    seeds 0-4 (median 156k), against 187k-400k with 0.01."""
    entropy_coeff_schedule: tuple[tuple[int, float], ...] | None = attrs.field(
        default=None, converter=to_schedule, validator=non_negative_schedule
    )
    """Piecewise-linear ``[[timestep, coeff], ...]`` over env steps, starting at 0; replaces
    ``entropy_coeff`` when set. Stepped by ``additional_update(timestep=...)``."""
    vtrace_clip_rho_threshold: float | None = attrs.field(
        default=1.0, converter=optional_float, validator=positive
    )
    """rho-bar: cap on ``pi_target / mu`` in V-trace's TD errors; None: no cap."""
    vtrace_clip_pg_rho_threshold: float | None = attrs.field(
        default=1.0, converter=optional_float, validator=positive
    )
    """Cap on ``pi_target / mu`` in the V-trace advantages; None: no cap."""
    vtrace_clip_c_threshold: float | None = attrs.field(
        default=1.0, converter=optional_float, validator=positive
    )
    """c-bar: cap on V-trace's trace coefficients (RLlib hard-codes 1.0); None: no cap."""
    lambda_: float = attrs.field(default=1.0, converter=float, validator=in_unit_interval)
    """Scales V-trace's trace coefficients (``c_t = lambda_ * min(c-bar, rho_t)``): 1 keeps
    the full multi-step targets, lower values cut their variance (RLlib's ``lambda_``)."""

    # KL penalty -------------------------------------------------------------------------
    use_kl_loss: bool = attrs.field(default=False, converter=bool)
    """Add ``kl_coeff * KL(pi_target || pi)`` to the loss, ``kl_coeff`` adapted towards
    ``kl_target``. Off by default, as in RLlib: the clipped surrogate already keeps the
    policy near the target network."""
    kl_coeff: float = attrs.field(default=1.0, converter=float, validator=positive)
    """Initial KL coefficient (RLlib's 1.0); must lie within ``kl_coeff_bounds``."""
    kl_target: float = attrs.field(default=0.01, converter=float, validator=positive)
    """The KL the adaptive coefficient aims at: x1.5 when the sampled KL exceeds
    ``2 * kl_target``, x0.5 when it falls below ``kl_target / 2`` (RLlib's rule)."""
    kl_coeff_bounds: tuple[float, float] = attrs.field(
        default=(1e-4, 100.0), converter=_to_bounds, validator=_check_bounds
    )
    """``(min, max)`` the adapted ``kl_coeff`` is clipped to. RLlib leaves it unbounded, and
    on Pendulum its coefficient wandered from 1e-31 to 2.4e7: a penalty that weighs nothing
    or everything, and takes dozens of steps to come back."""

    # Target network ---------------------------------------------------------------------
    tau: float = attrs.field(default=1.0, converter=float, validator=_in_half_open_unit_interval)
    """Target update ``target <- tau * module + (1 - tau) * target``; 1.0 (RLlib's default)
    copies the module."""
    target_network_update_freq: int = attrs.field(default=2, validator=positive_int)
    """Learner updates (``update()`` calls, each one train batch) between target updates,
    checked at each ``additional_update``. RLlib's default is also 2, but counted in units of
    ``circular_buffer_num_batches * circular_buffer_iterations_per_batch`` train batches
    (4 * 2 by default, so 16 learner updates there); to be tuned."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        low, high = self.kl_coeff_bounds
        if not low <= self.kl_coeff <= high:
            raise ConfigError(
                f"APPOHyperparameters.kl_coeff ({self.kl_coeff}) must lie within "
                f"kl_coeff_bounds {list(self.kl_coeff_bounds)}; change one or the other"
            )


def initial_state(hps: APPOHyperparameters) -> dict[str, float]:
    """Each module starts with the configured KL coefficient, the entropy coefficient its
    schedule gives at timestep 0, and no target update yet (the target starts as a copy)."""
    return {
        "kl_coeff": hps.kl_coeff,
        "entropy_coeff": scheduled(hps.entropy_coeff_schedule, hps.entropy_coeff, 0),
        _LAST_TARGET_UPDATE: 0,
    }


@hookimpl
def configure_optimizers(learner, module_id, module, hyperparameters, ops):
    return actor_critic_optimizers(learner, module_id, module, hyperparameters, ops, "APPO")


@hookimpl
def compute_loss(learner, module_id, module, hyperparameters, batch, fwd_out, state, ops):
    hps = hyperparameters
    seq_len = hps.rollout_fragment_length
    actions = batch[Columns.ACTIONS]
    dist = module.action_dist(fwd_out[Columns.ACTION_DIST_INPUTS])
    logp = dist.logp(actions)  # pi, the current policy
    # pi_target: the target network's forward pass, outside the gradient. A plain call, so
    # it traces inside TF's compiled step (autograph off) as it runs eagerly in torch.
    target = learner.target_module(module_id)
    # The whole batch: a recurrent target reads its state columns too (hookspecs).
    target_inputs = target.forward_train(batch)
    target_dist = module.action_dist(ops.stop_gradient(target_inputs[Columns.ACTION_DIST_INPUTS]))
    target_logp = target_dist.logp(actions)
    behaviour_logp = batch[Columns.ACTION_LOGP]  # mu

    # 1. V-trace between the target network and the behaviour policy, as RLlib runs it.
    vs, pg_advantages, values_tm = vtrace_on_fragments(
        batch,
        log_rhos=target_logp - behaviour_logp,
        values=fwd_out[Columns.VF_PREDS],
        next_values=fwd_out.get(Columns.NEXT_VF_PREDS),
        module=module,
        hyperparameters=hps,
        ops=ops,
        algorithm="APPO",
    )

    # 2. The surrogate's ratio: mu/pi_target (capped, no gradient) times pi/mu.
    is_ratio = ops.stop_gradient(exp_clamped(behaviour_logp - target_logp, ops))
    if hps.target_worker_clipping is not None:
        is_ratio = ops.clip(is_ratio, 0.0, hps.target_worker_clipping)
    ratio = time_major(is_ratio * exp_clamped(logp - behaviour_logp, ops), seq_len, ops)

    # 3-6. Clipped surrogate, value loss, entropy bonus, KL(target || current); with burn-in
    # (lstm_burn_in) over the rows that did not only warm the state up.
    mask, mask_tm = loss_mask(batch), time_major_mask(batch, seq_len, ops)
    clipped_ratio = ops.clip(ratio, 1.0 - hps.clip_param, 1.0 + hps.clip_param)
    surrogate = ops.minimum(ratio * pg_advantages, clipped_ratio * pg_advantages)
    pg_loss = -masked_mean(surrogate, mask_tm, ops)
    vf_loss = 0.5 * masked_mean(ops.square(vs - values_tm), mask_tm, ops)
    entropy = masked_mean(dist.entropy(), mask, ops)
    mean_kl = masked_mean(target_dist.kl(dist), mask, ops)

    total_loss = pg_loss + hps.vf_loss_coeff * vf_loss - state["entropy_coeff"] * entropy
    if hps.use_kl_loss:
        total_loss = total_loss + state["kl_coeff"] * mean_kl
    return {
        "total_loss": total_loss,
        "policy_loss": pg_loss,
        "vf_loss": vf_loss,
        "entropy": entropy,
        "mean_kl": mean_kl,
        "mean_ratio": masked_mean(ops.stop_gradient(ratio), mask_tm, ops),
        "clip_fraction": masked_mean(
            ops.float32(ops.abs(ratio - 1.0) > hps.clip_param), mask_tm, ops
        ),
        "vf_explained_var": explained_variance(vs, ops.stop_gradient(values_tm), ops, mask_tm),
    }


@hookimpl
def additional_update(learner, module_id, hyperparameters, state, timestep, update_kwargs):
    hps = hyperparameters
    state["entropy_coeff"] = scheduled(hps.entropy_coeff_schedule, hps.entropy_coeff, timestep)

    num_updates = learner.num_updates(module_id)
    if num_updates - int(state[_LAST_TARGET_UPDATE]) >= hps.target_network_update_freq:
        learner.update_target_module(module_id, hps.tau)
        state[_LAST_TARGET_UPDATE] = num_updates

    sampled_kl = update_kwargs.get("sampled_kl_values", {}).get(module_id)
    if hps.use_kl_loss and sampled_kl is not None:
        kl_coeff = adapted_kl_coeff(state["kl_coeff"], sampled_kl, hps.kl_target)
        low, high = hps.kl_coeff_bounds
        state["kl_coeff"] = min(max(kl_coeff, low), high)
    return _coefficients(learner, module_id, state)


@hookimpl
def compile_results(learner, module_id, state):
    return _coefficients(learner, module_id, state)


def _coefficients(learner, module_id, state) -> dict[str, float]:
    return {
        "kl_coeff": float(state["kl_coeff"]),
        "entropy_coeff": float(state["entropy_coeff"]),
        "target_updates_total": learner.num_target_updates(module_id),
    }


algorithm = Algorithm(
    name="appo",
    hyperparameters=APPOHyperparameters,
    frameworks=("torch", "tf"),
    reads_loss_mask=True,  # burn-in (lstm_burn_in) leaves rows out of every mean
    training_loop="async",
    target_network=True,
    required_columns=FRAGMENT_COLUMNS,
    column_specs=FRAGMENT_COLUMN_SPECS,
    initial_state=initial_state,
    env_presets={
        "CartPole-v1": {"stop": {"reward": 450.0, "timesteps": 500_000}},
        # After RLlib's tuned Pendulum APPO (gamma 0.95, lambda 0.5, KL loss towards 0.04,
        # several passes per batch), with normalised observations as the PPO preset uses.
        # With the value tower at 3x the step size, seeds 0, 1 and 2 reached -250 after
        # 342k, 269k and 269k env steps (at 1x: seed 0 stalled at -365 within 1M, seeds 1
        # and 2 took 627k and 442k; at 5x seed 1 stalled at -394, 0 and 2 took 207k and
        # 196k); without the KL loss or with 8 envs, one seed in two failed.
        "Pendulum-v1": {
            "vf_lr_ratio": 3.0,
            "gamma": 0.95,
            "lambda_": 0.5,
            "use_kl_loss": True,
            "kl_target": 0.04,
            "num_epochs": 4,
            "num_envs_per_env_runner": 16,
            "normalize_observations": True,
            "stop": {"reward": -250.0, "timesteps": 1_000_000},
        },
    },
    requires_api=">=0.2",
    description="APPO: asynchronous PPO with V-trace, a clipped surrogate against a target "
    "network, and an optional adaptive KL penalty",
)
