"""DQN's loss against a slow float64 reference (Huber, MSE, double Q and the plain target,
importance weights, n-step discounts), in both frameworks, with its TD errors per row; its
Q-network's numpy copy against the framework module; epsilon travelling in the weights; and
bad settings refused with the fix. (Per-row values from Ray learners:
test_per_row_results.py; DQN on a Ray learner: test_replay_loop.py.)"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS

from learnerkit import (
    PER_ROW,
    Columns,
    ConfigError,
    Learner,
    LearnerSpec,
    ModuleSpec,
    SampleBatch,
    get_algorithm,
)
from learnerkit.replay import ReplayColumns
from learnerkit.rollouts.acting import numpy_copy_class

MID = "default_policy"
THREE_ACTIONS = gym.spaces.Discrete(3)


def dqn_spec(framework="torch", action_space=THREE_ACTIONS, model=None, **hps):
    hyperparameters = get_algorithm("dqn").hyperparameters(**hps)
    return LearnerSpec(
        algorithm="dqn",
        framework=framework,
        module_spec=ModuleSpec(CARTPOLE_OBS, action_space, model_config=model or {}),
        hyperparameters=hyperparameters,
    )


def replay_batch(n=48, seed=0, n_actions=3) -> SampleBatch:
    """Rows as the replay buffer samples them, with TD errors on both sides of Huber's 1."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    return SampleBatch(
        {
            Columns.OBS: obs,
            Columns.NEXT_OBS: (obs + rng.normal(scale=0.3, size=obs.shape)).astype(np.float32),
            Columns.ACTIONS: rng.integers(0, n_actions, size=n),
            Columns.REWARDS: rng.normal(scale=3.0, size=n).astype(np.float32),
            Columns.TERMINATEDS: np.zeros(n, bool),
            ReplayColumns.DISCOUNTS: np.where(rng.random(n) < 0.2, 0.0, 0.99**3).astype(np.float32),
            ReplayColumns.WEIGHTS: rng.uniform(0.2, 1.0, size=n).astype(np.float32),
            ReplayColumns.BATCH_INDEXES: np.arange(n),
        }
    )


# A slow float64 reference, row by row, from the weights alone ----------------------------
def slow_q(weights, framework, obs, dueling, hiddens):
    def dense(name, x):
        kernel = np.asarray(weights[f"{name}.{'weight' if framework == 'torch' else 'kernel'}"])
        kernel = kernel.astype(np.float64)
        matrix = kernel if framework == "tf" else kernel.T
        return x @ matrix + np.asarray(weights[f"{name}.bias"], np.float64)

    rows = []
    for x in np.asarray(obs, np.float64):
        h = x
        for i in range(len(hiddens)):
            h = np.maximum(dense(f"encoder.{2 * i}", h), 0.0)
        if dueling:
            advantage = dense("advantage", h)
            rows.append(dense("value", h) + advantage - advantage.mean())
        else:
            rows.append(dense("q", h))
    return np.array(rows)


def reference_loss(online, target, framework, batch, *, double_q, loss_fn, dueling, hiddens):
    q = slow_q(online, framework, batch[Columns.OBS], dueling, hiddens)
    q_next_online = slow_q(online, framework, batch[Columns.NEXT_OBS], dueling, hiddens)
    q_next_target = slow_q(target, framework, batch[Columns.NEXT_OBS], dueling, hiddens)
    td = np.empty(len(q))
    for i, action in enumerate(batch[Columns.ACTIONS]):
        chooser = q_next_online[i] if double_q else q_next_target[i]
        bootstrap = q_next_target[i][int(np.argmax(chooser))]
        target_value = batch[Columns.REWARDS][i] + batch[ReplayColumns.DISCOUNTS][i] * bootstrap
        td[i] = q[i][action] - target_value
    if loss_fn == "huber":
        per_row = np.where(np.abs(td) <= 1, 0.5 * td**2, np.abs(td) - 0.5)
    else:
        per_row = 0.5 * td**2
    taken = q[np.arange(len(q)), batch[Columns.ACTIONS]]
    return {
        "total_loss": float(np.mean(batch[ReplayColumns.WEIGHTS] * per_row)),
        "q_mean": float(taken.mean()),
        "td_error_mean": float(np.abs(td).mean()),
        "td_error": td,
    }


# The variants are branches of framework-free code over the backends' ops: checked on torch;
# the default on TensorFlow too (its ops, its module, its target network).
@pytest.mark.parametrize(
    ("framework", "double_q", "loss_fn", "dueling"),
    [
        ("torch", True, "huber", True),
        ("tf", True, "huber", True),
        ("torch", False, "huber", True),
        ("torch", True, "mse", False),
    ],
    ids=["torch-default", "tf-default", "torch-plain-target", "torch-mse-one-head"],
)
def test_the_loss_equals_a_slow_float64_reference(framework, double_q, loss_fn, dueling):
    hiddens = [32, 16]
    learner = Learner(
        dqn_spec(
            framework,
            model={"hiddens": hiddens},
            double_q=double_q,
            td_error_loss_fn=loss_fn,
            dueling=dueling,
        )
    )
    learner.build()
    # One update first: the online network moves away from its target.
    learner.update(replay_batch(seed=1))
    online = learner.get_module_state()[MID]
    target = learner.backend.get_module_state(learner.target_module(MID))
    assert any(not np.array_equal(online[k], target[k]) for k in online if k != "epsilon")
    batch = replay_batch(seed=2)
    results = learner.update(batch)[MID]  # one minibatch: the loss at these weights
    expected = reference_loss(
        online,
        target,
        framework,
        batch,
        double_q=double_q,
        loss_fn=loss_fn,
        dueling=dueling,
        hiddens=hiddens,
    )
    np.testing.assert_allclose(
        results[PER_ROW]["td_error"], expected["td_error"], rtol=1e-4, atol=1e-4
    )
    for name in ("total_loss", "q_mean", "td_error_mean"):
        assert results[name] == pytest.approx(expected[name], rel=1e-4, abs=1e-5), name


def test_double_q_and_the_plain_target_differ_where_the_networks_disagree():
    learner = Learner(dqn_spec(model={"hiddens": [16]}, learning_rate=1e-2))
    learner.build()
    for seed in range(10):  # far enough from the target for their argmax to differ
        learner.update(replay_batch(seed=seed))
    online = learner.get_module_state()[MID]
    target = learner.backend.get_module_state(learner.target_module(MID))
    batch = replay_batch(seed=3)
    kwargs = {"loss_fn": "huber", "dueling": True, "hiddens": [16]}
    double = reference_loss(online, target, "torch", batch, double_q=True, **kwargs)
    plain = reference_loss(online, target, "torch", batch, double_q=False, **kwargs)
    # Plain DQN bootstraps from the target's max, never below what double Q picks.
    assert (plain["td_error"] <= double["td_error"] + 1e-9).all()
    assert (plain["td_error"] < double["td_error"] - 1e-6).any()


# TensorFlow's dueling heads are checked by the loss's reference; its single head here.
@pytest.mark.parametrize(
    ("framework", "dueling"), [("torch", True), ("torch", False), ("tf", False)]
)
def test_the_numpy_copy_computes_what_the_module_computes(framework, dueling):
    learner = Learner(dqn_spec(framework, model={"hiddens": [64, 32]}, dueling=dueling))
    learner.build()
    learner.update(replay_batch(seed=4))  # not the initial weights
    spec = learner.spec.module_specs[MID]
    copy_class = numpy_copy_class(spec)
    assert copy_class.__name__ == "NumpyQNetwork"
    weights = learner.get_module_state()[MID]
    assert copy_class.weight_layout(spec, framework) == {k: np.shape(v) for k, v in weights.items()}
    copy = copy_class.from_weights(weights, spec, framework, np.random.default_rng(0))
    obs = np.random.default_rng(5).normal(size=(256, 4)).astype(np.float32)
    module = learner.module[MID]
    expected = learner.backend.numpy_call(module.q_values, obs)
    np.testing.assert_allclose(copy.q_values(obs), expected, rtol=1e-5, atol=1e-5)
    greedy = learner.backend.numpy_call(module.forward_inference, obs)[Columns.ACTIONS]
    np.testing.assert_array_equal(copy.forward_inference(obs)[Columns.ACTIONS], greedy)


@pytest.mark.parametrize("shape", [(84, 84, 4), (16, 16, 3)], ids=["84x84x4", "16x16x3"])
def test_image_observations_go_through_the_conv_encoder_in_the_module_and_its_copy(
    framework, shape
):
    pixels = gym.spaces.Box(0, 255, shape, np.uint8)
    spec = LearnerSpec(
        algorithm="dqn",
        framework=framework,
        module_spec=ModuleSpec(pixels, THREE_ACTIONS),
        hyperparameters=get_algorithm("dqn").hyperparameters(),
    )
    learner = Learner(spec)
    learner.build()
    module_spec = learner.spec.module_specs[MID]
    weights = learner.get_module_state()[MID]
    assert any(name.startswith("conv.") for name in weights)
    copy = numpy_copy_class(module_spec).from_weights(
        weights, module_spec, framework, np.random.default_rng(0)
    )
    obs = np.random.default_rng(5).integers(0, 256, (4, *shape), dtype=np.uint8)
    expected = learner.backend.numpy_call(learner.module[MID].q_values, obs)
    np.testing.assert_allclose(copy.q_values(obs), expected, rtol=1e-4, atol=1e-5)


def test_epsilon_follows_its_schedule_into_the_weights_and_the_runners_copy(framework):
    learner = Learner(dqn_spec(framework, epsilon=[[0, 1.0], [1000, 0.1]]))
    learner.build()
    results = learner.additional_update(timestep=500)[MID]
    assert results["epsilon"] == pytest.approx(0.55)
    weights = learner.get_module_state()[MID]
    assert float(weights["epsilon"]) == pytest.approx(0.55)
    spec = learner.spec.module_specs[MID]
    copy = numpy_copy_class(spec).from_weights(weights, spec, framework, np.random.default_rng(0))
    obs = np.zeros((20_000, 4), np.float32)  # one greedy action for all: others are random
    actions = copy.forward_exploration(obs)[Columns.ACTIONS]
    greedy = copy.forward_inference(obs[:1])[Columns.ACTIONS][0]
    # A random action is one of 3, so 2/3 of the random ones differ from the greedy one.
    assert np.mean(actions != greedy) == pytest.approx(0.55 * 2 / 3, abs=0.02)


def test_the_target_network_moves_every_target_network_update_freq_env_steps():
    learner = Learner(dqn_spec(target_network_update_freq=100, tau=0.5))
    learner.build()
    counts = []
    for timestep in (50, 99, 100, 150, 199, 200):
        learner.update(replay_batch(seed=timestep))
        counts.append(learner.additional_update(timestep=timestep)[MID]["target_updates_total"])
    assert counts == [0, 0, 1, 1, 1, 2]


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"epsilon": [[0, 1.0], [100, 1.5]]}, r"epsilon values are probabilities"),
        ({"epsilon": [[10, 1.0]]}, r"starting at timestep 0"),
        ({"tau": 0.0}, r"tau must be in \(0, 1\]"),
        ({"td_error_loss_fn": "l1"}, r"td_error_loss_fn"),
        ({"replay_buffer_capacity": 3, "n_step": 3}, r"must exceed n_step"),
        ({"training_intensity": -1}, r"training_intensity must be > 0"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(settings, match):
    with pytest.raises(ConfigError, match=match):
        get_algorithm("dqn").hyperparameters(**settings)


def test_a_continuous_action_space_or_unknown_model_key_is_refused_with_the_fix():
    box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    with pytest.raises(ConfigError, match=r"Discrete action space.*use an actor-critic"):
        Learner(dqn_spec(action_space=box)).build()
    with pytest.raises(ConfigError, match=r"unknown model_config key\(s\) \['vf_share_layers'\]"):
        Learner(dqn_spec(model={"vf_share_layers": True})).build()


def test_a_batch_without_the_replay_columns_is_refused_naming_them():
    learner = Learner(dqn_spec(action_space=TWO_ACTIONS))
    learner.build()
    columns = dict(replay_batch(n_actions=2))
    del columns[ReplayColumns.DISCOUNTS]
    with pytest.raises(Exception, match="discounts"):
        learner.update(SampleBatch(columns))
