"""PPO's non-loss behaviour: adaptive KL, schedules, validation, batch checks, learning."""

from __future__ import annotations

import subprocess
import sys

import gymnasium
import numpy as np
import pytest
from learnerkit_ppo import PPOHyperparameters

import learnerkit
from learnerkit import (
    DEFAULT_MODULE_ID,
    BatchError,
    Columns,
    ConfigError,
    Learner,
    LearnerSpec,
    ModuleSpec,
)

FRAMEWORKS = ["torch", "tf"]
OBS_SPACE = gymnasium.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACTION_SPACE = gymnasium.spaces.Discrete(2)
MID = DEFAULT_MODULE_ID


def build_learner(framework="torch", **hps):
    spec = LearnerSpec(
        algorithm="ppo",
        framework=framework,
        module_spec=ModuleSpec(OBS_SPACE, ACTION_SPACE, model_config={"hiddens": [16]}),
        hyperparameters=PPOHyperparameters(**hps),
    )
    learner = Learner(spec)
    learner.build()
    return learner


def synthetic_batch(n=256, seed=0):
    """Uniform old policy; the advantage is +1 where the action matches sign(obs[0]), else -1."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, (n, 4)).astype(np.float32)
    actions = rng.integers(0, 2, n)
    good = actions == (obs[:, 0] > 0)
    return {
        Columns.OBS: obs,
        Columns.ACTIONS: actions,
        Columns.ACTION_LOGP: np.full(n, np.log(0.5), np.float32),
        Columns.ACTION_DIST_INPUTS: np.zeros((n, 2), np.float32),
        Columns.VF_PREDS: np.zeros(n, np.float32),
        Columns.ADVANTAGES: np.where(good, 1.0, -1.0).astype(np.float32),
        Columns.VALUE_TARGETS: np.where(good, 1.0, 0.0).astype(np.float32),
    }


# The adaptive KL coefficient ------------------------------------------------------------
@pytest.mark.parametrize(
    ("sampled_kl", "expected"),
    [(0.05, 0.3), (0.021, 0.3), (0.004, 0.1), (0.01, 0.2), (0.02, 0.2), (0.005, 0.2)],
)
def test_kl_coeff_grows_above_twice_the_target_and_shrinks_below_half(sampled_kl, expected):
    learner = build_learner(use_kl_loss=True, kl_coeff=0.2, kl_target=0.01)
    results = learner.additional_update(timestep=100, sampled_kl_values={MID: sampled_kl})
    assert results[MID]["kl_coeff"] == pytest.approx(expected)
    assert learner.algorithm_state(MID)["kl_coeff"] == pytest.approx(expected)


def test_kl_coeff_compounds_over_updates():
    learner = build_learner(use_kl_loss=True, kl_coeff=0.2, kl_target=0.01)
    for _ in range(3):
        learner.additional_update(timestep=0, sampled_kl_values={MID: 1.0})
    assert learner.algorithm_state(MID)["kl_coeff"] == pytest.approx(0.2 * 1.5**3)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"sampled_kl_values": {}}, {"sampled_kl_values": {"other_policy": 1.0}}],
    ids=["no_kwarg", "empty", "other_module"],
)
def test_kl_coeff_is_unchanged_without_a_sampled_kl_for_the_module(kwargs):
    learner = build_learner(use_kl_loss=True, kl_coeff=0.2)
    assert learner.additional_update(timestep=0, **kwargs)[MID]["kl_coeff"] == 0.2


def test_kl_coeff_is_not_adapted_when_the_kl_loss_is_off():
    learner = build_learner(use_kl_loss=False, kl_coeff=0.2)
    learner.additional_update(timestep=0, sampled_kl_values={MID: 1.0})
    assert learner.algorithm_state(MID)["kl_coeff"] == 0.2


def test_adapted_kl_coeff_weights_the_kl_term_of_the_next_loss():
    learner = build_learner(use_kl_loss=True, kl_coeff=0.2, kl_target=0.01)
    batch = synthetic_batch(n=32)
    batch[Columns.ACTION_DIST_INPUTS] = np.tile([[1.0, -1.0]], (32, 1)).astype(np.float32)
    tensors = learner.backend.to_tensors(batch)

    def loss():
        fwd_out = learner.module[MID].forward_train(tensors)
        out = learner.compute_loss_for_module(
            module_id=MID, hps=learner.hps, batch=tensors, fwd_out=fwd_out
        )
        return {k: float(learner.backend.ops.to_numpy(v)) for k, v in out.items()}

    before = loss()
    learner.additional_update(timestep=0, sampled_kl_values={MID: 1.0})  # 0.2 -> 0.3
    after = loss()
    assert before["mean_kl"] > 0.1
    assert after["total_loss"] - before["total_loss"] == pytest.approx(
        0.1 * before["mean_kl"], rel=1e-4
    )


def test_adapted_kl_coeff_survives_a_checkpoint(tmp_path):
    learner = build_learner(use_kl_loss=True, kl_coeff=0.2)
    learner.additional_update(timestep=0, sampled_kl_values={MID: 1.0})
    learner.save_state(tmp_path)
    restored = build_learner(use_kl_loss=True, kl_coeff=0.2)
    restored.load_state(tmp_path)
    assert restored.algorithm_state(MID)["kl_coeff"] == pytest.approx(0.3)


# Schedules ------------------------------------------------------------------------------
def test_entropy_coeff_follows_its_schedule_over_env_steps():
    learner = build_learner(entropy_coeff_schedule=[[0, 0.1], [1000, 0.02], [3000, 0.0]])
    assert learner.algorithm_state(MID)["entropy_coeff"] == pytest.approx(0.1)
    for timestep, expected in [(0, 0.1), (500, 0.06), (1000, 0.02), (2000, 0.01), (10**6, 0.0)]:
        results = learner.additional_update(timestep=timestep)
        assert results[MID]["entropy_coeff"] == pytest.approx(expected), timestep
        assert learner.algorithm_state(MID)["entropy_coeff"] == pytest.approx(expected)


def test_update_reports_the_current_coefficients():
    learner = build_learner(
        entropy_coeff_schedule=[[0, 0.1], [1000, 0.0]], minibatch_size=64, num_envs_per_env_runner=8
    )
    learner.additional_update(timestep=250)
    results = learner.update(synthetic_batch(n=64))[MID]
    assert results["entropy_coeff"] == pytest.approx(0.075)
    assert results["kl_coeff"] == pytest.approx(0.2)
    expected_keys = {
        "total_loss", "policy_loss", "vf_loss", "entropy", "mean_kl", "kl_coeff",
        "entropy_coeff", "vf_explained_var", "clip_fraction", "gradient_norm", "learning_rate",
    }  # fmt: skip
    assert expected_keys <= set(results)


def test_learning_rate_follows_lr_schedule():
    learner = build_learner(lr_schedule=[[0, 1e-3], [1000, 1e-4]])
    for timestep, expected in [(0, 1e-3), (500, 5.5e-4), (1000, 1e-4), (5000, 1e-4)]:
        results = learner.additional_update(timestep=timestep)
        assert results[MID]["learning_rate"] == pytest.approx(expected)
        optimizer = learner.optimizer(MID)
        assert learner.backend.ops.get_learning_rate(optimizer) == pytest.approx(expected)


def test_optimizer_is_adam_with_the_configured_learning_rate_and_epsilon():
    optimizer = build_learner(learning_rate=2e-3, adam_epsilon=1e-6).optimizer(MID)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-3)
    assert optimizer.param_groups[0]["eps"] == pytest.approx(1e-6)


# Validation -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clip_param": -0.1}, r"PPOHyperparameters\.clip_param must be > 0, got -0\.1"),
        ({"kl_target": 0}, r"kl_target must be > 0"),
        ({"kl_coeff": -1}, r"kl_coeff must be >= 0"),
        ({"entropy_coeff": -0.01}, r"entropy_coeff must be >= 0"),
        ({"vf_loss_coeff": -1}, r"vf_loss_coeff must be >= 0"),
        ({"vf_clip_param": 0}, r"vf_clip_param must be > 0"),
        ({"learning_rate": 0}, r"learning_rate must be > 0"),
        ({"adam_epsilon": -1e-5}, r"adam_epsilon must be > 0"),
        ({"grad_clip": 0}, r"grad_clip must be > 0"),
        ({"gamma": 1.5}, r"gamma must be in \[0, 1\]"),
        ({"lambda_": -0.1}, r"lambda_ must be in \[0, 1\]"),
        ({"num_epochs": 0}, r"num_epochs must be an integer >= 1"),
        ({"num_envs_per_env_runner": 2.5}, r"num_envs_per_env_runner must be an integer >= 1"),
        ({"minibatch_size": 1000}, r"minibatch_size \(1000\) exceeds .* = 512"),
        ({"vf_clip_around_old_value": True}, r"vf_clip_around_old_value needs vf_clip_param"),
        ({"entropy_coeff_schedule": [[10, 0.1]]}, r"entropy_coeff_schedule must .* timestep 0"),
        ({"entropy_coeff_schedule": [[0, -0.1]]}, r"entropy_coeff_schedule values must be >= 0"),
    ],
)
def test_invalid_hyperparameters_name_the_field(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PPOHyperparameters(**kwargs)


def test_missing_advantages_column_names_the_column_and_the_fix():
    learner = build_learner(minibatch_size=64)
    batch = synthetic_batch(n=64)
    del batch[Columns.ADVANTAGES]
    with pytest.raises(BatchError, match=r"lacks column 'advantages' \(ppo needs it.*compute_gae"):
        learner.update(batch)


# The plugin as installed ----------------------------------------------------------------
def test_ppo_is_found_through_its_entry_point_with_metadata():
    algorithm = learnerkit.get_algorithm("ppo")
    assert algorithm.package == "learnerkit-ppo"
    assert algorithm.frameworks == ("torch", "tf")
    assert algorithm.hyperparameters is PPOHyperparameters
    assert Columns.ADVANTAGES in algorithm.required_columns


def test_importing_the_plugin_loads_no_framework():
    code = (
        "import sys, learnerkit_ppo; "
        "print([m for m in ('torch', 'tensorflow', 'ray') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# Learning -------------------------------------------------------------------------------
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_few_updates_make_positively_advantaged_actions_more_likely(framework):
    learner = build_learner(
        framework, learning_rate=3e-3, minibatch_size=64, num_envs_per_env_runner=8
    )
    batch = synthetic_batch(n=256)
    good = batch[Columns.ADVANTAGES] > 0
    module = learner.module[MID]
    to_numpy = learner.backend.ops.to_numpy

    def prob_of_taken_actions():
        tensors = learner.backend.to_tensors(batch)
        dist = module.action_dist(module.forward_train(tensors)[Columns.ACTION_DIST_INPUTS])
        return np.exp(to_numpy(dist.logp(tensors[Columns.ACTIONS])))

    before = prob_of_taken_actions()
    for _ in range(3):
        results = learner.update(batch, minibatch_size=64, num_epochs=2)[MID]
    after = prob_of_taken_actions()
    assert after[good].mean() > before[good].mean() + 0.05
    assert after[~good].mean() < before[~good].mean() - 0.05
    assert results["clip_fraction"] > 0  # the ratio moved far enough to be clipped
