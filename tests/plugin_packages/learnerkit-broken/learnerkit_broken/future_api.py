"""Written for a plugin API this learnerkit does not provide (``requires_api``)."""

from learnerkit import Algorithm, Hyperparameters, hookimpl


@hookimpl
def compute_loss(fwd_out, ops):
    return {"total_loss": ops.mean(fwd_out["vf_preds"])}


algorithm = Algorithm(name="future_api", hyperparameters=Hyperparameters, requires_api=">=9.0")
