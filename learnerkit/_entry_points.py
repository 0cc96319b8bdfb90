"""Reading entry points, shared by the two plugin registries (algorithms in ``_plugins``,
training loops in ``training_loops``), so that both read packages the same way: the same
switches (``LEARNERKIT_DISABLE_PLUGINS``, ``LEARNERKIT_DISABLE_PLUGIN_AUTOLOAD``), the
same de-duplication, the same error for a name claimed by two distributions.

Only package metadata is read here; nothing is imported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import metadata

from learnerkit.errors import PluginError

DISABLE_ENV = "LEARNERKIT_DISABLE_PLUGINS"
DISABLE_AUTOLOAD_ENV = "LEARNERKIT_DISABLE_PLUGIN_AUTOLOAD"


def disabled_names() -> set[str]:
    """Names switched off by ``LEARNERKIT_DISABLE_PLUGINS`` (algorithms and loops alike)."""
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def disabled_by() -> str:
    return f"{DISABLE_ENV}={os.environ.get(DISABLE_ENV, '')!r}"


def entry_points(group: str) -> list[metadata.EntryPoint]:
    """The group's entry points, none when autoload is off."""
    if os.environ.get(DISABLE_AUTOLOAD_ENV):
        return []
    seen: dict[tuple[str, str], metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=group):
        # The same distribution can be visible twice (e.g. an editable and a path install).
        seen.setdefault((ep.name, dist_name(ep) or ep.value), ep)
    return list(seen.values())


def dist_name(ep: metadata.EntryPoint) -> str | None:
    return ep.dist.name if ep.dist is not None else None


def dist_version(ep: metadata.EntryPoint) -> str | None:
    return ep.dist.version if ep.dist is not None else None


def check_unique(kind: str, name: str, eps: Sequence[metadata.EntryPoint]) -> None:
    """Two distributions claiming one name: an error naming both (``kind``: "algorithm",
    "training loop")."""
    if len(eps) > 1:
        owners = " and ".join(f"{dist_name(ep)} ({ep.value})" for ep in eps)
        raise PluginError(
            f"{kind} {name!r} is claimed by two distributions: {owners}; uninstall one"
        )
