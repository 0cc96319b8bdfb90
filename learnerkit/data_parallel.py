"""The seam through which data-parallel training extends a Learner (public: the type of
``Learner(..., data_parallel=...)``).

A Learner trains alone by default. One of several data-parallel copies (the Ray learner
actors of ``learnerkit._distributed``) is the same Learner, given a ``DataParallel`` object:
``Learner(spec, device=..., data_parallel=...)``. The Learner asks it for two things and
tells it two:

- ``training_forward(module_id, module)``: what a module's train step runs its forward pass
  through (torch on GPUs: the module's DistributedDataParallel wrapper, which averages the
  gradients over the learners during backward);
- ``allreduce_gradients``: None, or the function each train step hands its gradients to, as
  numpy arrays, for their mean over the learners, after backward and before the finiteness
  check and clipping, so every learner skips, clips and applies alike (TensorFlow, and
  torch on the CPU). TensorFlow's step passes one array per parameter with a gradient (its
  compiled step reaches the same ones on every learner). torch's passes one per trainable
  parameter, zeros where this learner's loss did not reach it, and last a float32 array
  of one flag per parameter, 1 where it did: reduced element-wise like the others (a mean
  or a sum), the flags say which parameters any learner's loss reached, and the others
  keep no gradient, as on a lone learner;
- ``training_with_several_backward_passes(module_id, module)``: the forward pass and the
  all-reduce of a module with several optimizers, whose step may run one backward pass per
  optimizer's loss (``OPTIMIZER_LOSSES``): a forward pass that averages nothing during
  backward (torch's DDP expects one backward pass per forward pass) and the all-reduce the
  step calls after its backward passes instead;
- ``module_added(module_id, module)`` and ``module_removed(module_id)``: every module the
  Learner builds (``build``, ``add_module``) and drops (``remove_module``). The group calls
  ``add_module`` on every learner at once, so ``module_added`` may run a collective.

That is all it sees of the Learner: it never reads the Learner's state, and the Learner
never asks it about process groups. ``SingleProcess`` is the default and changes nothing;
``learnerkit._distributed.collectives`` implements the seam for torch and TensorFlow,
together with the process group's membership (joining it, the ``agree`` check).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from learnerkit.backends._base import AllReduce, Forward

__all__ = ["DataParallel", "SingleProcess"]


class DataParallel(Protocol):
    """What a Learner asks of, and tells, the data-parallel training it is part of."""

    allreduce_gradients: AllReduce | None
    """The gradients' mean over the learners (numpy in, numpy out), or None when the
    training forward pass averages them already (DDP, on GPUs) or the learner trains alone."""

    def training_forward(self, module_id: str, module: Any) -> Forward:
        """The callable the train step of ``module`` runs its forward pass through."""

    def training_with_several_backward_passes(
        self, module_id: str, module: Any
    ) -> tuple[Forward, AllReduce | None]:
        """For a module with several optimizers: the forward pass its train step runs, which
        averages no gradient during backward, and the gradients' mean over the learners
        (numpy in, numpy out) the step calls after backward, or None for a lone learner."""

    def module_added(self, module_id: str, module: Any) -> None:
        """``module`` was built (at ``build()`` or by ``add_module``) and trains from now."""

    def module_removed(self, module_id: str) -> None:
        """``module_id`` is dropped (or its ``add_module`` failed): forget it."""


class SingleProcess:
    """A Learner training alone: its modules' own forward passes, no all-reduce."""

    allreduce_gradients = None

    def training_forward(self, module_id: str, module: Any) -> Forward:
        return module

    def training_with_several_backward_passes(
        self, module_id: str, module: Any
    ) -> tuple[Forward, AllReduce | None]:
        return module, self.allreduce_gradients

    def module_added(self, module_id: str, module: Any) -> None:
        pass

    def module_removed(self, module_id: str) -> None:
        pass
