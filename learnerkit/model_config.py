"""The default modules' ``model_config``: its keys, their defaults, and their validation.

Framework-neutral (no torch, no TensorFlow), so that both default modules share one
definition and a bad config fails the same way in either framework. Public: a custom
module may accept the same keys, or check its own the same way (``resolve_model_config``),
and env runners read the
default module's layout from it without importing a framework. Image observations
(``conv_filters``, ``conv_activation``, and their defaults by image size) are resolved by
``learnerkit.conv_encoders.module_config_for``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from learnerkit.errors import ConfigError

__all__ = ["ACTIVATIONS", "MODEL_CONFIG_DEFAULTS", "resolve_model_config"]

MODEL_CONFIG_DEFAULTS: dict[str, Any] = {
    "hiddens": (64, 64),
    "activation": "tanh",
    "vf_share_layers": False,
    "initial_log_std": 0.0,
    "conv_filters": None,  # None: from the observation space (learnerkit.conv_encoders)
    "conv_activation": "relu",
}
ACTIVATIONS = frozenset({"tanh", "relu", "elu", "silu"})
"""Activation names every backend's default module provides."""


def resolve_model_config(
    model_config: Mapping[str, Any],
    defaults: Mapping[str, Any] = MODEL_CONFIG_DEFAULTS,
    *,
    module: str = "the default module",
) -> dict[str, Any]:
    """Defaults filled in; an unknown key or activation is a ConfigError naming the choices.
    A module of its own passes its keys' ``defaults`` (with an ``"activation"``) and its
    name for the errors, as DQN's Q-network does."""
    unknown = sorted(set(model_config) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown model_config key(s) {unknown} for {module}; known: {sorted(defaults)}"
        )
    config = {**defaults, **model_config}
    for key in ("activation", "conv_activation"):
        if key in config and config[key] not in ACTIVATIONS:
            raise ConfigError(
                f"model_config[{key!r}] must be one of {sorted(ACTIVATIONS)}, got {config[key]!r}"
            )
    return config
