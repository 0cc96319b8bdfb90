"""Checkpoint files: one ``.npz`` of arrays plus a JSON tree, written atomically.

No pickle: a checkpoint holds only numpy arrays and JSON values, so loading one runs no code.
The file is written to a temporary name and renamed over the old one, so a crash mid-save
leaves the previous checkpoint intact; the temporary file of a save whose process was killed
is removed by the next save or load in that folder (issue 21).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
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


def _temp_prefix(file: str) -> str:
    return f".{file}-"


def _owner_alive(name: str, file: str) -> bool:
    """Whether the save that made temporary file ``name`` may still be running: its name
    holds the saving process's id (``.learner_state.npz-<pid>-<random>.tmp``)."""
    pid_text = name[len(_temp_prefix(file)) :].partition("-")[0]
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False  # a name from before pids were recorded, or this process's own
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True


def remove_stale_temporaries(directory: str | os.PathLike, file: str = STATE_FILE) -> list[Path]:
    """Remove the temporary files of saves of ``file`` in ``directory`` whose process died
    (killed mid-save, the ``except`` that cleans up never ran); returns what was removed.
    A save still running in another live process keeps its file."""
    removed = []
    try:
        candidates = list(Path(directory).glob(f"{_temp_prefix(file)}*.tmp"))
    except OSError:
        return removed
    for path in candidates:
        if not _owner_alive(path.name, file):
            try:
                path.unlink()
            except OSError:
                continue  # read-only folder, or another cleaner was first
            removed.append(path)
    return removed


def save(directory: str | os.PathLike, state: Mapping[str, Any], *, file: str = STATE_FILE) -> Path:
    """Write ``state`` (nested dicts/lists of numpy arrays and JSON values) atomically, as
    ``directory/file``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory, file)
    arrays: dict[str, np.ndarray] = {}
    tree = _split({"format_version": FORMAT_VERSION, **state}, arrays)
    arrays[_TREE_KEY] = np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8)
    target = directory / file
    prefix = f"{_temp_prefix(file)}{os.getpid()}-"
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
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
    remove_stale_temporaries(directory, file)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {directory}: {file} is missing (was it written by save_state?)"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        tree = json.loads(arrays.pop(_TREE_KEY).tobytes().decode())
        state = _join(tree, arrays)
    except MemoryError:
        raise
    except Exception as exc:
        # A flipped byte reaches whichever reader parses it first: the zip reader
        # (BadZipFile, NotImplementedError "compression method", RuntimeError "encrypted"),
        # zlib, numpy's header parser or JSON (issue 21). All mean the same thing.
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {exc}); "
            "load an earlier checkpoint or save a new one"
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is corrupt: it holds no mapping of state")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {state.get('format_version')!r}; this "
            f"learnerkit reads version {FORMAT_VERSION}"
        )
    return state


def sorted_names(names: Iterable[Any]) -> list[Any]:
    """Names from a given state, sorted (for a message, or to compare with a learner's own)
    by ``str``: a corrupt state's names may mix strings and others, which ``sorted`` alone
    refuses with a TypeError."""
    return sorted(names, key=str)


def check_same_shapes(own: Mapping[str, Any], given: Mapping[str, Any], where: str) -> None:
    """Raise a CheckpointError unless ``given`` has exactly ``own``'s names and shapes
    (``own``'s values: arrays, or their shapes)."""
    if not isinstance(given, Mapping):
        raise CheckpointError(
            f"weights for {where} are a {type(given).__name__}, not a mapping of arrays by name"
        )
    missing, extra = sorted(set(own) - set(given)), sorted_names(set(given) - set(own))
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


def check_arrays(
    own: Mapping[str, tuple[tuple[int, ...], np.dtype]], given: Any, where: str
) -> None:
    """Raise a CheckpointError unless ``given`` has exactly ``own``'s names, and for each a
    value of its shape and of a dtype castable to its own (``own``: ``(shape, dtype)`` by
    name): what ``check_same_shapes`` checks, and each value as ``check_array_values``
    checks it."""
    check_same_shapes({k: shape for k, (shape, _) in own.items()}, given, where)
    for name, (_, dtype) in own.items():
        check_array_values(given[name], dtype, f"{where}: {name!r}")


def check_array_values(value: Any, needed: np.dtype, where: str) -> None:
    """Raise a CheckpointError unless ``value`` is numeric, casts to ``needed`` within its
    kind (float64 to float32 is fine; a string, an object or float to int is not), and holds
    no NaN: weights or optimizer moments of a run that diverged, which every later step would
    only spread (the loss goes NaN and no update applies). An infinity passes: a module may
    keep one on purpose (a mask's -inf)."""
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise CheckpointError(f"{where} is not an array ({exc})") from exc
    dtype = array.dtype
    if dtype.kind not in "biuf" or not np.can_cast(dtype, needed, "same_kind"):
        raise CheckpointError(
            f"{where} has dtype {dtype}; this learner needs {needed} (was the checkpoint "
            "edited, or written by another version?)"
        )
    if dtype.kind == "f" and np.isnan(array.min(initial=0.0)):  # NaN propagates through min
        count = int(np.isnan(array).sum())
        raise CheckpointError(
            f"{where} holds NaN ({count} of {array.size} values), as a diverged run's state "
            "does: nothing was loaded (load an earlier checkpoint, or fix the values)"
        )
