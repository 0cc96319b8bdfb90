"""The form an algorithm needs of its own batch columns (issue 21): a dtype kind and a
per-row shape, declared as ``Algorithm(column_specs={name: ColumnSpec(...)})`` and checked
with the host's columns before any weight changes.

Without it, a column of the wrong form reaches the loss: an ``action_dist_inputs`` with a
trailing extra axis fails deep in ``learnerkit.distributions`` with a raw ``ValueError``,
an integer ``action_logp`` in TensorFlow's arithmetic with a raw ``TypeError``. Declared,
it is a BatchError naming the algorithm, the module, the column and the form expected.

Metadata only, no numpy: plugins build these when ``learnerkit list-plugins`` loads them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from learnerkit.errors import BatchError

__all__ = ["ColumnSpec", "check_column_specs"]

DTYPE_KINDS = {"float": "f", "int": "iu", "number": "fiu", "bool": "b"}
"""What each ``ColumnSpec.dtype`` allows, as numpy dtype kinds."""
SIZES = ("obs", "action", "dist_inputs")
"""Names a ``ColumnSpec.shape`` may hold in place of a size; see ``ColumnSpec.shape``."""


def _check_dtype(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value not in DTYPE_KINDS:
        raise ValueError(f"ColumnSpec.dtype must be one of {sorted(DTYPE_KINDS)}, not {value!r}")


def _check_shape(instance: Any, attribute: attrs.Attribute, value: tuple) -> None:
    for size in value:
        if not (isinstance(size, str) and size in SIZES) and not (
            isinstance(size, int) and size >= 0
        ):
            raise ValueError(
                f"ColumnSpec.shape holds sizes (ints >= 0) or names among {SIZES}, not {size!r}"
            )


@attrs.frozen
class ColumnSpec:
    """The form of one batch column: what each row holds."""

    dtype: str = attrs.field(default="float", validator=_check_dtype)
    """``"float"``, ``"int"``, ``"number"`` (int or float) or ``"bool"``."""
    shape: tuple[int | str, ...] = attrs.field(default=(), converter=tuple, validator=_check_shape)
    """Each row's shape (``()``: a scalar per row). A name stands for sizes taken from the
    module: ``"obs"`` the observation space's shape, ``"action"`` the action space's, and
    ``"dist_inputs"`` the size of the default modules' distribution inputs (``n`` for a
    Discrete space, ``2 * D`` for a Box; not checked for a custom ``module_class``)."""

    def row_shape(self, spec: Any) -> tuple[int | None, ...]:
        """The shape for module spec ``spec`` (``None``: a size not checked)."""
        out: list[int | None] = []
        for size in self.shape:
            if size == "obs":
                out += list(spec.observation_space.shape)
            elif size == "action":
                out += list(getattr(spec.action_space, "shape", ()) or ())
            elif size == "dist_inputs":
                out.append(_dist_inputs(spec))
            else:
                out.append(size)
        return tuple(out)


def _dist_inputs(spec: Any) -> int | None:
    if spec.module_class is not None:
        return None  # a module of its own may parametrize its distribution as it likes
    space = spec.action_space
    if hasattr(space, "n"):
        return int(space.n)
    return 2 * int(math.prod(space.shape))


def _fits(shape: tuple[int, ...], needed: tuple[int | None, ...]) -> bool:
    if len(shape) != len(needed):
        return False
    return all(n is None or s == n for s, n in zip(shape, needed, strict=True))


def check_column_specs(
    columns: Mapping[str, Any],
    specs: Mapping[str, ColumnSpec],
    *,
    module_spec: Any,
    module_id: str,
    algorithm: str,
) -> None:
    """Raise a BatchError naming the algorithm, module and column unless every column of
    ``columns`` (arrays, by name) that ``specs`` declares has the declared form. Columns
    the batch lacks are for ``required_columns`` to refuse."""
    for name, spec in specs.items():
        array = columns.get(name)
        if array is None:
            continue
        needed = spec.row_shape(module_spec)
        kind_ok = array.dtype.kind in DTYPE_KINDS[spec.dtype]
        if kind_ok and _fits(tuple(array.shape[1:]), needed):
            continue
        shown = tuple("?" if n is None else n for n in needed)
        wanted = f"shape {shown}" if needed else "scalar"
        raise BatchError(
            f"batch for module {module_id!r}: column {name!r} has rows of shape "
            f"{tuple(array.shape[1:])} and dtype {array.dtype}; algorithm {algorithm!r} "
            f"needs {spec.dtype} rows of {wanted} (as its plugin declares in column_specs)"
        )
