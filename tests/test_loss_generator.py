"""A loss that draws random numbers draws them from ``Learner.loss_generator`` (issue 20):
seeded from the learner's seed, part of its state and checkpoints, so a resumed learner
draws what the uninterrupted one would have; checkpoints written before it load with the
generator seeded as a fresh learner's."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin, random_batch

from learnerkit import Columns, Hyperparameters, Learner, LearnerSpec, ModuleSpec

MID = "default_policy"


def standard_normal_like(learner: Learner, x) -> object:
    """Noise shaped as ``x`` from the learner's generator, in the learner's framework."""
    generator = learner.loss_generator
    if learner.spec.framework == "torch":
        import torch

        return torch.randn(x.shape, generator=generator)
    import tensorflow as tf

    return generator.normal(tf.shape(x))


def noisy_loss(learner, module, batch, fwd_out, ops):
    """Behaviour cloning with the logits jittered by noise: the noise moves the weights."""
    logits = fwd_out[Columns.ACTION_DIST_INPUTS]
    noise = standard_normal_like(learner, logits)
    out = bc_loss(module, batch, fwd_out, ops)
    total = out["total_loss"] + ops.mean(noise * logits)
    return {"total_loss": total, "noise_mean": ops.mean(noise)}


@pytest.fixture
def noisy(register):
    register(make_plugin("noisy", compute_loss=noisy_loss))


def build(framework: str, seed: int = 0) -> Learner:
    learner = Learner(
        LearnerSpec(
            algorithm="noisy",
            framework=framework,
            module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
            hyperparameters=Hyperparameters(seed=seed),
        )
    )
    learner.build()
    return learner


def update(learner: Learner, seed: int = 0) -> tuple[float, dict]:
    noise = learner.update(random_batch(32, seed=seed))[MID]["noise_mean"]
    return noise, learner.get_module_state()[MID]


def test_a_learner_set_to_a_state_draws_what_the_original_drew_next(noisy, framework, tmp_path):
    original = build(framework)
    update(original)
    state = original.get_state()
    original.save_state(tmp_path / "checkpoint")
    noise, weights = update(original, seed=1)
    for restore in ("set_state", "load_state"):
        resumed = build(framework, seed=7)  # another seed: the state decides
        if restore == "set_state":
            resumed.set_state(state)
        else:
            resumed.load_state(tmp_path / "checkpoint")
        resumed_noise, resumed_weights = update(resumed, seed=1)
        assert resumed_noise == noise, restore
        for name, value in weights.items():
            np.testing.assert_array_equal(resumed_weights[name], value, err_msg=name)


def test_the_generator_is_seeded_from_the_learners_seed(noisy, framework):
    first, second = update(build(framework))[0], update(build(framework))[0]
    assert first == second
    assert update(build(framework, seed=1))[0] != first


def test_a_state_from_before_the_loss_generator_loads_seeded_as_a_fresh_learner(noisy, framework):
    trained = build(framework)
    update(trained)
    old = trained.get_state()
    del old["loss_generator"]
    update(trained)  # the generator moves on
    trained.set_state(old)
    fresh = build(framework)
    np.testing.assert_array_equal(
        trained.get_state()["loss_generator"], fresh.get_state()["loss_generator"]
    )
