"""Fails at import: its dependency is not installed."""

import learnerkit_loop_dependency_that_is_not_installed  # noqa: F401
