"""Backend-specific pieces behind backend-neutral functions.

Each backend has one small module here; this is the only place that looks at
``keras.backend.backend()``.

* ``straight_through(surrogate, value)``: forward ``value``, gradient to
  ``surrogate``.
* ``custom_vjp(forward, backward)``: a function of tensors with a hand-written
  gradient (``forward(*args) -> (output, residuals)``,
  ``backward(residuals, upstream) -> gradients``).
* ``chunk_cumsum(x, initial=None, reverse=False, overwrite=False)``: running
  sum along axis 2 of a rank-4 tensor of short chunks, each started from
  ``initial``.
* ``residue(x, bits)``: ``x mod 2**bits`` for int32 tensors.
* ``loop_is_cheaper(steps, width)``: whether a compiled loop over time beats
  the chunked kernels for this backend and device (a speed hint).
* ``unroll(steps)``: whether a loop over a static number of steps is
  unrolled (a speed hint).
* ``uniform(shape, seed_generator)``: ``keras.random.uniform`` in ``[0, 1)``,
  with the generator that is fastest on the backend.
"""

import keras

_BACKEND = keras.backend.backend()

if _BACKEND == "tensorflow":
    from keras_spiking.backend._tensorflow import (
        chunk_cumsum,
        custom_vjp,
        loop_is_cheaper,
        residue,
        straight_through,
        uniform,
        unroll,
    )
elif _BACKEND == "jax":
    from keras_spiking.backend._jax import (
        chunk_cumsum,
        custom_vjp,
        loop_is_cheaper,
        residue,
        straight_through,
        uniform,
        unroll,
    )
elif _BACKEND == "torch":
    from keras_spiking.backend._torch import (
        chunk_cumsum,
        custom_vjp,
        loop_is_cheaper,
        residue,
        straight_through,
        uniform,
        unroll,
    )
else:  # pragma: no cover - only the three backends are supported
    raise ImportError(
        f"keras_spiking supports the tensorflow, torch and jax backends, "
        f"not {_BACKEND!r}"
    )

__all__ = [
    "chunk_cumsum",
    "custom_vjp",
    "loop_is_cheaper",
    "residue",
    "straight_through",
    "uniform",
    "unroll",
]
