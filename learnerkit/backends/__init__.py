"""Backends: everything framework-specific a Learner needs, one package per framework.

Public: ``Backend`` (the interface both frameworks meet, a Protocol), ``make_backend`` (one
for a framework, as a Learner builds it; its ``ops`` are the array functions losses use),
the acting code written once over it (``policy_fn``, ``value_fn``: a module's actions and
values for numpy observations), ``visible_gpu_count``, and in ``torch/`` and ``tf/`` the
default actor-critic (``modules``) and the conv encoders (``encoders``). Internal: ``_base``
declares the interface; ``torch/`` and ``tf/`` each hold ``_ops`` and ``_backend`` (module
building, the compiled minibatch step, state as numpy). A backend never imports Ray, a
training loop, the sampling code or the Learner; the framework itself is imported only
when ``make_backend`` is called.
"""

from __future__ import annotations

from learnerkit.backends._base import Backend, policy_fn, value_fn
from learnerkit.backends._devices import visible_gpu_count

__all__ = ["Backend", "make_backend", "policy_fn", "value_fn", "visible_gpu_count"]


def make_backend(framework: str, device: str | None = None) -> Backend:
    """The backend for ``framework``; imports the framework only now."""
    if framework == "torch":
        from learnerkit.backends.torch._backend import TorchBackend

        return TorchBackend(device)
    from learnerkit.backends.tf._backend import TFBackend

    return TFBackend(device)
