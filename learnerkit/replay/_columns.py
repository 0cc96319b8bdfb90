"""The column names a replay buffer adds to RLlib's (``learnerkit.Columns``).

No numpy here: an algorithm plugin imports these names while plugins are listed.
"""

from __future__ import annotations

__all__ = ["ReplayColumns"]


class ReplayColumns:
    """Columns of a sampled replay batch beyond ``Columns.OBS``, ``ACTIONS``, ``REWARDS``
    (the n-step return), ``NEXT_OBS`` and ``TERMINATEDS``.

    The one-step TD target of a row is ``REWARDS + DISCOUNTS * V(NEXT_OBS)``: the discount
    carries both the number of steps summed and whether the episode terminated, so a loss
    needs no ``gamma``, ``n_step`` or ``TERMINATEDS`` of its own.
    """

    DISCOUNTS = "discounts"
    """``gamma ** k`` for the k rewards summed into the row's return; 0 where the episode
    terminated within them (never bootstrap), ``gamma ** k`` where it was truncated
    (bootstrap from the episode's final observation)."""
    WEIGHTS = "weights"
    """Importance-sampling weights (RLlib's ``weights``): ``(N * P(i)) ** -beta`` divided by
    the largest such weight over every sampleable row (Schaul et al. 2016); all ones when
    sampling is uniform, so one loss serves both buffers."""
    BATCH_INDEXES = "batch_indexes"
    """The row's index in the buffer (RLlib's ``batch_indexes``): hand it back, with the
    row's TD error, to ``PrioritizedReplayBuffer.update_priorities``. Stable while the row
    is stored: a row index is never reused."""
