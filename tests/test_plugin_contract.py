"""The plugin contract (``learnerkit/hookspecs.py``): each hook is called with its documented
arguments, firstresult hooks let the algorithm win, merged hooks merge with the algorithm's
keys on top, the host defaults fill the gaps, and a Learner subclass can stand in for hooks."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin, random_batch

import learnerkit
from learnerkit import (
    Columns,
    Hyperparameters,
    Learner,
    LearnerGroup,
    LearnerSpec,
    ModuleSpec,
    SampleBatch,
    hookimpl,
    hookspecs,
)

HOOKS = [
    name
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(fn, f"{hookspecs.PROJECT_NAME}_spec")
]


def build(algorithm: str, framework: str = "torch", **spec_kwargs) -> Learner:
    spec_kwargs.setdefault("module_spec", ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS))
    spec = LearnerSpec(algorithm=algorithm, framework=framework, **spec_kwargs)
    learner = (spec.learner_class or Learner)(spec)
    learner.build()
    return learner


# The contract itself ------------------------------------------------------------------------
def test_the_contract_has_its_hooks_in_call_order():
    source = inspect.getsource(hookspecs)
    order = sorted(HOOKS, key=lambda name: source.index(f"def {name}("))
    assert order == [
        "configure_optimizers",
        "compute_loss",
        "postprocess_gradients",
        "additional_update",
        "compile_results",
    ]


def test_plugin_hooks_have_tests():
    # Like datasette's test of the same name: a new hook must come with a test here.
    tests = [name for name in globals() if name.startswith("test_hook_")]
    for hook in HOOKS:
        assert any(name.startswith(f"test_hook_{hook}_") for name in tests), hook


@pytest.mark.parametrize("hook", HOOKS)
def test_plugin_hooks_document_every_parameter_and_their_semantics(hook):
    fn = getattr(hookspecs, hook)
    doc = inspect.getdoc(fn)
    for parameter in inspect.signature(fn).parameters:
        assert f":param {parameter}:" in doc, f"{hook} does not document {parameter!r}"
    assert ":return:" in doc
    firstresult = getattr(fn, f"{hookspecs.PROJECT_NAME}_spec")["firstresult"]
    semantics = "First non-None result wins" if firstresult else "Every implementation runs"
    assert semantics in " ".join(doc.split())


def test_firstresult_is_set_exactly_for_configure_optimizers_and_compute_loss():
    firstresult = {
        hook
        for hook in HOOKS
        if getattr(getattr(hookspecs, hook), f"{hookspecs.PROJECT_NAME}_spec")["firstresult"]
    }
    assert firstresult == {"configure_optimizers", "compute_loss"}


# Each hook is called with its documented arguments -------------------------------------------
class Spy:
    """An algorithm implementing every hook with every argument of its spec."""

    def __init__(self) -> None:
        self.calls: dict[str, list[dict]] = {hook: [] for hook in HOOKS}
        self.algorithm = learnerkit.Algorithm(
            name="spy", hyperparameters=Hyperparameters, initial_state=lambda hps: {"beta": 0.5}
        )

    @hookimpl
    def configure_optimizers(self, learner, module_id, module, hyperparameters, ops):
        self.calls["configure_optimizers"].append(dict(locals()))

    @hookimpl
    def compute_loss(self, learner, module_id, module, hyperparameters, batch, fwd_out, state, ops):
        self.calls["compute_loss"].append(dict(locals()))
        return bc_loss(module, batch, fwd_out, ops)

    @hookimpl
    def postprocess_gradients(self, learner, module_id, module, hyperparameters, gradients, ops):
        self.calls["postprocess_gradients"].append(dict(locals(), keys=list(gradients)))

    @hookimpl
    def additional_update(
        self, learner, module_id, module, hyperparameters, state, timestep, update_kwargs
    ):
        self.calls["additional_update"].append(dict(locals()))

    @hookimpl
    def compile_results(self, learner, module_id, module, hyperparameters, batch, metrics, state):
        self.calls["compile_results"].append(dict(locals()))


@pytest.fixture
def spied(register, framework):
    spy = Spy()
    register(spy)
    learner = build("spy", framework, hyperparameters=Hyperparameters(learning_rate=0.01))
    return spy, learner


def assert_common_arguments(call: dict, learner: Learner) -> None:
    assert call["learner"] is learner
    assert call["module_id"] == "default_policy"
    assert call["module"] is learner.module["default_policy"]
    assert call["hyperparameters"] is learner.spec.hyperparameters


def test_hook_configure_optimizers_gets_its_documented_arguments(spied):
    spy, learner = spied
    (call,) = spy.calls["configure_optimizers"]
    assert_common_arguments(call, learner)
    assert call["ops"] is learner.backend.ops
    assert call["ops"].framework == learner.spec.framework


def test_hook_compute_loss_gets_its_documented_arguments(spied):
    spy, learner = spied
    learner.update(random_batch(16), minibatch_size=8, num_epochs=2)
    calls = spy.calls["compute_loss"]
    assert len(calls) >= 1  # a traced (tf.function) step may call it only while tracing
    call = calls[0]
    assert_common_arguments(call, learner)
    assert call["ops"] is learner.backend.ops
    assert {Columns.OBS, Columns.ACTIONS, Columns.REWARDS} <= set(call["batch"])
    assert tuple(call["batch"][Columns.OBS].shape)[1:] == (4,)
    assert tuple(call["fwd_out"][Columns.ACTION_DIST_INPUTS].shape)[1:] == (2,)
    assert Columns.VF_PREDS in call["fwd_out"]
    assert set(call["state"]) == {"beta"}
    if learner.spec.framework == "torch":  # eager: one call per minibatch, real rows
        assert len(calls) == 4
        assert all(c["batch"][Columns.OBS].shape[0] == 8 for c in calls)


def test_hook_postprocess_gradients_gets_its_documented_arguments(spied):
    spy, learner = spied
    learner.update(random_batch(16), minibatch_size=8, num_epochs=2)
    calls = spy.calls["postprocess_gradients"]
    assert len(calls) >= 1  # a traced (tf.function) step calls it while tracing
    call = calls[0]
    assert_common_arguments(call, learner)
    assert call["ops"] is learner.backend.ops
    module = learner.module["default_policy"]
    refs = {learner.get_param_ref(p) for p in learner.get_parameters(module)}
    assert call["keys"] and set(call["keys"]) <= refs  # the parameters the loss reaches
    if learner.spec.framework == "torch":  # eager: once per applied minibatch step
        assert len(calls) == 4


def test_hook_additional_update_gets_its_documented_arguments(spied):
    spy, learner = spied
    learner.additional_update(timestep=77, sampled_kl_values={"default_policy": 0.01})
    (call,) = spy.calls["additional_update"]
    assert_common_arguments(call, learner)
    assert call["state"] is learner.algorithm_state("default_policy")
    assert call["state"] == {"beta": 0.5}
    assert call["timestep"] == 77
    assert call["update_kwargs"] == {"sampled_kl_values": {"default_policy": 0.01}}


def test_hook_compile_results_gets_its_documented_arguments(spied):
    spy, learner = spied
    batch = random_batch(16)
    learner.update(batch, minibatch_size=8)
    (call,) = spy.calls["compile_results"]
    assert_common_arguments(call, learner)
    assert isinstance(call["batch"], SampleBatch)
    assert call["batch"].count == 16
    np.testing.assert_array_equal(call["batch"][Columns.OBS], batch[Columns.OBS])
    assert {"total_loss", "policy_loss", "gradient_norm"} <= set(call["metrics"])
    means = {k: v for k, v in call["metrics"].items() if k != "non_finite_minibatches_skipped"}
    assert all(isinstance(v, float) for v in means.values())
    assert call["metrics"]["non_finite_minibatches_skipped"] == 0
    assert call["state"] == {"beta": 0.5}


# Call semantics -------------------------------------------------------------------------------
class ExtraMetrics:
    """A cross-cutting plugin (``LearnerSpec.extra_plugins``) that also tries compute_loss."""

    def __init__(self) -> None:
        self.compute_loss_calls = 0

    @hookimpl
    def compute_loss(self, fwd_out, ops):
        self.compute_loss_calls += 1
        return {"total_loss": ops.mean(fwd_out[Columns.VF_PREDS]) * 0.0}

    @hookimpl
    def compile_results(self, batch):
        return {"extra_rows": batch.count, "learning_rate": -1.0, "policy_loss": -1.0}

    @hookimpl
    def additional_update(self, timestep):
        return {"extra_timestep": timestep, "learning_rate": -1.0}


def test_the_algorithms_compute_loss_wins_over_an_extra_plugins(register, framework):
    def compute_loss(module, batch, fwd_out, ops):
        return {
            **bc_loss(module, batch, fwd_out, ops),
            "from_algorithm": ops.mean(fwd_out[Columns.VF_PREDS]) * 0.0 + 1.0,
        }

    register(make_plugin("algo", compute_loss=compute_loss))
    extra = ExtraMetrics()
    learner = build("algo", framework, extra_plugins=[extra])
    results = learner.update(random_batch(32))["default_policy"]
    assert results["from_algorithm"] == 1.0
    assert results["total_loss"] > 0  # the extra's loss would be 0
    assert extra.compute_loss_calls == 0


def test_the_algorithms_configure_optimizers_wins_over_the_default(register, framework):
    chosen = []

    def configure_optimizers(module, hyperparameters, ops):
        chosen.append(ops.adam(module, learning_rate=0.123))
        return chosen[-1]

    register(make_plugin("algo", compute_loss=bc_loss, configure_optimizers=configure_optimizers))
    learner = build("algo", framework)
    assert learner.optimizer("default_policy") is chosen[0]
    assert learner.update(random_batch(8))["default_policy"]["learning_rate"] == pytest.approx(
        0.123
    )


def test_merged_hooks_take_an_extra_plugins_keys_and_the_algorithms_keys_win(register, framework):
    def compile_results(metrics):
        return {"learning_rate": 42.0, "algorithm_only": 1}

    def additional_update(timestep):
        return {"learning_rate": 43.0}

    register(
        make_plugin(
            "algo",
            compute_loss=bc_loss,
            compile_results=compile_results,
            additional_update=additional_update,
        )
    )
    learner = build("algo", framework, extra_plugins=[ExtraMetrics()])
    results = learner.update(random_batch(32))["default_policy"]
    assert results["learning_rate"] == 42.0  # algorithm over extra over default
    assert results["algorithm_only"] == 1
    assert results["extra_rows"] == 32  # the extra plugin's own key is merged in
    assert results["policy_loss"] == -1.0  # extras' keys win over the defaults' metrics
    assert results["num_samples"] == 32  # the defaults' keys remain
    additional = learner.additional_update(timestep=5)["default_policy"]
    assert additional == {"learning_rate": 43.0, "extra_timestep": 5}


def test_an_extra_plugin_breaking_the_contract_is_refused_naming_it(register):
    class Bad:
        @hookimpl
        def compile_results(self, not_an_argument):
            return {}

    with pytest.raises(learnerkit.PluginError, match=r"(?s)extra plugin.*not_an_argument"):
        build("bc", extra_plugins=[Bad()])


# Host defaults ------------------------------------------------------------------------------
def test_the_default_optimizer_is_adam_with_the_learning_rate(framework):
    learner = build("bc", framework, hyperparameters=_bc_hps(learning_rate=0.0042))
    optimizer = learner.optimizer("default_policy")
    assert type(optimizer).__name__ == "Adam"
    assert learner.backend.ops.get_learning_rate(optimizer) == pytest.approx(0.0042)


def test_the_default_results_report_loss_gradient_norm_and_learning_rate(framework):
    learner = build("bc", framework, hyperparameters=_bc_hps(learning_rate=0.0042))
    results = learner.update(random_batch(40), minibatch_size=16)["default_policy"]
    assert {"total_loss", "gradient_norm", "learning_rate", "num_samples"} <= set(results)
    assert results["total_loss"] == pytest.approx(results["policy_loss"])
    assert results["gradient_norm"] > 0
    assert results["learning_rate"] == pytest.approx(0.0042)
    assert results["num_samples"] == 40


def test_the_default_additional_update_steps_the_learning_rate_schedule(framework):
    hps = _bc_hps(lr_schedule=[[0, 1e-3], [1000, 1e-4]])
    learner = build("bc", framework, hyperparameters=hps)
    out = learner.additional_update(timestep=500)["default_policy"]
    assert out["learning_rate"] == pytest.approx(5.5e-4)
    ops = learner.backend.ops
    assert ops.get_learning_rate(learner.optimizer("default_policy")) == pytest.approx(5.5e-4)
    learner.additional_update(timestep=10_000)
    assert ops.get_learning_rate(learner.optimizer("default_policy")) == pytest.approx(1e-4)


def _bc_hps(**kwargs):
    return learnerkit.get_algorithm("bc").hyperparameters(**kwargs)


# Routing: a Learner calls its own algorithm's hooks only --------------------------------
def test_a_learner_never_calls_another_registered_algorithms_hooks(register, framework):
    calls = {"alpha": [], "beta": []}

    def recording(name):
        def compute_loss(module, batch, fwd_out, ops):
            calls[name].append("compute_loss")
            return bc_loss(module, batch, fwd_out, ops)

        def additional_update(timestep):
            calls[name].append("additional_update")

        def compile_results(metrics):
            calls[name].append("compile_results")

        def configure_optimizers(module, ops):
            calls[name].append("configure_optimizers")

        def postprocess_gradients(gradients):
            calls[name].append("postprocess_gradients")

        return make_plugin(
            name,
            compute_loss=compute_loss,
            postprocess_gradients=postprocess_gradients,
            additional_update=additional_update,
            compile_results=compile_results,
            configure_optimizers=configure_optimizers,
        )

    register(recording("alpha"))
    register(recording("beta"))
    learner = build("alpha", framework)
    learner.update(random_batch(16))
    learner.additional_update(timestep=1)
    assert set(calls["alpha"]) == set(HOOKS)
    assert calls["beta"] == []


# The seed's style: a Learner subclass -------------------------------------------------------
def forbidden_compute_loss(fwd_out):
    raise AssertionError("the subclass's compute_loss_for_module should replace this hook")


class BCLearner(Learner):
    """RLlib's BC example, written against learnerkit: a bare loss and a mean_weight stat."""

    def compute_loss_for_module(self, *, module_id, hps, batch, fwd_out):
        module = self.module[module_id]
        ops = self.backend.ops
        action_dist = module.action_dist(fwd_out[Columns.ACTION_DIST_INPUTS])
        return -ops.mean(action_dist.logp(batch[Columns.ACTIONS]))

    def compile_results(self, *, batch, metrics_per_module):
        results = super().compile_results(batch=batch, metrics_per_module=metrics_per_module)
        for module_id in self.module.keys():
            parameters = [
                self.backend.ops.to_numpy(p) for p in self.get_parameters(self.module[module_id])
            ]
            results[module_id]["mean_weight"] = float(np.mean([w.mean() for w in parameters]))
        return results


def test_a_learner_subclass_in_the_seeds_style_trains_through_learner_spec(register, framework):
    register(make_plugin("subclassed", compute_loss=forbidden_compute_loss))
    spec = LearnerSpec(
        algorithm="subclassed",
        framework=framework,
        module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
        learner_class=BCLearner,
    )
    batch = random_batch(64)
    batch = SampleBatch({**batch, Columns.ACTIONS: (batch[Columns.OBS][:, 2] > 0).astype(int)})
    with LearnerGroup(spec) as group:
        assert isinstance(group.foreach_learner(lambda learner: learner)[0], BCLearner)
        first = group.update(batch, num_epochs=5)["default_policy"]
        for _ in range(10):
            last = group.update(batch, num_epochs=5)["default_policy"]
        weights = group.get_weights()["default_policy"]
    assert last["total_loss"] < first["total_loss"]
    assert {"total_loss", "gradient_norm", "learning_rate", "mean_weight"} <= set(last)
    expected = np.mean([w.mean() for w in weights.values()])
    assert last["mean_weight"] == pytest.approx(expected, rel=1e-5)


def test_an_extra_plugin_with_a_misspelt_hook_is_refused_naming_the_hook():
    class Misspelt:
        @hookimpl
        def compile_result(self, metrics):
            return {}

    with pytest.raises(learnerkit.PluginError, match=r"(?s)extra plugin.*compile_result"):
        build("bc", extra_plugins=[Misspelt()])
