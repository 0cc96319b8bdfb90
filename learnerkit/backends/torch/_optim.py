"""torch's Adam and SGD as ``ops.adam`` and ``ops.sgd`` build them: the same classes and
arithmetic, stepped without importing ``torch._dynamo``.

``torch.optim`` wraps ``step`` (and ``add_param_group``, ``state_dict``, ...) in helpers that
import ``torch._dynamo`` on first call, for graph breaks that matter only inside
``torch.compile``. That import is 0.8 s and ~35 MB of a CPU training process (issue 10);
learnerkit never compiles an optimizer step, so these subclasses call the wrapped functions
directly. A plugin that compiles its step can return ``torch.optim`` optimizers from
``configure_optimizers`` instead.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

# Optimizer methods torch wraps in ``torch._disable_dynamo`` (imports dynamo when called).
# Private names differ between torch releases (the graph-capture check was renamed from
# ``_cuda_...`` to ``_accelerator_...``): those a release lacks are skipped.
_DYNAMO_WRAPPED = (
    "add_param_group",
    "state_dict",
    "load_state_dict",
    "zero_grad",
    "_cuda_graph_capture_health_check",
    "_accelerator_graph_capture_health_check",
)


def _unwrapped(function: Any) -> Any:
    # Every wrapper off: Optimizer.__init__ may already have wrapped torch's class's step
    # in its profiling hook when this module is imported.
    return inspect.unwrap(function)


def _without_dynamo(optimizer_class: type[torch.optim.Optimizer]) -> type:
    raw_step = _unwrapped(optimizer_class.step)

    def step(self, closure=None):
        # What torch's step wrapper does outside torch.compile: grad mode per
        # ``differentiable``, restored afterwards.
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return raw_step(self, closure)

    namespace = {
        name: _unwrapped(getattr(torch.optim.Optimizer, name))
        for name in _DYNAMO_WRAPPED
        if hasattr(torch.optim.Optimizer, name)
    }
    name = optimizer_class.__name__
    namespace.update(
        step=step,
        __module__=__name__,
        __qualname__=name,
        __doc__=f"``torch.optim.{name}``, stepped without importing ``torch._dynamo``.",
    )
    return type(name, (optimizer_class,), namespace)


Adam = _without_dynamo(torch.optim.Adam)
SGD = _without_dynamo(torch.optim.SGD)
