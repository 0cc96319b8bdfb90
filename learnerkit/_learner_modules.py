"""Building and dropping one module of a Learner: the module, its optimizer(s), algorithm
state, target network, train step and update count, all together (``Learner.build``,
``add_module`` and ``remove_module`` share this, so a module added while training is built
exactly as one given at the start).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

from learnerkit import _defaults
from learnerkit._defaults import DEFAULT_OPTIMIZER
from learnerkit._plugins import new_plugin_manager
from learnerkit.errors import PluginError

if TYPE_CHECKING:
    from learnerkit._plugins import Algorithm
    from learnerkit.learner import Learner
    from learnerkit.learner_spec import LearnerSpec


def make_plugin_manager(spec: LearnerSpec, algorithm: Algorithm) -> pluggy.PluginManager:
    """A plugin manager for one Learner: the host defaults, the spec's extra plugins, and
    its one algorithm (installed algorithms never answer each other's hooks)."""
    pm = new_plugin_manager()
    # Registration order sets call order (last registered is called first): defaults,
    # then extras, then the algorithm, whose compute_loss therefore always wins.
    pm.register(_defaults, name="learnerkit-defaults")
    for plugin in spec.extra_plugins:
        try:
            pm.register(plugin)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"extra plugin {plugin!r} breaks the plugin contract: {exc}") from exc
    pm.register(algorithm.plugin, name=f"algorithm-{algorithm.name}")
    try:
        pm.check_pending()  # a misspelt hook name in an extra plugin
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"an extra plugin breaks the plugin contract: {exc}") from exc
    return pm


def build_module(learner: Learner, module_id: str) -> None:
    """Build module ``module_id`` of ``learner.spec`` and everything that trains it."""
    spec, backend = learner.spec, learner.backend
    hps = learner.hyperparameters_for(module_id)
    module_spec = spec.module_specs[module_id]
    # Every data-parallel copy builds from the same seed, so weights start identical.
    learner._modules[module_id] = backend.build_module(module_spec, hps.seed)
    try:
        optimizers = named_optimizers(
            learner,
            module_id,
            learner.configure_optimizers_for_module(module_id=module_id, hps=hps),
        )
        learner._optimizers[module_id] = optimizers
        learner._initial_lrs[module_id] = {
            name: backend.ops.get_learning_rate(opt) for name, opt in optimizers.items()
        }
        initial = learner.algorithm.initial_state
        learner._algorithm_state[module_id] = dict(initial(hps)) if initial else {}
        learner._num_updates[module_id] = 0
        if learner._targets is not None:
            learner._targets.add(
                module_id,
                learner._modules[module_id],
                lambda: backend.build_module(module_spec, hps.seed),
            )
        learner._train_steps[module_id] = learner._make_train_step(module_id)
    except BaseException:
        drop_module(learner, module_id)
        raise


def drop_module(learner: Learner, module_id: str) -> None:
    """Forget everything ``build_module`` made for ``module_id`` (what exists of it)."""
    for table in (
        learner._modules,
        learner._optimizers,
        learner._initial_lrs,
        learner._algorithm_state,
        learner._num_updates,
        learner._train_steps,
        learner._hps,
    ):
        table.pop(module_id, None)
    if learner._targets is not None:
        learner._targets.remove(module_id)


def named_optimizers(learner: Learner, module_id: str, configured: Any) -> dict[str, Any]:
    """``configure_optimizers``' result as ``{name: optimizer}`` (a lone optimizer is named
    ``"default"``), checked to cover every trainable parameter exactly once."""
    where = f"configure_optimizers of plugin {learner.algorithm.name!r} for module {module_id!r}"
    if configured is None:
        raise PluginError(f"{where} returned no optimizer")
    if isinstance(configured, Mapping):
        if not configured:
            raise PluginError(f"{where} returned an empty mapping of optimizers")
        optimizers = {str(name): opt for name, opt in configured.items()}
    else:
        optimizers = {DEFAULT_OPTIMIZER: configured}
    backend = learner.backend
    module_params = backend.parameters(learner._modules[module_id])
    if len(optimizers) == 1:
        return optimizers  # one optimizer trains the whole module, as it always has
    owners: dict[int, list[str]] = {id(p): [] for p in module_params}
    for name, opt in optimizers.items():
        params = backend.optimizer_parameters(opt)
        if params is None:
            raise PluginError(
                f"{where}: optimizer {name!r} does not say which parameters it covers; build "
                "each of several optimizers with ops.adam(module, learning_rate, parameters=...)"
            )
        for p in params:
            if id(p) not in owners:
                raise PluginError(
                    f"{where}: optimizer {name!r} covers a parameter that is not a trainable "
                    "parameter of this module"
                )
            owners[id(p)].append(name)
    names = backend.parameter_names(learner._modules[module_id])
    uncovered = [names.get(i, "?") for i, o in owners.items() if not o]
    shared = {names.get(i, "?"): o for i, o in owners.items() if len(o) > 1}
    if uncovered or shared:
        raise PluginError(
            f"{where}: every trainable parameter must belong to exactly one optimizer; "
            f"covered by none: {uncovered}, by several: {shared}. Pass each optimizer its "
            "share with ops.adam(module, learning_rate, parameters=...)"
        )
    return optimizers


def loss_fn(learner: Learner, module_id: str) -> Callable[..., Mapping[str, Any]]:
    """The loss a train step calls: the algorithm's ``compute_loss`` for one module."""
    hps = learner.hyperparameters_for(module_id)

    def loss_fn(batch, fwd_out, state):
        learner._loss_state[module_id] = state
        try:
            out = learner.compute_loss_for_module(
                module_id=module_id, hps=hps, batch=batch, fwd_out=fwd_out
            )
        finally:
            # Outside a train step, compute_loss_for_module reads the algorithm state.
            del learner._loss_state[module_id]
        if out is None:
            raise PluginError(
                f"compute_loss of plugin {learner.algorithm.name!r} returned no total loss"
            )
        if not isinstance(out, Mapping):  # a bare loss, as in RLlib's examples
            return {"total_loss": out}
        if "total_loss" not in out:
            raise PluginError(
                f"compute_loss of plugin {learner.algorithm.name!r} returned {sorted(out)} "
                "without 'total_loss'"
            )
        return out

    return loss_fn
