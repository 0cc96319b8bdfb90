"""Helpers for tests and notebooks that register algorithms or training loops in code.

``reset_plugins()`` gives fresh plugin registries: algorithms and loops registered with
``learnerkit.register_algorithm`` / ``register_training_loop`` are forgotten, and plugins
already loaded from entry points are read again on the next lookup (after ``sys.path``
changed, say). A test suite
calls it around each test, as learnerkit's own ``tests/conftest.py`` does.
"""

from __future__ import annotations

from learnerkit import _plugins, training_loops

__all__ = ["reset_plugins"]


def reset_plugins() -> None:
    """Forget algorithms and loops registered in code and every plugin loaded so far."""
    _plugins.reset_registry()
    training_loops.reset_registry()
