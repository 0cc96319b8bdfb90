"""The data-parallel seam (``learnerkit.data_parallel``): what a Learner asks of the training
it is one copy of. A fake seam stands in for Ray's: both frameworks hand each step's
gradients to its ``allreduce_gradients`` after backward and before the finiteness check
and clipping, apply what it returns, and tell it of every module built and dropped.

The loss is ``0.5 * sum(w ** 2)`` and the optimizer plain SGD, so a gradient is the
weights themselves and the step an all-reduce leads to is known exactly."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, make_plugin, random_batch

from learnerkit import OPTIMIZER_LOSSES, Hyperparameters, Learner, LearnerSpec, ModuleSpec
from learnerkit.data_parallel import SingleProcess

MID = "default_policy"
LR = 0.1


class FakeGroup(SingleProcess):
    """A seam whose all-reduce multiplies every gradient by ``factor`` (2: as if a peer
    had the same gradients and the group summed them), recording what it hears."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.calls: list[list[np.ndarray]] = []
        self.events: list[tuple[str, str]] = []

    def allreduce_gradients(self, gradients: list[np.ndarray]) -> list[np.ndarray]:
        self.calls.append([np.array(g) for g in gradients])
        return [np.asarray(g) * self.factor for g in gradients]

    def module_added(self, module_id, module):
        self.events.append(("added", module_id))

    def module_removed(self, module_id):
        self.events.append(("removed", module_id))


@pytest.fixture(autouse=True)
def squares(register):
    def configure_optimizers(module, hyperparameters, ops):
        return ops.sgd(module, hyperparameters.learning_rate)

    def compute_loss(learner, module, ops):
        squares = [ops.sum(ops.square(w)) for w in learner.get_parameters(module)]
        return {"total_loss": 0.5 * sum(squares[1:], squares[0])}

    register(
        make_plugin("squares", compute_loss=compute_loss, configure_optimizers=configure_optimizers)
    )


def learner_with(framework: str, data_parallel=None, **hps) -> Learner:
    spec = LearnerSpec(
        algorithm="squares",
        framework=framework,
        module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
        hyperparameters=Hyperparameters(learning_rate=LR, **hps),
    )
    learner = Learner(spec, data_parallel=data_parallel)
    learner.build()
    return learner


def weights(learner: Learner) -> dict[str, np.ndarray]:
    return learner.get_module_state()[MID]


def test_both_frameworks_step_on_what_the_allreduce_returns(framework):
    group = FakeGroup(2.0)
    learner = learner_with(framework, group)
    before = weights(learner)
    out = learner.update(random_batch(16), num_epochs=3, shuffle=False)[MID]

    assert len(group.calls) == 3  # once per minibatch step
    # One array per trainable parameter, the local gradients (the weights) as they are...
    first = group.calls[0]
    params = learner.get_parameters(learner.module[MID])
    if framework == "torch":
        # ...and last, a flag per parameter: 1 where this learner's loss reached it.
        *first, reached = first
        np.testing.assert_array_equal(reached, np.ones(len(params), np.float32))
    assert len(first) == len(params)
    assert sorted(g.size for g in first) == sorted(w.size for w in before.values())
    # SGD on doubled gradients: w <- w - 2 * LR * w per step, in torch as in TensorFlow.
    for name, w in weights(learner).items():
        np.testing.assert_allclose(w, before[name] * (1 - 2 * LR) ** 3, rtol=1e-5, atol=1e-7)
    # The reported norm (a mean over the steps) is the all-reduced gradients'.
    norm = np.linalg.norm(np.concatenate([w.ravel() for w in before.values()]))
    expected = np.mean([2 * norm * (1 - 2 * LR) ** k for k in range(3)])
    assert out["gradient_norm"] == pytest.approx(expected, rel=1e-4)


def test_clipping_acts_on_the_allreduced_gradients(framework):
    learner = learner_with(framework, FakeGroup(2.0), grad_clip=1e-3)
    before = weights(learner)
    out = learner.update(random_batch(16), shuffle=False)[MID]
    flat = np.concatenate([w.ravel() for w in before.values()])
    assert out["gradient_norm"] == pytest.approx(2 * np.linalg.norm(flat), rel=1e-4)
    step = np.concatenate([(before[n] - w).ravel() for n, w in weights(learner).items()])
    assert np.linalg.norm(step) == pytest.approx(LR * 1e-3, rel=1e-3)


def test_a_non_finite_allreduce_skips_the_step_on_both_frameworks(framework):
    learner = learner_with(framework, FakeGroup(np.nan), non_finite="skip")
    before = weights(learner)
    out = learner.update(random_batch(16), num_epochs=2)[MID]
    assert out["non_finite_minibatches_skipped"] == 2
    for name, w in weights(learner).items():
        np.testing.assert_array_equal(w, before[name])


def test_a_module_with_several_optimizers_trains_through_the_seams_several_pass_training(
    framework, register
):
    """Each optimizer's own loss (``OPTIMIZER_LOSSES``), one backward pass each: the module's
    forward pass and all-reduce are those the seam gives for several backward passes (torch's
    Ray learners: the module's own forward, or on GPUs DDP's without its averaging, and a
    gloo all-reduce after)."""

    class Recording(FakeGroup):
        def training_with_several_backward_passes(self, module_id, module):
            self.events.append(("several backward passes", module_id))
            return module, self.allreduce_gradients

    def configure_optimizers(learner, module, hyperparameters, ops):
        named = learner.named_parameters(module)
        return {
            side: ops.sgd(module, LR, parameters=[p for n, p in named.items() if n[:2] == side])
            for side in ("pi", "vf")
        }

    def compute_loss(learner, module, ops):
        named = learner.named_parameters(module)
        losses = {
            side: 0.5 * sum(ops.sum(ops.square(p)) for n, p in named.items() if n[:2] == side)
            for side in ("pi", "vf")
        }
        return {OPTIMIZER_LOSSES: losses}

    register(
        make_plugin("split", compute_loss=compute_loss, configure_optimizers=configure_optimizers)
    )
    group = Recording(2.0)
    spec = LearnerSpec(
        algorithm="split", framework=framework, module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS)
    )
    learner = Learner(spec, data_parallel=group)
    learner.build()
    before = weights(learner)
    learner.update(random_batch(16))
    assert group.events == [("several backward passes", MID), ("added", MID)]
    assert len(group.calls) == 1  # one all-reduce of both optimizers' gradients, after both
    for name, w in weights(learner).items():  # SGD on doubled gradients
        np.testing.assert_allclose(w, before[name] * (1 - 2 * LR), rtol=1e-5, atol=1e-7)


class StagesOverridden(Learner):
    """A Learner with its own gradient stages (here the defaults): the hooked step."""

    def compute_gradients(self, loss_out, *, module_id, tape=None):
        return super().compute_gradients(loss_out, module_id=module_id, tape=tape)


class PeerReachedEverything(FakeGroup):
    """As if a second learner's loss reached every parameter, with a gradient of 1 where
    this learner's did not and the same gradients where it did."""

    def allreduce_gradients(self, gradients: list[np.ndarray]) -> list[np.ndarray]:
        self.calls.append([np.array(g) for g in gradients])
        *grads, reached = gradients
        means = [g if r else np.full_like(g, 0.5) for g, r in zip(grads, reached, strict=True)]
        return [*means, (reached + 1) / 2]


@pytest.mark.parametrize("learner_class", [Learner, StagesOverridden], ids=["fast", "hooked"])
def test_torch_steps_all_reduce_every_parameter_with_a_flag_of_those_the_loss_reached(
    register, learner_class
):
    """A loss of the policy tower only: torch's step (fast or through gradient stages) sends
    every parameter's gradient, zeros for the value tower, and last a flag per parameter; a
    value-tower parameter another learner's loss reached then steps on the mean."""

    def configure_optimizers(module, hyperparameters, ops):
        return ops.sgd(module, hyperparameters.learning_rate)

    def compute_loss(learner, module, ops):
        named = learner.named_parameters(module)
        squares = [ops.sum(ops.square(w)) for name, w in named.items() if name[:2] == "pi"]
        return {"total_loss": 0.5 * sum(squares[1:], squares[0])}

    register(
        make_plugin(
            "pi_squares", compute_loss=compute_loss, configure_optimizers=configure_optimizers
        )
    )
    group = PeerReachedEverything(1.0)
    spec = LearnerSpec(
        algorithm="pi_squares",
        module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
        hyperparameters=Hyperparameters(learning_rate=LR),
        learner_class=learner_class,
    )
    learner = learner_class(spec, data_parallel=group)
    learner.build()
    names = list(learner.named_parameters(learner.module[MID]))
    before = weights(learner)
    learner.update(random_batch(16))
    [call] = group.calls  # one minibatch step
    *grads, reached = call
    assert len(grads) == len(names)
    np.testing.assert_array_equal(reached, [name[:2] == "pi" for name in names])
    for name, grad in zip(names, grads, strict=True):
        # The policy's gradients are its weights; the value tower's are zeros.
        np.testing.assert_allclose(grad, before[name] if name[:2] == "pi" else 0.0, atol=1e-7)
    for name, w in weights(learner).items():
        step = before[name] if name[:2] == "pi" else 0.5  # the value tower: the peer's mean
        np.testing.assert_allclose(w, before[name] - LR * step, rtol=1e-5, atol=1e-7)


def test_the_seam_hears_of_every_module_built_and_dropped(framework):
    group = FakeGroup(1.0)
    learner = learner_with(framework, group)
    learner.add_module("b", ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS))
    learner.remove_module(MID)
    assert group.events == [("added", MID), ("added", "b"), ("removed", MID)]


def test_a_learner_alone_needs_no_seam(framework):
    learner = learner_with(framework)
    assert isinstance(learner.data_parallel, SingleProcess)
    assert learner.data_parallel.allreduce_gradients is None
