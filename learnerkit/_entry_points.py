"""The plugin registries' one mechanism, shared by algorithms (``_plugins``) and training
loops (``training_loops``), so that both read packages the same way: the same switches
(``LEARNERKIT_DISABLE_PLUGINS``, ``LEARNERKIT_DISABLE_PLUGIN_AUTOLOAD``), the same
de-duplication, the same error for a name claimed by two distributions, the same rules for
what is registered in code (it shadows an entry point only with ``replace=True``) and the
same ``list-plugins`` rows for a broken, incompatible or disabled one.

Only package metadata is read here; a plugin is imported by the ``load`` its registry is
given.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any, Generic, Protocol, TypeVar

import attrs

from learnerkit.errors import IncompatiblePluginError, LearnerkitError, PluginError


class Named(Protocol):
    """A plugin's declaration (``Algorithm``, ``LoopInfo``): an attrs class with a name."""

    name: str


T = TypeVar("T", bound=Named)
Row = TypeVar("Row")

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


class EntryPointRegistry(Generic[T]):
    """The plugins of one entry-point ``group`` (``kind``: "algorithm", "training loop"),
    each an attrs declaration with a ``name``: those registered in code, then the installed
    ones, each loaded (``load``: import and validate) on its first lookup and kept.
    ``unknown`` is the error for a name that is disabled or not installed;
    ``not_installed(name)`` says what to do about the latter."""

    def __init__(
        self,
        kind: str,
        group: str,
        load: Callable[[metadata.EntryPoint], T],
        unknown: type[LearnerkitError],
        not_installed: Callable[[str], str],
    ) -> None:
        self.kind, self.group = kind, group
        self._load, self._unknown, self._not_installed = load, unknown, not_installed
        self.registered: dict[str, T] = {}
        self._loaded: dict[str, T] = {}

    def entry_points(self) -> list[metadata.EntryPoint]:
        return entry_points(self.group)

    def names(self) -> list[str]:
        """Installed or registered names that are not disabled (broken ones included)."""
        names = {ep.name for ep in self.entry_points()} | set(self.registered)
        return sorted(names - disabled_names())

    def get(self, name: str) -> T:
        """The plugin called ``name`` (strict: an error says why there is none)."""
        if name in disabled_names():
            raise self._unknown(f"{self.kind} {name!r} is disabled by {disabled_by()}")
        if name in self.registered:
            return self.registered[name]
        if name in self._loaded:
            return self._loaded[name]
        eps = [ep for ep in self.entry_points() if ep.name == name]
        if not eps:
            raise self._unknown(self._not_installed(name))
        check_unique(self.kind, name, eps)
        self._loaded[name] = self._load(eps[0])
        return self._loaded[name]

    def register(self, declared: T, *, replace: bool) -> T:
        """``declared`` (validated by the caller) under its name; an installed or registered
        one of that name is shadowed only with ``replace``."""
        name = declared.name
        if not replace and name in set(self.registered) | {ep.name for ep in self.entry_points()}:
            raise PluginError(
                f"{self.kind} {name!r} is already installed or registered; pass replace=True "
                "to shadow it"
            )
        self.registered[name] = attrs.evolve(declared, package="(registered in code)")
        return self.registered[name]

    def unregister(self, name: str) -> None:
        self.registered.pop(name, None)

    def reset(self) -> None:
        """Forget what was registered and loaded: the next lookup reads the entry points
        again."""
        self.registered.clear()
        self._loaded.clear()

    def rows(self, row: Callable[[T, str | None], Row], failed: Callable[..., Row]) -> list[Row]:
        """A ``list-plugins`` row per plugin: ``row(declared, entry point or None)`` for a
        loaded one, ``failed(name=, version=, package=, entry_point=, status=, error=)`` for
        a disabled, broken or incompatible one."""
        disabled = disabled_names()
        rows = [row(d, None) for d in self.registered.values() if d.name not in disabled]
        eps = self.entry_points()
        for ep in sorted(eps, key=lambda e: e.name):
            base: dict[str, Any] = dict(
                name=ep.name, version=dist_version(ep), package=dist_name(ep), entry_point=ep.value
            )
            if ep.name in disabled:
                rows.append(failed(**base, status="disabled"))
                continue
            try:
                check_unique(self.kind, ep.name, [e for e in eps if e.name == ep.name])
                rows.append(row(self._load(ep), ep.value))
            except PluginError as exc:
                status = "incompatible" if isinstance(exc, IncompatiblePluginError) else "error"
                rows.append(failed(**base, status=status, error=str(exc)))
        return rows
