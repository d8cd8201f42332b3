"""Property tests (Hypothesis): laws that hold for any input, checked on
inputs Hypothesis draws.

* spike conservation: a neuron's total spikes equal
  ``floor(v0 + sum_t rate_t * dt)``, and its final voltage the fraction of
  that sum, for any rates (any sign, several spikes per step), ``dt`` and
  shape;
* streaming: any cut of a sequence into pieces, each piece started from the
  state the previous one ended in, gives the whole sequence's spikes (bit
  for bit) and filter outputs (to float32 rounding);
* ``Lowpass`` / ``Alpha``: linear in the input (from a zero state), unit DC
  gain (at rest at a level, a constant input at that level stays there),
  impulse responses equal to their closed forms;
* a model saved to ``.keras`` and loaded computes the same outputs;
* ``time_major=True`` on the transposed input is the transposed output.

Every expectation is a formula evaluated in float64 NumPy (or exact
rational arithmetic), never the implementation's own output.  Settings:
few examples, no deadline, derandomised (the same examples on every run, so
CI is reproducible), no example database.  Shapes are drawn from a few
values so that JAX compiles each kernel a few times, not once per example.
"""

import fractions
import math
import os
import tempfile

import keras
import numpy as np

import keras_spiking
from keras_spiking import kernels
from tests import references
from tests.harness import numpy, optional_import, run_jit

optional_import("hypothesis", "Property testing")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
KERNEL_EXAMPLES = 20
LAYER_EXAMPLES = 6

BATCHES = st.sampled_from([1, 3])
STEPS = st.sampled_from([1, 7, 16, 17, 40])
UNITS = st.sampled_from([1, 4])
# dt a power of two and integer rates: every increment rate * dt is exact in
# float32 and on the kernels' 2**-24 grid, so the laws hold exactly
DTS = st.sampled_from([2.0**-k for k in (0, 3, 6, 10)])


def arrays(draw, shape, low, high):
    """Integer-valued float32 array of ``shape`` from a drawn NumPy seed."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.integers(low, high + 1, shape).astype("float32")


def voltages(draw, shape):
    """Initial voltages in ``[0, 1)``, multiples of ``2**-24``."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return (rng.integers(0, 2**24, shape) * 2.0**-24).astype("float32")


def _spike_train(rates, dt, v0):
    return kernels.spike_train(rates, dt, v0)


def _integrate(x, v0):
    return kernels.integrate_spikes(x, v0)


def _lowpass(x, log_a, y0):
    return kernels.lowpass(x, log_a, y0)


def _alpha(x, log_a, p0, q0):
    return kernels.alpha(x, log_a, (p0, q0))[0]


# ------------------------------------------------------------- spikes ---


@settings(max_examples=KERNEL_EXAMPLES, **SETTINGS)
@given(st.data(), BATCHES, STEPS, UNITS, DTS, st.integers(0, 3))
def test_spike_conservation(data, batch, steps, units, dt, scale):
    """Total spikes ``floor(v0 + sum rate * dt)``, final voltage its fraction,
    rates from -50 to 10**scale * 500 Hz (many spikes per step)."""
    rates = arrays(data.draw, (batch, steps, units), -50, 500 * 10**scale)
    v0 = voltages(data.draw, (batch, units))
    spikes, voltage = run_jit(_spike_train, rates, np.float32(dt), v0)
    counts = spikes * dt  # exact: dt a power of two
    np.testing.assert_array_equal(counts, np.round(counts))
    for b, n in np.ndindex(batch, units):
        total = fractions.Fraction(float(v0[b, n])) + sum(
            fractions.Fraction(float(r)) * fractions.Fraction(dt)
            for r in rates[b, :, n]
        )
        assert counts[b, :, n].astype(np.float64).sum() == math.floor(total)
        assert fractions.Fraction(float(voltage[b, n])) == total - math.floor(total)


def cuts(draw, steps):
    """Piece sizes (from a few values, each at most ``steps``) summing to
    ``steps``."""
    sizes = []
    while sum(sizes) < steps:
        size = draw(st.sampled_from([1, 3, 8, 13]))
        sizes.append(min(size, steps - sum(sizes)))
    return sizes


@settings(max_examples=KERNEL_EXAMPLES, **SETTINGS)
@given(st.data(), BATCHES, st.sampled_from([16, 40]), UNITS, DTS)
def test_streamed_spikes_equal_whole(data, batch, steps, units, dt):
    x = arrays(data.draw, (batch, steps, units), -50, 500) * np.float32(dt)
    v0 = voltages(data.draw, (batch, units))
    whole, last = run_jit(_integrate, x, v0)
    pieces, v, begin = [], v0, 0
    for size in cuts(data.draw, steps):
        counts, v = run_jit(_integrate, x[:, begin : begin + size], v)
        pieces.append(counts)
        begin += size
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), whole)
    np.testing.assert_array_equal(v, last)
    ref, ref_v = references.spike_counts(x, v0)  # exact inputs: exact float64
    np.testing.assert_array_equal(whole, ref)


# ------------------------------------------------------------ filters ---

LOG_A = st.floats(-4.0, -0.01)


def filter_inputs(data, batch, steps, units):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    return rng.normal(size=(batch, steps, units)).astype("float32")


@settings(max_examples=KERNEL_EXAMPLES, **SETTINGS)
@given(st.data(), BATCHES, st.sampled_from([16, 40]), UNITS, LOG_A)
def test_streamed_filters_equal_whole(data, batch, steps, units, log_a):
    x = filter_inputs(data, batch, steps, units)
    log_a = np.full((units,), log_a, "float32")
    y0 = filter_inputs(data, batch, 1, units)[:, 0]
    whole = run_jit(_lowpass, x, log_a, y0)
    pieces, y, begin = [], y0, 0
    for size in cuts(data.draw, steps):
        part = run_jit(_lowpass, x[:, begin : begin + size], log_a, y)
        pieces.append(part)
        y = part[:, -1]
        begin += size
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole, atol=1e-5)
    ref = references.lowpass_log_a(x, log_a, y0)
    np.testing.assert_allclose(whole, ref, rtol=1e-5, atol=1e-5)


@settings(max_examples=KERNEL_EXAMPLES, **SETTINGS)
@given(
    st.data(),
    st.sampled_from(["lowpass", "alpha"]),
    st.sampled_from([16, 40]),
    LOG_A,
    st.floats(-3, 3),
    st.floats(-3, 3),
)
def test_filters_linear(data, kind, steps, log_a, alpha, beta):
    """``f(alpha x + beta z) = alpha f(x) + beta f(z)`` from a zero state."""
    x = filter_inputs(data, 2, steps, 3)
    z = filter_inputs(data, 2, steps, 3)
    log_a = np.full((3,), log_a, "float32")
    zero = np.zeros((2, 3), "float32")
    args = (log_a, zero) if kind == "lowpass" else (log_a, zero, zero)
    fn = _lowpass if kind == "lowpass" else _alpha
    mixed = (np.float32(alpha) * x + np.float32(beta) * z).astype("float32")
    got = run_jit(fn, mixed, *args)
    want = alpha * run_jit(fn, x, *args) + beta * run_jit(fn, z, *args)
    scale = np.abs(want).max() + abs(alpha) + abs(beta)
    np.testing.assert_allclose(got, want, atol=1e-5 * scale)


def impulse_response(kind, log_a, steps):
    """Closed forms, float64: lowpass ``(1 - a) a**t``; alpha, the mix of its
    two lowpass stages ``(1 - c) (1 - a) a**t + c (1 - a)**2 (t + 1) a**t``
    with ``c = -log_a / (1 - a)`` (``references.alpha_states``)."""
    t = np.arange(steps, dtype=np.float64)
    a = math.exp(log_a)
    first = (1 - a) * a**t
    if kind == "lowpass":
        return first
    c = -log_a / (1 - a)
    return (1 - c) * first + c * (1 - a) ** 2 * (t + 1) * a**t


@settings(max_examples=KERNEL_EXAMPLES, **SETTINGS)
@given(
    st.sampled_from(["lowpass", "alpha"]),
    st.sampled_from([7, 16, 40]),
    LOG_A,
    st.floats(-100, 100),
)
def test_filters_impulse_and_dc_gain(kind, steps, log_a, level):
    units = 2
    log_a_v = np.full((units,), log_a, "float32")
    fn = _lowpass if kind == "lowpass" else _alpha
    zero = np.zeros((1, units), "float32")
    impulse = np.zeros((1, steps, units), "float32")
    impulse[:, 0] = 1
    args = (log_a_v, zero) if kind == "lowpass" else (log_a_v, zero, zero)
    got = run_jit(fn, impulse, *args)
    want = impulse_response(kind, log_a_v[0].item(), steps)
    np.testing.assert_allclose(got[0, :, 0], want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got[0, :, 1], want, rtol=1e-4, atol=1e-6)
    # unit DC gain: at rest at ``level``, a constant input ``level`` stays
    rest = np.full((1, units), level, "float32")
    constant = np.full((1, steps, units), level, "float32")
    args = (log_a_v, rest) if kind == "lowpass" else (log_a_v, rest, rest)
    np.testing.assert_allclose(
        run_jit(fn, constant, *args), constant, rtol=1e-5, atol=1e-5
    )


# ------------------------------------------------------------- layers ---

KINDS = st.sampled_from(["SpikingActivation", "Lowpass", "Alpha"])


def make_layer(kind, **kwargs):
    if kind == "SpikingActivation":
        return keras_spiking.SpikingActivation("relu", dt=2**-6, seed=11, **kwargs)
    return getattr(keras_spiking, kind)(
        keras.initializers.RandomUniform(0.02, 0.2, seed=1),
        dt=2**-6,
        level_initializer=keras.initializers.RandomNormal(seed=2),
        **kwargs,
    )


def layer_input(data, kind, batch, steps, units):
    if kind == "SpikingActivation":
        return arrays(data.draw, (batch, steps, units), -20, 300)
    return filter_inputs(data, batch, steps, units)


def assert_same(kind, got, want):
    if kind == "SpikingActivation":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@settings(max_examples=LAYER_EXAMPLES, **SETTINGS)
@given(st.data(), KINDS, BATCHES, st.sampled_from([7, 17]), st.booleans())
def test_time_major_is_transposition(data, kind, batch, steps, return_sequences):
    x = layer_input(data, kind, batch, steps, 4)
    batch_major = make_layer(kind, return_sequences=return_sequences)
    time_major = make_layer(kind, return_sequences=return_sequences, time_major=True)
    want = numpy(batch_major(x))
    got = numpy(time_major(np.swapaxes(x, 0, 1)))
    if return_sequences:
        got = np.swapaxes(got, 0, 1)
    assert_same(kind, got, want)


@settings(max_examples=LAYER_EXAMPLES, **SETTINGS)
@given(st.data(), KINDS, st.sampled_from([7, 17]), st.booleans(), st.booleans())
def test_save_load_identity(data, kind, steps, time_major, return_sequences):
    x = layer_input(data, kind, 2, steps, 3)
    if time_major:
        x = np.swapaxes(x, 0, 1)
    # time major: the leading axis (time) is the one left open
    inputs = keras.Input(batch_shape=(None,) + x.shape[1:])
    layer = make_layer(kind, time_major=time_major, return_sequences=return_sequences)
    model = keras.Model(inputs, layer(inputs))
    want = numpy(model(x))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    assert_same(kind, numpy(loaded(x)), want)
