"""PPO's loss terms as pure functions over ``ops``, so one definition serves torch and
TensorFlow.

Every function takes per-sample tensors of one shape ``[B]`` and returns per-sample (or
scalar) tensors; none reads a hyperparameter object or a batch, so each can be tested
alone. Those that average take the minibatch's ``mask`` (``Columns.LOSS_MASK``: burn-in;
None: every row counts). Names follow the paper (Schulman et al. 2017, "Proximal Policy Optimization
Algorithms") and CleanRL's ``ppo.py``.
"""

from __future__ import annotations

from learnerkit import BatchError, Ops
from learnerkit.loss_mask import masked_mean, masked_variance
from learnerkit.ops import Tensor

__all__ = [
    "check_same_shape",
    "clip_fraction",
    "clipped_surrogate",
    "explained_variance",
    "normalize_advantages",
    "vf_loss_clipped_around_old_value",
    "vf_loss_squared_error_clamped",
]

# Keeps the advantage normalisation finite when every advantage of a minibatch is equal.
_NORM_EPS = 1e-8


def check_same_shape(**tensors: Tensor) -> None:
    """Raise a BatchError unless all ``tensors`` have the same (known) shape.

    PPO's terms are element-wise products of columns; a ``[B, 1]`` value head against a
    ``[B]`` target would silently broadcast to ``[B, B]`` and train on nonsense.
    """
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        detail = ", ".join(f"{name} {list(shape)}" for name, shape in shapes.items())
        raise BatchError(
            f"PPO loss terms need per-sample tensors of one shape [B], got {detail}; "
            "squeeze the value head's last axis and keep one row per sample"
        )


def normalize_advantages(advantages: Tensor, ops: Ops, mask: Tensor | None = None) -> Tensor:
    """Advantages shifted to mean 0 and scaled to standard deviation 1 over the minibatch.

    As Stable-Baselines3 does per minibatch: the policy step size then no longer depends on
    the reward scale. A minibatch of one row normalises to 0 (it carries no ranking).
    """
    centred = advantages - masked_mean(advantages, mask, ops)
    return centred / (ops.sqrt(masked_variance(advantages, mask, ops)) + _NORM_EPS)


def clipped_surrogate(
    logp_ratio: Tensor, advantages: Tensor, clip_param: float, ops: Ops
) -> Tensor:
    """The clipped surrogate objective per sample (paper, eq. 7), to be *maximised*:

    ``min(r * A, clip(r, 1 - clip_param, 1 + clip_param) * A)`` with ``r = pi / pi_old``.
    """
    clipped_ratio = ops.clip(logp_ratio, 1.0 - clip_param, 1.0 + clip_param)
    return ops.minimum(advantages * logp_ratio, advantages * clipped_ratio)


def vf_loss_squared_error_clamped(
    values: Tensor, value_targets: Tensor, vf_clip_param: float | None, ops: Ops
) -> Tensor:
    """RLlib's value loss per sample: the squared error, clamped at ``vf_clip_param``.

    Note what this clamps: the *loss*, not the value. A sample whose squared error exceeds
    ``vf_clip_param`` contributes a constant, hence no gradient, so ``vf_clip_param`` must
    be large next to the squared returns (RLlib's ``ppo.py`` documents the same caveat).
    ``None`` leaves the squared error unclamped.
    """
    squared_error = ops.square(values - value_targets)
    if vf_clip_param is None:
        return squared_error
    return ops.clip(squared_error, 0.0, vf_clip_param)


def vf_loss_clipped_around_old_value(
    values: Tensor,
    old_values: Tensor,
    value_targets: Tensor,
    vf_clip_param: float | None,
    ops: Ops,
) -> Tensor:
    """The PPO2 / Stable-Baselines3 value loss per sample: the prediction may move at most
    ``vf_clip_param`` away from the value recorded while sampling (``old_values``), and the
    larger (pessimistic) of the clipped and unclipped squared errors is used:

    ``max((v - t)^2, (old_v + clip(v - old_v, -c, c) - t)^2)``. ``None`` disables clipping.
    """
    squared_error = ops.square(values - value_targets)
    if vf_clip_param is None:
        return squared_error
    values_clipped = old_values + ops.clip(values - old_values, -vf_clip_param, vf_clip_param)
    return ops.maximum(squared_error, ops.square(values_clipped - value_targets))


def explained_variance(
    value_targets: Tensor, values: Tensor, ops: Ops, mask: Tensor | None = None
) -> Tensor:
    """``1 - Var(targets - values) / Var(targets)``, floored at -1 as RLlib reports it.

    1 is a perfect value function, 0 one no better than a constant.
    """
    errors = masked_variance(value_targets - values, mask, ops)
    ratio = errors / (masked_variance(value_targets, mask, ops) + _NORM_EPS)
    return ops.clip(1.0 - ratio, -1.0, 1.0)


def clip_fraction(
    logp_ratio: Tensor, clip_param: float, ops: Ops, mask: Tensor | None = None
) -> Tensor:
    """The fraction of samples whose probability ratio left ``[1 - c, 1 + c]``."""
    return masked_mean(ops.float32(ops.abs(logp_ratio - 1.0) > clip_param), mask, ops)
