"""Implements a hook whose name is misspelt (``compile_result``): check_pending catches it."""

from learnerkit import Algorithm, Hyperparameters, hookimpl


@hookimpl
def compute_loss(fwd_out, ops):
    return {"total_loss": ops.mean(fwd_out["vf_preds"])}


@hookimpl
def compile_result(metrics):
    return {"never": "called"}


algorithm = Algorithm(name="misspelt_hook", hyperparameters=Hyperparameters)
