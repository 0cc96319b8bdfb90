"""Batches of experience: columns of numpy arrays, and multi-agent batches keyed by module id.

Column names follow RLlib's, so data and habits carry over.
"""

from __future__ import annotations

import abc
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from learnerkit._columns import DEFAULT_MODULE_ID, Columns
from learnerkit.errors import BatchError

# Where a column is usually made, so a "missing column" error can name the fix.
_HOW_TO_MAKE = {
    Columns.ADVANTAGES: "compute it with learnerkit.rollouts.compute_gae",
    Columns.VALUE_TARGETS: "compute it with learnerkit.rollouts.compute_gae",
    Columns.ACTION_LOGP: "record the sampling policy's log-probabilities (EnvRunner does)",
    Columns.ACTION_DIST_INPUTS: "record the sampling policy's distribution inputs (EnvRunner does)",
    Columns.VF_PREDS: "record the value predictions while sampling (EnvRunner does)",
}


# Array kinds the backends train on: bool, signed and unsigned integers, floats.
TRAINABLE_KINDS = "biuf"
SUPPORTED_DTYPES = "bool, integer or float values"


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


class SampleBatch(Mapping[str, np.ndarray]):
    """Columns of numpy arrays that all have the same length (the batch's first axis).

    Immutable in shape: slicing and sharding return new batches that share memory.
    """

    __slots__ = ("_columns", "_count")

    def __init__(self, columns: Mapping[str, Any] | None = None) -> None:
        if columns is None:
            columns = {}
        if not isinstance(columns, Mapping):
            raise BatchError(
                "SampleBatch takes a mapping of column name to array with one row per sample "
                f"(e.g. {{'obs': obs, 'actions': actions}}), got {_describe(columns)}"
            )
        self._columns: dict[str, np.ndarray] = {}
        lengths: dict[str, int] = {}
        for name, value in columns.items():
            try:
                array = np.asarray(value)
            except (ValueError, TypeError) as exc:  # e.g. rows of different lengths
                raise BatchError(
                    f"column {name!r} is not an array with one row per sample: {exc}"
                ) from None
            if array.ndim == 0:
                raise BatchError(
                    f"column {name!r} is a scalar; every column needs one row per sample "
                    "(an array whose first axis is the batch)"
                )
            self._columns[str(name)] = array
            lengths[str(name)] = len(array)
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{k!r}: {n}" for k, n in lengths.items())
            raise BatchError(
                f"ragged batch: columns have different lengths ({detail}); "
                "every column needs one row per sample"
            )
        self._count = next(iter(lengths.values()), 0)

    # Mapping protocol -------------------------------------------------------------------
    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._columns[name]
        except KeyError:
            raise KeyError(
                f"batch has no column {name!r}; it has {sorted(self._columns)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        """Number of columns (Mapping semantics); use `count` for the number of rows."""
        return len(self._columns)

    def __repr__(self) -> str:
        return f"SampleBatch(count={self._count}, columns={sorted(self._columns)})"

    @property
    def count(self) -> int:
        """Number of samples (rows)."""
        return self._count

    # Derived batches --------------------------------------------------------------------
    def slice(self, start: int, stop: int) -> SampleBatch:
        return SampleBatch({k: v[start:stop] for k, v in self._columns.items()})

    def take(self, indices: np.ndarray) -> SampleBatch:
        return SampleBatch({k: v[indices] for k, v in self._columns.items()})

    def shard(self, num_shards: int, *, sequence_length: int = 1) -> list[SampleBatch]:
        """Split into `num_shards` parts of equal size, in order, each made of whole
        sequences of `sequence_length` rows.

        The remainder is dropped so that every data-parallel learner runs the same number of
        minibatches (unequal shards would stall the all-reduce).
        """
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        if sequence_length < 1:
            raise ValueError(f"sequence_length must be >= 1, got {sequence_length}")
        size = self._count // sequence_length // num_shards * sequence_length
        return [self.slice(i * size, (i + 1) * size) for i in range(num_shards)]

    def minibatches(
        self, minibatch_size: int, *, rng: np.random.Generator | None = None
    ) -> Iterator[SampleBatch]:
        """Yield minibatches of `minibatch_size` rows (the last may be smaller), shuffled if
        an `rng` is given."""
        order = rng.permutation(self._count) if rng is not None else np.arange(self._count)
        for start in range(0, self._count, minibatch_size):
            yield self.take(order[start : start + minibatch_size])

    def as_multi_agent(self, module_id: str = DEFAULT_MODULE_ID) -> MultiAgentBatch:
        return MultiAgentBatch({module_id: self})

    @staticmethod
    def concat(batches: Sequence[SampleBatch]) -> SampleBatch:
        if not batches:
            return SampleBatch()
        names = list(batches[0].keys())
        for b in batches[1:]:
            if set(b.keys()) != set(names):
                raise BatchError(
                    f"cannot concatenate batches with different columns: {sorted(names)} vs "
                    f"{sorted(b.keys())}"
                )
        return SampleBatch({k: np.concatenate([b[k] for b in batches]) for k in names})

    # Validation -------------------------------------------------------------------------
    def check_columns(self, required: Sequence[str], *, module_id: str, algorithm: str) -> None:
        """Raise a BatchError naming the first required column that is missing, and the fix."""
        for name in required:
            if name not in self._columns:
                hint = _HOW_TO_MAKE.get(name, f"add a {name!r} array with one row per sample")
                raise BatchError(
                    f"batch for module {module_id!r} lacks column {name!r} "
                    f"({algorithm} needs it; {hint})"
                )

    def check_dtypes(self, names: Sequence[str], *, module_id: str) -> None:
        """Raise a BatchError naming the first of the columns ``names`` (those the module
        and algorithm read) whose dtype no backend trains on: complex, strings, objects,
        dates. Other columns may hold anything; the non-numeric ones never become tensors."""
        for name in names:
            array = self._columns.get(name)
            if array is not None and array.dtype.kind not in TRAINABLE_KINDS:
                raise BatchError(
                    f"batch for module {module_id!r}: column {name!r} has dtype {array.dtype}, "
                    f"which no backend trains on; it needs {SUPPORTED_DTYPES}"
                )

    def check_spaces(self, *, module_id: str, observation_space: Any, action_space: Any) -> None:
        """Raise a BatchError if observations or actions do not fit the module's spaces."""
        obs = self._columns.get(Columns.OBS)
        if obs is not None:
            expected = tuple(observation_space.shape)
            if obs.shape[1:] != expected:
                raise BatchError(
                    f"batch for module {module_id!r}: column 'obs' has rows of shape "
                    f"{obs.shape[1:]}, but the observation space {observation_space} has shape "
                    f"{expected}"
                )
            if obs.dtype.kind not in TRAINABLE_KINDS:
                raise BatchError(
                    f"batch for module {module_id!r}: column 'obs' has dtype {obs.dtype}; "
                    f"observations must be numeric ({SUPPORTED_DTYPES})"
                )
        actions = self._columns.get(Columns.ACTIONS)
        if actions is None:
            return
        if hasattr(action_space, "n"):  # Discrete
            if actions.ndim != 1 or not np.issubdtype(actions.dtype, np.integer):
                raise BatchError(
                    f"batch for module {module_id!r}: column 'actions' has dtype {actions.dtype} "
                    f"and shape {actions.shape}; a Discrete action space needs a 1-d integer array"
                )
            if self._count and (actions.min() < 0 or actions.max() >= action_space.n):
                raise BatchError(
                    f"batch for module {module_id!r}: actions range over "
                    f"[{actions.min()}, {actions.max()}], outside {action_space}"
                )
        else:
            expected = tuple(action_space.shape)
            if actions.shape[1:] != expected or not np.issubdtype(actions.dtype, np.floating):
                raise BatchError(
                    f"batch for module {module_id!r}: column 'actions' has dtype {actions.dtype} "
                    f"and rows of shape {actions.shape[1:]}; the action space {action_space} needs "
                    f"float rows of shape {expected}"
                )


class MultiAgentBatch(Mapping[str, SampleBatch]):
    """A SampleBatch per module id; each module trains on its own rows."""

    __slots__ = ("_batches",)

    def __init__(self, policy_batches: Mapping[str, SampleBatch | Mapping[str, Any]]) -> None:
        expected = (
            "a mapping of module id to SampleBatch (or to a mapping of column name to array "
            "with one row per sample)"
        )
        if not isinstance(policy_batches, Mapping):
            raise BatchError(f"MultiAgentBatch takes {expected}, got {_describe(policy_batches)}")
        self._batches: dict[str, SampleBatch] = {}
        for mid, b in policy_batches.items():
            if not isinstance(b, Mapping):  # a SampleBatch is a Mapping too
                raise BatchError(
                    f"MultiAgentBatch takes {expected}; module {mid!r} has {_describe(b)}"
                )
            self._batches[str(mid)] = b if isinstance(b, SampleBatch) else SampleBatch(b)

    def __getitem__(self, module_id: str) -> SampleBatch:
        return self._batches[module_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {v.count}" for k, v in self._batches.items())
        return f"MultiAgentBatch({{{inner}}})"

    @property
    def policy_batches(self) -> dict[str, SampleBatch]:
        return dict(self._batches)

    @property
    def count(self) -> int:
        """Total rows over all modules."""
        return sum(b.count for b in self._batches.values())

    def shard(self, num_shards: int, *, sequence_length: int = 1) -> list[MultiAgentBatch]:
        """Shard every module's batch; shard i holds part i of each (see SampleBatch.shard)."""
        per_module = {
            mid: b.shard(num_shards, sequence_length=sequence_length)
            for mid, b in self._batches.items()
        }
        return [
            MultiAgentBatch({mid: shards[i] for mid, shards in per_module.items()})
            for i in range(num_shards)
        ]


class ShardedBatch(abc.ABC):
    """A batch that each data-parallel learner reads its own part of, where it runs, instead
    of the driver reading all of it and sending it (data larger than the driver should
    hold or ship: an offline dataset's episodes). ``LearnerGroup.update`` takes one in place
    of a batch; a local group reads every shard.

    Shard ``i`` goes to learner ``i``, so ``num_shards`` must equal the group's learners.
    Every shard must hold the same rows per module (the learners run the same minibatches
    in step): the learners check this after reading, before training, and refuse the
    update, all of them and with nothing applied, if a shard differs or a read failed.
    Subclasses must pickle (they are sent to Ray actors) and should be small (say where
    the data is, not hold it).
    """

    num_shards: int

    @abc.abstractmethod
    def read(self, shard: int) -> MultiAgentBatch | SampleBatch:
        """Shard ``shard``'s rows; runs in the learner that trains on them."""

    def read_all(self) -> MultiAgentBatch:
        """Every shard as one batch (what a single learner trains on)."""
        shards = [as_multi_agent_batch(self.read(i)) for i in range(self.num_shards)]
        if len(shards) == 1:
            return shards[0]
        module_ids = list(dict.fromkeys(mid for shard in shards for mid in shard))
        return MultiAgentBatch(
            {
                mid: SampleBatch.concat([shard[mid] for shard in shards if mid in shard])
                for mid in module_ids
            }
        )


def shard_signature(batch: MultiAgentBatch) -> int:
    """A number equal for two batches with the same module ids and rows per module (what
    data-parallel learners compare before training on shards they read themselves)."""
    layout = ",".join(f"{mid}={b.count}" for mid, b in sorted(batch.items()))
    return zlib.crc32(layout.encode())


def training_arrays(batch: Mapping[str, np.ndarray]) -> Iterator[tuple[str, np.ndarray]]:
    """The columns a backend turns into tensors, as contiguous arrays: numeric and bool
    columns, every float as float32 (the backends train in float32); others (strings,
    objects in extra columns) are left out."""
    for name, array in batch.items():
        if array.dtype.kind == "f" and array.dtype != np.float32:
            # Values beyond float32's range become inf: validation names them, or under
            # non_finite="skip" the minibatches they reach are skipped.
            with np.errstate(over="ignore"):
                array = array.astype(np.float32)
        elif not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            continue
        yield name, np.ascontiguousarray(array)


def as_multi_agent_batch(batch: Any) -> MultiAgentBatch:
    """Accept a MultiAgentBatch, a SampleBatch, or a plain dict of columns."""
    if isinstance(batch, MultiAgentBatch):
        return batch
    if isinstance(batch, SampleBatch):
        return batch.as_multi_agent()
    if isinstance(batch, Mapping):
        return SampleBatch(batch).as_multi_agent()
    raise BatchError(
        "expected a SampleBatch, a MultiAgentBatch or a dict of column name to array with one "
        f"row per sample, got {_describe(batch)}"
    )
