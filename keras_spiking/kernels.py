"""Time-stepping kernels: plain functions on tensors, apart from the layers.

Every function here takes tensors with the batch on axis 0, time on axis 1 and
all feature axes flattened into axis 2, that is ``(batch, time, units)``, and
computes in float32.  The layers (``SpikingActivation``, ``Lowpass``,
``Alpha``) only reshape, cast and call them.

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

Forms, and the one place that chooses them
------------------------------------------
The same maths runs in one of a few forms; ``choose_plan`` picks one from the
static number of steps and the backend's speed hints (``backend.unroll``,
``backend.loop_is_cheaper``, measured with ``benchmarks/bench_layers.py``),
and returns a ``Plan``:

* ``"direct"``: spikes, one running sum over the whole sequence (up to
  ``SPIKE_DIRECT_MAX`` steps); filters, a dense ``(T, T)`` decay matrix.
  On PyTorch, ``direct`` and ``chunked`` spikes run as the native
  ``backend.fused_spikes``, with the same arithmetic.
* ``"unrolled"``: a Python loop over a static number of steps, one set of
  operations per step (filters up to ``FILTER_LOOP_MAX`` steps on
  TensorFlow; filters at any length on PyTorch, where it runs as the native
  loop ``backend.fused_lowpass``).
* ``"loop"``: ``backend.scan``, everything per step inside it (symbolic
  lengths, as in JAX export; JAX on CPU for wide layers; filters up to
  ``FILTER_LOOP_MAX`` steps on JAX).
* ``"chunked"``: time cut into chunks of ``chunk`` steps; each chunk is
  solved with a short running sum (``backend.chunk_cumsum``), and the
  values carried from chunk to chunk are the same problem again, one level
  up, on ``1 / chunk`` of the data (``levels`` times; the top level is
  ``"direct"``).  A time axis only known at run time (TensorFlow graphs with
  ``None`` time) gets ``DYNAMIC_LEVELS`` levels.
* ``"naive"``: the plain float32 step-by-step formulas (``*_naive``), kept
  as the benchmarks' baseline; not exact for spikes.

``forced_form`` overrides the choice (benchmarks, tests).  Spikes are
identical in every form but ``"naive"``; filters agree to float32 rounding.

Limits, and why
---------------
``CHUNK = 8`` steps: a spike chunk sums up to ``chunk`` values below
``2**24`` plus a start below ``2**24``, so ``chunk <= 127`` keeps int32 sums
below ``2**31`` (``SPIKE_DIRECT_MAX = 15`` direct steps are far inside
that); a filter chunk rescales by up to ``exp(17 * (chunk - 1) / 2)``, so
``chunk <= 11`` keeps it within float32 range.  8 is the largest power of
two below both (and the fastest measured).

Integrate-and-fire (``integrate_fire``) composes level maps in float32
(every value an integer, exact as long as the levels stay within
``+-2**24``): its level saturates at ``LEVEL_FLOOR = -2**24``, the spikes
of one step are exact up to ``2**24`` and the nearest float32 beyond; no
sum can wrap.  A non-finite increment leaves the state as it is in every
kernel (``docs/numerics.md``).

Exporter constraints the kernels respect (each one is a workaround; keep
them): no ``expm1`` (``_one_minus_exp``: not in every ONNX exporter); zeros
made by broadcasting a ``(1, 1, 1)`` constant and indices by ``arange``, not
``ops.zeros(shape)`` or running sums of ones (torch's ONNX tracer freezes
such shapes at the example's); symbolic lengths take the loop (jax2onnx
cannot pad and reshape a symbolic axis into chunks); ``residue`` of a
non-negative argument on TensorFlow (tf2onnx turns ``FloorMod`` of a
negative int into a truncated remainder); no integer division in the
seeded voltages (``keras_spiking.seeded_uniform``); on TensorFlow,
``backend.compiled`` marks operations with ``jit_scope`` rather than calling
a nested XLA function (tf2onnx cannot convert the call); the PyTorch fused
kernels step aside while tracing.  ``docs/design.md`` lists them all.
"""

import contextlib
import dataclasses
import functools
import math

from keras import ops

from keras_spiking import backend as _backend

#: Steps per chunk in the chunked form (see "Limits" above).
CHUNK = 8
#: Levels of chunking used when the number of steps is unknown when tracing
#: (``CHUNK ** DYNAMIC_LEVELS`` steps per element of the top level).
DYNAMIC_LEVELS = 5
#: Fixed-point voltage: int32 multiples of ``2**-FRACTION_BITS``.
FRACTION_BITS = 24
_ONE = 1 << FRACTION_BITS
#: Longest ``"direct"`` spike sum (measured: a loop or chunks cost more below).
SPIKE_DIRECT_MAX = 15
#: Longest top level of chunked filters (a dense decay matrix).
_FILTER_TOP = 16
#: Filters over static lengths up to this take a loop (unrolled or compiled).
FILTER_LOOP_MAX = 16
#: ``exp(-17) < 2**-24``: smaller decay factors are zero at float32 resolution.
_MIN_LOG_A = -17.0

FORMS = ("direct", "unrolled", "loop", "chunked", "naive")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a kernel steps through time (see the module docstring).

    Parameters
    ----------
    form : str
        One of ``FORMS``.
    levels : int
        Chunking levels (``"chunked"`` only).
    chunk : int
        Steps per chunk (``"chunked"`` only), 2 to 8.
    """

    form: str
    levels: int = 0
    chunk: int = CHUNK

    def __post_init__(self):
        """Check the fields (ValueError naming the field)."""
        if self.form not in FORMS:
            raise ValueError(
                f"keras_spiking.kernels.Plan expects `form` to be one of "
                f"{FORMS}; got {self.form!r}."
            )
        if (
            isinstance(self.chunk, bool)
            or not isinstance(self.chunk, int)
            or not 2 <= self.chunk <= CHUNK
        ):
            raise ValueError(
                f"keras_spiking.kernels.Plan expects `chunk` to be an int in "
                f"[2, {CHUNK}]; got {self.chunk!r}."
            )
        if self.form == "chunked" and not (
            isinstance(self.levels, int) and self.levels >= 1
        ):
            raise ValueError(
                f"keras_spiking.kernels.Plan expects `levels` >= 1 for the "
                f"chunked form; got {self.levels!r}."
            )


_FORCED = []


@contextlib.contextmanager
def forced_form(form):
    """Make every kernel traced or called in this block use ``form``.

    For benchmarks and tests: ``with kernels.forced_form("chunked"): ...``.
    The choice is made when a kernel is traced (TensorFlow, JAX) or called
    (PyTorch eager), so build and first call the model inside the block.
    ``"unrolled"`` and ``"direct"`` need a static number of steps.
    """
    if form not in FORMS:
        raise ValueError(
            f"keras_spiking.kernels.forced_form expects one of {FORMS}; got {form!r}."
        )
    _FORCED.append(form)
    try:
        yield
    finally:
        _FORCED.pop()


def _static(size):
    """``size`` if it is a plain int, else None (unknown or symbolic)."""
    return size if isinstance(size, int) else None


def _levels_for(steps, chunk, top):
    """Number of chunking levels so that the top level has at most ``top``."""
    if steps is None:
        return DYNAMIC_LEVELS
    levels = 0
    while steps > top:
        steps = math.ceil(steps / chunk)
        levels += 1
    return levels


def choose_plan(kind, x):
    """The ``Plan`` for a kernel of ``kind`` over ``x``.

    ``kind`` is ``"spikes"`` or ``"filter"``, ``x`` is ``(batch, time,
    units)``; this is the one place that decides:

    * symbolic lengths (JAX shape polymorphism, as in ``model.export`` with
      a dynamic time axis): ``"loop"`` (jax2onnx cannot pad and reshape a
      symbolic axis into chunks);
    * spikes up to ``SPIKE_DIRECT_MAX`` steps: ``"direct"`` (one int32
      running sum costs less than a loop: measured at T = 10 everywhere);
    * filters up to ``FILTER_LOOP_MAX`` steps: a loop, ``"unrolled"`` where
      ``backend.unroll`` says so;
    * where ``backend.loop_is_cheaper`` (JAX on CPU, wide layers; filters
      on PyTorch, whose loop is a fused native one): ``"loop"`` (or
      ``"unrolled"`` where ``backend.unroll``);
    * otherwise ``"chunked"``, with levels for the length (``None``:
      ``DYNAMIC_LEVELS``).
    """
    steps = x.shape[1]
    top = SPIKE_DIRECT_MAX if kind == "spikes" else _FILTER_TOP
    if _FORCED:
        form = _FORCED[-1]
        if form == "chunked":
            return Plan("chunked", max(1, _levels_for(_static(steps), CHUNK, top)))
        return Plan(form)
    # a tensor: torch's ONNX tracer records sizes as tensors (chunked kernels)
    if not (steps is None or isinstance(steps, int) or ops.is_tensor(steps)):
        return Plan("loop")
    if isinstance(steps, int):
        if kind == "spikes" and steps <= SPIKE_DIRECT_MAX:
            return Plan("direct")
        if kind == "filter" and steps <= FILTER_LOOP_MAX:
            return Plan("unrolled" if _backend.unroll(steps) else "loop")
        batch, units = _static(x.shape[0]), _static(x.shape[2])
        width = None if batch is None or units is None else batch * units
        if _backend.loop_is_cheaper(kind, steps, width):
            return Plan("unrolled" if _backend.unroll(steps) else "loop")
    levels = _levels_for(_static(steps), CHUNK, top)
    return Plan("chunked", levels) if levels else Plan("direct")


def _check_plan(plan, kind, x):
    if plan is None:
        plan = choose_plan(kind, x)
    elif not isinstance(plan, Plan):
        raise TypeError(
            f"keras_spiking.kernels expects `plan` to be a kernels.Plan or "
            f"None; got {plan!r}."
        )
    if plan.form == "unrolled" and _static(x.shape[1]) is None:
        raise ValueError(
            "keras_spiking.kernels: the 'unrolled' form needs a static number "
            f"of steps; got an input of shape {tuple(x.shape)}."
        )
    return plan


def _loop(step, init, xs, unrolled, reverse=False):
    """``backend.scan`` of ``step`` over axis 1 of ``xs``.

    Returns the last carry, and the outputs stacked on axis 1; a Python loop
    if ``unrolled``.
    """
    if unrolled:
        steps = xs.shape[1]
        carry, outputs = init, [None] * steps
        for t in range(steps - 1, -1, -1) if reverse else range(steps):
            carry, outputs[t] = step(carry, xs[:, t])
        return carry, ops.stack(outputs, axis=1)
    carry, ys = _backend.scan(step, init, ops.transpose(xs, (1, 0, 2)), reverse=reverse)
    return carry, ops.transpose(ys, (1, 0, 2))


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
    if _backend.fused_spikes is not None and plan.form in ("direct", "chunked"):
        levels = plan.levels if plan.form == "chunked" else 0
        fused = _backend.fused_spikes(
            rates,
            dt,
            v0,
            plan.chunk,
            levels,
            FRACTION_BITS,
            functools.partial(_levels_for, chunk=plan.chunk, top=SPIKE_DIRECT_MAX),
        )
        if fused is not None:
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


# ------------------------------------------------------ integrate-and-fire ---

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
    fused = None
    if _backend.fused_fire is not None and plan.form in ("direct", "chunked"):
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
    if _backend.fused_lowpass is not None and plan.form in ("loop", "unrolled"):
        fused = _backend.fused_lowpass(x, log_a, y0)
        if fused is not None:
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
