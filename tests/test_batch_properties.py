"""Property-based: whatever batch a user hands a Learner (random columns, dtypes, shapes,
lengths, non-finite values, action ranges), it either trains and leaves every weight finite,
or raises a learnerkit error. Never another exception, never a hang, on torch and TF."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from learnerkit import Columns, Learner, LearnerkitError, LearnerSpec, ModuleSpec

DTYPES = [np.float32, np.float64, np.int32, np.int64, np.bool_, np.complex64, np.str_]
SPECIAL = [np.nan, np.inf, -np.inf, 1e300, -1e300, 0.0, 1e6]


@pytest.fixture(scope="module", params=["torch", "tf"])
def learner(request):
    spec = LearnerSpec(
        algorithm="bc", framework=request.param, module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS)
    )
    learner = Learner(spec)
    learner.build()
    return learner


@st.composite
def columns(draw):
    """A column of a random dtype and shape, sometimes holding special values."""
    rows = draw(st.integers(0, 12))
    width = draw(st.sampled_from([None, 1, 3, 4, 5]))
    shape = (rows,) if width is None else (rows, width)
    dtype = draw(st.sampled_from(DTYPES))
    values = np.random.default_rng(draw(st.integers(0, 2**16))).normal(size=shape) * draw(
        st.sampled_from([1.0, 3.0, 1e3])
    )
    if rows and draw(st.booleans()):
        flat = values.reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from(SPECIAL))
    if dtype is np.str_:
        return values.astype(str)
    with np.errstate(invalid="ignore", over="ignore"):
        return values.astype(dtype)


@st.composite
def batches(draw):
    """Mostly the columns BC needs, each possibly malformed, plus random extra columns."""
    batch = {}
    if draw(st.integers(0, 9)):  # usually present
        batch[Columns.OBS] = draw(columns())
    if draw(st.integers(0, 9)):
        n = len(batch[Columns.OBS]) if Columns.OBS in batch else draw(st.integers(0, 12))
        n += draw(st.sampled_from([0, 0, 0, 1]))  # sometimes ragged
        batch[Columns.ACTIONS] = np.asarray(
            draw(st.lists(st.integers(-2, 4), min_size=n, max_size=n)),
            dtype=draw(st.sampled_from([np.int64, np.int32, np.float32, np.bool_])),
        )
    for name in draw(st.lists(st.sampled_from(["rewards", "x", Columns.VF_PREDS]), max_size=2)):
        batch[name] = draw(columns())
    return batch


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=batches())
def test_any_batch_trains_to_finite_weights_or_raises_a_learnerkit_error(learner, batch):
    before = learner.get_module_state()
    try:
        learner.update(batch, minibatch_size=4)
    except LearnerkitError:
        # Refused: nothing was applied.
        after = learner.get_module_state()
        for name, array in before["default_policy"].items():
            np.testing.assert_array_equal(after["default_policy"][name], array)
        return
    for array in learner.get_module_state()["default_policy"].values():
        assert np.isfinite(array).all()
