"""What turns a Learner into one of several data-parallel copies inside a Ray actor.

``data_parallel_class(cls, framework)`` adds a framework's mixin to the Learner class (the
user's subclass included), giving it ``join_group`` (form or re-form the process group),
``agree`` (the check every update starts with) and a distributed training forward pass.

Torch: ``torch.distributed`` with gloo on CPU and NCCL when each learner has a GPU of its
own; the modules train through DistributedDataParallel, which all-reduces (averages) the
gradients during the backward pass. The ``agree`` check always runs on a gloo group: gloo
fails within milliseconds when a peer process has died ("Connection closed by peer"),
where NCCL would wait until its timeout.
"""

from __future__ import annotations

import datetime
import os
from functools import cache
from typing import Any

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
    if framework == "torch":
        import torch

        torch.cuda.set_device(index)
        return f"cuda:{index}"
    return f"/GPU:{index}"


@cache
def data_parallel_class(cls: type, framework: str) -> type:
    """``cls`` with the data-parallel mixin of ``framework`` (cached: one class per pair)."""
    if framework != "torch":
        raise LearnerGroupError(f"no data-parallel learner for framework {framework!r} yet")
    return type(f"DataParallel{cls.__name__}", (TorchDataParallel, cls), {"__module__": __name__})


class _DDPForward:
    """The training forward pass of one module: its DDP wrapper once the group exists.

    Looked up at each call because re-forming the group replaces the wrapper, while the
    Learner's train step keeps this object.
    """

    def __init__(self, learner: TorchDataParallel, module_id: str) -> None:
        self.learner, self.module_id = learner, module_id

    def __call__(self, batch: Any) -> Any:
        wrapped = self.learner._ddp.get(self.module_id)
        return (wrapped or self.learner.module[self.module_id])(batch)


class TorchDataParallel:
    """Mixin for a torch Learner: joins a torch.distributed group and trains through DDP."""

    _ddp: dict[str, Any]
    _control: Any = None
    _broken = False
    world_size = 1

    def limit_threads(self, num_threads: int) -> None:
        import torch

        torch.set_num_threads(num_threads)

    def _training_forward(self, module_id: str) -> Any:
        if not hasattr(self, "_ddp"):
            self._ddp = {}
        return _DDPForward(self, module_id)

    def join_group(self, rank: int, world_size: int, address: str, port: int) -> None:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        if dist.is_initialized():
            dist.destroy_process_group()
        self._ddp = {}
        self.world_size = world_size
        self._broken = False
        if world_size == 1:
            return  # a lone learner needs no collective (nor DDP's bucket copies)
        cuda = self.backend.device.type == "cuda"
        # NCCL needs one GPU per rank; learners sharing a GPU all-reduce through gloo.
        own_gpu = cuda and self.spec.scaling.num_gpus_per_learner >= 1
        dist.init_process_group(
            "nccl" if own_gpu else "gloo",
            init_method=f"tcp://{address}:{port}",
            rank=rank,
            world_size=world_size,
            timeout=COLLECTIVE_TIMEOUT,
        )
        self._control = dist.new_group(backend="gloo") if own_gpu else dist.group.WORLD
        for module_id, module in self.module.items():
            if not any(p.requires_grad for p in module.parameters()):
                continue
            # find_unused_parameters: an algorithm's loss may leave parts of a module out
            # (BC never touches the value head); DDP would wait for their gradients.
            self._ddp[module_id] = DistributedDataParallel(
                module,
                device_ids=[self.backend.device.index] if cuda else None,
                find_unused_parameters=True,
            )
        self._broken = False

    def agree(self, seq: int) -> None:
        """Check, with one tiny all-reduce, that every learner is alive and on update ``seq``;
        raise NotApplied (nothing changed) otherwise."""
        if self.world_size == 1:
            return
        if self._broken:
            raise NotApplied("the process group failed earlier; waiting to be formed again")
        import torch
        import torch.distributed as dist

        both = torch.tensor([seq, -seq], dtype=torch.int64)
        try:
            dist.all_reduce(both, op=dist.ReduceOp.MAX, group=self._control)
        except RuntimeError as exc:
            self._broken = True
            raise NotApplied(f"a peer learner is unreachable: {exc}") from None
        if int(both[0]) != seq or -int(both[1]) != seq:
            self._broken = True
            raise NotApplied(
                f"learners disagree on the update to run: this one is on {seq}, others on "
                f"{-int(both[1])}..{int(both[0])}"
            )

    def mark_broken(self) -> None:
        self._broken = True
