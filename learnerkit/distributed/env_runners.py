"""Deprecated, kept for one release: ``learnerkit.distributed.env_runners`` moved to
``learnerkit.distributed.ray_env_runners``."""

import warnings

from learnerkit.distributed.ray_env_runners import RayEnvRunners

__all__ = ["RayEnvRunners"]

warnings.warn(
    "learnerkit.distributed.env_runners is deprecated: import from "
    "learnerkit.distributed.ray_env_runners",
    DeprecationWarning,
    stacklevel=2,
)
