"""Checkpoint files: one ``.npz`` of arrays plus a JSON tree, written atomically.

No pickle: a checkpoint holds only numpy arrays and JSON values, so loading one runs no code.
The file is written to a temporary name and renamed over the old one, so a crash mid-save
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from learnerkit.errors import CheckpointError

STATE_FILE = "learner_state.npz"
FORMAT_VERSION = 1
_ARRAY_KEY = "__ndarray__"
_TREE_KEY = "__tree__"


def _split(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(tree, Mapping):
        return {str(k): _split(v, arrays) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_split(v, arrays) for v in tree]
    if isinstance(tree, np.ndarray):
        name = f"a{len(arrays)}"
        arrays[name] = tree
        return {_ARRAY_KEY: name}
    if isinstance(tree, np.generic):
        return tree.item()
    return tree


def _join(tree: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {_ARRAY_KEY}:
            return arrays[tree[_ARRAY_KEY]]
        return {k: _join(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join(v, arrays) for v in tree]
    return tree


def holds_arrays(tree: Any) -> bool:
    """Whether a nested dict/list holds a numpy array anywhere."""
    if isinstance(tree, Mapping):
        return any(holds_arrays(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return any(holds_arrays(v) for v in tree)
    return isinstance(tree, np.ndarray)


def save(directory: str | os.PathLike, state: Mapping[str, Any], *, file: str = STATE_FILE) -> Path:
    """Write ``state`` (nested dicts/lists of numpy arrays and JSON values) atomically, as
    ``directory/file``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    tree = _split({"format_version": FORMAT_VERSION, **state}, arrays)
    arrays[_TREE_KEY] = np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8)
    target = directory / file
    fd, tmp = tempfile.mkstemp(prefix=f".{file}-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_json_atomic(path: str | os.PathLike, value: Any) -> None:
    """Write ``value`` as JSON to ``path`` through a temporary file and a rename, so readers
    never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)


def load(directory: str | os.PathLike, *, file: str = STATE_FILE) -> dict[str, Any]:
    """Read a checkpoint written by ``save``; a missing or corrupt one is a CheckpointError."""
    path = Path(directory) / file
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {directory}: {file} is missing (was it written by save_state?)"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        tree = json.loads(arrays.pop(_TREE_KEY).tobytes().decode())
        state = _join(tree, arrays)
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {exc}") from exc
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {state.get('format_version')!r}; this "
            f"learnerkit reads version {FORMAT_VERSION}"
        )
    return state


def check_same_shapes(own: Mapping[str, Any], given: Mapping[str, Any], where: str) -> None:
    """Raise a CheckpointError unless ``given`` has exactly ``own``'s names and shapes
    (``own``'s values: arrays, or their shapes)."""
    missing, extra = sorted(set(own) - set(given)), sorted(set(given) - set(own))
    if missing or extra:
        raise CheckpointError(
            f"weights for {where} do not fit this module: missing {missing}, unexpected {extra}"
        )
    for name, value in own.items():
        shape, needed = tuple(np.shape(given[name])), tuple(getattr(value, "shape", value))
        if needed != shape:
            raise CheckpointError(
                f"weights for {where}: {name!r} has shape {shape}, this module needs "
                f"{needed} (was the checkpoint made with another model_config or "
                "space?)"
            )
