"""Target networks kept by the host for algorithms that declare them: built equal to the
module, never trained, moved by polyak averaging from a hook, part of state and
checkpoints (across group sizes), and bitwise identical across Ray learners."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin, random_batch

import learnerkit
from learnerkit import (
    CheckpointError,
    ConfigError,
    Learner,
    LearnerGroup,
    LearnerSpec,
    ModuleSpec,
    PluginError,
    ScalingConfig,
)

MID = learnerkit.DEFAULT_MODULE_ID


def hard_update_every_two(learner, module_id, state):
    """What an algorithm's additional_update does: a target update every 2 learner updates."""
    if learner.num_updates(module_id) - state.get("last_target_update", 0) >= 2:
        learner.update_target_module(module_id, tau=1.0)
        state["last_target_update"] = learner.num_updates(module_id)
    return {"num_target_updates": learner.num_target_updates(module_id)}


def target_plugin():
    plugin = make_plugin(
        "withtarget", compute_loss=bc_loss, additional_update=hard_update_every_two
    )
    plugin.algorithm = learnerkit.Algorithm(
        name="withtarget", hyperparameters=learnerkit.Hyperparameters, target_network=True
    )
    return plugin


def spec(framework="torch", num_learners=0, algorithm="withtarget"):
    return LearnerSpec(
        algorithm=algorithm,
        framework=framework,
        module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
        scaling=ScalingConfig(num_learners=num_learners, num_cpus_per_learner=0.5),
    )


@pytest.fixture
def learner(register, framework):
    register(target_plugin())
    learner = Learner(spec(framework))
    learner.build()
    return learner


def weights(learner, module):
    return learner.backend.get_module_state(module)


def assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_the_target_starts_equal_and_is_never_trained(learner):
    target = learner.target_module(MID)
    start = weights(learner, target)
    assert_same(start, learner.get_module_state()[MID])
    learner.update(random_batch(64), minibatch_size=16, num_epochs=2)
    assert_same(weights(learner, target), start)
    assert learner.num_updates(MID) == 1 and learner.num_target_updates(MID) == 0
    with pytest.raises(AssertionError):
        assert_same(learner.get_module_state()[MID], start)


def test_polyak_update_mixes_by_tau_and_tau_one_copies_bitwise(learner):
    target = learner.target_module(MID)
    old = weights(learner, target)
    learner.update(random_batch(64), num_epochs=3)
    new = learner.get_module_state()[MID]
    learner.update_target_module(MID, tau=0.25)
    mixed = weights(learner, target)
    for name in old:
        np.testing.assert_allclose(mixed[name], 0.25 * new[name] + 0.75 * old[name], atol=1e-6)
    learner.update_target_module(MID)  # tau=1.0
    assert_same(weights(learner, target), new)
    assert learner.num_target_updates(MID) == 2
    with pytest.raises(ConfigError, match=r"tau must be in \(0, 1\]"):
        learner.update_target_module(MID, tau=1.5)


def test_additional_update_moves_the_target_every_two_learner_updates(learner):
    counts = []
    for seed in range(5):
        learner.update(random_batch(32, seed=seed))
        counts.append(learner.additional_update()[MID]["num_target_updates"])
    assert counts == [0, 1, 1, 2, 2]
    # The last target update came after the 4th learner update, not the 5th.
    with pytest.raises(AssertionError):
        assert_same(weights(learner, learner.target_module(MID)), learner.get_module_state()[MID])


def test_state_and_checkpoints_carry_the_target_and_the_counts(learner, framework, tmp_path):
    learner.update(random_batch(64))
    learner.update(random_batch(64, seed=1))
    learner.update_target_module(MID, tau=0.5)
    learner.save_state(tmp_path)
    fresh = Learner(spec(framework))
    fresh.build()
    fresh.load_state(tmp_path)
    assert_same(
        weights(fresh, fresh.target_module(MID)), weights(learner, learner.target_module(MID))
    )
    assert fresh.num_updates(MID) == 2 and fresh.num_target_updates(MID) == 1
    state = learner.get_state()
    del state["target_networks"]
    with pytest.raises(CheckpointError, match="holds no target networks"):
        fresh.set_state(state)


def test_an_algorithm_without_a_target_network_is_told_how_to_declare_one(register):
    register(make_plugin("plain", compute_loss=bc_loss))
    plain = Learner(spec(algorithm="plain"))
    plain.build()
    with pytest.raises(PluginError, match=r"declare Algorithm\(target_network=True\)"):
        plain.target_module(MID)
    assert "target_networks" not in plain.get_state()


@pytest.mark.ray
def test_ray_learners_keep_their_targets_bitwise_identical_and_checkpoints_move(tmp_path):
    plugin = target_plugin()
    learnerkit.register_algorithm(plugin)
    try:
        with LearnerGroup(spec(num_learners=2)) as group:
            for seed in range(4):
                group.update(random_batch(64, seed=seed), minibatch_size=16)
                group.additional_update(timestep=seed)
            targets = group.foreach_learner(
                lambda learner: learner.backend.get_module_state(learner.target_module(MID))
            )
            assert_same(*targets)
            assert group.foreach_learner(lambda learner: learner.num_target_updates(MID)) == [2, 2]
            group.save_state(tmp_path)
        local = Learner(spec())
        local.build()
        local.load_state(tmp_path)  # 2 learners' checkpoint into 1
        assert_same(weights(local, local.target_module(MID)), targets[0])
    finally:
        learnerkit.unregister_algorithm("withtarget")
