"""Validators, converters and schedules for settings fields (attrs), used by the host's
specs and by algorithms for their own hyperparameters: a bad value fails when the settings
are made, naming the field and what it allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from learnerkit.errors import ConfigError


def positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"{type(instance).__name__}.{attribute.name} must be > 0, got {value!r}")


def positive_int(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} must be an integer >= 1, got {value!r}"
        )


def optional_positive_int(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        positive_int(instance, attribute, value)


def non_negative_int(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} must be an integer >= 0, got {value!r}"
        )


def non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value >= 0:
        raise ConfigError(f"{type(instance).__name__}.{attribute.name} must be >= 0, got {value!r}")


def in_unit_interval(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} must be in [0, 1], got {value!r}"
        )


def one_of(*allowed: str):
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in allowed:
            raise ConfigError(
                f"{type(instance).__name__}.{attribute.name} must be one of {list(allowed)}, "
                f"got {value!r}"
            )

    return check


def to_schedule(value: Any) -> tuple[tuple[int, float], ...] | None:
    if value is None:
        return None
    return tuple((int(t), float(v)) for t, v in value)


def check_schedule(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    steps = [t for t, _ in value]
    if not value or steps[0] != 0 or steps != sorted(steps):
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} must be a list of [timestep, value] "
            f"pairs starting at timestep 0 in increasing order, got {list(value)!r}"
        )


def non_negative_schedule(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """``check_schedule``, and every value >= 0 (coefficients, rates)."""
    check_schedule(instance, attribute, value)
    if value is not None and any(v < 0 for _, v in value):
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} values must be >= 0, got {list(value)!r}"
        )


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


def optional_float(value: Any) -> float | None:
    """Converter for settings where None means "off" (no clipping, no cap)."""
    return None if value is None else float(value)


def schedule_value(schedule: Sequence[tuple[int, float]], timestep: int) -> float:
    """Piecewise-linear interpolation of ``[(timestep, value), ...]``; flat past the ends."""
    t0, v0 = schedule[0]
    for t1, v1 in schedule[1:]:
        if timestep < t1:
            return v0 + (v1 - v0) * (timestep - t0) / (t1 - t0)
        t0, v0 = t1, v1
    return v0
