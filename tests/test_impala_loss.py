"""IMPALA's loss, computed through a real Learner on a hand-made sequence batch, against an
independent float64 numpy reference; one update in each framework; its settings' errors.

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
    np_logp_and_entropy,
    np_vtrace_targets,
    sequence_batch,
)
from learnerkit_impala import IMPALAHyperparameters

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


def reference_impala_loss(space, hps, batch, current, entropy_coeff):
    """IMPALA's loss terms from the paper and RLlib, in float64 numpy. ``current`` holds the
    module's dist inputs and values for ``obs`` and its values for ``new_obs``."""
    logp, entropy = np_logp_and_entropy(space, current["dist_inputs"], batch[Columns.ACTIONS])
    values = current["values"].astype(np.float64)
    log_rhos = logp - batch[Columns.ACTION_LOGP]
    terminated = batch[Columns.TERMINATEDS]
    ended = terminated | batch[Columns.TRUNCATEDS]
    vs, pg_adv = np_vtrace_targets(
        log_rhos,
        batch[Columns.REWARDS].astype(np.float64),
        values,
        current["next_values"].astype(np.float64),
        terminated,
        ended,
        hps,
    )
    policy_loss = -np.mean(logp * pg_adv)
    vf_loss = 0.5 * np.mean((vs - values) ** 2)
    total = policy_loss + hps.vf_loss_coeff * vf_loss - entropy_coeff * entropy.mean()
    ev = 1 - np.var(vs - values) / (np.var(vs) + 1e-8)
    return {
        "total_loss": total,
        "policy_loss": policy_loss,
        "vf_loss": vf_loss,
        "entropy": entropy.mean(),
        "mean_rho": np.mean(np.exp(np.clip(log_rhos, -20, 20))),
        "vf_explained_var": np.clip(ev, -1.0, 1.0),
    }


# Fixtures ---------------------------------------------------------------------------------
def build_learner(framework, action_space, model_config=None, **hps):
    hps.setdefault("rollout_fragment_length", T)
    spec = LearnerSpec(
        algorithm="impala",
        framework=framework,
        module_spec=ModuleSpec(
            OBS_SPACE, action_space, model_config={"hiddens": [16], **(model_config or {})}
        ),
        hyperparameters=IMPALAHyperparameters(seed=3, **hps),
    )
    learner = Learner(spec)
    learner.build()
    return learner


VARIANTS = {
    "defaults": {},
    "wide_rho_narrow_c": dict(
        vtrace_clip_rho_threshold=1.5,
        vtrace_clip_pg_rho_threshold=0.7,
        vtrace_clip_c_threshold=0.8,
        vf_loss_coeff=1.0,
        entropy_coeff=0.05,
        gamma=0.9,
    ),
}


# Tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("space", sorted(ACTION_SPACES))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_loss_terms_match_the_numpy_reference(framework, space, variant):
    learner = build_learner(framework, ACTION_SPACES[space], **VARIANTS[variant])
    batch = sequence_batch(learner, space)
    got = compute_loss(learner, batch)
    state = learner.algorithm_state(DEFAULT_MODULE_ID)
    expected = reference_impala_loss(
        space, learner.hps, batch, current_outputs(learner, batch), state["entropy_coeff"]
    )
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name


def test_the_batch_is_off_policy_beyond_the_clip_thresholds():
    # Guards the test above: some importance weights are clipped, some not.
    learner = build_learner("torch", ACTION_SPACES["discrete"])
    batch = sequence_batch(learner, "discrete")
    current = current_outputs(learner, batch)
    logp, _ = np_logp_and_entropy("discrete", current["dist_inputs"], batch[Columns.ACTIONS])
    rhos = np.exp(logp - batch[Columns.ACTION_LOGP])
    for bar in (0.7, 0.8, 1.0, 1.5):
        assert 0 < np.mean(rhos > bar) < 1


def test_a_row_count_that_is_not_whole_fragments_is_a_batch_error(framework):
    learner = build_learner(framework, ACTION_SPACES["discrete"])
    batch = sequence_batch(learner, "discrete")
    cut = {k: v[:-1] for k, v in batch.items()}
    with pytest.raises(BatchError, match=r"14 rows, not a multiple of rollout_fragment_length=5"):
        compute_loss(learner, cut)


def test_one_update_on_sequences_changes_the_weights(framework):
    learner = build_learner(framework, ACTION_SPACES["discrete"])
    batch = sequence_batch(learner, "discrete")
    before = learner.get_module_state()[DEFAULT_MODULE_ID]
    results = learner.update(batch, sequence_length=T, minibatch_size=2 * T)
    after = learner.get_module_state()[DEFAULT_MODULE_ID]
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    stats = results[DEFAULT_MODULE_ID]
    documented = {
        "total_loss",
        "policy_loss",
        "vf_loss",
        "entropy",
        "mean_rho",
        "vf_explained_var",
        "gradient_norm",
        "learning_rate",
        "entropy_coeff",
        "num_samples",
    }
    assert documented <= set(stats)
    assert all(np.isfinite(stats[k]) for k in documented)
    assert stats["entropy_coeff"] == pytest.approx(0.0)
    assert stats["learning_rate"] == pytest.approx(1e-3)


def test_the_entropy_schedule_is_stepped_by_additional_update():
    learner = build_learner(
        "torch", ACTION_SPACES["discrete"], entropy_coeff_schedule=[[0, 0.1], [100, 0.0]]
    )
    assert learner.algorithm_state(DEFAULT_MODULE_ID)["entropy_coeff"] == pytest.approx(0.1)
    results = learner.additional_update(timestep=50)
    assert results[DEFAULT_MODULE_ID]["entropy_coeff"] == pytest.approx(0.05)
    assert learner.algorithm_state(DEFAULT_MODULE_ID)["entropy_coeff"] == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        (dict(vf_loss_coeff=-0.5), "vf_loss_coeff"),
        (dict(entropy_coeff=-0.01), "entropy_coeff"),
        (dict(entropy_coeff_schedule=[[0, 0.01], [10, -0.1]]), "entropy_coeff_schedule"),
        (dict(entropy_coeff_schedule=[[5, 0.01]]), "entropy_coeff_schedule"),
        (dict(vtrace_clip_rho_threshold=0.0), "vtrace_clip_rho_threshold"),
        (dict(vtrace_clip_pg_rho_threshold=-1.0), "vtrace_clip_pg_rho_threshold"),
        (dict(vtrace_clip_c_threshold=0.0), "vtrace_clip_c_threshold"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(grad_clip=-1.0), "grad_clip"),
        (dict(adam_epsilon=0.0), "adam_epsilon"),
        (dict(gamma=1.5), "gamma"),
        (dict(rollout_fragment_length=0), "rollout_fragment_length"),
        (dict(minibatch_size=75), "minibatch_size"),
    ],
)
def test_bad_hyperparameters_are_config_errors_naming_the_field(settings, field):
    with pytest.raises(ConfigError, match=rf"IMPALAHyperparameters\.{field}"):
        IMPALAHyperparameters(**settings)


def test_defaults_follow_rllibs_names_and_values():
    hps = IMPALAHyperparameters()
    assert (hps.vf_loss_coeff, hps.entropy_coeff, hps.grad_clip) == (0.5, 0.0, 40.0)
    assert hps.vtrace_clip_rho_threshold == hps.vtrace_clip_pg_rho_threshold == 1.0
    assert hps.vtrace_clip_c_threshold == 1.0
    algorithm = get_algorithm("impala")
    assert algorithm.training_loop == "async" and algorithm.package == "learnerkit-impala"


def test_listing_impala_imports_no_framework():
    code = (
        "import sys, learnerkit; learnerkit.get_algorithm('impala'); "
        "heavy = {'torch', 'tensorflow', 'keras', 'ray'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("shared", [False, True])
def test_the_value_tower_steps_at_vf_lr_ratio_times_the_learning_rate(framework, shared):
    # With shared layers, the encoder is the policy's optimizer's.
    model_config = {"vf_share_layers": shared}
    learner = build_learner(framework, ACTION_SPACES["discrete"], model_config, learning_rate=2e-3)
    module = learner.module[DEFAULT_MODULE_ID]
    names = learner.named_parameters(module)
    ops = learner.backend.ops
    pi, vf = learner.optimizer(DEFAULT_MODULE_ID, "pi"), learner.optimizer(DEFAULT_MODULE_ID, "vf")
    assert ops.get_learning_rate(pi) == pytest.approx(2e-3)
    assert ops.get_learning_rate(vf) == pytest.approx(1e-2)  # the default ratio, 5
    in_vf = {id(p) for p in learner.backend.optimizer_parameters(vf)}
    assert in_vf == {id(p) for name, p in names.items() if name.startswith("vf.")} != set()
    assert any(name.startswith("encoder.") for name in names) == shared

    one = build_learner(framework, ACTION_SPACES["discrete"], vf_lr_ratio=1)
    assert sorted(one.get_state()["optimizers"][DEFAULT_MODULE_ID]) == ["default"]


def test_a_module_without_a_vf_tower_keeps_one_optimizer_and_says_so(caplog):
    import torch

    from learnerkit.backends.torch.modules import TorchMLPActorCritic

    class Renamed(TorchMLPActorCritic):
        def __init__(self, *args):
            super().__init__(*args)
            self.value_tower = self.vf  # its parameters now named value_tower.*
            del self.vf

        def _dist_inputs_and_value(self, obs):
            obs = obs.flatten(1).to(torch.float32)
            return self.pi(obs), self.value_tower(obs).squeeze(-1)

    spec = LearnerSpec(
        algorithm="impala",
        module_spec=ModuleSpec(OBS_SPACE, ACTION_SPACES["discrete"], module_class=Renamed),
        hyperparameters=IMPALAHyperparameters(rollout_fragment_length=T),
    )
    learner = Learner(spec)
    with caplog.at_level("WARNING"):
        learner.build()
    assert "no parameters named 'vf.*'" in caplog.text
    assert sorted(learner.get_state()["optimizers"][DEFAULT_MODULE_ID]) == ["default"]
