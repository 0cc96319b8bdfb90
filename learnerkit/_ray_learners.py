"""Data-parallel Learners as Ray actors: the ``num_learners >= 1`` half of LearnerGroup.

The driver plans every update centrally (validate the whole batch, drop modules with fewer
rows than learners, cut equal shards) so that every learner runs exactly the same sequence
of collective operations: a learner that skipped a module its peers train would stall their
all-reduce forever. Each update begins with a tiny all-reduce of its sequence number
(``agree``): it fails fast, before any weight changes, when a peer has died, so the group
can restart that peer and re-run the update without losing or repeating it.

Only this module and ``_distributed`` import Ray, and only when a group with learners is
built.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Callable
from numbers import Real
from typing import Any

import numpy as np
import ray
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from learnerkit._plugins import register_algorithm, registered_plugins
from learnerkit.batch import MultiAgentBatch
from learnerkit.errors import BatchError, LearnerGroupError
from learnerkit.learner import Learner
from learnerkit.specs import LearnerSpec

logger = logging.getLogger(__name__)
Results = dict[str, dict[str, Any]]

PLACEMENT_TIMEOUT_ENV = "LEARNERKIT_PLACEMENT_TIMEOUT_S"
# Seconds to wait for Ray to reserve the learners' resources before calling it a shortfall.
DEFAULT_PLACEMENT_TIMEOUT_S = 60.0
# After one learner fails an update, how long its peers may take to finish before they are
# taken to be stuck in a collective that can never complete, and are restarted.
STRAGGLER_GRACE_S = 10.0
# Object store of a Ray started here: batches and states of small models need little.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
_MAX_RETRIES = 3


class _LearnerWorker:
    """Runs in a Ray actor: one data-parallel Learner and its place in the process group."""

    def __init__(self, spec: LearnerSpec, plugins: dict[str, Any]) -> None:
        from learnerkit._distributed import accelerator_device, data_parallel_class

        # Batches arrive as read-only views of Ray's object store; training only reads them.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        # Plugins registered in code in the driver do not exist here until registered again.
        for plugin in plugins.values():
            register_algorithm(plugin, replace=True)
        scaling = spec.scaling
        self.device = accelerator_device(spec.framework, scaling.num_gpus_per_learner)
        cls = data_parallel_class(spec.learner_class or Learner, spec.framework)
        self.learner = cls(spec, device=self.device)
        self.learner.limit_threads(max(1, int(scaling.num_cpus_per_learner)))
        self.learner.build()

    def info(self) -> dict[str, Any]:
        ctx = ray.get_runtime_context()
        return {
            "actor_id": ctx.get_actor_id(),
            "node_id": ctx.get_node_id(),
            "pid": os.getpid(),
            "device": self.device,
        }

    def rendezvous_address(self) -> tuple[str, int]:
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def join_group(self, rank: int, world_size: int, address: str, port: int) -> None:
        self.learner.join_group(rank, world_size, address, port)

    def update(
        self, seq: int, batch: MultiAgentBatch, rank: int, kwargs: dict[str, Any]
    ) -> Results:
        """Train on shard ``rank`` of ``batch`` (all learners get the one stored batch: a
        single put instead of one per learner keeps ``async_update`` from blocking)."""
        self.learner.agree(seq)  # raises NotApplied, with no state changed, if a peer is gone
        try:
            return self.learner.update(batch.shard(self.learner.world_size)[rank], **kwargs)
        except BaseException:
            # A collective may have been left half done: fail later updates fast until the
            # group is formed again.
            self.learner.mark_broken()
            raise

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.learner, *args)

    def ping(self) -> bool:
        return True


_RemoteWorker = ray.remote(max_restarts=0, max_task_retries=0)(_LearnerWorker)


def _get_state(learner: Learner) -> dict[str, Any]:
    return learner.get_state()


def _set_state(learner: Learner, state: dict[str, Any]) -> None:
    learner.set_state(state)


def _combine(key: str, values: list[Any]) -> Any:
    """Counts (``num_*``) add up over the learners' shards; other numbers are averaged."""
    if all(isinstance(v, Real) and not isinstance(v, bool) for v in values):
        if key.startswith("num_") and all(isinstance(v, (int, np.integer)) for v in values):
            return int(sum(values))
        return float(np.mean(values))
    return values[0]


def reduce_results(per_learner: list[Results]) -> Results:
    """One result per module: each metric reduced over the learners (see ``_combine``)."""
    first = per_learner[0]
    return {
        mid: {key: _combine(key, [r[mid][key] for r in per_learner]) for key in first[mid]}
        for mid in first
    }


def _ensure_ray(address: str | None) -> None:
    if ray.is_initialized():
        return
    if address and address not in ("auto", "local") and "://" not in address:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        except (OSError, ValueError) as exc:
            raise LearnerGroupError(
                f"cannot reach the Ray cluster at {address!r} ({exc}); start it with "
                "`ray start --head` or fix ray_address / RAY_ADDRESS"
            ) from exc
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            ray.init(
                include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                # Learner warnings and errors should reach the user; Ray prefixes each line
                # with the actor that wrote it.
                log_to_driver=True,
            )
    except Exception as exc:  # whatever Ray raised, the user needs to know it was Ray
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        raise LearnerGroupError(f"could not start or join {where}: {exc}") from exc


def _ship_by_value(objects: list[Any]) -> None:
    """Make Ray send the code of ``objects`` by value when their module is not part of an
    installed distribution (a test file, a notebook helper): the actors could not import it.
    """
    import sys
    from importlib.metadata import packages_distributions

    from ray import cloudpickle

    installed = set(packages_distributions()) | set(sys.stdlib_module_names)
    names = set()
    for obj in objects:
        members = [obj, type(obj), *(getattr(obj, n, None) for n in dir(obj))]
        names |= {getattr(m, "__module__", None) for m in members if callable(m)}
    for name in names - {None, "__main__", "builtins"}:
        module = sys.modules.get(name)
        if module is not None and name.partition(".")[0] not in installed:
            cloudpickle.register_pickle_by_value(module)


def _placement_timeout() -> float:
    return float(os.environ.get(PLACEMENT_TIMEOUT_ENV, DEFAULT_PLACEMENT_TIMEOUT_S))


class _PendingUpdate:
    """A future for one group update (``done()`` / ``result()``), resolved in order."""

    def __init__(self, owner: RayLearners, seq: int, batch: Any, kwargs: dict) -> None:
        self.owner, self.seq, self.batch, self.kwargs = owner, seq, batch, kwargs
        self.attempts = 0
        self._result: Results | None = None
        self._error: BaseException | None = None
        self._resolved = False
        self.submit()

    def submit(self) -> None:
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
            self.owner._resolve(self)
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def settle(self, result: Results | None = None, error: BaseException | None = None) -> None:
        self._result, self._error, self._resolved = result, error, True
        self.batch = None  # let Ray free the stored batch


class RayLearners:
    """``num_learners`` Learner actors training data-parallel (LearnerGroup's back end)."""

    def __init__(self, spec: LearnerSpec, *, ray_address: str | None = None) -> None:
        self.spec = spec
        self.num_learners = spec.scaling.num_learners
        # Driver-side copy, never built: validates batches before they are sharded, so that
        # a bad row fails here for everyone instead of in one learner mid-collective.
        self._validator = (spec.learner_class or Learner)(spec)
        self._plugins = registered_plugins()
        _ship_by_value(
            [
                *self._plugins.values(),
                *spec.extra_plugins,
                *(c for c in [spec.learner_class] if c is not None),
                *(m.module_class for m in spec.module_specs.values() if m.module_class),
            ]
        )
        self._pending: list[_PendingUpdate] = []
        self._seq = 0
        self.generation = 0
        self.actors: list[Any] = []
        # Where each learner runs (actor id, node id, pid, device), by rank.
        self.info_by_rank: dict[int, dict[str, Any]] = {}
        self._pg = None
        _ensure_ray(ray_address)
        try:
            self._pg = self._reserve()
            self.actors = [self._spawn(i) for i in range(self.num_learners)]
            self._wait_started(range(self.num_learners))
            self._form_group()
        except BaseException:
            self.shutdown()
            raise

    # Start-up ----------------------------------------------------------------------------
    def _bundle(self) -> dict[str, float]:
        s = self.spec.scaling
        bundle = {"CPU": float(s.num_cpus_per_learner), "GPU": float(s.num_gpus_per_learner)}
        return {k: v for k, v in bundle.items() if v > 0}

    def _reserve(self):
        bundle = self._bundle()
        if not bundle:
            return None  # nothing to reserve: actors go wherever Ray puts them
        n = self.num_learners
        asked = ", ".join(f"{n} x {v:g} {k}" for k, v in bundle.items())
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        if not any(all(res.get(k, 0) >= v for k, v in bundle.items()) for res in nodes):
            raise LearnerGroupError(
                f"no node of the Ray cluster can hold one learner ({bundle}); its nodes have "
                f"{[{k: r.get(k, 0) for k in bundle} for r in nodes]}. Lower "
                "num_cpus_per_learner / num_gpus_per_learner or add bigger nodes"
            )
        # SPREAD puts learners on different nodes where it can (a node failure then takes
        # fewer of them) and packs them when it must.
        pg = placement_group([bundle] * n, strategy="SPREAD")
        timeout = _placement_timeout()
        try:
            ray.get(pg.ready(), timeout=timeout)
        except GetTimeoutError:
            remove_placement_group(pg)
            total, free = ray.cluster_resources(), ray.available_resources()
            have = ", ".join(f"{k}: {free.get(k, 0):g} free of {total.get(k, 0):g}" for k in bundle)
            raise LearnerGroupError(
                f"Ray could not reserve {asked} for {n} learner(s) within {timeout:g} s; the "
                f"cluster has {have}. Lower num_learners or the per-learner resources, add "
                f"nodes, or wait longer ({PLACEMENT_TIMEOUT_ENV})"
            ) from None
        return pg

    def _spawn(self, index: int) -> Any:
        s = self.spec.scaling
        options: dict[str, Any] = {
            "num_cpus": s.num_cpus_per_learner,
            "num_gpus": s.num_gpus_per_learner,
        }
        if self._pg is not None:
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                self._pg, placement_group_bundle_index=index
            )
        return _RemoteWorker.options(**options).remote(self.spec, self._plugins)

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

    # Updates -----------------------------------------------------------------------------
    def _plan(self, batch: MultiAgentBatch, kwargs: dict[str, Any]) -> tuple[MultiAgentBatch, dict]:
        """The batch every learner shards alike (``MultiAgentBatch.shard``: equal shards, the
        remainder dropped) and the per-learner update arguments."""
        self._validator.validate_batch(batch)
        n = self.num_learners
        keep = {mid: b for mid, b in batch.items() if b.count >= n}
        if not keep:
            raise BatchError(
                f"batch is too small to share among {n} learners: its modules have "
                f"{ {mid: b.count for mid, b in batch.items()} } rows; every learner needs at "
                "least one row"
            )
        if len(keep) < len(batch):
            # Skipped on every learner alike, so no learner waits for one that never comes.
            logger.warning(
                "modules %s have fewer rows than the %d learners and are not trained on this batch",
                sorted(set(batch) - set(keep)),
                n,
            )
        minibatch_size = kwargs.get("minibatch_size")
        if minibatch_size is not None:
            # minibatch_size stays the global minibatch: each learner takes its share, so a
            # group runs the same number of optimizer steps as a single learner would.
            kwargs = {**kwargs, "minibatch_size": max(1, minibatch_size // n)}
        return MultiAgentBatch(keep), kwargs

    def submit_update(self, batch: MultiAgentBatch, **kwargs: Any) -> _PendingUpdate:
        batch, kwargs = self._plan(batch, kwargs)
        self._seq += 1
        pending = _PendingUpdate(self, self._seq, ray.put(batch), kwargs)
        self._pending.append(pending)
        return pending

    def update(self, batch: MultiAgentBatch, **kwargs: Any) -> Results:
        return self.submit_update(batch, **kwargs).result()

    def _resolve(self, target: _PendingUpdate) -> None:
        # Resolve in submission order, so a restart re-runs unapplied updates in order.
        while self._pending:
            pending = self._pending[0]
            self._settle(pending)
            self._pending.pop(0)
            if pending is target:
                return

    def _settle(self, pending: _PendingUpdate) -> None:
        while True:
            outcomes = self._gather(pending.refs, pending.actors)
            if all(kind == "ok" for kind, _ in outcomes):
                pending.settle(reduce_results([value for _, value in outcomes]))
                return
            dead = {
                i: value
                for i, (kind, value) in enumerate(outcomes)
                if kind == "dead" and pending.actors[i] is self.actors[i]
            }
            errors = [value for kind, value in outcomes if kind == "error"]
            if dead or pending.generation == self.generation:
                self._heal(dead, resync=bool(errors))
            applied_nothing = all(kind in ("dead", "not_applied") for kind, _ in outcomes)
            if applied_nothing and pending.attempts < _MAX_RETRIES:
                pending.submit()  # no learner changed anything: run it again, whole
                continue
            if errors:
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

    def _gather(self, refs: list, actors: list) -> list[tuple[str, Any]]:
        """Each learner's outcome: ("ok", results), ("dead", cause), ("not_applied", cause)
        or ("error", exception). Learners still busy long after a peer failed are stuck in
        a collective that cannot finish: they are killed, to be restarted."""
        from learnerkit._distributed import NotApplied

        outcomes: list[tuple[str, Any] | None] = [None] * len(refs)
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
                outcomes[i] = ("dead", _first_line(exc))
            except NotApplied as exc:
                outcomes[i] = ("not_applied", _first_line(exc))
            except Exception as exc:
                outcomes[i] = ("error", exc)
            if deadline is None:
                deadline = time.monotonic() + STRAGGLER_GRACE_S
        return outcomes  # type: ignore[return-value]

    # Recovery ----------------------------------------------------------------------------
    def _dead_learners(self) -> dict[int, str]:
        refs = [a.ping.remote() for a in self.actors]
        dead = {}
        for i, ref in enumerate(refs):
            try:
                ray.get(ref)
            except RayActorError as exc:
                dead[i] = _first_line(exc)
        return dead

    def _heal(self, dead: dict[int, str], *, resync: bool = False) -> None:
        """Restart dead learners from a healthy one's state and re-form the process group."""
        dead = {**self._dead_learners(), **dead}
        alive = [i for i in range(self.num_learners) if i not in dead]
        if not alive:
            raise LearnerGroupError(
                f"all {self.num_learners} learners died ({dead}); their state is lost: build "
                "a new LearnerGroup and load_state from the last checkpoint"
            )
        source = alive[0]
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
        state = self.actors[source].call.remote(_get_state)
        for i in dead:
            self.actors[i] = self._spawn(i)
        self._wait_started(dead)
        targets = [i for i in range(self.num_learners) if i != source and (resync or i in dead)]
        ray.get([self.actors[i].call.remote(_set_state, state) for i in targets])
        self._form_group()

    def _healthy_actors(self) -> list[Any]:
        dead = self._dead_learners()
        if dead:
            self._heal(dead)
        return self.actors

    # Other calls -------------------------------------------------------------------------
    def call(self, fn: Callable[[Learner], Any]) -> Any:
        return ray.get(self._healthy_actors()[0].call.remote(fn))

    def foreach(self, fn: Callable[[Learner], Any]) -> list[Any]:
        return ray.get([a.call.remote(fn) for a in self._healthy_actors()])

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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__
