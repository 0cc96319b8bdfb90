"""Group updates in flight: the future of one update, the outcome of each learner's share,
and the reduction of the learners' results into one.

A learner's outcome is one of "ok" (its results), "dead" (its actor is gone), "not_applied"
(it refused the update before changing anything) or "error" (the update raised); the group
(``learnerkit._distributed.learners``) decides from them whether to heal and re-run the update.
"""

from __future__ import annotations

import logging
import time
from numbers import Real
from typing import Any, Protocol

import numpy as np
import ray
from ray.exceptions import RayActorError, RayTaskError

from learnerkit.errors import LearnerkitError
from learnerkit.hookspecs import PER_ROW

logger = logging.getLogger(__name__)
Results = dict[str, dict[str, Any]]
Outcome = tuple[str, Any]

# After one learner fails an update, how long its peers may take to finish before they are
# taken to be stuck in a collective that can never complete, and are restarted.
STRAGGLER_GRACE_S = 10.0


def _combine(key: str, values: list[Any]) -> Any:
    """Counts (``num_*``) add up over the learners' shards; other numbers are averaged."""
    if all(isinstance(v, Real) and not isinstance(v, bool) for v in values):
        if key.startswith("num_") and all(isinstance(v, (int, np.integer)) for v in values):
            return int(sum(values))
        return float(np.mean(values))
    return values[0]


def reduce_results(per_learner: list[Results], rows: dict[str, int] | None = None) -> Results:
    """One result per module: each metric reduced over the learners (see ``_combine``), and
    per-row values (``PER_ROW``) concatenated over the learners' contiguous shards in rank
    order, NaN for the rows after them (the remainder the shards dropped) up to the batch's
    ``rows`` per module (None: a ``ShardedBatch``, whose rows only the learners know)."""
    first = per_learner[0]
    reduced = {
        mid: {
            key: _combine(key, [r[mid][key] for r in per_learner])
            for key in first[mid]
            if key != PER_ROW
        }
        for mid in first
    }
    for mid, results in first.items():
        if PER_ROW in results:
            reduced[mid][PER_ROW] = {
                name: _concatenated([r[mid][PER_ROW][name] for r in per_learner], rows, mid)
                for name in results[PER_ROW]
            }
    return reduced


def _concatenated(shards: list[np.ndarray], rows: dict[str, int] | None, mid: str) -> np.ndarray:
    values = np.concatenate(shards)
    total = None if rows is None else rows.get(mid)
    if total is None or total <= len(values):
        return values
    return np.concatenate([values, np.full(total - len(values), np.nan, values.dtype)])


class Group(Protocol):
    """What an update in flight needs of its group (``learners.RayLearners``)."""

    generation: int
    """How often the process group was formed: an update knows which group it ran on."""
    actors: list[Any]
    """The learner actors, by rank."""

    def resolve(self, pending: PendingUpdate) -> None:
        """Settle the updates in flight up to ``pending``, in submission order."""


class PendingUpdate:
    """A future for one group update (``done()`` / ``result()``), resolved in order."""

    def __init__(
        self, owner: Group, seq: int, batch: Any, kwargs: dict, rows: dict[str, int] | None = None
    ) -> None:
        self.owner, self.seq, self.batch, self.kwargs = owner, seq, batch, kwargs
        self.rows = rows
        """The batch's rows per module (None for a ShardedBatch): per-row results span them."""
        self.attempts = 0
        self._result: Results | None = None
        self._error: BaseException | None = None
        self._resolved = False
        self.submit()

    def submit(self) -> None:
        """Send the update to every learner of the group as it is now."""
        owner = self.owner
        self.attempts += 1
        self.generation = owner.generation
        self.actors = list(owner.actors)
        self.refs = [
            a.update.remote(self.seq, self.batch, rank, self.kwargs)
            for rank, a in enumerate(self.actors)
        ]

    def done(self) -> bool:
        if self._resolved:
            return True
        ready, _ = ray.wait(self.refs, num_returns=len(self.refs), timeout=0)
        return len(ready) == len(self.refs)

    def result(self) -> Results:
        if not self._resolved:
            self.owner.resolve(self)
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def settle(self, result: Results | None = None, error: BaseException | None = None) -> None:
        self._result, self._error, self._resolved = result, error, True
        self.batch = None  # let Ray free the stored batch


def gather(refs: list, actors: list) -> list[Outcome]:
    """Each learner's outcome. Learners still busy long after a peer failed are stuck in a
    collective that cannot finish: they are killed, to be restarted."""
    from learnerkit._distributed.collectives import NotApplied

    outcomes: list[Outcome | None] = [None] * len(refs)
    index = {ref: i for i, ref in enumerate(refs)}
    waiting = list(refs)
    deadline = None
    while waiting:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, waiting = ray.wait(waiting, num_returns=1, timeout=timeout)
        if not ready:  # the grace period is over
            for ref in waiting:
                i = index[ref]
                logger.warning(
                    "learner %d is still busy %.0f s after a peer failed; killing it so "
                    "that the group can be formed again",
                    i,
                    STRAGGLER_GRACE_S,
                )
                ray.kill(actors[i], no_restart=True)
                outcomes[i] = ("dead", "killed: stuck in a collective with a failed peer")
            break
        i = index[ready[0]]
        try:
            outcomes[i] = ("ok", ray.get(ready[0]))
            continue
        except RayActorError as exc:
            outcomes[i] = ("dead", first_line(exc))
        except NotApplied as exc:
            outcomes[i] = ("not_applied", first_line(exc))
        except Exception as exc:
            outcomes[i] = ("error", own_error(exc))
        if deadline is None:
            deadline = time.monotonic() + STRAGGLER_GRACE_S
    return outcomes  # type: ignore[return-value]


def own_error(exc: BaseException) -> BaseException:
    """A learnerkit error raised in a learner actor as itself, without Ray's wrapper
    class and actor banner (issue 21): ``CheckpointError: ...``, not
    ``RayTaskError(CheckpointError): ray::_LearnerWorker.call() ...``. Other errors (a
    plugin's bug) keep Ray's wrapper, whose remote traceback points at the bug."""
    cause = getattr(exc, "cause", None) if isinstance(exc, RayTaskError) else None
    if not isinstance(cause, LearnerkitError):
        return exc
    cause.add_note("(raised in a Ray learner actor)")
    return cause


def get_results(refs: Any) -> Any:
    """``ray.get(refs)``, with a learnerkit error from an actor raised as itself."""
    try:
        return ray.get(refs)
    except RayTaskError as exc:
        error = own_error(exc)
        if error is exc:
            raise
        raise error from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__
