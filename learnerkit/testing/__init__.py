"""Helpers for testing plugins, and for tests and notebooks that register plugins in code.

``reset_plugins()`` gives fresh plugin registries: algorithms and loops registered with
``learnerkit.register_algorithm`` / ``register_training_loop`` are forgotten, and plugins
already loaded from entry points are read again on the next lookup (after ``sys.path``
changed, say). A test suite calls it around each test, as learnerkit's own
``tests/conftest.py`` does.

The contract kit checks an algorithm plugin against the plugin contract
(``learnerkit/hookspecs.py``), on each framework it declares:

- it registers and lists with status ok;
- every hook it implements is called (build, ``update``, ``additional_update``) with
  arguments of the documented types, and returns what the hook's spec documents;
- its loss is finite and reaches every trainable parameter;
- ``get_state``/``set_state`` and ``save_state``/``load_state`` round-trip bitwise, and the
  next update of the restored learner equals the original's;
- batches without a column, with NaN, or ragged raise learnerkit errors;
- optionally, a LearnerGroup of 2 Ray learners stays bitwise identical after an update,
  and the algorithm learns a shipped two-state task (``TWO_STATE_ENV_ID``) within a budget.

With pytest, subclass ``AlgorithmContract`` (each check is a test)::

    from learnerkit.testing import AlgorithmContract

    class TestMyAlgorithmContract(AlgorithmContract):
        algorithm = "my_algorithm"
        hyperparameters = {"minibatch_size": 32}

Without it: ``run = run_contract(Subject(algorithm=...), "torch", directory)``, then
``check_hooks(run)``, ``check_loss_and_gradients(run)``, ``check_state_round_trip(run)``,
``check_loss_mask(run)`` (for an algorithm declaring ``reads_loss_mask=True``),
``check_bad_batches(...)``, ``check_ray_learner_group(...)``. Importing this module loads
neither pytest nor the checks (``reset_plugins`` stays light): they load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from learnerkit import _plugins, training_loops

if TYPE_CHECKING:
    from learnerkit.testing._checks import (
        ContractRun,
        Subject,
        assert_same_state,
        check_bad_batches,
        check_hooks,
        check_loss_and_gradients,
        check_loss_mask,
        check_ray_learner_group,
        check_registers,
        check_state_round_trip,
        run_contract,
        synthetic_batch,
    )
    from learnerkit.testing._contract import AlgorithmContract
    from learnerkit.testing._tiny_task import (
        EPISODE_LENGTH,
        TWO_STATE_ENV_ID,
        TwoStateEnv,
        check_learns_tiny_task,
        register_two_state_env,
    )

__all__ = [
    "EPISODE_LENGTH",
    "TWO_STATE_ENV_ID",
    "AlgorithmContract",
    "ContractRun",
    "Subject",
    "TwoStateEnv",
    "assert_same_state",
    "check_bad_batches",
    "check_hooks",
    "check_learns_tiny_task",
    "check_loss_and_gradients",
    "check_loss_mask",
    "check_ray_learner_group",
    "check_registers",
    "check_state_round_trip",
    "register_two_state_env",
    "reset_plugins",
    "run_contract",
    "synthetic_batch",
]

_LAZY = {
    "AlgorithmContract": "learnerkit.testing._contract",
    **dict.fromkeys(
        [
            "ContractRun",
            "Subject",
            "assert_same_state",
            "check_bad_batches",
            "check_hooks",
            "check_loss_and_gradients",
            "check_loss_mask",
            "check_ray_learner_group",
            "check_registers",
            "check_state_round_trip",
            "run_contract",
            "synthetic_batch",
        ],
        "learnerkit.testing._checks",
    ),
    **dict.fromkeys(
        [
            "EPISODE_LENGTH",
            "TWO_STATE_ENV_ID",
            "TwoStateEnv",
            "check_learns_tiny_task",
            "register_two_state_env",
        ],
        "learnerkit.testing._tiny_task",
    ),
}


def __getattr__(name: str) -> Any:
    # pytest, numpy and gymnasium: only for a program that uses the kit.
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'learnerkit.testing' has no attribute {name!r}")


def reset_plugins() -> None:
    """Forget algorithms and loops registered in code and every plugin loaded so far."""
    _plugins.reset_registry()
    training_loops.reset_registry()
