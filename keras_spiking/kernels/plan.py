"""Kernel forms: ``Plan``, ``choose_plan`` and the helpers every kernel shares.

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
"""

import contextlib
import dataclasses
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
#: Longest ``"direct"`` spike sum (measured: a loop or chunks cost more below).
SPIKE_DIRECT_MAX = 15
#: Longest top level of chunked filters (a dense decay matrix).
_FILTER_TOP = 16
#: Filters over static lengths up to this take a loop (unrolled or compiled).
FILTER_LOOP_MAX = 16

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
