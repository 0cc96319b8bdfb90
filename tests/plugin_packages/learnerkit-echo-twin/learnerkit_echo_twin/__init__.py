"""Claims the name 'echo' too; installing it beside learnerkit-echo is an error."""

from __future__ import annotations

from learnerkit import Algorithm, Hyperparameters, hookimpl


@hookimpl
def compute_loss(fwd_out, ops):
    return {"total_loss": ops.mean(fwd_out["vf_preds"])}


algorithm = Algorithm(name="echo", hyperparameters=Hyperparameters)
