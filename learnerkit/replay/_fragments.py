"""What a replay buffer accepts: the columns of time-major rows, and stream keys, checked
before anything is stored so that a bad fragment changes nothing."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from learnerkit._columns import Columns
from learnerkit.errors import BatchError, ConfigError

# What a fragment must hold, and what each column is, for the error that names a missing one.
REQUIRED = {
    Columns.OBS: "the observation each step acted on",
    Columns.ACTIONS: "the action taken",
    Columns.REWARDS: "the reward received",
    Columns.TERMINATEDS: "whether the episode terminated at the step",
    Columns.TRUNCATEDS: "whether a time limit truncated the episode at the step",
    Columns.NEXT_OBS: (
        "the observation the step reached, the episode's final one where it ended "
        "(Rollout.next_obs; only steps that end an episode or the fragment are read)"
    ),
}


def check_stream(key: Any) -> None:
    """Stream keys go into checkpoints as JSON: strings, integers, or tuples of them."""
    if isinstance(key, tuple):
        for part in key:
            check_stream(part)
    elif isinstance(key, bool) or not isinstance(key, (str, int, np.integer)):
        raise ConfigError(
            f"stream key {key!r} is a {type(key).__name__}; name a stream with a string, an "
            "integer or a tuple of them, e.g. (runner_index, env_index)"
        )


def encode_stream(key: Hashable) -> Any:
    if isinstance(key, tuple):
        return [encode_stream(k) for k in key]
    return int(key) if isinstance(key, np.integer) else key


def decode_stream(key: Any) -> Hashable:
    return tuple(decode_stream(k) for k in key) if isinstance(key, list) else key


def check_time_major(
    columns: Mapping[str, Any], streams: Sequence[Hashable], stored: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The `REQUIRED` columns of ``[T, N, ...]`` rows as arrays, checked against each other,
    against ``streams`` (one distinct key per column n) and against the ``stored`` rows'
    observation and action shapes and dtypes (empty before the first add)."""
    if not isinstance(columns, Mapping):
        raise BatchError(
            f"rows to add are a mapping of column name to array, got {type(columns).__name__}"
        )
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        described = "; ".join(f"{name!r}: {REQUIRED[name]}" for name in missing)
        raise BatchError(
            f"the rows to add lack column(s) {missing} ({described}); a replay buffer needs "
            f"{list(REQUIRED)} (an env runner's Rollout has them all: add it with "
            "add_rollout)"
        )
    data = {name: np.asarray(columns[name]) for name in REQUIRED}
    leading = data[Columns.REWARDS].shape
    if len(leading) != 2:
        raise BatchError(
            f"rewards have shape {leading}; time-major rows are [T, N] (T steps of N "
            "streams); add one stream's [T] rows with add(columns, stream=...)"
        )
    for name, array in data.items():
        if array.shape[:2] != leading:
            raise BatchError(
                f"column {name!r} has shape {array.shape}; every column must start with "
                f"[T, N] = {list(leading)}, as rewards do"
            )
    if data[Columns.OBS].shape != data[Columns.NEXT_OBS].shape:
        raise BatchError(
            f"new_obs has shape {data[Columns.NEXT_OBS].shape} but obs has "
            f"{data[Columns.OBS].shape}: each step's next observation is an observation"
        )
    for name in (Columns.OBS, Columns.NEXT_OBS, Columns.ACTIONS, Columns.REWARDS):
        if data[name].dtype.kind not in "biuf":
            raise BatchError(
                f"column {name!r} has dtype {data[name].dtype}; a replay buffer stores "
                "numbers (bool, integer or float)"
            )
    streams = list(streams)
    if len(streams) != leading[1] or len(set(streams)) != len(streams):
        raise BatchError(
            f"{len(streams)} stream keys ({len(set(streams))} distinct) for rows of "
            f"{leading[1]} streams: give one distinct key per column of the [T, N] rows"
        )
    for key in streams:
        check_stream(key)
    if stored:
        for name, kept in (
            (Columns.OBS, Columns.OBS),
            (Columns.NEXT_OBS, Columns.OBS),
            (Columns.ACTIONS, Columns.ACTIONS),
        ):
            _check_fits(name, data[name], stored[kept])
    return data


def _check_fits(name: str, array: np.ndarray, stored: np.ndarray) -> None:
    if array.shape[2:] != stored.shape[1:]:
        raise BatchError(
            f"column {name!r} has rows of shape {array.shape[2:]}, but this buffer stores "
            f"{stored.shape[1:]} (fixed by the first rows added); use one buffer per module, "
            "or per observation and action space"
        )
    if not np.can_cast(array.dtype, stored.dtype, casting="same_kind"):
        raise BatchError(
            f"column {name!r} has dtype {array.dtype}, which this buffer's {stored.dtype} "
            "(fixed by the first rows added) cannot hold; add rows of one dtype"
        )
