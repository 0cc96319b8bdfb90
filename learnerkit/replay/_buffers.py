"""Uniform and prioritized replay buffers: the rows of `Transitions`, sampled into
`SampleBatch`es with RLlib's column names plus `ReplayColumns`.

A loop adds what its env runners sample (`add_rollout`, or `add` per stream), samples with
its own ``numpy.random.Generator`` (reproducible), trains, and (prioritized) sends each
row's TD error back with `update_priorities`. Both buffers take the same calls but one:
prioritized sampling needs ``beta``, which the caller anneals.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from learnerkit._batch import SampleBatch
from learnerkit._columns import Columns
from learnerkit.errors import BatchError, ConfigError, NonFiniteError
from learnerkit.replay._columns import ReplayColumns
from learnerkit.replay._fragments import REQUIRED
from learnerkit.replay._sum_tree import SumTree
from learnerkit.replay._transitions import Transitions, Written

if TYPE_CHECKING:
    from learnerkit.rollouts._rollout import Rollout

__all__ = ["PrioritizedReplayBuffer", "UniformReplayBuffer"]

_ROLLOUT_COLUMNS = {
    Columns.OBS: "obs",
    Columns.ACTIONS: "actions",
    Columns.REWARDS: "rewards",
    Columns.TERMINATEDS: "terminateds",
    Columns.TRUNCATEDS: "truncateds",
    Columns.NEXT_OBS: "next_obs",
}


def _one_stream(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim == 0:
        raise BatchError(f"column {name!r} is a scalar; add takes one row per step, [T, ...]")
    return array[:, None]


class _Buffer:
    """What both buffers share: adding, counting, reading rows, checkpoints. Holds the
    rows; a subclass adds sampling, and priorities if it has them (`_written`)."""

    _KIND: str

    def __init__(self, capacity: int, *, n_step: int, gamma: float) -> None:
        self._rows = Transitions(capacity, n_step=n_step, gamma=gamma)

    @property
    def capacity(self) -> int:
        return self._rows.capacity

    @property
    def n_step(self) -> int:
        return self._rows.n_step

    @property
    def gamma(self) -> float:
        return self._rows.gamma

    def __len__(self) -> int:
        """Rows that can be sampled (rows waiting for their window are not counted)."""
        return self._rows.num_ready

    @property
    def num_pending(self) -> int:
        """Rows stored whose n-step window waits for their stream's next fragment."""
        return self._rows.num_pending

    @property
    def num_added(self) -> int:
        """Rows ever added (env steps): the next row's index."""
        return self._rows.added

    @property
    def nbytes(self) -> int:
        """Bytes held: rows (allocated for the whole capacity at the first add), the
        observations stored apart, pending windows, and priorities."""
        return self._rows.nbytes

    # Adding -------------------------------------------------------------------------------
    def add(self, columns: Mapping[str, Any], *, stream: Hashable = 0) -> None:
        """Add the next ``[T, ...]`` steps of one stream, in time order: columns ``obs``,
        ``actions``, ``rewards``, ``terminateds``, ``truncateds`` and ``new_obs`` (a
        ``SampleBatch`` or a dict). A stream is one env's sequence of steps across
        fragments (a string, an integer or a tuple of them)."""
        if not isinstance(columns, Mapping):
            raise BatchError(f"add takes a mapping of column name to array, got {columns!r}")
        columns = {name: _one_stream(name, columns[name]) for name in REQUIRED if name in columns}
        self._written(self._rows.add_time_major(columns, [stream]))

    def add_time_major(self, columns: Mapping[str, Any], *, streams: Iterable[Hashable]) -> None:
        """Add ``[T, N, ...]`` columns (as `add`'s), column n being the next T steps of
        ``streams[n]``."""
        self._written(self._rows.add_time_major(columns, list(streams)))

    def add_rollout(self, rollout: Rollout, *, runner_index: int = 0) -> None:
        """Add an env runner's fragment (``Fragment.rollout``, a `Rollout` of ``[T, N]``
        steps): its env n is the stream ``(runner_index, n)``, continued by the runner's
        next fragment."""
        if not all(hasattr(rollout, attr) for attr in _ROLLOUT_COLUMNS.values()):
            raise BatchError(
                f"add_rollout takes a single-agent Rollout (with obs, next_obs, actions, "
                f"rewards, terminateds, truncateds), got a {type(rollout).__name__}; add a "
                "multi-agent env's rows per module with MultiAgentReplayBuffer.add, one stream "
                "per (env, agent)"
            )
        columns = {name: getattr(rollout, attr) for name, attr in _ROLLOUT_COLUMNS.items()}
        streams = [(int(runner_index), n) for n in range(rollout.rewards.shape[1])]
        self._written(self._rows.add_time_major(columns, streams))

    def flush(self, streams: Iterable[Hashable] | None = None) -> None:
        """Make the pending rows of ``streams`` (every stream by default) sampleable as if
        their episodes had been truncated after the last step added: for a stream that
        will not continue (an env runner restarted, its episodes were abandoned). Streams
        with nothing pending are skipped."""
        self._written(self._rows.flush(streams))

    def _written(self, written: Written) -> None:
        """Called after every add and flush; prioritized sampling sets priorities here."""

    # Reading ------------------------------------------------------------------------------
    def sampleable_indices(self) -> np.ndarray:
        """The index of every sampleable row, oldest first (O(capacity): for tests and
        inspection, not for every step)."""
        slots = self._rows.ready_slots()
        return np.sort(self._rows.ids_of(slots))

    def rows(self, indices: Any) -> SampleBatch:
        """The rows at ``indices`` (a sampled batch's ``batch_indexes``), without weights."""
        slots, evicted = self._rows.slots_of(indices, what="rows")
        if evicted.any() or not self._rows.is_ready(slots).all():
            raise BatchError(
                "rows: some indexes are not sampleable rows (evicted, or pending); "
                "sampleable_indices() lists those that are"
            )
        return SampleBatch(self._rows.gather(slots))

    def _check_sample(self, batch_size: int, rng: np.random.Generator) -> None:
        if not isinstance(rng, np.random.Generator):
            raise ConfigError(
                f"sample takes a numpy.random.Generator, got {type(rng).__name__}; pass "
                "np.random.default_rng(seed) so that runs are reproducible"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise ConfigError(f"batch_size is {batch_size!r}; it is a number of rows")
        if batch_size < 1:
            raise ConfigError(f"batch_size is {batch_size}; sample at least one row")
        if len(self) == 0:
            raise BatchError(
                f"nothing to sample: no row is sampleable yet ({self.num_pending} pending, "
                f"{self.num_added} added); add fragments first (a loop waits for "
                "learning_starts rows)"
            )

    # Checkpoints --------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Everything sampling depends on (rows, pending windows, priorities), as numpy
        arrays and JSON values in nested dicts (``learnerkit``'s checkpoint files take
        them as they are). Arrays are views of the buffer's: save them before adding more
        rows. Can be gigabytes: ``nbytes`` says how many."""
        return {"kind": self._KIND, "rows": self._rows.get_state()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore `get_state`'s result into a buffer built with the same settings: it
        then samples the same rows, with the same priorities, and completes the same
        pending windows as the buffer it was taken from."""
        self._check_kind(state)
        self._rows.set_state(state["rows"])

    def _check_kind(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != self._KIND:
            raise ConfigError(
                f"this replay state is of a {state.get('kind')!r} buffer; restore it into "
                f"a {state.get('kind')!r} buffer, not a {self._KIND!r} one"
            )


class UniformReplayBuffer(_Buffer):
    """Samples every sampleable row with the same probability (Mnih et al. 2015).

    ``capacity`` rows (transitions), the oldest evicted first; ``n_step`` rewards summed into
    each row's return, discounted by ``gamma`` (see `ReplayColumns.DISCOUNTS`).
    """

    _KIND = "uniform"

    def __init__(self, capacity: int, *, n_step: int = 1, gamma: float = 0.99) -> None:
        super().__init__(capacity, n_step=n_step, gamma=gamma)

    def sample(self, batch_size: int, rng: np.random.Generator) -> SampleBatch:
        """``batch_size`` rows drawn with replacement: ``obs``, ``actions``, ``rewards``
        (n-step return), ``new_obs``, ``terminateds``, ``discounts``, ``weights`` (ones)
        and ``batch_indexes``."""
        self._check_sample(batch_size, rng)
        size = self._rows.size
        slots = rng.integers(size, size=batch_size)
        # Pending rows (at most n per stream) are redrawn: uniform over the sampleable.
        for _ in range(64):
            redraw = ~self._rows.is_ready(slots)
            if not redraw.any():
                break
            slots[redraw] = rng.integers(size, size=int(redraw.sum()))
        else:  # almost nothing sampleable among many pending rows
            redraw = ~self._rows.is_ready(slots)
            slots[redraw] = rng.choice(self._rows.ready_slots(), size=int(redraw.sum()))
        columns = self._rows.gather(slots)
        columns[ReplayColumns.WEIGHTS] = np.ones(batch_size, dtype=np.float32)
        return SampleBatch(columns)


class PrioritizedReplayBuffer(_Buffer):
    """Proportional prioritized replay (Schaul et al. 2016): row i is drawn with
    probability ``p_i ** alpha / sum_j p_j ** alpha``, where ``p_i = |TD error| +
    epsilon`` from the last `update_priorities` of the row, and a new row gets the largest
    priority seen so far (so that every row is replayed at least about once).
    ``alpha=0`` is uniform sampling.
    """

    _KIND = "prioritized"

    def __init__(
        self,
        capacity: int,
        *,
        alpha: float = 0.6,
        n_step: int = 1,
        gamma: float = 0.99,
        epsilon: float = 1e-6,
    ) -> None:
        if not alpha >= 0:
            raise ConfigError(f"alpha is {alpha!r}; it is an exponent of at least 0")
        if not epsilon > 0:
            raise ConfigError(
                f"epsilon is {epsilon!r}; it must be positive, so that a row with a TD error "
                "of 0 can still be sampled"
            )
        super().__init__(capacity, n_step=n_step, gamma=gamma)
        self.alpha, self.epsilon = float(alpha), float(epsilon)
        self._tree = SumTree(self.capacity)  # p ** alpha per slot; 0 where not sampleable
        self.max_priority = 1.0

    @property
    def nbytes(self) -> int:
        return self._rows.nbytes + self._tree.nbytes

    def _leaf(self, priorities: np.ndarray) -> np.ndarray:
        # A positive leaf even where p ** alpha underflows: a stored row stays sampleable.
        return np.maximum(np.asarray(priorities, np.float64) ** self.alpha, np.finfo(float).tiny)

    def _written(self, written: Written) -> None:
        # New rows are not sampleable until their windows complete; then they come in at
        # the largest priority seen. A slot in both takes its last value: ready.
        slots = np.concatenate([written.overwritten, written.ready])
        values = np.full(len(slots), self._leaf(self.max_priority))
        values[: len(written.overwritten)] = 0.0
        self._tree.set(slots, values)

    def sample(self, batch_size: int, rng: np.random.Generator, *, beta: float) -> SampleBatch:
        """``batch_size`` rows drawn with replacement in proportion to ``p ** alpha``: the
        uniform buffer's columns, with ``weights`` ``(N * P(i)) ** -beta`` over their
        maximum among all sampleable rows (the row of smallest priority). ``beta`` is
        annealed by the caller, typically from 0.4 to 1."""
        self._check_sample(batch_size, rng)
        if not beta >= 0:
            raise ConfigError(f"beta is {beta!r}; it is an exponent of at least 0 (0.4 to 1)")
        slots = self._tree.find(rng.random(batch_size) * self._tree.total)
        columns = self._rows.gather(slots)
        # (N P_i)^-beta / (N P_min)^-beta: N and the total cancel.
        weights = (self._tree[slots] / self._tree.min) ** -float(beta)
        columns[ReplayColumns.WEIGHTS] = weights.astype(np.float32)
        return SampleBatch(columns)

    def update_priorities(self, indices: Any, td_errors: Any, *, skip_evicted: bool = False) -> int:
        """Set the priority of rows ``indices`` (a sampled batch's ``batch_indexes``) to
        ``|td_errors| + epsilon``; returns how many rows were updated. A row sampled twice
        takes its last TD error. Rows evicted since they were sampled are an error (update
        priorities before adding more rows), or skipped with ``skip_evicted=True`` (for a
        loop that adds while the learners train)."""
        slots, evicted = self._rows.slots_of(indices, what="update_priorities")
        td_errors = np.asarray(td_errors, dtype=np.float64)
        if td_errors.shape != slots.shape:
            raise BatchError(
                f"update_priorities got {td_errors.shape} TD errors for {slots.shape} row "
                "indexes; give one TD error per sampled row, in the batch's row order"
            )
        if not np.isfinite(td_errors).all():
            bad = np.flatnonzero(~np.isfinite(td_errors))[:5].tolist()
            raise NonFiniteError(
                f"update_priorities: TD errors at positions {bad} are not finite; no "
                "priority was changed (check the loss for NaN or inf)"
            )
        if evicted.any() and not skip_evicted:
            raise BatchError(
                f"update_priorities: {int(evicted.sum())} of the rows were evicted after they "
                f"were sampled (indexes below {self._rows.first}, e.g. "
                f"{np.asarray(indices)[evicted][:3].tolist()}); update priorities before "
                "adding more rows, or pass skip_evicted=True"
            )
        slots, td_errors = slots[~evicted], td_errors[~evicted]
        if not self._rows.is_ready(slots).all():
            raise BatchError(
                "update_priorities: some rows are pending (their n-step windows are not "
                "complete), so no batch can have sampled them; pass a sampled batch's "
                f"{ReplayColumns.BATCH_INDEXES!r}"
            )
        priorities = np.abs(td_errors) + self.epsilon
        if len(priorities):
            self.max_priority = max(self.max_priority, float(priorities.max()))
        self._tree.set(slots, self._leaf(priorities))
        return len(slots)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state["leaves"] = self._tree.leaves[: self._rows.size]
        state["max_priority"] = self.max_priority
        state["alpha"] = self.alpha
        return state

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._check_kind(state)
        if state.get("alpha") != self.alpha:
            raise ConfigError(
                f"the replay state was saved with alpha={state.get('alpha')!r}; this buffer "
                f"has alpha={self.alpha}: build it with the saved alpha to restore it"
            )
        super().set_state(state)
        leaves = np.zeros(self.capacity)
        leaves[: self._rows.size] = state["leaves"]
        self._tree = SumTree.from_leaves(leaves)
        self.max_priority = float(state["max_priority"])
