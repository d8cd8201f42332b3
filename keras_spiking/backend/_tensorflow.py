"""TensorFlow shim: ``straight_through`` with ``tf.custom_gradient``."""

import tensorflow as tf


@tf.custom_gradient
def straight_through(surrogate, value):
    """Return ``value``; send the incoming gradient to ``surrogate``.

    ``value`` must have the shape and dtype of ``surrogate``; it gets no
    gradient, so whatever computed it keeps no state for backprop.
    """

    def grad(upstream):
        return upstream, None

    return tf.identity(value), grad
