"""Deprecated, kept for one release: ``learnerkit.distributed.env_runner_worker`` moved to
``learnerkit.distributed.env_runner_actor``."""

import warnings

from learnerkit.distributed.env_runner_actor import RemoteRunner
from learnerkit.errors import LearnerkitDeprecationWarning

__all__ = ["RemoteRunner"]

warnings.warn(
    "learnerkit.distributed.env_runner_worker is deprecated: import from "
    "learnerkit.distributed.env_runner_actor",
    LearnerkitDeprecationWarning,
    stacklevel=2,
)
