"""Adam for an actor-critic whose value tower steps faster than the rest, shared by IMPALA
and APPO (which imports it).

Adam moves each weight by about its step size per step whatever the loss's scale, so a
value head that must reach returns of order 100 from an output near 0 needs many steps: the
asynchronous loop takes few per env step (IMPALA: four per 800), and at the policy's step
size the critic lagged the returns for most of a CartPole run, its explained variance near
0. The parameters named ``vf.*`` (the default modules' value tower, in torch and TF) get an
optimizer of their own at ``vf_lr_ratio`` times ``learning_rate``.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["actor_critic_optimizers"]

logger = logging.getLogger(__name__)

VALUE_PREFIX = "vf."


def actor_critic_optimizers(
    learner: Any, module_id: str, module: Any, hyperparameters: Any, ops: Any, algorithm: str
) -> Any:
    """``{"pi": ..., "vf": ...}`` Adam optimizers, the value tower's at
    ``hyperparameters.vf_lr_ratio`` times ``learning_rate`` (an ``lr_schedule`` keeps the
    ratio); one optimizer when the ratio is 1 or the module has no ``vf.*`` parameters (a
    module of your own: said in a warning)."""
    hps = hyperparameters
    if hps.vf_lr_ratio == 1.0:
        return ops.adam(module, hps.learning_rate, eps=hps.adam_epsilon)
    named = learner.named_parameters(module)
    vf = [p for name, p in named.items() if name.startswith(VALUE_PREFIX)]
    if not vf:
        logger.warning(
            "%s: module %r has no parameters named 'vf.*' for vf_lr_ratio=%g: one optimizer "
            "at learning_rate for all (set vf_lr_ratio=1 to silence this)",
            algorithm,
            module_id,
            hps.vf_lr_ratio,
        )
        return ops.adam(module, hps.learning_rate, eps=hps.adam_epsilon)
    pi = [p for name, p in named.items() if not name.startswith(VALUE_PREFIX)]
    return {
        "pi": ops.adam(module, hps.learning_rate, eps=hps.adam_epsilon, parameters=pi),
        "vf": ops.adam(
            module, hps.vf_lr_ratio * hps.learning_rate, eps=hps.adam_epsilon, parameters=vf
        ),
    }
