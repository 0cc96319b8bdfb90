"""Classes named by import path, ``"package.module:QualName"``: how a light declaration (an
algorithm's default module classes, a module spec sent to env runners) names code whose
import is heavy (a framework), to be imported only where and when it is used."""

from __future__ import annotations

import importlib
from typing import Any

from learnerkit.errors import ConfigError

__all__ = ["is_import_path", "resolve"]


def is_import_path(value: Any) -> bool:
    """Whether ``value`` reads as ``"package.module:QualName"``."""
    if not isinstance(value, str):
        return False
    module, sep, qualname = value.partition(":")
    return bool(sep and module and qualname) and all(
        part.isidentifier() for part in (*module.split("."), *qualname.split("."))
    )


def resolve(value: Any, what: str) -> Any:
    """``value`` itself, or the object its import path names, imported now; a ConfigError
    naming ``what`` and the path if the import fails."""
    if not isinstance(value, str):
        return value
    module, _, qualname = value.partition(":")
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"{what} {value!r} cannot be imported: {type(exc).__name__}: {exc} (install the "
            "package that provides it, or correct the 'package.module:QualName' path)"
        ) from exc
    return found
