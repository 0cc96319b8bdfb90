"""The observations no stored row holds: where an episode ended, and where a stream was
flushed. Rows hold every other next observation by pointing at a later row.

A first-in, first-out ring that grows when it must: each observation has an owner, a row
no older than any row that points at it, and is dropped only once its owner has been
evicted, so no live row ever points at a dropped observation. Owners never decrease along
the ring, so the observations to drop are always at its front.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_INITIAL_SLOTS = 16


class FinalObservations:
    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._obs = np.zeros((_INITIAL_SLOTS, *shape), dtype=dtype)
        self._owner = np.zeros(_INITIAL_SLOTS, dtype=np.int64)
        self.first = 0  # the oldest live id; ids [first, added) are live
        self.added = 0
        self._last_owner = -1

    @property
    def nbytes(self) -> int:
        return self._obs.nbytes + self._owner.nbytes

    @property
    def num_live(self) -> int:
        return self.added - self.first

    def _live_ids(self) -> np.ndarray:
        return np.arange(self.first, self.added, dtype=np.int64)

    def release(self, first_live_row: int) -> None:
        """Drop the observations whose owners are older than ``first_live_row``."""
        slots = len(self._owner)
        start, stop = self.first % slots, self.first % slots + self.num_live
        # The live owners, in id order, are one or two sorted runs of the ring.
        head = self._owner[start : min(stop, slots)]
        dropped = int(np.searchsorted(head, first_live_row))
        if dropped == len(head) and stop > slots:
            dropped += int(np.searchsorted(self._owner[: stop - slots], first_live_row))
        self.first += dropped

    def append(self, obs: np.ndarray, owners: np.ndarray) -> np.ndarray:
        """Store ``obs`` (one per owner, owners in increasing row order); returns their ids."""
        count = len(owners)
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        # A flush's owner is an older row than the episode ends just stored; owning the
        # observation with a later row only keeps it longer, and keeps owners ordered.
        owners = np.maximum.accumulate(np.maximum(owners, self._last_owner))
        self._last_owner = int(owners[-1])
        if self.num_live + count > len(self._owner):
            self._grow(self.num_live + count)
        ids = np.arange(self.added, self.added + count, dtype=np.int64)
        slots = ids % len(self._owner)
        self._obs[slots] = obs
        self._owner[slots] = owners
        self.added += count
        return ids

    def _grow(self, needed: int) -> None:
        slots = max(2 * len(self._owner), 1 << (needed - 1).bit_length())
        live = self._live_ids()
        obs = np.zeros((slots, *self._obs.shape[1:]), dtype=self._obs.dtype)
        owner = np.zeros(slots, dtype=np.int64)
        obs[live % slots] = self._obs[live % len(self._owner)]
        owner[live % slots] = self._owner[live % len(self._owner)]
        self._obs, self._owner = obs, owner

    def __getitem__(self, ids: np.ndarray) -> np.ndarray:
        return self._obs[ids % len(self._owner)]

    def get_state(self) -> dict[str, Any]:
        live = self._live_ids() % len(self._owner)
        return {
            "first": self.first,
            "added": self.added,
            "last_owner": self._last_owner,
            "slots": len(self._owner),
            "obs": self._obs[live],
            "owner": self._owner[live],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        slots = int(state["slots"])
        self._obs = np.zeros((slots, *self._obs.shape[1:]), dtype=self._obs.dtype)
        self._owner = np.zeros(slots, dtype=np.int64)
        self.first, self.added = int(state["first"]), int(state["added"])
        self._last_owner = int(state["last_owner"])
        live = self._live_ids() % slots
        self._obs[live] = state["obs"]
        self._owner[live] = state["owner"]
