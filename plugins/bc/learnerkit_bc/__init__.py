"""Behaviour cloning: fit the policy to a dataset's actions by maximum likelihood.

The whole algorithm is one hook. It runs on torch and TensorFlow alike because it computes
with the distribution the module gives and ``ops``, never with a framework directly.
"""

from __future__ import annotations

import attrs

from learnerkit import Algorithm, Columns, Hyperparameters, hookimpl
from learnerkit.specs import positive


@attrs.frozen(kw_only=True)
class BCHyperparameters(Hyperparameters):
    """BC needs nothing beyond the shared hyperparameters (learning rate, clipping, seed)."""

    learning_rate: float = attrs.field(default=1e-3, converter=float, validator=positive)


@hookimpl
def compute_loss(module, batch, fwd_out, ops):
    dist = module.action_dist(fwd_out[Columns.ACTION_DIST_INPUTS])
    policy_loss = -ops.mean(dist.logp(batch[Columns.ACTIONS]))
    return {
        "total_loss": policy_loss,
        "policy_loss": policy_loss,
        "entropy": ops.mean(dist.entropy()),
    }


algorithm = Algorithm(
    name="bc",
    hyperparameters=BCHyperparameters,
    frameworks=("torch", "tf"),
    required_columns=(Columns.OBS, Columns.ACTIONS),
    description="Behaviour cloning (negative log-likelihood of the batch's actions)",
)
