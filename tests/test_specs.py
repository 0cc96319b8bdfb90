"""Config errors fail when the spec is made, naming the field, what it allows, and the fix."""

from __future__ import annotations

import attrs
import gymnasium as gym
import numpy as np
import pytest
from conftest import BOX_ACTIONS, CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin

import learnerkit
from learnerkit import (
    ConfigError,
    Hyperparameters,
    LearnerSpec,
    ModuleSpec,
    ScalingConfig,
    UnknownAlgorithmError,
    schedule_value,
)
from learnerkit.settings import structure_hyperparameters

MODULE = ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS)


@pytest.mark.parametrize("value", [-1e-3, 0.0])
def test_a_non_positive_learning_rate_names_the_field(value):
    with pytest.raises(ConfigError, match=r"Hyperparameters\.learning_rate must be > 0"):
        Hyperparameters(learning_rate=value)


def test_a_negative_learning_rate_is_refused_for_every_installed_algorithm():
    # An algorithm's subclass may redefine learning_rate to change its default (which drops
    # the field's validator); the spec checks the shared fields again.
    for name, algorithm in learnerkit.load_plugins().items():
        hps = attrs.evolve(algorithm.hyperparameters(), learning_rate=1.0)
        object.__setattr__(hps, "learning_rate", -1.0)  # whatever the subclass let through
        with pytest.raises(ConfigError, match=r"\.learning_rate must be > 0") as excinfo:
            LearnerSpec(algorithm=name, module_spec=MODULE, hyperparameters=hps)
        assert algorithm.hyperparameters.__name__ in str(excinfo.value)


def test_a_negative_learning_rate_for_bc_is_refused_when_the_spec_is_made():
    hps = learnerkit.get_algorithm("bc").hyperparameters
    with pytest.raises(ConfigError, match=r"learning_rate must be > 0, got -0\.5"):
        LearnerSpec(algorithm="bc", module_spec=MODULE, hyperparameters=_make(hps, -0.5))


def _make(cls, learning_rate):
    try:
        return cls(learning_rate=learning_rate)
    except ConfigError:  # the class checks it itself: bypass to test the spec's own check
        hps = cls()
        object.__setattr__(hps, "learning_rate", learning_rate)
        return hps


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"grad_clip": -1.0}, "grad_clip"),
        ({"lr_schedule": [[10, 1e-3]]}, "lr_schedule"),
        ({"lr_schedule": [[0, 1e-3], [100, 1e-4], [50, 1e-5]]}, "lr_schedule"),
    ],
)
def test_other_bad_shared_hyperparameters_name_their_field(kwargs, field):
    with pytest.raises(ConfigError, match=rf"Hyperparameters\.{field}"):
        Hyperparameters(**kwargs)


def test_hyperparameters_are_frozen_and_varied_with_evolve():
    hps = Hyperparameters(learning_rate=1e-3)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        hps.learning_rate = 1.0
    assert attrs.evolve(hps, learning_rate=2e-3).learning_rate == 2e-3
    with pytest.raises(ConfigError, match="learning_rate"):
        attrs.evolve(hps, learning_rate=-2e-3)


def test_a_learning_rate_schedule_interpolates_and_stays_flat_past_its_ends():
    schedule = ((0, 1.0), (100, 0.0), (200, 0.5))
    assert [schedule_value(schedule, t) for t in (0, 50, 100, 150, 200, 10_000)] == [
        1.0,
        0.5,
        0.0,
        0.25,
        0.5,
        0.5,
    ]


def test_an_unknown_hyperparameter_in_a_config_file_is_named_with_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown hyperparameter\(s\) \['learnign_rate'\]"):
        structure_hyperparameters(Hyperparameters, {"learnign_rate": 1e-3})
    assert structure_hyperparameters(Hyperparameters, {"seed": 3}).seed == 3


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # A converter's own error (float("fast")) reached the command line as a traceback.
        ({"learning_rate": "fast"}, r"learning_rate='fast' cannot be used \(could not convert"),
        ({"gamma": [0.9]}, r"gamma=\[0\.9\] cannot be used"),
    ],
)
def test_a_config_file_value_of_the_wrong_kind_names_its_field(values, expected):
    ppo = learnerkit.get_algorithm("ppo").hyperparameters
    with pytest.raises(ConfigError, match=rf"PPOHyperparameters: {expected}"):
        structure_hyperparameters(ppo, values)


def test_an_unknown_framework_names_the_allowed_values():
    with pytest.raises(ConfigError, match=r"framework must be one of \['torch', 'tf'\], got 'jax'"):
        LearnerSpec(algorithm="bc", framework="jax", module_spec=MODULE)


def test_a_framework_the_algorithm_does_not_support_is_refused(register):
    register(make_plugin("torch_only", compute_loss=bc_loss, frameworks=("torch",)))
    with pytest.raises(ConfigError, match=r"supports frameworks \['torch'\], not 'tf'"):
        LearnerSpec(algorithm="torch_only", framework="tf", module_spec=MODULE)


def test_an_unknown_algorithm_lists_the_installed_ones():
    with pytest.raises(UnknownAlgorithmError, match="unknown algorithm 'ppp'") as excinfo:
        LearnerSpec(algorithm="ppp", module_spec=MODULE)
    assert "'bc'" in str(excinfo.value)
    assert "pip install learnerkit-ppp" in str(excinfo.value)
    assert isinstance(excinfo.value, ConfigError)


def test_hyperparameters_of_another_class_are_refused_naming_the_expected_one():
    with pytest.raises(ConfigError, match="must be a BCHyperparameters, got Hyperparameters"):
        LearnerSpec(algorithm="bc", module_spec=MODULE, hyperparameters=Hyperparameters())


def test_hyperparameters_default_to_the_algorithms_own_class():
    spec = LearnerSpec(algorithm="bc", module_spec=MODULE)
    assert type(spec.hyperparameters) is learnerkit.get_algorithm("bc").hyperparameters


@pytest.mark.parametrize(
    ("observation_space", "action_space", "field"),
    [
        (gym.spaces.Discrete(4), TWO_ACTIONS, "observation_space"),
        (CARTPOLE_OBS, gym.spaces.MultiBinary(3), "action_space"),
        (CARTPOLE_OBS, "left-or-right", "action_space"),
        (np.zeros(4), TWO_ACTIONS, "observation_space"),
    ],
)
def test_a_space_the_default_modules_cannot_handle_is_refused(
    observation_space, action_space, field
):
    with pytest.raises(ConfigError, match=rf"ModuleSpec\.{field} must be a gymnasium space"):
        ModuleSpec(observation_space, action_space)


def test_a_multi_agent_module_spec_is_a_dict_of_module_specs():
    spec = LearnerSpec(
        algorithm="bc",
        module_spec={"walker": ModuleSpec(CARTPOLE_OBS, BOX_ACTIONS), "pusher": MODULE},
    )
    assert set(spec.module_specs) == {"walker", "pusher"}
    single = LearnerSpec(algorithm="bc", module_spec=MODULE)
    assert single.module_specs == {"default_policy": MODULE}


@pytest.mark.parametrize(
    "module_spec", [{}, {"walker": "not a spec"}, {"walker": MODULE, "pusher": None}]
)
def test_a_bad_multi_agent_module_spec_says_what_it_must_be(module_spec):
    with pytest.raises(ConfigError, match="non-empty dict of module id to ModuleSpec"):
        LearnerSpec(algorithm="bc", module_spec=module_spec)


@pytest.mark.parametrize("field", ["num_learners", "num_cpus_per_learner", "num_gpus_per_learner"])
def test_negative_scaling_names_the_field(field):
    with pytest.raises(ConfigError, match=rf"ScalingConfig\.{field} must be (an integer )?>= 0"):
        ScalingConfig(**{field: -1})


def test_a_fractional_number_of_learners_is_refused():
    with pytest.raises(ConfigError, match=r"ScalingConfig\.num_learners must be an integer >= 0"):
        ScalingConfig(num_learners=1.5)
    assert ScalingConfig(num_learners=np.int64(2)).num_learners == 2


@pytest.mark.parametrize("num_gpus", [1.5, 2])
def test_more_than_one_gpu_per_learner_is_refused_with_the_way_to_use_several(num_gpus):
    with pytest.raises(ConfigError, match=r"<= 1 .*num_learners=N with num_gpus_per_learner=1"):
        ScalingConfig(num_gpus_per_learner=num_gpus)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # 0 used to mean "not given" (the preset's budget: 56,832 steps of PPO), and -5 a
        # "run" of no steps that wrote a checkpoint; 0 divided by zero at the first check.
        ({"stop_timesteps": 0}, r"stop_timesteps must be an integer >= 1, got 0"),
        ({"stop_timesteps": -5}, r"stop_timesteps must be an integer >= 1, got -5"),
        ({"stop_timesteps": 2.5}, r"stop_timesteps must be an integer >= 1, got 2.5"),
        ({"checkpoint_every": 0}, r"checkpoint_every must be an integer >= 1, got 0"),
        ({"stop_reward": float("nan")}, r"stop_reward must be a finite number or None"),
        ({"seed": -1}, r"seed must be an integer >= 0, got -1"),
        ({"seed": 1.5}, r"seed must be an integer >= 0, got 1.5"),
        # It imported TensorFlow first (seeding "the other framework"), then failed.
        ({"framework": "jax"}, r"framework must be one of \['torch', 'tf'\], got 'jax'"),
    ],
)
def test_a_train_config_that_cannot_run_names_the_field(kwargs, expected):
    from learnerkit.loops import TrainConfig

    with pytest.raises(ConfigError, match=rf"TrainConfig\.{expected}"):
        TrainConfig(**kwargs)


def test_a_train_config_takes_numpy_integers_and_whole_floats_as_ints():
    from learnerkit.loops import TrainConfig

    config = TrainConfig(seed=np.int64(3), stop_timesteps=1e6, checkpoint_every=np.int32(5))
    assert (config.seed, config.stop_timesteps, config.checkpoint_every) == (3, 1_000_000, 5)
    assert {type(v) for v in (config.seed, config.stop_timesteps, config.checkpoint_every)} == {int}


def test_the_cli_names_a_stop_timesteps_it_cannot_use_in_one_line(tmp_path, capsys):
    from learnerkit.cli import main

    assert main(["train", "ppo", "--stop-timesteps", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "TrainConfig.stop_timesteps must be an integer >= 1, got 0" in err
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


@pytest.mark.parametrize("command", ["train", "tune"])
def test_a_config_file_holding_a_setting_of_the_run_names_its_flag(tmp_path, capsys, command):
    # It was "unknown hyperparameter(s) ['stop_timesteps']", with the list of them.
    from learnerkit.cli import main

    config = tmp_path / "run.json"
    config.write_text('{"learning_rate": 0.001, "stop_timesteps": 5000}')
    assert main([command, "ppo", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "sets ['stop_timesteps'], which are settings of the run" in err
    assert "(stop_timesteps: --stop-timesteps)" in err


def test_a_learning_rate_given_by_the_user_replaces_the_presets_schedule(tmp_path):
    from learnerkit.loops import TrainConfig, Trainer

    def settings(**overrides):
        """The hyperparameters a run would train with (built, not trained)."""
        config = TrainConfig(env_id="CartPole-v1", out_dir=str(tmp_path), overrides=overrides)
        trainer = Trainer(config)
        trainer.close()
        return trainer.hps

    preset = settings()
    assert preset.lr_schedule is not None  # CartPole's preset decays the step size
    hps = settings(learning_rate=1e-4)
    assert hps.learning_rate == 1e-4 and hps.lr_schedule is None
    assert hps.lambda_ == preset.lambda_  # the rest of the preset stays
    hps = settings(learning_rate=1e-4, lr_schedule=[[0, 1e-4], [10, 1e-5]])
    assert hps.lr_schedule == ((0, 1e-4), (10, 1e-5))
