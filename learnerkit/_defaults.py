"""The host's own hook implementations: what an algorithm gets unless it overrides them.

Registered first in every Learner's plugin manager, so they are called last: for
``configure_optimizers`` only when the algorithm returns nothing, and for the merged hooks
their keys are the ones the algorithm and extra plugins override.
"""

from __future__ import annotations

from learnerkit.hookspecs import hookimpl
from learnerkit.specs import schedule_value


@hookimpl
def configure_optimizers(module, hyperparameters, ops):
    return ops.adam(module, hyperparameters.learning_rate)


@hookimpl
def additional_update(learner, module_id, hyperparameters, timestep):
    optimizer = learner.optimizer(module_id)
    ops = learner.backend.ops
    if hyperparameters.lr_schedule is not None:
        ops.set_learning_rate(optimizer, schedule_value(hyperparameters.lr_schedule, timestep))
    return {"learning_rate": ops.get_learning_rate(optimizer)}


@hookimpl
def compile_results(learner, module_id, batch, metrics):
    return {
        **metrics,
        "learning_rate": learner.backend.ops.get_learning_rate(learner.optimizer(module_id)),
        "num_samples": batch.count,
    }
