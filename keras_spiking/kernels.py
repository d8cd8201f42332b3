"""Time-stepping kernels: plain functions on tensors, apart from the layers.

Every function here takes tensors with the batch on axis 0, time on axis 1 and
all feature axes flattened into axis 2, that is ``(batch, time, units)``, and
computes in float32.  Apart from short sequences, none of them loops over
time step by step: time is cut into chunks of ``chunk`` steps (8), each
chunk is solved with a short running sum (``backend.chunk_cumsum``), and the
values carried from one chunk to the next are the same problem again, one
level up, on ``1/chunk`` of the data.  Per level, one reduction over each
chunk gives what it passes on, the level above turns those into the value
entering each chunk, and one running sum per chunk, started from that
value, gives the result (the full-size data is read twice and written once).

* Spike integration (``integrate_spikes``): each neuron accumulates
  ``v += x_t`` (``x_t = rate_t * dt``) and emits ``n_t = floor(v)`` spikes,
  keeping ``v - n_t``.  The nearest integer to ``x_t`` (so that the rest is
  exact in float32) is emitted as is; the rest and the
  voltage are kept in fixed point, as int32 multiples of ``2**-27``, and
  summed modulo ``2**27``.  Integer sums are exact, so the voltage after any
  number of steps is the exact voltage of the quantised increments (an
  error below ``4e-9`` per step, none for increments that are multiples of
  ``2**-27``).  A step emits one more spike exactly when the running sum
  wraps around, that is where the new voltage is below the increment.
* Linear recurrences (``lowpass``, and ``alpha`` as two lowpass stages):
  ``y_t = a y_{t-1} + u_t``.  In a chunk, ``y_c = a**c * sum_{s <= c}
  a**-s u_s``, a running sum of rescaled inputs (exponents centred on the
  chunk, ``log(a)`` clamped at ``-17`` where ``a`` is below float32
  resolution, so nothing overflows); the chunk ends carry over with factor
  ``a**chunk``.  The gradient is written by hand (``backend.custom_vjp``):
  the adjoint of the recurrence is the same recurrence backwards in time, so
  the backward pass keeps only the input and output of the filter.

A time axis that is only known at run time (TensorFlow graphs with ``None``
time) is supported with a fixed number of levels (``DYNAMIC_LEVELS``); the
top level then takes a plain running sum (spikes) or a dense decay matrix
(filters) over whatever is left.

Which form runs is chosen from the static number of steps and the backend's
speed hints (``backend.loop_is_cheaper``, ``backend.unroll``).  Spikes use
the same exact fixed-point arithmetic in every form, so they do not depend
on the choice; filters agree to float32 rounding:

* up to 15 steps, spikes take one running sum of the whole sequence;
* up to ``STEPWISE_MAX`` steps, filters take a loop over time (unrolled on
  TensorFlow and PyTorch);
* symbolic lengths (JAX export), and any length where the backend says a
  compiled loop is cheaper (JAX on CPU), take a loop (``keras.ops.scan``);
* everything else takes the chunked kernels.

``*_naive`` functions are the plain float32 step-by-step forms (one
``keras.ops.scan`` iteration per step), kept as the baseline for benchmarks.
"""

import functools
import math

import numpy as np
from keras import ops

from keras_spiking import backend as _backend

#: Steps per chunk in the fast kernels.
CHUNK = 8
#: Levels of chunking used when the number of steps is unknown when tracing
#: (``CHUNK ** DYNAMIC_LEVELS`` steps per element of the top level).
DYNAMIC_LEVELS = 5

#: Fixed-point voltage: int32 multiples of ``2**-FRACTION_BITS``.  With
#: chunks of 8, running sums stay below ``2**31`` (no integer overflow).
FRACTION_BITS = 27
_ONE = 1 << FRACTION_BITS
_MASK = _ONE - 1
#: Longest top level (no chunking) for spikes (its int32 sums stay below
#: ``16 * 2**27 = 2**31``) and for filters (a dense decay matrix).
_SPIKE_TOP = 15
_FILTER_TOP = 16
#: ``exp(-17) < 2**-24``: smaller decay factors are zero at float32 resolution.
_MIN_LOG_A = -17.0


def _static(size):
    """``size`` if it is a plain int, else None (unknown or symbolic)."""
    return size if isinstance(size, int) else None


def _width(x):
    """Values per step (batch x units) if static, else None."""
    batch, units = _static(x.shape[0]), _static(x.shape[2])
    return None if batch is None or units is None else batch * units


def _one_minus_exp(log_a):
    """``1 - exp(log_a)`` to float32 precision for ``log_a <= 0``.

    A Taylor series near 0 (where ``1 - exp`` cancels); ``expm1`` itself
    does not export to ONNX from every backend.
    """
    series = -log_a * (
        1 + log_a / 2 * (1 + log_a / 3 * (1 + log_a / 4 * (1 + log_a / 5)))
    )
    return ops.where(log_a > -0.1, series, 1 - ops.exp(log_a))


def _alpha_c1(log_a):
    """``c1 = 1 - r / (1 - a) = -(a - 1 - log_a) / (1 - a)`` (``r = -log_a``).

    ``c1`` is close to 0 for slow filters: computed from a series of
    ``a - 1 - log_a`` near 0 rather than as ``1 - c2`` (which would cancel).
    """
    series = log_a**2 / 2 * (1 + log_a / 3 * (1 + log_a / 4 * (1 + log_a / 5)))
    excess = ops.where(log_a > -0.1, series, ops.exp(log_a) - 1 - log_a)
    return -excess / _one_minus_exp(log_a)


def _levels_for(steps, chunk, top):
    """Number of chunking levels so that the top level has at most ``top``."""
    if steps is None:
        return DYNAMIC_LEVELS
    levels = 0
    while steps > top:
        steps = math.ceil(steps / chunk)
        levels += 1
    return levels


#: ``levels`` of the loop over time: one iteration per step (symbolic
#: lengths, short filters, and where ``backend.loop_is_cheaper``).
STEPWISE = -1
#: Filters over static lengths up to this take the loop (``_loop``).
STEPWISE_MAX = 16


def _unrolled(xs):
    """Whether ``_loop`` over axis 1 of ``xs`` is unrolled (``backend.unroll``:
    a while loop costs about 1 ms a call under XLA on TensorFlow)."""
    steps = _static(xs.shape[1])
    return steps is not None and _backend.unroll(steps)


def _loop(step, init, xs, reverse=False):
    """``keras.ops.scan`` of ``step`` over axis 1 of ``xs``: the last carry,
    and the outputs stacked on axis 1; unrolled if ``_unrolled(xs)``."""
    if _unrolled(xs):
        steps = xs.shape[1]
        carry, outputs = init, [None] * steps
        for t in range(steps - 1, -1, -1) if reverse else range(steps):
            carry, outputs[t] = step(carry, xs[:, t])
        return carry, ops.stack(outputs, axis=1)
    carry, ys = ops.scan(step, init, ops.transpose(xs, (1, 0, 2)), reverse=reverse)
    return carry, ops.transpose(ys, (1, 0, 2))


def _default_levels(steps, chunk, top, width=None, loop_short=True):
    """``_levels_for`` the static size ``steps``; ``STEPWISE`` if symbolic.

    A symbolic size (JAX shape polymorphism, as in ``model.export`` with a
    dynamic time axis) gets a loop over time: jax2onnx cannot pad and reshape
    a symbolic axis into chunks.  None (unknown, TensorFlow graphs) keeps the
    chunked kernels with ``DYNAMIC_LEVELS``.  Up to ``STEPWISE_MAX`` static
    steps, ``loop_short`` takes the (unrolled) loop; without it, the plain
    top level (``levels = 0``) when ``steps <= top``.
    """
    if not (steps is None or isinstance(steps, int) or ops.is_tensor(steps)):
        return STEPWISE
    if isinstance(steps, int):
        if loop_short and steps <= STEPWISE_MAX:
            return STEPWISE  # a few steps cost less as a loop than chunked
        if not loop_short and steps <= top:
            return 0
        if _backend.loop_is_cheaper(steps, width):
            return STEPWISE  # measured per backend and device
    # a tensor: torch's ONNX tracer records sizes as tensors (chunked kernels)
    return _levels_for(_static(steps), chunk, top)


def _check_chunk(chunk, largest):
    if (
        isinstance(chunk, bool)
        or not isinstance(chunk, int)
        or not 2 <= chunk <= largest
    ):
        raise ValueError(
            f"keras_spiking.kernels expects `chunk` to be an int in [2, {largest}]; "
            f"got {chunk!r}."
        )


def _to_chunks(x, chunk, front=False):
    """``(b, t, n)`` -> ``(b, ceil(t / chunk), chunk, n)``, zero-padded.

    Padding goes after the last step, or before the first with ``front``.
    """
    shape = ops.shape(x)
    count = (shape[1] + (chunk - 1)) // chunk  # explicit: shapes may be symbolic
    if _static(x.shape[1]) is None or x.shape[1] % chunk:
        pad = count * chunk - shape[1]
        # broadcast, not ``ops.zeros(shape)``: torch's ONNX tracer would
        # freeze that shape at the example's
        zero = ops.zeros((1, 1, 1), dtype=x.dtype)
        zeros = ops.broadcast_to(zero, (shape[0], pad, shape[2]))
        x = ops.concatenate([zeros, x] if front else [x, zeros], axis=1)
    return ops.reshape(x, (shape[0], count, chunk, shape[2]))


def _from_chunks(y, steps, static_steps, front=False):
    """Inverse of ``_to_chunks``: back to ``(b, steps, n)``."""
    shape = ops.shape(y)
    y = ops.reshape(y, (shape[0], shape[1] * shape[2], shape[3]))
    if static_steps is not None and static_steps == _static(shape[1] * shape[2]):
        return y
    if front:
        return y[:, ops.shape(y)[1] - steps :]
    return y[:, :steps]


# ----------------------------------------------------------------- spikes ---


def _running_sum_mod(q, start, chunk, levels):
    """``(start + inclusive running sum of q along axis 1) mod 2**27``.

    ``q`` is int32 in ``[0, 2**27)``, ``(b, t, n)``; ``start`` int32 in
    ``[0, 2**27)``, ``(b, n)``.  Per level: chunk totals (a reduction), the
    running sum of those one level up gives each chunk's starting value, and
    one running sum per chunk started from it.  Sums stay below ``9 * 2**27``.
    """
    if levels == STEPWISE:

        def step(v, q_t):
            v = _backend.residue(v + q_t, FRACTION_BITS)
            return v, v

        return _loop(step, start, q)[1]
    if levels == 0:
        total = ops.cumsum(q, axis=1) + ops.expand_dims(start, 1)
        return _backend.residue(total, FRACTION_BITS)
    steps, static_steps = ops.shape(q)[1], _static(q.shape[1])
    chunks = _to_chunks(q, chunk)
    ends = chunks[:, :, 0]
    for c in range(1, chunk):  # unrolled: fused into one pass on XLA
        ends = ends + chunks[:, :, c]
    ends = _backend.residue(ends, FRACTION_BITS)
    ends = _running_sum_mod(ends, start, chunk, levels - 1)
    before = ops.concatenate([ops.expand_dims(start, 1), ends[:, :-1]], axis=1)
    total = _backend.chunk_cumsum(chunks, initial=before)
    return _from_chunks(_backend.residue(total, FRACTION_BITS), steps, static_steps)


def integrate_spikes(x, v0, chunk=CHUNK, levels=None):
    """Integrate-and-fire with fractional voltage, without a loop over time.

    Computes, for every step ``t``, ``v'_t = v_{t-1} + x_t``,
    ``n_t = floor(v'_t)``, ``v_t = v'_t - n_t``, with ``v_{-1} = v0``, as
    exact integer running sums of the increments' fractional parts in fixed
    point (see the module docstring).

    Parameters
    ----------
    x : tensor, ``(batch, time, units)``
        Voltage increments ``rate * dt``; any sign, any magnitude.
    v0 : tensor, ``(batch, units)``
        Initial voltage, in ``[0, 1)`` (taken modulo 1).
    chunk : int
        Steps per chunk of the running sums, 2 to 8.
    levels : int, optional
        Chunking levels; by default chosen from the static number of steps
        (``DYNAMIC_LEVELS`` if that is unknown).

    Returns
    -------
    counts : tensor, ``(batch, time, units)``
        ``n_t``, the (integer-valued) spikes per step, float32.
    voltage : tensor, ``(batch, units)``
        ``v_T``, the voltage after the last step, in ``[0, 1)``.
    """
    _check_chunk(chunk, 8)
    x, v0 = ops.convert_to_tensor(x), ops.convert_to_tensor(v0)
    if levels is None:
        # up to 15 steps one int32 running sum (``levels = 0``) is cheaper
        # than the loop (measured at T = 10 on every backend)
        levels = _default_levels(
            x.shape[1], chunk, _SPIKE_TOP, _width(x), loop_short=False
        )
    start = ops.cast(ops.round((v0 - ops.floor(v0)) * float(_ONE)), "int32")
    if levels == STEPWISE and not _unrolled(x):
        # a compiled loop: everything per step inside it, so that the data
        # is read and written about once (as in the step-by-step form); the
        # loop's outputs have the carry's dtype (``keras.ops.scan`` on
        # TensorFlow requires it), so it returns the extra spikes
        def step(v, x_t):
            _, signed, q = _quantise(x_t)
            v = _backend.residue(v + q, FRACTION_BITS)
            return v, _extra_spikes(signed, q, v)

        last, extra = _loop(step, start, x)
        nearest = ops.round(x)
    else:
        nearest, signed, q = _quantise(x)
        voltage = _running_sum_mod(q, start, chunk, levels)
        extra = _extra_spikes(signed, q, voltage)
        last = voltage[:, -1]
    counts = nearest + ops.cast(extra, x.dtype)
    final = ops.cast(last, x.dtype) * (1.0 / _ONE)
    return counts, ops.minimum(final, 1.0 - 2.0**-24)


def _quantise(x):
    """``x = k + r`` exactly, with ``k = round(x)`` and ``|r| <= 1/2``
    (Sterbenz); returns ``k``, ``r`` in fixed point (``signed``, int32) and
    ``q = signed mod 2**27``."""
    nearest = ops.round(x)
    signed = ops.cast(ops.round((x - nearest) * float(_ONE)), "int32")
    # (+ 2**27 so that the argument is >= 0: tf2onnx turns TensorFlow's
    # FloorMod of a negative int into a truncated remainder)
    return nearest, signed, _backend.residue(signed + _ONE, FRACTION_BITS)


def _extra_spikes(signed, q, voltage):
    """Spikes per step beyond ``k = round(x)``, int32: ``x`` alone emits
    ``k`` spikes, one fewer where ``r < 0``; the running sum emits one more
    where it wraps around (``v_t < q_t``)."""
    return ops.cast(voltage < q, "int32") - ops.cast(signed < 0, "int32")


def integrate_spikes_naive(x, v0):
    """Step-by-step form of ``integrate_spikes`` (one loop iteration a step)."""
    x, v0 = ops.convert_to_tensor(x), ops.convert_to_tensor(v0)

    def step(v, x_t):
        v = v + x_t
        n = ops.floor(v)
        return v - n, n

    v, counts = ops.scan(step, v0, ops.transpose(x, (1, 0, 2)))
    return ops.transpose(counts, (1, 0, 2)), v


# ---------------------------------------------------------------- filters ---


def _dense_scan(u, log_a, y0, reverse):
    """``_scan`` with one ``(t, t)`` decay matrix per unit (any length)."""
    steps = ops.shape(u)[1]
    # ``arange``, not a running sum of ``ops.ones((steps,))``, whose shape
    # torch's ONNX tracer would freeze (a symbolic ``steps`` never gets here)
    index = ops.cast(ops.arange(0, steps), "float32")
    lag = ops.expand_dims(index, 1) - ops.expand_dims(index, 0)  # c - s
    if reverse:
        lag = -lag
    mask = ops.cast(lag >= 0, "float32")
    lag = ops.maximum(lag, 0.0)
    decay = ops.exp(lag[None] * log_a[:, None, None]) * mask[None]  # (n, c, s)
    y = ops.einsum("ncs,bsn->bcn", decay, u)
    # the initial value enters with a**(t+1) (forward) or a**(T-t) (reverse)
    power = (ops.cast(steps, "float32") - index) if reverse else (index + 1.0)
    return y + ops.exp(ops.expand_dims(power, 1) * log_a)[None] * ops.expand_dims(y0, 1)


def _scan(u, log_a, y0, chunk, levels, reverse=False, scale=None):
    """Solve a first-order linear recurrence along axis 1.

    Forward: ``y_t = a y_{t-1} + u_t`` with ``y_{-1} = y0``.  Reverse:
    ``y_t = a y_{t+1} + u_t`` with ``y_T = y0``.  ``a = exp(log_a)`` per unit.
    With ``scale`` (per unit), ``u`` is multiplied by it first (inside the
    loop when that is compiled: one pass over the data fewer).

    Per level: each chunk's own contribution to its last (first, reverse)
    value, a reduction; the recurrence of those one level up (factor
    ``a**chunk``) gives the value entering each chunk; then one running sum
    per chunk of ``a**-c u_c``, started from that value, times ``a**c``.
    """
    compiled_loop = levels == STEPWISE and not _unrolled(u)
    if scale is not None and not compiled_loop:  # one op, not one per step
        u, scale = u * scale, None
    if levels == STEPWISE:
        a = ops.exp(log_a)

        def step(y, u_t):
            y = a * y + (u_t if scale is None else scale * u_t)
            return y, y

        return _loop(step, y0, u, reverse)[1]
    if levels == 0:
        return _dense_scan(u, log_a, y0, reverse)
    steps, static_steps = ops.shape(u)[1], _static(u.shape[1])
    chunks = _to_chunks(u, chunk, front=reverse)
    # each chunk's contribution to its far edge, sum_c a**(distance) u_c, by
    # Horner's rule (one fused pass on XLA; a weighted reduction over a
    # middle axis is several times slower there)
    a = ops.exp(log_a)
    edges = None
    for c in range(chunk - 1, -1, -1) if reverse else range(chunk):
        edges = chunks[:, :, c] if edges is None else edges * a + chunks[:, :, c]
    edges = _scan(edges, log_a * chunk, y0, chunk, levels - 1, reverse)
    y0 = ops.expand_dims(y0, 1)
    if reverse:
        entering = ops.concatenate([edges[:, 1:], y0], axis=1)
    else:
        entering = ops.concatenate([y0, edges[:, :-1]], axis=1)
    # exponents centred on the chunk: a**(c - m) and a**(m - c), m = (L-1)/2;
    # the value entering the chunk contributes a**(c + 1) = a**(c - m) a**(m + 1)
    centre = ops.cast(ops.arange(0, chunk), "float32") - (chunk - 1) / 2.0
    clamped = ops.maximum(log_a, _MIN_LOG_A)
    grow = ops.exp(ops.expand_dims(centre, 1) * clamped)  # (L, n)
    shrink = ops.exp(ops.expand_dims(-centre, 1) * clamped)
    entering = entering * ops.exp(((chunk + 1) / 2.0) * clamped)
    if reverse:  # y_c = a**-(c - m) sum_{s >= c} a**(s - m) u_s
        y = _backend.chunk_cumsum(
            chunks * grow, initial=entering, reverse=True, overwrite=True
        )
        y = y * shrink
    else:  # y_c = a**(c - m) sum_{s <= c} a**(m - s) u_s
        y = _backend.chunk_cumsum(chunks * shrink, initial=entering, overwrite=True)
        y = y * grow
    return _from_chunks(y, steps, static_steps, front=reverse)


def _sum_batch_and_time(v):
    """``sum(v, axis=(0, 1))`` as one matrix-vector product: XLA on CPU
    reduces leading axes of a large array several times slower."""
    shape = ops.shape(v)
    rows = ops.reshape(v, (shape[0] * shape[1], shape[2]))
    return ops.matmul(ops.ones((1, shape[0] * shape[1]), dtype=v.dtype), rows)[0]


@functools.cache
def _lowpass_function(chunk, levels):
    """``lowpass`` for fixed chunking, with its gradient written by hand."""

    def forward(x, log_a, y0):
        y = _scan(x, log_a, y0, chunk, levels, scale=_one_minus_exp(log_a))
        return y, (x, log_a, y0, y)

    def backward(residuals, upstream):
        x, log_a, y0, y = residuals
        # adjoint: lam_t = g_t + a lam_{t+1}
        lam = _scan(upstream, log_a, ops.zeros_like(y0), chunk, levels, True)
        a = ops.exp(log_a)
        grad_x = _one_minus_exp(log_a) * lam
        grad_y0 = a * lam[:, 0]
        # d y_t / d log_a (holding y_{t-1}) = a (y_{t-1} - x_t)
        previous = ops.concatenate([ops.expand_dims(y0, 1), y[:, :-1]], axis=1)
        total = _sum_batch_and_time(lam * (previous - x))
        return grad_x, a * total, grad_y0

    return _backend.custom_vjp(forward, backward)


def lowpass(x, log_a, y0, chunk=CHUNK, levels=None):
    """First-order lowpass filter, parallel in time.

    Computes ``y_t = a * y_{t-1} + (1 - a) * x_t`` with ``a = exp(log_a)``
    (``log_a = -dt / tau``), the zero-order-hold discretisation of
    ``h(t) = exp(-t / tau) / tau`` without its one-step delay.  Gradients
    (for ``x``, ``log_a`` and ``y0``) come from the adjoint recurrence.

    Parameters
    ----------
    x : tensor, ``(batch, time, units)``
        Input signal.
    log_a : tensor, ``(units,)``
        ``-dt / tau`` per unit (non-positive).
    y0 : tensor, ``(batch, units)``
        Filter output before the first step.
    chunk : int
        Steps per chunk, 2 to 8.
    levels : int, optional
        As for ``integrate_spikes``.

    Returns
    -------
    y : tensor, ``(batch, time, units)``
        Filtered signal; ``y[:, -1]`` is the filter's state.
    """
    _check_chunk(chunk, 8)
    x, log_a, y0 = (ops.convert_to_tensor(v) for v in (x, log_a, y0))
    if levels is None:
        levels = _default_levels(x.shape[1], chunk, _FILTER_TOP, _width(x))
    return _lowpass_function(chunk, levels)(x, log_a, y0)


def lowpass_naive(x, log_a, y0):
    """Step-by-step form of ``lowpass`` (one loop iteration a step)."""
    x, log_a, y0 = (ops.convert_to_tensor(v) for v in (x, log_a, y0))
    a = ops.exp(log_a)

    def step(y, x_t):
        y = a * y + (1 - a) * x_t
        return y, y

    _, ys = ops.scan(step, y0, ops.transpose(x, (1, 0, 2)))
    return ops.transpose(ys, (1, 0, 2))


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
    chunk, levels : int
        As for ``lowpass``.

    Returns
    -------
    y : tensor, ``(batch, time, units)``
        Filtered signal.
    states : tuple of two tensors, ``(batch, units)``
        ``(p, q)`` after the last step.
    """
    log_a = ops.convert_to_tensor(log_a)
    p = lowpass(x, log_a, y0[0], chunk=chunk, levels=levels)
    q = lowpass(p, log_a, y0[1], chunk=chunk, levels=levels)
    c1 = _alpha_c1(log_a)
    return c1 * p + (1 - c1) * q, (p[:, -1], q[:, -1])


def alpha_naive(x, log_a, y0):
    """Step-by-step form of ``alpha`` (one loop iteration a step)."""
    log_a = ops.convert_to_tensor(log_a)
    p = lowpass_naive(x, log_a, y0[0])
    q = lowpass_naive(p, log_a, y0[1])
    c1 = _alpha_c1(log_a)
    return c1 * p + (1 - c1) * q, (p[:, -1], q[:, -1])


# ------------------------------------------------------- initial voltages ---

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


def _seeded_uniform(batch_size, units, seed, xp):
    """``seeded_uniform`` computed with ``xp`` (``keras.ops`` or NumPy)."""
    # batch indices by a running sum, not ``arange``: with a symbolic batch
    # size, jax2onnx gives ``arange`` a batch axis of its own.  The ones are
    # broadcast (not ``ops.ones((batch_size, 1))``, whose shape torch's ONNX
    # tracer would freeze at the example's batch size).
    ones = xp.broadcast_to(xp.ones((1, 1), dtype="int32"), (batch_size, 1))
    b = xp.cumsum(ones, axis=0) - 1
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
    """
    if isinstance(batch_size, int) and isinstance(units, int):
        return ops.convert_to_tensor(
            _seeded_uniform_numpy(batch_size, units, int(seed)), "float32"
        )
    return _seeded_uniform(batch_size, units, seed, ops)
