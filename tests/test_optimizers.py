"""Several optimizers per module: each steps its own share of the parameters after one
backward pass, checkpoints name them, the partition is checked, and checkpoints from
before (one optimizer state per module) still load."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin, random_batch

from learnerkit import (
    CheckpointError,
    Hyperparameters,
    Learner,
    LearnerSpec,
    ModuleSpec,
    PluginError,
)

MID = "default_policy"
VF_LR = 3e-3


def policy_part(learner, module, ops) -> list:
    if ops.framework == "torch":
        return list(module.pi.parameters())
    return [v for v in learner.get_parameters(module) if v.name.startswith("pi.")]


def value_loss(module, batch, fwd_out, ops):
    """BC plus a value regression on the rewards, so both heads get gradients."""
    out = bc_loss(module, batch, fwd_out, ops)
    vf_loss = ops.mean(ops.square(fwd_out["vf_preds"] - batch["rewards"]))
    return {**out, "total_loss": out["total_loss"] + vf_loss, "vf_loss": vf_loss}


def two_optimizers(pi_share=None, vf_share=None):
    def configure_optimizers(learner, module, hyperparameters, ops):
        pi = policy_part(learner, module, ops)
        vf = [p for p in learner.get_parameters(module) if all(p is not q for q in pi)]
        return {
            "pi": ops.adam(
                module,
                hyperparameters.learning_rate,
                parameters=pi_share(pi, vf) if pi_share else pi,
            ),
            "vf": ops.adam(module, VF_LR, parameters=vf_share(pi, vf) if vf_share else vf),
        }

    return configure_optimizers


def one_optimizer(lr):
    def configure_optimizers(module, ops):
        return ops.adam(module, lr)

    return configure_optimizers


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


@pytest.fixture
def plugins(register):
    register(make_plugin("two_opt", compute_loss=value_loss, configure_optimizers=two_optimizers()))
    register(
        make_plugin("pi_lr", compute_loss=value_loss, configure_optimizers=one_optimizer(3e-4))
    )
    register(
        make_plugin("vf_lr", compute_loss=value_loss, configure_optimizers=one_optimizer(VF_LR))
    )


def test_each_optimizer_steps_its_share_as_a_lone_adam_at_its_rate_would(plugins, framework):
    # Adam's step of a parameter depends only on its own gradient: the policy head must move
    # as under one Adam at learning_rate, the value head as under one Adam at VF_LR.
    two, pi_alone, vf_alone = (build(a, framework) for a in ("two_opt", "pi_lr", "vf_lr"))
    batch = random_batch(64)
    for learner in (two, pi_alone, vf_alone):
        learner.update(batch, minibatch_size=16, num_epochs=2)
    got = two.get_module_state()[MID]
    pi_ref, vf_ref = pi_alone.get_module_state()[MID], vf_alone.get_module_state()[MID]
    for name, value in got.items():
        ref = pi_ref if name.startswith("pi.") else vf_ref
        np.testing.assert_allclose(value, ref[name], rtol=1e-5, atol=1e-7, err_msg=name)
    assert not np.allclose(pi_ref["vf.0.bias"], vf_ref["vf.0.bias"])  # the rates matter
    assert two.backend.ops.get_learning_rate(two.optimizer(MID, "vf")) == pytest.approx(VF_LR)
    with pytest.raises(KeyError, match=r"module 'default_policy' has no optimizer 'default'"):
        two.optimizer(MID)


def test_optimizers_must_cover_every_parameter_exactly_once(register, framework):
    register(
        make_plugin(
            "gap",
            compute_loss=bc_loss,
            configure_optimizers=two_optimizers(vf_share=lambda pi, vf: vf[1:]),
        )
    )
    register(
        make_plugin(
            "overlap",
            compute_loss=bc_loss,
            configure_optimizers=two_optimizers(pi_share=lambda pi, vf: pi + vf[:1]),
        )
    )
    with pytest.raises(PluginError, match=r"exactly one optimizer; covered by none: \['vf\.0\."):
        build("gap", framework)
    with pytest.raises(PluginError, match=r"by several: \{'vf\.0\.\w+': \['pi', 'vf'\]\}"):
        build("overlap", framework)


def test_checkpoints_name_each_optimizer_and_round_trip(plugins, framework, tmp_path):
    learner = build("two_opt", framework)
    learner.update(random_batch(32))
    learner.save_state(tmp_path)
    other = build("two_opt", framework)
    other.load_state(tmp_path)  # names checked: see the next test
    batch = random_batch(32, seed=1)
    learner.update(batch, shuffle=False)
    other.update(batch, shuffle=False)
    a, b = learner.get_module_state()[MID], other.get_module_state()[MID]
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_checkpoint_with_one_optimizer_state_per_module_still_loads(plugins, framework):
    learner = build("pi_lr", framework)
    learner.update(random_batch(32))
    state = learner.get_state()
    # The layout written before modules could have several optimizers (what such a
    # checkpoint file holds, and set_state is what load_state hands it to).
    old = {k: v for k, v in state.items() if k != "optimizer_layout"}
    old["optimizers"] = {MID: state["optimizers"][MID]["default"]}
    fresh = build("pi_lr", framework)
    fresh.set_state(old)
    batch = random_batch(32, seed=1)
    learner.update(batch, shuffle=False)
    fresh.update(batch, shuffle=False)
    a, b = learner.get_module_state()[MID], fresh.get_module_state()[MID]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(CheckpointError, match=r"has optimizers \['default'\] for module"):
        build("two_opt", framework).set_state({**old, "algorithm": "two_opt"})


def test_an_lr_schedule_moves_every_optimizer_keeping_its_ratio(plugins, framework):
    learner = build("two_opt", framework, learning_rate=1e-3, lr_schedule=[[0, 1e-3], [100, 1e-4]])
    out = learner.additional_update(timestep=50)[MID]
    ops = learner.backend.ops
    assert ops.get_learning_rate(learner.optimizer(MID, "pi")) == pytest.approx(5.5e-4)
    assert ops.get_learning_rate(learner.optimizer(MID, "vf")) == pytest.approx(
        5.5e-4 * VF_LR / 1e-3
    )
    assert out["learning_rate_vf"] == pytest.approx(5.5e-4 * VF_LR / 1e-3)
    assert out["learning_rate"] == pytest.approx(5.5e-4)


def test_named_parameters_split_a_default_module_alike_in_both_frameworks(register, framework):
    def by_name(learner, module, hyperparameters, ops):  # the docs' example (algorithm-features.md)
        named = learner.named_parameters(module)
        vf = [p for name, p in named.items() if name.startswith("vf.")]
        pi = [p for name, p in named.items() if not name.startswith("vf.")]
        return {
            "pi": ops.adam(module, hyperparameters.learning_rate, parameters=pi),
            "vf": ops.adam(module, 10 * hyperparameters.learning_rate, parameters=vf),
        }

    register(make_plugin("by_name", compute_loss=bc_loss, configure_optimizers=by_name))
    learner = build("by_name", framework)
    module = learner.module[MID]
    named = learner.named_parameters(module)
    parts = ("weight" if framework == "torch" else "kernel", "bias")
    layers = [f"{tower}.{i}" for tower in ("pi", "vf") for i in (0, 2, 4)]
    assert sorted(named) == sorted(f"{layer}.{part}" for layer in layers for part in parts)
    vf = learner.optimizer(MID, "vf")
    assert {id(p) for p in learner.backend.optimizer_parameters(vf)} == {
        id(p) for name, p in named.items() if name.startswith("vf.")
    }
    assert learner.backend.ops.get_learning_rate(vf) == pytest.approx(
        10 * learner.backend.ops.get_learning_rate(learner.optimizer(MID, "pi"))
    )


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_default_torch_optimizers_step_as_torch_optim_does(name):
    """``ops.adam``/``ops.sgd`` build subclasses of torch's optimizers that skip the
    ``torch._dynamo`` import: same arithmetic, bit for bit, and interchangeable state."""
    import torch

    from learnerkit.backends import make_backend

    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    theirs = copy.deepcopy(ours)
    made = getattr(make_backend("torch").ops, name)(ours, 1e-2)
    reference = {
        "adam": lambda p: torch.optim.Adam(p, lr=1e-2, eps=1e-8, fused=True),
        "sgd": lambda p: torch.optim.SGD(p, lr=1e-2),
    }[name](theirs.parameters())
    assert isinstance(made, type(reference))
    x = torch.randn(32, 4)
    for model, optimizer in ((ours, made), (theirs, reference)):
        for _ in range(4):
            optimizer.zero_grad()
            model(x).square().sum().backward()
            optimizer.step()
        assert torch.is_grad_enabled()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)
    made.load_state_dict(reference.state_dict())  # checkpoints from torch.optim load
    reference.load_state_dict(made.state_dict())
