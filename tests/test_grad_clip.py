"""Gradient clipping (``Hyperparameters.grad_clip_by``): each mode against a hand computation,
in both frameworks, with one optimizer and with one per part of the module.

The loss is ``0.5 * sum(w ** 2)`` over the module's weights, whose gradient is the weights
themselves, and the optimizer plain SGD: the step a clip mode applies is known exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, make_plugin, random_batch

from learnerkit import ConfigError, Hyperparameters, Learner, LearnerSpec, ModuleSpec

MID = "default_policy"
LR = 0.1


def policy_part(module, ops) -> list:
    """The policy head's parameters (the rest is the value head)."""
    if ops.framework == "torch":
        return list(module.pi.parameters())
    return [v for v in module.trainable_variables if v.name.startswith("pi.")]


def squares_plugin(name: str, split: bool):
    def configure_optimizers(learner, module, hyperparameters, ops):
        if not split:
            return ops.sgd(module, hyperparameters.learning_rate)
        pi = policy_part(module, ops)
        rest = [p for p in learner.get_parameters(module) if all(p is not q for q in pi)]
        return {
            "pi": ops.sgd(module, hyperparameters.learning_rate, parameters=pi),
            "vf": ops.sgd(module, hyperparameters.learning_rate, parameters=rest),
        }

    def compute_loss(learner, module, ops):
        squares = [ops.sum(ops.square(w)) for w in learner.get_parameters(module)]
        return {"total_loss": 0.5 * sum(squares[1:], squares[0])}

    return make_plugin(name, compute_loss=compute_loss, configure_optimizers=configure_optimizers)


def learner_with(framework: str, split: bool, **hps) -> Learner:
    learner = Learner(
        LearnerSpec(
            algorithm="squares_split" if split else "squares",
            framework=framework,
            module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
            hyperparameters=Hyperparameters(learning_rate=LR, **hps),
        )
    )
    learner.build()
    return learner


@pytest.fixture
def plugins(register):
    register(squares_plugin("squares", split=False))
    register(squares_plugin("squares_split", split=True))


def clipped(weights: dict[str, np.ndarray], clip: float, by: str, split: bool) -> dict:
    """The gradients (the weights) clipped by hand, as RLlib defines each mode."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    if by == "value":
        return {k: np.clip(v, -clip, clip) for k, v in w.items()}
    if by == "norm":
        return {k: v * min(1.0, clip / max(np.linalg.norm(v), 1e-12)) for k, v in w.items()}
    groups = [[k for k in w if k.startswith("pi.")], [k for k in w if not k.startswith("pi.")]]
    if not split:
        groups = [list(w)]
    out = {}
    for keys in groups:
        norm = np.sqrt(sum(np.sum(w[k] ** 2) for k in keys))
        out.update({k: w[k] * min(1.0, clip / norm) for k in keys})
    return out


@pytest.mark.parametrize("split", [False, True], ids=["one_optimizer", "two_optimizers"])
@pytest.mark.parametrize(
    ("by", "clip"), [("value", 0.05), ("norm", 0.5), ("global_norm", 1.0), ("global_norm", None)]
)
def test_each_clip_mode_applies_the_hand_computed_step(plugins, framework, split, by, clip):
    learner = learner_with(framework, split, grad_clip=clip, grad_clip_by=by)
    before = learner.get_module_state()[MID]
    global_norm = np.sqrt(sum(np.sum(w.astype(np.float64) ** 2) for w in before.values()))

    results = learner.update(random_batch(8))[MID]

    # The reported norm is the module's global norm before clipping, whatever the mode.
    assert results["gradient_norm"] == pytest.approx(global_norm, rel=1e-5)
    grads = before if clip is None else clipped(before, clip, by, split)
    if clip is not None:
        assert any(not np.allclose(grads[k], before[k]) for k in before)  # the clip bites
    if clip is not None and by != "global_norm":  # per element or tensor: not everywhere
        assert any(np.allclose(grads[k], before[k]) and before[k].any() for k in before)
    after = learner.get_module_state()[MID]
    for name, w in before.items():
        np.testing.assert_allclose(after[name], w - LR * grads[name], rtol=1e-5, atol=1e-7)


def test_global_norm_is_per_optimizer_so_the_parts_differ_from_one_optimizer(plugins, framework):
    one = learner_with(framework, split=False, grad_clip=1.0)
    two = learner_with(framework, split=True, grad_clip=1.0)
    one.update(random_batch(8))
    two.update(random_batch(8))
    a, b = one.get_module_state()[MID], two.get_module_state()[MID]
    assert any(not np.allclose(a[k], b[k]) for k in a)


def test_an_unknown_clip_mode_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match=r"grad_clip_by must be one of \['value', 'norm'"):
        Hyperparameters(grad_clip=1.0, grad_clip_by="elementwise")
