"""The Learner on both frameworks: build, update, additional_update, state in and out,
multi-agent modules, gradient clipping by global norm, and the default modules."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import BOX_ACTIONS, CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin, random_batch

import learnerkit
from learnerkit import (
    BatchError,
    CheckpointError,
    Columns,
    Hyperparameters,
    Learner,
    LearnerkitError,
    LearnerSpec,
    ModuleSpec,
    MultiAgentBatch,
)
from learnerkit.backends import policy_fn, value_fn

MODULE = ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS)


def build(algorithm="bc", framework="torch", module_spec=MODULE, **kwargs) -> Learner:
    learner = Learner(
        LearnerSpec(algorithm=algorithm, framework=framework, module_spec=module_spec, **kwargs)
    )
    learner.build()
    return learner


def imitable_batch(n=128, seed=0):
    """Actions a function of the observation, so behaviour cloning can drive the loss down."""
    batch = random_batch(n, seed=seed)
    return learnerkit.SampleBatch(
        {**batch, Columns.ACTIONS: (batch[Columns.OBS][:, 2] > 0).astype(np.int64)}
    )


def assert_weights_equal(a, b, **tol):
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], **tol, err_msg=name)


def weights_differ(a, b) -> bool:
    return any(not np.array_equal(a[name], b[name]) for name in a)


# Build and update -----------------------------------------------------------------------------
def test_a_learner_must_be_built_before_use():
    learner = Learner(LearnerSpec(algorithm="bc", module_spec=MODULE))
    with pytest.raises(LearnerkitError, match=r"call Learner.build\(\)"):
        learner.update(random_batch(4))
    with pytest.raises(LearnerkitError, match=r"call Learner.build\(\)"):
        learner.get_state()


def test_building_twice_keeps_the_same_modules(framework):
    learner = build(framework=framework)
    module = learner.module["default_policy"]
    learner.build()
    assert learner.module["default_policy"] is module


def test_update_trains_and_returns_results_per_module(framework):
    learner = build(framework=framework, hyperparameters=_bc(learning_rate=3e-3))
    batch = imitable_batch()
    first = learner.update(batch, minibatch_size=32, num_epochs=2)
    assert set(first) == {"default_policy"}
    for _ in range(15):
        last = learner.update(batch, minibatch_size=32, num_epochs=2)["default_policy"]
    assert last["policy_loss"] < 0.6 * first["default_policy"]["policy_loss"]
    assert last["num_samples"] == 128


def test_update_refuses_a_bad_minibatch_size_or_epoch_count(framework):
    learner = build(framework=framework)
    with pytest.raises(ValueError, match="minibatch_size must be >= 1"):
        learner.update(random_batch(8), minibatch_size=0)
    with pytest.raises(ValueError, match="num_epochs >= 1"):
        learner.update(random_batch(8), num_epochs=0)
    # A float reached range() and failed with "'float' object cannot be interpreted...".
    with pytest.raises(ValueError, match=r"both integers, got 10\.5 and 1"):
        learner.update(random_batch(8), minibatch_size=10.5)
    with pytest.raises(ValueError, match=r"both integers, got None and 1\.5"):
        learner.update(random_batch(8), num_epochs=1.5)
    learner.update(random_batch(8), minibatch_size=np.int64(4), num_epochs=np.int64(1))


def test_update_refuses_a_batch_for_an_unknown_module_or_an_empty_one(framework):
    learner = build(framework=framework)
    with pytest.raises(BatchError, match=r"module id 'walker'.*trains \['default_policy'\]"):
        learner.update(MultiAgentBatch({"walker": random_batch(4)}))
    with pytest.raises(BatchError, match="'default_policy' is empty"):
        learner.update(random_batch(4).slice(0, 0))


def test_update_refuses_actions_out_of_the_action_space(framework):
    batch = random_batch(8)
    batch = learnerkit.SampleBatch({**batch, Columns.ACTIONS: np.full(8, 5)})
    with pytest.raises(BatchError, match="outside Discrete"):
        build(framework=framework).update(batch)


def test_two_learners_from_one_spec_start_with_identical_weights(framework):
    a, b = build(framework=framework), build(framework=framework)
    assert_weights_equal(
        a.get_module_state()["default_policy"], b.get_module_state()["default_policy"]
    )
    c = build(framework=framework, hyperparameters=_bc(seed=1))
    assert weights_differ(
        a.get_module_state()["default_policy"], c.get_module_state()["default_policy"]
    )


# Algorithm state and additional_update ----------------------------------------------------
def adaptive_plugin():
    def compute_loss(module, batch, fwd_out, state, ops):
        out = bc_loss(module, batch, fwd_out, ops)
        return {**out, "total_loss": out["total_loss"] * state["coeff"], "coeff": state["coeff"]}

    def additional_update(state, update_kwargs):
        state["coeff"] *= update_kwargs.get("factor", 1.0)
        return {"coeff": state["coeff"]}

    return make_plugin(
        "adaptive",
        compute_loss=compute_loss,
        additional_update=additional_update,
        initial_state=lambda hps: {"coeff": 1.0},
    )


def test_additional_update_changes_the_state_the_next_loss_sees(register, framework):
    register(adaptive_plugin())
    learner = build("adaptive", framework)
    assert learner.update(random_batch(8))["default_policy"]["coeff"] == 1.0
    out = learner.additional_update(timestep=10, factor=0.5)["default_policy"]
    assert out["coeff"] == 0.5
    assert out["learning_rate"] == pytest.approx(3e-4)  # the default hook merged in
    assert learner.update(random_batch(8))["default_policy"]["coeff"] == 0.5
    assert learner.get_state()["algorithm_state"] == {"default_policy": {"coeff": 0.5}}


# State ---------------------------------------------------------------------------------------
def test_set_state_resumes_training_exactly(framework):
    trained = build(framework=framework)
    for seed in range(3):
        trained.update(imitable_batch(seed=seed), minibatch_size=32)
    state = trained.get_state()
    assert (state["algorithm"], state["framework"]) == ("bc", framework)

    resumed = build(framework=framework)
    assert weights_differ(
        resumed.get_module_state()["default_policy"], state["modules"]["default_policy"]
    )
    resumed.set_state(state)
    assert_weights_equal(
        resumed.get_module_state()["default_policy"], state["modules"]["default_policy"]
    )
    # Same weights and the same Adam moments: the next step is the same step.
    batch = imitable_batch(seed=9)
    a = trained.update(batch, shuffle=False)["default_policy"]
    b = resumed.update(batch, shuffle=False)["default_policy"]
    assert a["total_loss"] == pytest.approx(b["total_loss"], rel=1e-6)
    assert_weights_equal(
        trained.get_module_state()["default_policy"],
        resumed.get_module_state()["default_policy"],
        rtol=1e-5,
        atol=1e-7,
    )


def test_set_state_refuses_another_algorithms_or_frameworks_state(framework):
    state = build(framework=framework).get_state()
    learner = build(framework=framework)
    with pytest.raises(CheckpointError, match="written by algorithm 'ppo'; this learner runs 'bc'"):
        learner.set_state({**state, "algorithm": "ppo"})
    other = "tf" if framework == "torch" else "torch"
    with pytest.raises(CheckpointError, match=f"written by framework '{other}'"):
        learner.set_state({**state, "framework": other})


def test_module_state_is_weights_only_as_numpy_and_can_be_set(framework):
    source, target = build(framework=framework), build(framework=framework)
    source.update(imitable_batch(), num_epochs=3)
    weights = source.get_module_state()
    assert set(weights) == {"default_policy"}
    assert all(isinstance(w, np.ndarray) for w in weights["default_policy"].values())
    target.set_module_state(weights)
    assert_weights_equal(target.get_module_state()["default_policy"], weights["default_policy"])
    # Changing the returned arrays does not change the module.
    for w in weights["default_policy"].values():
        w += 1.0
    assert weights_differ(target.get_module_state()["default_policy"], weights["default_policy"])


def test_set_module_state_refuses_weights_of_another_shape_or_module(framework):
    learner = build(framework=framework)
    wide = build(
        framework=framework,
        module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS, model_config={"hiddens": [8]}),
    )
    with pytest.raises(CheckpointError, match="module 'default_policy'"):
        learner.set_module_state(wide.get_module_state())
    with pytest.raises(CheckpointError, match=r"has modules \['walker'\]"):
        learner.set_module_state({"walker": learner.get_module_state()["default_policy"]})


# Multi-agent ------------------------------------------------------------------------------
def test_each_module_of_a_multi_agent_learner_has_its_own_weights_optimizer_and_results(
    framework,
):
    specs = {"pusher": MODULE, "walker": ModuleSpec(CARTPOLE_OBS, BOX_ACTIONS)}
    learner = build(framework=framework, module_spec=specs)
    assert set(learner.module) == {"pusher", "walker"}
    assert learner.optimizer("pusher") is not learner.optimizer("walker")
    before = learner.get_module_state()
    batch = MultiAgentBatch(
        {
            "pusher": imitable_batch(32),
            "walker": random_batch(20, action_space=BOX_ACTIONS),
        }
    )
    results = learner.update(batch)
    assert set(results) == {"pusher", "walker"}
    assert results["pusher"]["num_samples"] == 32 and results["walker"]["num_samples"] == 20
    after = learner.get_module_state()
    assert weights_differ(before["pusher"], after["pusher"])
    assert weights_differ(before["walker"], after["walker"])
    # A batch for one module trains that module only.
    learner.update(MultiAgentBatch({"walker": random_batch(20, action_space=BOX_ACTIONS)}))
    again = learner.get_module_state()
    assert_weights_equal(again["pusher"], after["pusher"])
    assert weights_differ(again["walker"], after["walker"])
    state = learner.get_state()
    assert set(state["optimizers"]) == {"pusher", "walker"}


# Gradient clipping ----------------------------------------------------------------------------
def sgd_plugin():
    """Plain SGD on the loss 0.5 * sum(w ** 2), whose gradient is the weights themselves:
    the step it applies can be computed by hand."""

    def configure_optimizers(module, hyperparameters, ops):
        if ops.framework == "torch":
            import torch

            return torch.optim.SGD(module.parameters(), lr=hyperparameters.learning_rate)
        import keras

        return keras.optimizers.SGD(learning_rate=hyperparameters.learning_rate)

    def compute_loss(learner, module, fwd_out, ops):
        squares = [ops.sum(ops.square(w)) for w in learner.get_parameters(module)]
        return {"total_loss": 0.5 * sum(squares[1:], squares[0])}

    return make_plugin(
        "sgd_on_weights", compute_loss=compute_loss, configure_optimizers=configure_optimizers
    )


@pytest.mark.parametrize("grad_clip", [None, 0.5])
def test_gradients_are_clipped_by_global_norm_and_the_pre_clip_norm_reported(
    register, framework, grad_clip
):
    register(sgd_plugin())
    lr = 0.1
    learner = build(
        "sgd_on_weights",
        framework,
        hyperparameters=Hyperparameters(learning_rate=lr, grad_clip=grad_clip),
    )
    before = learner.get_module_state()["default_policy"]
    norm = np.sqrt(sum(np.sum(np.square(w.astype(np.float64))) for w in before.values()))
    results = learner.update(random_batch(8))["default_policy"]

    assert results["gradient_norm"] == pytest.approx(norm, rel=1e-5)
    scale = 1.0 if grad_clip is None else grad_clip / norm
    if grad_clip is not None:
        assert norm > grad_clip  # the clip really bites
    after = learner.get_module_state()["default_policy"]
    for name, w in before.items():
        np.testing.assert_allclose(after[name], w - lr * scale * w, rtol=1e-4, atol=1e-6)


# Default modules ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("action_space", "dist_width", "action_shape"),
    [(gym.spaces.Discrete(3), 3, (5,)), (BOX_ACTIONS, 6, (5, 3))],
)
def test_the_default_module_gives_the_shapes_its_action_space_needs(
    framework, action_space, dist_width, action_shape
):
    learner = build(framework=framework, module_spec=ModuleSpec(CARTPOLE_OBS, action_space))
    module, ops = learner.module["default_policy"], learner.backend.ops
    batch = random_batch(5, action_space=action_space)
    fwd = module.forward_train(learner.backend.to_tensors(batch))
    assert ops.to_numpy(fwd[Columns.ACTION_DIST_INPUTS]).shape == (5, dist_width)
    assert ops.to_numpy(fwd[Columns.VF_PREDS]).shape == (5,)

    dist = module.action_dist(fwd[Columns.ACTION_DIST_INPUTS])
    sample = ops.to_numpy(dist.sample())
    assert sample.shape == action_shape
    logp = ops.to_numpy(dist.logp(ops.as_tensor(batch[Columns.ACTIONS])))
    assert logp.shape == (5,) and np.all(np.isfinite(logp))
    assert ops.to_numpy(dist.entropy()).shape == (5,)

    explore = policy_fn(learner.backend, module, explore=True)(batch[Columns.OBS])
    assert explore[Columns.ACTIONS].shape == action_shape
    assert explore[Columns.ACTION_LOGP].shape == (5,)
    assert explore[Columns.VF_PREDS].shape == (5,)
    greedy = policy_fn(learner.backend, module, explore=False)(batch[Columns.OBS])
    assert greedy[Columns.ACTIONS].shape == action_shape
    np.testing.assert_array_equal(
        greedy[Columns.ACTIONS],
        policy_fn(learner.backend, module, explore=False)(batch[Columns.OBS])[Columns.ACTIONS],
    )
    assert value_fn(learner.backend, module)(batch[Columns.OBS]).shape == (5,)
    if hasattr(action_space, "n"):
        assert set(np.unique(explore[Columns.ACTIONS])) <= set(range(action_space.n))


def test_an_unknown_model_config_key_names_the_known_ones(framework):
    with pytest.raises(learnerkit.ConfigError, match=r"unknown model_config key\(s\) \['layers'\]"):
        build(
            framework=framework,
            module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS, model_config={"layers": [8]}),
        )


@pytest.mark.parametrize("hiddens", [[0], [-3], 64, [32.0]])
def test_hidden_layer_sizes_that_are_not_whole_positive_numbers_are_refused(hiddens):
    # [0] built a network of zero-width layers; [-3] and 64 failed inside torch or TensorFlow.
    with pytest.raises(learnerkit.ConfigError, match=r"model_config\['hiddens'\] must be a list"):
        build(module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS, model_config={"hiddens": hiddens}))


def test_no_hidden_layers_is_a_linear_policy_and_value(framework):
    learner = build(
        framework=framework,
        module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS, model_config={"hiddens": []}),
    )
    weights = learner.get_state()["modules"]["default_policy"]
    # One layer per head, straight from the 4 observations: (4 -> 2 logits), (4 -> 1 value).
    assert sorted(w.size for w in weights.values()) == [1, 2, 4, 8]
    results = learner.update(random_batch(8))["default_policy"]
    assert np.isfinite(results["total_loss"])


def _bc(**kwargs):
    return learnerkit.get_algorithm("bc").hyperparameters(**kwargs)
