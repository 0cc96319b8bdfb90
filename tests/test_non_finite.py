"""NaN and inf in updates (issue 9): a minibatch whose loss or gradients are not finite is
never applied. By default a batch with non-finite values is refused before training and a
step that turns non-finite raises NonFiniteError; with ``non_finite="skip"`` such minibatches
are skipped and counted. Both frameworks, locally and on two Ray learners."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, make_plugin, random_batch

import learnerkit
from learnerkit import (
    BatchError,
    Columns,
    ConfigError,
    Learner,
    LearnerGroup,
    LearnerSpec,
    ModuleSpec,
    MultiAgentBatch,
    NonFiniteError,
    SampleBatch,
    ScalingConfig,
)

MID = learnerkit.DEFAULT_MODULE_ID
SKIPPED = "non_finite_minibatches_skipped"


def poison_plugin(kind: str = "log0"):
    """BC plus a term that is harmless on rows whose ``poison`` column is 0, and makes the
    step non-finite on a minibatch holding a row where it is 1: ``log0`` gives a loss of
    -inf (a term without gradient, so only the loss shows it), ``overflow`` a loss and
    gradients past float32's range, ``gradient`` a finite loss with NaN gradients."""

    def compute_loss(module, batch, fwd_out, ops):
        # BC written out (not conftest's bc_loss): Ray actors get this function by value.
        dist = module.action_dist(fwd_out[Columns.ACTION_DIST_INPUTS])
        out = {"policy_loss": -ops.mean(dist.logp(batch[Columns.ACTIONS]))}
        out["total_loss"] = out["policy_loss"]
        poison, value = batch["poison"], fwd_out[Columns.VF_PREDS]
        if kind == "log0":
            term = ops.mean(ops.log(1.0 - poison))
        elif kind == "overflow":
            term = ops.square(1e30 * ops.mean(poison * value))
        else:  # sqrt's gradient at 0 is inf, times abs's gradient 0 at 0: NaN
            term = ops.mean(ops.sqrt(ops.abs(value - ops.stop_gradient(value)) + 1.0 - poison))
        return {**out, "total_loss": out["total_loss"] + term, "poison_term": term}

    return make_plugin("poisoned_bc", compute_loss=compute_loss)


def build(framework: str, algorithm: str = "bc", **hps: Any) -> Learner:
    hp_class = learnerkit.get_algorithm(algorithm).hyperparameters
    learner = Learner(
        LearnerSpec(
            algorithm=algorithm,
            framework=framework,
            module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
            hyperparameters=hp_class(**hps),
        )
    )
    learner.build()
    return learner


def poisoned_batch(n: int, rows: list[int], seed: int = 0) -> SampleBatch:
    poison = np.zeros(n, np.float32)
    poison[rows] = 1.0
    return SampleBatch({**random_batch(n, seed=seed), "poison": poison})


def with_obs(batch: SampleBatch, rows: list[int], value: float, dtype=np.float32) -> SampleBatch:
    obs = batch[Columns.OBS].astype(dtype)
    obs[rows] = value
    return SampleBatch({**batch, Columns.OBS: obs})


def leaves(tree: Any, path: str = ""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from leaves(value, f"{path}/{key}")
    elif isinstance(tree, list | tuple):
        for i, value in enumerate(tree):
            yield from leaves(value, f"{path}/{i}")
    else:
        yield path, tree


def assert_bitwise_equal(a: Any, b: Any) -> None:
    """Same keys and the same bits everywhere: weights, Adam moments, step counts."""
    left, right = dict(leaves(a)), dict(leaves(b))
    assert left.keys() == right.keys()
    for path, value in left.items():
        if isinstance(value, np.ndarray | np.generic):
            other = right[path]
            assert value.dtype == other.dtype and value.tobytes() == other.tobytes(), path
        else:
            assert value == right[path], path


def training_state(learner: Learner, module_id: str | None = None) -> dict[str, Any]:
    """Weights and optimizer state (of every module, or of ``module_id``), less the names
    Keras numbers per process."""
    state = learner.get_state()
    optimizers = {
        mid: {k: v for k, v in opt.items() if k not in ("config", "names")}
        for mid, by_name in state["optimizers"].items()
        for opt in [by_name["default"]]
    }
    if module_id is not None:
        return {"modules": state["modules"][module_id], "optimizers": optimizers[module_id]}
    return {"modules": state["modules"], "optimizers": optimizers}


def optimizer_steps(learner: Learner, module_id: str = MID) -> int:
    """Adam's step count (torch keeps one per weight; Keras one 'iteration')."""
    state = learner.get_state()["optimizers"][module_id]["default"]
    if "variables" in state:
        return int(state["variables"][str(state["names"].index("iteration"))])
    return int(state["state"]["0"]["step"])


def all_finite(learner: Learner) -> bool:
    return all(np.isfinite(w).all() for w in learner.get_module_state()[MID].values())


def test_the_setting_allows_raise_or_skip():
    assert learnerkit.Hyperparameters().non_finite == "raise"
    assert learnerkit.Hyperparameters(non_finite="skip").non_finite == "skip"
    with pytest.raises(ConfigError, match=r"non_finite must be one of \['raise', 'skip'\]"):
        learnerkit.Hyperparameters(non_finite="ignore")


# The default: refuse, change nothing -----------------------------------------------------------
@pytest.fixture(scope="module")
def bc_learners():
    """``bc_learners(framework)``: one BC learner per framework, built on first use, for the
    refusal tests. Sharing is safe: each test compares a learner's state after a refused
    batch with its state just before, so the weights it starts from do not matter; and it
    spares TensorFlow a trace per test."""
    learners: dict[str, Learner] = {}

    def get(framework: str) -> Learner:
        if framework not in learners:
            learners[framework] = build(framework)
        return learners[framework]

    return get


@pytest.mark.parametrize(
    ("value", "dtype", "kind"),
    [
        (np.nan, np.float32, "NaN"),
        (-np.inf, np.float32, "inf"),
        (1e300, np.float64, "beyond float32's range"),
    ],
)
def test_non_finite_observations_are_refused_by_name_and_change_nothing(
    bc_learners, framework, value, dtype, kind
):
    learner = bc_learners(framework)
    learner.update(random_batch(32))  # Adam has moments and a step count to keep
    before = training_state(learner)
    bad = with_obs(random_batch(32, seed=1), [3, 7], value, dtype)
    with pytest.raises(NonFiniteError) as excinfo:
        learner.update(bad, minibatch_size=8)
    assert str(excinfo.value) == (
        f"batch for module 'default_policy' has non-finite values in column 'obs' (2 of 32 "
        f"rows: {kind}); nothing was trained: drop or fix those rows, or set "
        "Hyperparameters(non_finite='skip') to skip the minibatches they fall in"
    )
    assert isinstance(excinfo.value, BatchError)
    assert_bitwise_equal(training_state(learner), before)
    learner.update(random_batch(32, seed=2))
    assert all_finite(learner)


def test_all_nan_observations_name_every_bad_column(framework):
    batch = with_obs(random_batch(8), list(range(8)), np.nan)
    batch = SampleBatch({**batch, Columns.REWARDS: np.full(8, np.inf)})
    with pytest.raises(NonFiniteError, match=r"columns 'obs' \(8 of 8 rows: NaN\), 'rewards'"):
        build(framework).update(batch)


@pytest.mark.parametrize(
    ("kind", "terms"),
    [
        ("log0", "loss terms ['total_loss', 'poison_term'] were not finite"),
        ("overflow", "loss terms ['total_loss', 'poison_term'] were not finite"),
        ("gradient", "its loss terms were finite, gradient norm nan"),
    ],
    ids=["log0", "overflow", "gradient"],
)
def test_a_step_that_turns_non_finite_raises_and_leaves_the_state_before_it(
    register, framework, kind, terms
):
    register(poison_plugin(kind))
    learner = build(framework, "poisoned_bc")
    clean = poisoned_batch(64, [])
    learner.update(clean, minibatch_size=16)
    start = learner.get_state()
    # Minibatch 3 of 4 (rows 32..47) is the bad one; the two before it are applied.
    with pytest.raises(NonFiniteError) as excinfo:
        learner.update(poisoned_batch(64, [40]), minibatch_size=16, num_epochs=2, shuffle=False)
    message = str(excinfo.value)
    assert message.startswith(
        "update of module 'default_policy' stopped at epoch 1, minibatch 3 of 4: "
    )
    assert terms in message
    assert "(this update applied 2 minibatch(es) before it)" in message
    assert "The batch's columns are all finite" in message
    # The same two minibatches, then nothing: bit for bit the weights and optimizer of the
    # same learner set back to where it started and trained on just those two.
    stopped = training_state(learner)
    learner.set_state(start)
    learner.update(clean.slice(0, 32), minibatch_size=16, shuffle=False)
    assert_bitwise_equal(stopped, training_state(learner))
    learner.update(clean, minibatch_size=16)
    assert all_finite(learner)


def test_a_bad_first_minibatch_leaves_weights_and_optimizer_bit_for_bit(register, framework):
    register(poison_plugin("log0"))
    learner = build(framework, "poisoned_bc")
    learner.update(poisoned_batch(32, []), minibatch_size=16)
    before = training_state(learner)
    with pytest.raises(NonFiniteError, match="epoch 1, minibatch 1 of 2"):
        learner.update(poisoned_batch(32, [2]), minibatch_size=16, shuffle=False)
    assert_bitwise_equal(training_state(learner), before)


# Opting in to skipping ----------------------------------------------------------------------
@pytest.mark.parametrize(("value", "dtype"), [(np.nan, np.float32), (1e300, np.float64)])
def test_skip_trains_the_good_minibatches_and_counts_the_bad_ones(framework, value, dtype):
    learner = build(framework, non_finite="skip")
    before = learner.get_module_state()
    batch = with_obs(random_batch(64), [5, 50], value, dtype)  # minibatches 1 and 4 of 4
    results = learner.update(batch, minibatch_size=16, num_epochs=2, shuffle=False)[MID]
    assert results[SKIPPED] == 4
    assert all(np.isfinite(v) for v in results.values())
    assert all_finite(learner)
    assert any(
        not np.array_equal(w, learner.get_module_state()[MID][k]) for k, w in before[MID].items()
    )
    assert optimizer_steps(learner) == 4  # only the applied steps count
    clean = learner.update(random_batch(64, seed=1), minibatch_size=16)[MID]
    assert clean[SKIPPED] == 0


def test_skip_with_every_minibatch_bad_changes_nothing_and_reports_nan_losses(register, framework):
    register(poison_plugin("log0"))
    learner = build(framework, "poisoned_bc", non_finite="skip")
    learner.update(poisoned_batch(32, []), minibatch_size=16)
    before = training_state(learner)
    results = learner.update(poisoned_batch(32, [0, 31]), minibatch_size=16)[MID]
    assert results[SKIPPED] == 2
    assert np.isnan(results["total_loss"])  # no applied step to average
    assert results["num_samples"] == 32
    assert_bitwise_equal(training_state(learner), before)


# Two Ray learners: one decision for all -----------------------------------------------------
@pytest.fixture(scope="module", params=["torch", "tf"])
def two_learners(request):
    """Two Ray learners of the poisoned BC, one group per framework for the tests below
    (starting TensorFlow learners takes seconds). The group's setting is
    ``non_finite="skip"``; its module ``raise`` overrides it back to "raise", so both ways a
    setting reaches the learners are used. Sharing is safe: each test trains only its own
    module (``raise`` or ``skip``), and a module absent from a batch is left untouched."""
    learnerkit.register_algorithm(poison_plugin("log0"))  # shipped to the learners now
    hps = learnerkit.get_algorithm("poisoned_bc").hyperparameters(non_finite="skip")
    spec = LearnerSpec(
        algorithm="poisoned_bc",
        framework=request.param,
        module_spec={
            "raise": ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
            "skip": ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
        },
        hyperparameters=hps,
        module_hyperparameters={"raise": {"non_finite": "raise"}},
        scaling=ScalingConfig(num_learners=2, num_cpus_per_learner=0.5),
    )
    group = LearnerGroup(spec)
    learnerkit.unregister_algorithm("poisoned_bc")
    yield group
    group.shutdown()


@pytest.mark.ray
def test_ray_learners_raise_alike_without_changing_state_when_one_shard_is_bad(two_learners):
    group = two_learners

    def state(learner: Learner) -> dict[str, Any]:
        return training_state(learner, "raise")

    def steps(learner: Learner) -> int:
        return optimizer_steps(learner, "raise")

    def batch(*args, **kwargs) -> MultiAgentBatch:
        return MultiAgentBatch({"raise": poisoned_batch(*args, **kwargs)})

    group.update(batch(128, []))
    before = group.foreach_learner(state)
    # Row 2 is learner 0's: its loss is -inf, its gradients finite; learner 1's all finite.
    with pytest.raises(NonFiniteError, match="epoch 1, minibatch 1 of 1: loss terms"):
        group.update(batch(128, [2], seed=1))
    after = group.foreach_learner(state)
    assert_bitwise_equal(after[0], before[0])
    assert_bitwise_equal(after[1], before[0])
    group.update(batch(128, [], seed=2), minibatch_size=32)
    assert group.foreach_learner(steps) == [5, 5]
    states = group.foreach_learner(state)
    assert_bitwise_equal(states[0], states[1])


@pytest.mark.ray
def test_ray_learners_skip_the_same_minibatches_when_only_one_shard_is_bad(two_learners):
    group = two_learners

    def state(learner: Learner) -> dict[str, Any]:
        return training_state(learner, "skip")

    def steps(learner: Learner) -> int:
        return optimizer_steps(learner, "skip")

    # Each learner trains its 64 rows in 4 minibatches of 16; only learner 0's rows
    # are bad: a NaN observation, then a loss of -inf whose gradient alone is finite.
    bad_batches = [
        with_obs(poisoned_batch(128, []), [3], np.nan),
        poisoned_batch(128, [40], seed=1),
    ]
    for applied, batch in enumerate(bad_batches, start=1):
        results = group.update(MultiAgentBatch({"skip": batch}), minibatch_size=32)["skip"]
        assert results[SKIPPED] == 1
        assert np.isfinite(results["total_loss"])
        states = group.foreach_learner(state)
        assert_bitwise_equal(states[0], states[1])
        assert group.foreach_learner(steps) == [3 * applied] * 2
    assert all(np.isfinite(w).all() for w in states[0]["modules"].values())
    clean = MultiAgentBatch({"skip": poisoned_batch(128, [], seed=2)})
    results = group.update(clean, minibatch_size=32)["skip"]
    assert results[SKIPPED] == 0
    assert group.foreach_learner(steps) == [10, 10]
    states = group.foreach_learner(state)
    assert_bitwise_equal(states[0], states[1])
