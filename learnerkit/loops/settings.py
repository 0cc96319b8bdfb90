"""The loops' settings classes, re-exported from their home, ``learnerkit.settings`` (they
moved below the algorithm registry, which checks an algorithm against them)."""

from learnerkit.settings import (
    QUEUE_POLICIES,
    AsyncSettings,
    OfflineSettings,
    OnPolicySettings,
    ReplaySettings,
    SamplingSettings,
)

__all__ = [
    "QUEUE_POLICIES",
    "AsyncSettings",
    "OfflineSettings",
    "OnPolicySettings",
    "ReplaySettings",
    "SamplingSettings",
]
