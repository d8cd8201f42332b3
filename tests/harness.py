"""Test utilities that need backend- or Keras-internal pieces.

This is the only module that imports the private ``keras.src.testing`` (its
``TestCase.run_layer_test`` checks config and serialization round trips, weight
counts, symbolic calls, a one-step fit and mixed precision), and the only test
module that dispatches on the backend (to take gradients).
"""

import keras
import numpy as np
from keras.src.testing import TestCase as _KerasTestCase


class _Harness(_KerasTestCase):
    def runTest(self):  # unittest needs a test method to instantiate
        pass


def run_layer_test(layer_cls, init_kwargs, **kwargs):
    """Keras' own layer checks (see ``keras.src.testing.TestCase``)."""
    case = _Harness()
    case.setUp()
    case.run_layer_test(layer_cls, init_kwargs, **kwargs)


def numpy(x):
    """Any tensor (or list of tensors) as NumPy."""
    if isinstance(x, (list, tuple)):
        return [numpy(v) for v in x]
    return np.asarray(keras.ops.convert_to_numpy(x))


def gradients(fn, *inputs):
    """Value and gradients of a scalar ``fn(*tensors)`` w.r.t. its inputs.

    ``inputs`` are NumPy arrays; returns ``(value, [gradient, ...])`` as NumPy,
    using the backend's own autodiff (``tf.GradientTape``, ``torch.autograd``
    or ``jax.value_and_grad``).
    """
    inputs = [np.asarray(x, np.float32) for x in inputs]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(x) for x in inputs]
        with tf.GradientTape() as tape:
            for tensor in tensors:
                tape.watch(tensor)
            value = fn(*tensors)
        grads = tape.gradient(value, tensors)
    elif backend == "torch":
        import torch

        tensors = [
            keras.ops.convert_to_tensor(x).detach().requires_grad_(True) for x in inputs
        ]
        value = fn(*tensors)
        grads = torch.autograd.grad(value, tensors, allow_unused=True)
    elif backend == "jax":
        import jax

        value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(inputs))))(
            *inputs
        )
    else:  # pragma: no cover
        raise NotImplementedError(f"no gradient helper for backend {backend!r}")
    pairs = zip(inputs, grads, strict=True)
    grads = [np.zeros_like(x) if g is None else numpy(g) for x, g in pairs]
    return float(numpy(value)), grads
