"""Module classes beyond the default: named by import path, completed from an algorithm's
declaration (``Algorithm.module_classes``, ``module_settings``), acting through a numpy copy
the class offers (``numpy_copy``, not inherited), and what a loop asks its runners' policies
for (``LoopInfo.policy_outputs``)."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin

import learnerkit
from learnerkit import (
    Algorithm,
    Columns,
    ConfigError,
    Hyperparameters,
    LearnerSpec,
    LoopInfo,
    ModuleSpec,
    PluginError,
    SamplingSettings,
)
from learnerkit.backends.torch.modules import TorchMLPActorCritic
from learnerkit.rollouts import RunnerModule
from learnerkit.rollouts.acting import NumpyActorCritic, numpy_copy_class

DQN_TORCH = "learnerkit_dqn.torch_q:TorchQNetwork"


class Subclassed(TorchMLPActorCritic):
    """A subclass may compute something else: it does not inherit the numpy copy."""


def test_a_module_class_may_be_named_by_import_path_and_is_built_from_it():
    spec = ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS, module_class=DQN_TORCH)
    learner = learnerkit.Learner(LearnerSpec(algorithm="bc", module_spec=spec))
    learner.build()
    assert type(learner.module["default_policy"]).__name__ == "TorchQNetwork"


@pytest.mark.parametrize("bad", ["torch_q.TorchQNetwork", "a:b c", 3])
def test_a_module_class_that_is_no_class_or_path_is_refused(bad):
    with pytest.raises(ConfigError, match=r"class, its import path 'package.module:QualName'"):
        ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS, module_class=bad)


def test_a_path_that_does_not_import_is_a_config_error_naming_it():
    spec = ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS, module_class="no_such_package.mod:Module")
    learner = learnerkit.Learner(LearnerSpec(algorithm="bc", module_spec=spec))
    with pytest.raises(ConfigError, match=r"'no_such_package.mod:Module' cannot be imported"):
        learner.build()


def test_which_numpy_copy_a_spec_acts_with():
    default = ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS)
    assert numpy_copy_class(default) is NumpyActorCritic
    own = attrs.evolve(default, module_class=TorchMLPActorCritic)
    assert numpy_copy_class(own) is NumpyActorCritic
    assert numpy_copy_class(attrs.evolve(default, module_class=Subclassed)) is None
    by_path = attrs.evolve(default, module_class=DQN_TORCH)
    assert numpy_copy_class(by_path).__name__ == "NumpyQNetwork"
    given = attrs.evolve(default, module_class=Subclassed, numpy_copy=NumpyActorCritic)
    assert numpy_copy_class(given) is NumpyActorCritic


def test_a_runner_acts_through_the_copy_or_the_framework():
    def act(spec):
        runner = RunnerModule("torch", spec, seed=0)
        runner.set_weights(runner.get_weights(), version=1)
        out = runner.policy(np.zeros((3, 4), np.float32))
        return runner, out

    runner, out = act(ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS, module_class=Subclassed))
    assert runner.module is not None  # acting in torch, as before
    assert set(out) >= {Columns.ACTIONS, Columns.ACTION_LOGP}
    runner, out = act(
        ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS, module_class=DQN_TORCH, model_config={"hiddens": [8]})
    )
    assert runner.module is None and set(out) == {Columns.ACTIONS}  # numpy, actions only
    assert runner.value is None


def test_an_algorithm_declares_its_default_module_and_the_settings_it_reads():
    learner_spec = LearnerSpec(
        algorithm="dqn", framework="tf", module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS)
    )
    spec = learner_spec.module_specs["default_policy"]
    assert spec.module_class == "learnerkit_dqn.tf_q:TFQNetwork"
    assert spec.numpy_copy == "learnerkit_dqn.q_network:NumpyQNetwork"
    assert spec.model_config == {"dueling": True}
    # A class or a model_config entry given wins over the algorithm's.
    given = ModuleSpec(
        CARTPOLE_OBS, TWO_ACTIONS, module_class=DQN_TORCH, model_config={"dueling": False}
    )
    spec = LearnerSpec(algorithm="dqn", module_spec=given).module_specs["default_policy"]
    assert (spec.module_class, spec.numpy_copy, spec.model_config) == (
        DQN_TORCH,
        None,
        {"dueling": False},
    )


@pytest.mark.parametrize(
    ("declared", "match"),
    [
        ({"module_classes": {"torch": "pkg.mod:Cls"}}, r"frameworks missing: \['tf'\]"),
        (
            {"module_classes": {"torch": "pkg.mod:Cls", "tf": "Cls", "jax": "a:b"}},
            r"wrong entries: \{'tf': 'Cls', 'jax': 'a:b'\}",
        ),
        ({"module_settings": ("dueling",)}, r"module_settings names \['dueling'\], which are not"),
    ],
)
def test_bad_module_declarations_are_refused_at_load(register, declared, match):
    plugin = make_plugin("declares", compute_loss=bc_loss)
    plugin.algorithm = Algorithm(name="declares", hyperparameters=Hyperparameters, **declared)
    with pytest.raises(PluginError, match=match):
        register(plugin)


def test_a_loop_must_ask_its_runners_for_actions():
    info = LoopInfo("noactions", SamplingSettings, "pkg.mod:Loop", policy_outputs=("vf_preds",))
    with pytest.raises(PluginError, match=r"policy_outputs must be column names including"):
        learnerkit.register_training_loop(info)
