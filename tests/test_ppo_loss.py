"""PPO's loss, computed through a real Learner, against an independent numpy reference.

The module's forward outputs on a fixed batch are converted to numpy; the reference
recomputes every term from them (and from the batch) with numpy only, so a mistake in the
plugin's ops code, in a backend's ops, or in the distributions shows up as a mismatch.
"""

from __future__ import annotations

import attrs
import gymnasium
import numpy as np
import pytest
from learnerkit_ppo import PPOHyperparameters
from learnerkit_ppo.losses import check_same_shape

from learnerkit import DEFAULT_MODULE_ID, BatchError, Columns, Learner, LearnerSpec, ModuleSpec

FRAMEWORKS = ["torch", "tf"]
OBS_SPACE = gymnasium.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACTION_SPACES = {
    "discrete": gymnasium.spaces.Discrete(3),
    "box": gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32),
}
B = 12


# The numpy reference --------------------------------------------------------------------
def np_log_softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class NpCategorical:
    def __init__(self, logits):
        self.log_probs = np_log_softmax(logits.astype(np.float64))

    def logp(self, actions):
        return self.log_probs[np.arange(len(actions)), actions]

    def entropy(self):
        return -(np.exp(self.log_probs) * self.log_probs).sum(-1)

    def kl(self, other):
        return (np.exp(self.log_probs) * (self.log_probs - other.log_probs)).sum(-1)


class NpDiagGaussian:
    def __init__(self, inputs):
        self.mean, self.log_std = np.split(inputs.astype(np.float64), 2, axis=-1)
        self.std = np.exp(self.log_std)

    def logp(self, actions):
        z = (actions - self.mean) / self.std
        return (-0.5 * z**2 - self.log_std - 0.5 * np.log(2 * np.pi)).sum(-1)

    def entropy(self):
        return (self.log_std + 0.5 + 0.5 * np.log(2 * np.pi)).sum(-1)

    def kl(self, other):
        var_ratio = (self.std**2 + (self.mean - other.mean) ** 2) / (2 * other.std**2)
        return (other.log_std - self.log_std + var_ratio - 0.5).sum(-1)


def reference_ppo_loss(hps, batch, dist_inputs, values, kl_coeff, entropy_coeff, dist_cls):
    """PPO's loss terms written directly from the paper and RLlib, in float64 numpy."""
    dist, old_dist = dist_cls(dist_inputs), dist_cls(batch[Columns.ACTION_DIST_INPUTS])
    adv = batch[Columns.ADVANTAGES].astype(np.float64)
    if hps.normalize_advantages:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    ratio = np.exp(dist.logp(batch[Columns.ACTIONS]) - batch[Columns.ACTION_LOGP])
    c = hps.clip_param
    policy_loss = -np.mean(np.minimum(ratio * adv, np.clip(ratio, 1 - c, 1 + c) * adv))
    targets, old_v = batch[Columns.VALUE_TARGETS], batch[Columns.VF_PREDS]
    err = (values - targets) ** 2
    if hps.vf_clip_param is None:
        vf = err
    elif hps.vf_clip_around_old_value:
        v_clipped = old_v + np.clip(values - old_v, -hps.vf_clip_param, hps.vf_clip_param)
        vf = np.maximum(err, (v_clipped - targets) ** 2)
    else:
        vf = np.minimum(err, hps.vf_clip_param)
    vf_loss = vf.mean()
    entropy = dist.entropy().mean()
    kl = old_dist.kl(dist).mean()
    total = policy_loss + hps.vf_loss_coeff * vf_loss - entropy_coeff * entropy
    if hps.use_kl_loss:
        total += kl_coeff * kl
    ev = 1 - np.var(targets - values) / (np.var(targets) + 1e-8)
    return {
        "total_loss": total,
        "policy_loss": policy_loss,
        "vf_loss": vf_loss,
        "entropy": entropy,
        "mean_kl": kl,
        "vf_explained_var": np.clip(ev, -1.0, 1.0),
        "clip_fraction": np.mean(np.abs(ratio - 1) > c),
    }


# Fixtures -------------------------------------------------------------------------------
def build_learner(framework, action_space, **hps):
    spec = LearnerSpec(
        algorithm="ppo",
        framework=framework,
        module_spec=ModuleSpec(OBS_SPACE, action_space, model_config={"hiddens": [16]}),
        hyperparameters=PPOHyperparameters(seed=3, **hps),
    )
    learner = Learner(spec)
    learner.build()
    return learner


def forward_numpy(learner, obs):
    """The module's current dist inputs and values for ``obs``, as float numpy."""
    module = learner.module[DEFAULT_MODULE_ID]
    out = module.forward_train(learner.backend.to_tensors({Columns.OBS: obs}))
    to_numpy = learner.backend.ops.to_numpy
    return to_numpy(out[Columns.ACTION_DIST_INPUTS]), to_numpy(out[Columns.VF_PREDS])


def fixed_batch(learner, action_space):
    """A batch whose old policy and old values differ from the module's by fixed noise, so
    that some ratios and values fall outside the clipping ranges."""
    rng = np.random.default_rng(42)
    obs = rng.uniform(-1, 1, (B, 4)).astype(np.float32)
    dist_inputs, values = forward_numpy(learner, obs)
    old_inputs = (dist_inputs + rng.normal(0, 0.4, dist_inputs.shape)).astype(np.float32)
    if hasattr(action_space, "n"):
        actions = rng.integers(0, action_space.n, B)
        old_logp = NpCategorical(old_inputs).logp(actions)
    else:
        actions = rng.normal(0, 1, (B, 2)).astype(np.float32)
        old_logp = NpDiagGaussian(old_inputs).logp(actions)
    return {
        Columns.OBS: obs,
        Columns.ACTIONS: actions,
        Columns.ACTION_LOGP: old_logp.astype(np.float32),
        Columns.ACTION_DIST_INPUTS: old_inputs,
        Columns.VF_PREDS: (values + rng.normal(0, 0.5, B)).astype(np.float32),
        Columns.ADVANTAGES: rng.normal(0.3, 1.5, B).astype(np.float32),
        Columns.VALUE_TARGETS: rng.normal(0, 2.0, B).astype(np.float32),
    }


VARIANTS = {
    "defaults": {},
    "rllib_vf_clamp_kl_entropy": dict(
        vf_clip_param=1.0, use_kl_loss=True, kl_coeff=0.3, entropy_coeff=0.01
    ),
    "vf_clip_around_old_value": dict(
        vf_clip_param=0.3, vf_clip_around_old_value=True, vf_loss_coeff=1.0
    ),
    "raw_advantages_wide_clip": dict(normalize_advantages=False, clip_param=0.1),
}


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("space", sorted(ACTION_SPACES))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_loss_terms_match_the_numpy_reference(framework, space, variant):
    action_space = ACTION_SPACES[space]
    learner = build_learner(framework, action_space, **VARIANTS[variant])
    batch = fixed_batch(learner, action_space)
    tensors = learner.backend.to_tensors(batch)
    fwd_out = learner.module[DEFAULT_MODULE_ID].forward_train(tensors)
    out = learner.compute_loss_for_module(
        module_id=DEFAULT_MODULE_ID, hps=learner.hps, batch=tensors, fwd_out=fwd_out
    )
    dist_inputs, values = forward_numpy(learner, batch[Columns.OBS])
    state = learner.algorithm_state(DEFAULT_MODULE_ID)
    dist_cls = NpCategorical if space == "discrete" else NpDiagGaussian
    expected = reference_ppo_loss(
        learner.hps,
        batch,
        dist_inputs,
        values,
        state["kl_coeff"],
        state["entropy_coeff"],
        dist_cls,
    )
    got = {k: float(learner.backend.ops.to_numpy(out[k])) for k in expected}
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_fixed_batch_exercises_every_clipping_branch(framework):
    # Guards the test above: a batch with nothing clipped would not test the clipping.
    learner = build_learner(framework, ACTION_SPACES["discrete"])
    batch = fixed_batch(learner, ACTION_SPACES["discrete"])
    dist_inputs, values = forward_numpy(learner, batch[Columns.OBS])
    ratio = np.exp(NpCategorical(dist_inputs).logp(batch[Columns.ACTIONS]) - batch["action_logp"])
    assert 0 < np.mean(np.abs(ratio - 1) > 0.2) < 1
    err = (values - batch[Columns.VALUE_TARGETS]) ** 2
    assert 0 < np.mean(err > 1.0) < 1
    moved = np.abs(values - batch[Columns.VF_PREDS])
    assert 0 < np.mean(moved > 0.3) < 1


@pytest.mark.parametrize("entropy_coeff", [0.0, 0.01])
def test_statistics_and_a_zero_entropy_bonus_add_nothing_to_the_backward_graph(entropy_coeff):
    # Issue 10: every node of the graph costs a kernel forward and backward per minibatch.
    learner = build_learner("torch", ACTION_SPACES["discrete"], entropy_coeff=entropy_coeff)
    tensors = learner.backend.to_tensors(fixed_batch(learner, ACTION_SPACES["discrete"]))
    fwd_out = learner.module[DEFAULT_MODULE_ID].forward_train(tensors)
    out = learner.compute_loss_for_module(
        module_id=DEFAULT_MODULE_ID, hps=learner.hps, batch=tensors, fwd_out=fwd_out
    )
    assert not out["clip_fraction"].requires_grad
    assert not out["vf_explained_var"].requires_grad
    graph, pending = set(), [out["total_loss"].grad_fn]
    while pending:
        node = pending.pop()
        if node is not None and node not in graph:
            graph.add(node)
            pending.extend(next_node for next_node, _ in node.next_functions)
    reaches_entropy = out["entropy"].grad_fn in graph
    assert reaches_entropy == (entropy_coeff != 0)


def test_the_two_value_losses_differ_on_the_fixed_batch():
    clamp = attrs.evolve(PPOHyperparameters(), vf_clip_param=0.3)
    around_old = attrs.evolve(clamp, vf_clip_around_old_value=True)
    learner = build_learner("torch", ACTION_SPACES["discrete"])
    batch = fixed_batch(learner, ACTION_SPACES["discrete"])
    dist_inputs, values = forward_numpy(learner, batch[Columns.OBS])
    losses = [
        reference_ppo_loss(h, batch, dist_inputs, values, 0.2, 0.0, NpCategorical)["vf_loss"]
        for h in (clamp, around_old)
    ]
    assert losses[0] != pytest.approx(losses[1])


def test_mismatched_value_shape_is_a_batch_error_naming_both_shapes():
    with pytest.raises(BatchError, match=r"values \[4, 1\].*value_targets \[4\]"):
        check_same_shape(values=np.zeros((4, 1)), value_targets=np.zeros(4))
