"""Deprecated, kept for one release: ``learnerkit.distributed.env_runners`` moved to
``learnerkit._distributed.ray_env_runners`` (internal; built by
``learnerkit.loops.contract.make_env_runners``)."""

import warnings

from learnerkit._distributed.ray_env_runners import RayEnvRunners
from learnerkit.errors import LearnerkitDeprecationWarning

__all__ = ["RayEnvRunners"]

warnings.warn(
    "learnerkit.distributed.env_runners is deprecated: import from learnerkit.loops.contract "
    "(make_env_runners builds Ray env runners; RayEnvRunners is internal, in "
    "learnerkit._distributed.ray_env_runners)",
    LearnerkitDeprecationWarning,
    stacklevel=2,
)
