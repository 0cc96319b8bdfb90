"""LearnerGroup: one API over one local Learner or many data-parallel Learners on Ray.

``num_learners=0`` keeps one Learner in this process and needs no Ray (on the first GPU when
``num_gpus_per_learner > 0``). ``num_learners>=1``
runs that many Ray actors (see ``learnerkit._distributed.learners``): each takes an equal shard of
every batch and gradients are all-reduced, so all copies keep identical weights.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import attrs

from learnerkit import _checkpoint, _state_checks
from learnerkit._batch import ShardedBatch, as_multi_agent_batch
from learnerkit._learner import Learner, check_timestep
from learnerkit._learner_spec import LearnerSpec, require_learner_spec
from learnerkit._specs import ModuleSpec
from learnerkit.backends._devices import local_device
from learnerkit.errors import LearnerkitError

Results = dict[str, dict[str, Any]]


class _LocalLearners:
    """One Learner in this process. Every call runs on one worker thread, in submission
    order, so async updates never race with blocking calls. With
    ``num_gpus_per_learner > 0`` it trains on the first visible GPU (a ConfigError naming
    the fix when there is none; ``learnerkit.backends._devices``)."""

    def __init__(self, spec: LearnerSpec) -> None:
        device = local_device(spec.framework, spec.scaling.num_gpus_per_learner)
        learner_class = spec.learner_class or Learner
        # device only when there is one: a Learner subclass whose __init__ takes the spec
        # alone keeps working on the CPU.
        self.learner = learner_class(spec) if device is None else learner_class(spec, device=device)
        self.learner.build()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="learnerkit")

    def submit(self, fn: Callable[[Learner], Any]) -> Future:
        return self._executor.submit(fn, self.learner)

    def call(self, fn: Callable[[Learner], Any]) -> Any:
        return self.submit(fn).result()

    def update(self, batch: Any, **kwargs: Any) -> Results:
        return self.call(lambda learner: learner.update(batch, **kwargs))

    def submit_update(self, batch: Any, **kwargs: Any) -> Future:
        return self.submit(lambda learner: learner.update(batch, **kwargs))

    def foreach(self, fn: Callable[[Learner], Any]) -> list[Any]:
        return [self.call(fn)]

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


class LearnerGroup:
    """Runs copies of one Learner and keeps them identical.

    :param learner_spec: what to build; ``learner_spec.scaling.num_learners`` picks local
        (0) or Ray actors (>= 1).
    :param max_async_updates: how many ``async_update`` batches may be in flight; a call
        beyond that waits for the oldest to finish (back-pressure: no batch is dropped).
    :param ray_address: an existing Ray cluster to join (else ``RAY_ADDRESS``, else a local
        Ray is started); ignored when ``num_learners=0``.
    """

    def __init__(
        self,
        learner_spec: LearnerSpec,
        *,
        max_async_updates: int = 2,
        ray_address: str | None = None,
    ) -> None:
        if max_async_updates < 1:
            raise ValueError(f"max_async_updates must be >= 1, got {max_async_updates}")
        self.spec = require_learner_spec(learner_spec, "LearnerGroup")
        self.max_async_updates = max_async_updates
        self._in_flight: deque[Future] = deque()
        # Results of async updates that a blocking call waited for (it must run after them)
        # and that no caller has collected yet: the next collecting call returns them.
        self._finished: list[Results] = []
        if learner_spec.scaling.num_learners == 0:
            self._learners: Any = _LocalLearners(learner_spec)
        else:
            from learnerkit._distributed.learners import RayLearners

            self._learners = RayLearners(
                learner_spec, ray_address=ray_address or os.environ.get("RAY_ADDRESS")
            )
        self._closed = False

    @property
    def is_local(self) -> bool:
        return self.spec.scaling.num_learners == 0

    @property
    def num_learners(self) -> int:
        return max(1, self.spec.scaling.num_learners)

    def _check_open(self) -> None:
        if self._closed:
            raise LearnerkitError("this LearnerGroup was shut down; build a new one")

    # Updates -----------------------------------------------------------------------------
    def update(
        self,
        batch: Any,
        *,
        minibatch_size: int | None = None,
        num_epochs: int = 1,
        sequence_length: int | None = None,
    ) -> Results:
        """Train on ``batch`` and wait; returns statistics per module id. Waits for pending
        async updates first, so updates apply in the order they were given.
        ``sequence_length`` as in ``Learner.update``: shards keep sequences whole.

        ``batch`` may be a ``ShardedBatch``: each Ray learner then reads its own shard
        (a local group reads them all) instead of the driver sending the data."""
        self._check_open()
        return self._learners.update(
            self._as_batch(batch),
            minibatch_size=minibatch_size,
            num_epochs=num_epochs,
            sequence_length=sequence_length,
        )

    def async_update(
        self,
        batch: Any,
        *,
        minibatch_size: int | None = None,
        num_epochs: int = 1,
        sequence_length: int | None = None,
    ) -> list[Results]:
        """Start training on ``batch`` and return at once with the results of the updates
        that have finished since the last call (oldest first), possibly none.

        If ``max_async_updates`` are already in flight this waits for the oldest one first.
        An update that failed raises its error here, from the call that collects it.
        """
        self._check_open()
        batch = self._as_batch(batch)
        if len(self._in_flight) >= self.max_async_updates:
            self._finished.append(self._in_flight.popleft().result())
        self._in_flight.append(
            self._learners.submit_update(
                batch,
                minibatch_size=minibatch_size,
                num_epochs=num_epochs,
                sequence_length=sequence_length,
            )
        )
        return self._collect(block=False)

    def _as_batch(self, batch: Any) -> Any:
        if not isinstance(batch, ShardedBatch):
            return as_multi_agent_batch(batch)
        if self.is_local:
            return batch.read_all()
        if batch.num_shards != self.num_learners:
            raise ValueError(
                f"a ShardedBatch of {batch.num_shards} shards cannot feed {self.num_learners} "
                f"learners: make one shard per learner (num_shards={self.num_learners})"
            )
        return batch

    @property
    def num_in_flight(self) -> int:
        """Async updates submitted whose results have not been returned yet (finished ones
        a blocking call waited for included)."""
        return len(self._in_flight) + len(self._finished)

    def collect_async_updates(self) -> list[Results]:
        """The results of the async updates that have finished, oldest first, without
        waiting or submitting anything (possibly none)."""
        self._check_open()
        return self._collect(block=False)

    def _collect(self, *, block: bool) -> list[Results]:
        """The finished updates' results, oldest first. An update that failed raises its
        error here; the results of those before it stay for the next call to return."""
        while self._in_flight and (block or self._in_flight[0].done()):
            self._finished.append(self._in_flight.popleft().result())
        finished, self._finished = self._finished, []
        return finished

    def _settle_in_flight(self) -> None:
        """Wait for the async updates in flight (a blocking call runs after them), keeping
        their results for the next call that collects them: none is lost to the caller."""
        while self._in_flight:
            self._finished.append(self._in_flight.popleft().result())

    def wait_async_updates(self) -> list[Results]:
        """Wait for every in-flight async update and return their results, oldest first."""
        return self._collect(block=True)

    def additional_update(self, *, timestep: int = 0, **kwargs: Any) -> dict[str, dict]:
        """Run the non-gradient update on every learner; returns the first one's results."""
        self._check_open()
        check_timestep(timestep)
        return self.foreach_learner(
            lambda learner: learner.additional_update(timestep=timestep, **kwargs)
        )[0]

    # Modules while training ---------------------------------------------------------------
    def add_module(
        self,
        module_id: str,
        module_spec: ModuleSpec,
        *,
        hyperparameters: Mapping[str, Any] | None = None,
        train: bool = True,
    ) -> None:
        """Add a module to every learner (``Learner.add_module``): each builds it from the
        same seed, so all copies start identical, and data-parallel learners train it
        through the same collectives as the others. Waits for in-flight updates first."""
        spec = self.spec.with_module(
            module_id, module_spec, hyperparameters=hyperparameters, train=train
        )
        if not self.is_local:
            self._learners.ship_code(spec)
        self.foreach_learner(
            lambda learner: learner.add_module(
                module_id, module_spec, hyperparameters=hyperparameters, train=train
            )
        )
        self._set_spec(spec)

    def remove_module(self, module_id: str) -> None:
        """Drop a module from every learner (``Learner.remove_module``)."""
        spec = self.spec.without_module(module_id)
        self.foreach_learner(lambda learner: learner.remove_module(module_id))
        self._set_spec(spec)

    def set_modules_to_train(self, module_ids: Collection[str] | None) -> None:
        """Train only ``module_ids`` from the next update on (None: all); batches may still
        hold rows of the others, which are ignored (see ``LearnerSpec.modules_to_train``)."""
        spec = attrs.evolve(self.spec, modules_to_train=module_ids)
        self.foreach_learner(lambda learner: learner.set_modules_to_train(module_ids))
        self._set_spec(spec)

    @property
    def modules_to_train(self) -> frozenset[str]:
        """The module ids updates train."""
        return self.spec.trainable_module_ids

    def _set_spec(self, spec: LearnerSpec) -> None:
        # Ray learners restarted after a failure are built from the group's spec, so it
        # follows every change (and the driver validates batches against it).
        self.spec = spec
        if not self.is_local:
            self._learners.set_spec(spec)

    # State -------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Weights, optimizer and algorithm state (all learners hold the same; one answers)."""
        return self._first(lambda learner: learner.get_state())

    def set_state(self, state: dict[str, Any]) -> None:
        self.foreach_learner(lambda learner: learner.set_state(state))

    def get_weights(self) -> dict[str, dict[str, Any]]:
        """Module weights only (no optimizer state), per module id."""
        return self._first(lambda learner: learner.get_module_state())

    def set_weights(self, weights: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the weights of the modules ``weights`` has, on every learner; the other
        modules keep theirs, as in RLlib (``Learner.set_module_state``). An unknown module
        id or weights that do not fit is a CheckpointError with nothing changed."""
        self.foreach_learner(lambda learner: learner.set_module_state(weights))

    def load_module_state(
        self,
        path: str | os.PathLike,
        modules: str | Collection[str] | Mapping[str, str] | None = None,
    ) -> None:
        """Load some modules' weights from a checkpoint (``save_state``'s) into the running
        group, every learner alike, leaving the rest as it is (``Learner.load_module_state``:
        ``modules`` is an id, several, a mapping of checkpoint id to the group's, or None for
        all the checkpoint holds). The checkpoint is read here, so only this process needs
        to see ``path``."""
        self._check_open()
        source = f"checkpoint {os.fspath(path)}"
        state = _checkpoint.load(path)
        weights = _state_checks.module_weights(
            state, modules, framework=self.spec.framework, source=source
        )
        self.set_weights(weights)

    def save_state(self, path: str | os.PathLike) -> None:
        """One learner writes the checkpoint (all hold the same state)."""
        path = os.fspath(path)
        self._first(lambda learner: learner.save_state(path))

    def load_state(self, path: str | os.PathLike) -> None:
        """Every learner loads the checkpoint (the path must be readable by every node)."""
        path = os.fspath(path)
        self.foreach_learner(lambda learner: learner.load_state(path))

    def foreach_learner(self, fn: Callable[[Learner], Any]) -> list[Any]:
        """Call ``fn(learner)`` on every learner (in its process) and return the results."""
        self._check_open()
        self._settle_in_flight()
        return self._learners.foreach(fn)

    def _first(self, fn: Callable[[Learner], Any]) -> Any:
        self._check_open()
        self._settle_in_flight()
        return self._learners.call(fn)

    def shutdown(self) -> None:
        """Finish in-flight updates and release the learners (and their Ray actors)."""
        if self._closed:
            return
        try:
            self.wait_async_updates()
        finally:
            self._learners.shutdown()
            self._closed = True

    def __enter__(self) -> LearnerGroup:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
