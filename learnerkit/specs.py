"""Deprecated, kept for one release: ``learnerkit.specs`` is internal since 0.2
(``learnerkit._specs``); its public names are imported from ``learnerkit``."""

from learnerkit._moved import forward_to_new_module

__getattr__ = forward_to_new_module(__name__)
