"""Modules added and removed while training (leagues, self-play): on a Learner, a local group
and two Ray learners, in both frameworks; and batches whose module sets vary on Ray."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin, random_batch

from learnerkit import (
    BatchError,
    CheckpointError,
    ConfigError,
    Learner,
    LearnerGroup,
    LearnerSpec,
    ModuleSpec,
    MultiAgentBatch,
    ScalingConfig,
    get_algorithm,
)

SPEC = ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS)
BIG = ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS, model_config={"hiddens": [16]})


def build(framework="torch", algorithm="stateful", modules=("a",), **kwargs) -> Learner:
    learner = Learner(
        LearnerSpec(
            algorithm=algorithm,
            framework=framework,
            module_spec={m: SPEC for m in modules},
            **kwargs,
        )
    )
    learner.build()
    return learner


@pytest.fixture
def stateful(register):
    """BC with an algorithm state made from each module's hyperparameters."""
    register(
        make_plugin(
            "stateful",
            compute_loss=bc_loss,
            initial_state=lambda hps: {"rate_seen": hps.learning_rate},
        )
    )


def same_arrays(x: dict, y: dict) -> bool:
    return set(x) == set(y) and all(np.array_equal(x[k], y[k]) for k in x)


def batch_of(*module_ids: str, n: int = 32) -> MultiAgentBatch:
    return MultiAgentBatch({m: random_batch(n, seed=i) for i, m in enumerate(module_ids)})


def test_an_added_module_is_built_and_trains_like_one_given_at_the_start(stateful, framework):
    overrides = {"b": {"learning_rate": 1e-4}}
    grown = build(framework)
    grown.add_module("b", SPEC, hyperparameters=overrides["b"])
    born = build(framework, modules=("a", "b"), module_hyperparameters=overrides)
    assert grown.spec.module_specs == born.spec.module_specs
    assert grown.algorithm_state("b") == {"rate_seen": 1e-4}
    assert same_arrays(grown.get_module_state()["b"], born.get_module_state()["b"])
    for learner in (grown, born):
        learner.update(batch_of("a", "b"), minibatch_size=8, shuffle=False)
    assert same_arrays(grown.get_module_state()["b"], born.get_module_state()["b"])
    assert grown.num_updates("b") == 1
    ops = grown.backend.ops
    assert ops.get_learning_rate(grown.optimizer("b")) == pytest.approx(1e-4)


def test_a_removed_module_leaves_nothing_behind(stateful, framework):
    learner = build(framework, modules=("a", "b"))
    learner.remove_module("b")
    state = learner.get_state()
    for key in ("modules", "optimizers", "algorithm_state", "num_updates"):
        assert set(state[key]) == {"a"}, key
    with pytest.raises(BatchError, match=r"batch has module id 'b', but this learner trains"):
        learner.update(batch_of("a", "b"))
    assert set(learner.update(batch_of("a"))) == {"a"}
    # The id can be used again, for a module of another shape.
    learner.add_module("b", BIG)
    assert learner.get_module_state()["b"]["pi.0.bias"].shape == (16,)


def test_module_changes_that_make_no_sense_are_config_errors(stateful):
    learner = build(modules=("a",))
    with pytest.raises(ConfigError, match=r"module 'a' already exists .* remove_module it first"):
        learner.add_module("a", SPEC)
    with pytest.raises(ConfigError, match=r"no module 'z' to remove; modules: \['a'\]"):
        learner.remove_module("z")
    with pytest.raises(ConfigError, match=r"cannot remove 'a', the only module"):
        learner.remove_module("a")
    with pytest.raises(ConfigError, match=r"overrides for module 'b' have unknown key"):
        learner.add_module("b", SPEC, hyperparameters={"lr": 1.0})
    assert set(learner.module) == {"a"}  # a refused add leaves nothing behind


def test_a_checkpoint_after_add_module_loads_only_where_that_module_exists(stateful, tmp_path):
    learner = build()
    learner.add_module("b", SPEC, train=False)
    assert learner.modules_to_train == {"a"}
    learner.update(batch_of("a", "b"))
    learner.save_state(tmp_path)
    twin = build(modules=("a", "b"))
    twin.load_state(tmp_path)
    assert same_arrays(twin.get_module_state()["a"], learner.get_module_state()["a"])
    with pytest.raises(CheckpointError, match=r"missing from it: \[\], unknown here: \['b'\]"):
        build().load_state(tmp_path)


def test_target_networks_follow_added_and_removed_modules():
    learner = build(algorithm="appo")
    learner.add_module("b", SPEC)
    assert same_arrays(
        learner.backend.get_module_state(learner.target_module("b")),
        learner.get_module_state()["b"],
    )
    assert learner.num_target_updates("b") == 0
    assert set(learner.get_state()["target_networks"]["modules"]) == {"a", "b"}
    learner.remove_module("b")
    assert set(learner.get_state()["target_networks"]["modules"]) == {"a"}


def test_a_local_group_adds_and_removes_modules(stateful):
    group = LearnerGroup(LearnerSpec(algorithm="stateful", module_spec={"a": SPEC}))
    try:
        group.add_module("b", SPEC, hyperparameters={"learning_rate": 1e-4})
        assert set(group.spec.module_specs) == {"a", "b"}
        assert group.spec.module_hyperparameters == {"b": {"learning_rate": 1e-4}}
        assert set(group.update(batch_of("a", "b"))) == {"a", "b"}
        group.remove_module("a")
        assert set(group.get_weights()) == {"b"} and set(group.spec.module_specs) == {"b"}
    finally:
        group.shutdown()


# Two Ray learners -----------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["torch", "tf"])
def ray_group(request):
    group = LearnerGroup(
        LearnerSpec(
            algorithm="bc",
            framework=request.param,
            module_spec={"a": SPEC},
            hyperparameters=get_algorithm("bc").hyperparameters(grad_clip=0.5),
            scaling=ScalingConfig(num_learners=2, num_cpus_per_learner=0.5),
        )
    )
    yield group
    group.shutdown()


def identical_across_learners(group: LearnerGroup) -> bool:
    first, *others = group.foreach_learner(lambda learner: learner.get_module_state())
    return all(
        set(first) == set(other) and all(same_arrays(first[m], other[m]) for m in first)
        for other in others
    )


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_an_added_module_trains_bitwise_identically_on_two_ray_learners(ray_group):
    ray_group.update(batch_of("a", n=64), minibatch_size=16)
    ray_group.add_module("b", SPEC, hyperparameters={"grad_clip_by": "norm", "learning_rate": 1e-3})
    assert identical_across_learners(ray_group)
    before = ray_group.get_weights()["b"]
    for seed in range(3):
        results = ray_group.update(
            MultiAgentBatch({"a": random_batch(64, seed=seed), "b": random_batch(48, seed=9)}),
            minibatch_size=16,
            num_epochs=2,
        )
        assert set(results) == {"a", "b"}
    assert not same_arrays(before, ray_group.get_weights()["b"])
    assert identical_across_learners(ray_group)
    ray_group.remove_module("b")
    ray_group.update(batch_of("a", n=64))
    assert identical_across_learners(ray_group)
    assert set(ray_group.get_weights()) == {"a"}


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_module_sets_that_vary_between_updates_never_deadlock_ray_learners(ray_group, caplog):
    ray_group.add_module("c", SPEC)
    updates = [
        # 'c' has fewer rows than learners: left out on both, with a warning.
        (MultiAgentBatch({"a": random_batch(64), "c": random_batch(1)}), {"a"}),
        (batch_of("c", n=16), {"c"}),  # 'a' absent from the whole batch
        (batch_of("a", "c"), {"a", "c"}),
    ]
    with caplog.at_level(logging.WARNING, logger="learnerkit"):
        for batch, trained in updates:
            assert set(ray_group.update(batch, minibatch_size=8)) == trained
    assert "['c'] have fewer rows than the 2 learners" in caplog.text
    ray_group.set_modules_to_train(["a"])
    frozen = ray_group.get_weights()["c"]
    # Frozen rows ignored; a batch of frozen rows only trains nothing, on both learners.
    assert set(ray_group.update(batch_of("a", "c"))) == {"a"}
    assert ray_group.update(batch_of("c")) == {}
    for batch in (batch_of("a", "c"), batch_of("c"), batch_of("a")):
        ray_group.async_update(batch, minibatch_size=8)
    ray_group.wait_async_updates()
    assert same_arrays(frozen, ray_group.get_weights()["c"])
    assert identical_across_learners(ray_group)
    ray_group.set_modules_to_train(None)
    ray_group.remove_module("c")
