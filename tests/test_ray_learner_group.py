"""LearnerGroup with Ray learner actors (``num_learners >= 1``): lockstep training, sharding,
async back-pressure, checkpoints across group sizes, fault tolerance, and clusters.

The module's group starts a Ray session of its own (none is up before it), as a user's
program would: the module runs first among the Ray tests (``ray_first``), and the tests
after it, here and in the other modules, share that session. Learners on a two-node cluster:
``test_two_node_cluster.py``.
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import sys
import threading

import numpy as np
import pytest
import ray
from conftest import (
    CARTPOLE_OBS,
    TWO_ACTIONS,
    end_ray_session,
    learner_processes,
    make_plugin,
    random_batch,
)

import learnerkit
from learnerkit import (
    BatchError,
    CheckpointError,
    Learner,
    LearnerGroup,
    LearnerGroupError,
    LearnerSpec,
    ModuleSpec,
    MultiAgentBatch,
    ScalingConfig,
)

pytestmark = [pytest.mark.ray, pytest.mark.ray_first]

HALF_CPU = 0.5  # two learners fit twice on this 2-core machine


def bc_spec(num_learners: int, **kwargs) -> LearnerSpec:
    return LearnerSpec(
        algorithm=kwargs.pop("algorithm", "bc"),
        module_spec=kwargs.pop("module_spec", ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS)),
        scaling=ScalingConfig(num_learners=num_learners, num_cpus_per_learner=HALF_CPU),
        **kwargs,
    )


def all_weights_identical(group: LearnerGroup) -> bool:
    weights = group.foreach_learner(lambda learner: learner.get_module_state())
    return (
        all(
            np.array_equal(weights[0][mid][name], other[mid][name])
            for other in weights[1:]
            for mid in other
            for name in other[mid]
        )
        and len(weights) == group.num_learners
    )


def test_unreachable_ray_address_is_a_clear_error_not_a_hang():
    end_ray_session()  # with a session up, a group would use it and never dial the address
    with pytest.raises(
        LearnerGroupError, match=r"cannot reach the Ray cluster at '127\.0\.0\.1:9'"
    ):
        LearnerGroup(bc_spec(2), ray_address="127.0.0.1:9")


@pytest.fixture(scope="module")
def group():
    """Two learners sharing one Ray session started by the group itself."""
    end_ray_session()
    group = LearnerGroup(bc_spec(2), max_async_updates=2)
    yield group
    group.shutdown()


def test_group_starts_a_local_ray_and_its_learners_train_in_lockstep(group):
    assert ray.is_initialized()
    batch = random_batch(200)
    for _ in range(3):
        results = group.update(batch, minibatch_size=32, num_epochs=2)
    stats = results[learnerkit.DEFAULT_MODULE_ID]
    assert stats["num_samples"] == 200  # counts add up over the two shards of 100
    assert np.isfinite(stats["total_loss"]) and stats["gradient_norm"] > 0
    assert all_weights_identical(group)


def test_group_update_equals_one_local_update_on_the_whole_batch(group):
    # Two shards' averaged gradients are the whole batch's gradient: same step, same weights.
    group.set_state(group.get_state())  # start from the group's weights
    local = Learner(bc_spec(0))
    local.build()
    local.set_state(group.get_state())
    batch = random_batch(128, seed=3)
    group_loss = group.update(batch)[learnerkit.DEFAULT_MODULE_ID]["total_loss"]
    local_loss = local.update(batch)[learnerkit.DEFAULT_MODULE_ID]["total_loss"]
    assert group_loss == pytest.approx(local_loss, rel=1e-5)
    theirs, ours = group.get_weights(), local.get_module_state()
    for name, value in ours[learnerkit.DEFAULT_MODULE_ID].items():
        np.testing.assert_allclose(theirs[learnerkit.DEFAULT_MODULE_ID][name], value, atol=1e-6)


def test_async_updates_are_bounded_and_every_one_returns_a_result(group):
    returned = []
    for i in range(7):
        returned += group.async_update(random_batch(64, seed=i))
        assert group.num_in_flight <= group.max_async_updates
    returned += group.wait_async_updates()
    assert len(returned) == 7
    assert all(r[learnerkit.DEFAULT_MODULE_ID]["num_samples"] == 64 for r in returned)
    assert all_weights_identical(group)


def test_checkpoint_of_two_learners_loads_into_one_learner_and_a_local_learner(group, tmp_path):
    group.update(random_batch(64))
    group.additional_update(timestep=10)
    group.save_state(tmp_path / "ckpt")
    saved = group.get_state()
    with LearnerGroup(bc_spec(1)) as single:
        single.load_state(tmp_path / "ckpt")
        loaded = single.get_state()
        np.testing.assert_equal(loaded["modules"], saved["modules"])
        np.testing.assert_equal(
            loaded["optimizers"]["default_policy"]["default"]["state"],
            saved["optimizers"]["default_policy"]["default"]["state"],
        )
        single.set_weights(group.get_weights())
    local = Learner(bc_spec(0))
    local.build()
    local.load_state(tmp_path / "ckpt")
    np.testing.assert_equal(local.get_module_state(), saved["modules"])
    # ...and back: every learner of the group loads what one wrote.
    group.load_state(tmp_path / "ckpt")
    assert all_weights_identical(group)


def test_a_refused_state_is_a_checkpoint_error_and_no_learner_changes(group):
    group.update(random_batch(64))
    state = copy.deepcopy(group.get_state())
    weights = state["modules"][learnerkit.DEFAULT_MODULE_ID]
    name = next(iter(weights))
    weights[name] = weights[name][..., :1]
    before = group.foreach_learner(lambda learner: learner.get_module_state())
    with pytest.raises(CheckpointError) as excinfo:
        group.set_state(state)
    # The learnerkit error itself, not Ray's wrapper with its actor banner (issue 21).
    assert type(excinfo.value) is CheckpointError
    assert str(excinfo.value).startswith("weights for module 'default_policy' in state:")
    after = group.foreach_learner(lambda learner: learner.get_module_state())
    np.testing.assert_equal(after, before)


def test_killed_learner_is_restarted_from_a_healthy_one_and_training_goes_on(group, caplog):
    group.update(random_batch(64))
    start = adam_steps(group)[0]
    victim, pid = learner_processes(group)[1]
    os.kill(pid, signal.SIGKILL)
    with caplog.at_level(logging.WARNING, logger="learnerkit"):
        results = group.update(random_batch(64, seed=9))
    assert f"learner 1 (Ray actor {victim}" in caplog.text and "died" in caplog.text
    assert learner_processes(group)[1][0] != victim
    assert results[learnerkit.DEFAULT_MODULE_ID]["num_samples"] == 64
    assert all_weights_identical(group)
    # The restarted learner got the optimizer state too: both hold the same Adam step count.
    assert adam_steps(group) == [start + 1] * 2


def test_learners_killed_at_random_moments_of_long_updates_rewind_and_run_them_again(group, caplog):
    rng = np.random.default_rng(0)
    long_batch = random_batch(2048, seed=3)
    for round_ in range(3):
        start = adam_steps(group)[0]
        victim = int(rng.integers(0, 2))
        _, pid = learner_processes(group)[victim]
        # Somewhere inside an update of 2 x 10 x 32 minibatch steps (about a second here).
        killer = threading.Timer(rng.uniform(0.05, 0.6), os.kill, args=(pid, signal.SIGKILL))
        killer.start()
        with caplog.at_level(logging.WARNING, logger="learnerkit"):
            results = group.update(long_batch, minibatch_size=64, num_epochs=10)
        killer.join()
        assert results[learnerkit.DEFAULT_MODULE_ID]["num_samples"] == 2048
        assert all_weights_identical(group)
        weights = group.get_weights()[learnerkit.DEFAULT_MODULE_ID]
        assert all(np.isfinite(w).all() for w in weights.values())
        # Applied exactly once: the Adam step count moved by one update's steps, not more.
        assert adam_steps(group) == [start + 10 * 32] * 2, round_
    assert "runs again" in caplog.text


def test_a_learner_killed_with_two_updates_in_flight_leaves_each_applied_once(group, caplog):
    # The peer may finish the first update and refuse the second (its partner is gone)
    # before the group rewinds: the first must be rewound from the state before it, not
    # from the peer's current state (which would apply it twice). Two rounds: a kill
    # late (0.76 s) and one early (0.16 s) in the pair (the bug showed in the first).
    rng = np.random.default_rng(1)
    long_batch = random_batch(2048, seed=4)
    for round_ in range(2):
        start = adam_steps(group)[0]
        _, pid = learner_processes(group)[int(rng.integers(0, 2))]
        killer = threading.Timer(rng.uniform(0.05, 0.8), os.kill, args=(pid, signal.SIGKILL))
        killer.start()
        with caplog.at_level(logging.WARNING, logger="learnerkit"):
            group.async_update(long_batch, minibatch_size=64, num_epochs=10)
            group.async_update(long_batch, minibatch_size=64, num_epochs=10)
            results = group.wait_async_updates()
        killer.join()
        assert [r[learnerkit.DEFAULT_MODULE_ID]["num_samples"] for r in results] == [2048] * 2
        assert all_weights_identical(group)
        assert adam_steps(group) == [start + 2 * 10 * 32] * 2, round_


def adam_steps(group) -> list[int]:
    """Each learner's Adam step count: how many minibatch steps it has applied (0 before
    the first)."""

    def steps(learner) -> int:
        state = learner.get_state()["optimizers"]["default_policy"]["default"]["state"]
        return int(state["0"]["step"]) if "0" in state else 0

    return group.foreach_learner(steps)


def test_learner_bigger_than_any_node_is_a_clear_error():
    spec = attrs_evolve_scaling(bc_spec(2), num_cpus_per_learner=64)
    with pytest.raises(LearnerGroupError, match=r"no node of the Ray cluster can hold one learner"):
        LearnerGroup(spec)


def test_cluster_short_of_cpus_is_a_clear_error_after_the_timeout(group, monkeypatch):
    monkeypatch.setenv("LEARNERKIT_PLACEMENT_TIMEOUT_S", "1")
    spec = attrs_evolve_scaling(bc_spec(4), num_cpus_per_learner=1)
    with pytest.raises(LearnerGroupError, match=r"could not reserve 4 x 1 CPU .* CPU: \d+ free"):
        LearnerGroup(spec)


# A code-registered plugin on a group of two modules ---------------------------------------
FAR = 3.0  # a first observation above this brings the value head into my_bc's loss


def bc_and_far_values(module, batch, fwd_out, ops):
    """BC, plus the squared value of the rows whose first observation is above ``FAR``
    (over all rows): a minibatch without such a row never reaches the value head."""
    dist = module.action_dist(fwd_out[learnerkit.Columns.ACTION_DIST_INPUTS])
    loss = -ops.mean(dist.logp(batch[learnerkit.Columns.ACTIONS]))
    out = {"total_loss": loss, "policy_loss": loss}
    far = batch[learnerkit.Columns.OBS][:, 0] > FAR
    if bool(far.any()):
        values = fwd_out[learnerkit.Columns.VF_PREDS]
        out["total_loss"] = out["total_loss"] + ops.sum(ops.square(values) * far) / len(far)
    return out


def my_bc_spec(num_learners: int) -> LearnerSpec:
    return bc_spec(
        num_learners,
        algorithm="my_bc",
        module_spec={
            "a": ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
            "b": ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
        },
    )


@pytest.fixture(scope="module")
def two_modules():
    """Two learners of modules ``a`` and ``b``, trained by ``my_bc``, a BC plugin registered
    in code here (so shipped to the actors by value). One group for the tests below:
    each checks what its own updates do (results, warnings, which weights move, the
    learners alike) and none depends on the weights it starts from. Its CPUs stay reserved
    until the module ends, so these come last here."""
    learnerkit.register_algorithm(make_plugin("my_bc", compute_loss=bc_and_far_values))
    try:
        group = LearnerGroup(my_bc_spec(2))
    finally:
        learnerkit.unregister_algorithm("my_bc")
    yield group
    group.shutdown()


def test_torch_learners_train_without_importing_torch_dynamo(two_modules):
    # DDP's constructor imports torch._dynamo (0.9 s of CPU and ~70 MB per learner): on the
    # CPU, learners average their gradients with an all-reduce of their own instead.
    two_modules.update(MultiAgentBatch({"a": random_batch(32)}))
    loaded = two_modules.foreach_learner(
        lambda learner: sorted({"torch", "torch._dynamo", "sympy"} & set(sys.modules))
    )
    assert loaded == [["torch"], ["torch"]]


def test_a_parameter_that_one_learners_shard_reaches_gets_the_mean_gradient_on_both(
    two_modules, register
):
    # Each learner all-reduces a gradient for every parameter, zero where its loss did not
    # reach it, and says which it reached (DDP's find_unused_parameters): a parameter that no
    # loss reached gets no step, as on one learner, and one that a single shard reached
    # gets the mean over the learners on both, so they take one learner's step on the batch.
    register(make_plugin("my_bc", compute_loss=bc_and_far_values))
    local = Learner(my_bc_spec(0))
    local.build()
    local.set_state(two_modules.get_state())
    near = random_batch(64, seed=5)
    assert not (near[learnerkit.Columns.OBS][:, 0] > FAR).any()
    two_modules.update(MultiAgentBatch({"a": near}))
    local.update(MultiAgentBatch({"a": near}))
    stepped = two_modules.get_state()["optimizers"]["a"]["default"]["state"]
    assert set(stepped) == set(local.get_state()["optimizers"]["a"]["default"]["state"])
    far = dict(random_batch(64, seed=6))
    far[learnerkit.Columns.OBS][0, 0] = FAR + 2  # the one far row: in one learner's shard
    before = two_modules.get_weights()["a"]
    loss = two_modules.update(MultiAgentBatch({"a": far}))["a"]["total_loss"]
    assert loss == pytest.approx(local.update(MultiAgentBatch({"a": far}))["a"]["total_loss"])
    assert all_weights_identical(two_modules)
    theirs, ours = two_modules.get_weights()["a"], local.get_module_state()["a"]
    assert not np.array_equal(theirs["vf.0.weight"], before["vf.0.weight"])
    for name, value in ours.items():
        np.testing.assert_allclose(theirs[name], value, atol=1e-6)


def test_plugin_registered_in_code_trains_in_the_learner_actors(two_modules):
    results = two_modules.update(MultiAgentBatch({"a": random_batch(32)}))
    assert set(results["a"]) >= {"policy_loss", "num_samples"}
    assert all_weights_identical(two_modules)


def test_module_with_fewer_rows_than_learners_is_skipped_on_all_of_them(two_modules, caplog):
    multi = two_modules
    before = multi.get_weights()
    batch = MultiAgentBatch({"a": random_batch(40), "b": random_batch(1, seed=1)})
    with caplog.at_level(logging.WARNING, logger="learnerkit"):
        results = multi.update(batch, minibatch_size=8)  # would deadlock if "b" ran on one
    assert set(results) == {"a"}
    assert "['b'] have fewer rows than the 2 learners" in caplog.text
    after = multi.get_weights()
    assert all(np.array_equal(before["b"][k], after["b"][k]) for k in before["b"])
    assert all_weights_identical(multi)
    with pytest.raises(BatchError, match="too small to share among 2 learners"):
        multi.update(MultiAgentBatch({"a": random_batch(1), "b": random_batch(1)}))
    # A bad row anywhere fails for the whole group before any learner starts.
    bad = dict(random_batch(10))
    bad["actions"] = np.where(np.arange(10) == 9, 5, bad["actions"])
    with pytest.raises(BatchError, match="actions range over"):
        multi.update(MultiAgentBatch({"a": bad}))
    assert multi.update(MultiAgentBatch({"b": random_batch(6)}))["b"]["num_samples"] == 6


def attrs_evolve_scaling(spec: LearnerSpec, **changes) -> LearnerSpec:
    import attrs

    return attrs.evolve(spec, scaling=attrs.evolve(spec.scaling, **changes))
