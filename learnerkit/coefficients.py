"""Coefficients that change while training: schedules and the adaptive KL coefficient.

Algorithm maths shared by several plugins (PPO, IMPALA, APPO) and the host's learning-rate
schedule; plain python floats, no framework. (They lived in ``learnerkit.fields``, whose
old names keep working for a release with a DeprecationWarning.)
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["adapted_kl_coeff", "schedule_value", "scheduled"]


def schedule_value(schedule: Sequence[tuple[int, float]], timestep: int) -> float:
    """Piecewise-linear interpolation of ``[(timestep, value), ...]``; flat past the ends."""
    t0, v0 = schedule[0]
    for t1, v1 in schedule[1:]:
        if timestep < t1:
            return v0 + (v1 - v0) * (timestep - t0) / (t1 - t0)
        t0, v0 = t1, v1
    return v0


def scheduled(
    schedule: Sequence[tuple[int, float]] | None, constant: float, timestep: int
) -> float:
    """A coefficient that may follow a schedule: the schedule's value at ``timestep``, or
    ``constant`` when there is no schedule (e.g. ``entropy_coeff_schedule`` over
    ``entropy_coeff``)."""
    return constant if schedule is None else schedule_value(schedule, timestep)


def adapted_kl_coeff(kl_coeff: float, sampled_kl: float, kl_target: float) -> float:
    """The adaptive KL coefficient after one more measurement (RLlib's rule, PPO's and
    APPO's): x1.5 when the sampled KL exceeds ``2 * kl_target``, x0.5 below
    ``kl_target / 2``, else unchanged. A comparison with NaN is False, so a non-finite KL
    leaves the coefficient alone."""
    if sampled_kl > 2.0 * kl_target:
        return float(kl_coeff) * 1.5
    if sampled_kl < 0.5 * kl_target:
        return float(kl_coeff) * 0.5
    return float(kl_coeff)
