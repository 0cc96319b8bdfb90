"""The shims at the old paths of ``learnerkit.api.MOVED_MODULES`` (issue 19): since 0.2
every module outside ``PUBLIC_MODULES`` is private by name (``learnerkit._learner``), and
the modules plugins were most likely to import from keep a module at their old path whose
``__getattr__`` comes from here. Each name read from one is looked up at its new place,
with a DeprecationWarning naming where to import it from (``learnerkit`` for the public
names); the shims go in 0.3.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

from learnerkit.api import MOVED_MODULES
from learnerkit.errors import LearnerkitDeprecationWarning

__all__ = ["forward_to_new_module"]

# Names that had already moved on from an old path before it became private (issue 17).
_MOVED_FURTHER = {"learnerkit.specs": frozenset({"LearnerSpec"})}


def forward_to_new_module(old: str) -> Callable[[str], Any]:
    """The module ``__getattr__`` of the shim at ``old``: a name the new module has is
    returned from ``learnerkit`` when public there, else from the new module (internal: it
    may change in any release), each with a warning; any other name (or a ``_name``) is an
    AttributeError, as for a module without it."""
    new = MOVED_MODULES[old]

    def __getattr__(name: str) -> Any:
        module = importlib.import_module(new)
        further = name in _MOVED_FURTHER.get(old, ())
        if name.startswith("_") or not (further or hasattr(module, name)):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        front = importlib.import_module("learnerkit")
        if name in front.__all__:
            value, advice = getattr(front, name), f"import {name} from learnerkit"
        else:
            value = getattr(module, name)
            advice = f"it is internal now ({new}.{name}) and may change in any release"
        warnings.warn(
            f"{old}.{name} is deprecated: {advice} ({old} is private since 0.2 and goes in 0.3)",
            LearnerkitDeprecationWarning,
            stacklevel=2,
        )
        return value

    return __getattr__
