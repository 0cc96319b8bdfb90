"""Backends: everything framework-specific a Learner needs, one package per framework.

``base`` declares the interface (``Backend``, a Protocol) and the acting code written once
over it (``policy_fn``, ``value_fn``). ``torch/`` and ``tf/`` each hold ``ops`` (the array
functions losses use), ``modules`` (the default actor-critic) and ``backend`` (module
building, the compiled minibatch step, state as numpy). A backend never imports Ray, a
training loop, the sampling code or the Learner; the framework itself is imported only
when ``make_backend`` is called.
"""

from __future__ import annotations

from learnerkit.backends.base import Backend, policy_fn, value_fn

__all__ = ["Backend", "make_backend", "policy_fn", "value_fn"]


def make_backend(framework: str, device: str | None = None) -> Backend:
    """The backend for ``framework``; imports the framework only now."""
    if framework == "torch":
        from learnerkit.backends.torch.backend import TorchBackend

        return TorchBackend(device)
    from learnerkit.backends.tf.backend import TFBackend

    return TFBackend(device)
