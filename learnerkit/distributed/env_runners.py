"""Deprecated, kept for one release: ``learnerkit.distributed.env_runners`` moved to
``learnerkit.distributed.ray_env_runners``."""

import warnings

from learnerkit.distributed.ray_env_runners import RayEnvRunners
from learnerkit.errors import LearnerkitDeprecationWarning

__all__ = ["RayEnvRunners"]

warnings.warn(
    "learnerkit.distributed.env_runners is deprecated: import from "
    "learnerkit.distributed.ray_env_runners",
    LearnerkitDeprecationWarning,
    stacklevel=2,
)
