"""Finding algorithm plugins: entry points of the group ``learnerkit.algorithms``, plus
plugins registered in code. (Training loops have a registry of their own, read the same
way: ``learnerkit.training_loops``.)

Only entry-point metadata is read until an algorithm is asked for; a plugin's module must
stay light (no torch/TensorFlow/Ray at import) because listing plugins imports it.
The library is strict (``load_plugins`` raises); the listing is resilient (a broken plugin
is reported with its error and the others still show).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

import attrs
import pluggy

from learnerkit import hookspecs
from learnerkit._column_specs import ColumnSpec
from learnerkit._entry_points import (
    DISABLE_AUTOLOAD_ENV,
    DISABLE_ENV,
    EntryPointRegistry,
    dist_name,
    dist_version,
)
from learnerkit._import_path import is_import_path
from learnerkit._specs import FRAMEWORKS, Hyperparameters
from learnerkit.api import API_VERSION, api_mismatch
from learnerkit.errors import IncompatiblePluginError, PluginError, UnknownAlgorithmError
from learnerkit.training_loops import find_training_loop

__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "Algorithm",
    "PluginInfo",
    "get_algorithm",
    "list_plugins",
    "load_plugins",
    "register_algorithm",
    "unregister_algorithm",
]

ENTRY_POINT_GROUP = "learnerkit.algorithms"
NUMPY_COPY = "numpy"
"""The key of ``Algorithm.module_classes`` naming the numpy copy runners act with."""
HOOK_NAMES = (
    "configure_optimizers",
    "compute_loss",
    "postprocess_gradients",
    "additional_update",
    "compile_results",
)


@attrs.frozen(kw_only=True)
class Algorithm:
    """What a plugin module declares about its algorithm, as ``algorithm = Algorithm(...)``.

    Metadata only: building it must not import a framework.
    """

    name: str
    """What users call it (``learnerkit train NAME``, ``LearnerSpec(algorithm=NAME)``); the
    entry point's name must be the same."""
    hyperparameters: type[Hyperparameters]
    """The algorithm's attrs hyperparameter class (a Hyperparameters subclass)."""
    frameworks: tuple[str, ...] = attrs.field(default=FRAMEWORKS, converter=tuple)
    """The frameworks its hooks work with (``"torch"``, ``"tf"``); a Learner on another is
    refused."""
    required_columns: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    """Batch columns ``update()`` checks for before training."""
    column_specs: Mapping[str, ColumnSpec] = attrs.field(factory=dict)
    """The dtype and per-row shape of columns the algorithm reads (``ColumnSpec``), checked
    with the host's columns before training, so that a column of the wrong form is a
    BatchError naming the algorithm and the column rather than an error inside the loss."""
    initial_state: Callable[[Hyperparameters], Mapping[str, Any]] | None = None
    """Builds each module's algorithm state (e.g. PPO's adaptive ``kl_coeff``) from the
    hyperparameters; hooks receive it as ``state``."""
    training_loop: str | None = None
    """The loop ``learnerkit train`` trains it with: the name of an installed training loop
    (``learnerkit list-plugins`` shows them; learnerkit's own are ``"on_policy"``,
    ``"async"``, ``"offline"`` and ``"replay"``). Its hyperparameters must derive from that loop's
    settings class. A loop that is not installed does not stop the algorithm loading (it
    may be installed later); training it is then refused, naming the installed loops. None:
    trained only through the Learner API (``Learner.update`` with your own batches)."""
    reads_loss_mask: bool = False
    """Its loss takes its means over the rows ``Columns.LOSS_MASK`` keeps, when the batch has
    it (``learnerkit.loss_mask``): only then may a recurrent module train with burn-in
    (``lstm_burn_in``), whose warm-up rows a loss reading every row would train on."""
    target_network: bool = False
    """Keep a target copy of each module (``learner.target_module(module_id)``), moved by
    ``learner.update_target_module(module_id, tau)``; see ``learnerkit._target_networks``."""
    module_classes: Mapping[str, str] = attrs.field(factory=dict)
    """The algorithm's default module, per framework, as import paths
    ``"package.module:QualName"`` (imported only when a module is built, so listing stays
    light), plus optionally under ``"numpy"`` the numpy copy env runners act with
    (``learnerkit.rollouts.acting.NumpyModule``). Used for every ``ModuleSpec`` without a
    ``module_class`` (``LearnerSpec.module_specs``); empty: the default MLP actor-critic.
    When given, it names a class for every framework in ``frameworks``."""
    module_settings: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    """Hyperparameters the module reads: each module spec's ``model_config`` gets their
    values (the module's own, with its overrides), so one setting (DQN's ``dueling``) is
    given once, with the others, and reaches the module and its env runners' copies
    (RLlib's ``_model_config_auto_includes``). A ``model_config`` entry of the same name
    wins."""
    env_presets: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    """Tuned settings per gymnasium env id for ``learnerkit train``: hyperparameters, plus
    optional ``"model_config"`` and ``"stop": {"reward": R, "timesteps": T}`` entries."""
    description: str = ""
    """One line for ``learnerkit list-plugins``."""
    requires_api: str | None = None
    """The learnerkit plugin API the plugin was written for, as a PEP 440 specifier
    (``">=0.2"``; ``learnerkit.api.API_VERSION`` is this learnerkit's). A plugin whose
    specifier the installed API does not meet is listed as ``incompatible``, with the fix,
    and loading it is an IncompatiblePluginError. None: any API."""
    plugin: Any = attrs.field(default=None, eq=False, repr=False)
    """The module or object holding the hookimpls; set when the plugin is loaded."""
    package: str | None = None
    """The distribution that installed it; set when the plugin is loaded."""
    version: str | None = None
    """That distribution's version; set when the plugin is loaded."""


@attrs.frozen(kw_only=True)
class PluginInfo:
    """One row of ``learnerkit list-plugins``."""

    name: str
    version: str | None
    package: str | None
    frameworks: tuple[str, ...]
    hooks: tuple[str, ...]
    status: str  # "ok", "error", "incompatible" (requires_api not met) or "disabled"
    error: str | None = None
    training_loop: str | None = None
    entry_point: str | None = None
    settings: str | None = None
    """The hyperparameters class, as ``module:QualName``."""

    def as_dict(self) -> dict[str, Any]:
        """A row of ``list-plugins --json``; loop rows (``LoopPluginInfo``) have the same
        keys, told apart by ``kind``."""
        row = {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(self).items()}
        return {"kind": "algorithm", **row, "declares": None}


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
    # First: a plugin written for another API may break any check below it.
    mismatch = api_mismatch(declared.requires_api, label)
    if mismatch:
        raise IncompatiblePluginError(mismatch)
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
    _check_module_classes(declared, label)
    unknown = sorted(set(declared.module_settings) - {f.name for f in attrs.fields(hps)})
    if unknown:
        raise PluginError(
            f"{label}: Algorithm.module_settings names {unknown}, which are not fields of "
            f"its hyperparameters class {hps.__qualname__}"
        )
    if "compute_loss" not in implemented_hooks(plugin):
        raise PluginError(f"{label} implements no compute_loss hook; an algorithm needs one")
    return attrs.evolve(declared, plugin=plugin)


def _check_training_loop(declared: Algorithm, label: str) -> None:
    """Checked here, where the loop's metadata is at hand and its code is not imported; a
    loop that is not installed (or is broken) is reported when the algorithm trains."""
    loop = declared.training_loop
    if loop is not None and not isinstance(loop, str):
        raise PluginError(f"{label}: Algorithm.training_loop must be a loop's name, got {loop!r}")
    info = find_training_loop(loop) if loop is not None else None
    if info is not None and not issubclass(declared.hyperparameters, info.settings):
        raise PluginError(
            f"{label}: Algorithm.training_loop is {loop!r}, so its hyperparameters class "
            f"{declared.hyperparameters.__qualname__} must derive from "
            f"{info.settings.__module__}.{info.settings.__qualname__} (the settings that "
            "loop reads): subclass it"
        )


def _check_module_classes(declared: Algorithm, label: str) -> None:
    classes = declared.module_classes
    if not classes:
        return
    allowed = (*FRAMEWORKS, NUMPY_COPY)
    bad = {k: v for k, v in dict(classes).items() if k not in allowed or not is_import_path(v)}
    missing = [f for f in declared.frameworks if f not in classes]
    if bad or missing:
        raise PluginError(
            f"{label}: Algorithm.module_classes must map each of its frameworks "
            f"{list(declared.frameworks)} (and optionally {NUMPY_COPY!r}) to an import path "
            f"'package.module:QualName'; wrong entries: {bad}, frameworks missing: {missing}"
        )


def _load_entry_point(ep: metadata.EntryPoint) -> Algorithm:
    try:
        plugin = ep.load()
    except Exception as exc:  # a broken plugin must name itself, whatever it raised
        raise PluginError(
            f"plugin {ep.name!r} (entry point {ep.value!r} of {dist_name(ep)}) failed to "
            f"import: {type(exc).__name__}: {exc}{api_hint(exc)}"
        ) from exc
    algorithm = _validate(plugin, ep.name)
    return attrs.evolve(algorithm, package=dist_name(ep), version=dist_version(ep))


def api_hint(exc: Exception) -> str:
    """What to look up when a plugin fails to import a learnerkit name: it was likely written
    for another API."""
    if isinstance(exc, ImportError) and (exc.name or "").split(".")[0] == "learnerkit":
        return (
            f" (this learnerkit provides plugin API {API_VERSION}; a name the plugin imports "
            "may have moved or gone: see the CHANGELOG's 'Deprecated' and 'Removed' sections, "
            "or install the plugin's version for this API)"
        )
    return ""


def _not_installed(name: str) -> str:
    installed = _registry.names()
    return (
        f"unknown algorithm {name!r}; installed: {installed or 'none'}. Install its plugin "
        f"(e.g. `pip install learnerkit-{name}`) or register it with "
        "learnerkit.register_algorithm"
    )


_registry: EntryPointRegistry[Algorithm] = EntryPointRegistry(
    "algorithm", ENTRY_POINT_GROUP, _load_entry_point, UnknownAlgorithmError, _not_installed
)


def installed_names() -> list[str]:
    return _registry.names()


def get_algorithm(name: str) -> Algorithm:
    """The algorithm called ``name``, loading its plugin if needed (strict)."""
    return _registry.get(name)


def load_plugins() -> dict[str, Algorithm]:
    """Load every installed, enabled algorithm plugin; raise PluginError on the first bad one."""
    return {name: get_algorithm(name) for name in installed_names()}


def register_algorithm(plugin: Any, *, replace: bool = False) -> Algorithm:
    """Register a plugin from code (tests, notebooks, host applications).

    ``plugin`` is a module or object with hookimpls and an ``algorithm`` attribute.
    """
    return _registry.register(_validate(plugin, None), replace=replace)


def unregister_algorithm(name: str) -> None:
    _registry.unregister(name)


def reset_registry() -> None:
    """Forget registered and already-loaded plugins, so the next lookup reads the entry
    points again (``learnerkit.testing.reset_plugins``)."""
    _registry.reset()


def registered_plugins() -> dict[str, Any]:
    """Plugins registered in code, by name (so Ray learner actors can register them too)."""
    return {name: a.plugin for name, a in _registry.registered.items()}


def _info(algorithm: Algorithm, entry_point: str | None) -> PluginInfo:
    hps = algorithm.hyperparameters
    return PluginInfo(
        name=algorithm.name,
        version=algorithm.version,
        package=algorithm.package,
        frameworks=algorithm.frameworks,
        hooks=implemented_hooks(algorithm.plugin),
        status="ok",
        training_loop=algorithm.training_loop,
        entry_point=entry_point,
        settings=f"{hps.__module__}:{hps.__qualname__}",
    )


def list_plugins() -> list[PluginInfo]:
    """Every installed or registered algorithm, broken ones included with their error."""
    return _registry.rows(_info, functools.partial(PluginInfo, frameworks=(), hooks=()))
