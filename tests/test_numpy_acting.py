"""Env runners act with a numpy copy of the default module: the same values, distribution
inputs, greedy actions and log-probabilities as the module in its framework, actions drawn
from the right distribution, weights refreshed by set_weights (built from the weights alone,
without the framework); other modules act in their framework."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from learnerkit import CheckpointError, Columns, ModuleSpec
from learnerkit.backends import make_backend, policy_fn
from learnerkit.distributions import Categorical, DiagGaussian
from learnerkit.rollouts import RunnerModule
from learnerkit.rollouts.acting import NumpyActorCritic, NumpyOps, default_module_layout

OBS = gym.spaces.Box(-1.0, 1.0, (3, 2), np.float32)  # flattened by the module
SPACES = {
    "discrete": gym.spaces.Discrete(3),
    "box": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
}


def _framework_outputs(framework, backend, module, obs):
    """What the framework computes: distribution inputs and values (training forward), the
    greedy actions, and the log-probabilities of given actions."""
    ops = module.ops
    if framework == "torch":
        import torch

        with torch.no_grad():
            out = module.forward({Columns.OBS: torch.as_tensor(obs)})
    else:
        out = module.forward_train({Columns.OBS: obs})
    inputs = np.asarray(out[Columns.ACTION_DIST_INPUTS])
    values = np.asarray(out[Columns.VF_PREDS])
    greedy = policy_fn(backend, module, explore=False)(obs)[Columns.ACTIONS]

    def logp(actions):
        dist = module.action_dist(ops.as_tensor(inputs))
        return ops.to_numpy(dist.logp(ops.as_tensor(actions)))

    return inputs, values, greedy, logp


@pytest.mark.parametrize("space", sorted(SPACES))
@pytest.mark.parametrize(
    "model_config",
    [
        {},
        {"vf_share_layers": True, "activation": "relu", "hiddens": [16]},
        {"activation": "elu", "hiddens": [8, 8, 8]},
        {"activation": "silu", "vf_share_layers": True},
    ],
)
def test_the_numpy_copy_computes_what_the_module_computes(framework, space, model_config):
    backend = make_backend(framework)
    spec = ModuleSpec(OBS, SPACES[space], model_config=model_config)
    module = backend.build_module(spec, 3)
    acting = NumpyActorCritic.from_weights(
        backend.get_module_state(module), spec, framework, np.random.default_rng(0)
    )
    obs = np.random.default_rng(1).normal(size=(7, 3, 2)).astype(np.float32) * 3
    inputs, values, greedy, logp = _framework_outputs(framework, backend, module, obs)

    out = acting.forward_exploration(obs)
    assert set(out) == {
        Columns.ACTIONS,
        Columns.ACTION_LOGP,
        Columns.VF_PREDS,
        Columns.ACTION_DIST_INPUTS,
    }
    np.testing.assert_allclose(out[Columns.ACTION_DIST_INPUTS], inputs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[Columns.VF_PREDS], values, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(acting.value(obs), values, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        out[Columns.ACTION_LOGP], logp(out[Columns.ACTIONS]), rtol=1e-5, atol=1e-5
    )
    # Means for a Box space, argmax for a discrete one (compared exactly).
    np.testing.assert_allclose(
        acting.forward_inference(obs)[Columns.ACTIONS], greedy, rtol=1e-5, atol=1e-6
    )
    framework_out = policy_fn(backend, module, explore=True)(obs)
    for name, array in out.items():  # the same shapes and kinds as the framework's policy
        assert array.shape == framework_out[name].shape, name
        assert array.dtype.kind == framework_out[name].dtype.kind, name
        assert array.dtype == np.float32 or array.dtype.kind == "i", name

    # The copy made from the weights alone (what a runner that never imports the framework
    # builds) is the same copy: the layout is the module's, the outputs bit for bit.
    weights = backend.get_module_state(module)
    assert default_module_layout(spec, framework) == {k: v.shape for k, v in weights.items()}
    from_weights = NumpyActorCritic.from_weights(weights, spec, framework, np.random.default_rng(0))
    again = from_weights.forward_exploration(obs)
    for name, array in out.items():
        np.testing.assert_array_equal(again[name], array, err_msg=name)


def test_categorical_actions_follow_the_softmax():
    logits = np.log(np.array([[0.7, 0.2, 0.1]], np.float32)).repeat(20_000, axis=0)
    actions = Categorical(logits, NumpyOps(np.random.default_rng(0))).sample()
    frequencies = np.bincount(actions, minlength=3) / len(actions)
    np.testing.assert_allclose(frequencies, [0.7, 0.2, 0.1], atol=0.01)


def test_gaussian_actions_have_the_given_mean_and_deviation():
    inputs = np.tile(np.array([[1.0, -2.0, np.log(0.5), np.log(2.0)]], np.float32), (20_000, 1))
    actions = DiagGaussian(inputs, NumpyOps(np.random.default_rng(0))).sample()
    np.testing.assert_allclose(actions.mean(axis=0), [1.0, -2.0], atol=0.05)
    np.testing.assert_allclose(actions.std(axis=0), [0.5, 2.0], rtol=0.03)


def test_set_weights_refreshes_what_the_runner_acts_with():
    spec = ModuleSpec(OBS, SPACES["discrete"])
    runner_module = RunnerModule("torch", spec, seed=0)
    other = RunnerModule("torch", spec, seed=1)
    obs = np.random.default_rng(2).normal(size=(4, 3, 2)).astype(np.float32)
    assert not np.allclose(runner_module.value(obs), other.value(obs))
    runner_module.set_weights(other.get_weights(), version=1)
    np.testing.assert_allclose(runner_module.value(obs), other.value(obs), rtol=1e-6)
    assert runner_module.module is None  # acting from the weights; the module is dropped
    weights = runner_module.get_weights()
    assert all(np.array_equal(weights[k], v) for k, v in other.get_weights().items())


def test_a_runner_given_weights_first_never_builds_its_framework_module(framework):
    spec = ModuleSpec(OBS, SPACES["box"], model_config={"hiddens": [8]})
    weights = make_backend(framework).get_module_state(
        make_backend(framework).build_module(spec, 5)
    )
    setups = []
    runner_module = RunnerModule(framework, spec, seed=0, framework_setup=lambda: setups.append(1))
    assert runner_module.weight_shapes() == {k: v.shape for k, v in weights.items()}
    runner_module.set_weights(weights, version=2)
    out = runner_module.policy(np.zeros((2, 3, 2), np.float32))
    assert out[Columns.ACTIONS].shape == (2, 2)
    assert runner_module.module is None and runner_module.backend is None and not setups


def test_weights_that_do_not_fit_the_default_module_name_what_is_wrong(framework):
    spec = ModuleSpec(OBS, SPACES["discrete"])
    runner_module = RunnerModule(framework, spec, seed=0)
    weights = dict(runner_module.get_weights())
    matrix = "pi.0.weight" if framework == "torch" else "pi.0.kernel"
    wrong = {**weights, matrix: np.zeros((3, 3), np.float32)}
    with pytest.raises(CheckpointError, match=rf"'{matrix}' has shape \(3, 3\), this module"):
        runner_module.set_weights(wrong, version=1)
    with pytest.raises(CheckpointError, match=r"missing \['vf.4.bias'\]"):
        runner_module.set_weights({k: v for k, v in weights.items() if k != "vf.4.bias"}, 1)


def test_a_custom_module_acts_in_its_framework():
    import torch

    from learnerkit.backends.torch.modules import TorchMLPActorCritic

    class DoubledValue(TorchMLPActorCritic):
        @torch.no_grad()
        def value(self, obs):
            return 2 * super().value(obs)

    spec = ModuleSpec(OBS, SPACES["discrete"], module_class=DoubledValue)
    runner_module = RunnerModule("torch", spec, seed=0)
    plain = RunnerModule("torch", ModuleSpec(OBS, SPACES["discrete"]), seed=0)
    obs = np.zeros((2, 3, 2), np.float32)
    np.testing.assert_allclose(runner_module.value(obs), 2 * plain.value(obs), rtol=1e-6)
