"""Echo: the value head learns to echo each step's reward (a regression to the rewards).

A third-party plugin as small as one can be: metadata, one loss and one statistic, both
frameworks through ``ops``. It imports only learnerkit and attrs, so listing it is cheap.
"""

from __future__ import annotations

import attrs

from learnerkit import Algorithm, Columns, Hyperparameters, hookimpl


@attrs.frozen(kw_only=True)
class EchoHyperparameters(Hyperparameters):
    """Echo's own knob: how much the squared error counts."""

    echo_coeff: float = 1.0


@hookimpl
def compute_loss(hyperparameters, batch, fwd_out, ops):
    error = fwd_out[Columns.VF_PREDS] - ops.float32(batch[Columns.REWARDS])
    echo_loss = ops.mean(ops.square(error))
    return {"total_loss": hyperparameters.echo_coeff * echo_loss, "echo_loss": echo_loss}


@hookimpl
def additional_update(timestep):
    return {"echo_timestep": timestep}


algorithm = Algorithm(
    name="echo",
    hyperparameters=EchoHyperparameters,
    required_columns=(Columns.OBS, Columns.REWARDS),
    description="Regress the value head onto the rewards",
)
