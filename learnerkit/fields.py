"""Validators and converters for settings fields (attrs), used by the host's specs and by
algorithms for their own hyperparameters: a bad value fails when the settings are made,
naming the field and what it allows.

Schedules' values and adaptive coefficients are algorithm maths, not validation: they live
in ``learnerkit.coefficients`` (``schedule_value``, ``scheduled``, ``adapted_kl_coeff``);
their old names here work for one more release, with a DeprecationWarning.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import attrs

from learnerkit import coefficients
from learnerkit.errors import ConfigError, LearnerkitDeprecationWarning

__all__ = [
    "check_schedule",
    "in_unit_interval",
    "non_negative",
    "non_negative_int",
    "non_negative_schedule",
    "one_of",
    "optional_float",
    "optional_positive_int",
    "positive",
    "positive_int",
    "to_schedule",
]

# Moved to learnerkit.coefficients (issue 17); found here with a warning until the next release.
_MOVED = frozenset(coefficients.__all__)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"learnerkit.fields.{name} moved to learnerkit.coefficients.{name}; import it "
            "from there (the old name goes in the next release)",
            LearnerkitDeprecationWarning,
            stacklevel=2,
        )
        return getattr(coefficients, name)
    raise AttributeError(f"module 'learnerkit.fields' has no attribute {name!r}")


def _is_integer(value: Any) -> bool:
    """An integer, numpy's included; not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _whole_to_int(value: Any) -> Any:
    """Converter: a whole number as ``int``, numpy's integers (a seed from ``np.arange``)
    and whole floats (``stop_timesteps=1e6``) included; anything else as given, for the
    validator to judge."""
    if _is_integer(value):
        return int(value)
    is_real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if is_real and float(value).is_integer():
        return int(value)
    return value


def positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Validator: the value is > 0 (None passes: a field typed ``float | None``)."""
    if value is not None and not value > 0:
        raise ConfigError(f"{type(instance).__name__}.{attribute.name} must be > 0, got {value!r}")


def positive_int(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Validator: an ``int`` (not a bool) >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} must be an integer >= 1, got {value!r}"
        )


def optional_positive_int(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Validator: None, or an ``int`` >= 1."""
    if value is not None:
        positive_int(instance, attribute, value)


def non_negative_int(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Validator: an ``int`` (not a bool) >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} must be an integer >= 0, got {value!r}"
        )


def non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Validator: the value is >= 0."""
    if not value >= 0:
        raise ConfigError(f"{type(instance).__name__}.{attribute.name} must be >= 0, got {value!r}")


def in_unit_interval(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Validator: the value is in ``[0, 1]`` (discounts, lambdas, probabilities)."""
    if not 0.0 <= value <= 1.0:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} must be in [0, 1], got {value!r}"
        )


def one_of(*allowed: str):
    """Validator factory: the value is one of ``allowed`` (``one_of("value", "norm")``)."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in allowed:
            raise ConfigError(
                f"{type(instance).__name__}.{attribute.name} must be one of {list(allowed)}, "
                f"got {value!r}"
            )

    # The settings reference shows validators by name: say what this one allows.
    check.__name__ = check.__qualname__ = f"one_of({', '.join(map(repr, allowed))})"
    return check


def to_schedule(value: Any) -> tuple[tuple[int, float], ...] | None:
    """Converter: ``[[timestep, value], ...]`` (lists from JSON or TOML) to a tuple of
    ``(int, float)`` pairs; None stays None. Pair it with ``check_schedule``."""
    if value is None:
        return None
    return tuple((int(t), float(v)) for t, v in value)


def check_schedule(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Validator: None, or ``(timestep, value)`` pairs starting at timestep 0 in
    increasing order (read with ``learnerkit.coefficients.schedule_value``)."""
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


def optional_float(value: Any) -> float | None:
    """Converter for settings where None means "off" (no clipping, no cap)."""
    return None if value is None else float(value)
