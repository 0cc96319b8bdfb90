"""Per-module settings: which modules train (``modules_to_train``) and per-module
hyperparameter overrides (``module_hyperparameters``), on a Learner and a local group."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin, random_batch

import learnerkit
from learnerkit import (
    ConfigError,
    Learner,
    LearnerGroup,
    LearnerSpec,
    ModuleSpec,
    MultiAgentBatch,
    SampleBatch,
)

SPEC = ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS)


def build(framework="torch", algorithm="bc", learning_rate=None, **kwargs) -> Learner:
    if learning_rate is not None:
        kwargs["hyperparameters"] = learnerkit.Hyperparameters(learning_rate=learning_rate)
    learner = Learner(
        LearnerSpec(
            algorithm=algorithm,
            framework=framework,
            module_spec={"a": SPEC, "b": SPEC},
            **kwargs,
        )
    )
    learner.build()
    return learner


def same(x: dict, y: dict) -> bool:
    """Bitwise equality of two nested states."""
    if isinstance(x, dict):
        return set(x) == set(y) and all(same(x[k], y[k]) for k in x)
    if isinstance(x, list):
        return len(x) == len(y) and all(same(a, b) for a, b in zip(x, y, strict=True))
    if isinstance(x, np.ndarray):
        return x.dtype == y.dtype and x.tobytes() == y.tobytes()
    return x == y


def comparable(state: dict) -> dict:
    """Weights and optimizer states, less the names Keras numbers per process."""
    drop = ("config", "names")
    return {
        "modules": state["modules"],
        "optimizers": {
            mid: {n: {k: v for k, v in s.items() if k not in drop} for n, s in by.items()}
            for mid, by in state["optimizers"].items()
        },
        "algorithm_state": state["algorithm_state"],
    }


def two_modules(n=32) -> MultiAgentBatch:
    return MultiAgentBatch({"a": random_batch(n), "b": random_batch(n, seed=1)})


# modules_to_train --------------------------------------------------------------------------
def test_frozen_modules_rows_are_ignored_and_their_state_is_bitwise_unchanged(framework):
    learner = build(framework, modules_to_train=["a"])
    assert learner.modules_to_train == {"a"}
    before = comparable(learner.get_state())
    # The frozen module's rows lack 'actions' (BC needs it): ignored, not an error.
    batch = MultiAgentBatch({"a": random_batch(32), "b": {"obs": random_batch(4)["obs"]}})
    results = learner.update(batch, minibatch_size=8)
    assert set(results) == {"a"}  # a frozen module has no entry in the results
    after = comparable(learner.get_state())
    assert same(before["modules"]["b"], after["modules"]["b"])
    assert same(before["optimizers"]["b"], after["optimizers"]["b"])
    assert not same(before["modules"]["a"], after["modules"]["a"])
    assert learner.num_updates("a") == 1 and learner.num_updates("b") == 0
    assert set(learner.additional_update(timestep=10)) == {"a"}


def test_set_modules_to_train_switches_training_between_updates():
    learner = build()
    learner.set_modules_to_train(["b"])
    before = learner.get_module_state()
    assert set(learner.update(two_modules())) == {"b"}
    after = learner.get_module_state()
    assert same(before["a"], after["a"]) and not same(before["b"], after["b"])
    learner.set_modules_to_train(None)
    assert set(learner.update(two_modules())) == {"a", "b"}
    learner.set_modules_to_train([])
    assert learner.update(two_modules()) == {}


def test_a_group_follows_modules_to_train():
    group = LearnerGroup(LearnerSpec(algorithm="bc", module_spec={"a": SPEC, "b": SPEC}))
    try:
        group.set_modules_to_train(["a"])
        assert group.modules_to_train == {"a"} and group.spec.modules_to_train == {"a"}
        assert set(group.update(two_modules())) == {"a"}
    finally:
        group.shutdown()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["c"], r"modules_to_train names module\(s\) \['c'\] that module_spec lacks"),
        ("a", r"got the string 'a'; write \['a'\]"),
    ],
)
def test_unknown_or_misspelt_modules_to_train_are_config_errors(value, message):
    with pytest.raises(ConfigError, match=message):
        build(modules_to_train=value)
    with pytest.raises(ConfigError, match=message):
        build().set_modules_to_train(value)


# Per-module hyperparameters ----------------------------------------------------------------
def spy_plugin(name: str, calls: dict):
    """BC that records, per hook and module, the hyperparameters each call received."""

    def configure_optimizers(module_id, module, hyperparameters, ops):
        calls["configure_optimizers"][module_id].append(hyperparameters)
        return ops.adam(module, hyperparameters.learning_rate)

    def compute_loss(module_id, module, hyperparameters, batch, fwd_out, ops):
        calls["compute_loss"][module_id].append(hyperparameters)
        return bc_loss(module, batch, fwd_out, ops)

    def additional_update(module_id, hyperparameters):
        calls["additional_update"][module_id].append(hyperparameters)

    def compile_results(module_id, hyperparameters):
        calls["compile_results"][module_id].append(hyperparameters)

    return make_plugin(
        name,
        hyperparameters=learnerkit.get_algorithm("ppo").hyperparameters,
        configure_optimizers=configure_optimizers,
        compute_loss=compute_loss,
        additional_update=additional_update,
        compile_results=compile_results,
    )


def test_every_hook_for_a_module_receives_its_overridden_hyperparameters(register, framework):
    calls = defaultdict(lambda: defaultdict(list))
    register(spy_plugin("spy", calls))
    overrides = {"b": {"learning_rate": 1e-4, "entropy_coeff": 0.0}}
    learner = build(framework, algorithm="spy", module_hyperparameters=overrides)
    learner.update(two_modules())
    learner.additional_update(timestep=1)
    base = learner.hps
    assert learner.hyperparameters_for("a") is base
    b = learner.hyperparameters_for("b")
    assert (b.learning_rate, b.entropy_coeff) == (1e-4, 0.0)
    assert (base.learning_rate, base.entropy_coeff) != (1e-4, 0.0)
    for hook in ("configure_optimizers", "compute_loss", "additional_update", "compile_results"):
        assert calls[hook]["a"] and all(h == base for h in calls[hook]["a"]), hook
        assert calls[hook]["b"] and all(h == b for h in calls[hook]["b"]), hook
    ops = learner.backend.ops
    assert ops.get_learning_rate(learner.optimizer("b")) == pytest.approx(1e-4)
    assert ops.get_learning_rate(learner.optimizer("a")) == pytest.approx(base.learning_rate)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"b": {"lerning_rate": 1e-4}},
            r"overrides for module 'b' have unknown key\(s\) \['lerning_rate'\] for "
            r"BCHyperparameters; use one of \[",
        ),
        (
            {"b": {"learning_rate": -1.0}},
            r"overrides for module 'b' .* are invalid: .*learning_rate must be > 0, got -1\.0; "
            r"fix the value in module_hyperparameters\['b'\]",
        ),
        ({"c": {"learning_rate": 1e-4}}, r"module_hyperparameters names module\(s\) \['c'\]"),
        ({"b": 0.1}, r"must map module id to a mapping of hyperparameter overrides"),
    ],
)
def test_bad_overrides_are_config_errors_naming_module_key_and_fix(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build(module_hyperparameters=overrides)


def test_per_module_non_finite_policy(framework):
    learner = build(framework, module_hyperparameters={"b": {"non_finite": "skip"}})
    bad = dict(random_batch(16))
    bad["obs"] = np.where(np.arange(16)[:, None] < 8, np.nan, bad["obs"]).astype(np.float32)
    # 'a' refuses NaN in its batch; 'b' skips the minibatch holding it and trains the rest.
    with pytest.raises(learnerkit.NonFiniteError, match="module 'a'"):
        learner.update(MultiAgentBatch({"a": SampleBatch(bad)}))
    before = learner.get_module_state()["b"]
    results = learner.update(
        MultiAgentBatch({"b": SampleBatch(bad)}), minibatch_size=8, shuffle=False
    )
    assert results["b"]["non_finite_minibatches_skipped"] == 1
    assert not same(before, learner.get_module_state()["b"])


def test_per_module_grad_clip_and_learning_rate(register, framework):
    # Plain SGD on 0.5 * sum(w ** 2): the gradient is the weights, the step known exactly.
    def compute_loss(learner, module, ops):
        squares = [ops.sum(ops.square(w)) for w in learner.get_parameters(module)]
        return {"total_loss": 0.5 * sum(squares[1:], squares[0])}

    def configure_optimizers(module, hyperparameters, ops):
        return ops.sgd(module, hyperparameters.learning_rate)

    register(
        make_plugin("squares", compute_loss=compute_loss, configure_optimizers=configure_optimizers)
    )
    overrides = {"b": {"grad_clip": 1e-3, "learning_rate": 0.5}}
    learner = build(
        framework, algorithm="squares", learning_rate=0.1, module_hyperparameters=overrides
    )
    before = learner.get_module_state()
    learner.update(two_modules())
    after = learner.get_module_state()
    norm = np.sqrt(sum(np.sum(w.astype(np.float64) ** 2) for w in before["b"].values()))
    for name, w in before["a"].items():
        np.testing.assert_allclose(after["a"][name], w - 0.1 * w, rtol=1e-5, atol=1e-7)
    for name, w in before["b"].items():
        np.testing.assert_allclose(
            after["b"][name], w - 0.5 * w * 1e-3 / norm, rtol=1e-5, atol=1e-7
        )
