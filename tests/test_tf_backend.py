"""The TensorFlow backend behind a Learner: learning, state round trips, clipping, schedules,
one compiled step per batch layout, multi-agent updates, and the default module."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import (
    BOX_ACTIONS,
    CARTPOLE_OBS,
    TWO_ACTIONS,
    bc_loss,
    make_plugin,
    random_batch,
)

import learnerkit
from learnerkit import (
    CheckpointError,
    Columns,
    ConfigError,
    Learner,
    LearnerSpec,
    ModuleSpec,
    SampleBatch,
)

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from learnerkit.backends import make_backend, policy_fn, value_fn  # noqa: E402
from learnerkit.distributions import Categorical  # noqa: E402
from learnerkit.model_config import ACTIVATIONS  # noqa: E402

TF_OPS = make_backend("tf").ops


def tf_device_name(device):
    """The TensorFlow device a backend asked for ``device`` runs on."""
    return make_backend("tf", device).device


MODULE_ID = learnerkit.DEFAULT_MODULE_ID


def cloning_batch(n: int = 512, seed: int = 0) -> SampleBatch:
    """Actions a small policy can learn: the sign of a linear function of the observation."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    actions = (obs[:, 0] - 0.5 * obs[:, 2] > 0).astype(np.int64)
    return SampleBatch({Columns.OBS: obs, Columns.ACTIONS: actions})


def tf_learner(algorithm: str = "bc", *, module_spec=None, **hps) -> Learner:
    hp_class = learnerkit.get_algorithm(algorithm).hyperparameters
    spec = LearnerSpec(
        algorithm=algorithm,
        framework="tf",
        module_spec=module_spec or ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
        hyperparameters=hp_class(**hps),
    )
    learner = Learner(spec)
    learner.build()
    return learner


def weights(learner: Learner) -> dict[str, np.ndarray]:
    return learner.get_module_state()[MODULE_ID]


# Learning --------------------------------------------------------------------------------
def test_bc_updates_lower_the_loss_on_tf():
    learner = tf_learner(learning_rate=1e-2)
    batch = cloning_batch()
    first = learner.update(batch, minibatch_size=64)[MODULE_ID]
    for _ in range(10):
        last = learner.update(batch, minibatch_size=64)[MODULE_ID]
    assert last["total_loss"] < 0.5 * first["total_loss"]
    assert last["num_samples"] == 512 and last["gradient_norm"] > 0


def test_greedy_policy_fn_acts_like_the_cloned_actions():
    learner = tf_learner(learning_rate=1e-2)
    batch = cloning_batch()
    for _ in range(20):
        learner.update(batch, minibatch_size=64)
    policy = policy_fn(learner.backend, learner.module[MODULE_ID], explore=False)
    test = cloning_batch(256, seed=1)
    actions = policy(test[Columns.OBS])[Columns.ACTIONS]
    assert actions.shape == (256,)
    assert (actions == test[Columns.ACTIONS]).mean() > 0.95


def test_exploring_policy_fn_returns_what_the_learner_needs():
    learner = tf_learner(module_spec=ModuleSpec(CARTPOLE_OBS, BOX_ACTIONS))
    module = learner.module[MODULE_ID]
    obs = np.zeros((5, 4), np.float32)
    out = policy_fn(learner.backend, module, explore=True)(obs)
    assert out[Columns.ACTIONS].shape == (5, 3)
    assert out[Columns.ACTION_LOGP].shape == (5,)
    assert out[Columns.ACTION_DIST_INPUTS].shape == (5, 6)
    np.testing.assert_allclose(out[Columns.VF_PREDS], value_fn(learner.backend, module)(obs))
    dist = module.action_dist(tf.constant(out[Columns.ACTION_DIST_INPUTS]))
    logp = dist.logp(tf.constant(out[Columns.ACTIONS])).numpy()
    np.testing.assert_allclose(out[Columns.ACTION_LOGP], logp, rtol=1e-5)


# State round trips -----------------------------------------------------------------------
def assert_same_state(a: dict, b: dict) -> None:
    for module_id in a["modules"]:
        for name, value in a["modules"][module_id].items():
            np.testing.assert_array_equal(value, b["modules"][module_id][name])
        opt_a, opt_b = a["optimizers"][module_id]["default"], b["optimizers"][module_id]["default"]
        assert sorted(opt_a["variables"]) == sorted(opt_b["variables"])
        for name, value in opt_a["variables"].items():
            np.testing.assert_array_equal(value, opt_b["variables"][name])


@pytest.mark.parametrize("via", ["get_state", "save_state"])
def test_state_round_trip_makes_the_next_update_identical(via, tmp_path):
    batch = cloning_batch()
    trained = tf_learner(seed=1)
    for _ in range(3):
        trained.update(batch, minibatch_size=100)
    fresh = tf_learner(seed=2)  # other weights, and an optimizer that has never stepped
    if via == "get_state":
        fresh.set_state(trained.get_state())
    else:
        trained.save_state(tmp_path)
        fresh.load_state(tmp_path)
    assert_same_state(trained.get_state(), fresh.get_state())
    optimizer_state = fresh.get_state()["optimizers"][MODULE_ID]["default"]
    step_count = optimizer_state["variables"][str(optimizer_state["names"].index("iteration"))]
    assert step_count == 18  # 6 minibatches x 3 updates

    results = [
        learner.update(batch, minibatch_size=100, shuffle=False) for learner in (trained, fresh)
    ]
    assert results[0] == results[1]
    assert_same_state(trained.get_state(), fresh.get_state())


def test_module_weights_have_stable_names_and_the_seed_decides_them():
    a, b, c = tf_learner(seed=3), tf_learner(seed=3), tf_learner(seed=4)
    assert sorted(weights(a)) == [
        f"{head}.{i}.{kind}"
        for head in ("pi", "vf")
        for i in (0, 2, 4)
        for kind in ("bias", "kernel")
    ]
    for name, value in weights(a).items():
        np.testing.assert_array_equal(value, weights(b)[name])
    assert not np.array_equal(weights(a)["pi.0.kernel"], weights(c)["pi.0.kernel"])


def test_torch_checkpoint_is_refused_by_a_tf_learner(tmp_path):
    torch_learner = Learner(
        LearnerSpec(
            algorithm="bc", framework="torch", module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS)
        )
    )
    torch_learner.build()
    torch_learner.save_state(tmp_path)
    with pytest.raises(CheckpointError, match="framework 'torch'; this learner runs 'tf'"):
        tf_learner().load_state(tmp_path)


def test_weights_or_optimizer_state_of_another_shape_are_a_checkpoint_error():
    small = tf_learner()
    big = tf_learner(
        module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS, model_config={"hiddens": [8, 8]})
    )
    with pytest.raises(CheckpointError, match=r"does not fit this learner: .* has shape"):
        big.backend.set_optimizer_state(
            big.optimizer(MODULE_ID),
            small.get_state()["optimizers"][MODULE_ID]["default"],
            "module x",
        )
    with pytest.raises(CheckpointError, match=r"'pi\.0\.bias' has shape \(64,\)"):
        big.set_module_state(small.get_module_state())


class KerasPolicy(keras.Model):
    """A custom module class written with Keras layers, whose names Keras numbers per
    process (``dense``, ``dense_2``...)."""

    def __init__(self, observation_space, action_space, model_config):
        super().__init__()
        self.hidden = keras.layers.Dense(16, activation="tanh")
        self.logits = keras.layers.Dense(int(action_space.n))
        self.hidden.build((None, 4))
        self.logits.build((None, 16))

    def call(self, batch):
        return {Columns.ACTION_DIST_INPUTS: self.logits(self.hidden(batch[Columns.OBS]))}

    def action_dist(self, dist_inputs):
        return Categorical(dist_inputs, TF_OPS)


def test_custom_keras_module_trains_and_its_state_loads_into_another_instance():
    spec = ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS, module_class=KerasPolicy)
    trained, fresh = tf_learner(module_spec=spec), tf_learner(module_spec=spec)
    batch = cloning_batch()
    losses = [trained.update(batch, minibatch_size=64)[MODULE_ID]["total_loss"] for _ in range(5)]
    assert losses[-1] < losses[0]
    assert sorted(weights(trained)) == ["bias", "bias_1", "kernel", "kernel_1"]
    fresh.set_state(trained.get_state())
    assert_same_state(trained.get_state(), fresh.get_state())


# Gradient clipping and learning rates ------------------------------------------------------
def sgd_plugin(name: str):
    """BC with plain SGD at rate 1, so a weight change is exactly the applied gradient."""

    def configure_optimizers(module, ops):
        optimizer = keras.optimizers.SGD(learning_rate=1.0)
        optimizer.build(module.trainable_variables)
        return optimizer

    return make_plugin(name, compute_loss=bc_loss, configure_optimizers=configure_optimizers)


def test_gradient_clipping_reports_the_norm_before_clipping_and_clips(register):
    register(sgd_plugin("sgd_bc"))
    batch = random_batch(64)
    unclipped, clipped = tf_learner("sgd_bc"), tf_learner("sgd_bc", grad_clip=1e-3)
    before = weights(clipped)
    norms = [learner.update(batch)[MODULE_ID]["gradient_norm"] for learner in (unclipped, clipped)]
    assert norms[0] > 1e-2
    assert norms[1] == pytest.approx(norms[0], rel=1e-5)
    after = weights(clipped)
    step = np.sqrt(sum(np.sum((after[k] - before[k]) ** 2) for k in before))
    assert step == pytest.approx(1e-3, rel=1e-3)


def test_lr_schedule_in_additional_update_sets_the_optimizer_rate():
    learner = tf_learner(learning_rate=1e-3, lr_schedule=[[0, 1e-3], [100, 1e-4]])
    out = learner.additional_update(timestep=50)[MODULE_ID]
    assert out["learning_rate"] == pytest.approx(5.5e-4)
    assert TF_OPS.get_learning_rate(learner.optimizer(MODULE_ID)) == pytest.approx(5.5e-4)
    result = learner.update(cloning_batch())[MODULE_ID]
    assert result["learning_rate"] == pytest.approx(5.5e-4)


# Compiling once --------------------------------------------------------------------------
def test_changing_a_state_coefficient_or_batch_size_does_not_retrace(register):
    traces = []

    def compute_loss(module, batch, fwd_out, state, ops):
        traces.append(1)  # python runs only while TensorFlow traces the step
        loss = bc_loss(module, batch, fwd_out, ops)["total_loss"]
        return {"total_loss": loss * (1.0 + state["kl_coeff"]), "kl_coeff": state["kl_coeff"]}

    def additional_update(state, update_kwargs):
        state["kl_coeff"] = update_kwargs["new_kl_coeff"]

    register(
        make_plugin(
            "kl_like",
            compute_loss=compute_loss,
            additional_update=additional_update,
            initial_state=lambda hps: {"kl_coeff": 0.2},
        )
    )
    learner = tf_learner("kl_like")
    assert learner.update(random_batch(300), minibatch_size=128)[MODULE_ID][
        "kl_coeff"
    ] == pytest.approx(0.2)
    for kl_coeff, n in [(0.3, 300), (0.45, 77), (1.5, 1000)]:
        learner.additional_update(new_kl_coeff=kl_coeff)
        result = learner.update(random_batch(n), minibatch_size=128)[MODULE_ID]
        assert result["kl_coeff"] == pytest.approx(kl_coeff)
    assert len(traces) == 1


# Multi-agent -----------------------------------------------------------------------------
def test_multi_agent_update_returns_results_per_module():
    specs = {
        "walker": ModuleSpec(CARTPOLE_OBS, BOX_ACTIONS),
        "chooser": ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
    }
    learner = tf_learner(module_spec=specs)
    batch = learnerkit.MultiAgentBatch(
        {
            "walker": random_batch(40, action_space=BOX_ACTIONS),
            "chooser": random_batch(30, action_space=TWO_ACTIONS),
        }
    )
    before = learner.get_module_state()
    results = learner.update(batch, minibatch_size=16)
    assert sorted(results) == ["chooser", "walker"]
    assert results["walker"]["num_samples"] == 40 and results["chooser"]["num_samples"] == 30
    after = learner.get_module_state()
    for module_id in specs:
        assert not np.array_equal(before[module_id]["pi.0.kernel"], after[module_id]["pi.0.kernel"])
    assert "log_std" in after["walker"] and "log_std" not in after["chooser"]


# The default module and devices ------------------------------------------------------------
@pytest.mark.parametrize("shared", [False, True])
def test_default_module_has_the_torch_modules_layer_sizes(shared):
    config = {"hiddens": [32, 16], "vf_share_layers": shared, "activation": "relu"}
    spec = ModuleSpec(CARTPOLE_OBS, BOX_ACTIONS, model_config=config)
    tf_state = make_backend("tf").get_module_state(make_backend("tf").build_module(spec, seed=0))
    torch_backend = make_backend("torch")
    torch_state = torch_backend.get_module_state(torch_backend.build_module(spec, seed=0))
    torch_shapes = {
        k.replace("weight", "kernel"): v.T.shape if k.endswith("weight") else v.shape
        for k, v in torch_state.items()
    }
    assert {k: v.shape for k, v in tf_state.items()} == torch_shapes


def test_default_module_starts_with_orthogonal_weights_and_the_torch_gains():
    spec = ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS, model_config={"hiddens": [16, 16]})
    state = make_backend("tf").get_module_state(make_backend("tf").build_module(spec, seed=0))
    for name, gain in [("pi.0.kernel", np.sqrt(2)), ("pi.4.kernel", 0.01), ("vf.4.kernel", 1.0)]:
        kernel = state[name].astype(np.float64)
        small = min(kernel.shape)
        gram = kernel.T @ kernel if kernel.shape[0] >= kernel.shape[1] else kernel @ kernel.T
        np.testing.assert_allclose(gram, gain**2 * np.eye(small), atol=1e-5)
    assert not state["pi.0.bias"].any()


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_both_default_modules_offer_every_activation_the_config_allows(activation):
    spec = ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS, model_config={"activation": activation})
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    for backend in (make_backend("tf"), make_backend("torch")):
        module = backend.build_module(spec, seed=0)
        assert np.isfinite(policy_fn(backend, module)(obs)[Columns.ACTION_DIST_INPUTS]).all()


def test_unknown_model_config_key_is_a_config_error_on_tf():
    spec = ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS, model_config={"hidden": [8]})
    with pytest.raises(ConfigError, match="unknown model_config key"):
        make_backend("tf").build_module(spec, seed=0)


@pytest.mark.parametrize(
    ("given", "expected"), [(None, "/CPU:0"), ("cpu", "/CPU:0"), ("/CPU:0", "/CPU:0")]
)
def test_device_names_map_to_tensorflow_devices(given, expected):
    assert tf_device_name(given) == expected


def test_a_gpu_this_machine_lacks_is_a_config_error_naming_the_devices():
    if tf.config.list_logical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="not on this machine; TensorFlow sees"):
        tf_device_name("/GPU:0")
    with pytest.raises(ConfigError, match="not on this machine"):
        tf_device_name("cuda:1")
    with pytest.raises(ConfigError, match="not a TensorFlow device"):
        tf_device_name("tpu-ish")


def test_observations_of_any_box_shape_are_flattened_by_the_default_module():
    learner = tf_learner(
        module_spec=ModuleSpec(gym.spaces.Box(-1, 1, (2, 2), np.float32), TWO_ACTIONS)
    )
    batch = random_batch(20, observation_space=gym.spaces.Box(-1, 1, (2, 2), np.float32))
    assert learner.update(batch)[MODULE_ID]["num_samples"] == 20
