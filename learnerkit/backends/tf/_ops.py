"""``learnerkit.Ops`` for TensorFlow: thin wrappers over ``tf`` functions."""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

# The variables each optimizer made by ``TFOps.adam`` covers.
OPTIMIZER_VARIABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class TFOps:
    """``learnerkit.Ops`` for TensorFlow."""

    framework = "tf"

    def mean(self, x, axis=None):
        return tf.reduce_mean(x, axis=axis)

    def sum(self, x, axis=None):
        return tf.reduce_sum(x, axis=axis)

    def variance(self, x):
        return tf.math.reduce_variance(x)

    def max(self, x):
        return tf.reduce_max(x)

    square = staticmethod(tf.square)
    sqrt = staticmethod(tf.sqrt)
    exp = staticmethod(tf.exp)
    log = staticmethod(tf.math.log)
    abs = staticmethod(tf.abs)
    minimum = staticmethod(tf.minimum)
    maximum = staticmethod(tf.maximum)
    where = staticmethod(tf.where)

    def clip(self, x, low, high):
        return tf.clip_by_value(x, low, high)

    def float32(self, x):
        return tf.cast(x, tf.float32)

    def stop_gradient(self, x):
        return tf.stop_gradient(x)

    def split_last(self, x, parts):
        return tuple(tf.split(x, parts, axis=-1))

    def take_along_last(self, x, indices):
        return tf.gather(x, tf.cast(indices, tf.int32), axis=-1, batch_dims=1)

    def reshape(self, x, shape):
        return tf.reshape(x, shape)

    def transpose(self, x):
        perm = [1, 0, *range(2, len(x.shape))]
        return tf.transpose(x, perm)

    def stack(self, xs, axis=0):
        return tf.stack(list(xs), axis=axis)

    zeros_like = staticmethod(tf.zeros_like)

    def reverse_discounted_scan(self, x, discounts, bootstrap=None):
        # tf.scan is one while-loop in the compiled step, whatever T, where a Python loop
        # would unroll T copies of its body into the traced graph.
        x = tf.convert_to_tensor(x)
        discounts = tf.cast(discounts, x.dtype)
        last = x[-1] if bootstrap is None else x[-1] + discounts[-1] * tf.cast(bootstrap, x.dtype)
        earlier = tf.scan(
            lambda y, step: step[0] + step[1] * y,
            (x[:-1], discounts[:-1]),
            initializer=last,
            reverse=True,
        )
        return tf.concat([earlier, last[tf.newaxis]], axis=0)

    def log_softmax(self, logits):
        return tf.nn.log_softmax(logits, axis=-1)

    def softmax(self, logits):
        return tf.nn.softmax(logits, axis=-1)

    def argmax_last(self, x):
        return tf.argmax(x, axis=-1)

    def sample_categorical(self, logits):
        # Gumbel-max, as in the torch backend: any batch rank, same distribution.
        u = tf.random.uniform(tf.shape(logits), minval=1e-20, maxval=1.0, dtype=logits.dtype)
        return tf.argmax(logits - tf.math.log(-tf.math.log(u)), axis=-1)

    def random_normal_like(self, x):
        return tf.random.normal(tf.shape(x), dtype=x.dtype)

    def adam(self, module, learning_rate, eps=1e-8, parameters=None):
        return _built(
            module,
            parameters,
            lambda: keras.optimizers.Adam(learning_rate=learning_rate, epsilon=eps),
        )

    def sgd(self, module, learning_rate, parameters=None):
        return _built(module, parameters, lambda: keras.optimizers.SGD(learning_rate=learning_rate))

    def set_learning_rate(self, optimizer, learning_rate):
        # A variable in Keras 3: assigning it changes the rate without retracing the step.
        optimizer.learning_rate = float(learning_rate)

    def get_learning_rate(self, optimizer):
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))

    def as_tensor(self, x):
        return tf.convert_to_tensor(x)

    def to_numpy(self, x):
        return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


TF_OPS = TFOps()


def _built(module, parameters, make):
    """``make()``'s optimizer, built for the module's variables (or ``parameters``) now, so a
    learner that has not stepped yet can load a saved optimizer state."""
    variables = list(module.trainable_variables if parameters is None else parameters)
    # Next to the weights (a variable's device string is a valid device scope).
    first = variables[0] if variables else None
    # A Keras variable keeps its tf.Variable (which knows its device) in ``.value``.
    device = getattr(first, "device", None) or getattr(
        getattr(first, "value", None), "device", None
    )
    with tf.device(device if isinstance(device, str) else None):
        optimizer = make()
        optimizer.build(variables)
    # Keras keeps the variables an optimizer was built for privately: remember them, so
    # a module with several optimizers can be checked and stepped per optimizer.
    OPTIMIZER_VARIABLES[optimizer] = variables
    return optimizer
