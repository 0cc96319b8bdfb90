"""V-trace (``learnerkit_impala.vtrace``) against a slow float64 reference, on hand-made
trajectories with every kind of boundary, in both frameworks.

The reference is the paper's definition as a sum (Espeholt et al. 2018, eq. 1), written
per environment and per step, not the backward recursion the function uses:
``vs_s = V(x_s) + sum_t (prod_{i<t} discount_i c_i) delta_t``, the sum running forward
from s until the episode ends or the fragment does.
"""

from __future__ import annotations

import numpy as np
import pytest
from learnerkit_impala import vtrace

from learnerkit import BatchError
from learnerkit.backends import make_backend

GAMMA = 0.9


# The float64 reference --------------------------------------------------------------------
def reference_vtrace(traj, rho_bar=1.0, pg_rho_bar=1.0, c_bar=1.0, lam=1.0):
    """``traj``: dict of [T, B] arrays with log_rhos, rewards, values, next_values (V of the
    observation each step reached), terminated, truncated. Returns (vs, pg_advantages)."""

    def cap(x, bar):
        return x if bar is None else min(bar, x)

    num_steps, num_envs = traj["rewards"].shape
    vs = np.zeros((num_steps, num_envs))
    pg = np.zeros((num_steps, num_envs))
    for n in range(num_envs):
        log_rhos = np.clip(traj["log_rhos"][:, n].astype(np.float64), -20, 20)
        r = traj["rewards"][:, n].astype(np.float64)
        v = traj["values"][:, n].astype(np.float64)
        v_next = traj["next_values"][:, n].astype(np.float64)
        term, trunc = traj["terminated"][:, n], traj["truncated"][:, n]
        discount = [0.0 if term[t] else GAMMA for t in range(num_steps)]
        last = [bool(term[t] or trunc[t] or t == num_steps - 1) for t in range(num_steps)]
        for s in range(num_steps):
            total, weight = v[s], 1.0
            for t in range(s, num_steps):
                rho = cap(np.exp(log_rhos[t]), rho_bar)
                # V(x_{t+1}) is the next row's value while the episode goes on.
                bootstrap = v_next[t] if last[t] else v[t + 1]
                total += weight * rho * (r[t] + discount[t] * bootstrap - v[t])
                if last[t]:
                    break
                weight *= discount[t] * lam * cap(np.exp(log_rhos[t]), c_bar)
            vs[s, n] = total
        for s in range(num_steps):
            target_next = v_next[s] if last[s] else vs[s + 1, n]
            rho_pg = cap(np.exp(log_rhos[s]), pg_rho_bar)
            pg[s, n] = rho_pg * (r[s] + discount[s] * target_next - v[s])
    return vs, pg


# Running the function under test -----------------------------------------------------------
def run_vtrace(framework, traj, **thresholds):
    """``vtrace`` on float32 tensors of ``framework`` made from ``traj``; numpy float64 out."""
    ops = make_backend(framework).ops
    term = traj["terminated"].astype(np.float64)
    ended = np.maximum(term, traj["truncated"].astype(np.float64))
    inputs = {
        "log_rhos": traj["log_rhos"],
        "rewards": traj["rewards"],
        "values": traj["values"],
        "next_values": traj["next_values"],
        "discounts": GAMMA * (1.0 - term),
        "continues": 1.0 - ended,
    }
    tensors = {k: ops.as_tensor(np.asarray(v, np.float32)) for k, v in inputs.items()}
    vs, pg = vtrace(**tensors, ops=ops, **thresholds)
    return ops.to_numpy(vs).astype(np.float64), ops.to_numpy(pg).astype(np.float64)


def trajectory(num_steps=7, num_envs=3, seed=0, log_rho_scale=1.5):
    """Env 0 terminates at step 2 and starts a new episode; env 1 is truncated by a time
    limit at step 3 (bootstrapped from V of its final observation); env 2 runs through. All
    end at the fragment's end, bootstrapped from V of the observation after it.

    ``next_values`` equals the next row's value while an episode goes on (the same
    observation), and is a different value where an episode or the fragment ended.
    """
    rng = np.random.default_rng(seed)
    values = rng.normal(0, 2, (num_steps, num_envs))
    next_values = np.concatenate([values[1:], rng.normal(0, 2, (1, num_envs))])
    terminated = np.zeros((num_steps, num_envs), bool)
    truncated = np.zeros((num_steps, num_envs), bool)
    terminated[2, 0] = True
    truncated[3, 1] = True
    next_values[2, 0] = 7.0  # V of a terminal observation: must not count
    next_values[3, 1] = rng.normal(0, 2)  # V of the time-limited final observation
    return {
        "log_rhos": rng.normal(0, log_rho_scale, (num_steps, num_envs)),
        "rewards": rng.normal(0.5, 1, (num_steps, num_envs)),
        "values": values,
        "next_values": next_values,
        "terminated": terminated,
        "truncated": truncated,
    }


THRESHOLDS = {
    "defaults": {},
    "rho_above_c": dict(clip_rho_threshold=2.0, clip_pg_rho_threshold=0.5, clip_c_threshold=0.8),
    "uncapped": dict(clip_rho_threshold=None, clip_pg_rho_threshold=None, clip_c_threshold=None),
}


def reference_thresholds(thresholds):
    return dict(
        rho_bar=thresholds.get("clip_rho_threshold", 1.0),
        pg_rho_bar=thresholds.get("clip_pg_rho_threshold", 1.0),
        c_bar=thresholds.get("clip_c_threshold", 1.0),
    )


# Tests -------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", sorted(THRESHOLDS))
def test_vtrace_matches_the_slow_reference_across_every_boundary(framework, variant):
    traj = trajectory()
    thresholds = THRESHOLDS[variant]
    vs, pg = run_vtrace(framework, traj, **thresholds)
    expected_vs, expected_pg = reference_vtrace(traj, **reference_thresholds(thresholds))
    np.testing.assert_allclose(vs, expected_vs, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pg, expected_pg, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_lambda_scales_the_traces_and_zero_gives_one_step_targets(framework, lam):
    traj = trajectory()
    vs, pg = run_vtrace(framework, traj, lambda_=lam)
    ref_vs, ref_pg = reference_vtrace(traj, lam=lam)
    np.testing.assert_allclose(vs, ref_vs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pg, ref_pg, rtol=1e-5, atol=1e-5)
    if lam == 0.0:
        # No trace: each target is the value plus one clipped TD error.
        rho = np.minimum(1.0, np.exp(np.clip(traj["log_rhos"], -20, 20)))
        ended = traj["terminated"] | traj["truncated"]
        next_v = np.where(ended, traj["next_values"], np.roll(traj["values"], -1, axis=0))
        next_v[-1] = traj["next_values"][-1]
        discount = np.where(traj["terminated"], 0.0, GAMMA)
        td = traj["rewards"] + discount * next_v - traj["values"]
        np.testing.assert_allclose(vs, traj["values"] + rho * td, rtol=1e-5, atol=1e-5)


def test_the_trajectory_is_off_policy_beyond_the_clip_thresholds():
    # Guards the test above: importance weights on both sides of 0.5, 0.8, 1 and 2.
    rhos = np.exp(trajectory()["log_rhos"])
    for bar in (0.5, 0.8, 1.0, 2.0):
        assert 0 < np.mean(rhos > bar) < 1


def test_a_fragment_cut_by_the_runner_bootstraps_from_the_next_value(framework):
    # RLlib 2.60's appended bootstrap slot gives [2.97, 1.99, 1.0] here (see vtrace.py).
    traj = {
        "log_rhos": np.zeros((3, 1)),
        "rewards": np.ones((3, 1)),
        "values": np.zeros((3, 1)),
        "next_values": np.array([[0.0], [0.0], [10.0]]),
        "terminated": np.zeros((3, 1), bool),
        "truncated": np.zeros((3, 1), bool),
    }
    ops = make_backend(framework).ops
    t = lambda x: ops.as_tensor(np.asarray(x, np.float32))  # noqa: E731
    vs, _ = vtrace(
        log_rhos=t(traj["log_rhos"]),
        rewards=t(traj["rewards"]),
        values=t(traj["values"]),
        next_values=t(traj["next_values"]),
        discounts=t(np.full((3, 1), 0.99)),
        continues=t(np.ones((3, 1))),  # the last row is a fragment end whatever it says
        ops=ops,
    )
    np.testing.assert_allclose(ops.to_numpy(vs)[:, 0], [12.67, 11.79, 10.9], atol=0.005)


def test_rllibs_appended_bootstrap_slot_treats_the_cut_as_terminal(framework):
    # Documents the bug: run the bootstrap value through the recursion as an extra step
    # (reward 0, nothing after it, importance weight 1) and it cancels itself.
    ops = make_backend(framework).ops
    t = lambda x: ops.as_tensor(np.asarray(x, np.float32).reshape(4, 1))  # noqa: E731
    vs, _ = vtrace(
        log_rhos=t([0, 0, 0, 0]),
        rewards=t([1, 1, 1, 0]),
        values=t([0, 0, 0, 10]),
        next_values=t([0, 0, 10, 0]),
        discounts=t([0.99] * 4),
        continues=t([1, 1, 1, 0]),
        ops=ops,
    )
    np.testing.assert_allclose(ops.to_numpy(vs)[:3, 0], [2.97, 1.99, 1.0], atol=0.005)


def test_on_policy_vtrace_is_the_n_step_return(framework):
    # With rho = c = 1 the TD errors telescope: vs is the discounted sum of rewards up to
    # the episode's or fragment's end plus the discounted bootstrap, whatever the values.
    traj = trajectory(log_rho_scale=0.0)
    vs, pg = run_vtrace(framework, traj)
    num_steps, num_envs = traj["rewards"].shape
    returns = np.zeros((num_steps, num_envs))
    for n in range(num_envs):
        for s in range(num_steps):
            total, discount = 0.0, 1.0
            for t in range(s, num_steps):
                total += discount * traj["rewards"][t, n]
                if traj["terminated"][t, n]:
                    break
                discount *= GAMMA
                if traj["truncated"][t, n] or t == num_steps - 1:
                    total += discount * traj["next_values"][t, n]
                    break
            returns[s, n] = total
    np.testing.assert_allclose(vs, returns, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pg, returns - traj["values"], rtol=1e-4, atol=1e-4)


SPLITS = {
    "rho_bar_equals_c_bar": dict(clip_rho_threshold=1.0, clip_c_threshold=1.0),
    "rho_bar_above_c_bar": dict(clip_rho_threshold=2.0, clip_c_threshold=0.5),
    "uncapped_rho": dict(clip_rho_threshold=None, clip_c_threshold=1.0),
}


@pytest.mark.parametrize("variant", sorted(SPLITS))
def test_splitting_a_trajectory_into_two_fragments_keeps_its_targets(framework, variant):
    """Cut a trajectory at step k (inside an episode) into two fragments.

    The second fragment's targets never change: the recursion runs backwards. The first
    fragment's last step has ``rho_{k-1} (r + gamma X - V_{k-1})`` for its bootstrap value X
    where the whole trajectory has ``rho_{k-1} (r + gamma V_k - V_{k-1}) + gamma c_{k-1}
    (vs_k - V_k)``, so its targets agree exactly when ``X = V_k + (c_{k-1} / rho_{k-1}) (vs_k
    - V_k)``. When ``c-bar == rho-bar`` (the defaults), ``c / rho = 1`` and X is ``vs_k``,
    the second fragment's own target; the advantages then agree too. Otherwise the first
    fragment's last advantage, which bootstraps from X rather than ``vs_k``, differs wherever
    ``c / rho != 1``. Bootstrapping from the plain ``V_k``, as a runner's cut does, truncates
    the n-step return there: it matches only where ``vs_k = V_k``.
    """
    thresholds = SPLITS[variant]
    traj = trajectory(num_steps=8, num_envs=2, seed=5, log_rho_scale=1.0)
    traj["terminated"][:] = traj["truncated"][:] = False
    traj["terminated"][1, 0] = True  # an episode ending inside the first fragment
    k = 5
    whole_vs, whole_pg = run_vtrace(framework, traj, **thresholds)

    second = {name: x[k:] for name, x in traj.items()}
    second_vs, second_pg = run_vtrace(framework, second, **thresholds)
    np.testing.assert_allclose(second_vs, whole_vs[k:], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(second_pg, whole_pg[k:], rtol=1e-5, atol=1e-5)

    rho = np.exp(traj["log_rhos"][k - 1])
    rho_bar, c_bar = thresholds["clip_rho_threshold"], thresholds["clip_c_threshold"]
    clipped_rho = rho if rho_bar is None else np.minimum(rho_bar, rho)
    ratio = np.minimum(c_bar, rho) / clipped_rho
    values_k = traj["values"][k]
    first = {name: x[:k].copy() for name, x in traj.items()}
    first["next_values"][k - 1] = values_k + ratio * (second_vs[0] - values_k)
    first_vs, first_pg = run_vtrace(framework, first, **thresholds)
    np.testing.assert_allclose(first_vs, whole_vs[:k], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(first_pg[: k - 1], whole_pg[: k - 1], rtol=1e-4, atol=1e-4)
    same = np.isclose(ratio, 1.0)  # the last advantage bootstraps from X itself
    assert same.all() or variant != "rho_bar_equals_c_bar"
    np.testing.assert_allclose(first_pg[k - 1, same], whole_pg[k - 1, same], rtol=1e-4, atol=1e-4)

    # And the plain V_k bootstrap does differ here: the case above is not vacuous.
    first["next_values"][k - 1] = values_k
    cut_vs, _ = run_vtrace(framework, first, **thresholds)
    assert np.abs(cut_vs[k - 1] - whole_vs[k - 1]).min() > 1e-2


@pytest.mark.parametrize("variant", ["defaults", "uncapped"])
def test_a_huge_log_rho_gives_finite_outputs(framework, variant):
    traj = trajectory()
    traj["log_rhos"][1, :] = 1000.0
    traj["log_rhos"][4, :] = -1000.0
    vs, pg = run_vtrace(framework, traj, **THRESHOLDS[variant])
    assert np.isfinite(vs).all() and np.isfinite(pg).all()
    expected_vs, expected_pg = reference_vtrace(traj, **reference_thresholds(THRESHOLDS[variant]))
    np.testing.assert_allclose(vs, expected_vs, rtol=1e-4, atol=1e-4)
    if variant == "defaults":  # uncapped, exp(20) makes float32 rounding of pg visible
        np.testing.assert_allclose(pg, expected_pg, rtol=1e-4, atol=1e-4)


def test_outputs_carry_no_gradient():
    torch = pytest.importorskip("torch")
    ops = make_backend("torch").ops
    values = torch.zeros((3, 2), requires_grad=True)
    log_rhos = torch.zeros((3, 2), requires_grad=True)
    ones = torch.ones((3, 2))
    vs, pg = vtrace(
        log_rhos=log_rhos,
        rewards=ones,
        values=values,
        next_values=ones,
        discounts=ones,
        continues=ones,
        ops=ops,
    )
    assert not vs.requires_grad and not pg.requires_grad


def _inputs(framework, **shapes):
    ops = make_backend(framework).ops
    names = ("log_rhos", "rewards", "values", "next_values", "discounts", "continues")
    tensors = {n: ops.as_tensor(np.zeros(shapes.get(n, (4, 2)), np.float32)) for n in names}
    return tensors, ops


@pytest.mark.parametrize(
    ("shapes", "named"),
    [
        ({"next_values": (3, 2)}, r"next_values has shape \[3, 2\], the others \[4, 2\]"),
        ({"values": (4, 2, 1)}, r"values must be a time-major \[T, B\] tensor.*\[4, 2, 1\]"),
        ({"continues": (8,)}, r"continues must be a time-major \[T, B\] tensor.*\[8\]"),
        ({"rewards": (4, 3)}, r"rewards has shape \[4, 3\]"),
    ],
)
def test_mismatched_shapes_are_a_batch_error_naming_the_argument(framework, shapes, named):
    tensors, ops = _inputs(framework, **shapes)
    with pytest.raises(BatchError, match=named):
        vtrace(**tensors, ops=ops)
