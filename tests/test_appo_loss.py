"""APPO's loss, computed through a real Learner on a hand-made sequence batch with a target
network unlike the module, against an independent float64 numpy reference (its own slow
V-trace loop); the target network's updates; the adaptive KL coefficient; one update and a
checkpoint round trip in each framework; its settings' errors.

The batch is laid out as the asynchronous loop sends it (``Rollout.to_sequences``): rows
``n * T`` to ``n * T + T - 1`` are T consecutive steps of environment n, with ``new_obs``
the observation each step reached.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from fragment_references import (
    ACTION_SPACES,
    OBS_SPACE,
    T,
    compute_loss,
    current_outputs,
    np_kl,
    np_logp_and_entropy,
    np_vtrace_targets,
    sequence_batch,
)
from learnerkit_appo import APPOHyperparameters

from learnerkit import (
    DEFAULT_MODULE_ID,
    BatchError,
    Columns,
    ConfigError,
    Learner,
    LearnerSpec,
    ModuleSpec,
    get_algorithm,
)

MID = DEFAULT_MODULE_ID


# The numpy reference ----------------------------------------------------------------------
def np_surrogate_ratio(hps, logp, target_logp, behaviour_logp):
    """RLlib's APPO ratio: clip(mu / pi_target, 0, rho) * pi / mu (logs clamped to +-20)."""
    is_ratio = np.exp(np.clip(behaviour_logp - target_logp, -20, 20))
    if hps.target_worker_clipping is not None:
        is_ratio = np.clip(is_ratio, 0.0, hps.target_worker_clipping)
    return is_ratio * np.exp(np.clip(logp - behaviour_logp, -20, 20))


def reference_appo_loss(space, hps, batch, current, target_inputs, state):
    """APPO's loss terms as RLlib's APPO defines them, in float64 numpy. ``current`` holds
    the module's dist inputs and values for ``obs`` and its values for ``new_obs``;
    ``target_inputs`` the target network's dist inputs for ``obs``."""
    actions = batch[Columns.ACTIONS]
    logp, entropy = np_logp_and_entropy(space, current["dist_inputs"], actions)
    target_logp, _ = np_logp_and_entropy(space, target_inputs, actions)
    behaviour_logp = batch[Columns.ACTION_LOGP].astype(np.float64)
    values = current["values"].astype(np.float64)
    terminated = batch[Columns.TERMINATEDS]
    vs, pg_adv = np_vtrace_targets(
        target_logp - behaviour_logp,
        batch[Columns.REWARDS].astype(np.float64),
        values,
        current["next_values"].astype(np.float64),
        terminated,
        terminated | batch[Columns.TRUNCATEDS],
        hps,
    )
    ratio = np_surrogate_ratio(hps, logp, target_logp, behaviour_logp)
    clipped = np.clip(ratio, 1 - hps.clip_param, 1 + hps.clip_param)
    policy_loss = -np.mean(np.minimum(ratio * pg_adv, clipped * pg_adv))
    vf_loss = 0.5 * np.mean((vs - values) ** 2)
    mean_kl = np.mean(np_kl(space, target_inputs, current["dist_inputs"]))
    total = policy_loss + hps.vf_loss_coeff * vf_loss - state["entropy_coeff"] * entropy.mean()
    if hps.use_kl_loss:
        total += state["kl_coeff"] * mean_kl
    ev = 1 - np.var(vs - values) / (np.var(vs) + 1e-8)
    return {
        "total_loss": total,
        "policy_loss": policy_loss,
        "vf_loss": vf_loss,
        "entropy": entropy.mean(),
        "mean_kl": mean_kl,
        "mean_ratio": ratio.mean(),
        "clip_fraction": np.mean(np.abs(ratio - 1) > hps.clip_param),
        "vf_explained_var": np.clip(ev, -1.0, 1.0),
    }


# Fixtures ---------------------------------------------------------------------------------
def build_learner(framework, action_space=ACTION_SPACES["discrete"], **hps):
    hps.setdefault("rollout_fragment_length", T)
    hps.setdefault("minibatch_size", None)
    spec = LearnerSpec(
        algorithm="appo",
        framework=framework,
        module_spec=ModuleSpec(OBS_SPACE, action_space, model_config={"hiddens": [16]}),
        hyperparameters=APPOHyperparameters(seed=3, **hps),
    )
    learner = Learner(spec)
    learner.build()
    return learner


def module_weights(learner):
    return learner.get_module_state()[MID]


def target_weights(learner):
    return learner.backend.get_module_state(learner.target_module(MID))


def perturb_target(learner, scale=0.6, seed=7):
    """Move the target network's weights away from the module's."""
    rng = np.random.default_rng(seed)
    weights = {
        k: (v + scale * rng.normal(size=v.shape)).astype(v.dtype)
        for k, v in target_weights(learner).items()
    }
    learner.backend.set_module_state(learner.target_module(MID), weights, "the test's target")


def forward(learner, module, obs):
    tensors = learner.backend.to_tensors({Columns.OBS: obs})
    return learner.backend.ops.to_numpy(module.forward_train(tensors)[Columns.ACTION_DIST_INPUTS])


def expected_loss(learner, space, batch):
    return reference_appo_loss(
        space,
        learner.hps,
        batch,
        current_outputs(learner, batch),
        forward(learner, learner.target_module(MID), batch[Columns.OBS]),
        learner.algorithm_state(MID),
    )


VARIANTS = {
    "defaults": {},
    "kl_loss_and_other_clips": dict(
        use_kl_loss=True,
        kl_coeff=0.7,
        clip_param=0.2,
        target_worker_clipping=1.5,
        vtrace_clip_rho_threshold=1.5,
        vtrace_clip_pg_rho_threshold=0.7,
        vtrace_clip_c_threshold=0.8,
        vf_loss_coeff=1.0,
        entropy_coeff=0.05,
        gamma=0.9,
    ),
    "no_caps": dict(
        use_kl_loss=True,
        target_worker_clipping=None,
        vtrace_clip_rho_threshold=None,
        vtrace_clip_pg_rho_threshold=None,
        vtrace_clip_c_threshold=None,
    ),
}
LOSS_TERMS = (
    "total_loss",
    "policy_loss",
    "vf_loss",
    "entropy",
    "mean_kl",
    "mean_ratio",
    "clip_fraction",
    "vf_explained_var",
)


# The loss ---------------------------------------------------------------------------------
@pytest.mark.parametrize("space", sorted(ACTION_SPACES))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_loss_terms_match_the_numpy_reference(framework, space, variant):
    learner = build_learner(framework, ACTION_SPACES[space], **VARIANTS[variant])
    perturb_target(learner)
    batch = sequence_batch(learner, space)
    got = compute_loss(learner, batch)
    expected = expected_loss(learner, space, batch)
    assert set(LOSS_TERMS) <= set(got)
    for name in LOSS_TERMS:
        assert got[name] == pytest.approx(expected[name], rel=1e-4, abs=1e-5), name


def test_the_kl_penalty_enters_the_total_loss_only_with_use_kl_loss(framework):
    totals = {}
    for use_kl_loss in (False, True):
        learner = build_learner(framework, use_kl_loss=use_kl_loss, kl_coeff=2.0)
        perturb_target(learner)
        got = compute_loss(learner, sequence_batch(learner, "discrete"))
        totals[use_kl_loss] = got["total_loss"]
        assert got["mean_kl"] > 0.0  # reported either way
    assert totals[True] - totals[False] == pytest.approx(2.0 * got["mean_kl"], rel=1e-4)


def test_the_batch_exercises_every_clip():
    # Guards the reference test: each cap is hit by some rows and not by others.
    learner = build_learner("torch")
    perturb_target(learner)
    batch = sequence_batch(learner, "discrete")
    actions = batch[Columns.ACTIONS]
    logp, _ = np_logp_and_entropy(
        "discrete", current_outputs(learner, batch)["dist_inputs"], actions
    )
    target_inputs = forward(learner, learner.target_module(MID), batch[Columns.OBS])
    target_logp, _ = np_logp_and_entropy("discrete", target_inputs, actions)
    behaviour_logp = batch[Columns.ACTION_LOGP]
    rhos = np.exp(target_logp - behaviour_logp)
    for bar in (0.7, 0.8, 1.0, 1.5):
        assert 0 < np.mean(rhos > bar) < 1
    is_ratios = np.exp(behaviour_logp - target_logp)
    assert 0 < np.mean(is_ratios > 2.0) < 1 and 0 < np.mean(is_ratios > 1.5) < 1
    ratio = np_surrogate_ratio(learner.hps, logp, target_logp, behaviour_logp)
    assert np.any(ratio > 1.4) and np.any(ratio < 0.6) and np.any(np.abs(ratio - 1) < 0.2)


def test_on_policy_with_a_fresh_target_the_ratio_is_one_and_the_kl_zero(framework):
    learner = build_learner(framework)
    got = compute_loss(learner, sequence_batch(learner, "discrete", behaviour_noise=0.0))
    assert got["mean_ratio"] == pytest.approx(1.0, abs=1e-5)
    assert got["clip_fraction"] == 0.0
    assert got["mean_kl"] == pytest.approx(0.0, abs=1e-6)


def test_a_row_count_that_is_not_whole_fragments_is_a_batch_error(framework):
    learner = build_learner(framework)
    batch = sequence_batch(learner, "discrete")
    cut = {k: v[:-1] for k, v in batch.items()}
    with pytest.raises(BatchError, match=r"14 rows, not a multiple of rollout_fragment_length=5"):
        compute_loss(learner, cut)


# One update -------------------------------------------------------------------------------
DOCUMENTED = {
    *LOSS_TERMS,
    "gradient_norm",
    "learning_rate",
    "num_samples",
    "kl_coeff",
    "entropy_coeff",
    "target_updates_total",
}


@pytest.mark.parametrize("use_kl_loss", [False, True])
def test_one_update_on_sequences_reports_the_loss_before_its_step(framework, use_kl_loss):
    # One full-batch step: its statistics are the loss of the weights before the step, so
    # the compiled step (a tf.function in TF) must agree with the reference too.
    learner = build_learner(framework, use_kl_loss=use_kl_loss)
    perturb_target(learner)
    batch = sequence_batch(learner, "discrete")
    expected = expected_loss(learner, "discrete", batch)
    before, target_before = module_weights(learner), target_weights(learner)
    results = learner.update(batch, sequence_length=T, minibatch_size=None, shuffle=False)
    stats = results[MID]
    assert DOCUMENTED <= set(stats)
    assert all(np.isfinite(stats[k]) for k in DOCUMENTED)
    for name in LOSS_TERMS:
        assert stats[name] == pytest.approx(expected[name], rel=1e-4, abs=1e-5), name
    assert (stats["kl_coeff"], stats["entropy_coeff"]) == (pytest.approx(1.0), pytest.approx(0.0))
    assert stats["target_updates_total"] == 0
    after = module_weights(learner)
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    # The target network takes no gradient step.
    assert all(np.array_equal(target_before[k], v) for k, v in target_weights(learner).items())


def test_minibatched_updates_run_and_change_the_weights(framework):
    space = "box" if framework == "tf" else "discrete"  # one of each, to keep it fast
    learner = build_learner(framework, ACTION_SPACES[space], use_kl_loss=True)
    perturb_target(learner)
    batch = sequence_batch(learner, space)
    before = module_weights(learner)
    stats = learner.update(batch, sequence_length=T, minibatch_size=2 * T, num_epochs=2)[MID]
    after = module_weights(learner)
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    assert all(np.isfinite(stats[k]) for k in DOCUMENTED)


# The target network -----------------------------------------------------------------------
# When the target moves is APPO's additional_update, plain Python over the learner's counts:
# its cadence is checked on torch. The copy and the polyak average it asks for are the
# host's, checked bitwise in both frameworks in test_target_networks.py.
def test_the_target_network_starts_as_a_copy_of_the_module(framework):
    learner = build_learner(framework)
    module, target = module_weights(learner), target_weights(learner)
    assert set(module) == set(target)
    assert all(np.array_equal(module[k], target[k]) for k in module)
    assert learner.num_target_updates(MID) == 0


def test_additional_update_copies_the_module_every_target_network_update_freq_updates():
    learner = build_learner("torch", target_network_update_freq=3)
    batch = sequence_batch(learner, "discrete")
    copied = target_weights(learner)  # the target at its last update
    for k in range(1, 8):
        learner.update(batch, sequence_length=T)
        extra = learner.additional_update(timestep=100 * k)[MID]
        assert extra["target_updates_total"] == k // 3 == learner.num_target_updates(MID)
        module, target = module_weights(learner), target_weights(learner)
        if k % 3 == 0:  # a hard copy (tau=1): bitwise equal to the module
            assert all(np.array_equal(module[n], target[n]) for n in module)
            copied = target
        else:  # untouched since the last target update, while the module moved on
            assert all(np.array_equal(copied[n], target[n]) for n in target)
            assert any(not np.array_equal(module[n], target[n]) for n in module)


def test_a_late_additional_update_moves_the_target_once():
    # The loop calls additional_update every broadcast_interval updates: once that is more
    # than target_network_update_freq, the target moves once per call.
    learner = build_learner("torch", target_network_update_freq=2)
    batch = sequence_batch(learner, "discrete")
    for _ in range(5):
        learner.update(batch, sequence_length=T)
    assert learner.additional_update(timestep=1)[MID]["target_updates_total"] == 1
    assert learner.additional_update(timestep=2)[MID]["target_updates_total"] == 1


def test_a_soft_target_update_mixes_module_and_target_by_tau():
    learner = build_learner("torch", tau=0.5, target_network_update_freq=1)
    perturb_target(learner)
    learner.update(sequence_batch(learner, "discrete"), sequence_length=T)
    module, old_target = module_weights(learner), target_weights(learner)
    learner.additional_update(timestep=1)
    new_target = target_weights(learner)
    for name in module:
        np.testing.assert_allclose(
            new_target[name],
            0.5 * module[name].astype(np.float64) + 0.5 * old_target[name],
            rtol=1e-6,
            atol=1e-7,
        )
    assert learner.num_target_updates(MID) == 1


# The adaptive KL coefficient --------------------------------------------------------------
def kl_coeff_after(learner, sampled_kl):
    extra = learner.additional_update(timestep=0, sampled_kl_values={MID: sampled_kl})[MID]
    assert extra["kl_coeff"] == learner.algorithm_state(MID)["kl_coeff"]
    return extra["kl_coeff"]


@pytest.mark.parametrize(
    ("sampled_kl", "factor"),
    [(0.021, 1.5), (0.5, 1.5), (0.0049, 0.5), (0.0, 0.5), (0.005, 1.0), (0.01, 1.0), (0.02, 1.0)],
)
def test_kl_coeff_follows_rllibs_rule(sampled_kl, factor):
    learner = build_learner("torch", use_kl_loss=True, kl_coeff=0.8, kl_target=0.01)
    assert kl_coeff_after(learner, sampled_kl) == pytest.approx(0.8 * factor)


def test_kl_coeff_never_leaves_its_bounds():
    learner = build_learner("torch", use_kl_loss=True, kl_coeff=1.0, kl_coeff_bounds=(0.01, 10.0))
    seen = [kl_coeff_after(learner, 1.0) for _ in range(50)]
    assert max(seen) == 10.0 and all(0.01 <= c <= 10.0 for c in seen)
    seen = [kl_coeff_after(learner, 0.0) for _ in range(100)]
    assert min(seen) == 0.01 and all(0.01 <= c <= 10.0 for c in seen)


def test_kl_coeff_stays_when_the_sampled_kl_is_nan_or_missing():
    learner = build_learner("torch", use_kl_loss=True, kl_coeff=0.8)
    assert kl_coeff_after(learner, float("nan")) == 0.8
    assert learner.additional_update(timestep=0)[MID]["kl_coeff"] == 0.8
    extra = learner.additional_update(timestep=0, sampled_kl_values={"other": 1.0})[MID]
    assert extra["kl_coeff"] == 0.8


def test_kl_coeff_is_not_adapted_without_use_kl_loss():
    learner = build_learner("torch", use_kl_loss=False, kl_coeff=0.8)
    assert kl_coeff_after(learner, 1.0) == 0.8


def test_the_entropy_schedule_is_stepped_by_additional_update():
    learner = build_learner("torch", entropy_coeff_schedule=[[0, 0.1], [100, 0.0]])
    assert learner.algorithm_state(MID)["entropy_coeff"] == pytest.approx(0.1)
    results = learner.additional_update(timestep=50)
    assert results[MID]["entropy_coeff"] == pytest.approx(0.05)


# State ------------------------------------------------------------------------------------
def test_a_checkpoint_keeps_the_target_network_and_kl_coeff(framework, tmp_path):
    settings = dict(use_kl_loss=True, target_network_update_freq=2, tau=0.5)
    learner = build_learner(framework, **settings)
    perturb_target(learner)
    batch = sequence_batch(learner, "discrete")
    for _ in range(3):
        learner.update(batch, sequence_length=T)
        learner.additional_update(timestep=10, sampled_kl_values={MID: 1.0})
    assert learner.num_target_updates(MID) == 1
    learner.save_state(tmp_path / "ckpt")

    fresh = build_learner(framework, **settings)
    fresh.load_state(tmp_path / "ckpt")
    assert fresh.algorithm_state(MID)["kl_coeff"] == pytest.approx(1.0 * 1.5**3)
    assert fresh.num_target_updates(MID) == 1 and fresh.num_updates(MID) == 3
    saved, restored = target_weights(learner), target_weights(fresh)
    assert all(np.array_equal(saved[k], restored[k]) for k in saved)
    assert compute_loss(fresh, batch) == pytest.approx(compute_loss(learner, batch), rel=1e-6)
    # The cadence carries on from the checkpoint: one more update is the second since the
    # last target update.
    fresh.update(batch, sequence_length=T)
    assert fresh.additional_update(timestep=20)[MID]["target_updates_total"] == 2


# Settings ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "field"),
    [
        (dict(clip_param=0.0), "clip_param"),
        (dict(target_worker_clipping=0.0), "target_worker_clipping"),
        (dict(kl_coeff=0.0), "kl_coeff"),
        (dict(kl_coeff=1000.0), "kl_coeff"),
        (dict(kl_target=-0.01), "kl_target"),
        (dict(kl_coeff_bounds=(1.0, 0.5)), "kl_coeff_bounds"),
        (dict(kl_coeff_bounds=(0.0, 10.0)), "kl_coeff_bounds"),
        (dict(kl_coeff_bounds=(0.1,)), "kl_coeff_bounds"),
        (dict(kl_coeff_bounds="wide"), "kl_coeff_bounds"),
        (dict(kl_coeff_bounds=(0.1, float("inf"))), "kl_coeff_bounds"),
        (dict(tau=0.0), "tau"),
        (dict(tau=1.5), "tau"),
        (dict(target_network_update_freq=0), "target_network_update_freq"),
        (dict(target_network_update_freq=1.5), "target_network_update_freq"),
        (dict(vf_loss_coeff=-0.5), "vf_loss_coeff"),
        (dict(entropy_coeff=-0.01), "entropy_coeff"),
        (dict(entropy_coeff_schedule=[[0, 0.01], [10, -0.1]]), "entropy_coeff_schedule"),
        (dict(vtrace_clip_rho_threshold=0.0), "vtrace_clip_rho_threshold"),
        (dict(vtrace_clip_pg_rho_threshold=-1.0), "vtrace_clip_pg_rho_threshold"),
        (dict(vtrace_clip_c_threshold=0.0), "vtrace_clip_c_threshold"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(grad_clip=-1.0), "grad_clip"),
        (dict(adam_epsilon=0.0), "adam_epsilon"),
        (dict(minibatch_size=75), "minibatch_size"),
        (dict(minibatch_size=0), "minibatch_size"),
    ],
)
def test_bad_hyperparameters_are_config_errors_naming_the_field(settings, field):
    with pytest.raises(ConfigError, match=rf"APPOHyperparameters\.{field}\b"):
        APPOHyperparameters(**settings)


def test_defaults_follow_rllibs_names_and_values():
    hps = APPOHyperparameters()
    assert (hps.clip_param, hps.use_kl_loss, hps.kl_coeff, hps.kl_target) == (0.4, False, 1.0, 0.01)
    assert (hps.tau, hps.target_network_update_freq, hps.target_worker_clipping) == (1.0, 2, 2.0)
    assert (hps.vf_loss_coeff, hps.entropy_coeff, hps.grad_clip) == (0.5, 0.0, 40.0)
    assert hps.kl_coeff_bounds[0] < hps.kl_coeff < hps.kl_coeff_bounds[1]
    algorithm = get_algorithm("appo")
    assert algorithm.training_loop == "async" and algorithm.target_network
    assert algorithm.package == "learnerkit-appo" and algorithm.frameworks == ("torch", "tf")


def test_listing_appo_imports_no_framework():
    code = (
        "import sys, learnerkit; learnerkit.get_algorithm('appo'); "
        "heavy = {'torch', 'tensorflow', 'keras', 'ray'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
