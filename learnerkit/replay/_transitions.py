"""The rows of a replay buffer: n-step windows completed at insertion, observations stored
once, eviction first in, first out. How rows are sampled is the buffers' business
(``learnerkit.replay._buffers``); this module only stores and gathers them.

Storage. Row ids count every row ever added; row ``r`` lives in slot ``r % capacity`` until
``capacity`` newer rows have been added. A row stores its observation, action, n-step return,
discount, whether the episode terminated within its window, and where its next observation
is: the observation of a later row of its stream (the row n steps on) when the window ran n
steps inside the episode, else an observation stored apart (``FinalObservations``: where an
episode ended, and where a stream was flushed). A row only points forward, at a newer row or
at an observation owned by a row no older than itself, so evicting the oldest rows first
never leaves a live row pointing at an evicted observation.

Pending windows. A fragment ends mid-episode; its last steps' windows need rewards (and the
observation n steps on) that only the stream's next fragment brings. Those rows are stored
at once (their observations are what earlier rows point at) but are not sampleable: each
stream keeps a tail of them (ids and rewards, at most n) and the observation its last step
reached. The next fragment of the stream completes them; `flush` completes them as if the
episode had been truncated there (for a stream that will not continue: an env runner that
restarted, episodes abandoned).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import attrs
import numpy as np

from learnerkit._columns import Columns
from learnerkit.errors import BatchError, ConfigError
from learnerkit.replay._columns import ReplayColumns
from learnerkit.replay._final_obs import FinalObservations
from learnerkit.replay._fragments import check_time_major, decode_stream, encode_stream
from learnerkit.replay._n_step import check_n_step, n_step_windows

__all__ = ["Transitions", "Written"]

_NEXT, _READY = "next", "ready"  # where the next observation is; sampleable


class Written(NamedTuple):
    """Slots an add or a flush changed, for a sampler to keep its priorities in step."""

    overwritten: np.ndarray
    """Slots given to new rows: what they held is gone, and they are not sampleable yet."""
    ready: np.ndarray
    """Slots of rows that became sampleable."""


_NOTHING = Written(np.zeros(0, np.int64), np.zeros(0, np.int64))


@attrs.define
class _Tail:
    ids: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray  # what the stream's last step reached


class Transitions:
    """Rows of n-step transitions for ``capacity`` rows; see the module docstring."""

    def __init__(self, capacity: int, *, n_step: int, gamma: float) -> None:
        check_n_step(n_step, gamma)
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)):
            raise ConfigError(f"capacity is {capacity!r}; it is a number of transitions")
        if capacity <= n_step:
            raise ConfigError(
                f"capacity {capacity} does not exceed the n-step window (n_step={n_step}): a "
                "row waits for the row n steps later in its stream, so no full window would "
                f"ever be sampleable; use a capacity of at least {n_step + 1} (typically 1e5 "
                "to 1e6)"
            )
        self.capacity, self.n_step, self.gamma = int(capacity), int(n_step), float(gamma)
        self.added = 0
        self.num_ready = 0
        self._rows: dict[str, np.ndarray] = {}
        self._finals: FinalObservations | None = None
        self._tails: dict[Hashable, _Tail] = {}

    # Counts and sizes ---------------------------------------------------------------------
    @property
    def first(self) -> int:
        """The oldest live row id."""
        return max(0, self.added - self.capacity)

    @property
    def size(self) -> int:
        return self.added - self.first

    @property
    def num_pending(self) -> int:
        return sum(int((tail.ids >= self.first).sum()) for tail in self._tails.values())

    @property
    def nbytes(self) -> int:
        tails = sum(
            t.ids.nbytes + t.rewards.nbytes + t.next_obs.nbytes for t in self._tails.values()
        )
        finals = self._finals.nbytes if self._finals is not None else 0
        return sum(a.nbytes for a in self._rows.values()) + finals + tails

    # Adding -------------------------------------------------------------------------------
    def add_time_major(self, columns: Mapping[str, Any], streams: Sequence[Hashable]) -> Written:
        """Add ``[T, N, ...]`` columns (`REQUIRED`), column n being the next T steps of
        ``streams[n]``; returns the slots changed."""
        data = check_time_major(columns, streams, self._rows)
        steps, num_streams = data[Columns.REWARDS].shape
        if steps == 0:
            return _NOTHING
        if not self._rows:
            self._allocate(data)
        tails = [self._tails.pop(s, None) for s in streams]
        pad = max((len(t.ids) for t in tails if t is not None), default=0)
        length = pad + steps
        # The tails go before the new steps, right-aligned: a stream with a shorter tail
        # starts later. Padding is never a row, and windows only look forward.
        ids = np.full((length, num_streams), -1, dtype=np.int64)
        rewards = np.zeros((length, num_streams))
        terminateds = np.zeros((length, num_streams), dtype=bool)
        truncateds = np.zeros((length, num_streams), dtype=bool)
        ids[pad:] = self.added + np.arange(steps * num_streams).reshape(steps, num_streams)
        rewards[pad:] = data[Columns.REWARDS]
        terminateds[pad:] = data[Columns.TERMINATEDS]
        truncateds[pad:] = data[Columns.TRUNCATEDS]
        for n, tail in enumerate(tails):
            if tail is not None:
                ids[pad - len(tail.ids) : pad, n] = tail.ids
                rewards[pad - len(tail.ids) : pad, n] = tail.rewards
        windows = n_step_windows(rewards, terminateds, truncateds, n=self.n_step, gamma=self.gamma)
        t = np.arange(length)[:, None]
        # A window of n steps inside its episode bootstraps from the observation of the row
        # n steps on: sampleable once that row is here.
        full = ~windows.ended & (windows.steps == self.n_step) & (t + self.n_step < length)
        ready = (ids >= 0) & (windows.ended | full)
        first = max(0, self.added + steps * num_streams - self.capacity)
        alive = ids >= first
        pending = alive & ~ready

        # Each episode's final observation, owned by the row that ended the episode.
        end_t, end_n = np.nonzero((terminateds | truncateds) & alive)  # time-major: id order
        self._finals.release(first)
        final_ids = np.full((length, num_streams), -1, dtype=np.int64)
        final_ids[end_t, end_n] = self._finals.append(
            data[Columns.NEXT_OBS][end_t - pad, end_n], ids[end_t, end_n]
        )
        row_t, row_n = np.nonzero(ready & alive)
        last = row_t + windows.steps[row_t, row_n] - 1
        after = ids[np.minimum(row_t + self.n_step, length - 1), row_n]
        refs = np.where(windows.ended[row_t, row_n], -final_ids[last, row_n] - 1, after)

        overwritten = self._write_new_rows(data, steps * num_streams)
        ready_slots = self._complete(
            ids[row_t, row_n],
            windows.returns[row_t, row_n],
            windows.discounts(self.gamma)[row_t, row_n],
            windows.terminated[row_t, row_n],
            refs,
        )
        for n, stream in enumerate(streams):
            if pending[:, n].any():
                self._tails[stream] = _Tail(
                    ids[pending[:, n], n],
                    rewards[pending[:, n], n],
                    data[Columns.NEXT_OBS][-1, n].copy(),
                )
        return Written(overwritten, ready_slots)

    def flush(self, streams: Iterable[Hashable] | None = None) -> Written:
        """Complete the pending windows of ``streams`` (all by default) as if each stream's
        episode had been truncated after its last step; a stream with none is skipped."""
        keys = list(self._tails) if streams is None else [s for s in streams if s in self._tails]
        if not keys:
            return _NOTHING
        self._finals.release(self.first)
        parts = []
        for key in keys:
            tail = self._tails.pop(key)
            alive = tail.ids >= self.first
            if not alive.any():
                continue
            cut = np.zeros((len(tail.ids), 1), dtype=bool)
            cut[-1] = True
            windows = n_step_windows(
                tail.rewards[:, None], np.zeros_like(cut), cut, n=self.n_step, gamma=self.gamma
            )
            final = self._finals.append(tail.next_obs[None], tail.ids[-1:])
            parts.append(
                (
                    tail.ids[alive],
                    windows.returns[alive, 0],
                    windows.discounts(self.gamma)[alive, 0],
                    np.zeros(alive.sum(), dtype=bool),
                    np.full(alive.sum(), -final[0] - 1),
                )
            )
        if not parts:
            return _NOTHING
        ready = self._complete(*(np.concatenate(column) for column in zip(*parts, strict=True)))
        return Written(np.zeros(0, np.int64), ready)

    def _allocate(self, data: dict[str, np.ndarray]) -> None:
        # Zeroed pages are only committed as rows are written; dtypes are the data's own.
        obs, actions = data[Columns.OBS], data[Columns.ACTIONS]
        self._rows = {
            Columns.OBS: np.zeros((self.capacity, *obs.shape[2:]), obs.dtype),
            Columns.ACTIONS: np.zeros((self.capacity, *actions.shape[2:]), actions.dtype),
            Columns.REWARDS: np.zeros(self.capacity, np.float32),
            ReplayColumns.DISCOUNTS: np.zeros(self.capacity, np.float32),
            Columns.TERMINATEDS: np.zeros(self.capacity, bool),
            _NEXT: np.zeros(self.capacity, np.int64),
            _READY: np.zeros(self.capacity, bool),
        }
        self._finals = FinalObservations(obs.shape[2:], obs.dtype)

    def _write_new_rows(self, data: dict[str, np.ndarray], count: int) -> np.ndarray:
        kept = min(count, self.capacity)  # a fragment past the capacity keeps its last rows
        slots = np.arange(self.added + count - kept, self.added + count) % self.capacity
        self.num_ready -= int(self._rows[_READY][slots].sum())
        for name in (Columns.OBS, Columns.ACTIONS):
            flat = data[name].reshape(count, *data[name].shape[2:])
            self._rows[name][slots] = flat[count - kept :]
        self._rows[_READY][slots] = False
        self.added += count
        return slots

    def _complete(self, ids, returns, discounts, terminateds, refs) -> np.ndarray:
        slots = ids % self.capacity
        self._rows[Columns.REWARDS][slots] = returns
        self._rows[ReplayColumns.DISCOUNTS][slots] = discounts
        self._rows[Columns.TERMINATEDS][slots] = terminateds
        self._rows[_NEXT][slots] = refs
        self._rows[_READY][slots] = True
        self.num_ready += len(slots)
        return slots

    # Reading ------------------------------------------------------------------------------
    def ready_slots(self) -> np.ndarray:
        if not self._rows:
            return np.zeros(0, np.int64)
        return np.flatnonzero(self._rows[_READY][: self.size])

    def is_ready(self, slots: np.ndarray) -> np.ndarray:
        return self._rows[_READY][slots]

    def ids_of(self, slots: np.ndarray) -> np.ndarray:
        return self.first + (slots - self.first) % self.capacity

    def slots_of(self, ids: Any, *, what: str) -> tuple[np.ndarray, np.ndarray]:
        """The slots of row ``ids`` and which ids were evicted (their slots are garbage);
        a BatchError for ids that never were rows."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
            raise BatchError(
                f"{what} takes a 1-D array of integer row indexes (a sampled batch's "
                f"{ReplayColumns.BATCH_INDEXES!r} column), got shape {ids.shape}, dtype "
                f"{ids.dtype}"
            )
        ids = ids.astype(np.int64)
        unknown = (ids < 0) | (ids >= self.added)
        if unknown.any():
            raise BatchError(
                f"{what}: row indexes {ids[unknown][:5].tolist()} were never rows of this "
                f"buffer (it has added {self.added}); pass a sampled batch's "
                f"{ReplayColumns.BATCH_INDEXES!r} column"
            )
        return ids % self.capacity, ids < self.first

    def gather(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        rows = self._rows
        refs = rows[_NEXT][slots]
        stored = refs >= 0
        next_obs = np.empty((len(slots), *rows[Columns.OBS].shape[1:]), rows[Columns.OBS].dtype)
        next_obs[stored] = rows[Columns.OBS][refs[stored] % self.capacity]
        next_obs[~stored] = self._finals[-refs[~stored] - 1]
        return {
            Columns.OBS: rows[Columns.OBS][slots],
            Columns.ACTIONS: rows[Columns.ACTIONS][slots],
            Columns.REWARDS: rows[Columns.REWARDS][slots],
            Columns.NEXT_OBS: next_obs,
            Columns.TERMINATEDS: rows[Columns.TERMINATEDS][slots],
            ReplayColumns.DISCOUNTS: rows[ReplayColumns.DISCOUNTS][slots],
            ReplayColumns.BATCH_INDEXES: self.ids_of(slots),
        }

    # Checkpoints --------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Numpy arrays and JSON values; the arrays are views of the buffer's own (save them
        before adding more rows)."""
        tails = list(self._tails.values())
        obs_shape = self._rows[Columns.OBS].shape[1:] if self._rows else ()
        return {
            "capacity": self.capacity,
            "n_step": self.n_step,
            "gamma": self.gamma,
            "added": self.added,
            "rows": {name: array[: self.size] for name, array in self._rows.items()},
            "finals": self._finals.get_state() if self._finals is not None else {},
            "tails": {
                "streams": [encode_stream(key) for key in self._tails],
                "lengths": np.array([len(t.ids) for t in tails], dtype=np.int64),
                "ids": np.concatenate([t.ids for t in tails] or [np.zeros(0, np.int64)]),
                "rewards": np.concatenate([t.rewards for t in tails] or [np.zeros(0)]),
                "next_obs": np.array([t.next_obs for t in tails]).reshape(-1, *obs_shape),
            },
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        mine = {"capacity": self.capacity, "n_step": self.n_step, "gamma": self.gamma}
        theirs = {name: state[name] for name in mine}
        if theirs != mine:
            raise ConfigError(
                f"the replay state was saved from a buffer with {theirs}, this buffer has "
                f"{mine}; build the buffer with the saved settings to restore it"
            )
        self.added = int(state["added"])
        rows = state["rows"]
        self._rows, self._finals, self._tails = {}, None, {}
        if rows:
            self._allocate({name: rows[name][None] for name in (Columns.OBS, Columns.ACTIONS)})
            for name, array in rows.items():
                self._rows[name][: self.size] = array
            self._finals.set_state(state["finals"])
        tails = state["tails"]
        bounds = np.cumsum([0, *np.asarray(tails["lengths"]).tolist()])
        for n, key in enumerate(tails["streams"]):
            part = slice(bounds[n], bounds[n + 1])
            self._tails[decode_stream(key)] = _Tail(
                np.array(tails["ids"][part], dtype=np.int64),
                np.array(tails["rewards"][part], dtype=np.float64),
                np.array(tails["next_obs"][n]),
            )
        self.num_ready = int(self._rows[_READY].sum()) if rows else 0
