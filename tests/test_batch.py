"""Batches: equal-length numpy columns, checked against the module's spaces and the
algorithm's columns; sharded for data-parallel learners, shuffled into minibatches."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import BOX_ACTIONS, CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin, random_batch

from learnerkit import (
    DEFAULT_MODULE_ID,
    BatchError,
    Columns,
    Learner,
    LearnerSpec,
    ModuleSpec,
    MultiAgentBatch,
    SampleBatch,
)


def test_ragged_columns_are_refused_with_each_length():
    with pytest.raises(BatchError, match=r"ragged batch.*'obs': 3, 'actions': 2"):
        SampleBatch({"obs": np.zeros((3, 4)), "actions": np.zeros(2)})


def test_a_scalar_column_is_refused():
    with pytest.raises(BatchError, match="column 'rewards' is a scalar"):
        SampleBatch({"rewards": 1.0})


def test_a_missing_column_names_the_module_the_algorithm_and_the_fix():
    batch = random_batch(4)
    with pytest.raises(BatchError) as excinfo:
        batch.check_columns([Columns.OBS, Columns.ADVANTAGES], module_id="walker", algorithm="ppo")
    assert str(excinfo.value) == (
        "batch for module 'walker' lacks column 'advantages' (ppo needs it; compute it with "
        "learnerkit.rollouts.compute_gae)"
    )
    with pytest.raises(BatchError, match="add a 'returns' array with one row per sample"):
        batch.check_columns(["returns"], module_id="walker", algorithm="pg")


def test_reading_a_missing_column_lists_the_columns_there_are():
    with pytest.raises(KeyError, match=r"no column 'advantages'; it has \['actions', 'obs'"):
        random_batch(2)["advantages"]


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("obs", np.zeros((5, 3), np.float32), r"rows of shape \(3,\).*has shape \(4,\)"),
        ("obs", np.array([["a"] * 4] * 5), "observations must be numeric"),
        ("actions", np.zeros(5, np.float32), "needs a 1-d integer array"),
        ("actions", np.zeros((5, 1), np.int64), "needs a 1-d integer array"),
        ("actions", np.array([0, 1, 2, 1, 0]), r"actions range over \[0, 2\], outside Discrete"),
        ("actions", np.array([0, -1, 1, 1, 0]), r"actions range over \[-1, 1\]"),
    ],
)
def test_columns_that_do_not_fit_a_discrete_module_are_refused(column, value, message):
    batch = SampleBatch({**random_batch(5), column: value})
    with pytest.raises(BatchError, match=message):
        batch.check_spaces(module_id="m", observation_space=CARTPOLE_OBS, action_space=TWO_ACTIONS)


@pytest.mark.parametrize(
    "actions", [np.zeros((5, 2), np.float32), np.zeros(5, np.float32), np.zeros((5, 3), np.int64)]
)
def test_actions_that_do_not_fit_a_box_module_are_refused(actions):
    batch = SampleBatch({Columns.OBS: np.zeros((5, 4), np.float32), Columns.ACTIONS: actions})
    with pytest.raises(BatchError, match=r"needs float rows of shape \(3,\)"):
        batch.check_spaces(module_id="m", observation_space=CARTPOLE_OBS, action_space=BOX_ACTIONS)


def test_fitting_columns_pass_the_space_check():
    random_batch(5).check_spaces(
        module_id="m", observation_space=CARTPOLE_OBS, action_space=TWO_ACTIONS
    )
    random_batch(5, action_space=BOX_ACTIONS).check_spaces(
        module_id="m", observation_space=CARTPOLE_OBS, action_space=BOX_ACTIONS
    )


def test_sharding_makes_equal_parts_in_order_and_drops_the_remainder():
    batch = SampleBatch({"x": np.arange(11)})
    shards = batch.shard(3)
    assert [s.count for s in shards] == [3, 3, 3]
    np.testing.assert_array_equal(np.concatenate([s["x"] for s in shards]), np.arange(9))
    assert [s.count for s in batch.shard(1)] == [11]
    with pytest.raises(ValueError, match="num_shards must be >= 1"):
        batch.shard(0)


def test_shuffled_minibatches_cover_every_row_once_per_epoch():
    batch = SampleBatch({"x": np.arange(10)})
    rng = np.random.default_rng(0)
    epochs = [[mb["x"] for mb in batch.minibatches(4, rng=rng)] for _ in range(2)]
    for minibatches in epochs:
        assert [len(mb) for mb in minibatches] == [4, 4, 2]
        assert sorted(np.concatenate(minibatches).tolist()) == list(range(10))
    assert not np.array_equal(np.concatenate(epochs[0]), np.arange(10))  # shuffled
    assert not np.array_equal(np.concatenate(epochs[0]), np.concatenate(epochs[1]))
    unshuffled = np.concatenate([mb["x"] for mb in batch.minibatches(4)])
    np.testing.assert_array_equal(unshuffled, np.arange(10))


def test_a_single_agent_batch_is_trained_under_the_default_module_id():
    batch = random_batch(6)
    multi = batch.as_multi_agent()
    assert list(multi) == [DEFAULT_MODULE_ID] == ["default_policy"]
    assert multi[DEFAULT_MODULE_ID] is batch


def test_a_multi_agent_batch_holds_a_batch_per_module_and_shards_each():
    multi = MultiAgentBatch({"a": random_batch(10), "b": {"x": np.arange(4)}})
    assert isinstance(multi["b"], SampleBatch)
    assert multi.count == 14
    assert set(multi.policy_batches) == {"a", "b"}
    shards = multi.shard(2)
    assert [(s["a"].count, s["b"].count) for s in shards] == [(5, 2), (5, 2)]
    np.testing.assert_array_equal(shards[1]["b"]["x"], [2, 3])


def test_concatenating_batches_needs_the_same_columns():
    a, b = random_batch(3), random_batch(4, seed=1)
    assert SampleBatch.concat([a, b]).count == 7
    with pytest.raises(BatchError, match="different columns"):
        SampleBatch.concat([a, SampleBatch({"obs": np.zeros((2, 4))})])


# What is not a batch, or holds what no backend trains on (issue 9, item 2) ----------------------
@pytest.mark.parametrize(
    ("columns", "got"), [(42, "int 42"), ("abc", "str 'abc'"), ([1, 2], r"list \[1, 2\]")]
)
def test_anything_but_a_mapping_of_columns_is_refused_saying_what_is_expected(columns, got):
    with pytest.raises(
        BatchError,
        match=r"SampleBatch takes a mapping of column name to array with one row per sample "
        rf"\(e.g. {{'obs': obs, 'actions': actions}}\), got {got}$",
    ):
        SampleBatch(columns)


def test_a_multi_agent_batch_needs_a_mapping_of_module_id_to_batch():
    expected = (
        r"MultiAgentBatch takes a mapping of module id to SampleBatch \(or to a mapping of "
        r"column name to array with one row per sample\)"
    )
    with pytest.raises(BatchError, match=rf"^{expected}, got int 42$"):
        MultiAgentBatch(42)
    with pytest.raises(BatchError, match=rf"^{expected}; module 'm' has int 42$"):
        MultiAgentBatch({"m": 42})


def test_a_column_that_is_not_an_array_of_rows_is_refused():
    with pytest.raises(BatchError, match="column 'obs' is not an array with one row per sample"):
        SampleBatch({"obs": [[1.0, 2.0], [3.0]]})


@pytest.mark.parametrize(
    "obs",
    [
        np.zeros((5, 4), np.complex64),
        np.zeros((5, 4), "datetime64[s]"),
        np.full((5, 4), None, object),
    ],
    ids=["complex64", "datetime64", "object"],
)
def test_observations_of_a_dtype_no_backend_trains_on_are_refused(obs):
    batch = SampleBatch({**random_batch(5), "obs": obs})
    with pytest.raises(
        BatchError,
        match=rf"column 'obs' has dtype {re.escape(str(obs.dtype))}; observations must be "
        r"numeric \(bool, integer or float values\)",
    ):
        batch.check_spaces(module_id="m", observation_space=CARTPOLE_OBS, action_space=TWO_ACTIONS)


@pytest.mark.parametrize("dtype", [np.complex128, np.str_, "datetime64[s]", object])
def test_a_required_column_of_a_dtype_no_backend_trains_on_is_refused_by_name(dtype):
    batch = SampleBatch({**random_batch(5), Columns.ADVANTAGES: np.zeros(5).astype(dtype)})
    with pytest.raises(BatchError) as excinfo:
        batch.check_dtypes([Columns.OBS, Columns.ADVANTAGES], module_id="m")
    assert str(excinfo.value) == (
        f"batch for module 'm': column 'advantages' has dtype {batch['advantages'].dtype}, "
        "which no backend trains on; it needs bool, integer or float values"
    )
    batch.check_dtypes([Columns.OBS, Columns.ACTIONS], module_id="m")  # the others are fine


def test_learners_refuse_complex_observations_and_keep_ignoring_unused_string_columns(
    register, framework
):
    register(
        make_plugin("needs_advantages", compute_loss=bc_loss, required_columns=("advantages",))
    )
    spec = LearnerSpec(
        algorithm="needs_advantages",
        framework=framework,
        module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
    )
    learner = Learner(spec)
    learner.build()
    batch = {**random_batch(8), Columns.ADVANTAGES: np.zeros(8, np.float16)}
    with pytest.raises(BatchError, match="column 'obs' has dtype complex64"):
        learner.update({**batch, Columns.OBS: batch[Columns.OBS].astype(np.complex64)})
    with pytest.raises(BatchError, match="column 'advantages' has dtype <U1"):
        learner.update({**batch, Columns.ADVANTAGES: np.array(list("abcdefgh"))})
    # Columns the algorithm does not read may hold strings, as before; float16 becomes float32.
    results = learner.update({**batch, "infos": np.array(["episode"] * 8)})
    assert results[DEFAULT_MODULE_ID]["num_samples"] == 8
    # A dict of columns or a SampleBatch is trained under the default module id; anything
    # else is refused saying what is expected.
    assert list(learner.update(SampleBatch(batch))) == list(results)
    with pytest.raises(BatchError, match=r"expected a SampleBatch, .* got list"):
        learner.update([1, 2])
    with pytest.raises(BatchError, match="got str 'abc'"):
        learner.update("abc")
