"""A2C, trained by the "full_batch" loop: a policy gradient on GAE advantages."""

import attrs

from learnerkit import Algorithm, Columns, hookimpl
from learnerkit_fullbatch import FullBatchSettings


@attrs.frozen(kw_only=True)
class A2CHyperparameters(FullBatchSettings):
    learning_rate: float = 5e-3
    vf_loss_coeff: float = 0.5


@hookimpl
def compute_loss(hyperparameters, module, batch, fwd_out, ops):
    dist = module.action_dist(fwd_out[Columns.ACTION_DIST_INPUTS])
    advantages = batch[Columns.ADVANTAGES]
    policy_loss = -ops.mean(dist.logp(batch[Columns.ACTIONS]) * advantages)
    vf_loss = ops.mean(ops.square(fwd_out[Columns.VF_PREDS] - batch[Columns.VALUE_TARGETS]))
    total = policy_loss + hyperparameters.vf_loss_coeff * vf_loss
    return {"total_loss": total, "policy_loss": policy_loss, "vf_loss": vf_loss}


algorithm = Algorithm(
    name="a2c",
    hyperparameters=A2CHyperparameters,
    training_loop="full_batch",
    description="Advantage actor-critic on full batches",
)
