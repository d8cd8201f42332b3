"""Spikes of fractional-voltage neurons: ``integrate_spikes``, ``spike_train``.

Spikes: exact, in fixed point
-----------------------------
Each neuron accumulates ``v += x_t`` (``x_t = rate_t * dt``) and emits
``n_t = floor(v)`` spikes, keeping ``v - n_t`` in ``[0, 1)``.  Write each
increment as ``x_t = k_t + r_t`` with ``k_t = round(x_t)`` and
``|r_t| <= 1/2`` (exact in float32: Sterbenz), and let ``q_t = r_t mod 1``
(``r_t``, plus one where ``r_t < 0``).  Then the voltage is a running sum
modulo 1, ``v_t = (v_{t-1} + q_t) mod 1``, and the spikes are

    n_t = k_t + [v_t < q_t] - [r_t < 0]

because ``v_{t-1} + q_t`` is in ``[0, 2)``: it reaches 1 (one more spike)
exactly where the sum wraps around, that is where the new voltage is below
the increment.  Worked example, ``v_0 = 0.5``, ``x = (0.3, 0.9, -0.2, 2.4)``:
``k = (0, 1, 0, 2)``, ``r = (0.3, -0.1, -0.2, 0.4)``, ``q = (0.3, 0.9, 0.8,
0.4)``, ``v = (0.8, 0.7, 0.5, 0.9)``, wraps ``[v < q] = (0, 1, 1, 0)``,
``[r < 0] = (0, 1, 1, 0)``, so ``n = (0, 1, 0, 2)``: the step-by-step
``floor`` gives the same (0.8 -> 0; 1.7 -> 1; 0.5 -> 0; 2.9 -> 2).

``q`` and ``v`` are held in fixed point, as int32 multiples of ``2**-24``
(``FRACTION_BITS``), so the running sums are integer sums: exact, in any
order, on every backend.  The only rounding is of each ``r_t`` to the grid
(at most ``2**-25`` per step; none for increments that are multiples of
``2**-24``, such as the integer rates the tests use).  This is what lets the
sums run in chunks or in parallel without drifting: whichever form runs, the
spikes are the same.  24 bits, because a voltage ``k * 2**-24`` in ``[0, 1)``
is exactly a float32: the voltage a call returns (a stateful layer's state)
starts the next call exactly where it ended, so a stream fed in pieces gives
the spikes of the whole sequence, bit for bit.
"""

import functools

from keras import ops

from keras_spiking import backend as _backend
from keras_spiking.kernels.plan import (
    FRACTION_BITS,
    SPIKE_DIRECT_MAX,
    _check_plan,
    _from_chunks,
    _levels_for,
    _loop,
    _static,
    _to_chunks,
)

_ONE = 1 << FRACTION_BITS


def _running_sum_mod(q, start, chunk, levels):
    """``(start + inclusive running sum of q along axis 1) mod 2**24``.

    ``q`` is int32 in ``[0, 2**24)``, ``(b, t, n)``; ``start`` int32 in
    ``[0, 2**24)``, ``(b, n)``.  Per level: chunk totals (a reduction), the
    running sum of those one level up gives each chunk's starting value, and
    one running sum per chunk started from it.  Sums stay below ``9 * 2**24``.
    """
    if levels == 0:
        total = ops.cumsum(q, axis=1) + ops.expand_dims(start, 1)
        return _backend.residue(total, FRACTION_BITS)
    steps, static_steps = ops.shape(q)[1], _static(q.shape[1])
    chunks = _to_chunks(q, chunk)
    ends = _backend.residue(ops.sum(chunks, axis=2), FRACTION_BITS)
    ends = _running_sum_mod(ends, start, chunk, levels - 1)
    before = ops.concatenate([ops.expand_dims(start, 1), ends[:, :-1]], axis=1)
    total = _backend.chunk_cumsum(chunks, initial=before)
    return _from_chunks(_backend.residue(total, FRACTION_BITS), steps, static_steps)


@functools.cache
def _spike_kernel(plan):
    """``integrate_spikes`` for one plan.

    Compiled where the backend compiles kernels (``backend.compiled``: XLA
    on TensorFlow).
    """

    def integrate(x, v0):
        start = ops.cast(ops.round((v0 - ops.floor(v0)) * float(_ONE)), "int32")
        if plan.form in ("loop", "unrolled"):
            # everything per step inside the loop, so that the data is read
            # and written about once; the loop's outputs have the carry's
            # dtype (``keras.ops.scan`` on TensorFlow requires it), so it
            # returns the extra spikes
            def step(v, x_t):
                _, signed, q = _quantise(x_t)
                v = _backend.residue(v + q, FRACTION_BITS)
                return v, _extra_spikes(signed, q, v)

            last, extra = _loop(step, start, x, plan.form == "unrolled")
            nearest = ops.round(x)
        else:
            levels = plan.levels if plan.form == "chunked" else 0
            nearest, signed, q = _quantise(x)
            voltage = _running_sum_mod(q, start, plan.chunk, levels)
            extra = _extra_spikes(signed, q, voltage)
            last = voltage[:, -1]
        counts = nearest + ops.cast(extra, x.dtype)
        final = ops.cast(last, x.dtype) * (1.0 / _ONE)
        return counts, ops.minimum(final, 1.0 - 2.0**-24)

    return _backend.compiled(integrate)


def integrate_spikes(x, v0, plan=None):
    """Integrate-and-fire with fractional voltage, exactly.

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
    plan : Plan, optional
        The form to run; by default ``choose_plan("spikes", x)``.

    Returns
    -------
    counts : tensor, ``(batch, time, units)``
        ``n_t``, the (integer-valued) spikes per step, float32.
    voltage : tensor, ``(batch, units)``
        ``v_T``, the voltage after the last step, in ``[0, 1)``.
    """
    x, v0 = ops.convert_to_tensor(x), ops.convert_to_tensor(v0)
    plan = _check_plan(plan, "spikes", x)
    if plan.form == "naive":
        return integrate_spikes_naive(x, v0)
    return _spike_kernel(plan)(x, v0)


def spike_train(rates, dt, v0, plan=None):
    """Spikes of height ``1 / dt`` for firing rates ``rates`` (Hz).

    ``integrate_spikes(rates * dt, v0)``, with the counts divided by ``dt``:
    what ``SpikingActivation`` outputs.  On backends with an eager fused
    kernel (``backend.fused_spikes``: PyTorch) that runs instead, with the
    same arithmetic.

    Parameters
    ----------
    rates : tensor, ``(batch, time, units)``
        Firing rates, any sign.
    dt : float or scalar tensor
        Time step in seconds.
    v0 : tensor, ``(batch, units)``
        Initial voltage, in ``[0, 1)``.
    plan : Plan, optional
        As for ``integrate_spikes``.

    Returns
    -------
    spikes : tensor, ``(batch, time, units)``
        ``n_t / dt``.
    voltage : tensor, ``(batch, units)``
        The voltage after the last step.
    """
    rates, v0 = ops.convert_to_tensor(rates), ops.convert_to_tensor(v0)
    plan = _check_plan(plan, "spikes", rates)
    if plan.form in ("direct", "chunked"):
        fused = _backend.fused_spikes(
            rates,
            dt,
            v0,
            plan.chunk,
            plan.levels if plan.form == "chunked" else 0,
            FRACTION_BITS,
            functools.partial(_levels_for, chunk=plan.chunk, top=SPIKE_DIRECT_MAX),
        )
        if fused is not None:  # None: no native form here (see backend)
            return fused
    counts, voltage = integrate_spikes(rates * dt, v0, plan=plan)
    return counts / dt, voltage


def _quantise(x):
    """``x = k + r`` exactly, with ``k = round(x)`` and ``|r| <= 1/2``.

    Exact by Sterbenz' lemma; returns ``k``, ``r`` in fixed point
    (``signed``, int32) and ``q = signed mod 2**24``.
    """
    nearest = ops.round(x)
    # a non-finite increment (nan; inf - inf = nan) adds nothing to the
    # voltage: its step counts ``round(x)`` (nan or inf), later steps are as
    # if it were 0 (``docs/numerics.md``); not left to the cast of a nan to
    # int32, which differs between compilers
    rest = x - nearest
    rest = ops.where(ops.abs(rest) <= 0.5, rest, 0.0)
    signed = ops.cast(ops.round(rest * float(_ONE)), "int32")
    # (+ 2**24 so that the argument is >= 0: tf2onnx turns TensorFlow's
    # FloorMod of a negative int into a truncated remainder)
    return nearest, signed, _backend.residue(signed + _ONE, FRACTION_BITS)


def _extra_spikes(signed, q, voltage):
    """Spikes per step beyond ``k = round(x)``, int32.

    ``x`` alone emits ``k`` spikes, one fewer where ``r < 0``; the running
    sum emits one more where it wraps around (``v_t < q_t``).
    """
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
