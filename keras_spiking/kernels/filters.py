"""Filters with a time constant per unit: ``lowpass`` and ``alpha``.

Filters: linear recurrences
---------------------------
``lowpass`` (and ``alpha``, two lowpass stages) is ``y_t = a y_{t-1} + u_t``
with ``a = exp(log_a)`` per unit.  In a chunk of ``L`` steps,
``y_c = a**c * sum_{s <= c} a**-s u_s``: a running sum of rescaled inputs,
with exponents centred on the chunk (``a**(m - s)``, ``m = (L - 1) / 2``) and
``log(a)`` clamped at ``-17`` (``exp(-17) < 2**-24``: a smaller decay is zero
at float32 resolution), so nothing overflows.  The gradient is written by
hand (``backend.custom_vjp``): the adjoint of the recurrence is the same
recurrence backwards in time, so the backward pass keeps only the filter's
input and output.
"""

import functools

from keras import ops

from keras_spiking import backend as _backend
from keras_spiking.kernels.plan import (
    Plan,
    _check_plan,
    _from_chunks,
    _loop,
    _static,
    _to_chunks,
)

#: ``exp(-17) < 2**-24``: smaller decay factors are zero at float32 resolution.
_MIN_LOG_A = -17.0


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
    # a non-finite input must not reach earlier steps through the matrix's
    # zeros (0 * nan = nan, 0 * inf = nan): the finite part goes through the
    # matrix, the non-finite values (zero elsewhere) are carried forward
    # (backward, reverse) by a running sum, which adds without multiplying,
    # so they stay in their own unit, from their own step on
    # (``docs/numerics.md``); ``abs(u) <= max`` is false for nan and inf
    finite = ops.abs(u) <= 3.4028234663852886e38
    y = ops.einsum("ncs,bsn->bcn", decay, ops.where(finite, u, 0.0))
    carried = _backend.chunk_cumsum(
        ops.expand_dims(ops.where(finite, 0.0, u), 1), reverse=reverse
    )
    y = y + carried[:, 0]
    # the initial value enters with a**(t+1) (forward) or a**(T-t) (reverse)
    power = (ops.cast(steps, "float32") - index) if reverse else (index + 1.0)
    return y + ops.exp(ops.expand_dims(power, 1) * log_a)[None] * ops.expand_dims(y0, 1)


def _scan(u, log_a, y0, plan, reverse=False, scale=None):
    """Solve a first-order linear recurrence along axis 1.

    Forward: ``y_t = a y_{t-1} + u_t`` with ``y_{-1} = y0``.  Reverse:
    ``y_t = a y_{t+1} + u_t`` with ``y_T = y0``.  ``a = exp(log_a)`` per unit.
    With ``scale`` (per unit), ``u`` is multiplied by it first (inside the
    loop when that is compiled: one pass over the data fewer).

    Chunked, per level: each chunk's own contribution to its last (first,
    reverse) value, a reduction; the recurrence of those one level up
    (factor ``a**chunk``) gives the value entering each chunk; then one
    running sum per chunk of ``a**-c u_c``, started from that value, times
    ``a**c``.
    """
    if scale is not None and plan.form != "loop":  # one op, not one per step
        u, scale = u * scale, None
    if plan.form in ("loop", "unrolled"):
        a = ops.exp(log_a)

        def step(y, u_t):
            y = a * y + (u_t if scale is None else scale * u_t)
            return y, y

        return _loop(step, y0, u, plan.form == "unrolled", reverse)[1]
    if plan.form == "direct":
        return _dense_scan(u, log_a, y0, reverse)
    chunk = plan.chunk
    steps, static_steps = ops.shape(u)[1], _static(u.shape[1])
    chunks = _to_chunks(u, chunk, front=reverse)
    # each chunk's contribution to its far edge, sum_c a**(distance) u_c, by
    # Horner's rule (one fused pass on XLA; a weighted reduction over a
    # middle axis is several times slower there)
    a = ops.exp(log_a)
    edges = None
    for c in range(chunk - 1, -1, -1) if reverse else range(chunk):
        edges = chunks[:, :, c] if edges is None else edges * a + chunks[:, :, c]
    top = Plan("chunked", plan.levels - 1, chunk) if plan.levels > 1 else Plan("direct")
    edges = _scan(edges, log_a * chunk, y0, top, reverse)
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
    """``sum(v, axis=(0, 1))`` as one matrix-vector product.

    XLA on CPU reduces leading axes of a large array several times slower.
    """
    shape = ops.shape(v)
    rows = ops.reshape(v, (shape[0] * shape[1], shape[2]))
    return ops.matmul(ops.ones((1, shape[0] * shape[1]), dtype=v.dtype), rows)[0]


@functools.cache
def _lowpass_kernel(plan):
    """``lowpass`` for one plan, with its gradient written by hand."""

    def forward(x, log_a, y0):
        y = _scan(x, log_a, y0, plan, scale=_one_minus_exp(log_a))
        return y, (x, log_a, y0, y)

    def backward(residuals, upstream):
        x, log_a, y0, y = residuals
        # adjoint: lam_t = g_t + a lam_{t+1}
        lam = _scan(upstream, log_a, ops.zeros_like(y0), plan, reverse=True)
        a = ops.exp(log_a)
        grad_x = _one_minus_exp(log_a) * lam
        grad_y0 = a * lam[:, 0]
        # d y_t / d log_a (holding y_{t-1}) = a (y_{t-1} - x_t)
        previous = ops.concatenate([ops.expand_dims(y0, 1), y[:, :-1]], axis=1)
        total = _sum_batch_and_time(lam * (previous - x))
        return grad_x, a * total, grad_y0

    return _backend.custom_vjp(forward, backward)


def lowpass(x, log_a, y0, plan=None):
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
    plan : Plan, optional
        The form to run; by default ``choose_plan("filter", x)``.

    Returns
    -------
    y : tensor, ``(batch, time, units)``
        Filtered signal; ``y[:, -1]`` is the filter's state.
    """
    x, log_a, y0 = (ops.convert_to_tensor(v) for v in (x, log_a, y0))
    plan = _check_plan(plan, "filter", x)
    if plan.form == "naive":
        return lowpass_naive(x, log_a, y0)
    if plan.form in ("loop", "unrolled"):
        fused = _backend.fused_lowpass(x, log_a, y0)
        if fused is not None:  # None: no native form here (see backend)
            return fused
    return _lowpass_kernel(plan)(x, log_a, y0)


def lowpass_naive(x, log_a, y0):
    """Step-by-step form of ``lowpass`` (one loop iteration a step)."""
    x, log_a, y0 = (ops.convert_to_tensor(v) for v in (x, log_a, y0))
    a = ops.exp(log_a)

    def step(y, x_t):
        y = a * y + (1 - a) * x_t
        return y, y

    _, ys = ops.scan(step, y0, ops.transpose(x, (1, 0, 2)))
    return ops.transpose(ys, (1, 0, 2))


def alpha(x, log_a, y0, plan=None):
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
    plan : Plan, optional
        As for ``lowpass``.

    Returns
    -------
    y : tensor, ``(batch, time, units)``
        Filtered signal.
    states : tuple of two tensors, ``(batch, units)``
        ``(p, q)`` after the last step.
    """
    log_a = ops.convert_to_tensor(log_a)
    p = lowpass(x, log_a, y0[0], plan=plan)
    q = lowpass(p, log_a, y0[1], plan=plan)
    c1 = _alpha_c1(log_a)
    return c1 * p + (1 - c1) * q, (p[:, -1], q[:, -1])


def alpha_naive(x, log_a, y0):
    """Step-by-step form of ``alpha`` (one loop iteration a step)."""
    log_a = ops.convert_to_tensor(log_a)
    p = lowpass_naive(x, log_a, y0[0])
    q = lowpass_naive(p, log_a, y0[1])
    c1 = _alpha_c1(log_a)
    return c1 * p + (1 - c1) * q, (p[:, -1], q[:, -1])
