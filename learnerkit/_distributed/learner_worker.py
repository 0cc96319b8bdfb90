"""What runs inside each learner's Ray actor: one Learner and its place in the process
group (``learnerkit._distributed.collectives``), composed through the Learner's
data-parallel seam: ``Learner(spec, device=..., data_parallel=group)``."""

from __future__ import annotations

import socket
import warnings
from collections.abc import Callable
from typing import Any

import ray

from learnerkit._batch import MultiAgentBatch, ShardedBatch, as_multi_agent_batch, shard_signature
from learnerkit._distributed.collectives import NotApplied
from learnerkit._distributed.start import actor_info
from learnerkit._learner import Learner
from learnerkit._learner_spec import LearnerSpec
from learnerkit._plugins import register_algorithm
from learnerkit.errors import BatchError, LearnerGroupError, NonFiniteError

Results = dict[str, dict[str, Any]]


class _LearnerWorker:
    """Runs in a Ray actor: one data-parallel Learner and its place in the process group."""

    def __init__(self, spec: LearnerSpec, plugins: dict[str, Any]) -> None:
        from learnerkit._distributed.collectives import accelerator_device, data_parallel_for

        # Batches arrive as read-only views of Ray's object store; training only reads them.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        # Plugins registered in code in the driver do not exist here until registered again.
        for plugin in plugins.values():
            register_algorithm(plugin, replace=True)
        scaling = spec.scaling
        self.device = accelerator_device(spec.framework, scaling.num_gpus_per_learner)
        self.group = data_parallel_for(
            spec.framework, self.device, own_gpu=scaling.num_gpus_per_learner >= 1
        )
        self.group.limit_threads(max(1, int(scaling.num_cpus_per_learner)))
        learner_class = spec.learner_class or Learner
        self.learner = learner_class(spec, device=self.device, data_parallel=self.group)
        self.learner.build()
        # (seq, state) of the last update that began here: what a rewind of it restores.
        self._before_update: tuple[int, dict[str, Any]] | None = None

    def info(self) -> dict[str, Any]:
        return {**actor_info(), "device": self.device}

    def rendezvous_address(self) -> tuple[str, int]:
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def join_group(self, rank: int, world_size: int, address: str, port: int) -> None:
        self.group.join_group(rank, world_size, address, port)

    def update(
        self, seq: int, batch: MultiAgentBatch | ShardedBatch, rank: int, kwargs: dict[str, Any]
    ) -> Results:
        """Train on shard ``rank`` of ``batch`` (all learners get the one stored batch: a
        single put instead of one per learner keeps ``async_update`` from blocking), or on
        the shard this learner reads itself from a ``ShardedBatch``.

        The state before the update is kept (a copy of weights, optimizer and algorithm
        state): if a peer dies half way, the group puts every learner back to it and runs
        the update again (``learnerkit._distributed.learners``). An update refused before it
        began (a peer gone) leaves the kept state alone: the peer may have died during the
        previous update, which is the one the group then rewinds."""
        self.group.agree(seq)  # raises NotApplied, with no state changed, if a peer is gone
        if isinstance(batch, ShardedBatch):
            shard = self._read_shard(batch, rank, kwargs.get("sequence_length"))
        self._before_update = (seq, self.learner.get_state())
        try:
            if not isinstance(batch, ShardedBatch):
                shard = batch.shard(
                    self.group.world_size, sequence_length=kwargs.get("sequence_length") or 1
                )[rank]
            return self.learner.update(shard, **kwargs)
        except NonFiniteError:
            # Every learner stops at the same minibatch (the decision is taken on the
            # all-reduced gradients) with every collective complete: the group is sound.
            raise
        except BaseException:
            # A collective may have been left half done: fail later updates fast until the
            # group is formed again.
            self.group.mark_broken()
            raise

    def _read_shard(
        self, batch: ShardedBatch, rank: int, sequence_length: int | None
    ) -> MultiAgentBatch:
        """Read and validate this learner's shard, then check with every peer that all
        read one of the same layout; nothing is trained unless all did."""
        shard, error = None, None
        try:
            shard = self.learner.trainable_part(as_multi_agent_batch(batch.read(rank)))
            self.learner.validate_batch(shard, sequence_length=sequence_length)
        except Exception as exc:
            error = exc
        signature = shard_signature(shard) if error is None else 0
        all_read, same_layout = self.group.agree_on_shard(error is None, signature)
        if error is not None:
            raise error
        if not all_read:
            raise NotApplied("another learner could not read its shard (its error is the update's)")
        if not same_layout:
            raise BatchError(
                f"shard {rank}: the learners' shards hold different modules or numbers of rows, "
                "so they would run different numbers of minibatches: a ShardedBatch must give "
                "every shard the same rows per module"
            )
        return shard

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.learner, *args)

    def state_before_update(self, seq: int) -> dict[str, Any]:
        """The state this learner had before update ``seq`` began (its current state if
        that update never began here)."""
        if self._before_update is None or self._before_update[0] < seq:
            return self.learner.get_state()
        began, state = self._before_update
        if began > seq:
            raise LearnerGroupError(
                f"cannot rewind update {seq}: this learner has begun update {began} since, "
                "and keeps only the state before its last update; the group's state is "
                "unknown: build a new LearnerGroup and load_state from the last checkpoint"
            )
        return state

    def ping(self) -> bool:
        return True


RemoteWorker = ray.remote(max_restarts=0, max_task_retries=0)(_LearnerWorker)


def get_state(learner: Learner) -> dict[str, Any]:
    return learner.get_state()


def set_state(learner: Learner, state: dict[str, Any]) -> None:
    learner.set_state(state)
