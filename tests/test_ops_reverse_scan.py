"""``ops.reverse_discounted_scan`` (the sum sequence losses run backwards along time) against
a float64 numpy loop, on both frameworks, with gradients and the graph the TF step traces."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from learnerkit.backends import make_backend

FRAMEWORKS = ("torch", "tf")


def backend_ops(framework: str):
    return make_backend(framework).ops


def numpy_scan(x, discounts, bootstrap=None):
    """The definition, step by step in float64: y[t] = x[t] + discounts[t] * y[t + 1]."""
    y = np.zeros(x.shape, np.float64)
    following = None if bootstrap is None else bootstrap.astype(np.float64)
    for t in reversed(range(x.shape[0])):
        y[t] = x[t] + (0.0 if following is None else discounts[t] * following)
        following = y[t]
    return y


def as_tensor(framework, array):
    return backend_ops(framework).as_tensor(np.asarray(array))


@st.composite
def sequences(draw):
    steps = draw(st.integers(1, 12))
    batch = draw(st.integers(1, 4))
    finite = st.floats(-10, 10, width=32)
    x = draw(arrays(np.float32, (steps, batch), elements=finite))
    discounts = draw(
        arrays(np.float32, (steps, batch), elements=st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0]))
    )
    bootstrap = draw(st.none() | arrays(np.float32, (batch,), elements=finite))
    return x, discounts, bootstrap


@pytest.mark.parametrize("framework", FRAMEWORKS)
@settings(max_examples=40, deadline=None)
@given(case=sequences())
def test_the_scan_matches_the_numpy_loop(framework, case):
    x, discounts, bootstrap = case
    ops = backend_ops(framework)
    got = ops.reverse_discounted_scan(
        as_tensor(framework, x),
        as_tensor(framework, discounts),
        None if bootstrap is None else as_tensor(framework, bootstrap),
    )
    assert tuple(got.shape) == x.shape
    np.testing.assert_allclose(
        ops.to_numpy(got), numpy_scan(x, discounts, bootstrap), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_zero_discount_keeps_episodes_apart(framework):
    ops = backend_ops(framework)
    rewards = as_tensor(framework, np.ones((4, 1), np.float32))
    # The episode ends at step 1: steps 0-1 and 2-3 are summed apart, step 3 bootstraps.
    discounts = as_tensor(framework, np.array([[1.0], [0.0], [1.0], [1.0]], np.float32))
    returns = ops.reverse_discounted_scan(
        rewards, discounts, as_tensor(framework, np.float32([10.0]))
    )
    np.testing.assert_array_equal(ops.to_numpy(returns)[:, 0], [2.0, 1.0, 12.0, 11.0])


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_trailing_axes_are_scanned_element_wise(framework):
    ops = backend_ops(framework)
    x = np.arange(24, dtype=np.float32).reshape(3, 2, 4)
    discounts = np.full_like(x, 0.5)
    got = ops.reverse_discounted_scan(as_tensor(framework, x), as_tensor(framework, discounts))
    np.testing.assert_allclose(ops.to_numpy(got), numpy_scan(x, discounts), rtol=1e-6)


def test_torch_gradients_flow_through_every_input():
    import torch

    ops = backend_ops("torch")
    x = torch.ones(3, 2, requires_grad=True)
    discounts = torch.full((3, 2), 0.5, requires_grad=True)
    bootstrap = torch.ones(2, requires_grad=True)
    ops.reverse_discounted_scan(x, discounts, bootstrap).sum().backward()
    # d sum(y) / d x[t] = 1 + d[t-1] + d[t-1] d[t-2] ...: 1, 1.5, 1.75 from the first step on.
    np.testing.assert_allclose(x.grad[:, 0].numpy(), [1.0, 1.5, 1.75])
    np.testing.assert_allclose(bootstrap.grad.numpy(), [0.875, 0.875])
    assert discounts.grad is not None and torch.all(discounts.grad > 0)


def test_tf_gradients_flow_and_the_scan_compiles_into_a_graph():
    import tensorflow as tf

    ops = backend_ops("tf")
    x = tf.Variable(tf.ones((3, 2)))
    bootstrap = tf.Variable(tf.ones(2))

    @tf.function
    def total():
        with tf.GradientTape() as tape:
            y = ops.reverse_discounted_scan(x, tf.fill((3, 2), 0.5), bootstrap)
            loss = tf.reduce_sum(y)
        return tape.gradient(loss, [x, bootstrap])

    grad_x, grad_bootstrap = total()
    np.testing.assert_allclose(grad_x.numpy()[:, 0], [1.0, 1.5, 1.75])
    np.testing.assert_allclose(grad_bootstrap.numpy(), [0.875, 0.875])
