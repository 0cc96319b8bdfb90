"""A Learner's state as plain numpy and JSON values: what ``get_state`` returns,
``set_state`` takes and checkpoints hold. Pure functions over the Learner's table of
module records (``_learner_modules.ModuleRecord``) and its backend.

Optimizer states are named: ``optimizers: {module_id: {name: state}}`` (a module's lone
optimizer is ``"default"``), marked by ``optimizer_layout: "named"``. States written before
modules could have several optimizers hold one state per module and no marker; they load
into modules that have one optimizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from learnerkit import target_networks
from learnerkit._defaults import DEFAULT_OPTIMIZER
from learnerkit.errors import CheckpointError

if TYPE_CHECKING:
    from learnerkit._learner_modules import ModuleRecord
    from learnerkit._plugins import Algorithm
    from learnerkit.backends.base import Backend
    from learnerkit.learner_spec import LearnerSpec

Table = Mapping[str, "ModuleRecord"]
NAMED = "named"


def get_state(
    table: Table,
    backend: Backend,
    algorithm: Algorithm,
    spec: LearnerSpec,
    modules: Mapping[str, Any],
) -> dict[str, Any]:
    """The state of every module of ``table``; ``modules`` is their weights."""
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
        **({"target_networks": target_networks.get_state(backend, table)} if targets else {}),
    }


def check_state(
    table: Table, algorithm: Algorithm, spec: LearnerSpec, state: Mapping[str, Any], source: str
) -> dict[str, Mapping[str, Any]]:
    """Refuse a state (CheckpointError) that does not fit; its optimizer states by name."""
    for key, mine in (("algorithm", algorithm.name), ("framework", spec.framework)):
        if state.get(key) != mine:
            raise CheckpointError(
                f"{source} was written by {key} {state.get(key)!r}; this learner runs {mine!r}"
            )
    check_module_ids(table, state["modules"], source)
    return _named_optimizer_states(table, state, source)


def set_state(
    table: Table,
    backend: Backend,
    algorithm: Algorithm,
    state: Mapping[str, Any],
    optimizers: Mapping[str, Mapping[str, Any]],
    source: str,
) -> None:
    """Load a checked state (``check_state``), but for the weights, into the records."""
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


def _named_optimizer_states(
    table: Table, state: Mapping[str, Any], source: str
) -> dict[str, Mapping[str, Any]]:
    given = state["optimizers"]
    check_module_ids(table, given, f"{source} (optimizers)")
    if state.get("optimizer_layout") != NAMED:
        given = {mid: {DEFAULT_OPTIMIZER: s} for mid, s in given.items()}
    for module_id, by_name in given.items():
        mine = sorted(table[module_id].optimizers)
        if sorted(by_name) != mine:
            raise CheckpointError(
                f"{source} has optimizers {sorted(by_name)} for module {module_id!r}; this "
                f"learner has {mine} (a checkpoint from before several optimizers per module "
                "holds one, named 'default')"
            )
    return given


def check_module_ids(table: Table, state: Mapping[str, Any], source: str) -> None:
    mine = set(table)
    if set(state) != mine:
        missing, extra = sorted(mine - set(state)), sorted(set(state) - mine)
        raise CheckpointError(
            f"{source} has modules {sorted(state)}; this learner has {sorted(mine)} (missing "
            f"from it: {missing}, unknown here: {extra}): add_module or remove_module to match "
            "before loading it"
        )
