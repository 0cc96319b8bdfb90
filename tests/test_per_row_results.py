"""Per-row values from a loss back to the caller of ``update()`` (``hookspecs.PER_ROW``):
aligned to the batch's rows whatever the shuffling, NaN where no applied step trained, in
both frameworks, on one learner and on Ray learners (contiguous shards, the remainder
dropped and left NaN)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin, random_batch

from learnerkit import (
    Hyperparameters,
    Learner,
    LearnerGroup,
    LearnerSpec,
    ModuleSpec,
    PluginError,
    SampleBatch,
    ScalingConfig,
)
from learnerkit.hookspecs import PER_ROW

ROW_ID = "row_id"


def per_row_loss(module, batch, fwd_out, ops):
    """BC, reporting each row's id and first observation as per-row values. (Written out,
    not calling conftest's: Ray learners get this module's code by value, not conftest.)"""
    dist = module.action_dist(fwd_out["action_dist_inputs"])
    loss = -ops.mean(dist.logp(batch["actions"]))
    per_row = {"id": batch[ROW_ID], "obs0": batch["obs"][:, 0]}
    return {"total_loss": loss, "policy_loss": loss, PER_ROW: per_row}


def numbered_batch(n: int, seed: int = 0, nan_at: tuple[int, int] | None = None) -> SampleBatch:
    columns = dict(random_batch(n, seed=seed))
    columns[ROW_ID] = np.arange(n, dtype=np.float32)
    if nan_at is not None:
        columns["obs"][nan_at] = np.nan
    return SampleBatch(columns)


def learner(framework: str, plugin_name: str = "per_row", **hps) -> Learner:
    built = Learner(
        LearnerSpec(
            algorithm=plugin_name,
            framework=framework,
            module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
            hyperparameters=Hyperparameters(**hps),
        )
    )
    built.build()
    return built


def test_per_row_values_come_back_aligned_to_the_batch_rows(register, framework):
    register(make_plugin("per_row", compute_loss=per_row_loss))
    batch = numbered_batch(100)
    results = learner(framework).update(batch, minibatch_size=32, num_epochs=2)
    values = results["default_policy"][PER_ROW]
    assert sorted(values) == ["id", "obs0"]
    np.testing.assert_array_equal(values["id"], np.arange(100, dtype=np.float32))
    np.testing.assert_array_equal(values["obs0"], batch["obs"][:, 0])
    assert values["id"].dtype == np.float32
    # The averaged statistics are not polluted by them.
    assert "id" not in results["default_policy"] and "policy_loss" in results["default_policy"]


def test_an_algorithm_returning_none_gets_no_per_row_entry(register, framework):
    register(make_plugin("plain", compute_loss=bc_loss))
    results = learner(framework, "plain").update(numbered_batch(64), minibatch_size=32)
    assert PER_ROW not in results["default_policy"]


def test_rows_of_a_skipped_minibatch_have_no_value(register, framework):
    register(make_plugin("per_row", compute_loss=per_row_loss))
    batch = numbered_batch(64, nan_at=(5, 1))  # poisons the loss of row 5's minibatch
    results = learner(framework, non_finite="skip").update(
        batch, minibatch_size=16, num_epochs=1, shuffle=False
    )
    ids = results["default_policy"][PER_ROW]["id"]
    assert np.isnan(ids[:16]).all()
    np.testing.assert_array_equal(ids[16:], np.arange(16, 64, dtype=np.float32))
    assert results["default_policy"]["non_finite_minibatches_skipped"] == 1


def test_per_row_values_of_another_shape_are_a_plugin_error(register, framework):
    def bad_loss(module, batch, fwd_out, ops):
        out = dict(bc_loss(module, batch, fwd_out, ops))
        out[PER_ROW] = {"logits": fwd_out["action_dist_inputs"]}
        return out

    register(make_plugin("bad_rows", compute_loss=bad_loss))
    with pytest.raises(PluginError, match=r"per_row.*'logits'.*shape \[B\]"):
        learner(framework, "bad_rows").update(numbered_batch(16))


@pytest.mark.ray
def test_ray_learners_concatenate_their_shards_and_leave_the_remainder_nan(register):
    num_learners = 2  # one learner is the case of one shard
    register(make_plugin("per_row", compute_loss=per_row_loss))
    spec = LearnerSpec(
        algorithm="per_row",
        module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
        scaling=ScalingConfig(num_learners=num_learners, num_cpus_per_learner=0.5),
    )
    group = LearnerGroup(spec)
    try:
        batch = numbered_batch(101)
        results = group.update(batch, minibatch_size=20, num_epochs=2)
        ids = results["default_policy"][PER_ROW]["id"]
        trained = 101 // num_learners * num_learners
        assert ids.shape == (101,)
        np.testing.assert_array_equal(ids[:trained], np.arange(trained, dtype=np.float32))
        assert np.isnan(ids[trained:]).all()
        np.testing.assert_array_equal(
            results["default_policy"][PER_ROW]["obs0"][:trained], batch["obs"][:trained, 0]
        )
    finally:
        group.shutdown()
