"""Finding algorithm plugins: entry points of the group ``learnerkit.algorithms``, plus
plugins registered in code.

Only entry-point metadata is read until an algorithm is asked for; a plugin's module must
stay light (no torch/TensorFlow/Ray at import) because listing plugins imports it.
The library is strict (``load_plugins`` raises); the listing is resilient (a broken plugin
is reported with its error and the others still show).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import Any

import attrs
import pluggy

from learnerkit import hookspecs
from learnerkit.errors import PluginError, UnknownAlgorithmError
from learnerkit.specs import FRAMEWORKS, Hyperparameters
from learnerkit.training_loops import TRAINING_LOOPS

ENTRY_POINT_GROUP = "learnerkit.algorithms"
DISABLE_ENV = "LEARNERKIT_DISABLE_PLUGINS"
DISABLE_AUTOLOAD_ENV = "LEARNERKIT_DISABLE_PLUGIN_AUTOLOAD"
HOOK_NAMES = ("configure_optimizers", "compute_loss", "additional_update", "compile_results")


@attrs.frozen(kw_only=True)
class Algorithm:
    """What a plugin module declares about its algorithm, as ``algorithm = Algorithm(...)``.

    Metadata only: building it must not import a framework.
    """

    name: str
    hyperparameters: type[Hyperparameters]
    """The algorithm's attrs hyperparameter class (a Hyperparameters subclass)."""
    frameworks: tuple[str, ...] = attrs.field(default=FRAMEWORKS, converter=tuple)
    required_columns: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    """Batch columns ``update()`` checks for before training."""
    initial_state: Callable[[Hyperparameters], Mapping[str, Any]] | None = None
    """Builds each module's algorithm state (e.g. PPO's adaptive ``kl_coeff``) from the
    hyperparameters; hooks receive it as ``state``."""
    training_loop: str | None = None
    """The loop ``learnerkit train`` trains it with (a name in
    ``learnerkit.loops.TRAINING_LOOPS``: ``"on_policy"``, ``"async"``); its hyperparameters
    must then derive from that loop's settings class. None: trained only through the
    Learner API (``Learner.update`` with your own batches)."""
    target_network: bool = False
    """Keep a target copy of each module (``learner.target_module(module_id)``), moved by
    ``learner.update_target_module(module_id, tau)``; see ``learnerkit.target_networks``."""
    env_presets: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    """Tuned settings per gymnasium env id for ``learnerkit train``: hyperparameters, plus
    optional ``"model_config"`` and ``"stop": {"reward": R, "timesteps": T}`` entries."""
    description: str = ""
    plugin: Any = attrs.field(default=None, eq=False, repr=False)
    """The module or object holding the hookimpls; set when the plugin is loaded."""
    package: str | None = None
    version: str | None = None


@attrs.frozen(kw_only=True)
class PluginInfo:
    """One row of ``learnerkit list-plugins``."""

    name: str
    version: str | None
    package: str | None
    frameworks: tuple[str, ...]
    hooks: tuple[str, ...]
    status: str  # "ok", "error" or "disabled"
    error: str | None = None
    training_loop: str | None = None
    entry_point: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(self).items()}


_registered: dict[str, Algorithm] = {}
_loaded: dict[str, Algorithm] = {}


def _disabled_names() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def _entry_points() -> list[metadata.EntryPoint]:
    if os.environ.get(DISABLE_AUTOLOAD_ENV):
        return []
    seen: dict[tuple[str, str], metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        # The same distribution can be visible twice (e.g. an editable and a path install).
        seen.setdefault((ep.name, _dist_name(ep) or ep.value), ep)
    return list(seen.values())


def _dist_name(ep: metadata.EntryPoint) -> str | None:
    return ep.dist.name if ep.dist is not None else None


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def implemented_hooks(plugin: Any) -> tuple[str, ...]:
    """The hooks ``plugin`` implements, validated against the specs (raises PluginError)."""
    pm = new_plugin_manager()
    try:
        pm.register(plugin)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{_plugin_label(plugin)} breaks the plugin contract: {exc}") from exc
    return tuple(h.name for h in pm.get_hookcallers(plugin) or ())


def _plugin_label(plugin: Any) -> str:
    return f"plugin {getattr(plugin, '__name__', type(plugin).__name__)!r}"


def _validate(plugin: Any, name: str | None) -> Algorithm:
    declared = getattr(plugin, "algorithm", None)
    label = _plugin_label(plugin)
    if not isinstance(declared, Algorithm):
        raise PluginError(
            f"{label} declares no algorithm: add `algorithm = learnerkit.Algorithm(name=..., "
            "hyperparameters=...)` at module level"
        )
    if name is not None and declared.name != name:
        raise PluginError(
            f"{label}: entry point is named {name!r} but its Algorithm is named "
            f"{declared.name!r}; make them the same"
        )
    hps = declared.hyperparameters
    if not (isinstance(hps, type) and issubclass(hps, Hyperparameters) and attrs.has(hps)):
        raise PluginError(
            f"{label}: Algorithm.hyperparameters must be an attrs subclass of "
            f"learnerkit.Hyperparameters, got {hps!r}"
        )
    unknown = sorted(set(declared.frameworks) - set(FRAMEWORKS))
    if unknown or not declared.frameworks:
        raise PluginError(
            f"{label}: Algorithm.frameworks must be a non-empty subset of {list(FRAMEWORKS)}, "
            f"got {list(declared.frameworks)}"
        )
    _check_training_loop(declared, label)
    if "compute_loss" not in implemented_hooks(plugin):
        raise PluginError(f"{label} implements no compute_loss hook; an algorithm needs one")
    return attrs.evolve(declared, plugin=plugin)


def _check_training_loop(declared: Algorithm, label: str) -> None:
    if declared.training_loop is None:
        return
    loop = TRAINING_LOOPS.get(declared.training_loop)
    if loop is None:
        raise PluginError(
            f"{label}: Algorithm.training_loop is {declared.training_loop!r}; the training "
            f"loops are {sorted(TRAINING_LOOPS)} (or None for an algorithm trained only "
            "through Learner.update)"
        )
    if not issubclass(declared.hyperparameters, loop.settings):
        raise PluginError(
            f"{label}: Algorithm.training_loop is {loop.name!r}, so its hyperparameters "
            f"class {declared.hyperparameters.__qualname__} must derive from "
            f"learnerkit.{loop.settings.__name__} (the settings that loop reads)"
        )


def _load_entry_point(ep: metadata.EntryPoint) -> Algorithm:
    try:
        plugin = ep.load()
    except Exception as exc:  # a broken plugin must name itself, whatever it raised
        raise PluginError(
            f"plugin {ep.name!r} (entry point {ep.value!r} of {_dist_name(ep)}) failed to "
            f"import: {type(exc).__name__}: {exc}"
        ) from exc
    algorithm = _validate(plugin, ep.name)
    version = ep.dist.version if ep.dist is not None else None
    return attrs.evolve(algorithm, package=_dist_name(ep), version=version)


def _check_unique(name: str, eps: Sequence[metadata.EntryPoint]) -> None:
    if len(eps) > 1:
        owners = " and ".join(f"{_dist_name(ep)} ({ep.value})" for ep in eps)
        raise PluginError(
            f"algorithm {name!r} is claimed by two distributions: {owners}; uninstall one"
        )


def installed_names() -> list[str]:
    names = {ep.name for ep in _entry_points()} | set(_registered)
    return sorted(names - _disabled_names())


def get_algorithm(name: str) -> Algorithm:
    """The algorithm called ``name``, loading its plugin if needed (strict)."""
    if name in _disabled_names():
        raise UnknownAlgorithmError(
            f"algorithm {name!r} is disabled by {DISABLE_ENV}={os.environ[DISABLE_ENV]!r}"
        )
    if name in _registered:
        return _registered[name]
    if name in _loaded:
        return _loaded[name]
    eps = [ep for ep in _entry_points() if ep.name == name]
    if not eps:
        installed = installed_names()
        raise UnknownAlgorithmError(
            f"unknown algorithm {name!r}; installed: {installed or 'none'}. Install its plugin "
            f"(e.g. `pip install learnerkit-{name}`) or register it with "
            "learnerkit.register_algorithm"
        )
    _check_unique(name, eps)
    _loaded[name] = _load_entry_point(eps[0])
    return _loaded[name]


def load_plugins() -> dict[str, Algorithm]:
    """Load every installed, enabled algorithm plugin; raise PluginError on the first bad one."""
    return {name: get_algorithm(name) for name in installed_names()}


def register_algorithm(plugin: Any, *, replace: bool = False) -> Algorithm:
    """Register a plugin from code (tests, notebooks, host applications).

    ``plugin`` is a module or object with hookimpls and an ``algorithm`` attribute.
    """
    algorithm = _validate(plugin, None)
    if not replace and algorithm.name in set(_registered) | {ep.name for ep in _entry_points()}:
        raise PluginError(
            f"algorithm {algorithm.name!r} is already installed or registered; pass "
            "replace=True to shadow it"
        )
    _registered[algorithm.name] = attrs.evolve(algorithm, package="(registered in code)")
    return _registered[algorithm.name]


def unregister_algorithm(name: str) -> None:
    _registered.pop(name, None)


def reset_registry() -> None:
    """Forget registered and already-loaded plugins, so the next lookup reads the entry
    points again (``learnerkit.testing.reset_plugins``)."""
    _registered.clear()
    _loaded.clear()


def registered_plugins() -> dict[str, Any]:
    """Plugins registered in code, by name (so Ray learner actors can register them too)."""
    return {name: a.plugin for name, a in _registered.items()}


def _info(algorithm: Algorithm, entry_point: str | None) -> PluginInfo:
    return PluginInfo(
        name=algorithm.name,
        version=algorithm.version,
        package=algorithm.package,
        frameworks=algorithm.frameworks,
        hooks=implemented_hooks(algorithm.plugin),
        status="ok",
        training_loop=algorithm.training_loop,
        entry_point=entry_point,
    )


def list_plugins() -> list[PluginInfo]:
    """Every installed or registered algorithm, broken ones included with their error."""
    disabled = _disabled_names()
    rows = [_info(a, None) for a in _registered.values() if a.name not in disabled]
    eps = _entry_points()
    for ep in sorted(eps, key=lambda e: e.name):
        base = dict(
            name=ep.name,
            version=ep.dist.version if ep.dist is not None else None,
            package=_dist_name(ep),
            entry_point=ep.value,
        )
        if ep.name in disabled:
            rows.append(PluginInfo(**base, frameworks=(), hooks=(), status="disabled"))
            continue
        try:
            _check_unique(ep.name, [e for e in eps if e.name == ep.name])
            rows.append(_info(_load_entry_point(ep), ep.value))
        except PluginError as exc:
            rows.append(PluginInfo(**base, frameworks=(), hooks=(), status="error", error=str(exc)))
    return rows
