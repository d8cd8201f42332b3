"""Seeded initial voltages.

Uniform ``[0, 1)`` values that depend only on ``(seed, batch index, neuron
index)``.

``SpikingActivation(seed=...)`` starts every neuron's voltage here, so that a
seeded layer gives the same spikes on every call, on every backend and in
exported graphs (ONNX, SavedModel).  Backends' random generators differ, so
the values come from an integer hash computed in int32 arithmetic, which is
exact and identical everywhere: the same integers on NumPy, TensorFlow,
PyTorch, JAX and ONNX Runtime.
"""

import functools

import numpy as np
from keras import ops

from keras_spiking.backend import replica_batch_offset

_PRIME = 46337  # largest prime with PRIME**2 < 2**31: products fit in int32


class _NumpyOps:
    """The few ``keras.ops`` functions the hash uses, on NumPy arrays.

    Same names and arguments, so the one hash below runs on either; NumPy
    int32 and float32 arithmetic is the same IEEE arithmetic.
    """

    arange = staticmethod(np.arange)
    broadcast_to = staticmethod(np.broadcast_to)
    cumsum = staticmethod(np.cumsum)
    expand_dims = staticmethod(np.expand_dims)
    floor = staticmethod(np.floor)
    full_like = staticmethod(np.full_like)
    minimum = staticmethod(np.minimum)
    ones = staticmethod(np.ones)
    zeros_like = staticmethod(np.zeros_like)

    @staticmethod
    def cast(x, dtype):
        return np.asarray(x).astype(dtype)


def _divmod_prime(h, xp):
    """``(h // PRIME, h % PRIME)`` for int32 ``0 <= h < 2**31``.

    A float32 quotient, off by at most one, then corrected: no integer
    division, which some exporters (jax2onnx) cannot lower with a symbolic
    batch size.  Exact, so the same integers come out everywhere.
    """
    quotient = xp.cast(xp.floor(xp.cast(h, "float32") * (1.0 / _PRIME)), "int32")
    rest = h - quotient * _PRIME
    high, low = xp.cast(rest >= _PRIME, "int32"), xp.cast(rest < 0, "int32")
    return quotient + high - low, rest + (low - high) * _PRIME


def _cube_mix(h, multiplier, offset, xp):
    """A bijection of ``[0, PRIME)``: ``((h * multiplier + offset) ** 3) % PRIME``.

    Cubing permutes ``Z_p`` because ``gcd(3, p - 1) = 1``; every product stays
    below ``2**31`` so the same integers come out on every backend.
    """
    h = _divmod_prime(h * multiplier + offset, xp)[1]
    return _divmod_prime(_divmod_prime(h * h, xp)[1] * h, xp)[1]


#: (multiplier, offset) of each mixing round, for the two lanes of the hash.
_LANES = (
    ((3571, 1013), (7919, 2741), (5003, 4099), (6007, 8191), (9001, 12007)),
    ((4111, 2203), (8737, 3307), (5527, 6151), (6899, 9203), (10007, 15013)),
)


def _seeded_uniform(batch_size, units, seed, xp, first=0):
    """Compute ``seeded_uniform`` with ``xp`` (``keras.ops`` or NumPy).

    For batch indices ``first, first + 1, ...``.
    """
    # batch indices by a running sum, not ``arange``: with a symbolic batch
    # size, jax2onnx gives ``arange`` a batch axis of its own.  The ones are
    # broadcast (not ``ops.ones((batch_size, 1))``, whose shape torch's ONNX
    # tracer would freeze at the example's batch size).
    ones = xp.broadcast_to(xp.ones((1, 1), dtype="int32"), (batch_size, 1))
    b = xp.cumsum(ones, axis=0) - 1
    if not (isinstance(first, int) and first == 0):
        b = b + first
    n = xp.expand_dims(xp.arange(0, units, dtype="int32"), 0)
    start = xp.full_like(b, int(seed) % _PRIME) + xp.zeros_like(n)
    n_high, n_low = _divmod_prime(n, xp)
    b_high, b_low = _divmod_prime(b, xp)
    # two independent lanes (different constants all the way), so that the
    # pair (high, low) takes up to PRIME**2 values, not PRIME
    lanes = []
    for constants in _LANES:
        h = start
        for index, (multiplier, offset) in zip(
            (n_low, n_high, b_low, b_high, None), constants, strict=True
        ):
            h = _cube_mix(h if index is None else h + index, multiplier, offset, xp)
        lanes.append(h)
    high, low = lanes
    # times the reciprocal, not divided: XLA turns a division by a constant
    # into this product, so dividing gives values one ulp apart on JAX
    value = xp.cast(high * _PRIME + low, "float32") * (1.0 / (_PRIME * _PRIME))
    return xp.minimum(value, 1.0 - 2.0**-24)


@functools.lru_cache(maxsize=64)
def _seeded_uniform_numpy(batch_size, units, seed):
    value = _seeded_uniform(batch_size, units, seed, _NumpyOps)
    value.flags.writeable = False
    return value


def seeded_uniform(batch_size, units, seed):
    """Deterministic uniform ``[0, 1)`` values of shape ``(batch_size, units)``.

    An integer hash of ``(seed, batch index, unit index)`` in int32 arithmetic,
    so the values are identical on every backend and in exported graphs.
    With a static (int) batch size the hash is computed once with NumPy and
    enters the graph as a constant (it is about a hundred small integer
    operations: 1.4 ms a call in eager PyTorch); a symbolic batch size
    computes it in the graph, with the same integer arithmetic.

    The batch index is the example's place in the *global* batch: under
    ``tf.distribute`` a replica's examples are numbered from its slice's
    place (``backend.replica_batch_offset``), so distributed training gives
    each example the voltages it has on one device.
    """
    first = replica_batch_offset(batch_size)
    if isinstance(batch_size, int) and isinstance(units, int):
        if isinstance(first, int):
            values = _seeded_uniform_numpy(first + batch_size, units, int(seed))
            return ops.convert_to_tensor(values[first:], "float32")
    return _seeded_uniform(batch_size, units, seed, ops, first)
