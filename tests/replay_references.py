"""A slow float64 reference for the replay buffer tests, written apart from the code under
test: streams of steps whose observations name their stream and step, and each row's n-step
return, discount and next observation, summed step by step."""

from __future__ import annotations

import attrs
import numpy as np

from learnerkit import Columns
from learnerkit.replay import ReplayColumns


@attrs.frozen(eq=False)
class Stream:
    """One env's steps. ``obs[t] = [stream, t, 0]``; an episode's final observation (the
    ``new_obs`` of a step that ends it) is ``[stream, t, 1]``, which no row holds."""

    index: int
    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminateds: np.ndarray
    truncateds: np.ndarray
    next_obs: np.ndarray

    def __len__(self) -> int:
        return len(self.rewards)

    def columns(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {
            Columns.OBS: self.obs[start:stop],
            Columns.ACTIONS: self.actions[start:stop],
            Columns.REWARDS: self.rewards[start:stop],
            Columns.TERMINATEDS: self.terminateds[start:stop],
            Columns.TRUNCATEDS: self.truncateds[start:stop],
            Columns.NEXT_OBS: self.next_obs[start:stop],
        }


def make_stream(index: int, length: int, rng: np.random.Generator, end_prob: float) -> Stream:
    u = rng.random(length)
    terminateds = u < end_prob / 2
    truncateds = (u >= end_prob / 2) & (u < end_prob)
    truncateds |= u < end_prob / 8  # some steps are both (gymnasium allows it)
    steps = np.arange(length, dtype=np.float64)
    obs = np.stack([np.full(length, index), steps, np.zeros(length)], axis=1)
    next_obs = np.stack([np.full(length, index), steps + 1, np.zeros(length)], axis=1)
    ends = terminateds | truncateds
    next_obs[ends] = np.stack([np.full(ends.sum(), index), steps[ends], np.ones(ends.sum())], 1)
    return Stream(
        index=index,
        obs=obs,
        actions=rng.integers(0, 5, size=length),
        rewards=rng.normal(size=length) * rng.choice([1.0, 10.0]),
        terminateds=terminateds,
        truncateds=truncateds,
        next_obs=next_obs,
    )


def stack_time_major(streams: list[Stream], start: int, stop: int) -> dict[str, np.ndarray]:
    per_stream = [s.columns(start, stop) for s in streams]
    return {name: np.stack([c[name] for c in per_stream], axis=1) for name in per_stream[0]}


def reference_row(stream: Stream, t: int, available: int, n: int, gamma: float, flushed: bool):
    """(return, discount, terminated, next obs) of the row at step t, given the stream's
    first ``available`` steps; None while its window waits for more steps."""
    ret = 0.0
    for k in range(n):
        if t + k >= available:  # cut by the end of the data
            if not flushed:
                return None
            return ret, gamma**k, False, tuple(stream.next_obs[available - 1])
        ret += gamma**k * float(stream.rewards[t + k])
        if stream.terminateds[t + k]:
            return ret, 0.0, True, tuple(stream.next_obs[t + k])
        if stream.truncateds[t + k]:
            return ret, gamma ** (k + 1), False, tuple(stream.next_obs[t + k])
    if t + n < available:
        return ret, gamma**n, False, tuple(stream.obs[t + n])
    if not flushed:
        return None
    return ret, gamma**n, False, tuple(stream.next_obs[available - 1])


def expected_rows(streams, available, n, gamma, flushed=False, alive=None) -> dict:
    """The reference rows by (stream, step), only those whose row id is in ``alive``
    (a dict (stream, step) -> row id, and the first live id) when given."""
    rows = {}
    for stream in streams:
        for t in range(available[stream.index]):
            if alive is not None and alive[0][(stream.index, t)] < alive[1]:
                continue
            row = reference_row(stream, t, available[stream.index], n, gamma, flushed)
            if row is not None:
                rows[(stream.index, t)] = row
    return rows


def buffer_rows(buffer) -> dict:
    """Every sampleable row of ``buffer`` by (stream, step), read from its observation."""
    batch = buffer.rows(buffer.sampleable_indices())
    return {
        (int(obs[0]), int(obs[1])): (
            float(batch[Columns.REWARDS][i]),
            float(batch[ReplayColumns.DISCOUNTS][i]),
            bool(batch[Columns.TERMINATEDS][i]),
            tuple(batch[Columns.NEXT_OBS][i]),
        )
        for i, obs in enumerate(batch[Columns.OBS])
    }


def assert_rows_equal(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    for key, (ret, discount, terminated, next_obs) in expected.items():
        g_ret, g_discount, g_terminated, g_next = got[key]
        # Stored as float32, as a learner trains on them.
        np.testing.assert_allclose(g_ret, ret, rtol=1e-6, atol=1e-5, err_msg=str(key))
        np.testing.assert_allclose(g_discount, discount, rtol=1e-6, err_msg=str(key))
        assert g_terminated == terminated, key
        assert g_next == next_obs, key
