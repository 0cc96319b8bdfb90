"""Prioritized replay: the sum tree stays exact, rows are drawn in proportion to
``priority ** alpha`` (and uniform sampling is uniform), importance weights are Schaul et
al.'s, new rows come in at the largest priority, and stale priorities are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from replay_references import make_stream

from learnerkit import BatchError, Columns, NonFiniteError
from learnerkit.replay import (
    PrioritizedReplayBuffer,
    ReplayColumns,
    SumTree,
    UniformReplayBuffer,
)

DRAWS = 200_000


def chi_square(counts: np.ndarray, probabilities: np.ndarray) -> float:
    expected = probabilities * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


def chi_square_bound(dof: int, z: float = 5.0) -> float:
    """The chi-square quantile about z standard deviations out (Wilson-Hilferty): a
    correct sampler exceeds it about once in 3.5 million runs."""
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def filled(buffer, rows: int):
    """``rows`` sampleable rows of one stream (one-step, so none is pending after a
    termination at the end); returns their indexes."""
    stream = make_stream(0, rows, np.random.default_rng(0), 0.0)
    columns = stream.columns(0, rows)
    columns[Columns.TERMINATEDS] = np.r_[np.zeros(rows - 1, bool), True]
    buffer.add(columns, stream=0)
    return buffer.sampleable_indices()


# The sum tree ------------------------------------------------------------------------------
@settings(deadline=None, max_examples=50)
@given(
    capacity=st.integers(1, 70),
    updates=st.lists(
        st.tuples(st.lists(st.integers(0, 69), min_size=1, max_size=20), st.integers(0, 10**6)),
        min_size=1,
        max_size=60,
    ),
    seed=st.integers(0, 2**16),
)
def test_sum_tree_sums_stay_exact_after_many_updates(capacity, updates, seed):
    rng = np.random.default_rng(seed)
    tree, leaves = SumTree(capacity), np.zeros(capacity)
    floats, float_leaves = SumTree(capacity), np.zeros(capacity)
    for slots, value in updates:
        slots = np.array(slots) % capacity
        values = value + rng.integers(0, 3, size=len(slots))  # integer priorities
        tree.set(slots, values)
        for slot, v in zip(slots, values, strict=True):  # the last value of a slot wins
            leaves[slot] = v
        noisy = rng.random(len(slots)) * 10.0 ** rng.integers(-6, 6)
        floats.set(slots, noisy)
        for slot, v in zip(slots, noisy, strict=True):
            float_leaves[slot] = v
    assert tree.total == leaves.sum()  # integers: exactly
    np.testing.assert_array_equal(tree.leaves, leaves)
    assert math.isclose(floats.total, math.fsum(float_leaves), rel_tol=1e-12, abs_tol=1e-300)
    # A function of its leaves alone: a tree built afresh from them has the same sums.
    fresh = SumTree.from_leaves(float_leaves)
    assert (floats.total, floats.min) == (fresh.total, fresh.min)
    assert floats.min == (float_leaves[float_leaves > 0].min() if float_leaves.any() else np.inf)
    # Every draw lands on the leaf whose interval of the cumulative sum holds it.
    if tree.total > 0:
        masses = np.r_[np.floor(np.linspace(0, tree.total, 50, endpoint=False)), tree.total - 1]
        expected = np.searchsorted(np.cumsum(leaves), masses, side="right")
        np.testing.assert_array_equal(tree.find(masses), expected)
        assert (leaves[tree.find(masses)] > 0).all()


def test_the_tree_tracks_the_smallest_positive_leaf():
    tree = SumTree(5)
    assert tree.min == np.inf
    tree.set([0, 1, 2], [3.0, 1.0, 2.0])
    assert tree.min == 1.0
    tree.set([1], [0.0])  # emptied
    assert tree.min == 2.0 and tree.total == 5.0
    assert SumTree.from_leaves(tree.leaves).min == 2.0


# Sampling frequencies ----------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_rows_are_drawn_in_proportion_to_priority_to_the_alpha(alpha):
    buffer = PrioritizedReplayBuffer(64, alpha=alpha, n_step=1)
    indices = filled(buffer, 20)
    td_errors = np.arange(1.0, 21.0) ** 1.5
    buffer.update_priorities(indices, td_errors)
    rng = np.random.default_rng(0)
    drawn = np.concatenate(
        [buffer.sample(10_000, rng, beta=0.4)[ReplayColumns.BATCH_INDEXES] for _ in range(20)]
    )
    counts = np.bincount(drawn - indices[0], minlength=20)
    p = (td_errors + buffer.epsilon) ** alpha
    bound = chi_square_bound(19)
    assert chi_square(counts, p / p.sum()) < bound
    if alpha > 0:  # the test can tell: uniform sampling would fail it
        assert chi_square(counts, np.full(20, 1 / 20)) > 100 * bound


def test_uniform_sampling_is_uniform_over_sampleable_rows_only():
    buffer = UniformReplayBuffer(64, n_step=3)
    stream = make_stream(0, 30, np.random.default_rng(1), 0.0)
    buffer.add(stream.columns(0, 30), stream=0)  # the last 3 rows wait for their windows
    indices = buffer.sampleable_indices()
    assert len(indices) == 27 and buffer.num_pending == 3
    rng = np.random.default_rng(0)
    drawn = np.concatenate(
        [buffer.sample(10_000, rng)[ReplayColumns.BATCH_INDEXES] for _ in range(20)]
    )
    assert set(drawn) == set(indices)
    counts = np.bincount(drawn, minlength=27)
    assert chi_square(counts, np.full(27, 1 / 27)) < chi_square_bound(26)


@settings(deadline=None, max_examples=20)
@given(
    alpha=st.sampled_from([0.0, 0.5, 0.7, 1.0]),
    beta=st.sampled_from([0.0, 0.4, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_importance_weights_are_schaul_et_al_s(alpha, beta, seed):
    rng = np.random.default_rng(seed)
    buffer = PrioritizedReplayBuffer(40, alpha=alpha, n_step=2, gamma=0.9)
    stream = make_stream(0, 60, rng, 0.1)  # evicts and leaves some rows pending
    for start in range(0, 60, 7):
        buffer.add(stream.columns(start, start + 7), stream=0)
        batch = buffer.sample(8, rng, beta=beta)
        buffer.update_priorities(batch[ReplayColumns.BATCH_INDEXES], rng.normal(size=8) * 3)
    # Every row's priority, from the TD errors the buffer was given.
    indices = buffer.sampleable_indices()
    td_errors = rng.normal(size=len(indices)) * 5
    buffer.update_priorities(indices, td_errors)
    batch = buffer.sample(64, rng, beta=beta)
    p = (np.abs(td_errors) + buffer.epsilon) ** alpha
    probability = p / p.sum()
    weights = (len(indices) * probability) ** -beta
    expected = weights / weights.max()
    positions = np.searchsorted(indices, batch[ReplayColumns.BATCH_INDEXES])
    np.testing.assert_allclose(batch[ReplayColumns.WEIGHTS], expected[positions], rtol=1e-6)
    assert batch[ReplayColumns.WEIGHTS].dtype == np.float32


def test_a_new_row_comes_in_at_the_largest_priority_seen():
    buffer = PrioritizedReplayBuffer(64, alpha=1.0, n_step=1)
    indices = filled(buffer, 10)
    buffer.update_priorities(indices, np.r_[np.ones(9), 9.0])  # largest: 9 + epsilon
    buffer.update_priorities(indices[-1:], [0.5])  # lowered again: the largest seen stays
    filled(buffer, 1)
    counts = np.bincount(
        buffer.sample(100_000, np.random.default_rng(0), beta=1.0)[ReplayColumns.BATCH_INDEXES]
    )
    p = np.r_[np.ones(9), 0.5, 9.0] + buffer.epsilon
    assert chi_square(counts, p / p.sum()) < chi_square_bound(10)


def test_a_row_sampled_twice_takes_its_last_td_error():
    buffer = PrioritizedReplayBuffer(16, alpha=1.0)
    indices = filled(buffer, 4)
    buffer.update_priorities(np.r_[indices, indices[:1]], [1.0, 1.0, 1.0, 1.0, 3.0])
    weights = buffer.sample(200, np.random.default_rng(0), beta=1.0)
    row0 = weights[ReplayColumns.BATCH_INDEXES] == indices[0]
    np.testing.assert_allclose(weights[ReplayColumns.WEIGHTS][row0], 1 / 3, rtol=1e-6)


# Priorities that cannot apply ----------------------------------------------------------------
def test_priorities_of_evicted_rows_are_refused_or_skipped():
    buffer = PrioritizedReplayBuffer(10, n_step=1)
    stream = make_stream(0, 30, np.random.default_rng(0), 0.0)
    buffer.add(stream.columns(0, 10), stream=0)
    batch = buffer.sample(32, np.random.default_rng(0), beta=0.4)
    buffer.add(stream.columns(10, 15), stream=0)  # evicts rows 0-4
    indexes = batch[ReplayColumns.BATCH_INDEXES]
    with pytest.raises(BatchError, match=r"were evicted after they were sampled.*skip_evicted"):
        buffer.update_priorities(indexes, np.ones(32))
    assert buffer.update_priorities(indexes, np.ones(32), skip_evicted=True) == (indexes >= 5).sum()


def test_priorities_that_do_not_fit_the_rows_are_refused():
    buffer = PrioritizedReplayBuffer(10, n_step=3)
    stream = make_stream(0, 6, np.random.default_rng(0), 0.0)
    buffer.add(stream.columns(0, 6), stream=0)  # rows 3-5 are pending
    with pytest.raises(BatchError, match="were never rows of this buffer"):
        buffer.update_priorities([99], [1.0])
    with pytest.raises(BatchError, match="pending"):
        buffer.update_priorities([4], [1.0])
    with pytest.raises(BatchError, match="one TD error per sampled row"):
        buffer.update_priorities([0, 1], [1.0])
    with pytest.raises(NonFiniteError, match="not finite"):
        buffer.update_priorities([0], [np.nan])
    with pytest.raises(BatchError, match="integer row indexes"):
        buffer.update_priorities([0.5], [1.0])
