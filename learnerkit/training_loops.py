"""Finding training loops: entry points of the group ``learnerkit.training_loops``, plus
loops registered in code. Loops are plugins, read the way algorithms are
(``learnerkit._plugins``): learnerkit's own three register through this group from its
``pyproject.toml``, as a third party's would, and nothing in the host names a loop.

An entry point names a loop's declaration, a ``LoopInfo`` (``replay =
"my_package.loops:replay"``): its name, its settings class, where its code is, and what it
asks of the host. The declaration's module must stay light (no numpy, torch, TensorFlow,
Ray), because listing plugins imports it; the loop's code is imported when it trains. The
library is strict (``get_training_loop`` raises); the listing is resilient (a broken loop
package is reported with its error and the others still show).

Below the loops and the Learner, beside the algorithm registry, which asks it for a loop's
settings class to check an algorithm's hyperparameters against.
"""

from __future__ import annotations

import importlib
import warnings
from importlib import metadata
from typing import Any

import attrs

from learnerkit._columns import ACTOR_CRITIC_OUTPUTS, Columns
from learnerkit._entry_points import EntryPointRegistry, dist_name, dist_version
from learnerkit._specs import Hyperparameters
from learnerkit.api import api_mismatch
from learnerkit.errors import (
    IncompatiblePluginError,
    LearnerkitDeprecationWarning,
    LearnerkitError,
    PluginError,
    UnknownTrainingLoopError,
)
from learnerkit.settings import SamplingSettings

__all__ = [
    "LOOP_ENTRY_POINT_GROUP",
    "LoopInfo",
    "LoopPluginInfo",
    "find_training_loop",
    "get_training_loop",
    "list_training_loops",
    "register_training_loop",
    "unregister_training_loop",
]

LOOP_ENTRY_POINT_GROUP = "learnerkit.training_loops"


@attrs.frozen
class LoopInfo:
    """A training loop's declaration: what the host needs to know of it before its code is
    imported. A loop package declares one per loop and names it in an entry point."""

    name: str
    """The name algorithms give in ``Algorithm(training_loop=NAME)``."""
    settings: type
    """The ``Hyperparameters`` subclass holding the settings the loop reads (like
    ``learnerkit.OnPolicySettings``); an algorithm trained by the loop derives its
    hyperparameters from it. With env runners it derives from ``SamplingSettings``."""
    target: str
    """``module:Class`` of the loop's code (``learnerkit.loops.contract.TrainingLoop``),
    imported when it trains."""
    summary: str = ""
    """One line for ``learnerkit list-plugins``."""
    uses_env_runners: bool = attrs.field(default=True, kw_only=True)
    """The host builds env runners for the run (``Run.runners``) from the sampling settings
    of the hyperparameters. False: ``Run.runners`` is None."""
    reads_dataset: bool = attrs.field(default=False, kw_only=True)
    """The loop learns from ``TrainConfig.dataset`` (``--dataset``); the host refuses a
    dataset for a loop that does not declare this (a loop that needs one says so in its
    ``environment``)."""
    multi_agent: bool = attrs.field(default=False, kw_only=True)
    """The loop trains in PettingZoo parallel envs (``pettingzoo:...``; its batches are then
    ``MultiAgentBatch``es); the host refuses them for a loop that does not declare this."""
    sequences: bool = attrs.field(default=False, kw_only=True)
    """The loop trains on whole sequences (``sequence_batch``): multi-agent env runners then
    sample whole sequences per agent (``EnvRunnerSpec.sequences``)."""
    policy_outputs: tuple[str, ...] = attrs.field(
        default=ACTOR_CRITIC_OUTPUTS, kw_only=True, converter=tuple
    )
    """The columns the runners' policy must return for every observation and the fragments
    keep (``EnvRunnerSpec.policy_outputs``): ``actions`` always; an actor-critic loop's
    default adds ``action_logp``, ``vf_preds`` (whose presence also has runners bootstrap
    values) and ``action_dist_inputs``. The replay loop asks for ``("actions",)``, so a
    module acting for it (a Q-network) returns no log-probability it does not have."""
    requires_api: str | None = attrs.field(default=None, kw_only=True)
    """The learnerkit plugin API the loop was written for, a PEP 440 specifier (``">=0.2"``),
    as ``Algorithm.requires_api``: a loop whose specifier the installed API does not meet is
    listed as ``incompatible``, with the fix. None: any API."""
    package: str | None = attrs.field(default=None, kw_only=True)
    """The distribution that provides it; set when it is loaded."""
    version: str | None = attrs.field(default=None, kw_only=True)
    """That distribution's version; set when it is loaded."""

    def declares(self) -> dict[str, bool]:
        """What the loop asks of the host, by field name (``list-plugins --json``)."""
        names = ("uses_env_runners", "reads_dataset", "multi_agent", "sequences")
        return {name: getattr(self, name) for name in names}

    def load(self) -> Any:
        """The loop's class, imported now (a PluginError naming the loop if that fails)."""
        module, _, qualname = self.target.partition(":")
        try:
            value: Any = importlib.import_module(module)
            for part in qualname.split("."):
                value = getattr(value, part)
        except Exception as exc:  # a broken loop must name itself, whatever it raised
            raise PluginError(
                f"training loop {self.name!r} (of {self.package or 'code'}): its code "
                f"{self.target!r} failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        return value


@attrs.frozen(kw_only=True)
class LoopPluginInfo:
    """One training-loop row of ``learnerkit list-plugins``."""

    name: str
    version: str | None
    package: str | None
    status: str  # "ok", "error", "incompatible" (requires_api not met) or "disabled"
    error: str | None = None
    entry_point: str | None = None
    settings: str | None = None
    """The settings class, as ``module:QualName``."""
    summary: str = ""
    declares: dict[str, bool] | None = None

    def as_dict(self) -> dict[str, Any]:
        """A row of ``list-plugins --json``: an algorithm row's keys (``frameworks`` and
        ``hooks`` empty, ``training_loop`` null), told apart by ``kind``."""
        return {
            "kind": "training_loop",
            "name": self.name,
            "version": self.version,
            "package": self.package,
            "frameworks": [],
            "hooks": [],
            "status": self.status,
            "error": self.error,
            "training_loop": None,
            "entry_point": self.entry_point,
            "settings": self.settings,
            "declares": self.declares,
        }


def _validate(declared: Any, label: str, name: str | None) -> LoopInfo:
    if not isinstance(declared, LoopInfo):
        raise PluginError(
            f"{label} is {declared!r}, not a learnerkit.LoopInfo: point the entry point at the "
            'loop\'s declaration, NAME = "package.module:ATTRIBUTE" where ATTRIBUTE = '
            "learnerkit.LoopInfo(...)"
        )
    mismatch = api_mismatch(declared.requires_api, label)
    if mismatch:
        raise IncompatiblePluginError(mismatch)
    if name is not None and declared.name != name:
        raise PluginError(
            f"{label}: the entry point is named {name!r} but its LoopInfo is named "
            f"{declared.name!r}; make them the same"
        )
    settings = declared.settings
    if not (
        isinstance(settings, type) and issubclass(settings, Hyperparameters) and attrs.has(settings)
    ):
        raise PluginError(
            f"{label}: LoopInfo.settings must be an attrs subclass of "
            f"learnerkit.Hyperparameters, got {settings!r}"
        )
    if declared.uses_env_runners and not issubclass(settings, SamplingSettings):
        raise PluginError(
            f"{label} uses env runners, which are built from the sampling settings: its "
            f"settings class {settings.__qualname__} must derive from "
            "learnerkit.SamplingSettings (or declare uses_env_runners=False)"
        )
    outputs = declared.policy_outputs
    if Columns.ACTIONS not in outputs or not all(isinstance(c, str) for c in outputs):
        raise PluginError(
            f"{label}: LoopInfo.policy_outputs must be column names including "
            f"{Columns.ACTIONS!r}, got {outputs!r}"
        )
    if (declared.multi_agent or declared.sequences) and not declared.uses_env_runners:
        raise PluginError(
            f"{label} declares multi_agent or sequences, which are about how env runners "
            "sample, but uses_env_runners=False; drop them or use env runners"
        )
    module, _, qualname = declared.target.partition(":")
    if not module or not qualname:
        raise PluginError(
            f"{label}: LoopInfo.target must be 'module:Class', got {declared.target!r}"
        )
    return declared


def _load_entry_point(ep: metadata.EntryPoint) -> LoopInfo:
    label = f"training loop {ep.name!r} (entry point {ep.value!r} of {dist_name(ep)})"
    try:
        declared = ep.load()
    except Exception as exc:  # a broken loop package must name itself, whatever it raised
        raise PluginError(f"{label} failed to import: {type(exc).__name__}: {exc}") from exc
    info = _validate(declared, label, ep.name)
    return attrs.evolve(info, package=dist_name(ep), version=dist_version(ep))


def _not_installed(name: str) -> str:
    installed = installed_loop_names()
    if installed:
        shown = ", ".join(installed)
    else:
        shown = (
            "none; learnerkit's own loops are registered by its package metadata: reinstall "
            "learnerkit (`pip install -e .` in a source checkout)"
        )
    return (
        f"training loop {name!r} is not installed (installed: {shown}); install the package "
        f"that provides it (an entry point named {name!r} in group "
        f"{LOOP_ENTRY_POINT_GROUP!r}; an algorithm's package usually depends on it), or "
        "register it with learnerkit.register_training_loop; `learnerkit list-plugins` shows "
        "the loops installed"
    )


_registry: EntryPointRegistry[LoopInfo] = EntryPointRegistry(
    "training loop",
    LOOP_ENTRY_POINT_GROUP,
    _load_entry_point,
    UnknownTrainingLoopError,
    _not_installed,
)


def installed_loop_names() -> list[str]:
    """Names of the installed or registered loops that are not disabled (broken included)."""
    return _registry.names()


def get_training_loop(name: str) -> LoopInfo:
    """The training loop called ``name`` (strict: an error says why there is none)."""
    return _registry.get(name)


def find_training_loop(name: str) -> LoopInfo | None:
    """The loop called ``name``, or None if it is not installed, is disabled or broken (for
    checks that must not fail on another package's account)."""
    try:
        return get_training_loop(name)
    except LearnerkitError:
        return None


def register_training_loop(info: LoopInfo, *, replace: bool = False) -> LoopInfo:
    """Register a loop from code (tests, notebooks, host applications)."""
    info = _validate(info, f"training loop {getattr(info, 'name', info)!r}", None)
    return _registry.register(info, replace=replace)


def unregister_training_loop(name: str) -> None:
    _registry.unregister(name)


def reset_registry() -> None:
    """Forget registered and already-loaded loops (``learnerkit.testing.reset_plugins``)."""
    _registry.reset()


def _row(info: LoopInfo, entry_point: str | None) -> LoopPluginInfo:
    return LoopPluginInfo(
        name=info.name,
        version=info.version,
        package=info.package,
        status="ok",
        entry_point=entry_point,
        settings=f"{info.settings.__module__}:{info.settings.__qualname__}",
        summary=info.summary,
        declares=info.declares(),
    )


def list_training_loops() -> list[LoopPluginInfo]:
    """Every installed or registered loop, broken ones included with their error."""
    return _registry.rows(_row, LoopPluginInfo)


def deprecated_table(where: str, stacklevel: int) -> dict[str, LoopInfo]:
    """``TRAINING_LOOPS``, once a fixed table of the built-in loops: now the loops that are
    installed, read each time, with a warning (it goes in the next release)."""
    warnings.warn(
        f"{where}.TRAINING_LOOPS is no longer a fixed table: training loops are plugins "
        f"(entry point group {LOOP_ENTRY_POINT_GROUP!r}), and it now holds the loops "
        "installed; use learnerkit.get_training_loop(NAME) or "
        "learnerkit.list_training_loops() (the old name goes in the next release)",
        LearnerkitDeprecationWarning,
        stacklevel=stacklevel + 1,
    )
    return {name: info for name in installed_loop_names() if (info := find_training_loop(name))}


def __getattr__(name: str) -> Any:
    if name == "TRAINING_LOOPS":
        return deprecated_table("learnerkit.training_loops", stacklevel=2)
    raise AttributeError(f"module 'learnerkit.training_loops' has no attribute {name!r}")
