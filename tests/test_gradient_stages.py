"""RLlib's gradient stages on the Learner (``compute_gradients``, ``postprocess_gradients``,
``apply_gradients``, ``get_param_ref``) and the optional ``postprocess_gradients`` hook:
overriding them with ``super()`` trains bit for bit as the inlined fast path (clipping modes,
several optimizers), surgery in each stage does what it says in both frameworks, gradients
a postprocess makes non-finite skip the step, and on two Ray learners the surgery runs on
the all-reduced gradients, so learners stay bitwise identical and equal one local learner.
Module weights: ``set_module_state``/``set_weights`` of some modules and
``load_module_state`` from a checkpoint, local and on Ray."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin, random_batch

import learnerkit
from learnerkit import (
    CheckpointError,
    Columns,
    Hyperparameters,
    Learner,
    LearnerGroup,
    LearnerSpec,
    ModuleSpec,
    MultiAgentBatch,
    NonFiniteError,
    PluginError,
    ScalingConfig,
    hookimpl,
)

MID = "default_policy"
MODULE = ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS)
SKIPPED = "non_finite_minibatches_skipped"


def split_optimizers(learner, module, hyperparameters, ops):
    """One Adam for the policy tower, one (at another rate) for the rest."""
    named = learner.named_parameters(module)
    pi = [p for name, p in named.items() if name.startswith("pi.")]
    rest = [p for name, p in named.items() if not name.startswith("pi.")]
    return {
        "pi": ops.adam(module, hyperparameters.learning_rate, parameters=pi),
        "vf": ops.adam(module, 3e-3, parameters=rest),
    }


def split_sgd(learner, module, hyperparameters, ops):
    """Plain SGD per tower: a step is the gradient scaled (Adam would amplify the rounding
    differences of a tiny gradient between a group and one learner)."""
    named = learner.named_parameters(module)
    pi = [p for name, p in named.items() if name.startswith("pi.")]
    rest = [p for name, p in named.items() if not name.startswith("pi.")]
    return {
        "pi": ops.sgd(module, hyperparameters.learning_rate, parameters=pi),
        "vf": ops.sgd(module, hyperparameters.learning_rate, parameters=rest),
    }


def actor_critic_loss(module, batch, fwd_out, ops):
    """Behaviour cloning plus a value loss (written here: Ray learners get it by value)."""
    dist = module.action_dist(fwd_out[Columns.ACTION_DIST_INPUTS])
    policy_loss = -ops.mean(dist.logp(batch[Columns.ACTIONS]))
    vf_loss = ops.mean(ops.square(fwd_out[Columns.VF_PREDS] - batch[Columns.REWARDS]))
    return {"total_loss": policy_loss + vf_loss, "policy_loss": policy_loss, "vf_loss": vf_loss}


def sgd_plugin():
    return make_plugin("sgd_stages", compute_loss=actor_critic_loss, configure_optimizers=split_sgd)


@pytest.fixture(autouse=True)
def algorithm(register):
    register(
        make_plugin("stages", compute_loss=actor_critic_loss, configure_optimizers=split_optimizers)
    )
    register(sgd_plugin())


def spec(framework: str, learner_class=None, **kwargs) -> LearnerSpec:
    hps = Hyperparameters(**{"learning_rate": 1e-2, **kwargs.pop("hps", {})})
    return LearnerSpec(
        algorithm=kwargs.pop("algorithm", "stages"),
        framework=framework,
        module_spec=kwargs.pop("module_spec", MODULE),
        hyperparameters=hps,
        learner_class=learner_class,
        **kwargs,
    )


def built(framework: str, learner_class=Learner, **kwargs) -> Learner:
    learner = learner_class(spec(framework, **kwargs))
    learner.build()
    return learner


def tower_refs(learner: Learner, prefix: str, module_id: str = MID) -> set:
    named = learner.named_parameters(learner.module[module_id])
    return {learner.get_param_ref(p) for name, p in named.items() if name.startswith(prefix)}


def changed(before: dict, after: dict, prefix: str) -> list[bool]:
    return [not np.array_equal(before[k], after[k]) for k in before if k.startswith(prefix)]


class SuperLearner(Learner):
    """Overrides every stage and calls ``super()``: the hooked path doing the defaults."""

    def compute_gradients(self, loss_out, *, module_id, tape=None):
        return super().compute_gradients(loss_out, module_id=module_id, tape=tape)

    def postprocess_gradients(self, gradients, *, module_id, hps):
        return super().postprocess_gradients(gradients, module_id=module_id, hps=hps)

    def apply_gradients(self, gradients, *, module_id):
        super().apply_gradients(gradients, module_id=module_id)


# Overriding with super() is the fast path, bit for bit -------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("clip_by", ["global_norm", "norm", "value"])
def test_stages_overridden_with_super_train_bit_for_bit_as_the_fast_path(framework, clip_by):
    hps = {"grad_clip": 0.05, "grad_clip_by": clip_by}
    fast, hooked = built(framework, hps=hps), built(framework, SuperLearner, hps=hps)
    batch = random_batch(100)
    fast_results = fast.update(batch, minibatch_size=32, num_epochs=2)[MID]
    hooked_results = hooked.update(batch, minibatch_size=32, num_epochs=2)[MID]
    ours, theirs = fast.get_state(), hooked.get_state()
    np.testing.assert_equal(theirs["modules"], ours["modules"])
    for name in ("pi", "vf"):
        got, want = theirs["optimizers"][MID][name], ours["optimizers"][MID][name]
        np.testing.assert_equal(
            got.get("state", got.get("variables")), want.get("state", want.get("variables"))
        )
    assert hooked_results["total_loss"] == fast_results["total_loss"]
    assert hooked_results["gradient_norm"] == pytest.approx(fast_results["gradient_norm"], 1e-6)


# Surgery in each stage -----------------------------------------------------------------------
class FrozenValueTower(Learner):
    """Drops the value tower's gradients: its weights and optimizer stay as they are."""

    def postprocess_gradients(self, gradients, *, module_id, hps):
        for ref in tower_refs(self, "vf.", module_id):
            gradients.pop(ref, None)
        return super().postprocess_gradients(gradients, module_id=module_id, hps=hps)


class PolicyLossOnly(Learner):
    """Takes the gradient of one term of the loss (its graph is still there)."""

    def compute_gradients(self, loss_out, *, module_id, tape=None):
        policy = {"total_loss": loss_out["policy_loss"]}
        return super().compute_gradients(policy, module_id=module_id, tape=tape)


@pytest.mark.slow
@pytest.mark.parametrize("learner_class", [FrozenValueTower, PolicyLossOnly])
def test_a_subclass_leaves_the_value_tower_untrained_by_gradient_surgery(framework, learner_class):
    learner = built(framework, learner_class)
    before = learner.get_module_state()[MID]
    results = learner.update(random_batch(64), minibatch_size=32)[MID]
    after = learner.get_module_state()[MID]
    assert all(changed(before, after, "pi."))
    assert not any(changed(before, after, "vf."))
    assert results["vf_loss"] > 0 and results[SKIPPED] == 0


def test_apply_gradients_refuses_a_key_that_is_no_parameters_reference(framework):
    class Stray(Learner):
        def postprocess_gradients(self, gradients, *, module_id, hps):
            return {**gradients, "stray": next(iter(gradients.values()))}

    learner = built(framework, Stray)
    with pytest.raises(PluginError, match="get_param_ref"):
        learner.update(random_batch(16))


# The postprocess_gradients hook --------------------------------------------------------------
class ExtraSeesTheAlgorithms:
    """An extra plugin, called after the algorithm's hook: records what it was left."""

    def __init__(self) -> None:
        self.keys: list[set] = []

    @hookimpl
    def postprocess_gradients(self, gradients):
        self.keys.append(set(gradients))


@pytest.mark.slow
def test_the_hook_changes_gradients_in_place_algorithm_first_then_extra_plugins(
    register, framework
):
    def freeze_policy(learner, module_id, gradients):
        for ref in tower_refs(learner, "pi.", module_id):
            del gradients[ref]

    register(
        make_plugin(
            "frozen_pi", compute_loss=actor_critic_loss, postprocess_gradients=freeze_policy
        )
    )
    extra = ExtraSeesTheAlgorithms()
    learner = Learner(
        LearnerSpec(
            algorithm="frozen_pi", framework=framework, module_spec=MODULE, extra_plugins=[extra]
        )
    )
    learner.build()
    before = learner.get_module_state()[MID]
    learner.update(random_batch(64), minibatch_size=32)
    after = learner.get_module_state()[MID]
    assert not any(changed(before, after, "pi."))
    assert all(changed(before, after, "vf."))
    assert extra.keys and not extra.keys[0] & tower_refs(learner, "pi.")


def poison(learner, module_id, gradients, ops):
    ref = next(iter(gradients))
    gradients[ref] = gradients[ref] * float("nan")


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_gradients_a_postprocess_makes_non_finite_skip_the_step(register, framework, policy):
    register(make_plugin("poisoner", compute_loss=bc_loss, postprocess_gradients=poison))
    learner = Learner(
        LearnerSpec(
            algorithm="poisoner",
            framework=framework,
            module_spec=MODULE,
            hyperparameters=Hyperparameters(non_finite=policy),
        )
    )
    learner.build()
    before = learner.get_state()
    if policy == "raise":
        with pytest.raises(NonFiniteError):
            learner.update(random_batch(32), minibatch_size=16)
    else:
        assert learner.update(random_batch(32), minibatch_size=16)[MID][SKIPPED] == 2
    np.testing.assert_equal(learner.get_state()["modules"], before["modules"])


def test_a_postprocess_gradients_hook_returning_a_value_is_a_plugin_error(register, framework):
    register(
        make_plugin(
            "returns", compute_loss=bc_loss, postprocess_gradients=lambda gradients: gradients
        )
    )
    learner = Learner(LearnerSpec(algorithm="returns", framework=framework, module_spec=MODULE))
    learner.build()
    with pytest.raises(PluginError, match="in place"):
        learner.update(random_batch(16))


# Weights of some modules ---------------------------------------------------------------------
TWO = {"a": MODULE, "b": MODULE}


def assert_module_weights(actual: dict, expected: dict) -> None:
    np.testing.assert_equal(actual, expected)


def test_set_module_state_of_some_modules_replaces_only_those(framework):
    learner = built(framework, module_spec=TWO)
    other = built(framework, module_spec=TWO, hps={"seed": 7})
    before = learner.get_module_state()
    learner.set_module_state({"b": other.get_module_state()["b"]})
    after = learner.get_module_state()
    assert_module_weights(after["a"], before["a"])
    assert_module_weights(after["b"], other.get_module_state()["b"])
    # An unknown module id alongside a good one: refused, nothing loaded.
    with pytest.raises(CheckpointError, match=r"modules \['c'\] that this learner does not have"):
        learner.set_module_state({"a": other.get_module_state()["a"], "c": before["a"]})
    assert_module_weights(learner.get_module_state(), after)


@pytest.mark.slow
def test_load_module_state_loads_chosen_modules_of_a_checkpoint_into_a_running_group(
    framework, tmp_path
):
    source = built(framework, module_spec=TWO, hps={"seed": 7})
    source.update(MultiAgentBatch({"a": random_batch(32), "b": random_batch(32, seed=1)}))
    source.save_state(tmp_path / "ckpt")
    saved = source.get_module_state()
    with LearnerGroup(spec(framework, module_spec={**TWO, "c": MODULE})) as group:
        initial = group.get_weights()
        group.load_module_state(tmp_path / "ckpt", {"a": "c"})  # a snapshot into another slot
        weights = group.get_weights()
        assert_module_weights(weights["c"], saved["a"])
        assert_module_weights({k: weights[k] for k in "ab"}, {k: initial[k] for k in "ab"})
        group.load_module_state(tmp_path / "ckpt", "b")
        assert_module_weights(group.get_weights()["b"], saved["b"])
        with pytest.raises(CheckpointError, match=r"has no module \['z'\]; it has \['a', 'b'\]"):
            group.load_module_state(tmp_path / "ckpt", ["a", "z"])
        with pytest.raises(CheckpointError, match="does not have"):
            group.load_module_state(tmp_path / "ckpt", {"a": "z"})
        group.load_module_state(tmp_path / "ckpt")  # every module it holds
        assert_module_weights(group.get_weights(), {**saved, "c": saved["a"]})
    # A learner loads one the same way; another framework's checkpoint is refused.
    other = "tf" if framework == "torch" else "torch"
    with pytest.raises(CheckpointError, match=f"written by framework '{framework}'"):
        built(other, module_spec=TWO).load_module_state(tmp_path / "ckpt", "a")


# On two Ray learners -------------------------------------------------------------------------
class CubedGradients(Learner):
    """A nonlinear postprocess (g + 100 g^3): applied to each shard's gradient before their
    mean, it would give other weights than one learner on the whole batch."""

    def postprocess_gradients(self, gradients, *, module_id, hps):
        cubed = {ref: g + 100.0 * g * g * g for ref, g in gradients.items()}
        return super().postprocess_gradients(cubed, module_id=module_id, hps=hps)


class FreezeValueTowerHook:
    """An extra plugin doing surgery through the hook, on every learner alike."""

    @hookimpl
    def postprocess_gradients(self, learner, module_id, gradients):
        for ref in tower_refs(learner, "vf.", module_id):
            gradients.pop(ref, None)


def ray_spec(framework: str, num_learners: int) -> LearnerSpec:
    return spec(
        framework,
        CubedGradients,
        algorithm="sgd_stages",
        module_spec=TWO,
        hps={"grad_clip": 0.5, "learning_rate": 0.1},
        extra_plugins=[FreezeValueTowerHook()],
        scaling=ScalingConfig(num_learners=num_learners, num_cpus_per_learner=0.5),
    )


@pytest.fixture(scope="module", params=["torch", "tf"])
def ray_group(request):
    """Two learners per framework, with custom gradient stages (torch: the all-reduce after
    backward; TF: the all-reduce in the compiled step)."""
    learnerkit.register_algorithm(sgd_plugin())  # shipped to the learners now
    try:
        group = LearnerGroup(ray_spec(request.param, 2))
    finally:
        learnerkit.unregister_algorithm("sgd_stages")
    yield group
    group.shutdown()


def learner_weights_identical(group: LearnerGroup) -> bool:
    weights = group.foreach_learner(lambda learner: learner.get_module_state())
    return len(weights) == 2 and all(
        np.array_equal(weights[0][m][k], weights[1][m][k])
        for m in weights[0]
        for k in weights[0][m]
    )


@pytest.mark.ray
@pytest.mark.slow
def test_ray_learners_postprocess_the_all_reduced_gradients_and_stay_identical(ray_group):
    framework = ray_group.spec.framework
    local = CubedGradients(ray_spec(framework, 0))
    local.build()
    local.set_state(ray_group.get_state())
    before = local.get_module_state()
    batch = MultiAgentBatch({"a": random_batch(128, seed=3), "b": random_batch(128, seed=4)})
    for _ in range(2):  # whole-batch steps: each learner's are the same rows as the local's
        ray_group.update(batch)
        local.update(batch)
    assert learner_weights_identical(ray_group)
    theirs, ours = ray_group.get_weights(), local.get_module_state()
    for mid in ("a", "b"):
        assert all(changed(before[mid], ours[mid], "pi."))
        assert not any(changed(before[mid], theirs[mid], "vf."))
        for name, value in ours[mid].items():
            np.testing.assert_allclose(theirs[mid][name], value, atol=1e-5, err_msg=name)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_group_sets_and_loads_the_weights_of_one_module(ray_group, tmp_path):
    framework = ray_group.spec.framework
    source = built(framework, module_spec=TWO, hps={"seed": 11})
    source.save_state(tmp_path / "ckpt")
    saved = source.get_module_state()
    before = ray_group.get_weights()
    ray_group.set_weights({"b": saved["a"]})
    assert_module_weights(ray_group.get_weights(), {"a": before["a"], "b": saved["a"]})
    with pytest.raises(CheckpointError, match="does not have"):
        ray_group.set_weights({"a": saved["a"], "nope": saved["a"]})
    ray_group.load_module_state(tmp_path / "ckpt", "a")
    assert_module_weights(ray_group.get_weights(), {"a": saved["a"], "b": saved["a"]})
    assert learner_weights_identical(ray_group)
