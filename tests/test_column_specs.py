"""An algorithm's own columns are checked like the host's (issue 21): a plugin declares the
dtype and per-row shape of the columns it reads (``Algorithm.column_specs``), and a batch
whose column has another form is a BatchError naming the algorithm, the module, the column
and the form expected, raised before any weight changes, in both frameworks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin, random_batch

from learnerkit import (
    BatchError,
    Columns,
    ColumnSpec,
    Learner,
    LearnerSpec,
    ModuleSpec,
    SampleBatch,
)


def ppo_batch(n: int = 32, **changes) -> SampleBatch:
    rows = dict(random_batch(n).items())
    rows.update(
        {
            Columns.ACTION_LOGP: np.full(n, -0.7, np.float32),
            Columns.ACTION_DIST_INPUTS: np.zeros((n, 2), np.float32),
            Columns.VF_PREDS: np.zeros(n, np.float32),
            Columns.ADVANTAGES: np.ones(n, np.float32),
            Columns.VALUE_TARGETS: np.ones(n, np.float32),
        }
    )
    rows.update(changes)
    return SampleBatch(rows)


@pytest.fixture(scope="module", params=["torch", "tf"])
def ppo(request) -> Learner:
    learner = Learner(
        LearnerSpec(
            algorithm="ppo",
            framework=request.param,
            module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS, model_config={"hiddens": [8]}),
        )
    )
    learner.build()
    return learner


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (
            Columns.ACTION_DIST_INPUTS,
            np.zeros((32, 2, 1), np.float32),
            r"column 'action_dist_inputs' has rows of shape \(2, 1\) and dtype float32; "
            r"algorithm 'ppo' needs float rows of shape \(2,\)",
        ),
        (
            Columns.ACTION_LOGP,
            np.zeros(32, np.int64),
            r"column 'action_logp' has rows of shape \(\) and dtype int64; algorithm 'ppo' "
            "needs float rows of scalar",
        ),
        (
            Columns.ADVANTAGES,
            np.zeros((32, 3), np.float32),
            r"column 'advantages' has rows of shape \(3,\)",
        ),
    ],
)
def test_a_column_of_another_form_is_refused_naming_algorithm_and_column(
    ppo, column, value, message
):
    before = ppo.get_module_state()
    with pytest.raises(BatchError, match=message):
        ppo.update(ppo_batch(**{column: value}))
    after = ppo.get_module_state()
    for name, array in before["default_policy"].items():
        np.testing.assert_array_equal(after["default_policy"][name], array)


def test_a_plugin_declares_the_form_of_its_columns(register):
    register(
        make_plugin(
            "scored_bc",
            compute_loss=bc_loss,
            required_columns=(Columns.OBS, Columns.ACTIONS, "score"),
            column_specs={"score": ColumnSpec("int", ("obs",))},
        )
    )
    module_spec = ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS)
    learner = Learner(LearnerSpec(algorithm="scored_bc", module_spec=module_spec))
    learner.build()
    rows = dict(random_batch(8).items())
    learner.update(SampleBatch({**rows, "score": np.zeros((8, 4), np.int32)}))
    with pytest.raises(BatchError, match=r"algorithm 'scored_bc' needs int rows of shape \(4,\)"):
        learner.update(SampleBatch({**rows, "score": np.zeros((8, 4), np.float32)}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"dtype": "str"}, "ColumnSpec.dtype must be one of"), ({"shape": ("act",)}, "not 'act'")],
)
def test_a_column_spec_of_no_known_form_is_refused_when_declared(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ColumnSpec(**kwargs)
