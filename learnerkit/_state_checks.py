"""The check a learner state passes before any of it is loaded: every entry a Learner
reads, against the Learner's own table of module records and its backend.

A state is applied all or nothing (issue 21): ``Learner.set_state`` first runs
``check_state``, which reads everything and changes nothing, and only then applies the
state. Each refusal is a CheckpointError naming the entry and what this learner needs.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

from learnerkit._checkpoint import sorted_names
from learnerkit._defaults import DEFAULT_OPTIMIZER
from learnerkit.errors import CheckpointError

if TYPE_CHECKING:
    from learnerkit._learner_modules import ModuleRecord
    from learnerkit._learner_spec import LearnerSpec
    from learnerkit._plugins import Algorithm
    from learnerkit.backends._base import Backend

Table = Mapping[str, "ModuleRecord"]
NAMED = "named"
REQUIRED = ("algorithm", "framework", "modules", "optimizers", "algorithm_state")


def check_state(
    table: Table,
    backend: Backend,
    algorithm: Algorithm,
    spec: LearnerSpec,
    state: Any,
    source: str,
) -> dict[str, Mapping[str, Any]]:
    """Refuse (CheckpointError) a state that does not fit, changing nothing; return its
    optimizer states by module id and name."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source} is a {type(state).__name__}, not a learner state")
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise CheckpointError(
            f"{source} lacks {missing}: it is not a learner state as get_state() returns and "
            "save_state() writes (edited, or written by another program?)"
        )
    for key, mine in (("algorithm", algorithm.name), ("framework", spec.framework)):
        if not _is_string(state.get(key), mine):
            raise CheckpointError(
                f"{source} was written by {key} {state.get(key)!r}; this learner runs {mine!r}"
            )
    modules = _mapping(state, "modules", source)
    check_module_ids(table, modules, source)
    for module_id, weights in modules.items():
        backend.check_module_state(
            table[module_id].module, weights, f"module {module_id!r} in {source}"
        )
    optimizers = named_optimizer_states(table, state, source)
    for module_id, by_name in optimizers.items():
        for name, opt_state in by_name.items():
            backend.check_optimizer_state(
                table[module_id].optimizers[name],
                opt_state,
                f"module {module_id!r} (optimizer {name!r}) in {source}",
            )
    _check_algorithm_state(table, algorithm, state, source)
    if "num_updates" in state:  # absent from checkpoints written before update counting
        _check_counts(table, state["num_updates"], f"{source} (num_updates)")
    if algorithm.target_network:
        _check_targets(table, backend, state.get("target_networks"), source)
    if state.get("shuffle_generator") is not None:  # absent from checkpoints before issue 21
        backend.set_generator_state(backend.make_generator(0), state["shuffle_generator"], source)
    if state.get("loss_generator") is not None:  # absent from checkpoints before issue 20
        scratch = backend.make_loss_generator(0)
        backend.set_loss_generator_state(scratch, state["loss_generator"], source)
    return optimizers


def check_module_ids(table: Table, state: Any, source: str) -> None:
    """A CheckpointError unless ``state`` is a mapping with exactly the table's module ids."""
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{source} holds a {type(state).__name__} where a mapping by module id belongs"
        )
    mine = set(table)
    if set(state) != mine:
        missing, extra = sorted(mine - set(state)), sorted_names(set(state) - mine)
        raise CheckpointError(
            f"{source} has modules {sorted_names(state)}; this learner has {sorted(mine)} "
            f"(missing from it: {missing}, unknown here: {extra}): add_module or remove_module "
            "to match before loading it"
        )


def check_known_module_ids(table: Table, state: Any, source: str) -> None:
    """A CheckpointError unless ``state`` is a mapping whose module ids are all the
    table's (some of them: ``set_module_state`` of a subset)."""
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{source} holds a {type(state).__name__} where a mapping by module id belongs"
        )
    unknown = sorted_names(set(state) - set(table))
    if unknown:
        raise CheckpointError(
            f"{source} has modules {unknown} that this learner does not have (it has "
            f"{sorted(table)}): add_module first, or load them under one of its ids; nothing "
            "was loaded"
        )


def module_weights(
    state: Any,
    modules: str | Collection[str] | Mapping[str, str] | None,
    *,
    framework: str,
    source: str,
) -> dict[str, Any]:
    """The weights of ``modules`` in a learner state (a checkpoint's), keyed by the module
    ids they load into (``Learner.load_module_state``); a CheckpointError if the state is
    not one, is of another framework or lacks one of them."""
    if not isinstance(state, Mapping) or not isinstance(state.get("modules"), Mapping):
        raise CheckpointError(f"{source} is not a learner state: it has no 'modules'")
    if state.get("framework") != framework:
        raise CheckpointError(
            f"{source} was written by framework {state.get('framework')!r}; this learner runs "
            f"{framework!r}, whose weights are named and shaped differently"
        )
    saved = state["modules"]
    if modules is None:
        pairs = {mid: mid for mid in saved}
    elif isinstance(modules, str):
        pairs = {modules: modules}
    elif isinstance(modules, Mapping):
        pairs = dict(modules)
    else:
        pairs = {mid: mid for mid in modules}
    missing = sorted_names(set(pairs) - set(saved))
    if missing:
        raise CheckpointError(f"{source} has no module {missing}; it has {sorted_names(saved)}")
    return {into: saved[mid] for mid, into in pairs.items()}


def _is_string(value: Any, expected: str) -> bool:
    # An edited state may hold an array where a name belongs: compare as strings only.
    return isinstance(value, str) and value == expected


def named_optimizer_states(
    table: Table, state: Mapping[str, Any], source: str
) -> dict[str, Mapping[str, Any]]:
    """The state's optimizer states as ``{module_id: {name: state}}``, in either layout
    (one state per module, from before several optimizers per module, is ``"default"``)."""
    given = _mapping(state, "optimizers", source)
    check_module_ids(table, given, f"{source} (optimizers)")
    layout = state.get("optimizer_layout")
    if layout is not None and not _is_string(layout, NAMED):
        raise CheckpointError(
            f"{source} has optimizer_layout {layout!r}; this learnerkit reads {NAMED!r}"
        )
    if layout is None:
        given = {mid: {DEFAULT_OPTIMIZER: s} for mid, s in given.items()}
    for module_id, by_name in given.items():
        mine = sorted(table[module_id].optimizers)
        if not isinstance(by_name, Mapping) or sorted_names(by_name) != mine:
            found = (
                sorted_names(by_name) if isinstance(by_name, Mapping) else type(by_name).__name__
            )
            raise CheckpointError(
                f"{source} has optimizers {found} for module {module_id!r}; this "
                f"learner has {mine} (a checkpoint from before several optimizers per module "
                "holds one, named 'default')"
            )
    return given


def _mapping(state: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    value = state[key]
    if not isinstance(value, Mapping):
        raise CheckpointError(
            f"{source}: {key!r} is a {type(value).__name__}; a learner state holds a mapping "
            "by module id there"
        )
    return value


def _kind(value: Any) -> str:
    dtype_kind = getattr(getattr(value, "dtype", None), "kind", None)
    if isinstance(value, bool) or dtype_kind == "b":
        return "a bool"
    if isinstance(value, Real) or dtype_kind in ("i", "u", "f"):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return "None" if value is None else type(value).__name__


def _check_algorithm_state(
    table: Table, algorithm: Algorithm, state: Mapping[str, Any], source: str
) -> None:
    given = _mapping(state, "algorithm_state", source)
    check_module_ids(table, given, f"{source} (algorithm_state)")
    for module_id, algo_state in given.items():
        where = f"{source}: algorithm_state of module {module_id!r}"
        if not isinstance(algo_state, Mapping):
            raise CheckpointError(f"{where} is a {type(algo_state).__name__}, not a mapping")
        for key, mine in table[module_id].algorithm_state.items():
            if key not in algo_state:
                raise CheckpointError(
                    f"{where} lacks {key!r}, which plugin {algorithm.name!r} keeps"
                )
            if mine is not None and _kind(algo_state[key]) != _kind(mine):
                raise CheckpointError(
                    f"{where}: {key!r} is {algo_state[key]!r:.40} ({_kind(algo_state[key])}); "
                    f"plugin {algorithm.name!r} keeps {_kind(mine)} there"
                )


def _check_counts(table: Table, counts: Any, where: str) -> None:
    check_module_ids(table, counts, where)
    for module_id, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, Integral) or count < 0:
            raise CheckpointError(
                f"{where}: module {module_id!r} has count {count!r:.40}; a count is an integer >= 0"
            )


def _check_targets(table: Table, backend: Backend, targets: Any, source: str) -> None:
    if targets is None:
        raise CheckpointError(
            f"{source} holds no target networks, but this algorithm keeps one per module "
            "(was it written by another algorithm, or before it declared target_network?)"
        )
    if not isinstance(targets, Mapping) or not {"modules", "num_updates"} <= set(targets):
        raise CheckpointError(
            f"{source}: 'target_networks' should hold 'modules' and 'num_updates'"
        )
    check_module_ids(table, targets["modules"], f"{source} (target networks)")
    for module_id, weights in targets["modules"].items():
        backend.check_module_state(
            table[module_id].target, weights, f"target network of {module_id!r} in {source}"
        )
    _check_counts(table, targets["num_updates"], f"{source} (target network updates)")
