"""Multi-agent sampling for the asynchronous loop: whole sequences of T steps per agent, for
losses that run V-trace (IMPALA, APPO).

V-trace trains on sequences of exactly T rows (``sequence_length=T``), but PettingZoo
agents come and go, so a fragment's per-agent segments have any length. Instead of padding,
each *stream*, one per (env index, agent, module), keeps that agent's rows in time order
across episodes and fragments; whenever a stream holds T rows they leave it as one sequence,
and the rest wait for the next fragment. An agent that leaves early or joins late fills its
stream more slowly; nothing is padded and no row is lost or trained twice.

A sequence may hold the end of one episode and the start of the next: V-trace reads each
row's own ``new_obs`` and flags (no bootstrap after a termination, the final observation
after a truncation, ``new_obs`` at the sequence's end) and never runs its recursion across
an ended row. So every row carries ``new_obs``, the observation its agent reached: the next
one while its episode goes on, the final one where it ended. A row whose episode was
abandoned (a new policy mapping, a removed module: the envs restart) is followed in its
stream by a row of another episode with neither flag set; it is marked truncated, so its
future is bootstrapped from its ``new_obs`` and the recursion stops there.

A recurrent module's rows also carry the state (and previous action and reward) each step
acted with, so a sequence starts from the state its agent had there; the forward pass
resets it after a row whose episode ended, the abandoned one's included.

Rows wait in a stream for at most T - 1 fragments' worth of its agent's steps, so each
sequence reports the oldest weights version among its rows: its policy lag is that of its
oldest row, not of the fragment that completed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from learnerkit._batch import Columns, MultiAgentBatch, SampleBatch
from learnerkit._columns import RECURRENT_INPUTS
from learnerkit.errors import ConfigError
from learnerkit.rollouts._pettingzoo_sampling import MultiAgentEnvRunner
from learnerkit.rollouts._sampling import POLICY_COLUMNS, Policy, stored_obs_dtype

__all__ = ["MultiAgentSequences", "SequenceStreams"]

SEQUENCE_COLUMNS = (
    Columns.OBS,
    Columns.NEXT_OBS,
    *POLICY_COLUMNS,
    Columns.REWARDS,
    Columns.TERMINATEDS,
    Columns.TRUNCATEDS,
    Columns.EPS_ID,
    Columns.AGENT_INDEX,
    Columns.T,
)
_DTYPES = {
    Columns.ACTION_LOGP: np.float32,
    Columns.VF_PREDS: np.float32,
    Columns.ACTION_DIST_INPUTS: np.float32,
    Columns.REWARDS: np.float32,
    Columns.TERMINATEDS: bool,
    Columns.TRUNCATEDS: bool,
    Columns.EPS_ID: np.int64,
    Columns.AGENT_INDEX: np.int64,
    Columns.T: np.int64,
    Columns.STATE_IN: np.float32,
    Columns.PREV_REWARDS: np.float32,
}
_VERSION = "_weights_version"  # kept beside a row in its stream, not a column


@attrs.frozen(eq=False)
class MultiAgentSequences:
    """The sequences one fragment completed (``num_steps`` env steps in ``num_envs`` envs).

    ``modules[module_id]`` holds whole sequences of ``sequence_length`` rows, one after the
    other, each the consecutive steps of one agent (the columns of ``SEQUENCE_COLUMNS``);
    ``weights_versions[module_id]`` the oldest weights version of each sequence's rows. A
    module with no full sequence yet is absent.
    """

    modules: Mapping[str, Mapping[str, np.ndarray]]
    weights_versions: Mapping[str, np.ndarray]
    num_steps: int
    num_envs: int
    sequence_length: int

    @property
    def agent_steps(self) -> int:
        return sum(len(c[Columns.REWARDS]) for c in self.modules.values())

    def to_sequences(self) -> MultiAgentBatch:
        """A batch of whole sequences by module id (train with ``sequence_length=T``)."""
        return MultiAgentBatch({m: SampleBatch(c) for m, c in self.modules.items()})

    @staticmethod
    def concat(parts: list[MultiAgentSequences]) -> MultiAgentSequences:
        """Several fragments' sequences as one (each module's, fragment after fragment)."""
        if len(parts) == 1:
            return parts[0]
        module_ids = list(dict.fromkeys(m for p in parts for m in p.modules))
        modules, versions = {}, {}
        for module_id in module_ids:
            have = [p for p in parts if module_id in p.modules]
            modules[module_id] = {
                name: np.concatenate([p.modules[module_id][name] for p in have])
                for name in have[0].modules[module_id]
            }
            versions[module_id] = np.concatenate([p.weights_versions[module_id] for p in have])
        return MultiAgentSequences(
            modules=modules,
            weights_versions=versions,
            num_steps=parts[0].num_steps,
            num_envs=sum(p.num_envs for p in parts),
            sequence_length=parts[0].sequence_length,
        )


class SequenceStreams:
    """The streams of one multi-agent env runner, and its sampling in sequence mode."""

    def __init__(self, sequence_length: int) -> None:
        if sequence_length < 1:
            raise ConfigError(f"sequence_length must be >= 1, got {sequence_length}")
        self.sequence_length = sequence_length
        self._streams: dict[tuple[int, str, str], list[dict[str, Any]]] = {}

    def sample(
        self, runner: MultiAgentEnvRunner, policies: Mapping[str, Policy], *, version: int
    ) -> MultiAgentSequences:
        """Step ``runner`` for T steps with ``policies`` (weights ``version``) and return the
        sequences completed. Streams of modules not in ``policies`` (removed) are dropped."""
        finished, cut = runner.step_segments(policies, self.sequence_length)
        for key in [k for k in self._streams if k[2] not in policies]:
            del self._streams[key]
        # Ended segments in the order they ended, then the ones cut: per stream, time order.
        for segment in finished + cut:
            stream = self._streams.setdefault(
                (segment.env_index, segment.agent, segment.module_id), []
            )
            if stream and stream[-1][Columns.EPS_ID] != segment.eps_id:
                last = stream[-1]
                if not (last[Columns.TERMINATEDS] or last[Columns.TRUNCATEDS]):
                    last[Columns.TRUNCATEDS] = True  # abandoned: see the module docstring
            for row in segment.rows:
                stream.append(
                    {
                        **row,
                        Columns.EPS_ID: segment.eps_id,
                        Columns.AGENT_INDEX: segment.agent_index,
                        _VERSION: version,
                    }
                )
        return self._pop(runner.num_envs)

    def waiting_rows(self) -> dict[tuple[int, str, str], int]:
        """Rows waiting in each stream (fewer than T), by (env index, agent, module)."""
        return {k: len(v) for k, v in self._streams.items() if v}

    def _pop(self, num_envs: int) -> MultiAgentSequences:
        T = self.sequence_length
        rows_by_module: dict[str, list[list[dict[str, Any]]]] = {}
        for (_, _, module_id), stream in sorted(self._streams.items()):
            full = len(stream) // T * T
            for start in range(0, full, T):
                rows_by_module.setdefault(module_id, []).append(stream[start : start + T])
            del stream[:full]
        modules, versions = {}, {}
        for module_id, sequences in rows_by_module.items():
            rows = [row for sequence in sequences for row in sequence]
            modules[module_id] = _columns(rows)
            versions[module_id] = np.array(
                [min(row[_VERSION] for row in sequence) for sequence in sequences],
                dtype=np.int64,
            )
        return MultiAgentSequences(
            modules=modules,
            weights_versions=versions,
            num_steps=T,
            num_envs=num_envs,
            sequence_length=T,
        )


def _columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    columns = {}
    # A recurrent module's rows also hold what each step acted with (its state...).
    recurrent = RECURRENT_INPUTS if Columns.STATE_IN in rows[0] else ()
    for name in (*SEQUENCE_COLUMNS, *recurrent):
        array = np.stack([np.asarray(row[name]) for row in rows])
        if name in _DTYPES:
            array = array.astype(_DTYPES[name])
        elif name in (Columns.ACTIONS, Columns.PREV_ACTIONS):
            array = array.astype(np.float32 if array.dtype.kind == "f" else np.int64)
        else:
            array = array.astype(stored_obs_dtype(array.dtype))  # observations: uint8 kept
        columns[name] = array
    return columns
