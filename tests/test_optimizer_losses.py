"""One loss per optimizer (``learnerkit.OPTIMIZER_LOSSES``, issue 20): each optimizer steps
its own parameters with the gradient of its own loss only, even when that loss runs through
parameters another optimizer owns (SAC's actor loss runs through the critics)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin, random_batch

from learnerkit import (
    OPTIMIZER_LOSSES,
    Columns,
    Hyperparameters,
    Learner,
    LearnerSpec,
    ModuleSpec,
    PluginError,
)

MID = "default_policy"


def configure_two(learner, module, hyperparameters, ops):
    named = learner.named_parameters(module)
    pi = [p for name, p in named.items() if name.startswith("pi.")]
    vf = [p for name, p in named.items() if not name.startswith("pi.")]
    return {
        "pi": ops.adam(module, 1e-2, parameters=pi),
        "vf": ops.adam(module, 1e-2, parameters=vf),
    }


def crossed_losses(module, batch, fwd_out, ops, scale_pi=1.0, scale_vf=1.0, only=None):
    """Two losses that each run through both heads: the policy's pushes the value up, the
    value's pushes the logits towards 0. Under one backward pass each optimizer would follow
    both."""
    logits, value = fwd_out[Columns.ACTION_DIST_INPUTS], fwd_out[Columns.VF_PREDS]
    pi_loss = bc_loss(module, batch, fwd_out, ops)["total_loss"] - ops.mean(value)
    vf_loss = ops.mean(ops.square(value - batch[Columns.REWARDS])) + ops.mean(ops.square(logits))
    losses = {"pi": pi_loss * scale_pi, "vf": vf_loss * scale_vf}
    if only is not None:
        losses = {only: losses[only]}
    return {"pi_loss": pi_loss, OPTIMIZER_LOSSES: losses}


def plugin(name, **kwargs):
    def compute_loss(module, batch, fwd_out, ops):
        return crossed_losses(module, batch, fwd_out, ops, **kwargs)

    return make_plugin(name, compute_loss=compute_loss, configure_optimizers=configure_two)


def build(algorithm, framework, **hps) -> Learner:
    learner = Learner(
        LearnerSpec(
            algorithm=algorithm,
            framework=framework,
            module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
            hyperparameters=Hyperparameters(**hps),
        )
    )
    learner.build()
    return learner


def trained(algorithm, framework) -> tuple[dict, dict]:
    """The weights before and after one step (later steps would see both losses' moves)."""
    learner = build(algorithm, framework)
    before = learner.get_module_state()[MID]
    learner.update(random_batch(64))
    return before, learner.get_module_state()[MID]


def split(state: dict) -> tuple[dict, dict]:
    pi = {k: v for k, v in state.items() if k.startswith("pi.")}
    return pi, {k: v for k, v in state.items() if not k.startswith("pi.")}


def assert_bitwise_equal(a: dict, b: dict) -> None:
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# TensorFlow traces three learners' steps (about 5 s): slow.
@pytest.mark.parametrize("framework", ["torch", pytest.param("tf", marks=pytest.mark.slow)])
def test_each_optimizer_follows_its_own_loss_alone(register, framework):
    register(plugin("both"))
    register(plugin("pi_zeroed", scale_pi=0.0))
    register(plugin("vf_zeroed", scale_vf=0.0))
    initial, both = trained("both", framework)
    (initial_pi, initial_vf), (both_pi, both_vf) = split(initial), split(both)
    pi_zeroed_pi, pi_zeroed_vf = split(trained("pi_zeroed", framework)[1])
    vf_zeroed_pi, _ = split(trained("vf_zeroed", framework)[1])
    # Zeroing the policy's loss leaves the value head bit for bit as with it, and back.
    assert_bitwise_equal(pi_zeroed_vf, both_vf)
    assert_bitwise_equal(vf_zeroed_pi, both_pi)
    # ... while each loss does move its own head.
    assert_bitwise_equal(pi_zeroed_pi, initial_pi)
    assert not np.array_equal(both_pi["pi.0.bias"], initial_pi["pi.0.bias"])
    assert not np.array_equal(both_vf["vf.0.bias"], initial_vf["vf.0.bias"])


def test_an_optimizer_without_a_loss_does_not_step_and_total_loss_is_their_sum(register, framework):
    register(plugin("pi_only", only="pi"))
    learner = build("pi_only", framework)
    before = learner.get_module_state()[MID]
    results = learner.update(random_batch(64))[MID]
    _, vf = split(learner.get_module_state()[MID])
    assert_bitwise_equal(vf, split(before)[1])
    # total_loss, left out, is reported as the sum of the losses given: here the one.
    assert results["total_loss"] == pytest.approx(results["pi_loss"], rel=1e-5)
    assert results["gradient_norm"] > 0


def test_optimizer_losses_must_name_optimizers_of_the_module(register, framework):
    register(
        make_plugin(
            "typo",
            compute_loss=lambda module, batch, fwd_out, ops: {
                OPTIMIZER_LOSSES: {"policy": bc_loss(module, batch, fwd_out, ops)["total_loss"]}
            },
            configure_optimizers=configure_two,
        )
    )
    learner = build("typo", framework)
    with pytest.raises(PluginError, match=r"for \['policy'\], which are not optimizers.*'pi'"):
        learner.update(random_batch(16))


def test_a_non_finite_optimizer_loss_skips_the_whole_step(register, framework):
    def compute_loss(module, batch, fwd_out, ops):
        out = crossed_losses(module, batch, fwd_out, ops)
        losses = out[OPTIMIZER_LOSSES]
        return {**out, OPTIMIZER_LOSSES: {**losses, "vf": losses["vf"] * np.inf}}

    register(make_plugin("inf", compute_loss=compute_loss, configure_optimizers=configure_two))
    learner = build("inf", framework, non_finite="skip")
    before = learner.get_module_state()[MID]
    results = learner.update(random_batch(32))[MID]
    assert results["non_finite_minibatches_skipped"] == 1
    assert_bitwise_equal(learner.get_module_state()[MID], before)


def test_a_learner_with_its_own_gradient_stages_refuses_optimizer_losses(register):
    class Surgeon(Learner):
        def postprocess_gradients(self, gradients, **kwargs):
            return super().postprocess_gradients(gradients, **kwargs)

    register(plugin("staged"))
    learner = Surgeon(
        LearnerSpec(
            algorithm="staged",
            framework="torch",
            module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
        )
    )
    learner.build()
    with pytest.raises(PluginError, match="own gradient stages"):
        learner.update(random_batch(16))
