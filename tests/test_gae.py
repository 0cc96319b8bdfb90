"""compute_gae against a slow reference, plus the other postprocessing maths
(RunningMeanStd, explained_variance)."""

from __future__ import annotations

import numpy as np
import pytest

from learnerkit.errors import BatchError, ConfigError
from learnerkit.rollouts import RunningMeanStd, compute_gae, explained_variance


def gae_reference(rewards, values, next_values, terminateds, truncateds, gamma, lambda_):
    """GAE as the paper's sum, A_t = sum_l (gamma lambda)^l delta_{t+l}, over the rest of
    the episode (up to its end or the fragment's), one environment and one step at a time."""
    steps, envs = rewards.shape
    advantages = np.zeros((steps, envs))
    for n in range(envs):
        deltas = []
        for t in range(steps):
            bootstrap = 0.0 if terminateds[t, n] else gamma * next_values[t, n]
            deltas.append(rewards[t, n] + bootstrap - values[t, n])
        for t in range(steps):
            total, discount = 0.0, 1.0
            for u in range(t, steps):
                total += discount * deltas[u]
                if terminateds[u, n] or truncateds[u, n]:
                    break
                discount *= gamma * lambda_
            advantages[t, n] = total
    return advantages, advantages + values


def random_fragment(rng, steps, envs, done_prob=0.1):
    return (
        rng.normal(size=(steps, envs)),
        rng.normal(size=(steps, envs)),
        rng.normal(size=(steps, envs)),
        rng.random((steps, envs)) < done_prob,
        rng.random((steps, envs)) < done_prob,
    )


@pytest.mark.parametrize("gamma, lambda_", [(0.99, 0.95), (0.9, 0.0), (0.8, 1.0), (1.0, 1.0)])
@pytest.mark.parametrize("seed", range(3))
def test_gae_matches_the_reference_on_random_fragments(gamma, lambda_, seed):
    fragment = random_fragment(np.random.default_rng(seed), steps=40, envs=5)
    advantages, targets = compute_gae(*fragment, gamma=gamma, lambda_=lambda_)
    ref_adv, ref_targets = gae_reference(*fragment, gamma, lambda_)
    np.testing.assert_allclose(advantages, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets, ref_targets, rtol=1e-5, atol=1e-5)


def test_gae_matches_the_reference_with_a_terminated_and_a_truncated_episode_in_one_fragment():
    # Env 0: terminated at t=2, truncated at t=5, mid-episode at the fragment's end.
    # Env 1: truncated at t=1, terminated at t=6, then one step of a new episode.
    terminateds = np.zeros((8, 2), dtype=bool)
    truncateds = np.zeros((8, 2), dtype=bool)
    terminateds[2, 0] = truncateds[5, 0] = True
    truncateds[1, 1] = terminateds[6, 1] = True
    rng = np.random.default_rng(0)
    rewards, values, next_values = (rng.normal(size=(8, 2)) for _ in range(3))
    advantages, targets = compute_gae(
        rewards, values, next_values, terminateds, truncateds, gamma=0.9, lambda_=0.8
    )
    ref_adv, ref_targets = gae_reference(
        rewards, values, next_values, terminateds, truncateds, 0.9, 0.8
    )
    np.testing.assert_allclose(advantages, ref_adv, rtol=1e-6)
    np.testing.assert_allclose(targets, ref_targets, rtol=1e-6)


def hand_example(terminated_at=None, truncated_at=None):
    rewards = np.array([[1.0], [2.0], [3.0]])
    values = np.ones((3, 1))
    next_values = np.array([[2.0], [4.0], [8.0]])
    terminateds = np.zeros((3, 1), dtype=bool)
    truncateds = np.zeros((3, 1), dtype=bool)
    if terminated_at is not None:
        terminateds[terminated_at] = True
    if truncated_at is not None:
        truncateds[truncated_at] = True
    return rewards, values, next_values, terminateds, truncateds


def test_gae_hand_checked_example_with_a_termination():
    # deltas: 1 + .5*2 - 1 = 1;  2 + 0 - 1 = 1 (terminated: no bootstrap);  3 + .5*8 - 1 = 6
    # A2 = 6;  A1 = 1 (the episode ends: no carry);  A0 = 1 + .25 * 1 = 1.25
    advantages, targets = compute_gae(*hand_example(terminated_at=1), gamma=0.5, lambda_=0.5)
    np.testing.assert_array_equal(advantages[:, 0], [1.25, 1.0, 6.0])
    np.testing.assert_array_equal(targets[:, 0], [2.25, 2.0, 7.0])


def test_gae_hand_checked_example_with_a_truncation_bootstraps_from_the_final_value():
    # delta1 = 2 + .5*4 - 1 = 3 (truncated: bootstraps);  A1 = 3;  A0 = 1 + .25 * 3 = 1.75
    advantages, targets = compute_gae(*hand_example(truncated_at=1), gamma=0.5, lambda_=0.5)
    np.testing.assert_array_equal(advantages[:, 0], [1.75, 3.0, 6.0])
    np.testing.assert_array_equal(targets[:, 0], [2.75, 4.0, 7.0])


def test_gae_treats_a_step_both_terminated_and_truncated_as_terminated():
    both = hand_example(terminated_at=1, truncated_at=1)
    advantages, _ = compute_gae(*both, gamma=0.5, lambda_=0.5)
    np.testing.assert_array_equal(advantages[:, 0], [1.25, 1.0, 6.0])


def test_gae_with_lambda_one_and_no_episode_end_gives_bootstrapped_discounted_returns():
    rng = np.random.default_rng(1)
    rewards, values, next_values = (rng.normal(size=(6, 3)) for _ in range(3))
    next_values[:-1] = values[1:]  # consistent values telescope away inside the fragment
    no_end = np.zeros((6, 3), dtype=bool)
    _, targets = compute_gae(rewards, values, next_values, no_end, no_end, gamma=0.9, lambda_=1.0)
    expected = np.empty((6, 3))
    running = next_values[-1]
    for t in reversed(range(6)):
        running = rewards[t] + 0.9 * running
        expected[t] = running
    np.testing.assert_allclose(targets, expected, rtol=1e-5)


def test_gae_returns_float32_of_the_input_shape():
    advantages, targets = compute_gae(
        *random_fragment(np.random.default_rng(0), steps=7, envs=3), gamma=0.99, lambda_=0.95
    )
    assert advantages.dtype == targets.dtype == np.float32
    assert advantages.shape == targets.shape == (7, 3)


def test_gae_rejects_inputs_that_are_not_time_major_2d():
    rewards, values, next_values, term, trunc = random_fragment(np.random.default_rng(0), 5, 2)
    with pytest.raises(BatchError, match=r"rewards has shape \(5,\).*\[T, N\]"):
        compute_gae(rewards[:, 0], values, next_values, term, trunc, gamma=0.9, lambda_=0.9)


def test_gae_rejects_inputs_of_different_shapes_and_names_them():
    rewards, values, next_values, term, trunc = random_fragment(np.random.default_rng(0), 5, 2)
    with pytest.raises(BatchError, match=r"same \[T, N\] shape.*values: \(4, 2\)"):
        compute_gae(rewards, values[:4], next_values, term, trunc, gamma=0.9, lambda_=0.9)


@pytest.mark.parametrize("gamma, lambda_", [(1.5, 0.9), (0.9, -0.1)])
def test_gae_rejects_discounts_outside_zero_one(gamma, lambda_):
    with pytest.raises(ConfigError, match="must be in"):
        compute_gae(*hand_example(), gamma=gamma, lambda_=lambda_)


# RunningMeanStd -------------------------------------------------------------------------
def test_running_mean_std_merges_batches_into_the_statistics_of_their_concatenation():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 4)) for n in (1, 7, 50, 3)]
    rms = RunningMeanStd((4,), epsilon=0.0)
    for batch in batches:
        rms.update(batch)
    everything = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, everything.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(rms.var, everything.var(axis=0), rtol=1e-10)
    assert rms.count == len(everything)


def test_running_mean_std_normalises_and_clips_to_float32():
    rms = RunningMeanStd((2,))
    rms.set_state({"mean": np.array([1.0, -1.0]), "var": np.array([4.0, 1.0]), "count": 10})
    out = rms.normalize(np.array([[3.0, 100.0]]), clip=5.0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[1.0, 5.0]], rtol=1e-6)
    np.testing.assert_allclose(rms.normalize(np.array([[3.0, 100.0]]), clip=None)[0, 1], 101.0)


def test_running_mean_std_state_round_trips():
    rms = RunningMeanStd((3,))
    rms.update(np.random.default_rng(0).normal(size=(20, 3)))
    restored = RunningMeanStd((3,))
    restored.set_state(rms.get_state())
    for key, value in rms.get_state().items():
        np.testing.assert_array_equal(restored.get_state()[key], value)


def test_running_mean_std_rejects_batches_and_states_of_the_wrong_shape():
    rms = RunningMeanStd((3,))
    with pytest.raises(BatchError, match=r"\[B, \*\(3,\)\]"):
        rms.update(np.zeros((5, 2)))
    with pytest.raises(ConfigError, match="tracks shape"):
        rms.set_state({"mean": np.zeros(2), "var": np.ones(2), "count": 1.0})


# explained_variance ---------------------------------------------------------------------
def test_explained_variance_is_one_for_perfect_and_zero_for_mean_predictions():
    y = np.array([1.0, 2.0, 4.0, 7.0])
    assert explained_variance(y, y) == pytest.approx(1.0)
    assert explained_variance(np.full(4, y.mean()), y) == pytest.approx(0.0)
    assert explained_variance(-y, y) < 0.0


def test_explained_variance_is_zero_when_the_targets_do_not_vary():
    assert explained_variance(np.array([0.0, 1.0]), np.array([2.0, 2.0])) == 0.0
    assert explained_variance(np.array([]), np.array([])) == 0.0


def test_explained_variance_rejects_arrays_of_different_shapes():
    with pytest.raises(BatchError, match="y_pred has shape"):
        explained_variance(np.zeros(3), np.zeros(4))
