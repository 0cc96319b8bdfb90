"""One module's share of ``Learner.update``: the minibatch schedule (epochs of shuffled whole
sequences) and the train step run over it, turned into that module's metrics; and the
checks a batch passes first. Pure functions over the module's record, the backend and what
else they are given."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from learnerkit import _finite
from learnerkit._batch import MultiAgentBatch, SampleBatch
from learnerkit._column_specs import check_column_specs
from learnerkit._columns import Columns
from learnerkit.errors import BatchError
from learnerkit.fields import _is_integer
from learnerkit.model_config import burn_in_of

if TYPE_CHECKING:
    from learnerkit._learner_modules import ModuleRecord
    from learnerkit._plugins import Algorithm
    from learnerkit._specs import Hyperparameters, ModuleSpec
    from learnerkit.backends._base import Backend


def check_sizes(minibatch_size: int | None, num_epochs: int) -> None:
    minibatch_ok = minibatch_size is None or (_is_integer(minibatch_size) and minibatch_size >= 1)
    if not (minibatch_ok and _is_integer(num_epochs) and num_epochs >= 1):
        raise ValueError(
            f"minibatch_size must be >= 1 (or None) and num_epochs >= 1, both integers, got "
            f"{minibatch_size!r} and {num_epochs!r}"
        )


def check_whole_sequences(minibatch_size: int | None, sequence_length: int | None) -> None:
    if sequence_length is not None and minibatch_size is not None:
        if minibatch_size % sequence_length:
            raise ValueError(
                f"minibatch_size ({minibatch_size}) must be a multiple of sequence_length "
                f"({sequence_length}): minibatches are made of whole sequences"
            )


def with_loss_mask(module_batch: SampleBatch, model_config: Mapping[str, Any]) -> SampleBatch:
    """``module_batch`` with ``Columns.LOSS_MASK`` 0.0 also on the first ``lstm_burn_in``
    rows of each sequence of ``max_seq_len``, which only warm up the state, when its module
    trains with burn-in (the loop's mask, padding, if any, kept); else as it is. The rows
    are whole sequences (the forward pass refuses others), so a row's place in its sequence
    is its index modulo ``max_seq_len``, in every minibatch and shard too."""
    burn_in = burn_in_of(model_config)
    if not burn_in:
        return module_batch
    seq_len = int(model_config["max_seq_len"])
    mask = (np.arange(module_batch.count) % seq_len >= burn_in).astype(np.float32)
    if Columns.LOSS_MASK in module_batch:
        mask = mask * module_batch[Columns.LOSS_MASK]
    return SampleBatch({**module_batch, Columns.LOSS_MASK: mask})


def train_module(
    record: ModuleRecord,
    backend: Backend,
    generator: Any,
    module_id: str,
    module_batch: SampleBatch,
    minibatch_size: int | None,
    num_epochs: int,
    shuffle: bool,
    seq_len: int,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Run ``num_epochs`` passes of minibatch steps of one module; its metrics, and the
    per-row values its loss returned (``PER_ROW``; empty if none) aligned to the rows of
    ``module_batch``."""
    n = module_batch.count
    size = minibatch_size or n
    tensors = backend.to_tensors(module_batch)
    state = backend.state_for_step(record.algorithm_state)
    non_finite = record.hps.non_finite
    minibatches = minibatch_indices(backend, generator, n, size, num_epochs, shuffle, seq_len)
    # Under "raise", once a step is not applied no later step of this update is.
    step_output = record.train_step(tensors, minibatches, state, stop_on_skip=non_finite == "raise")
    keys, table = backend.metrics_table(step_output)
    metrics = _finite.summarize(
        keys,
        table,
        module_id=module_id,
        policy=non_finite,
        steps_per_epoch=-(-n // size),
        batch=module_batch,
    )
    names, steps = backend.per_row_values(step_output)
    if not names:
        return metrics, {}
    skipped = table[:, list(keys).index("skipped")] > 0
    values = per_row_results(names, steps, skipped, n)
    if Columns.LOSS_MASK in module_batch:  # no step trains on a burnt-in row
        for column in values.values():
            column[module_batch[Columns.LOSS_MASK] == 0.0] = np.nan
    return metrics, values


def per_row_results(
    names: list[str], steps: list[tuple[Any, Any]], skipped: Any, n: int
) -> dict[str, np.ndarray]:
    """Each per-row value as a float32 array over the batch's ``n`` rows: a row's value from
    the last applied step that trained on it, NaN where none did."""
    out = np.full((len(names), n), np.nan, dtype=np.float32)
    for (indices, values), skip in zip(steps, skipped, strict=False):
        if not skip:
            out[:, np.asarray(indices)] = values
    return {name: out[i] for i, name in enumerate(names)}


def minibatch_indices(
    backend: Backend,
    generator: Any,
    n: int,
    size: int,
    num_epochs: int,
    shuffle: bool,
    seq_len: int,
) -> Iterator[Any]:
    for _ in range(num_epochs):
        order = row_order(backend, generator, n, shuffle, seq_len)
        for start in range(0, n, size):
            yield order[start : start + size]


def row_order(backend: Backend, generator: Any, n: int, shuffle: bool, seq_len: int) -> Any:
    """The rows of one epoch: shuffled whole sequences of ``seq_len`` rows."""
    if not shuffle:
        return backend.arange(n)
    if seq_len == 1:
        return backend.permutation(n, generator)
    starts = backend.permutation(n // seq_len, generator)[:, None] * seq_len
    return (starts + backend.arange(seq_len)).reshape(-1)


def validate_batch(
    batch: MultiAgentBatch,
    sequence_length: int | None,
    *,
    specs: Mapping[str, ModuleSpec],
    algorithm: Algorithm,
    hyperparameters_for: Callable[[str], Hyperparameters],
) -> None:
    """``Learner.validate_batch``, for modules ``specs`` trained by ``algorithm``."""
    for module_id, module_batch in batch.items():
        if module_id not in specs:
            raise BatchError(
                f"batch has module id {module_id!r}, but this learner trains {sorted(specs)}"
            )
        if module_batch.count == 0:
            raise BatchError(f"batch for module {module_id!r} is empty")
        if sequence_length is not None and module_batch.count % sequence_length:
            raise BatchError(
                f"batch for module {module_id!r} has {module_batch.count} rows, not a "
                f"multiple of sequence_length={sequence_length}: it must be made of whole "
                "sequences (fragments) of that many consecutive rows"
            )
        if Columns.LOSS_MASK in module_batch and not algorithm.reads_loss_mask:
            raise BatchError(
                f"batch for module {module_id!r} has {Columns.LOSS_MASK!r} (rows no loss may "
                f"count: padding), but the loss of {algorithm.name!r} does not declare that it "
                "respects it (Algorithm(reads_loss_mask=True)): train with an algorithm that "
                "does (ppo, impala, appo), or send no masked rows"
            )
        module_batch.check_columns(
            algorithm.required_columns,
            module_id=module_id,
            algorithm=algorithm.name,
        )
        module_batch.check_spaces(
            module_id=module_id,
            observation_space=specs[module_id].observation_space,
            action_space=specs[module_id].action_space,
        )
        module_batch.check_dtypes(algorithm.required_columns, module_id=module_id)
        check_column_specs(
            module_batch,
            algorithm.column_specs,
            module_spec=specs[module_id],
            module_id=module_id,
            algorithm=algorithm.name,
        )
        if hyperparameters_for(module_id).non_finite == "raise":
            _finite.check_batch(module_batch, module_id)
