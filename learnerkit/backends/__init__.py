"""Backends: everything framework-specific a Learner needs, one package per framework.

Public: ``Backend`` (the interface both frameworks meet, a Protocol), ``make_backend`` (one
for a framework, as a Learner builds it) and the encoders of ``torch.encoders`` and
``tf.encoders``. Internal: ``_base`` declares the interface and the acting code written once
over it (``policy_fn``, ``value_fn``). ``torch/`` and ``tf/`` each hold ``ops`` (the array
functions losses use), ``modules`` (the default actor-critic) and ``backend`` (module
building, the compiled minibatch step, state as numpy). A backend never imports Ray, a
training loop, the sampling code or the Learner; the framework itself is imported only
when ``make_backend`` is called.
"""

from __future__ import annotations

from learnerkit.backends._base import Backend

# Internal (not in __all__), importable here until the tests that use them act through a
# public door.
from learnerkit.backends._base import policy_fn as policy_fn
from learnerkit.backends._base import value_fn as value_fn

__all__ = ["Backend", "make_backend"]


def make_backend(framework: str, device: str | None = None) -> Backend:
    """The backend for ``framework``; imports the framework only now."""
    if framework == "torch":
        from learnerkit.backends.torch.backend import TorchBackend

        return TorchBackend(device)
    from learnerkit.backends.tf.backend import TFBackend

    return TFBackend(device)
