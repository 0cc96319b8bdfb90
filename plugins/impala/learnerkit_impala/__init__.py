"""IMPALA (Espeholt et al. 2018), as a learnerkit plugin: an actor-critic trained on
fragments sampled by slightly older policies, corrected off-policy with V-trace.

The asynchronous loop (``training_loop="async"``) hands the Learner train batches of whole
fragments: ``learner.update(batch, sequence_length=rollout_fragment_length, ...)``, rows
``n * T`` to ``n * T + T - 1`` being T consecutive steps of one environment (see
``learnerkit.rollouts.Rollout.to_sequences``). The loss reshapes each column to time-major
``[T, B]``, computes the current values of the observations each step reached
(``new_obs``), runs V-trace (``learnerkit_impala.vtrace``, which APPO imports too) and reads
top to bottom: importance weights, V-trace targets, policy-gradient loss, value loss,
entropy bonus. The scheduled entropy coefficient lives in each module's algorithm state;
``additional_update`` steps it and checkpoints keep it.

Train with ``sequence_length`` equal to ``rollout_fragment_length``: the loss cannot tell
shuffled single rows from sequences, only a row count that is not a multiple of T.

``update()`` reports, per module: ``total_loss``, ``policy_loss``, ``vf_loss``, ``entropy``,
``mean_rho`` (the mean *unclipped* importance weight pi/mu, its log clamped to [-20, 20]: how
far the sampling policy lags behind), ``vf_explained_var`` (of the V-trace targets by the
current values) and ``entropy_coeff``; the host adds ``gradient_norm`` (before clipping),
``learning_rate`` and ``num_samples``.
"""

from __future__ import annotations

import attrs

from learnerkit import (
    Algorithm,
    AsyncSettings,
    Columns,
    hookimpl,
)
from learnerkit.coefficients import scheduled
from learnerkit.fields import (
    in_unit_interval,
    non_negative,
    non_negative_schedule,
    optional_float,
    optional_positive_int,
    positive,
    to_schedule,
)
from learnerkit.loss_mask import loss_mask, masked_mean
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
from learnerkit_impala.vtrace import vtrace

__all__ = ["IMPALAHyperparameters", "actor_critic_optimizers", "algorithm", "vtrace"]

# Keeps the explained variance finite when every target of a minibatch is equal.
_VAR_EPS = 1e-8


@attrs.frozen(kw_only=True)
class IMPALAHyperparameters(AsyncSettings):
    """IMPALA's settings. Names follow RLlib's ``IMPALAConfig``; the sampling and
    asynchronous-loop settings (``gamma``, ``rollout_fragment_length``,
    ``train_batch_size``...) are ``learnerkit.AsyncSettings``'. ``rollout_fragment_length``
    is also the loss's sequence length T.
    """

    learning_rate: float = attrs.field(default=1e-3, converter=float, validator=positive)
    """Adam step size (overridden by ``lr_schedule`` once ``additional_update`` has run).
    RLlib's tuned CartPole example uses 5e-4 with one step per batch; with four minibatch
    steps per batch (below), 1e-3 reached CartPole's 450 in 114k-286k env steps over seeds
    0-3 where 5e-4 took longer than 300k."""
    minibatch_size: int | None = attrs.field(default=200, validator=optional_positive_int)
    """Rows (whole fragments) per gradient step; None: the whole train batch in one step.
    200 (four fragments of 50) gives a fresh critic enough steps to learn returns of order
    100 early; one step per 800-row batch left its explained variance near 0 after 300k
    steps on CartPole."""
    grad_clip: float | None = attrs.field(
        default=40.0, converter=optional_float, validator=positive
    )
    """Clip each update's gradients to this global norm (None: no clipping). 40 as in RLlib's
    tuned CartPole example and the paper's Atari runs."""
    adam_epsilon: float = attrs.field(default=1e-8, converter=float, validator=positive)
    """Adam's epsilon (1e-8: torch's and RLlib's default)."""
    vf_lr_ratio: float = attrs.field(default=5.0, converter=float, validator=positive)
    """The value function's step size as a multiple of ``learning_rate``: the parameters
    named ``vf.*`` (the default modules' value tower) get an Adam optimizer of their own,
    ``"vf"``, the rest ``"pi"``; 1 keeps one optimizer for all. Adam moves each weight by
    about the step size per step whatever the loss's scale, and with four steps per 800 env
    steps a value tower at 1e-3 took ~200k CartPole steps to reach returns of ~100 (its
    explained variance stayed near 0, so the policy gradient had no baseline to speak of).
    At 5x, CartPole-v1 reached 450 in a median of 94k env steps over seeds 0-16 (was
    ~170k), and seed 13, which at 1x collapsed to a deterministic policy, in 78k. A module
    with no ``vf.*`` parameters keeps one optimizer (with a warning)."""

    # The loss ---------------------------------------------------------------------------
    vf_loss_coeff: float = attrs.field(default=0.5, converter=float, validator=non_negative)
    """Weight of the value loss ``0.5 * mean((vs - V)^2)`` in the total loss (the paper's
    baseline cost, 0.5 there and in RLlib)."""
    entropy_coeff: float = attrs.field(default=0.0, converter=float, validator=non_negative)
    """Weight of the entropy bonus; larger keeps the policy exploring longer. 0 as in
    RLlib's tuned CartPole IMPALA: with 2 Ray env runners, CartPole-v1 reached 450 in
    120k-187k env steps over seeds 1-8, against 114k-385k with 0.01 (and one run of seed 1
    in six missing 500k)."""
    entropy_coeff_schedule: tuple[tuple[int, float], ...] | None = attrs.field(
        default=None, converter=to_schedule, validator=non_negative_schedule
    )
    """Piecewise-linear ``[[timestep, coeff], ...]`` over env steps, starting at 0; replaces
    ``entropy_coeff`` when set. Stepped by ``additional_update(timestep=...)``."""
    vtrace_clip_rho_threshold: float | None = attrs.field(
        default=1.0, converter=optional_float, validator=positive
    )
    """rho-bar: cap on the importance weights in V-trace's TD errors. It picks the policy whose
    value V-trace learns, between the behaviour policy (near 0) and the target (infinity);
    None: no cap."""
    vtrace_clip_pg_rho_threshold: float | None = attrs.field(
        default=1.0, converter=optional_float, validator=positive
    )
    """Cap on the importance weights of the policy-gradient advantages; None: no cap."""
    vtrace_clip_c_threshold: float | None = attrs.field(
        default=1.0, converter=optional_float, validator=positive
    )
    """c-bar: cap on V-trace's trace coefficients, how far back a TD error propagates (the
    paper assumes ``c-bar <= rho-bar``). RLlib hard-codes 1.0; None: no cap."""
    lambda_: float = attrs.field(default=1.0, converter=float, validator=in_unit_interval)
    """Scales V-trace's trace coefficients (``c_t = lambda_ * min(c-bar, rho_t)``): 1 keeps
    the full multi-step targets, lower values cut their variance (RLlib's ``lambda_``)."""


def initial_state(hps: IMPALAHyperparameters) -> dict[str, float]:
    """Each module starts with the entropy coefficient its schedule gives at timestep 0."""
    return {"entropy_coeff": scheduled(hps.entropy_coeff_schedule, hps.entropy_coeff, 0)}


@hookimpl
def configure_optimizers(learner, module_id, module, hyperparameters, ops):
    return actor_critic_optimizers(learner, module_id, module, hyperparameters, ops, "IMPALA")


@hookimpl
def compute_loss(module, hyperparameters, batch, fwd_out, state, ops):
    hps = hyperparameters
    dist = module.action_dist(fwd_out[Columns.ACTION_DIST_INPUTS])
    target_logp = dist.logp(batch[Columns.ACTIONS])  # the current policy is V-trace's target
    log_rhos = target_logp - batch[Columns.ACTION_LOGP]
    vs, pg_advantages, values = vtrace_on_fragments(
        batch,
        log_rhos=log_rhos,
        values=fwd_out[Columns.VF_PREDS],
        next_values=fwd_out.get(Columns.NEXT_VF_PREDS),
        module=module,
        hyperparameters=hps,
        ops=ops,
        algorithm="IMPALA",
    )
    seq_len = hps.rollout_fragment_length
    # Burn-in (lstm_burn_in): the rows that only warmed the state up count in no mean.
    mask, mask_tm = loss_mask(batch), time_major_mask(batch, seq_len, ops)
    pg_loss = -masked_mean(time_major(target_logp, seq_len, ops) * pg_advantages, mask_tm, ops)
    vf_loss = 0.5 * masked_mean(ops.square(vs - values), mask_tm, ops)
    entropy = masked_mean(dist.entropy(), mask, ops)
    total_loss = pg_loss + hps.vf_loss_coeff * vf_loss - state["entropy_coeff"] * entropy
    return {
        "total_loss": total_loss,
        "policy_loss": pg_loss,
        "vf_loss": vf_loss,
        "entropy": entropy,
        # Unclipped (log clamped as in vtrace): how far the behaviour policy lags behind.
        "mean_rho": masked_mean(exp_clamped(log_rhos, ops), mask, ops),
        "vf_explained_var": explained_variance(vs, ops.stop_gradient(values), ops, mask_tm),
    }


@hookimpl
def additional_update(hyperparameters, state, timestep):
    state["entropy_coeff"] = scheduled(
        hyperparameters.entropy_coeff_schedule, hyperparameters.entropy_coeff, timestep
    )
    return {"entropy_coeff": float(state["entropy_coeff"])}


@hookimpl
def compile_results(state):
    return {"entropy_coeff": float(state["entropy_coeff"])}


algorithm = Algorithm(
    name="impala",
    hyperparameters=IMPALAHyperparameters,
    frameworks=("torch", "tf"),
    reads_loss_mask=True,  # burn-in (lstm_burn_in) leaves rows out of every mean
    training_loop="async",
    required_columns=FRAGMENT_COLUMNS,
    column_specs=FRAGMENT_COLUMN_SPECS,
    initial_state=initial_state,
    env_presets={
        "CartPole-v1": {"stop": {"reward": 450.0, "timesteps": 500_000}},
        "learnerkit/StatelessCartPole-v1": {
            # An LSTM (issue 23); max_seq_len divides the fragments the loss trains on.
            # A last-100 mean of 300 in 66k, 61k, 92k env steps (seeds 0-2, 7-10 s here).
            "num_envs_per_env_runner": 8,
            "rollout_fragment_length": 64,
            "train_batch_size": 512,
            "minibatch_size": 256,
            "gamma": 0.98,
            "normalize_observations": True,
            "model_config": {
                "use_lstm": True,
                "lstm_cell_size": 64,
                "max_seq_len": 32,
                "hiddens": [64],
            },
            "stop": {"reward": 300.0, "timesteps": 1_000_000},
        },
    },
    requires_api=">=0.2",
    description="IMPALA: asynchronous actor-critic with V-trace off-policy correction",
)
