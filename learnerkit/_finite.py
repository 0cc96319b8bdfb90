"""NaN and inf in updates (issue 9): the numpy check of a batch's columns, and what an update
makes of the minibatch steps that its backend did not apply.

The backends' train steps never apply a minibatch whose loss or gradient norm is not finite
(weights and optimizer state stay as they were) and mark it ``skipped``; this module turns
those marks into results (``Hyperparameters.non_finite == "skip"``) or a NonFiniteError
(``"raise"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from learnerkit.errors import NonFiniteError

# The backends train in float32: a float64 beyond its range becomes inf when cast.
F32_MAX = float(np.finfo(np.float32).max)
# A count, but not ``num_``-prefixed on purpose: data-parallel learners all skip the same
# minibatches (they decide on the all-reduced gradients), so summing their counts, as the
# group does with ``num_*`` results, would multiply it by the number of learners.
SKIPPED = "non_finite_minibatches_skipped"


def non_finite_columns(batch: Mapping[str, np.ndarray]) -> dict[str, str]:
    """The float columns holding NaN, inf, or values beyond float32's range, each with a
    description such as ``"3 of 8 rows: NaN, inf"``. Integer and bool columns are always
    finite; columns that never become tensors (strings, objects) are not looked at."""
    found = {}
    for name, array in batch.items():
        if array.dtype.kind != "f" or array.size == 0:
            continue
        limit = min(float(np.finfo(array.dtype).max), F32_MAX)
        # Two passes without temporaries; NaN propagates through min and max, so a clean
        # column (the usual case) costs no more than this.
        if -limit <= array.min() and array.max() <= limit:
            continue
        found[name] = _describe(array, limit)
    return found


def _describe(array: np.ndarray, limit: float) -> str:
    rows = array.reshape(len(array), -1)
    nan, inf = np.isnan(rows), np.isinf(rows)
    with np.errstate(invalid="ignore"):
        beyond = (np.abs(rows) > limit) & ~inf
    kinds = [
        kind
        for kind, mask in (("NaN", nan), ("inf", inf), ("beyond float32's range", beyond))
        if mask.any()
    ]
    count = int((nan | inf | beyond).any(axis=1).sum())
    return f"{count} of {len(array)} rows: {', '.join(kinds)}"


def columns_text(found: Mapping[str, str]) -> str:
    """``column 'obs' (8 of 8 rows: NaN)``, or several such, for an error message."""
    listed = ", ".join(f"{name!r} ({what})" for name, what in found.items())
    return f"column{'s' if len(found) > 1 else ''} {listed}"


def check_batch(batch: Mapping[str, np.ndarray], module_id: str) -> None:
    """Raise NonFiniteError naming every column of ``batch`` with non-finite values."""
    found = non_finite_columns(batch)
    if found:
        raise NonFiniteError(
            f"batch for module {module_id!r} has non-finite values in {columns_text(found)}; "
            "nothing was trained: drop or fix those rows, or set "
            "Hyperparameters(non_finite='skip') to skip the minibatches they fall in"
        )


def summarize(
    keys: Sequence[str],
    table: np.ndarray,
    *,
    module_id: str,
    policy: str,
    steps_per_epoch: int,
    batch: Mapping[str, np.ndarray],
) -> dict[str, float]:
    """The update's results from its steps' statistics (``table``: one row per step, one
    column per key, ``skipped`` among them): means over the applied steps (a skipped step's
    NaN would poison them; NaN when no step was applied) and the skipped count. Under the
    ``"raise"`` policy a skipped step raises NonFiniteError instead."""
    skipped = table[:, list(keys).index("skipped")] > 0
    if policy == "raise" and skipped.any():
        first = int(np.argmax(skipped))
        stats = dict(zip(keys, table[first].tolist(), strict=True))
        raise NonFiniteError(_step_message(module_id, first, steps_per_epoch, stats, batch))
    applied = table[~skipped]
    means = applied.mean(axis=0) if len(applied) else np.full(len(keys), np.nan)
    metrics = {k: float(v) for k, v in zip(keys, means, strict=True) if k != "skipped"}
    metrics[SKIPPED] = int(skipped.sum())
    return metrics


def _step_message(
    module_id: str, index: int, per_epoch: int, stats: dict[str, float], batch: Mapping
) -> str:
    epoch, minibatch = divmod(index, per_epoch)
    terms = [
        k for k, v in stats.items() if k not in ("skipped", "gradient_norm") and not np.isfinite(v)
    ]
    loss = f"loss terms {terms} were not finite" if terms else "its loss terms were finite"
    columns = non_finite_columns(batch)
    cause = (
        f"Batch columns with non-finite values: {columns_text(columns)}"
        if columns
        else "The batch's columns are all finite: the loss or its gradients overflowed in the step"
    )
    return (
        f"update of module {module_id!r} stopped at epoch {epoch + 1}, minibatch "
        f"{minibatch + 1} of {per_epoch}: {loss}, gradient norm {stats['gradient_norm']}. "
        "Neither it nor any minibatch after it was applied: weights and optimizer state are "
        f"as they were before it (this update applied {index} minibatch(es) before it). "
        f"{cause}. Fix the data or the loss, or set Hyperparameters(non_finite='skip') to "
        "skip such minibatches instead"
    )
