"""LearnerGroup with ``num_learners=0``: one Learner in this process, no Ray."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin, random_batch

from learnerkit import (
    ConfigError,
    Learner,
    LearnerGroup,
    LearnerkitError,
    LearnerSpec,
    ModuleSpec,
    ScalingConfig,
)
from learnerkit.backends import visible_gpu_count
from learnerkit.cli import main

MODULE = ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS)


def group_for(algorithm="bc", framework="torch", **kwargs) -> LearnerGroup:
    return LearnerGroup(
        LearnerSpec(algorithm=algorithm, framework=framework, module_spec=MODULE), **kwargs
    )


def same_weights(a, b) -> bool:
    return all(np.array_equal(a[m][k], b[m][k]) for m in a for k in a[m])


def test_a_local_group_runs_one_learner_in_this_process(framework):
    with group_for(framework=framework) as group:
        assert group.is_local and group.num_learners == 1
        learners = group.foreach_learner(lambda learner: learner)
        assert len(learners) == 1 and isinstance(learners[0], Learner)
        results = group.update(random_batch(32), minibatch_size=16, num_epochs=2)
        assert results["default_policy"]["num_samples"] == 32
        assert group.additional_update(timestep=3)["default_policy"]["learning_rate"] > 0


def test_weights_and_state_move_between_groups(framework, tmp_path):
    with group_for(framework=framework) as a, group_for(framework=framework) as b:
        a.update(random_batch(32), num_epochs=3)
        assert not same_weights(a.get_weights(), b.get_weights())
        b.set_weights(a.get_weights())
        assert same_weights(a.get_weights(), b.get_weights())

        a.update(random_batch(32, seed=1))
        b.set_state(a.get_state())
        assert same_weights(a.get_weights(), b.get_weights())

        a.update(random_batch(32, seed=2))
        a.save_state(tmp_path)
        b.load_state(tmp_path)
        assert same_weights(a.get_weights(), b.get_weights())


def sized_results_plugin(gate: threading.Event | None = None, fail_on_rows: int = -1):
    """BC that reports each batch's row count, optionally waiting for ``gate`` first and
    failing on a batch of ``fail_on_rows`` rows. compile_results runs in Python on every
    update in both frameworks, so it is where to wait."""

    def compile_results(batch):
        if gate is not None:
            assert gate.wait(timeout=30), "test gate never opened"
        if batch.count == fail_on_rows:
            raise ValueError(f"cannot train on {batch.count} rows")
        return {"rows": batch.count}

    return make_plugin("sized", compute_loss=bc_loss, compile_results=compile_results)


def test_async_updates_return_every_result_once_oldest_first(register, framework):
    register(sized_results_plugin())
    with group_for("sized", framework, max_async_updates=3) as group:
        collected = []
        for rows in range(10, 20):
            collected += group.async_update(random_batch(rows))
        collected += group.wait_async_updates()
        assert [r["default_policy"]["rows"] for r in collected] == list(range(10, 20))
        assert group.wait_async_updates() == []


def test_async_update_waits_for_the_oldest_when_too_many_are_in_flight(register):
    gate = threading.Event()
    register(sized_results_plugin(gate))
    with group_for("sized", max_async_updates=2) as group:
        assert group.async_update(random_batch(11)) == []
        assert group.async_update(random_batch(12)) == []
        third: list = []
        caller = threading.Thread(target=lambda: third.extend(group.async_update(random_batch(13))))
        caller.start()
        caller.join(timeout=0.5)
        assert caller.is_alive()  # back-pressure: blocked on the oldest update
        gate.set()
        caller.join(timeout=30)
        assert not caller.is_alive()
        rows = [r["default_policy"]["rows"] for r in third + group.wait_async_updates()]
        assert rows == [11, 12, 13]


def test_a_failed_async_update_raises_from_the_call_that_collects_it(register):
    # Held at the gate until submitted: async_update itself then collects nothing (an update
    # that failed before async_update returned would be collected, and raise, there).
    gate = threading.Event()
    register(sized_results_plugin(gate, fail_on_rows=7))
    with group_for("sized", max_async_updates=4) as group:
        assert group.async_update(random_batch(7)) == []
        gate.set()
        with pytest.raises(ValueError, match="cannot train on 7 rows"):
            group.wait_async_updates()
        assert group.update(random_batch(8))["default_policy"]["rows"] == 8


def test_results_of_updates_before_a_failed_one_are_returned_after_its_error(register):
    gate = threading.Event()
    register(sized_results_plugin(gate, fail_on_rows=7))
    with group_for("sized", max_async_updates=4) as group:
        for rows in (5, 7, 9):
            assert group.async_update(random_batch(rows)) == []
        gate.set()
        with pytest.raises(ValueError, match="cannot train on 7 rows"):
            group.wait_async_updates()
        assert [r["default_policy"]["rows"] for r in group.wait_async_updates()] == [5, 9]


def test_additional_update_refuses_a_timestep_that_is_not_a_whole_count(framework):
    with group_for(framework=framework) as group:
        for timestep in (-1, 2.5, "100", None):
            with pytest.raises(ConfigError, match=r"timestep=.*integer >= 0; got"):
                group.additional_update(timestep=timestep)
            with pytest.raises(ConfigError, match=r"timestep=.*integer >= 0; got"):
                group.foreach_learner(
                    lambda learner, t=timestep: learner.additional_update(timestep=t)
                )
        assert group.additional_update(timestep=np.int64(7))["default_policy"]["learning_rate"] > 0


def test_a_group_or_learner_given_something_else_than_a_learner_spec_says_what_it_takes():
    for build in (LearnerGroup, Learner):
        with pytest.raises(ConfigError, match=f"{build.__name__} takes a LearnerSpec, got a dict"):
            build({"algorithm": "bc", "module_spec": MODULE})


def test_a_blocking_call_waits_for_pending_async_updates(register, framework):
    register(sized_results_plugin())
    with group_for("sized", framework, max_async_updates=4) as group:
        before = group.get_weights()
        group.async_update(random_batch(16))
        after = group.get_weights()  # ordered after the async update
        assert not same_weights(before, after)


def test_max_async_updates_must_be_positive():
    with pytest.raises(ValueError, match="max_async_updates must be >= 1"):
        group_for(max_async_updates=0)


def test_every_call_after_shutdown_raises_a_clear_error(tmp_path):
    group = group_for()
    group.async_update(random_batch(8))
    group.shutdown()
    group.shutdown()  # a second shutdown is harmless
    calls = [
        lambda: group.update(random_batch(8)),
        lambda: group.async_update(random_batch(8)),
        lambda: group.additional_update(timestep=1),
        group.get_state,
        lambda: group.set_state({}),
        group.get_weights,
        lambda: group.set_weights({}),
        lambda: group.save_state(tmp_path),
        lambda: group.load_state(tmp_path),
        lambda: group.foreach_learner(lambda learner: None),
    ]
    for call in calls:
        with pytest.raises(LearnerkitError, match="LearnerGroup was shut down; build a new one"):
            call()


@pytest.mark.parametrize("num_gpus", [1, 0.5])
def test_a_local_learner_asking_for_a_gpu_where_there_is_none_says_how_to_use_the_cpu(
    framework, num_gpus
):
    # Any share of a GPU means the first GPU, whole, for the learner in this process.
    if visible_gpu_count(framework) > 0:
        pytest.skip(f"{framework} sees a GPU here (tests/test_gpu.py trains on it)")
    spec = LearnerSpec(
        algorithm="bc",
        framework=framework,
        module_spec=MODULE,
        scaling=ScalingConfig(num_gpus_per_learner=num_gpus),
    )
    with pytest.raises(ConfigError, match=r"sees no GPU.*set num_gpus_per_learner=0"):
        LearnerGroup(spec)


def test_train_with_num_gpus_per_learner_where_there_is_no_gpu_ends_with_the_fix(tmp_path, capsys):
    if visible_gpu_count("torch") > 0:
        pytest.skip("torch sees a GPU here (tests/test_gpu.py trains on it)")
    args = ["train", "ppo", "--num-gpus-per-learner", "1", "--out", str(tmp_path), "--quiet"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "sees no GPU" in error and "--num-gpus-per-learner 0" in error, error
