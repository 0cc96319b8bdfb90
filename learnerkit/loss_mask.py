"""Means that count only the rows a loss trains on (``Columns.LOSS_MASK``).

A recurrent module trained with burn-in (``model_config["lstm_burn_in"]``) runs its forward
pass over whole sequences, but the first steps of each only warm up the state: the host
cannot cut those rows out of the batch, since V-trace runs along whole fragments and a
target network's forward pass needs them too. So ``Learner.update`` adds
``Columns.LOSS_MASK`` (1.0 for a row that counts, 0.0 for a burnt-in one; the on-policy
loop's padding of PettingZoo agents' segments is 0.0 too) and a loss takes its means and
statistics with these functions, which are plain means when ``mask`` is None (nothing to
leave out). An algorithm whose loss does this declares
``Algorithm(reads_loss_mask=True)``; a module with burn-in is refused for any other.

Pure functions over ``ops``: one definition for torch and TensorFlow. ``x`` and ``mask``
have one shape (flat rows, or both time-major).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from learnerkit._columns import Columns
from learnerkit.ops import Ops, Tensor

__all__ = ["loss_mask", "masked_mean", "masked_variance"]


def loss_mask(batch: Mapping[str, Any]) -> Tensor | None:
    """The minibatch's ``Columns.LOSS_MASK``, or None when every row counts."""
    return batch.get(Columns.LOSS_MASK)


def masked_mean(x: Tensor, mask: Tensor | None, ops: Ops) -> Tensor:
    """The mean of ``x`` over the rows ``mask`` keeps (``ops.mean(x)`` for None). A left
    out row adds nothing, not even a NaN or an infinity of its own."""
    if mask is None:
        return ops.mean(x)
    kept = ops.where(mask > 0.0, x, ops.zeros_like(x))
    return ops.sum(kept) / ops.clip(ops.sum(mask), 1.0, float("inf"))


def masked_variance(x: Tensor, mask: Tensor | None, ops: Ops) -> Tensor:
    """The (population) variance of ``x`` over the rows ``mask`` keeps."""
    if mask is None:
        return ops.variance(x)
    centred = x - masked_mean(x, mask, ops)
    return masked_mean(ops.square(centred), mask, ops)
