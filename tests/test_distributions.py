"""The action distributions against closed-form numpy references, on both frameworks.

The references are written differently from ``learnerkit.distributions`` where the maths
allows (densities multiplied out, the Gaussian KL in matrix form), so that a shared mistake
would not pass unnoticed; sampling is checked by its statistics.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import BOX_ACTIONS, TWO_ACTIONS

from learnerkit.backends import make_backend
from learnerkit.distributions import Categorical, DiagGaussian, dist_class_for


@pytest.fixture
def ops(framework):
    """The framework's ops, with its random state seeded for repeatable samples."""
    if framework == "torch":
        import torch

        torch.manual_seed(0)
    else:
        import tensorflow as tf

        tf.random.set_seed(0)
    return make_backend(framework).ops


def numpy(ops, x) -> np.ndarray:
    return np.asarray(ops.to_numpy(x), dtype=np.float64)


LOGITS = np.array([[0.0, 1.0, -2.0], [3.0, 3.0, 3.0], [-1.0, 0.5, 2.5]], np.float32)
OTHER_LOGITS = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, -1.0], [0.2, 0.1, -0.3]], np.float32)


def probs(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits.astype(np.float64))
    return e / e.sum(-1, keepdims=True)


# Categorical -----------------------------------------------------------------------------
def test_categorical_logp_is_the_log_of_the_softmax_probability(ops):
    actions = np.array([2, 0, 1])
    dist = Categorical(ops.as_tensor(LOGITS), ops)
    expected = np.log(probs(LOGITS)[np.arange(3), actions])
    np.testing.assert_allclose(numpy(ops, dist.logp(ops.as_tensor(actions))), expected, rtol=1e-5)


def test_categorical_entropy_matches_the_definition(ops):
    p = probs(LOGITS)
    expected = -(p * np.log(p)).sum(-1)
    dist = Categorical(ops.as_tensor(LOGITS), ops)
    np.testing.assert_allclose(numpy(ops, dist.entropy()), expected, rtol=1e-5)
    assert numpy(ops, dist.entropy())[1] == pytest.approx(math.log(3), rel=1e-6)  # uniform


def test_categorical_kl_matches_the_definition_and_is_zero_to_itself(ops):
    p, q = probs(LOGITS), probs(OTHER_LOGITS)
    expected = (p * np.log(p / q)).sum(-1)
    dist = Categorical(ops.as_tensor(LOGITS), ops)
    other = Categorical(ops.as_tensor(OTHER_LOGITS), ops)
    np.testing.assert_allclose(numpy(ops, dist.kl(other)), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(numpy(ops, dist.kl(dist)), 0.0, atol=1e-7)


def test_categorical_samples_follow_the_softmax_probabilities(ops):
    n = 20_000
    logits = np.repeat(LOGITS[[0]], n, axis=0)
    samples = numpy(ops, Categorical(ops.as_tensor(logits), ops).sample()).astype(int)
    frequencies = np.bincount(samples, minlength=3) / n
    p = probs(LOGITS[0])
    # Five standard errors of a binomial proportion: fails by chance about once in 10^6.
    np.testing.assert_allclose(frequencies, p, atol=5 * np.sqrt(p * (1 - p) / n).max())


def test_categorical_deterministic_sample_is_the_most_likely_action(ops):
    dist = Categorical(ops.as_tensor(LOGITS[[0, 2]]), ops)
    assert numpy(ops, dist.deterministic_sample()).tolist() == [1, 2]


# Diagonal Gaussian -----------------------------------------------------------------------
MEAN = np.array([[0.0, 1.0, -0.5], [2.0, -1.0, 0.3]], np.float32)
LOG_STD = np.array([[0.0, -0.5, 0.7], [0.2, 0.1, -1.0]], np.float32)
OTHER_MEAN = np.array([[0.5, 0.0, -0.5], [1.0, -2.0, 0.0]], np.float32)
OTHER_LOG_STD = np.array([[0.3, 0.0, 0.0], [-0.2, 0.4, -0.5]], np.float32)


def gaussian(ops, mean: np.ndarray, log_std: np.ndarray) -> DiagGaussian:
    return DiagGaussian(ops.as_tensor(np.concatenate([mean, log_std], -1)), ops)


def test_gaussian_logp_is_the_log_of_the_product_of_densities(ops):
    actions = np.array([[0.3, 0.9, 1.0], [2.5, -0.2, 0.3]], np.float32)
    std = np.exp(LOG_STD.astype(np.float64))
    density = np.exp(-0.5 * ((actions - MEAN) / std) ** 2) / (std * np.sqrt(2 * np.pi))
    expected = np.log(density.prod(-1))
    logp = gaussian(ops, MEAN, LOG_STD).logp(ops.as_tensor(actions))
    np.testing.assert_allclose(numpy(ops, logp), expected, rtol=1e-5)


def test_gaussian_entropy_is_half_log_det_of_2_pi_e_sigma(ops):
    covariances = [np.diag(np.exp(2.0 * row.astype(np.float64))) for row in LOG_STD]
    expected = [0.5 * np.log(np.linalg.det(2 * np.pi * np.e * c)) for c in covariances]
    entropy = gaussian(ops, MEAN, LOG_STD).entropy()
    np.testing.assert_allclose(numpy(ops, entropy), expected, rtol=1e-5)


def test_gaussian_kl_matches_the_matrix_formula(ops):
    expected = []
    for m1, s1, m2, s2 in zip(MEAN, LOG_STD, OTHER_MEAN, OTHER_LOG_STD, strict=True):
        c1 = np.diag(np.exp(2.0 * s1.astype(np.float64)))
        c2 = np.diag(np.exp(2.0 * s2.astype(np.float64)))
        c2_inv, diff = np.linalg.inv(c2), (m2 - m1).astype(np.float64)
        expected.append(
            0.5
            * (
                np.trace(c2_inv @ c1)
                + diff @ c2_inv @ diff
                - len(m1)
                + np.log(np.linalg.det(c2) / np.linalg.det(c1))
            )
        )
    dist, other = gaussian(ops, MEAN, LOG_STD), gaussian(ops, OTHER_MEAN, OTHER_LOG_STD)
    np.testing.assert_allclose(numpy(ops, dist.kl(other)), expected, rtol=1e-5)
    np.testing.assert_allclose(numpy(ops, dist.kl(dist)), 0.0, atol=1e-6)


def test_gaussian_samples_have_its_mean_and_standard_deviation(ops):
    n = 20_000
    mean, log_std = np.repeat(MEAN[[0]], n, 0), np.repeat(LOG_STD[[0]], n, 0)
    samples = numpy(ops, gaussian(ops, mean, log_std).sample())
    std = np.exp(LOG_STD[0].astype(np.float64))
    # Five standard errors of the mean, and of the standard deviation (about std / sqrt(2n)).
    np.testing.assert_allclose(samples.mean(0), MEAN[0], atol=5 * std.max() / np.sqrt(n))
    np.testing.assert_allclose(samples.std(0), std, atol=5 * std.max() / np.sqrt(2 * n))


def test_gaussian_mean_negative_logp_of_its_samples_is_its_entropy(ops):
    n = 20_000
    mean, log_std = np.repeat(MEAN[[1]], n, 0), np.repeat(LOG_STD[[1]], n, 0)
    dist = gaussian(ops, mean, log_std)
    negative_logp = -numpy(ops, dist.logp(dist.sample()))
    entropy = numpy(ops, dist.entropy())[0]
    # -logp of a D-dimensional Gaussian sample is entropy - D/2 + chi2(D)/2: variance D/2.
    assert negative_logp.mean() == pytest.approx(entropy, abs=5 * np.sqrt(1.5 / n))


def test_gaussian_deterministic_sample_is_its_mean(ops):
    dist = gaussian(ops, MEAN, LOG_STD)
    np.testing.assert_array_equal(numpy(ops, dist.deterministic_sample()), MEAN)


def test_default_modules_pick_categorical_for_discrete_and_gaussian_for_box():
    assert dist_class_for(TWO_ACTIONS) is Categorical
    assert dist_class_for(BOX_ACTIONS) is DiagGaussian
    assert Categorical.inputs_size(TWO_ACTIONS) == 2
    assert DiagGaussian.inputs_size(BOX_ACTIONS) == 6
