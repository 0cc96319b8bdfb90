"""What a loss on the asynchronous loop's fragments needs around V-trace, shared by IMPALA
and APPO (which imports these functions): time-major reshapes, V-trace on a train batch,
and the statistics both report.

A train batch holds whole fragments of T = ``rollout_fragment_length`` consecutive steps,
env by env (``Learner.update(batch, sequence_length=T)``): a flat ``[B * T]`` column becomes
``[T, B]`` with ``time_major``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from learnerkit import BatchError, Columns, ColumnSpec, Ops, PluginError
from learnerkit.loss_mask import loss_mask, masked_variance
from learnerkit.ops import Tensor
from learnerkit_impala.vtrace import LOG_RHO_BOUND, vtrace

__all__ = [
    "FRAGMENT_COLUMNS",
    "FRAGMENT_COLUMN_SPECS",
    "exp_clamped",
    "explained_variance",
    "time_major",
    "time_major_mask",
    "vtrace_on_fragments",
]

FRAGMENT_COLUMNS = (
    Columns.OBS,
    Columns.NEXT_OBS,
    Columns.ACTIONS,
    Columns.REWARDS,
    Columns.TERMINATEDS,
    Columns.TRUNCATEDS,
    Columns.ACTION_LOGP,
)
"""The columns ``vtrace_on_fragments`` and a loss on its outputs read (the sampled
``vf_preds`` and ``action_dist_inputs`` are not needed: V-trace uses current values)."""
FRAGMENT_COLUMN_SPECS = {Columns.ACTION_LOGP: ColumnSpec("float")}
"""The form of the columns of ``FRAGMENT_COLUMNS`` the host does not check itself: the
behaviour policy's log-probabilities, one float per row."""

# Keeps the explained variance finite when every target of a minibatch is equal.
_VAR_EPS = 1e-8


def time_major(x: Tensor, seq_len: int, ops: Ops) -> Tensor:
    """A flat ``[B * T]`` column of whole sequences as ``[T, B]``."""
    return ops.transpose(ops.reshape(x, (-1, seq_len)))


def time_major_mask(batch: Mapping[str, Tensor], seq_len: int, ops: Ops) -> Tensor | None:
    """The batch's ``Columns.LOSS_MASK`` as ``[T, B]`` (None when every row counts). V-trace
    runs along the whole fragment, burnt-in steps included (they are real steps); only the
    loss's means leave them out."""
    mask = loss_mask(batch)
    return None if mask is None else time_major(mask, seq_len, ops)


def vtrace_on_fragments(
    batch: Mapping[str, Tensor],
    *,
    log_rhos: Tensor,
    values: Tensor,
    next_values: Tensor | None = None,
    module: Any,
    hyperparameters: Any,
    ops: Ops,
    algorithm: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """V-trace on a train batch: ``(vs, pg_advantages, values)``, all ``[T, B]``.

    ``log_rhos`` and ``values`` are flat ``[B * T]``: the log importance weights the
    algorithm chose and the current values of ``obs``. The values of ``new_obs`` (the
    observation each step reached: an ended episode's final observation, the observation
    after a fragment's last step) come from the module's current value function, as V-trace
    needs, not from the sampled ``vf_preds``: ``next_values`` where the forward pass gave
    them (``fwd_out["next_vf_preds"]``: a recurrent module, whose ``value(obs)`` cannot know
    the state each step ended in), else ``module.value(new_obs)``.
    """
    hps = hyperparameters
    seq_len = hps.rollout_fragment_length
    _check_whole_sequences(batch[Columns.REWARDS], seq_len, algorithm)
    if next_values is None:
        if not callable(getattr(module, "value", None)):
            raise PluginError(
                f"{algorithm} needs the module's value function: {type(module).__qualname__} "
                "has no value(obs) method (the default modules have one)"
            )
        next_values = module.value(batch[Columns.NEXT_OBS])
    next_values = ops.stop_gradient(next_values)
    terminated = ops.float32(batch[Columns.TERMINATEDS])
    ended = ops.maximum(terminated, ops.float32(batch[Columns.TRUNCATEDS]))
    values_tm = time_major(values, seq_len, ops)
    vs, pg_advantages = vtrace(
        log_rhos=time_major(log_rhos, seq_len, ops),
        rewards=time_major(ops.float32(batch[Columns.REWARDS]), seq_len, ops),
        values=values_tm,
        next_values=time_major(next_values, seq_len, ops),
        discounts=time_major(hps.gamma * (1.0 - terminated), seq_len, ops),
        continues=time_major(1.0 - ended, seq_len, ops),  # the last row is a fragment end
        ops=ops,
        clip_rho_threshold=hps.vtrace_clip_rho_threshold,
        clip_pg_rho_threshold=hps.vtrace_clip_pg_rho_threshold,
        clip_c_threshold=hps.vtrace_clip_c_threshold,
        lambda_=hps.lambda_,
    )
    return vs, pg_advantages, values_tm


def exp_clamped(log_ratio: Tensor, ops: Ops) -> Tensor:
    """``exp`` of a log ratio clamped to ``[-20, 20]`` (as V-trace clamps): finite."""
    return ops.exp(ops.clip(log_ratio, -LOG_RHO_BOUND, LOG_RHO_BOUND))


def explained_variance(
    targets: Tensor, values: Tensor, ops: Ops, mask: Tensor | None = None
) -> Tensor:
    """``1 - Var(targets - values) / Var(targets)``, floored at -1 as RLlib reports it, over
    the rows ``mask`` keeps (None: all)."""
    errors = masked_variance(targets - values, mask, ops)
    ratio = errors / (masked_variance(targets, mask, ops) + _VAR_EPS)
    return ops.clip(1.0 - ratio, -1.0, 1.0)


def _check_whole_sequences(column: Tensor, seq_len: int, algorithm: str) -> None:
    # Static row count: known in torch and eager TF. Inside TF's compiled step it is None,
    # and Learner.update(sequence_length=T) has checked the batch before.
    rows = column.shape[0]
    if rows is not None and rows % seq_len:
        raise BatchError(
            f"{algorithm}'s loss got {rows} rows, not a multiple of rollout_fragment_length="
            f"{seq_len}: train on whole fragments with "
            f"learner.update(batch, sequence_length={seq_len}) and a minibatch_size that is a "
            "multiple of it"
        )
