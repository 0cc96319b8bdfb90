"""A Learner's state as plain numpy and JSON values: what ``get_state`` returns,
``set_state`` takes and checkpoints hold.

Optimizer states are named: ``optimizers: {module_id: {name: state}}`` (a module's lone
optimizer is ``"default"``), marked by ``optimizer_layout: "named"``. States written before
modules could have several optimizers hold one state per module and no marker; they load
into modules that have one optimizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from learnerkit._defaults import DEFAULT_OPTIMIZER
from learnerkit.errors import CheckpointError

if TYPE_CHECKING:
    from learnerkit.learner import Learner

NAMED = "named"


def get_state(learner: Learner) -> dict[str, Any]:
    backend = learner.backend
    return {
        "algorithm": learner.algorithm.name,
        "framework": learner.spec.framework,
        "modules": learner.get_module_state(),
        "optimizer_layout": NAMED,
        "optimizers": {
            mid: {name: backend.get_optimizer_state(opt) for name, opt in opts.items()}
            for mid, opts in learner._optimizers.items()
        },
        "algorithm_state": {mid: dict(s) for mid, s in learner._algorithm_state.items()},
        "num_updates": dict(learner._num_updates),
        **({"target_networks": learner._targets.get_state()} if learner._targets else {}),
    }


def set_state(learner: Learner, state: Mapping[str, Any], source: str) -> None:
    for key in ("algorithm", "framework"):
        mine = learner.algorithm.name if key == "algorithm" else learner.spec.framework
        if state.get(key) != mine:
            raise CheckpointError(
                f"{source} was written by {key} {state.get(key)!r}; this learner runs {mine!r}"
            )
    check_module_ids(learner, state["modules"], source)
    optimizers = _named_optimizer_states(learner, state, source)
    learner.set_module_state(state["modules"])
    for module_id, by_name in optimizers.items():
        for name, opt_state in by_name.items():
            learner.backend.set_optimizer_state(
                learner._optimizers[module_id][name],
                opt_state,
                f"module {module_id!r} (optimizer {name!r}) in {source}",
            )
    for module_id, algo_state in state["algorithm_state"].items():
        learner._algorithm_state[module_id].clear()
        learner._algorithm_state[module_id].update(algo_state)
    # Checkpoints from before update counting start the count again.
    learner._num_updates.update({k: int(v) for k, v in state.get("num_updates", {}).items()})
    if learner._targets is not None:
        learner._targets.set_state(state.get("target_networks"), source)


def _named_optimizer_states(
    learner: Learner, state: Mapping[str, Any], source: str
) -> dict[str, Mapping[str, Any]]:
    given = state["optimizers"]
    check_module_ids(learner, given, f"{source} (optimizers)")
    if state.get("optimizer_layout") != NAMED:
        given = {mid: {DEFAULT_OPTIMIZER: s} for mid, s in given.items()}
    for module_id, by_name in given.items():
        mine = sorted(learner._optimizers[module_id])
        if sorted(by_name) != mine:
            raise CheckpointError(
                f"{source} has optimizers {sorted(by_name)} for module {module_id!r}; this "
                f"learner has {mine} (a checkpoint from before several optimizers per module "
                "holds one, named 'default')"
            )
    return given


def check_module_ids(learner: Learner, state: Mapping[str, Any], source: str) -> None:
    mine = set(learner._modules)
    if set(state) != mine:
        missing, extra = sorted(mine - set(state)), sorted(set(state) - mine)
        raise CheckpointError(
            f"{source} has modules {sorted(state)}; this learner has {sorted(mine)} (missing "
            f"from it: {missing}, unknown here: {extra}): add_module or remove_module to match "
            "before loading it"
        )
