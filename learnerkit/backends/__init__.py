"""Backends: everything framework-specific a Learner needs, one package per framework.

``torch/`` and ``tf/`` each hold ``ops`` (the array functions losses use), ``modules`` (the
default actor-critic) and ``backend`` (module building, the compiled minibatch step,
acting, state as numpy). A backend never imports Ray, a training loop or the CLI; the
framework itself is imported only when ``make_backend`` is called.
"""

from __future__ import annotations

from typing import Any


def make_backend(framework: str, device: str | None = None) -> Any:
    """The backend for ``framework``; imports the framework only now."""
    if framework == "torch":
        from learnerkit.backends.torch.backend import TorchBackend

        return TorchBackend(device)
    from learnerkit.backends.tf.backend import TFBackend

    return TFBackend(device)
