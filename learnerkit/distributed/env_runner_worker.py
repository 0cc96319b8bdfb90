"""Deprecated, kept for one release: ``learnerkit.distributed.env_runner_worker`` moved to
``learnerkit._distributed.env_runner_actor``."""

import warnings

from learnerkit._distributed.env_runner_actor import RemoteRunner
from learnerkit.errors import LearnerkitDeprecationWarning

__all__ = ["RemoteRunner"]

warnings.warn(
    "learnerkit.distributed.env_runner_worker is deprecated: import from "
    "learnerkit._distributed.env_runner_actor (internal: it may change in any release)",
    LearnerkitDeprecationWarning,
    stacklevel=2,
)
