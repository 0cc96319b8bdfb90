"""LearnerGroup with TensorFlow learners on Ray: gradients all-reduced inside the compiled
step keep the copies identical and equal to one learner on the whole batch; a killed learner
comes back; a group's checkpoint loads into a local TensorFlow Learner.

One Ray session and one two-learner group serve the module (TensorFlow actors take seconds
to start).
"""

from __future__ import annotations

import logging
import os
import signal

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, learner_processes, random_batch

import learnerkit
from learnerkit import (
    CheckpointError,
    Learner,
    LearnerGroup,
    LearnerSpec,
    ModuleSpec,
    ScalingConfig,
)
from learnerkit.checkpoint import load, save

pytestmark = pytest.mark.ray

MID = learnerkit.DEFAULT_MODULE_ID
# Below the gradient norm of these batches, so every step clips: the clip must see the
# gradient averaged over the learners for a group step to equal a single learner's.
GRAD_CLIP = 0.1


def tf_spec(num_learners: int) -> LearnerSpec:
    hps = learnerkit.get_algorithm("bc").hyperparameters(learning_rate=1e-2, grad_clip=GRAD_CLIP)
    return LearnerSpec(
        algorithm="bc",
        framework="tf",
        module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
        hyperparameters=hps,
        scaling=ScalingConfig(num_learners=num_learners, num_cpus_per_learner=0.5),
    )


def local_learner() -> Learner:
    learner = Learner(tf_spec(0))
    learner.build()
    return learner


@pytest.fixture(scope="module")
def group():
    group = LearnerGroup(tf_spec(2))
    yield group
    group.shutdown()


def assert_learners_identical(group: LearnerGroup) -> None:
    weights = group.foreach_learner(lambda learner: learner.get_module_state())
    assert len(weights) == 2
    for name, value in weights[0][MID].items():
        np.testing.assert_array_equal(weights[1][MID][name], value, err_msg=name)


def test_two_tf_learners_stay_bitwise_identical_over_several_updates(group):
    before = group.get_weights()
    for seed in range(3):
        results = group.update(random_batch(200, seed=seed), minibatch_size=32, num_epochs=2)
    assert results[MID]["num_samples"] == 200
    assert np.isfinite(results[MID]["total_loss"]) and results[MID]["gradient_norm"] > 0
    after = group.get_weights()
    assert any(not np.array_equal(before[MID][k], after[MID][k]) for k in after[MID])
    assert_learners_identical(group)


def test_tf_group_update_equals_one_local_tf_update_on_the_whole_batch(group):
    # Each learner sees half the batch; the all-reduced mean of the halves' gradients is the
    # whole batch's gradient, clipped and applied alike: the same Adam steps, the same weights.
    local = local_learner()
    local.set_state(group.get_state())
    batch = random_batch(128, seed=3)
    ours = local.update(batch, num_epochs=3)[MID]
    theirs = group.update(batch, num_epochs=3)[MID]
    assert theirs["gradient_norm"] > GRAD_CLIP  # the clip was active
    assert theirs["gradient_norm"] == pytest.approx(ours["gradient_norm"], rel=1e-5)
    assert theirs["total_loss"] == pytest.approx(ours["total_loss"], rel=1e-5)
    weights = group.get_weights()[MID]
    for name, value in local.get_module_state()[MID].items():
        np.testing.assert_allclose(weights[name], value, atol=1e-6, err_msg=name)


def test_killed_tf_learner_is_restarted_and_the_next_update_succeeds(group, caplog):
    group.update(random_batch(64))
    victim, pid = learner_processes(group)[1]
    os.kill(pid, signal.SIGKILL)
    with caplog.at_level(logging.WARNING, logger="learnerkit"):
        results = group.update(random_batch(64, seed=9), minibatch_size=16)
    assert f"learner 1 (Ray actor {victim}" in caplog.text and "died" in caplog.text
    assert learner_processes(group)[1][0] != victim
    assert results[MID]["num_samples"] == 64
    assert_learners_identical(group)
    optimizers = group.foreach_learner(
        lambda learner: learner.get_state()["optimizers"][MID]["default"]
    )
    for name, value in optimizers[0]["variables"].items():
        np.testing.assert_array_equal(optimizers[1]["variables"][name], value, err_msg=name)


def test_checkpoint_of_two_tf_learners_loads_into_a_local_tf_learner(group, tmp_path):
    group.update(random_batch(64, seed=5))
    group.save_state(tmp_path / "ckpt")
    saved = group.get_state()
    local = local_learner()
    local.load_state(tmp_path / "ckpt")
    loaded = local.get_state()
    np.testing.assert_equal(loaded["modules"], saved["modules"])
    np.testing.assert_equal(
        loaded["optimizers"][MID]["default"]["variables"],
        saved["optimizers"][MID]["default"]["variables"],
    )
    # The loaded learner trains on from there exactly as the group does.
    batch = random_batch(64, seed=6)
    ours = local.update(batch)[MID]["total_loss"]
    assert group.update(batch)[MID]["total_loss"] == pytest.approx(ours, rel=1e-5)


def test_a_tf_checkpoint_that_does_not_fit_is_refused_by_every_learner_changing_none(
    group, tmp_path
):
    group.update(random_batch(64, seed=7))
    group.save_state(tmp_path / "good")
    state = load(tmp_path / "good")
    variables = state["optimizers"][MID]["default"]["variables"]
    variables[sorted(variables)[-1]] = np.zeros(1, np.float32)  # a moment of the wrong shape
    save(tmp_path / "bad", state)
    before = group.foreach_learner(lambda learner: learner.get_state()["optimizers"])
    with pytest.raises(CheckpointError) as excinfo:
        group.load_state(tmp_path / "bad")
    assert type(excinfo.value) is CheckpointError  # not Ray's wrapper (issue 21)
    assert str(excinfo.value).startswith(f"optimizer state of module '{MID}'")
    after = group.foreach_learner(lambda learner: learner.get_state()["optimizers"])
    np.testing.assert_equal(after, before)
