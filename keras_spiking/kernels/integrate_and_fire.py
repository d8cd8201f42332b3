"""Integrate-and-fire on the unrectified input: ``integrate_fire``.

The neurons of ``SpikingActivation(..., neuron="if")``, built on the spike
kernels (``keras_spiking.kernels.spikes``) for the fractional part of the
voltage and on compositions of integer level maps for the rest.

Integrate-and-fire (``integrate_fire``) composes level maps in float32
(every value an integer, exact as long as the levels stay within
``+-2**24``): its level saturates at ``LEVEL_FLOOR = -2**24``, the spikes
of one step are exact up to ``2**24`` and the nearest float32 beyond; no
sum can wrap.  A non-finite increment leaves the state as it is in every
kernel (``docs/numerics.md``).
"""

import functools

from keras import ops

from keras_spiking import backend as _backend
from keras_spiking.kernels.plan import (
    SPIKE_DIRECT_MAX,
    _check_plan,
    _from_chunks,
    _levels_for,
    _loop,
    _static,
    _to_chunks,
)
from keras_spiking.kernels.spikes import spike_train

#: Lowest integer part of the ``neuron="if"`` voltage (see ``integrate_fire``):
#: ``-2**24``, below which a float32 state no longer holds every integer.
LEVEL_FLOOR = -(1 << 24)
_FLOOR = float(LEVEL_FLOOR)
#: Level maps saturate ``a`` at ``+-2**25`` (see ``_then``).
_SPAN = 2.0**25
#: Largest float32: ``abs(x) <= _FLOAT32_MAX`` is false for nan and inf.
_FLOAT32_MAX = 3.4028234663852886e38
#: The level map that changes nothing, ``L -> clip(L, -2**24, 2**24)``.
_IDENTITY = (0.0, _FLOOR, -_FLOOR)
#: Most level maps applied one after the other at the top level (more, as
#: in a forced ``"direct"`` form over a long sequence: by doubling).
_IN_ORDER_MAX = 16


def _clip(x, low, high):
    """``min(max(x, low), high)`` (bounds tensors or numbers)."""
    return ops.minimum(ops.maximum(x, low), high)


def _then(first, second):
    """The level map ``second(first(L))`` (see ``integrate_fire``).

    A map ``(a, low, high)`` is ``L -> clip(L + a, low, high)``, with
    ``LEVEL_FLOOR <= low <= high <= 0`` (``high = 2**24`` for
    ``_IDENTITY``), and ``clip(clip(y, l1, h1) + a2, l2, h2) = clip(y + a2,
    clip(l1 + a2, l2, h2), clip(h1 + a2, l2, h2))``: maps compose into maps.

    Exact in float32: every value is an integer, and levels only ever enter
    a map from ``[-2**24, 2**24]`` (an initial level up to ``2**24``, then
    ``[LEVEL_FLOOR, 0]``), so ``a`` can saturate at ``+-2**25`` without
    changing the map there (``L + a`` is then already beyond ``[low,
    high]``); a sum beyond ``+-2**24`` may round, but not across ``+-2**24``
    (rounding is monotone and ``2**24`` a float32), where it is clipped to
    the same bound as the exact sum.
    """
    a1, low1, high1 = first
    a2, low2, high2 = second
    return (
        _clip(a1 + a2, -_SPAN, _SPAN),
        _clip(low1 + a2, low2, high2),
        _clip(high1 + a2, low2, high2),
    )


def _map_at(maps, index, axis):
    """The maps at ``index`` of ``axis`` (1 or 2).

    ``low``/``high`` may be numbers, the same for every map.
    """
    if axis == 1:
        return tuple(v if isinstance(v, float) else v[:, index] for v in maps)
    return tuple(v if isinstance(v, float) else v[:, :, index] for v in maps)


def _apply_in_order(maps, level, count, axis):
    """The level after each of ``count`` (static) maps along ``axis``.

    The maps are applied one after the other from ``level``; the levels are
    stacked on ``axis``.
    """
    out = []
    for index in range(count):
        a, low, high = _map_at(maps, index, axis)
        level = _clip(level + a, low, high)
        out.append(level)
    return ops.stack(out, axis=axis)


def _doubling_maps(maps, bound):
    """Inclusive compositions of the level maps along axis 1, by doubling.

    Rank 3, at most ``bound`` maps: ``ceil(log2(bound))`` passes compose
    each map with the one ``k = 1, 2, 4, ...`` before it.
    """
    a, low, high = _then(_IDENTITY, maps)  # numbers -> tensors
    shape = ops.shape(a)
    shift = 1
    while shift < bound:
        # the first ``shift`` maps compose with the identity, broadcast from
        # a (1, 1, 1) constant: torch's ONNX tracer would freeze a
        # ``zeros(shape)`` at the example's shape
        zero = ops.zeros((1, 1, 1), "float32")
        earlier = tuple(
            ops.concatenate(
                [ops.broadcast_to(zero + value, (shape[0], shift, shape[2])), v],
                axis=1,
            )[:, : shape[1]]
            for value, v in zip(_IDENTITY, (a, low, high), strict=True)
        )
        a, low, high = _then(earlier, (a, low, high))
        shift *= 2
    return a, low, high


def _levels_after(maps, level0, chunk, levels, bound):
    """The level after each of the maps ``(a, low, high)`` along axis 1.

    Rank 3, at most ``bound`` maps, started from ``level0``.  Chunked as
    the running sums: each chunk's maps composed into one, the same problem
    one level up on those gives the level entering each chunk, and each
    chunk's maps are applied in order from it.  The top level
    (``levels == 0``) applies its maps in order (a static number, up to
    ``_IN_ORDER_MAX``), or else composes them by doubling.
    """
    steps = maps[0].shape[1]
    if levels == 0:
        if _static(steps) is not None and steps <= _IN_ORDER_MAX:
            return _apply_in_order(maps, level0, steps, axis=1)
        a, low, high = _doubling_maps(maps, min(bound, _static(steps) or bound))
        return _clip(ops.expand_dims(level0, 1) + a, low, high)
    steps, static_steps = ops.shape(maps[0])[1], _static(steps)
    # padded after the last step with zeros: that changes only the levels
    # of the padding and the last chunk's composition, neither used
    chunks = tuple(v if isinstance(v, float) else _to_chunks(v, chunk) for v in maps)
    total = _map_at(chunks, 0, axis=2)
    for c in range(1, chunk):
        total = _then(total, _map_at(chunks, c, axis=2))
    ends = _levels_after(total, level0, chunk, levels - 1, -(-bound // chunk))
    entering = ops.concatenate([ops.expand_dims(level0, 1), ends[:, :-1]], axis=1)
    level = _apply_in_order(chunks, entering, chunk, axis=2)
    return _from_chunks(level, steps, static_steps)


@functools.cache
def _fire_kernel(plan):
    """The integer part of ``integrate_fire`` for one plan (see there)."""

    def fire(counts, level0):
        # the initial level may be above 0 (spikes due at the first step)
        level0 = _clip(level0, _FLOOR, -_FLOOR)
        if plan.form in ("loop", "unrolled"):
            # everything per step inside the loop: ``counts`` is read once
            def step(level, d_t):
                finite = ops.abs(d_t) <= _FLOAT32_MAX
                total = level + ops.where(finite, d_t, 0.0)
                # at a non-finite step, relu of it (nan, inf, 0 for -inf)
                fired = ops.where(d_t < 0, 0.0, d_t)
                fired = ops.where(finite, ops.maximum(total, 0.0), fired)
                return _clip(total, _FLOOR, 0.0), fired

            last, fired = _loop(step, level0, counts, plan.form == "unrolled")
            return fired, last
        # a non-finite step (nan, or an increment beyond float32) leaves the
        # level as it is; ``abs(counts) <= max`` is false for nan and inf
        finite = ops.abs(counts) <= _FLOAT32_MAX
        d = ops.where(finite, _clip(counts, -_SPAN, _SPAN), 0.0)
        static_steps = _static(counts.shape[1])
        after = _levels_after(
            (d, _FLOOR, 0.0),
            level0,
            plan.chunk,
            plan.levels if plan.form == "chunked" else 0,
            (1 << 31) if static_steps is None else static_steps,
        )
        before = ops.concatenate([ops.expand_dims(level0, 1), after[:, :-1]], axis=1)
        # n_t = max(L_{t-1} + D_t, 0) with the whole D_t (exact up to 2**24
        # spikes; beyond, the nearest float32)
        fired = ops.maximum(before + counts, 0.0)
        fired = ops.where(finite, fired, ops.where(counts < 0, 0.0, counts))
        return fired, after[:, -1]

    return _backend.compiled(fire)


def integrate_fire(x, v0, plan=None):
    """Integrate-and-fire on the unrectified input, subtractive reset, exact.

    Computes, for every step ``t``, ``v'_t = v_{t-1} + x_t``,
    ``n_t = max(floor(v'_t), 0)``, ``v_t = v'_t - n_t``: the voltage
    integrates negative increments too, and spikes (several per step if
    need be) only while it is at least 1.  The voltage is held as a fraction
    in ``[0, 1)`` plus an integer ``level`` in ``[LEVEL_FLOOR, 0]``
    (``v = fraction + level``).

    How, exactly and without a loop over time: with ``S_t = v_{-1} +
    sum_{s <= t} x_s``, ``integrate_spikes`` of the increments from the
    fraction gives the signed counts ``D_t = floor(S_t) - floor(S_{t-1})``
    (exact, fixed point) and the final fraction ``S_T mod 1``.  The level
    then follows ``L_t = clip(L_{t-1} + D_t, LEVEL_FLOOR, 0)`` and
    ``n_t = max(L_{t-1} + D_t, 0)``.  Each step is a map ``L -> clip(L + a,
    low, high)`` (here ``(D_t, LEVEL_FLOOR, 0)``), and such maps compose
    into maps of the same form (``_then``): so the level after every step
    comes from compositions in any grouping, integer and exact (int32, all
    values below ``2**26``: ``a`` saturates at ``+-2**24`` where that does
    not change the map), chunked as the other spike kernels.

    Limits (``docs/numerics.md``): the level saturates at ``LEVEL_FLOOR =
    -2**24``: a voltage that would fall lower keeps its fraction with level
    ``-2**24`` (both states are then still exact float32 values, so a
    stream fed in pieces gives the whole sequence's spikes bit for bit).
    ``n_t`` is computed in float32 from the exact level and ``D_t``: exact
    up to ``2**24`` spikes in a step, the nearest float32 beyond (never
    wrapped; up to the float32 range).  A non-finite increment (nan, inf,
    or ``input * dt`` beyond float32) leaves both states as they are; that
    step's count is relu of it (nan, inf, 0 for -inf).

    Parameters
    ----------
    x : tensor, ``(batch, time, units)``
        Voltage increments ``input * dt``; any sign.
    v0 : pair of tensors, ``(batch, units)``
        ``(fraction, level)`` before the first step: the fraction is taken
        modulo 1 (its integer part added to the level); the level is an
        integer (rounded).
    plan : Plan, optional
        The form to run; by default ``choose_plan("spikes", x)``.

    Returns
    -------
    counts : tensor, ``(batch, time, units)``
        ``n_t``, the spikes per step (whole, non-negative; nan or inf at a
        non-finite step), float32.
    state : pair of tensors, ``(batch, units)``
        ``(fraction, level)`` after the last step.
    """
    return if_spike_train(x, 1.0, v0, plan=plan)


def if_spike_train(rates, dt, v0, plan=None):
    """Spikes of height ``1 / dt`` of integrate-and-fire neurons.

    Driven by ``rates``: ``integrate_fire(rates * dt, v0)``, counts divided
    by ``dt``; what ``SpikingActivation(..., neuron="if")`` outputs.

    Parameters
    ----------
    rates : tensor, ``(batch, time, units)``
        Input, any sign.
    dt : float or scalar tensor
        Time step in seconds.
    v0 : pair of tensors, ``(batch, units)``
        ``(fraction, level)``, as for ``integrate_fire``.
    plan : Plan, optional
        As for ``integrate_spikes``.

    Returns
    -------
    spikes : tensor, ``(batch, time, units)``
        ``n_t / dt``.
    state : pair of tensors, ``(batch, units)``
        ``(fraction, level)`` after the last step.
    """
    rates = ops.convert_to_tensor(rates)
    fraction, level = (ops.convert_to_tensor(v, "float32") for v in v0)
    plan = _check_plan(plan, "spikes", rates)
    if plan.form == "naive":
        counts, state = integrate_fire_naive(rates * dt, (fraction, level))
        return counts / dt, state
    whole = ops.floor(fraction)
    level = ops.round(level) + whole
    # (in the loop forms this is a second loop, on the integer level: one
    # loop carrying both states, stacked, measured 3 times slower on JAX)
    # signed counts D_t from the fraction (dt = 1: counts, not heights)
    counts, fraction = spike_train(rates * dt, 1.0, fraction - whole, plan=plan)
    fused = None  # None: no native form here (see backend)
    if plan.form in ("direct", "chunked"):
        fused = _backend.fused_fire(
            counts,
            level,
            LEVEL_FLOOR,
            _SPAN,
            plan.chunk,
            plan.levels if plan.form == "chunked" else 0,
            functools.partial(_levels_for, chunk=plan.chunk, top=SPIKE_DIRECT_MAX),
        )
    fired, level = fused if fused is not None else _fire_kernel(plan)(counts, level)
    return fired / dt, (fraction, level)


def integrate_fire_naive(x, v0):
    """Step-by-step float32 form of ``integrate_fire``.

    The benchmarks' baseline: not exact, but with its floor and its handling
    of non-finite steps.
    """
    x = ops.convert_to_tensor(x)
    v0 = ops.convert_to_tensor(v0[0], "float32") + ops.convert_to_tensor(
        v0[1], "float32"
    )

    def step(v, x_t):
        finite = ops.abs(x_t) <= _FLOAT32_MAX
        v = v + ops.where(finite, x_t, 0.0)
        n = ops.maximum(ops.floor(v), 0.0)
        v = v - n
        v = ops.where(v < _FLOOR, v - ops.floor(v) + _FLOOR, v)
        return v, ops.where(finite, n, ops.where(x_t < 0, 0.0, x_t))

    v, counts = ops.scan(step, v0, ops.transpose(x, (1, 0, 2)))
    level = ops.minimum(ops.floor(v), 0.0)
    return ops.transpose(counts, (1, 0, 2)), (v - level, level)
