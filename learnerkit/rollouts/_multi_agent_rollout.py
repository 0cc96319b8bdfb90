"""Multi-agent fragments as rows per module, what the PettingZoo adapter
(``_pettingzoo_sampling``) samples into: one agent's steps in a fragment form a `Segment`,
stored row after row (a track of the engine's ``next_values``), and `MultiAgentRollout`
runs GAE over each segment and returns a ``MultiAgentBatch`` keyed by module id.

A recurrent module trains on whole sequences, each starting from the state recorded at its
first row, but an agent's segment has any length: so, given a ``sequence_length``, each
segment of such a module is followed by copies of its last row up to a multiple of it, and
``Columns.LOSS_MASK`` (0.0 on those copies) leaves them out of every loss (the modules
beside it are padded at their end alike, since one update trains all on one length)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from learnerkit._batch import Columns, MultiAgentBatch, SampleBatch
from learnerkit._columns import RECURRENT_INPUTS
from learnerkit.rollouts._postprocessing import compute_gae
from learnerkit.rollouts._sampling import POLICY_COLUMNS, ValueFn, bootstrap_values, next_values

if TYPE_CHECKING:
    from learnerkit.rollouts._recurrent import AgentState

__all__ = ["MultiAgentRollout", "Segment", "columns_of_segments"]

# Per row of a module's segments. `segment_ends` marks a segment's last row: GAE stops
# there and bootstraps from `next_values` (0 after a termination).
_SAMPLED = (
    Columns.OBS,
    Columns.ACTIONS,
    Columns.REWARDS,
    Columns.TERMINATEDS,
    Columns.TRUNCATEDS,
    Columns.VF_PREDS,
    Columns.ACTION_LOGP,
    Columns.ACTION_DIST_INPUTS,
    Columns.EPS_ID,
    Columns.AGENT_INDEX,
    Columns.T,
)


@attrs.frozen(eq=False)
class MultiAgentRollout:
    """One fragment of ``num_steps`` env steps in ``num_envs`` envs, as rows per module.

    ``modules[module_id]`` holds the sampled columns (``obs``, ``actions``, ``rewards``,
    ``terminateds``, ``truncateds``, ``vf_preds``, ``action_logp``, ``action_dist_inputs``,
    ``eps_id``, ``agent_index``, ``t``) plus ``next_values`` (V of the observation each
    row reached, as the sampling module saw it) and ``segment_ends``. The rows of one
    agent's segment are consecutive and in time order.
    """

    modules: Mapping[str, Mapping[str, np.ndarray]]
    num_steps: int
    num_envs: int

    @property
    def agent_steps(self) -> int:
        return sum(len(columns[Columns.REWARDS]) for columns in self.modules.values())

    def to_multi_agent_batch(
        self, *, gamma: float, lambda_: float, sequence_length: int | None = None
    ) -> MultiAgentBatch:
        """GAE per segment; a module that sampled no rows is left out. With
        ``sequence_length`` (recurrent modules'), rows in whole sequences of that many, padded
        and masked (see the module docstring)."""
        batches = {}
        for module_id, columns in self.modules.items():
            if len(columns[Columns.REWARDS]) == 0:
                continue
            advantages, value_targets = compute_gae(
                columns[Columns.REWARDS][:, None],
                columns[Columns.VF_PREDS][:, None],
                columns["next_values"][:, None],
                columns[Columns.TERMINATEDS][:, None],
                # A segment cut by the fragment's end stops the recursion and bootstraps,
                # exactly as a truncation does; the stored `truncateds` stays the env's.
                (columns[Columns.TRUNCATEDS] | columns["segment_ends"])[:, None],
                gamma=gamma,
                lambda_=lambda_,
            )
            recurrent = RECURRENT_INPUTS if Columns.STATE_IN in columns else ()
            rows = {
                **{name: columns[name] for name in (*_SAMPLED, *recurrent)},
                Columns.ADVANTAGES: advantages[:, 0],
                Columns.VALUE_TARGETS: value_targets[:, 0],
            }
            if sequence_length is not None:
                ends = columns["segment_ends"] if recurrent else None
                rows = _in_whole_sequences(rows, ends, sequence_length)
            batches[module_id] = SampleBatch(rows)
        return MultiAgentBatch(batches)

    @staticmethod
    def concat(rollouts: list[MultiAgentRollout]) -> MultiAgentRollout:
        """Fragments of several runners as one: each module's rows one runner after the
        other (segments stay whole)."""
        if len(rollouts) == 1:
            return rollouts[0]
        module_ids = list(dict.fromkeys(m for r in rollouts for m in r.modules))
        modules = {}
        for module_id in module_ids:
            parts = [r.modules[module_id] for r in rollouts if module_id in r.modules]
            modules[module_id] = {
                name: np.concatenate([p[name] for p in parts]) for name in parts[0]
            }
        return MultiAgentRollout(
            modules=modules,
            num_steps=rollouts[0].num_steps,
            num_envs=sum(r.num_envs for r in rollouts),
        )


@attrs.define
class Segment:
    """One agent's steps in the current fragment: row values in time order."""

    module_id: str
    agent_index: int
    eps_id: int
    env_index: int
    agent: str
    rows: list[dict[str, Any]] = attrs.Factory(list)
    bootstrap: bool = False
    """Whether its last row bootstraps from the value of its ``new_obs``: it was truncated,
    or cut by the fragment's end while its agent is still in the episode."""
    bootstrap_state: AgentState | None = None
    """A recurrent module's: what its agent carried after its last step (the value of
    ``new_obs`` is stepped from it)."""


def columns_of_segments(
    segments: list[Segment], value_fn: ValueFn, where: str
) -> dict[str, np.ndarray]:
    """One module's segments as the columns of a `MultiAgentRollout`, with ``next_values``
    (one ``value_fn`` call, on the ``new_obs`` of the segments that bootstrap) and
    ``segment_ends``."""
    rows = [row for s in segments for row in s.rows]
    columns: dict[str, np.ndarray] = {}
    for name in (Columns.OBS, *POLICY_COLUMNS):
        columns[name] = np.stack([row[name] for row in rows])
    columns[Columns.ACTION_LOGP] = columns[Columns.ACTION_LOGP].astype(np.float32)
    columns[Columns.VF_PREDS] = columns[Columns.VF_PREDS].astype(np.float32)
    columns[Columns.ACTION_DIST_INPUTS] = columns[Columns.ACTION_DIST_INPUTS].astype(np.float32)
    if columns[Columns.ACTIONS].dtype.kind == "f":
        columns[Columns.ACTIONS] = columns[Columns.ACTIONS].astype(np.float32)
    else:
        columns[Columns.ACTIONS] = columns[Columns.ACTIONS].astype(np.int64)
    columns[Columns.REWARDS] = np.array([r[Columns.REWARDS] for r in rows], dtype=np.float32)
    columns[Columns.TERMINATEDS] = np.array([r[Columns.TERMINATEDS] for r in rows], dtype=bool)
    columns[Columns.TRUNCATEDS] = np.array([r[Columns.TRUNCATEDS] for r in rows], dtype=bool)
    columns[Columns.T] = np.array([r[Columns.T] for r in rows], dtype=np.int64)
    columns[Columns.EPS_ID] = np.concatenate(
        [np.full(len(s.rows), s.eps_id, dtype=np.int64) for s in segments]
    )
    columns[Columns.AGENT_INDEX] = np.concatenate(
        [np.full(len(s.rows), s.agent_index, dtype=np.int64) for s in segments]
    )
    ends = np.cumsum([len(s.rows) for s in segments]) - 1
    segment_ends = np.zeros(len(rows), dtype=bool)
    segment_ends[ends] = True
    # Inside a segment a row reaches the next row's observation; at its end, its own final
    # one (a truncation) or its current one (cut by the fragment), or none (terminated).
    following = np.empty(len(rows), dtype=np.float32)
    following[:-1] = columns[Columns.VF_PREDS][1:]
    following[ends] = 0.0
    boot = np.array([s.bootstrap for s in segments], dtype=bool)
    bootstrap_obs = [s.rows[-1][Columns.NEXT_OBS] for s in segments if s.bootstrap]
    if Columns.STATE_IN in rows[0]:  # a recurrent module (`AgentStatePolicy.value`)
        columns[Columns.STATE_IN] = np.stack([r[Columns.STATE_IN] for r in rows])
        columns[Columns.PREV_ACTIONS] = np.stack([r[Columns.PREV_ACTIONS] for r in rows])
        columns[Columns.PREV_REWARDS] = np.array(
            [r[Columns.PREV_REWARDS] for r in rows], dtype=np.float32
        )
        carried = [s.bootstrap_state for s in segments if s.bootstrap]
        value_fn = partial(value_fn, carried=carried)
    values = bootstrap_values(value_fn, np.stack(bootstrap_obs) if boot.any() else [], where)
    columns["next_values"] = next_values(
        following, columns[Columns.TERMINATEDS], ends[boot], values
    )
    columns["segment_ends"] = segment_ends
    return columns


def _in_whole_sequences(
    rows: Mapping[str, np.ndarray], segment_ends: np.ndarray | None, sequence_length: int
) -> dict[str, np.ndarray]:
    """``rows`` padded to whole sequences of ``sequence_length``: each segment (ending where
    ``segment_ends``; None: the rows as one) followed by copies of its last row (valid
    observations and actions) that ``Columns.LOSS_MASK`` leaves out."""
    n = len(rows[Columns.REWARDS])
    stops = np.flatnonzero(segment_ends) + 1 if segment_ends is not None else np.array([n])
    index, mask = [], []
    for start, stop in zip([0, *stops[:-1]], stops, strict=True):
        pad = -(stop - start) % sequence_length
        index += [*range(start, stop), *[stop - 1] * pad]
        mask += [1.0] * (stop - start) + [0.0] * pad
    take = np.asarray(index, dtype=np.int64)
    return {
        **{name: column[take] for name, column in rows.items()},
        Columns.LOSS_MASK: np.asarray(mask, dtype=np.float32),
    }
