"""What makes a Learner one of several data-parallel copies inside a Ray actor.

``data_parallel_for(framework, device, own_gpu)`` is the learner's place in the group: it
implements the Learner's data-parallel seam (``learnerkit.data_parallel.DataParallel``:
the training forward pass, the gradient all-reduce, modules added and removed), given to
the Learner as ``Learner(spec, device=..., data_parallel=...)``, and the process group's
membership: ``join_group`` (form or re-form the group), ``agree`` (the check every update
starts with), ``agree_on_shard`` and the broken flag. ``learner_worker`` composes the two;
nothing here reads the Learner.

Both frameworks form one ``torch.distributed`` process group (``_GroupMember``). The
``agree`` check always runs on a gloo group: gloo fails within milliseconds when a peer
process has died ("Connection closed by peer"), where NCCL would wait until its timeout.

Torch on the CPU: each train step averages its gradients after backward with one gloo
all-reduce of a flat buffer, as TensorFlow's steps do (``allreduce_grads`` in the torch
backend), and a module joining a group takes rank 0's weights, after a check that every
learner built the same shapes (what DDP does when it wraps a module). Not
DistributedDataParallel: on the CPU it gains nothing for the models learners train (one
bucket, one all-reduce per step either way), and constructing it imports ``torch._dynamo``,
0.9 s of CPU and ~70 MB in every learner actor (the import issue 10 took out of local
training).

Torch on GPUs: NCCL when each learner has a GPU of its own (``num_gpus_per_learner=1``);
the modules train through DistributedDataParallel, which all-reduces (averages) the
gradients during the backward pass, overlapping the two. A module with several optimizers,
whose loss may give each one a backward pass of its own (``OPTIMIZER_LOSSES``), runs its
forward pass under DDP's ``no_sync`` (DDP expects one backward pass per forward pass) and
averages its gradients after them with one gloo all-reduce of a flat host buffer. Learners
sharing a GPU (``num_gpus_per_learner < 1``) cannot use NCCL, which takes one rank per GPU
("Duplicate GPU detected"), so they use gloo with their modules on the GPU: gloo
all-reduces, broadcasts and all-gathers CUDA tensors itself (``ProcessGroupGloo`` copies
them through host memory), and those are the collectives DDP calls; the gradients go
through the CPU inside gloo, with no copy in learnerkit's code. (No GPU was available to
test the GPU paths; see docs/concepts/data-parallel.md.)

TensorFlow: the compiled train step hands its gradients, flattened into one buffer, to a
gloo all-reduce through ``tf.numpy_function`` (one collective per optimizer step), and
clips and applies the averaged gradients, so every learner takes the same step. Chosen
over TensorFlow's own MultiWorkerMirroredStrategy because that strategy is configured once
per process (``TF_CONFIG`` read when the runtime starts) and cannot re-form its group when
a Ray actor is restarted without restarting every learner, and it would have to own the
model, optimizer and dataset (``strategy.scope()``, distributed datasets) that the backend
builds; the gloo group is already there, re-forms in place, and gives TensorFlow learners
the same fail-fast ``agree`` and recovery as torch ones. The price is a host copy of the
gradients per step, small next to the step for the models learners train on CPUs.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import tempfile
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from learnerkit.backends._devices import gpu_device
from learnerkit.errors import LearnerGroupError

# A collective that waits longer than this for a peer raises instead of hanging for ever.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)


class NotApplied(LearnerGroupError):
    """An update was refused before it changed anything (a peer is gone, or the learners
    disagree on which update is next); the group may safely run it again."""


def accelerator_device(framework: str, num_gpus: float) -> str:
    """The device of this actor: its first Ray-assigned GPU, else the CPU.

    Ray sets CUDA_VISIBLE_DEVICES to the GPUs it assigned to the actor, so the GPU's index
    for the framework is its position in that list (as ``ray.train.torch.get_device`` does).
    """
    if num_gpus <= 0:
        return "cpu"
    import ray

    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    if not gpu_ids:
        raise LearnerGroupError(
            f"this learner asked for {num_gpus} GPU(s) but Ray assigned it none"
        )
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
    index = visible.index(gpu_ids[0]) if gpu_ids[0] in visible else int(gpu_ids[0])
    # A ConfigError naming the fix where the actor's framework cannot use the GPU Ray gave
    # it (a CPU-only torch on that node, say), not torch's "not compiled with CUDA".
    device = gpu_device(framework, index, asked=num_gpus, where="a Ray learner actor")
    if framework == "torch":
        import torch

        # The current device is where NCCL and DDP put their buffers and streams.
        torch.cuda.set_device(index)
    return device


def data_parallel_for(framework: str, device: str, *, own_gpu: bool) -> _GroupMember:
    """A learner's place in the group, for ``framework`` on ``device`` (``own_gpu``: the
    learner has a whole GPU to itself, so torch may all-reduce through NCCL)."""
    if framework == "torch":
        return TorchDataParallel(device, own_gpu=own_gpu)
    if framework == "tf":
        return TFDataParallel()
    raise LearnerGroupError(f"no data-parallel learner for framework {framework!r}")


class _GroupMember:
    """A learner's place in the torch.distributed process group, for either framework:
    joining (and re-joining after a restart), the ``agree`` check, and the broken flag;
    and a no-op data-parallel seam that each framework's subclass fills in."""

    _control: Any = None
    _broken = False
    world_size = 1
    allreduce_gradients: Any = None

    def training_forward(self, module_id: str, module: Any) -> Any:
        return module

    def training_with_several_backward_passes(self, module_id: str, module: Any) -> Any:
        return self.training_forward(module_id, module), self.allreduce_gradients

    def module_added(self, module_id: str, module: Any) -> None:
        pass

    def module_removed(self, module_id: str) -> None:
        pass

    def mean_over_learners(self, gradients: list[np.ndarray]) -> list[np.ndarray]:
        """The mean over the learners of each gradient: one all-reduce of one flat buffer,
        on the gloo control group (a host buffer, whatever the collective backend).

        Gloo's all-reduce leaves every rank with the same bits, so every learner applies
        the same update and the copies stay identical.
        """
        if self.world_size == 1 or not gradients:
            return gradients
        import torch
        import torch.distributed as dist

        dtype = np.result_type(*gradients)
        flat = np.concatenate([np.asarray(g, dtype).ravel() for g in gradients])
        # from_numpy shares the buffer: the all-reduce writes its sum into ``flat``.
        dist.all_reduce(torch.from_numpy(flat), op=dist.ReduceOp.SUM, group=self._control)
        flat /= self.world_size
        out, offset = [], 0
        for g in gradients:
            out.append(flat[offset : offset + g.size].reshape(g.shape).astype(g.dtype, copy=False))
            offset += g.size
        return out

    def limit_threads(self, num_threads: int) -> None:
        """Cap the framework's CPU threads at this learner's share of the node."""

    def join_group(self, rank: int, world_size: int, address: str, port: int) -> None:
        try:
            import torch.distributed as dist
        except ImportError as exc:
            raise LearnerGroupError(
                "data-parallel learners form their process group with torch.distributed; "
                "install torch (pip install 'learnerkit[torch]')"
            ) from exc
        if dist.is_initialized():
            dist.destroy_process_group()
        self._control = None
        self._left_group()
        self.world_size = world_size
        self._broken = False
        if world_size == 1:
            return  # a lone learner needs no collective
        backend = self._collective_backend()
        dist.init_process_group(
            backend,
            init_method=f"tcp://{address}:{port}",
            rank=rank,
            world_size=world_size,
            timeout=COLLECTIVE_TIMEOUT,
        )
        self._control = dist.group.WORLD if backend == "gloo" else dist.new_group(backend="gloo")
        self._joined_group()

    def _collective_backend(self) -> str:
        return "gloo"

    def _left_group(self) -> None:
        """Drop whatever belonged to the old group (called before joining a new one)."""

    def _joined_group(self) -> None:
        """Set up what trains through the new group (called once it is formed)."""

    def agree(self, seq: int) -> None:
        """Check, with one tiny all-reduce, that every learner is alive and on update ``seq``;
        raise NotApplied (nothing changed) otherwise."""
        if self.world_size == 1:
            return
        if self._broken:
            raise NotApplied("the process group failed earlier; waiting to be formed again")
        high, low = self._max_reduce([seq, -seq])
        if high != seq or -low != seq:
            self._broken = True
            raise NotApplied(
                f"learners disagree on the update to run: this one is on {seq}, others on "
                f"{-low}..{high}"
            )

    def agree_on_shard(self, ok: bool, signature: int) -> tuple[bool, bool]:
        """After each learner read its own shard (``ShardedBatch``): whether every learner
        read one, and whether all shards have the same modules and rows (``signature``).
        Every learner takes part, so no collective is left waiting whatever the outcome."""
        if self.world_size == 1:
            return ok, True
        failed, high, low = self._max_reduce([0 if ok else 1, signature, -signature])
        return not failed, high == -low

    def _max_reduce(self, values: list[int]) -> list[int]:
        """Element-wise maximum of ``values`` over the learners (the control group)."""
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.int64)
        try:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self._control)
        except RuntimeError as exc:
            self._broken = True
            raise NotApplied(f"a peer learner is unreachable: {exc}") from None
        return [int(v) for v in tensor]

    def mark_broken(self) -> None:
        self._broken = True


class _DDPForward:
    """The training forward pass of one module: its DDP wrapper once the group exists.

    Looked up at each call because re-forming the group replaces the wrapper, while the
    Learner's train step keeps this object.
    """

    def __init__(
        self, owner: TorchDataParallel, module_id: str, module: Any, *, sync: bool = True
    ) -> None:
        self.owner, self.module_id, self.module = owner, module_id, module
        self.sync = sync
        """False: DDP averages nothing during backward (``no_sync``); the step all-reduces."""

    def __call__(self, batch: Any) -> Any:
        wrapped = self.owner._ddp.get(self.module_id)
        if wrapped is None:
            return self.module(batch)
        if not self.sync:
            with wrapped.no_sync():
                return wrapped(batch)
        if self.module_id in self.owner._fresh:
            # DDP's first forward pass is where torch prints its find_unused_parameters
            # warning, from C++ straight to the process's stderr.
            self.owner._fresh.discard(self.module_id)
            with _stderr_without(UNUSED_PARAMETERS_WARNING):
                return wrapped(batch)
        return wrapped(batch)


UNUSED_PARAMETERS_WARNING = b"find_unused_parameters=True was specified in DDP constructor"


@contextlib.contextmanager
def _stderr_without(message: bytes) -> Iterator[None]:
    """Run the block with the process's stderr (file descriptor 2, where torch's C++
    warnings go) captured, then write back every line but those holding ``message``.

    The one C++ warning filtered is DDP's "find_unused_parameters=True ... but did not find
    any unused parameters", once per learner per run (issue 21): it is advice to whoever
    wrote the module, and learnerkit must ask DDP to look for unused parameters because an
    algorithm's loss may leave parts of a module out (BC and the value head), which only the
    first backward pass shows. torch offers no other way to silence one C++ warning.
    """
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(True) if message not in line]
            if kept:
                os.write(2, b"".join(kept))


class TorchDataParallel(_GroupMember):
    """A torch learner's place in the group. On the CPU its train steps average their
    gradients with one all-reduce after backward (``allreduce_gradients``); on a GPU its
    modules train through DDP, which averages them during backward."""

    def __init__(self, device: str, *, own_gpu: bool) -> None:
        import torch

        self.device = torch.device(device)
        self.own_gpu = own_gpu
        self.through_ddp = self.device.type == "cuda"
        if not self.through_ddp:
            self.allreduce_gradients = self.mean_over_learners
        self._modules: dict[str, Any] = {}  # every module the learner trains, by id
        self._ddp: dict[str, Any] = {}  # their DDP wrappers while a group is formed (GPU)
        self._fresh: set[str] = set()  # wrappers that have not run a forward pass yet

    def limit_threads(self, num_threads: int) -> None:
        import torch

        torch.set_num_threads(num_threads)

    def training_forward(self, module_id: str, module: Any) -> Any:
        return _DDPForward(self, module_id, module) if self.through_ddp else module

    def training_with_several_backward_passes(self, module_id: str, module: Any) -> Any:
        if self.through_ddp:
            return _DDPForward(self, module_id, module, sync=False), self.mean_over_learners
        return module, self.mean_over_learners

    def module_added(self, module_id: str, module: Any) -> None:
        self._modules[module_id] = module
        # Joining is a collective (every learner checks the shapes and takes rank 0's
        # weights): the group calls add_module on every learner at once.
        if self.world_size > 1 and self._control is not None:
            self._join_module(module_id)

    def module_removed(self, module_id: str) -> None:
        self._modules.pop(module_id, None)
        self._ddp.pop(module_id, None)

    def _collective_backend(self) -> str:
        # NCCL needs one GPU per rank; learners sharing a GPU all-reduce through gloo.
        return "nccl" if self.device.type == "cuda" and self.own_gpu else "gloo"

    def _left_group(self) -> None:
        self._ddp = {}

    def _joined_group(self) -> None:
        for module_id in self._modules:
            self._join_module(module_id)

    def _join_module(self, module_id: str) -> None:
        module = self._modules[module_id]
        if not any(p.requires_grad for p in module.parameters()):
            return
        if self.through_ddp:
            self._wrap(module_id, module)
        else:
            self._take_rank_zeros_weights(module_id, module)

    def _take_rank_zeros_weights(self, module_id: str, module: Any) -> None:
        """Check that every learner built ``module`` with the same shapes, then copy rank
        0's parameters and buffers into it: what DDP does when it wraps a module."""
        import torch
        import torch.distributed as dist

        tensors = [*module.parameters(), *module.buffers()]
        shapes = repr([(tuple(t.shape), str(t.dtype)) for t in tensors]).encode()
        signature = zlib.crc32(shapes)
        high, low = self._max_reduce([signature, -signature])
        if high != -low:
            raise LearnerGroupError(
                f"the learners built module {module_id!r} with different parameter shapes or "
                "dtypes; a module must be built alike from its spec on every learner (its "
                "model_config, not the process, decides its layers)"
            )
        with torch.no_grad():
            for tensor in tensors:
                dist.broadcast(tensor.detach(), src=0, group=self._control)

    def _wrap(self, module_id: str, module: Any) -> None:
        from torch.nn.parallel import DistributedDataParallel

        # find_unused_parameters: an algorithm's loss may leave parts of a module out
        # (BC never touches the value head); DDP would wait for their gradients.
        self._ddp[module_id] = DistributedDataParallel(
            module,
            device_ids=[self.device.index],
            find_unused_parameters=True,
        )
        self._fresh.add(module_id)


class TFDataParallel(_GroupMember):
    """A TensorFlow learner's place in the group: its train steps average their gradients
    over the group with one gloo all-reduce per step, before clipping and applying them."""

    def limit_threads(self, num_threads: int) -> None:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(num_threads)
            tf.config.threading.set_inter_op_parallelism_threads(num_threads)
        except RuntimeError:
            pass  # TensorFlow already started in this process: its thread pools are fixed

    def allreduce_gradients(self, gradients: list[np.ndarray]) -> list[np.ndarray]:
        """The mean over the learners of each gradient (``mean_over_learners``)."""
        return self.mean_over_learners(gradients)
