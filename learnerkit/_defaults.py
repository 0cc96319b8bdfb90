"""The host's own hook implementations: what an algorithm gets unless it overrides them.

Registered first in every Learner's plugin manager, so they are called last: for
``configure_optimizers`` only when the algorithm returns nothing, and for the merged hooks
their keys are the ones the algorithm and extra plugins override.
"""

from __future__ import annotations

import math

from learnerkit.coefficients import schedule_value
from learnerkit.hookspecs import hookimpl

# The name of a module's optimizer when configure_optimizers returns a lone one.
DEFAULT_OPTIMIZER = "default"


@hookimpl
def configure_optimizers(module, hyperparameters, ops):
    return ops.adam(module, hyperparameters.learning_rate)


@hookimpl
def additional_update(learner, module_id, hyperparameters, timestep):
    # Several optimizers follow lr_schedule together, each keeping its ratio to
    # learning_rate (a value-function optimizer built at 10x the rate stays at 10x).
    ops = learner.backend.ops
    optimizers = learner.optimizers(module_id)
    if hyperparameters.lr_schedule is not None:
        scheduled = schedule_value(hyperparameters.lr_schedule, timestep)
        for name, optimizer in optimizers.items():
            initial = learner.initial_learning_rate(module_id, name)
            rate = scaled_learning_rate(hyperparameters.learning_rate, initial, scheduled)
            ops.set_learning_rate(optimizer, rate)
    return learning_rates(learner, module_id)


@hookimpl
def compile_results(learner, module_id, batch, metrics):
    return {**metrics, **learning_rates(learner, module_id), "num_samples": batch.count}


def learning_rates(learner, module_id) -> dict[str, float]:
    """``learning_rate`` (the default optimizer's, else the first's) and, when the module
    has several optimizers, ``learning_rate_<name>`` for each."""
    ops = learner.backend.ops
    optimizers = learner.optimizers(module_id)
    rates = {name: ops.get_learning_rate(opt) for name, opt in optimizers.items()}
    first = rates.get(DEFAULT_OPTIMIZER, next(iter(rates.values())))
    if len(rates) == 1:
        return {"learning_rate": first}
    return {"learning_rate": first, **{f"learning_rate_{n}": r for n, r in rates.items()}}


def scaled_learning_rate(base: float, initial: float, scheduled: float) -> float:
    """An optimizer's learning rate under ``lr_schedule``: the schedule's value times the
    optimizer's initial rate over ``learning_rate`` (1 for the default optimizer, whose rate
    is ``learning_rate``; a value-function optimizer built at 10x keeps 10x)."""
    if math.isclose(initial, base, rel_tol=1e-6):
        return scheduled
    return scheduled * initial / base
