"""A Learner's state as plain numpy and JSON values: what ``get_state`` returns,
``set_state`` takes and checkpoints hold. Pure functions over the Learner's table of
module records (``_learner_modules.ModuleRecord``) and its backend.

Optimizer states are named: ``optimizers: {module_id: {name: state}}`` (a module's lone
optimizer is ``"default"``), marked by ``optimizer_layout: "named"``. States written before
modules could have several optimizers hold one state per module and no marker; they load
into modules that have one optimizer. ``shuffle_generator`` is the state of the generator
minibatches are shuffled with, so a resumed run shuffles as the uninterrupted one (issue 21;
absent from older checkpoints, which then keep the learner's own). Whether a state fits is
checked, before any of it is loaded, in ``_state_checks``; ``load_state`` then loads all of it,
or puts back the state the learner had.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from learnerkit import _state_checks, target_networks
from learnerkit._state_checks import NAMED
from learnerkit.errors import CheckpointError, LearnerkitError

if TYPE_CHECKING:
    from learnerkit._learner_modules import ModuleRecord
    from learnerkit._plugins import Algorithm
    from learnerkit.backends.base import Backend
    from learnerkit.learner_spec import LearnerSpec

Table = Mapping[str, "ModuleRecord"]


def get_state(
    table: Table,
    backend: Backend,
    algorithm: Algorithm,
    spec: LearnerSpec,
    modules: Mapping[str, Any],
    shuffle_generator: Any,
) -> dict[str, Any]:
    """The state of every module of ``table``; ``modules`` is their weights,
    ``shuffle_generator`` the state of the generator minibatches are shuffled with."""
    targets = algorithm.target_network
    return {
        "algorithm": algorithm.name,
        "framework": spec.framework,
        "modules": modules,
        "optimizer_layout": NAMED,
        "optimizers": {
            mid: {name: backend.get_optimizer_state(opt) for name, opt in r.optimizers.items()}
            for mid, r in table.items()
        },
        "algorithm_state": {mid: dict(r.algorithm_state) for mid, r in table.items()},
        "num_updates": {mid: r.num_updates for mid, r in table.items()},
        "shuffle_generator": shuffle_generator,
        **({"target_networks": target_networks.get_state(backend, table)} if targets else {}),
    }


def set_state(
    table: Table,
    backend: Backend,
    algorithm: Algorithm,
    state: Mapping[str, Any],
    optimizers: Mapping[str, Mapping[str, Any]],
    source: str,
) -> None:
    """Load a checked state (``_state_checks.check_state``), but for the weights and the
    shuffle generator, into the records."""
    for module_id, by_name in optimizers.items():
        for name, opt_state in by_name.items():
            backend.set_optimizer_state(
                table[module_id].optimizers[name],
                opt_state,
                f"module {module_id!r} (optimizer {name!r}) in {source}",
            )
    for module_id, algo_state in state["algorithm_state"].items():
        table[module_id].algorithm_state.clear()
        table[module_id].algorithm_state.update(algo_state)
    # Checkpoints from before update counting start the count again.
    for module_id, count in state.get("num_updates", {}).items():
        table[module_id].num_updates = int(count)
    if algorithm.target_network:
        target_networks.set_state(backend, table, state.get("target_networks"), source)


def set_module_state(
    table: Table, backend: Backend, state: Mapping[str, Mapping[str, Any]]
) -> None:
    """Load the weights of the modules ``state`` has, after checking them all (module ids,
    then every module's weights): all of them or none."""
    _state_checks.check_known_module_ids(table, state, "weights")
    for module_id, weights in state.items():
        where = f"module {module_id!r}"
        backend.check_module_state(table[module_id].module, weights, where)
    for module_id, weights in state.items():
        where = f"module {module_id!r}"
        backend.set_module_state(table[module_id].module, weights, where)


def load_state(
    table: Table,
    backend: Backend,
    algorithm: Algorithm,
    spec: LearnerSpec,
    state: Mapping[str, Any],
    source: str,
    *,
    get_state: Callable[[], dict[str, Any]],
    set_module_state: Callable[[Mapping[str, Any]], None],
    generator: Any,
) -> None:
    """Check the whole ``state``, then load all of it: weights through ``set_module_state``,
    the records, the shuffle ``generator``. Should loading still fail, the state
    ``get_state`` gave before is put back and the error raised (a CheckpointError naming
    ``source`` unless it is a learnerkit error or no Exception)."""
    optimizers = _state_checks.check_state(table, backend, algorithm, spec, state, source)
    before = get_state()
    try:
        _apply(table, backend, algorithm, state, optimizers, source, set_module_state, generator)
    except BaseException as exc:
        # The check above should leave nothing to fail here; if something does, the
        # learner goes back to where it was rather than stay half loaded.
        named = _state_checks.named_optimizer_states(table, before, "it")
        _apply(table, backend, algorithm, before, named, "it", set_module_state, generator)
        if isinstance(exc, LearnerkitError) or not isinstance(exc, Exception):
            raise
        raise CheckpointError(
            f"{source} could not be loaded ({type(exc).__name__}: {exc}); the learner "
            "holds the state it had before"
        ) from exc


def _apply(
    table: Table,
    backend: Backend,
    algorithm: Algorithm,
    state: Mapping[str, Any],
    optimizers: Mapping[str, Any],
    source: str,
    set_module_state: Callable[[Mapping[str, Any]], None],
    generator: Any,
) -> None:
    set_module_state(state["modules"])
    set_state(table, backend, algorithm, state, optimizers, source)
    if state.get("shuffle_generator") is not None:
        backend.set_generator_state(generator, state["shuffle_generator"], source)
