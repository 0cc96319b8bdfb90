"""V-trace (Espeholt et al. 2018, "IMPALA", section 4.1): off-policy value targets and
policy-gradient advantages along sequences sampled by an older (behaviour) policy.

One pure function over ``ops``, so torch and TensorFlow share it, and IMPALA and APPO
import it (a function, not a base class). Inputs are time-major ``[T, B]``: B sequences
(fragments) of T consecutive steps of one environment each.

Episode and fragment boundaries are explicit inputs, not inferred from the layout:

- ``next_values[t]`` is V(next_obs[t]) under the *current* value function. A time limit
  inside a fragment then bootstraps from the value of the episode's final observation, and a
  fragment cut by the runner from the value of the observation after its last step.
- ``discounts[t] = gamma * (1 - terminated[t])``: nothing is bootstrapped across a
  termination.
- ``continues[t]`` is 1 while the sequence goes on into the same episode at ``t + 1``, and
  0 when the episode ended at ``t`` (terminated or truncated). The last row is always a
  fragment end: ``continues[T - 1]`` is ignored and treated as 0, so the recursion never
  runs from one sequence into the next.

The fragment-end bug this layout avoids: RLlib 2.60 appends one extra "bootstrap" slot to
each fragment, holding the value of the observation after the cut, and runs the recursion
through it as if it were an ordinary step with reward 0 and nothing after it. The slot's
importance weight is not zeroed, so its TD error (``0 - V``) flows back into the previous
step with weight ``gamma * c`` and cancels the ``gamma * V`` bootstrap that step just added:
a fragment cut by the runner is learnt as if the episode had terminated there. With rewards
1, gamma 0.99, values 0 and a bootstrap value of 10, on-policy, the targets of a three-step
fragment come out as [2.97, 1.99, 1.0] instead of the correct [12.67, 11.79, 10.9]. Here the
bootstrap value is the last row's ``next_values`` and no slot is appended.
"""

from __future__ import annotations

from collections import Counter

from learnerkit import BatchError, Ops
from learnerkit.ops import Tensor

__all__ = ["LOG_RHO_BOUND", "vtrace"]

LOG_RHO_BOUND = 20.0
"""Log importance weights are clamped to ``[-20, 20]`` before exponentiating: a behaviour
action the current policy finds (nearly) impossible, or the reverse, would otherwise give
``exp(+-1000)``, an infinite weight or a NaN where it is multiplied by 0."""

_ARGUMENTS = ("log_rhos", "rewards", "values", "next_values", "discounts", "continues")


def vtrace(
    *,
    log_rhos: Tensor,
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    discounts: Tensor,
    continues: Tensor,
    ops: Ops,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    clip_c_threshold: float | None = 1.0,
    lambda_: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """V-trace targets ``vs`` and policy-gradient advantages, both ``[T, B]``, gradients
    stopped.

    :param log_rhos: ``log pi(a_t|x_t) - log mu(a_t|x_t)``, target minus behaviour policy.
    :param rewards: ``r_t``.
    :param values: ``V(x_t)`` under the current value function.
    :param next_values: ``V(next_obs_t)`` under the current value function (see the module
        docstring: the final observation of an ended episode, the observation after a cut).
    :param discounts: ``gamma * (1 - terminated_t)``.
    :param continues: ``1 - (terminated_t or truncated_t)``; the last row is ignored (a
        fragment end).
    :param ops: the backend's array functions.
    :param clip_rho_threshold: rho-bar, caps the importance weight in the TD errors (the
        fixed point's policy); None: no cap.
    :param clip_pg_rho_threshold: caps the importance weight of the policy-gradient
        advantages; None: no cap.
    :param clip_c_threshold: c-bar, caps the trace coefficients (the contraction speed;
        the paper assumes ``c-bar <= rho-bar``); None: no cap.
    :param lambda_: scales the trace coefficients, ``c_t = lambda_ * min(c-bar, rho_t)``
        (the paper's remark on Retrace-style lambda, RLlib's ``lambda_``): 1 keeps the full
        multi-step targets, lower values cut their variance (and lean on the critic).
    :return: ``(vs, pg_advantages)``, with

        ``delta_t = rho_t (r_t + discounts_t next_values_t - values_t)``,
        ``vs_t = values_t + delta_t + discounts_t c_t continues_t (vs_{t+1} - values_{t+1})``,
        ``pg_advantages_t = rho^pg_t (r_t + discounts_t vs'_t - values_t)``, where
        ``vs'_t = vs_{t+1}`` if the sequence continues and ``next_values_t`` otherwise.
    :raises BatchError: unless every tensor has the same static shape ``[T, B]`` with T known.
    """
    arguments = dict(
        zip(_ARGUMENTS, (log_rhos, rewards, values, next_values, discounts, continues), strict=True)
    )
    num_steps = _check_time_major(arguments)
    sg = ops.stop_gradient
    log_rhos = ops.clip(sg(log_rhos), -LOG_RHO_BOUND, LOG_RHO_BOUND)
    values, next_values = sg(values), sg(next_values)
    rhos = ops.exp(log_rhos)
    clipped_rhos = _cap(rhos, clip_rho_threshold, ops)
    cs = lambda_ * _cap(rhos, clip_c_threshold, ops)
    pg_rhos = _cap(rhos, clip_pg_rho_threshold, ops)

    # Backwards along time: vs_t - values_t = delta_t + discounts_t c_t continues_t (vs_{t+1}
    # - values_{t+1}), nothing after the fragment's last row (it bootstraps from next_values).
    deltas = clipped_rhos * (rewards + discounts * next_values - values)
    vs = values + ops.reverse_discounted_scan(deltas, discounts * cs * continues)
    vs_next = ops.stack(
        [
            *(
                continues[t] * vs[t + 1] + (1.0 - continues[t]) * next_values[t]
                for t in range(num_steps - 1)
            ),
            next_values[num_steps - 1],
        ]
    )
    pg_advantages = pg_rhos * (rewards + discounts * vs_next - values)
    return sg(vs), sg(pg_advantages)


def _cap(rhos: Tensor, threshold: float | None, ops: Ops) -> Tensor:
    return rhos if threshold is None else ops.clip(rhos, 0.0, float(threshold))


def _static_shape(x: Tensor) -> tuple | None:
    try:
        return tuple(x.shape)
    except (AttributeError, TypeError, ValueError):  # no shape, or TF's unknown rank
        return None


def _check_time_major(arguments: dict[str, Tensor]) -> int:
    """The common T of ``arguments``, or a BatchError naming the ones that disagree.

    The terms are element-wise products: a ``[T, B, 1]`` value against ``[T, B]`` rewards
    would silently broadcast, and a wrong T would run the recursion across sequences.
    """
    shapes = {name: _static_shape(x) for name, x in arguments.items()}
    for name, shape in shapes.items():
        if shape is None or len(shape) != 2 or shape[0] is None:
            raise BatchError(
                f"vtrace: {name} must be a time-major [T, B] tensor with T known, got shape "
                f"{_show(shape)}; reshape flat [B * T] columns with "
                "ops.transpose(ops.reshape(x, (-1, T)))"
            )
    # The most common shape is taken as the intended one (values' on a tie).
    counts = Counter(shapes.values())
    reference = max(counts, key=lambda s: (counts[s], s == shapes["values"]))
    wrong = [name for name, shape in shapes.items() if shape != reference]
    if wrong:
        detail = ", ".join(f"{name} has shape {_show(shapes[name])}" for name in wrong)
        raise BatchError(
            f"vtrace needs every input of one time-major shape [T, B]: {detail}, the others "
            f"{_show(reference)}"
        )
    return int(reference[0])


def _show(shape: tuple | None) -> str:
    return "unknown" if shape is None else str(list(shape))
