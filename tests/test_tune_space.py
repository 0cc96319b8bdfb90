"""``learnerkit tune``'s search spaces and the refusals that come before any trial: the
``--param NAME=SPEC`` syntax, where each name goes in a run's settings, and bad names,
values, scheduler needs and resources failing at once with learnerkit's messages, without
starting Ray (conftest fails a test that starts Ray unmarked)."""

from __future__ import annotations

import json

import pytest

from learnerkit.cli import main
from learnerkit.errors import ConfigError
from learnerkit.loops import TrainConfig
from learnerkit.tune import (
    Domain,
    SweepConfig,
    check_resources,
    check_sweep,
    parse_param,
    parse_space,
    read_space_file,
    trial_bundles,
    trial_config,
)
from learnerkit.tune.space import nest_values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("learning_rate=loguniform(1e-4, 1e-2)", Domain("loguniform", [1e-4, 1e-2])),
        ("entropy_coeff=uniform(0, 0.01)", Domain("uniform", [0, 0.01])),
        ("num_epochs=randint(4, 12)", Domain("randint", [4, 12])),
        ("lambda_=grid(0.9, 0.95, 0.99)", Domain("grid", [0.9, 0.95, 0.99])),
        (
            "model_config.hiddens=choice([64, 64], [256, 256])",
            Domain("choice", [[64, 64], [256, 256]]),
        ),
        ("model_config.activation=choice(relu, tanh)", Domain("choice", ["relu", "tanh"])),
        ("normalize_advantages=false", False),
        ("minibatch_size=128", 128),
        ("lr_schedule=[[0, 1e-3], [10000, 1e-4]]", [[0, 1e-3], [10000, 1e-4]]),
        ("dataset_id=cartpole/expert-v0", "cartpole/expert-v0"),
    ],
)
def test_a_param_reads_as_a_domain_or_a_constant(text, expected):
    assert parse_param(text) == (text.partition("=")[0], expected)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("learning_rate", "write NAME=SPEC"),
        ("learning_rate=normal(0, 1)", "unknown search space 'normal'"),
        ("learning_rate=uniform(1e-2, 1e-4)", "lo must be below hi"),
        ("learning_rate=loguniform(0, 1e-2)", "loguniform needs lo > 0"),
        ("learning_rate=uniform(1e-4)", "takes two numbers"),
        ("num_epochs=randint(1.5, 4)", "randint takes integers"),
        ("num_epochs=choice()", "give at least one value"),
        ("num_epochs=choice(a=1)", "takes values only"),
    ],
)
def test_a_malformed_param_is_refused_with_the_syntax(text, says):
    with pytest.raises(ConfigError, match=says):
        parse_param(text)


def test_a_name_given_twice_is_refused():
    with pytest.raises(ConfigError, match="given twice"):
        parse_space(["learning_rate=1e-3", "learning_rate=choice(1e-3, 1e-4)"])


def test_edge_values_are_what_a_trial_could_get_at_the_ends():
    assert Domain("randint", [4, 12]).edge_values() == [4, 11]  # hi excluded, as Tune's
    assert Domain("loguniform", [1e-4, 1e-2]).edge_values() == [1e-4, 1e-2]
    assert Domain("choice", ["a", "b", "c"]).edge_values() == ["a", "b", "c"]


def test_a_trials_values_go_where_train_config_reads_them():
    base = TrainConfig(
        overrides={"gamma": 0.99},
        model_config={"activation": "relu"},
        module_hyperparameters={"p1": {"learning_rate": 1e-3}},
    )
    config = trial_config(
        base,
        {
            "learning_rate": 3e-4,
            "model_config.hiddens": [32],
            "module_hyperparameters.p1.entropy_coeff": 0.01,
        },
    )
    assert config.overrides == {"gamma": 0.99, "learning_rate": 3e-4}
    assert config.model_config == {"activation": "relu", "hiddens": [32]}
    assert config.module_hyperparameters == {"p1": {"learning_rate": 1e-3, "entropy_coeff": 0.01}}


def test_the_best_values_are_written_as_a_train_config_table():
    table = nest_values({"learning_rate": 1e-3, "model_config.hiddens": [32, 32]})
    assert table == {"learning_rate": 1e-3, "model_config": {"hiddens": [32, 32]}}


def test_a_config_file_may_hold_specs_and_constants(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(
        json.dumps(
            {
                "learning_rate": "loguniform(1e-4, 1e-2)",
                "minibatch_size": 128,
                "model_config": {"activation": "choice(relu, tanh)"},
            }
        )
    )
    assert read_space_file(str(path)) == {
        "learning_rate": Domain("loguniform", [1e-4, 1e-2]),
        "minibatch_size": 128,
        "model_config.activation": Domain("choice", ["relu", "tanh"]),
    }


def sweep_of(*params: str, **kwargs) -> SweepConfig:
    return SweepConfig(
        train=TrainConfig(algorithm="ppo", env_id="CartPole-v1"),
        space=parse_space(params),
        **kwargs,
    )


@pytest.mark.parametrize(
    ("params", "says"),
    [
        (
            ["learnig_rate=loguniform(1e-4, 1e-2)"],
            r"unknown hyperparameter\(s\) \['learnig_rate'\]",
        ),
        (["gamma=uniform(0.9, 1.5)"], r"refused at gamma=1\.5"),
        (["learning_rate=uniform(-1e-3, 1e-3)"], r"refused at learning_rate=-0\.001.*must be > 0"),
        (["num_epochs=randint(0, 4)"], r"refused at num_epochs=0"),
        (["model_config.activation=choice(relu, sigmoid)"], "sigmoid"),
        (["module_hyperparameters.p1.lerning_rate=1e-3"], "unknown key"),
    ],
)
def test_a_space_with_a_value_the_run_would_refuse_fails_before_any_trial(params, says):
    with pytest.raises(ConfigError, match=says):
        check_sweep(sweep_of(*params))


def test_pbt_needs_a_space_it_can_perturb():
    with pytest.raises(ConfigError, match="cannot perturb a grid"):
        check_sweep(sweep_of("learning_rate=grid(1e-3, 1e-4)", scheduler="pbt"))
    with pytest.raises(ConfigError, match="needs at least one --param"):
        check_sweep(sweep_of("learning_rate=1e-3", scheduler="pbt"))
    with pytest.raises(ConfigError, match="the model cannot vary between trials"):
        check_sweep(sweep_of("model_config.hiddens=choice([32], [64])", scheduler="pbt"))


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"scheduler": "asha", "grace_period": 0}, r"--grace-period must be >= 1 iteration, got 0"),
        (
            {"scheduler": "pbt", "perturbation_interval": -1},
            r"--perturbation-interval must be >= 1 iteration, got -1",
        ),
        ({"mode": "maximize"}, r"--mode must be 'max' or 'min', got 'maximize'"),
    ],
)
def test_scheduler_settings_tune_would_refuse_are_refused_first(kwargs, says):
    # Tune's schedulers refused them with a bare AssertionError or ValueError, after Ray
    # had started.
    params = ["learning_rate=loguniform(1e-4, 1e-2)"]
    with pytest.raises(ConfigError, match=says):
        check_sweep(sweep_of(*params, **kwargs))


def test_an_unknown_scheduler_is_refused():
    with pytest.raises(ConfigError, match="use one of fifo, asha, pbt"):
        sweep_of(scheduler="hyperband")


def test_a_trial_reserves_its_driver_learners_and_env_runners():
    config = TrainConfig(algorithm="ppo", num_learners=2, overrides={"num_env_runners": 3})
    assert trial_bundles(config) == [{"CPU": 1.0}] + [{"CPU": 1.0}] * 2 + [{"CPU": 1.0}] * 3


def test_resources_the_cluster_cannot_give_are_refused_before_any_trial():
    two_nodes = [{"CPU": 2.0}, {"CPU": 2.0}]
    fits = [[{"CPU": 1.0}, {"CPU": 1.0}, {"CPU": 1.0}]]
    check_resources(fits, two_nodes)
    with pytest.raises(ConfigError, match=r"a trial needs 5 CPU .* has 4 CPU in all"):
        check_resources([[{"CPU": 1.0}] * 5], two_nodes)
    with pytest.raises(ConfigError, match="no node of the Ray cluster has that much"):
        check_resources([[{"CPU": 1.0}, {"CPU": 3.0}]], two_nodes)


def test_the_command_refuses_a_bad_space_with_one_line_and_no_ray(capsys):
    code = main(["tune", "ppo", "--param", "learnig_rate=loguniform(1e-4, 1e-2)"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("learnerkit: error: the search space is refused")
    assert "learnig_rate" in err
