"""Float64 numpy references shared by the IMPALA and APPO loss tests, written apart from
the code under test (V-trace as the paper's recursion, per environment and per step), the
hand-made sequence batch both train on, and the loss the Learner computes for it."""

from __future__ import annotations

import gymnasium
import numpy as np

from learnerkit import DEFAULT_MODULE_ID, Columns

OBS_SPACE = gymnasium.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACTION_SPACES = {
    "discrete": gymnasium.spaces.Discrete(3),
    "box": gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32),
}
T = 5  # rollout_fragment_length: the sequence length
NUM_ENVS = 3


# The numpy reference ----------------------------------------------------------------------
def np_log_softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_logp_and_entropy(space, dist_inputs, actions):
    x = dist_inputs.astype(np.float64)
    if space == "discrete":
        log_probs = np_log_softmax(x)
        logp = log_probs[np.arange(len(actions)), actions]
        return logp, -(np.exp(log_probs) * log_probs).sum(-1)
    mean, log_std = np.split(x, 2, axis=-1)
    z = (actions - mean) / np.exp(log_std)
    logp = (-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)
    return logp, (log_std + 0.5 + 0.5 * np.log(2 * np.pi)).sum(-1)


def np_kl(space, p_inputs, q_inputs):
    """KL(p || q) per row."""
    p, q = p_inputs.astype(np.float64), q_inputs.astype(np.float64)
    if space == "discrete":
        log_p, log_q = np_log_softmax(p), np_log_softmax(q)
        return (np.exp(log_p) * (log_p - log_q)).sum(-1)
    mean_p, log_std_p = np.split(p, 2, axis=-1)
    mean_q, log_std_q = np.split(q, 2, axis=-1)
    var_p, var_q = np.exp(2 * log_std_p), np.exp(2 * log_std_q)
    return (log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5).sum(-1)


def np_vtrace_targets(log_rhos, rewards, values, next_values, terminated, ended, hps):
    """Flat env-major [N * T] arrays in, flat (vs, pg_advantages) out: the paper's
    recursion run per environment, per step, backwards (``vs_{t+1}`` when the episode goes
    on inside the fragment, V of the reached observation otherwise)."""

    def cap(x, bar):
        return x if bar is None else min(bar, x)

    vs, pg = np.zeros_like(rewards), np.zeros_like(rewards)
    for start in range(0, len(rewards), T):
        following_vs = None  # vs of the next row of this fragment, if it continues
        for i in reversed(range(start, start + T)):
            rho = np.exp(np.clip(log_rhos[i], -20, 20))
            discount = 0.0 if terminated[i] else hps.gamma
            continues = not ended[i] and i < start + T - 1
            target_next = following_vs if continues else next_values[i]
            bootstrap = values[i + 1] if continues else next_values[i]
            delta = cap(rho, hps.vtrace_clip_rho_threshold) * (
                rewards[i] + discount * bootstrap - values[i]
            )
            correction = 0.0
            if continues:
                c = cap(rho, hps.vtrace_clip_c_threshold)
                correction = discount * c * (following_vs - values[i + 1])
            vs[i] = values[i] + delta + correction
            pg_rho = cap(rho, hps.vtrace_clip_pg_rho_threshold)
            pg[i] = pg_rho * (rewards[i] + discount * target_next - values[i])
            following_vs = vs[i]
    return vs, pg


# The batch and the loss under test -------------------------------------------------------
def current_outputs(learner, batch):
    """The module's dist inputs and values for ``obs``, and values for ``new_obs``."""
    module = learner.module[DEFAULT_MODULE_ID]
    to_numpy = learner.backend.ops.to_numpy
    out = module.forward_train(learner.backend.to_tensors({Columns.OBS: batch[Columns.OBS]}))
    next_obs = learner.backend.to_tensors({Columns.OBS: batch[Columns.NEXT_OBS]})[Columns.OBS]
    return {
        "dist_inputs": to_numpy(out[Columns.ACTION_DIST_INPUTS]),
        "values": to_numpy(out[Columns.VF_PREDS]),
        "next_values": to_numpy(module.value(next_obs)),
    }


def sequence_batch(learner, space, seed=42, behaviour_noise=1.0):
    """NUM_ENVS fragments of T steps: env 0 terminates at step 1, env 1 is truncated at
    step 2, env 2 runs through; the behaviour policy is the current one plus noise, so the
    ratios fall on both sides of every clip."""
    rng = np.random.default_rng(seed)
    n = NUM_ENVS * T
    obs = rng.uniform(-1, 1, (NUM_ENVS, T + 1, 4)).astype(np.float32)
    next_obs = obs[:, 1:].copy()
    terminated = np.zeros((NUM_ENVS, T), bool)
    truncated = np.zeros((NUM_ENVS, T), bool)
    terminated[0, 1] = truncated[1, 2] = True
    # An ended episode's final observation is not the next row's (a reset's) observation.
    next_obs[0, 1] = rng.uniform(-1, 1, 4)
    next_obs[1, 2] = rng.uniform(-1, 1, 4)
    batch = {
        Columns.OBS: obs[:, :T].reshape(n, 4),
        Columns.NEXT_OBS: next_obs.reshape(n, 4),
        Columns.REWARDS: rng.normal(0.5, 1.0, n).astype(np.float32),
        Columns.TERMINATEDS: terminated.reshape(n),
        Columns.TRUNCATEDS: truncated.reshape(n),
    }
    dist_inputs = current_outputs(learner, batch)["dist_inputs"]
    noise = rng.normal(0, behaviour_noise, dist_inputs.shape)
    old_inputs = (dist_inputs + noise).astype(np.float32)
    if space == "discrete":
        actions = rng.integers(0, 3, n)
    else:
        actions = rng.normal(0, 1, (n, 2)).astype(np.float32)
    old_logp, _ = np_logp_and_entropy(space, old_inputs, actions)
    batch.update(
        {
            Columns.ACTIONS: actions,
            Columns.ACTION_LOGP: old_logp.astype(np.float32),
            Columns.ACTION_DIST_INPUTS: old_inputs,
            Columns.VF_PREDS: rng.normal(0, 1, n).astype(np.float32),  # unused by the loss
        }
    )
    return batch


def compute_loss(learner, batch):
    tensors = learner.backend.to_tensors(batch)
    fwd_out = learner.module[DEFAULT_MODULE_ID].forward_train(tensors)
    out = learner.compute_loss_for_module(
        module_id=DEFAULT_MODULE_ID, hps=learner.hps, batch=tensors, fwd_out=fwd_out
    )
    return {k: float(learner.backend.ops.to_numpy(v)) for k, v in out.items()}
