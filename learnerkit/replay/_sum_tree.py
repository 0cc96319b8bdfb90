"""A sum tree over a fixed number of slots, updated and searched a batch at a time.

Prioritized replay samples rows in proportion to their priorities (a sum over all rows, a
prefix search) and normalises importance weights by the smallest priority (a minimum):
both in O(log capacity) per row, with numpy doing the rows of a batch together and Python
looping only over the tree's levels. One tree keeps both, so an update walks the levels
once.

Every parent is recomputed from its two children, never adjusted by a difference, so no
rounding error accumulates: the tree is a function of its leaves alone, and rebuilding it
from the leaves (`from_leaves`, after a checkpoint) gives the same bits.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SumTree"]


class SumTree:
    """Non-negative leaves (0: an empty slot, never drawn), their sum, and the smallest
    positive leaf; `find` turns uniform numbers into draws in proportion to the leaves."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a tree needs at least one leaf, got capacity {capacity}")
        self.capacity = int(capacity)
        # A power of two leaves, so that a node's children are 2i and 2i + 1 and a search
        # walks the same number of levels for every row. The root is node 1.
        self._size = 1 << max(0, (self.capacity - 1).bit_length())
        self._depth = self._size.bit_length() - 1
        self._sums = np.zeros(2 * self._size)
        self._mins = np.full(2 * self._size, np.inf)  # an empty slot is +inf here

    @property
    def nbytes(self) -> int:
        return self._sums.nbytes + self._mins.nbytes

    @property
    def total(self) -> float:
        return float(self._sums[1])

    @property
    def min(self) -> float:
        """The smallest positive leaf (inf when every leaf is 0)."""
        return float(self._mins[1])

    @property
    def leaves(self) -> np.ndarray:
        """A read-only view of the leaf values, slot by slot."""
        view = self._sums[self._size : self._size + self.capacity]
        view.flags.writeable = False
        return view

    def __getitem__(self, slots: np.ndarray) -> np.ndarray:
        return self._sums[self._size + np.asarray(slots, dtype=np.int64)]

    def set(self, slots: np.ndarray, values: np.ndarray) -> None:
        """Set leaves (non-negative); with a slot repeated, its last value wins."""
        slots = np.asarray(slots, dtype=np.int64).ravel()
        if slots.size == 0:
            return
        values = np.broadcast_to(np.asarray(values, dtype=np.float64), slots.shape)
        if slots.min() < 0 or slots.max() >= self.capacity:
            raise IndexError(f"tree slots must lie in [0, {self.capacity})")
        if not (values >= 0).all():
            raise ValueError("sum tree leaves must be non-negative")
        # Keep each slot's last value (fancy assignment leaves repeated indices unordered).
        order = np.argsort(slots, kind="stable")
        slots, values = slots[order], values[order]
        last = np.ones(len(slots), dtype=bool)
        np.not_equal(slots[1:], slots[:-1], out=last[:-1])
        nodes, values = slots[last] + self._size, values[last]
        self._sums[nodes] = values
        self._mins[nodes] = np.where(values > 0, values, np.inf)
        for _ in range(self._depth):
            nodes = nodes >> 1
            if len(nodes) > 1:  # sorted, so a parent's repeats are adjacent
                first = np.empty(len(nodes), dtype=bool)
                first[0] = True
                np.not_equal(nodes[1:], nodes[:-1], out=first[1:])
                nodes = nodes[first]
            left = nodes << 1
            self._sums[nodes] = self._sums[left] + self._sums[left + 1]
            self._mins[nodes] = np.minimum(self._mins[left], self._mins[left + 1])

    def find(self, mass: np.ndarray) -> np.ndarray:
        """For each ``mass`` in ``[0, total)``, the slot i whose leaf holds it: the sum of
        the leaves before i is at most ``mass`` and that sum plus leaf i exceeds it. A draw
        ``uniform(0, total)`` thus picks slot i with probability ``leaf_i / total``.

        Only slots with positive leaves are returned, even where rounding puts ``mass`` on
        a boundary: the walk never enters a subtree whose sum is 0.
        """
        mass = np.array(mass, dtype=np.float64)
        nodes = np.ones(mass.shape, dtype=np.int64)
        for _ in range(self._depth):
            left = self._sums[2 * nodes]
            right = (mass >= left) & (self._sums[2 * nodes + 1] > 0)
            mass -= np.where(right, left, 0.0)
            nodes = 2 * nodes + right
        return nodes - self._size

    @classmethod
    def from_leaves(cls, leaves: np.ndarray) -> SumTree:
        """A tree holding ``leaves`` (its capacity is their number), built level by level."""
        leaves = np.asarray(leaves, dtype=np.float64)
        tree = cls(len(leaves))
        tree._sums[tree._size : tree._size + len(leaves)] = leaves
        tree._mins[tree._size : tree._size + len(leaves)] = np.where(leaves > 0, leaves, np.inf)
        for level in range(tree._depth - 1, -1, -1):
            lo, hi = 1 << level, 2 << level
            tree._sums[lo:hi] = (
                tree._sums[2 * lo : 2 * hi : 2] + tree._sums[2 * lo + 1 : 2 * hi : 2]
            )
            tree._mins[lo:hi] = np.minimum(
                tree._mins[2 * lo : 2 * hi : 2], tree._mins[2 * lo + 1 : 2 * hi : 2]
            )
        return tree
