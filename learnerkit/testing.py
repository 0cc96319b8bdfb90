"""Helpers for tests and notebooks that register algorithms in code.

``reset_plugins()`` gives a fresh plugin registry: algorithms registered with
``learnerkit.register_algorithm`` are forgotten, and plugins already loaded from entry
points are read again on the next lookup (after ``sys.path`` changed, say). A test suite
calls it around each test, as learnerkit's own ``tests/conftest.py`` does.
"""

from __future__ import annotations

from learnerkit import _plugins

__all__ = ["reset_plugins"]


def reset_plugins() -> None:
    """Forget algorithms registered in code and every plugin loaded so far."""
    _plugins.reset_registry()
