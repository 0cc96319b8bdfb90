"""Asks compute_loss for an argument the spec does not have."""

from learnerkit import Algorithm, Hyperparameters, hookimpl


@hookimpl
def compute_loss(fwd_out, ops, advantage_estimate):
    return {"total_loss": ops.mean(fwd_out["vf_preds"] * advantage_estimate)}


algorithm = Algorithm(name="bad_argument", hyperparameters=Hyperparameters)
