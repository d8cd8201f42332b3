"""Time-stepping kernels: plain functions on tensors, apart from the layers.

Every function here takes tensors with the batch on axis 0, time on axis 1 and
all feature axes flattened into axis 2, that is ``(batch, time, units)``, and
computes in the dtype it is given (the layers pass float32).

Two families live here:

* Spike integration (``integrate_spikes``): each neuron accumulates
  ``v += x_t`` (``x_t = rate_t * dt``) and emits ``n_t = floor(v)`` spikes,
  keeping ``v - n_t``.  The fast kernel does not loop over time: the voltage
  after step ``t`` is the fractional part of ``v_0 + sum_{s <= t} x_s``, and the
  spike count at ``t`` is the difference of the floors of that running sum.  To
  keep float32 rounding as small as in the step-by-step form, the running sum is
  taken in chunks of ``chunk`` steps over the fractional parts of the
  increments only (integer parts of ``x_t`` are exact spikes), and the carry
  between chunks is the same problem again, one level up.
* Linear recurrences (``lowpass``): ``y_t = a * y_{t-1} + (1 - a) * x_t``.  The
  fast kernel multiplies each chunk by a small lower-triangular decay matrix
  ``D[c, s] = a**(c - s)`` and solves the recurrence of the chunk ends
  (factor ``a**chunk``) one level up; the top level is one dense matrix.

Both accept a time axis that is only known at run time (TensorFlow graphs with
``None`` time); the number of levels is then fixed so that a few million steps
stay exact.  ``*_naive`` functions are the step-by-step forms, kept as the
reference for tests and benchmarks.
"""

import math

from keras import backend, ops

#: Steps per chunk in the fast kernels.
CHUNK = 32
#: Levels of chunking used when the number of steps is unknown when tracing.
DYNAMIC_LEVELS = 3


def _levels_for(steps, chunk, dynamic_levels):
    """Number of chunking levels so that the top level has at most ``chunk``."""
    if steps is None:
        return dynamic_levels
    levels = 0
    while steps > chunk:
        steps = math.ceil(steps / chunk)
        levels += 1
    return levels


def _pad_time(x, chunk):
    """Zero-pad axis 1 of ``x`` up to a multiple of ``chunk``."""
    steps = x.shape[1]
    if steps is not None and steps % chunk == 0:
        return x
    shape = ops.shape(x)
    pad = (-shape[1]) % chunk
    zeros = ops.zeros((shape[0], pad) + tuple(shape[2:]), dtype=x.dtype)
    return ops.concatenate([x, zeros], axis=1)


def _to_chunks(x, chunk):
    """``(b, t, n)`` -> ``(b, ceil(t / chunk), chunk, n)``, zero-padded."""
    shape = ops.shape(x)
    return ops.reshape(_pad_time(x, chunk), (shape[0], -1, chunk, shape[2]))


def _from_chunks(x, steps):
    """Inverse of ``_to_chunks``: back to ``(b, steps, n)``."""
    shape = ops.shape(x)
    return ops.reshape(x, (shape[0], -1, shape[3]))[:, :steps]


def _shift_right(x, first, axis):
    """``x`` shifted by one along ``axis``, with ``first`` in the first place."""
    rest = x[:, :-1] if axis == 1 else x[:, :, :-1]
    return ops.concatenate([ops.expand_dims(first, axis), rest], axis=axis)


# ----------------------------------------------------------------- spikes ---


def _integrate_fractions(x, v0, chunk, levels):
    """Spike counts and voltages for increments ``x`` in ``[0, 1)``.

    Returns ``(counts, voltage)``, both ``(b, t, n)``; ``voltage[:, t]`` is the
    voltage after step ``t``.
    """
    if levels == 0:
        total = ops.expand_dims(v0, 1) + ops.cumsum(x, axis=1)
        floors = ops.floor(total)
        counts = floors - _shift_right(floors, ops.zeros_like(v0), axis=1)
        return counts, total - floors

    steps = ops.shape(x)[1]
    local = ops.cumsum(_to_chunks(x, chunk), axis=2)  # (b, k, c, n)
    ends = local[:, :, -1]
    _, carry = _integrate_fractions(
        ends - ops.floor(ends), v0, chunk, levels - 1
    )
    total = ops.expand_dims(_shift_right(carry, v0, axis=1), 2) + local
    floors = ops.floor(total)
    counts = floors - _shift_right(floors, ops.zeros_like(floors[:, :, 0]), 2)
    return _from_chunks(counts, steps), _from_chunks(total - floors, steps)


def integrate_spikes(x, v0, chunk=CHUNK, levels=None):
    """Integrate-and-fire with fractional voltage, without a loop over time.

    Parameters
    ----------
    x : tensor, ``(batch, time, units)``
        Voltage increments ``rate * dt``; any sign, any magnitude.
    v0 : tensor, ``(batch, units)``
        Initial voltage, in ``[0, 1)``.
    chunk : int
        Steps per chunk of the running sum.
    levels : int, optional
        Chunking levels; by default chosen from the static number of steps.

    Returns
    -------
    counts : tensor, ``(batch, time, units)``
        ``n_t = floor(v_{t-1} + x_t)``, the (integer-valued) spikes per step.
    voltage : tensor, ``(batch, units)``
        ``v_T``, the voltage after the last step.
    """
    if levels is None:
        levels = _levels_for(x.shape[1], chunk, DYNAMIC_LEVELS)
    whole = ops.floor(x)
    counts, voltage = _integrate_fractions(x - whole, v0, chunk, levels)
    return whole + counts, voltage[:, -1]


def integrate_spikes_naive(x, v0):
    """Step-by-step form of ``integrate_spikes`` (the reference)."""
    v = v0
    counts = []
    for t in range(x.shape[1]):
        v = v + x[:, t]
        n = ops.floor(v)
        v = v - n
        counts.append(n)
    return ops.stack(counts, axis=1), v


# ---------------------------------------------------------------- filters ---


def _decay_matrix(log_a, size):
    """``D[n, c, s] = exp((c - s) * log_a[n])`` for ``c >= s``, else 0."""
    index = ops.arange(size, dtype=backend.standardize_dtype(log_a.dtype))
    lag = ops.expand_dims(index, 1) - ops.expand_dims(index, 0)
    mask = ops.cast(lag >= 0, index.dtype)
    lag = ops.maximum(lag, 0)  # keep exp finite where masked (finite grads)
    return ops.exp(lag[None] * log_a[:, None, None]) * mask[None]


def _decay_powers(log_a, size):
    """``P[c, n] = exp((c + 1) * log_a[n])``."""
    index = ops.arange(1, size + 1, dtype=backend.standardize_dtype(log_a.dtype))
    return ops.exp(ops.expand_dims(index, 1) * ops.expand_dims(log_a, 0))


def _recurrence(u, log_a, y0, chunk, levels):
    """Solve ``y_t = exp(log_a) * y_{t-1} + u_t`` with ``y_{-1} = y0``."""
    if levels == 0:
        steps = ops.shape(u)[1]
        y = ops.einsum("nts,bsn->btn", _decay_matrix(log_a, steps), u)
        return y + _decay_powers(log_a, steps)[None] * ops.expand_dims(y0, 1)

    steps = ops.shape(u)[1]
    local = ops.einsum(
        "ncs,bksn->bkcn", _decay_matrix(log_a, chunk), _to_chunks(u, chunk)
    )
    ends = _recurrence(local[:, :, -1], log_a * chunk, y0, chunk, levels - 1)
    carry = ops.expand_dims(_shift_right(ends, y0, axis=1), 2)
    y = local + _decay_powers(log_a, chunk)[None, None] * carry
    return _from_chunks(y, steps)


def lowpass(x, log_a, y0, chunk=CHUNK, levels=None):
    """First-order lowpass filter, parallel in time.

    Computes ``y_t = a * y_{t-1} + (1 - a) * x_t`` with ``a = exp(log_a)``
    (``log_a = -dt / tau``), the zero-order-hold discretisation of
    ``h(t) = exp(-t / tau) / tau`` without its one-step delay.

    Parameters
    ----------
    x : tensor, ``(batch, time, units)``
        Input signal.
    log_a : tensor, ``(units,)``
        ``-dt / tau`` per unit (non-positive).
    y0 : tensor, ``(batch, units)``
        Filter output before the first step.
    chunk, levels : int
        As for ``integrate_spikes``.

    Returns
    -------
    y : tensor, ``(batch, time, units)``
        Filtered signal; ``y[:, -1]`` is the filter's state.
    """
    if levels is None:
        levels = _levels_for(x.shape[1], chunk, DYNAMIC_LEVELS)
    u = -ops.expm1(log_a) * x
    return _recurrence(u, log_a, y0, chunk, levels)


def lowpass_naive(x, log_a, y0):
    """Step-by-step form of ``lowpass`` (the reference)."""
    a = ops.exp(log_a)
    y = y0
    ys = []
    for t in range(x.shape[1]):
        y = a * y + (1 - a) * x[:, t]
        ys.append(y)
    return ops.stack(ys, axis=1)


def alpha(x, log_a, y0, chunk=CHUNK, levels=None):
    """Second-order (alpha) filter, parallel in time.

    The zero-order-hold discretisation of ``h(t) = (t / tau**2) exp(-t / tau)``
    (without its one-step delay) is ``y = c1 * p + c2 * q`` with ``p`` the
    lowpass of ``x`` and ``q`` the lowpass of ``p`` (same ``tau``), where
    ``r = dt / tau``, ``c2 = r / (1 - a)`` and ``c1 = 1 - c2``.  Equivalently
    ``y_t = 2a y_{t-1} - a^2 y_{t-2} + (1 - a - r a) x_t + a (a + r - 1) x_{t-1}``.

    Parameters
    ----------
    x : tensor, ``(batch, time, units)``
        Input signal.
    log_a : tensor, ``(units,)``
        ``-dt / tau`` per unit (non-positive).
    y0 : tuple of two tensors, ``(batch, units)``
        States ``(p, q)`` before the first step; both equal to ``L`` is the
        filter at rest at level ``L``.

    Returns
    -------
    y : tensor, ``(batch, time, units)``
        Filtered signal.
    states : tuple of two tensors, ``(batch, units)``
        ``(p, q)`` after the last step.
    """
    p = lowpass(x, log_a, y0[0], chunk=chunk, levels=levels)
    q = lowpass(p, log_a, y0[1], chunk=chunk, levels=levels)
    c2 = -log_a / -ops.expm1(log_a)
    return (1 - c2) * p + c2 * q, (p[:, -1], q[:, -1])


def alpha_naive(x, log_a, y0):
    """Step-by-step form of ``alpha`` (the reference)."""
    p = lowpass_naive(x, log_a, y0[0])
    q = lowpass_naive(p, log_a, y0[1])
    c2 = -log_a / (1 - ops.exp(log_a))
    return (1 - c2) * p + c2 * q, (p[:, -1], q[:, -1])


# ------------------------------------------------------- initial voltages ---

_PRIME = 46337  # largest prime with PRIME**2 < 2**31: products fit in int32


def _cube_mix(h, multiplier, offset):
    """A bijection of ``[0, PRIME)``: ``((h * multiplier + offset) ** 3) % PRIME``.

    Cubing permutes ``Z_p`` because ``gcd(3, p - 1) = 1``; every product stays
    below ``2**31`` so the same integers come out on every backend.
    """
    h = (h * multiplier + offset) % _PRIME
    return ((h * h) % _PRIME) * h % _PRIME


def seeded_uniform(batch_size, units, seed):
    """Deterministic uniform ``[0, 1)`` values of shape ``(batch_size, units)``.

    An integer hash of ``(seed, batch index, unit index)`` in int32 arithmetic,
    so the values are identical on every backend and in exported graphs.
    """
    b = ops.expand_dims(ops.arange(batch_size, dtype="int32"), 1)
    n = ops.expand_dims(ops.arange(units, dtype="int32"), 0)
    h = ops.full_like(b, int(seed) % _PRIME) + ops.zeros_like(n)
    h = _cube_mix(h + n % _PRIME, 3571, 1013)
    h = _cube_mix(h + n // _PRIME, 7919, 2741)
    h = _cube_mix(h + b % _PRIME, 5003, 4099)
    h = _cube_mix(h + b // _PRIME, 6007, 8191)
    high = _cube_mix(h, 9001, 12007)
    low = _cube_mix(high, 10007, 15013)
    value = ops.cast(high * _PRIME + low, "float32") / float(_PRIME * _PRIME)
    return ops.minimum(value, 1.0 - 2.0**-24)
