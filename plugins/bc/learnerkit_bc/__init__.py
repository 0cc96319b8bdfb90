"""Behaviour cloning: fit the policy to a dataset's actions by maximum likelihood.

The whole algorithm is one hook. It runs on torch and TensorFlow alike because it computes
with the distribution the module gives and ``ops``, never with a framework directly.
``learnerkit train bc --dataset ID`` trains it on a Minari dataset with the offline loop.
"""

from __future__ import annotations

import attrs

from learnerkit import Algorithm, Columns, OfflineSettings, hookimpl
from learnerkit.fields import positive


@attrs.frozen(kw_only=True)
class BCHyperparameters(OfflineSettings):
    """The offline loop's settings (batch size, epochs, chunks, evaluation) and the shared
    ones (learning rate, clipping, seed); BC adds nothing of its own."""

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
    training_loop="offline",
    requires_api=">=0.2",
    description="Behaviour cloning (negative log-likelihood of the batch's actions)",
)
