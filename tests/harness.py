"""Test utilities that need backend- or Keras-internal pieces.

This is the only module that imports the private ``keras.src.testing`` (its
``TestCase.run_layer_test`` checks config and serialization round trips, weight
counts, symbolic calls, a one-step fit and mixed precision), and the only test
module that dispatches on the backend: to take gradients (``gradients``), to
compile calls under JAX (``run_jit``), and in the flags that the other modules
read to choose backend-dependent cases (``XLA``, ``UNKNOWN_AXES``).  Only
TensorFlow-specific tests (skipped elsewhere) import a backend themselves.
"""

import importlib
import os

import keras
import numpy as np
import pytest
from keras.src.testing import TestCase as _KerasTestCase

BACKEND = keras.backend.backend()

# ``jit_compile=True`` means XLA on TensorFlow and JAX (torch would mean
# torch.compile, which is outside these tests).
XLA = BACKEND in ("tensorflow", "jax")

# Only TensorFlow traces graphs in which an axis is unknown (``None``); JAX
# always traces concrete shapes.
UNKNOWN_AXES = BACKEND == "tensorflow"


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


def run_jit(fn, *args):
    """``fn(*args)`` as NumPy; compiled with ``jax.jit`` under JAX (op-by-op
    dispatch there compiles every primitive for every new shape, several times
    slower), called eagerly under the other backends."""
    if BACKEND == "jax":
        import jax

        return numpy(jax.jit(fn)(*args))
    return numpy(fn(*args))


def gradients(fn, *inputs, jit=False):
    """Value and gradients of a scalar ``fn(*tensors)`` w.r.t. its inputs.

    ``inputs`` are NumPy arrays; returns ``(value, [gradient, ...])`` as NumPy,
    using the backend's own autodiff (``tf.GradientTape``, ``torch.autograd``
    or ``jax.value_and_grad``).  With ``jit=True`` the JAX gradient is
    compiled with ``jax.jit`` (see ``run_jit``); the other backends ignore it.
    """
    inputs = [np.asarray(x, np.float32) for x in inputs]
    backend = BACKEND
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

        grad_fn = jax.value_and_grad(fn, argnums=tuple(range(len(inputs))))
        value, grads = (jax.jit(grad_fn) if jit else grad_fn)(*inputs)
    else:  # pragma: no cover
        raise NotImplementedError(f"no gradient helper for backend {backend!r}")
    pairs = zip(inputs, grads, strict=True)
    grads = [np.zeros_like(x) if g is None else numpy(g) for x, g in pairs]
    return float(numpy(value)), grads


# Optional test dependencies (the ``test`` extra).  ``python -m tests`` sets
# KERAS_SPIKING_REQUIRE_EXTRAS=1, so there a missing one is a failure (a
# broken extra must not pass CI as a row of skips); a user running pytest
# without the extra gets a skip with the reason.
REQUIRE_EXTRAS = os.environ.get("KERAS_SPIKING_REQUIRE_EXTRAS") == "1"


def optional_import(name, why):
    """Import the optional test dependency ``name`` (``why``: what needs it).

    Skips the calling test (or module, at import time) when it is missing,
    unless KERAS_SPIKING_REQUIRE_EXTRAS=1, where it fails.
    """
    try:
        return importlib.import_module(name)
    except ImportError as error:
        message = f"{why} needs the optional package `{name}` ({error})"
        if REQUIRE_EXTRAS:
            pytest.fail(f"{message}; install the test extra.", pytrace=False)
        pytest.skip(message, allow_module_level=True)


# Export formats that Keras itself cannot produce from a backend (checked
# with a plain Dense model; every other pair must export, and a failure there
# is a failure of the test).
KERAS_CANNOT_EXPORT = {
    ("torch", "tf_saved_model"): (
        "Keras exports a TensorFlow SavedModel only from the TensorFlow and "
        "JAX backends"
    ),
}


def skip_if_keras_cannot_export(fmt):
    """Skip, naming Keras' own gap, for a (backend, format) pair that Keras
    cannot export from; every other pair runs (and fails if export breaks)."""
    reason = KERAS_CANNOT_EXPORT.get((BACKEND, fmt))
    if reason is not None:
        pytest.skip(f"Keras {keras.__version__}: {reason}")
