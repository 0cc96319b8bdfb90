"""Image observations (HWC uint8 Boxes) get a conv encoder in the default modules: the
Nature CNN at 84x84, a small stack below, or the ``conv_filters`` given (RLlib's format);
shared with the value function or not as ``vf_share_layers`` says; the numpy copy computes
what either framework computes; runners act through the framework, which is faster per step
for conv nets (``bench/conv_acting.py``); bad filters are ConfigErrors naming the fix."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from learnerkit import Columns, ConfigError, ModuleSpec
from learnerkit.backends import make_backend, value_fn
from learnerkit.conv_encoders import NATURE_CNN_FILTERS, module_config_for
from learnerkit.rollouts.acting import NumpyActorCritic, default_module_layout, numpy_copy_class

ATARI = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
SMALL = gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)
ACTIONS = gym.spaces.Discrete(6)


def _conv_layers(layout, tower):
    return [shape for name, shape in layout.items() if name.startswith(f"{tower}.")]


def test_an_atari_frame_gets_the_nature_cnn_and_512_relu_units():
    layout = default_module_layout(ModuleSpec(ATARI, ACTIONS), "torch")
    assert _conv_layers(layout, "pi_conv") == [
        (32, 4, 8, 8), (32,), (64, 32, 4, 4), (64,), (64, 64, 3, 3), (64,)
    ]  # fmt: skip
    assert _conv_layers(layout, "vf_conv") == _conv_layers(layout, "pi_conv")
    assert layout["pi.0.weight"] == (512, 7 * 7 * 64)
    assert module_config_for({}, ATARI)["activation"] == "relu"


def test_a_small_image_gets_a_small_stack_and_shared_layers_one_encoder():
    layout = default_module_layout(
        ModuleSpec(SMALL, ACTIONS, model_config={"vf_share_layers": True}), "tf"
    )
    assert _conv_layers(layout, "conv") == [(3, 3, 3, 16), (16,), (3, 3, 16, 32), (32,)]
    assert not _conv_layers(layout, "pi_conv")
    assert layout["encoder.0.kernel"] == (6 * 6 * 32, 256)


def test_conv_filters_in_rllib_format_replace_the_default_and_an_empty_list_turns_it_off():
    given = ModuleSpec(SMALL, ACTIONS, model_config={"conv_filters": [[8, 4, 4]], "hiddens": [32]})
    layout = default_module_layout(given, "torch")
    assert _conv_layers(layout, "pi_conv") == [(8, 3, 4, 4), (8,)]
    assert layout["pi.0.weight"] == (32, 4 * 4 * 8)
    flat_spec = ModuleSpec(SMALL, ACTIONS, model_config={"conv_filters": []})
    flat = default_module_layout(flat_spec, "torch")
    assert layout.keys() != flat.keys() and flat["pi.0.weight"][1] == 16 * 16 * 3
    assert module_config_for({}, ATARI)["conv_filters"] == NATURE_CNN_FILTERS


@pytest.mark.parametrize(
    ("space", "model_config", "says"),
    [
        (SMALL, {"conv_filters": [[16, 17, 1]]}, "17x17 kernel"),
        (SMALL, {"conv_filters": [[16, 3]]}, "[channels, kernel, stride]"),
        (SMALL, {"conv_activation": "gelu"}, "conv_activation"),
        (gym.spaces.Box(-1, 1, (4,)), {"conv_filters": [[4, 1, 1]]}, "3-D Box, HWC"),
    ],
)
def test_bad_conv_settings_are_config_errors_naming_the_fix(space, model_config, says):
    with pytest.raises(ConfigError, match=says.replace("[", r"\[").replace("]", r"\]")):
        default_module_layout(ModuleSpec(space, ACTIONS, model_config=model_config), "torch")


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("space", [ATARI, SMALL], ids=["84x84x4", "16x16x3"])
def test_the_numpy_copy_computes_what_the_conv_module_computes(framework, space, shared):
    backend = make_backend(framework)
    spec = ModuleSpec(space, ACTIONS, model_config={"vf_share_layers": shared})
    module = backend.build_module(spec, 0)
    weights = backend.get_module_state(module)
    assert {k: v.shape for k, v in weights.items()} == default_module_layout(spec, framework)
    obs = np.random.default_rng(1).integers(0, 256, (3, *space.shape), dtype=np.uint8)
    if framework == "torch":
        import torch

        with torch.no_grad():
            out = module.forward({Columns.OBS: torch.as_tensor(obs)})
    else:
        out = module.forward_train({Columns.OBS: obs})
    copy = NumpyActorCritic.from_weights(weights, spec, framework, np.random.default_rng(0))
    acted = copy.forward_exploration(obs)
    for column in (Columns.ACTION_DIST_INPUTS, Columns.VF_PREDS):
        expected = np.asarray(out[column])
        np.testing.assert_allclose(acted[column], expected, rtol=1e-4, atol=1e-5)
    # The module scales uint8 pixels itself: the same frames as floats give the same values.
    as_float = value_fn(backend, module)(obs.astype(np.float32))
    np.testing.assert_allclose(np.asarray(as_float), acted[Columns.VF_PREDS], atol=1e-5)


def test_runners_of_a_conv_module_act_through_the_framework_unless_told_numpy():
    assert numpy_copy_class(ModuleSpec(SMALL, ACTIONS)) is None
    numpy_spec = ModuleSpec(SMALL, ACTIONS, numpy_copy=NumpyActorCritic)
    assert numpy_copy_class(numpy_spec) is NumpyActorCritic
    flat = ModuleSpec(SMALL, ACTIONS, model_config={"conv_filters": []})
    assert numpy_copy_class(flat) is NumpyActorCritic
