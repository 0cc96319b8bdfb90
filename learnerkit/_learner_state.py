"""A Learner's state as plain numpy and JSON values: what ``get_state`` returns,
``set_state`` takes and checkpoints hold. Pure functions over the Learner's table of
module records (``_learner_modules.ModuleRecord``) and its backend.

Optimizer states are named: ``optimizers: {module_id: {name: state}}`` (a module's lone
optimizer is ``"default"``), marked by ``optimizer_layout: "named"``. States written before
modules could have several optimizers hold one state per module and no marker; they load
into modules that have one optimizer. ``shuffle_generator`` is the state of the generator
minibatches are shuffled with, so a resumed run shuffles as the uninterrupted one (issue 21;
absent from older checkpoints, which then keep the learner's own); ``loss_generator`` the
state of the generator losses draw from (``Learner.loss_generator``; absent from older
checkpoints, which then reseed it from the learner's seed, as a fresh learner's). Whether a
state fits is
checked, before any of it is loaded, in ``_state_checks``; ``load_state`` then loads all of it,
or puts back the state the learner had.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from learnerkit import _state_checks
from learnerkit import _target_networks as target_networks
from learnerkit._state_checks import NAMED
from learnerkit.errors import CheckpointError, LearnerkitError

if TYPE_CHECKING:
    from learnerkit._learner_modules import ModuleRecord
    from learnerkit._learner_spec import LearnerSpec
    from learnerkit._plugins import Algorithm
    from learnerkit.backends._base import Backend

Table = Mapping[str, "ModuleRecord"]
_LOSS_STREAM = 0x105E  # the loss generator's stream of a seed, apart from shuffling's


def loss_generator_seed(seed: int) -> int:
    """The seed of the generator losses draw from, for a learner seeded ``seed``: derived,
    so that it draws another stream than the shuffling generator seeded ``seed``."""
    state = np.random.SeedSequence([seed % 2**64, _LOSS_STREAM]).generate_state(1, np.uint64)
    return int(state[0] >> 1)  # below 2**63: both torch and TensorFlow take it


def get_state(
    table: Table,
    backend: Backend,
    algorithm: Algorithm,
    spec: LearnerSpec,
    modules: Mapping[str, Any],
    shuffle_generator: Any,
    loss_generator: Any,
) -> dict[str, Any]:
    """The state of every module of ``table``; ``modules`` is their weights,
    ``shuffle_generator`` the state of the generator minibatches are shuffled with,
    ``loss_generator`` that of the generator losses draw from."""
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
        "loss_generator": loss_generator,
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
    generators, into the records."""
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
    loss_generator: Any,
    loss_seed: int,
) -> None:
    """Check the whole ``state``, then load all of it: weights through ``set_module_state``,
    the records, the shuffle ``generator`` and the ``loss_generator`` (reseeded with
    ``loss_seed`` when the state has none). Should loading still fail, the state
    ``get_state`` gave before is put back and the error raised (a CheckpointError naming
    ``source`` unless it is a learnerkit error or no Exception)."""
    optimizers = _state_checks.check_state(table, backend, algorithm, spec, state, source)
    before = get_state()
    generators = (generator, loss_generator, loss_seed)
    try:
        _apply(table, backend, algorithm, state, optimizers, source, set_module_state, generators)
    except BaseException as exc:
        # The check above should leave nothing to fail here; if something does, the
        # learner goes back to where it was rather than stay half loaded.
        named = _state_checks.named_optimizer_states(table, before, "it")
        _apply(table, backend, algorithm, before, named, "it", set_module_state, generators)
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
    generators: tuple[Any, Any, int],
) -> None:
    shuffle, loss, loss_seed = generators
    set_module_state(state["modules"])
    set_state(table, backend, algorithm, state, optimizers, source)
    if state.get("shuffle_generator") is not None:
        backend.set_generator_state(shuffle, state["shuffle_generator"], source)
    loss_state = state.get("loss_generator")
    if loss_state is None:  # a checkpoint from before the loss generator: as a fresh learner
        loss_state = backend.get_loss_generator_state(backend.make_loss_generator(loss_seed))
    backend.set_loss_generator_state(loss, loss_state, source)
