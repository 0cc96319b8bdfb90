"""Deprecated, kept for one release: ``learnerkit.learner_spec`` is internal since 0.2
(``learnerkit._learner_spec``); its public names are imported from ``learnerkit``."""

from learnerkit._moved import forward_to_new_module

__getattr__ = forward_to_new_module(__name__)
