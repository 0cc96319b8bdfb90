"""Data-parallel Learners as Ray actors: the ``num_learners >= 1`` half of LearnerGroup.

The driver plans every update centrally (validate the whole batch, drop modules with fewer
rows than learners, cut equal shards) so that every learner runs exactly the same sequence
of collective operations: a learner that skipped a module its peers train would stall their
all-reduce forever. Each update begins with a tiny all-reduce of its sequence number
(``agree``): it fails fast, before any weight changes, when a peer has died, so the group
can restart that peer and re-run the update without losing or repeating it.

The group lives here; starting Ray and reserving resources in ``start``, the actor in
``learner_worker``, updates in flight in ``updates``, the process group in ``collectives``
(all in ``learnerkit._distributed``, the only package that imports Ray, and only when a group
with learners or env runners is built).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.placement_group import remove_placement_group

from learnerkit._batch import MultiAgentBatch, ShardedBatch
from learnerkit._distributed.learner_worker import RemoteWorker, get_state, set_state
from learnerkit._distributed.start import actor_options, ensure_ray, reserve, ship_by_value
from learnerkit._distributed.updates import (
    PendingUpdate,
    Results,
    first_line,
    gather,
    get_results,
    reduce_results,
)
from learnerkit._learner import Learner
from learnerkit._learner_spec import LearnerSpec
from learnerkit._plugins import registered_plugins
from learnerkit.errors import BatchError, LearnerGroupError

logger = logging.getLogger(__name__)
# Times an update is re-run, whole, after no learner applied it (a peer died before it began).
_MAX_RETRIES = 3


class RayLearners:
    """``num_learners`` Learner actors training data-parallel (LearnerGroup's back end)."""

    def __init__(self, spec: LearnerSpec, *, ray_address: str | None = None) -> None:
        self.spec = spec
        self.num_learners = spec.scaling.num_learners
        # Driver-side copy, never built: validates batches before they are sharded, so that
        # a bad row fails here for everyone instead of in one learner mid-collective.
        self._validator = (spec.learner_class or Learner)(spec)
        self._plugins = registered_plugins()
        ship_by_value(
            [
                *self._plugins.values(),
                *spec.extra_plugins,
                *(c for c in [spec.learner_class] if c is not None),
                *(m.module_class for m in spec.module_specs.values() if callable(m.module_class)),
            ]
        )
        self._pending: list[PendingUpdate] = []
        self._shipped: set[type] = set()
        self._seq = 0
        self.generation = 0
        self.actors: list[Any] = []
        # Where each learner runs (actor id, node id, pid, device), by rank.
        self.info_by_rank: dict[int, dict[str, Any]] = {}
        self._pg = None
        ensure_ray(ray_address)
        try:
            self._pg = reserve(spec.scaling)
            self.actors = [self._spawn(i) for i in range(self.num_learners)]
            self._wait_started(range(self.num_learners))
            self._form_group()
        except BaseException:
            self.shutdown()
            raise

    # Start-up ----------------------------------------------------------------------------
    def _spawn(self, index: int) -> Any:
        options = actor_options(self.spec.scaling, self._pg, index)
        return RemoteWorker.options(**options).remote(self.spec, self._plugins)

    def _wait_started(self, indices) -> None:
        indices = list(indices)
        refs = [self.actors[i].info.remote() for i in indices]
        for i, ref in zip(indices, refs, strict=True):
            try:
                self.info_by_rank[i] = ray.get(ref)
            except RayActorError as exc:
                raise LearnerGroupError(f"learner {i} failed to start: {exc}") from exc

    def _form_group(self) -> None:
        """(Re-)form the process group of all learners; every learner must take part."""
        address, port = ray.get(self.actors[0].rendezvous_address.remote())
        refs = [
            a.join_group.remote(rank, self.num_learners, address, port)
            for rank, a in enumerate(self.actors)
        ]
        try:
            ray.get(refs, timeout=120)
        except (GetTimeoutError, RayActorError) as exc:
            raise LearnerGroupError(
                f"the {self.num_learners} learners could not form a process group at "
                f"{address}:{port}: {exc}"
            ) from exc
        self.generation += 1

    def set_spec(self, spec: LearnerSpec) -> None:
        """Follow a change the learners made (a module added or removed, modules to train):
        restarted learners are built from this spec, and batches validated against it."""
        self.spec = spec
        self._validator.spec = spec

    def ship_code(self, spec: LearnerSpec) -> None:
        """Send module classes defined outside installed packages by value (before a call
        that carries them, such as ``add_module``)."""
        ship_by_value(
            [m.module_class for m in spec.module_specs.values() if callable(m.module_class)]
        )

    # Updates -----------------------------------------------------------------------------
    def _plan(self, batch: Any, kwargs: dict[str, Any]) -> tuple[Any, dict]:
        """The batch every learner shards alike (``MultiAgentBatch.shard``: equal shards of
        whole sequences, the remainder dropped) and the per-learner update arguments.

        Which modules an update trains is decided here, once, for every learner: those in
        the batch and in ``modules_to_train`` with at least one row (sequence) per learner.
        Frozen modules and modules absent from the batch are not trained (no learner runs
        a collective for them); a module with fewer rows than learners is left out with a
        warning; a batch whose trainable modules are all that small is a BatchError. So every
        learner trains the same modules in the same order with the same number of
        minibatches, and no all-reduce waits for a peer that never comes."""
        seq_len = kwargs.get("sequence_length") or 1
        kwargs = self._minibatch_share(kwargs, seq_len)
        if isinstance(batch, ShardedBatch):
            # Read, validated and compared by the learners themselves (learner_worker).
            if type(batch) not in self._shipped:
                ship_by_value([batch])  # a class from a notebook or test file
                self._shipped.add(type(batch))
            return batch, kwargs
        batch = self._validator.trainable_part(batch)
        self._validator.validate_batch(batch, sequence_length=kwargs.get("sequence_length"))
        n = self.num_learners
        keep = {mid: b for mid, b in batch.items() if b.count // seq_len >= n}
        if not keep and batch:
            unit = "rows" if seq_len == 1 else f"sequences of {seq_len} rows"
            raise BatchError(
                f"batch is too small to share among {n} learners: its modules have "
                f"{ {mid: b.count // seq_len for mid, b in batch.items()} } {unit}; every "
                f"learner needs at least one"
            )
        if len(keep) < len(batch):
            # Skipped on every learner alike, so no learner waits for one that never comes.
            logger.warning(
                "modules %s have fewer rows than the %d learners and are not trained on this batch",
                sorted(set(batch) - set(keep)),
                n,
            )
        return MultiAgentBatch(keep), kwargs

    def _minibatch_share(self, kwargs: dict[str, Any], seq_len: int) -> dict[str, Any]:
        """minibatch_size stays the global minibatch: each learner takes its share (whole
        sequences), so a group runs as many optimizer steps as one learner would."""
        minibatch_size = kwargs.get("minibatch_size")
        if minibatch_size is None:
            return kwargs
        share = max(1, minibatch_size // seq_len // self.num_learners) * seq_len
        return {**kwargs, "minibatch_size": share}

    def submit_update(self, batch: MultiAgentBatch, **kwargs: Any) -> PendingUpdate:
        batch, kwargs = self._plan(batch, kwargs)
        self._seq += 1
        rows = None if isinstance(batch, ShardedBatch) else {m: b.count for m, b in batch.items()}
        pending = PendingUpdate(self, self._seq, ray.put(batch), kwargs, rows)
        self._pending.append(pending)
        return pending

    def update(self, batch: MultiAgentBatch, **kwargs: Any) -> Results:
        return self.submit_update(batch, **kwargs).result()

    def resolve(self, target: PendingUpdate) -> None:
        # Resolve in submission order, so a restart re-runs unapplied updates in order.
        while self._pending:
            pending = self._pending[0]
            self._settle(pending)
            self._pending.pop(0)
            if pending is target:
                return

    def _settle(self, pending: PendingUpdate) -> None:
        while True:
            outcomes = gather(pending.refs, pending.actors)
            if all(kind == "ok" for kind, _ in outcomes):
                pending.settle(reduce_results([value for _, value in outcomes], pending.rows))
                return
            dead = {
                i: value
                for i, (kind, value) in enumerate(outcomes)
                if kind == "dead" and pending.actors[i] is self.actors[i]
            }
            errors = [value for kind, value in outcomes if kind == "error"]
            if dead:
                # A learner died, maybe half way through the update: every learner goes back
                # to the state before it, so the group is consistent and can run it again.
                self._heal(dead, rewind=pending.seq)
            elif pending.generation == self.generation:
                self._heal(dead, resync=bool(errors))
            applied_nothing = all(kind in ("dead", "not_applied") for kind, _ in outcomes)
            if (dead or applied_nothing) and pending.attempts < _MAX_RETRIES:
                if dead:
                    logger.warning(
                        "update %d: learner(s) %s died during it; every learner was put back "
                        "to its state before the update, which now runs again (attempt %d)",
                        pending.seq,
                        sorted(dead),
                        pending.attempts + 1,
                    )
                pending.submit()  # no learner holds any of it now: run it again, whole
                continue
            if dead:
                pending.settle(
                    error=LearnerGroupError(
                        f"update {pending.seq} failed {pending.attempts} times: a learner died "
                        f"during each attempt (last: {dead}). Every learner holds the state "
                        "from before this update (nothing of it was applied): submit the batch "
                        "again, or find out why learners die"
                    )
                )
            elif errors:
                pending.settle(error=errors[0])
            else:
                causes = "; ".join(
                    f"learner {i} {kind}: {value}" for i, (kind, value) in enumerate(outcomes)
                )
                pending.settle(
                    error=LearnerGroupError(
                        f"update {pending.seq} failed on {len(outcomes)} learners ({causes}); "
                        "the group was restored from a surviving learner, which may hold part "
                        "of this update: submit the batch again if it matters"
                    )
                )
            return

    # Recovery ----------------------------------------------------------------------------
    def _dead_learners(self) -> dict[int, str]:
        refs = [a.ping.remote() for a in self.actors]
        dead = {}
        for i, ref in enumerate(refs):
            try:
                ray.get(ref)
            except RayActorError as exc:
                dead[i] = first_line(exc)
        return dead

    def _heal(
        self, dead: dict[int, str], *, resync: bool = False, rewind: int | None = None
    ) -> None:
        """Restart dead learners from a healthy one's state and re-form the process group.

        ``resync``: every learner takes that state. ``rewind`` (an update's seq): every
        learner takes the state the healthy one had before that update (a learner died in
        it).

        The state is fetched into the driver first, so a learner dying while the group
        recovers (the source included, once its state is here) is restarted from it too
        (issue 21 §4: found by the chaos harness, ``bench/chaos.py``)."""
        dead = {**self._dead_learners(), **dead}
        alive = [i for i in range(self.num_learners) if i not in dead]
        if not alive:
            raise LearnerGroupError(
                f"all {self.num_learners} learners died ({dead}); their state is lost: build "
                "a new LearnerGroup and load_state from the last checkpoint"
            )
        source = alive[0]
        if rewind is not None:
            ref = self.actors[source].state_before_update.remote(rewind)
        else:
            ref = self.actors[source].call.remote(get_state)
        try:
            state = get_results(ref)
        except RayActorError as exc:  # the source died too: the next healthy one, if any
            self._heal({**dead, source: first_line(exc)}, resync=resync, rewind=rewind)
            return
        for i, cause in dead.items():
            info = self.info_by_rank.get(i, {})
            logger.warning(
                "learner %d (Ray actor %s, node %s, pid %s) died: %s. Restarting it from "
                "learner %d's state (weights, optimizer, algorithm state)",
                i,
                info.get("actor_id"),
                info.get("node_id"),
                info.get("pid"),
                cause,
                source,
            )
        others = [i for i in range(self.num_learners) if i != source and (resync or i in dead)]
        targets = list(range(self.num_learners)) if rewind is not None else others
        self._restart_from(ray.put(state), list(dead), targets)

    def _restart_from(self, state: Any, dead: list[int], targets: list[int]) -> None:
        """Restart learners ``dead``, give ``targets`` the ``state`` (a Ray object the driver
        holds) and re-form the group; a learner dying meanwhile is restarted from it too."""
        for attempt in range(1, _MAX_RETRIES + 1):
            for i in dead:
                self.actors[i] = self._spawn(i)
            try:
                self._wait_started(dead)
                get_results([self.actors[i].call.remote(set_state, state) for i in targets])
                self._form_group()
                return
            except (RayActorError, LearnerGroupError) as exc:
                died = self._dead_learners()
                if not died or attempt == _MAX_RETRIES:
                    raise LearnerGroupError(
                        f"the learner group could not recover: {first_line(exc)} (attempt "
                        f"{attempt}; learners dead now: {sorted(died)}); build a new "
                        "LearnerGroup and load_state from the last checkpoint"
                    ) from exc
                for i, cause in died.items():
                    logger.warning(
                        "learner %d died while the group recovered: %s. Restarting it from "
                        "the state the driver holds",
                        i,
                        cause,
                    )
                dead, targets = sorted(died), list(range(self.num_learners))

    def _healthy_actors(self) -> list[Any]:
        dead = self._dead_learners()
        if dead:
            self._heal(dead)
        return self.actors

    # Other calls -------------------------------------------------------------------------
    def call(self, fn: Callable[[Learner], Any]) -> Any:
        """``fn`` on the first learner; if it dies during the call, the group is healed
        and the call made again (``call`` is for reading: state, weights, saving)."""
        for attempt in range(1, _MAX_RETRIES + 1):
            try:
                return get_results(self._healthy_actors()[0].call.remote(fn))
            except RayActorError as exc:
                if attempt == _MAX_RETRIES:
                    raise LearnerGroupError(
                        f"learner 0 died during each of {attempt} attempts of a call: "
                        f"{first_line(exc)}; find out why learners die"
                    ) from exc
                logger.warning("learner 0 died during a call (%s); calling again", first_line(exc))
        raise AssertionError("unreachable")

    def foreach(self, fn: Callable[[Learner], Any]) -> list[Any]:
        """``fn`` on every learner. A learner that dies during it is restarted from a
        survivor's state, which ``fn`` has changed already (``fn`` is not run twice
        anywhere), and takes the survivor's result."""
        refs = [a.call.remote(fn) for a in self._healthy_actors()]
        results: list[Any] = []
        dead: dict[int, str] = {}
        for i, ref in enumerate(refs):
            try:
                results.append(get_results(ref))
            except RayActorError as exc:
                dead[i] = first_line(exc)
                results.append(None)
        if dead:
            self._heal(dead)  # raises if none survived
            source = next(i for i in range(self.num_learners) if i not in dead)
            for i in dead:
                results[i] = results[source]
        return results

    def shutdown(self) -> None:
        if not ray.is_initialized():  # Ray went first: the actors went with it
            self.actors, self._pg = [], None
            return
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        if self._pg is not None:
            remove_placement_group(self._pg)
            self._pg = None
