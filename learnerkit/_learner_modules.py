"""Building and dropping one module of a Learner: the module, its optimizer(s), algorithm
state, target network, train step and update count, all together (``Learner.build``,
``add_module`` and ``remove_module`` share this, so a module added while training is built
exactly as one given at the start).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from learnerkit.errors import PluginError

if TYPE_CHECKING:
    from learnerkit.learner import Learner

DEFAULT_OPTIMIZER = "default"


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


def scaled_learning_rate(base: float, initial: float, scheduled: float) -> float:
    """An optimizer's learning rate under ``lr_schedule``: the schedule's value times the
    optimizer's initial rate over ``learning_rate`` (1 for the default optimizer, whose rate
    is ``learning_rate``; a value-function optimizer built at 10x keeps 10x)."""
    if math.isclose(initial, base, rel_tol=1e-6):
        return scheduled
    return scheduled * initial / base
