"""Numerics: non-finite inputs, mixed precision, very large rates.

What ``docs/numerics.md`` states, checked in every kernel form
(``kernels.forced_form``) against the NumPy references of
``tests/references.py``:

* a NaN or inf input stays in its own neuron (batch row and unit): the
  spikes are that value at that step only, and the voltage goes on as if the
  step's increment were 0; a filter's output is non-finite from that step
  on (the same inf for a single inf, NaN for a NaN), its earlier steps and
  every other neuron untouched;
* under ``mixed_float16`` / ``mixed_bfloat16`` the spikes and filter outputs
  equal the float32 model's rounded to the compute dtype, for inputs already
  representable in it (with ``dt`` a float, or a variable created with
  ``autocast=False``; any time constant: ``tau`` and the states are not
  autocast);
* spikes are exact for increments ``rate * dt`` of any finite size (no
  fixed-point limit: only the fraction is held in fixed point), and an
  increment that overflows float32 is an inf (as above).
"""

import fractions
import math

import keras
import numpy as np
import pytest

import keras_spiking
from keras_spiking import kernels
from tests import references
from tests.harness import numpy, run_jit

FORMS = ("direct", "unrolled", "loop", "chunked")
BATCH, STEPS, UNITS = 2, 37, 3  # 37 steps: chunked with 2 levels
BAD = (1, 20, 2)  # (batch row, step, unit) of the non-finite input


def forced(form, fn, *args):
    """``fn(*args)`` as NumPy, traced (JAX) or called in ``form``."""
    with kernels.forced_form(form):
        return run_jit(fn, *args)


def with_bad(x, value):
    x = np.array(x)
    x[BAD] = value
    return x


def elsewhere(a):
    """Every entry of ``a`` (``(batch, time, units)``) but the bad neuron's."""
    mask = np.ones(a.shape, bool)
    mask[BAD[0], :, BAD[2]] = False
    return a[mask]


# ------------------------------------------------------------- NaN, inf ---


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("form", FORMS)
def test_nonfinite_spikes_stay_in_their_step(form, value):
    rng = np.random.default_rng(1)
    # multiples of 2**-6: every form's spikes are exact
    x = rng.integers(-40, 200, (BATCH, STEPS, UNITS)).astype("float32") / 64
    v0 = rng.uniform(0, 1, (BATCH, UNITS)).astype("float32")
    counts, voltage = forced(form, kernels.integrate_spikes, with_bad(x, value), v0)
    # the reference: that step's increment taken as 0
    ref, ref_v = references.spike_counts(with_bad(x, 0.0), v0)
    np.testing.assert_array_equal(counts[BAD], value)
    ref[BAD] = counts[BAD] = 0
    np.testing.assert_array_equal(counts, ref)
    np.testing.assert_allclose(voltage, ref_v, atol=2**-24, rtol=0)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nonfinite_spike_train(value):
    """``spike_train`` (on PyTorch its fused kernel) and the layer."""
    rng = np.random.default_rng(2)
    rates = rng.integers(-40, 200, (BATCH, STEPS, UNITS)).astype("float32")
    v0 = rng.uniform(0, 1, (BATCH, UNITS)).astype("float32")
    dt = 2**-6
    spikes, _ = run_jit(
        lambda r, v: kernels.spike_train(r, dt, v), with_bad(rates, value), v0
    )
    ref = references.spikes(with_bad(rates, 0.0), dt, v0)[0]
    np.testing.assert_array_equal(spikes[BAD], value)
    spikes[BAD] = ref[BAD] = 0
    np.testing.assert_array_equal(spikes, ref)

    layer = keras_spiking.SpikingActivation("linear", dt=dt, seed=4)
    out = numpy(layer(with_bad(rates, value)))
    seeded = numpy(keras_spiking.seeded_uniform.seeded_uniform(BATCH, UNITS, 4))
    ref = references.spikes(with_bad(rates, 0.0), dt, seeded)[0]
    np.testing.assert_array_equal(out[BAD], value)
    out[BAD] = ref[BAD] = 0
    np.testing.assert_array_equal(out, ref)


def check_filter_with_bad(y, clean, value):
    """``y`` (input with a bad value) against ``clean`` (the reference of the
    input with 0 there): other neurons and earlier steps unchanged, the bad
    neuron equal to ``value`` from the bad step on."""
    b, t, n = BAD
    np.testing.assert_allclose(elsewhere(y), elsewhere(clean), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[b, :t, n], clean[b, :t, n], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y[b, t:, n], np.full(STEPS - t, value))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("form", FORMS)
def test_nonfinite_filters_stay_in_their_neuron(form, value):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(BATCH, STEPS, UNITS)).astype("float32")
    log_a = np.array([-0.05, -0.5, -3.0], "float32")
    y0 = rng.normal(size=(BATCH, UNITS)).astype("float32")
    bad = with_bad(x, value)

    y = forced(form, kernels.lowpass, bad, log_a, y0)
    check_filter_with_bad(
        y, references.lowpass_log_a(with_bad(x, 0.0), log_a, y0), value
    )

    y, _ = forced(
        form, lambda u, a, p, q: kernels.alpha(u, a, (p, q)), bad, log_a, y0, y0
    )
    clean = references.alpha_states(with_bad(x, 0.0), log_a, y0, y0)[0]
    # the alpha filter mixes its two stages with weights of opposite signs
    # (``(1 - c) p + c q``, ``c > 1``): inf - inf
    check_filter_with_bad(y, clean, np.nan)


@pytest.mark.parametrize("form", FORMS)
def test_nonfinite_filter_layer(form):
    """A ``Lowpass`` layer with a NaN input (the layer's own path: casts,
    ``tau``, the initial level)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(BATCH, STEPS, UNITS)).astype("float32")
    with kernels.forced_form(form):
        layer = keras_spiking.Lowpass(0.02, dt=0.01)
        y = numpy(layer(with_bad(x, np.nan)))
    clean = references.lowpass(with_bad(x, 0.0), 0.02, 0.01, 0.0)
    check_filter_with_bad(y, clean, np.nan)


# ------------------------------------------------------ mixed precision ---


def compute_dtype(policy):
    if policy == "mixed_float16":
        return np.float16
    import ml_dtypes  # a dependency of keras, jax and tensorflow

    return ml_dtypes.bfloat16


def under_policy(policy, build, x):
    """``build()`` called on ``x`` under ``policy``, as float32 NumPy."""
    keras.config.set_dtype_policy(policy)
    try:
        layer = build()
        return numpy(keras.ops.cast(layer(x), "float32")), layer
    finally:
        keras.config.set_dtype_policy("float32")


def representable_rates():
    """Integer rates from -20 to 199: exact in float16 and bfloat16 (eight
    significant bits)."""
    return references.integer_rates((BATCH, STEPS, UNITS), seed=6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("dt", ["float", "variable"])
def test_mixed_precision_spikes(policy, dt):
    """Identical spikes: the float32 model's output rounded to the compute
    dtype (counts / dt, a float32 division, then one rounding)."""
    x = representable_rates()

    def build():
        step = (
            0.001
            if dt == "float"
            else keras.Variable(0.001, trainable=False, autocast=False)
        )
        return keras_spiking.SpikingActivation("relu", dt=step, seed=3)

    want, _ = under_policy("float32", build, x)
    got, layer = under_policy(policy, build, x)
    assert layer.compute_dtype != "float32"
    np.testing.assert_array_equal(got, want.astype(compute_dtype(policy)))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("cls", ["Lowpass", "Alpha"])
def test_mixed_precision_filters(policy, cls):
    """Filter states and arithmetic in float32: the float32 model's output
    rounded once (``tau`` and ``dt`` representable in the compute dtype)."""
    x = representable_rates()

    def build():
        return getattr(keras_spiking, cls)(2**-6, dt=2**-10)

    want, _ = under_policy("float32", build, x)
    got, _ = under_policy(policy, build, x)
    np.testing.assert_array_equal(got, want.astype(compute_dtype(policy)))


def test_mixed_precision_filter_any_tau():
    """``tau`` (and the initial level) are read in float32 under a mixed
    policy (``autocast=False``), so a tau float16 cannot hold still filters
    as in the float32 model, up to the output's rounding."""
    x = representable_rates()

    def build():
        return keras_spiking.Lowpass(0.0123, dt=0.001)

    want, _ = under_policy("float32", build, x)
    got, _ = under_policy("mixed_float16", build, x)
    np.testing.assert_array_equal(got, want.astype(np.float16))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("cls", ["SpikingActivation", "Lowpass"])
def test_mixed_precision_stateful_states_stay_float32(policy, cls):
    """A state that float16 cannot hold carries over exactly: one step of
    rate 64 Hz (``dt = 2**-10``) adds 1/16 to the voltage; one step of zero
    input decays the filter state by ``a``."""
    keras.config.set_dtype_policy(policy)
    try:
        if cls == "SpikingActivation":
            layer = keras_spiking.SpikingActivation(
                "relu", dt=2**-10, seed=3, stateful=True
            )
            state = np.array([[0.1234567, 0.7654321, 0.3333333]], "float32")
            step = np.full((1, 1, UNITS), 64.0, "float32")
            want = (state.astype(np.float64) + 1 / 16) % 1
        else:
            layer = keras_spiking.Lowpass(2**-6, dt=2**-10, stateful=True)
            state = np.array([[0.1234567, 0.7654321, 33.33333]], "float32")
            step = np.zeros((1, 1, UNITS), "float32")
            want = np.exp(-(2.0**-4)) * state.astype(np.float64)
        inputs = keras.Input(batch_shape=(1, None, UNITS))
        model = keras.Model(inputs, layer(inputs))
        assert str(layer.states[0].dtype) == "float32"
        layer.states[0].assign(state)
        model(step)
        after = numpy(layer.states[0].value)
    finally:
        keras.config.set_dtype_policy("float32")
    np.testing.assert_allclose(after, want, rtol=1e-6)


# ---------------------------------------------------------- large rates ---


def exact_spike_counts(x, v0):
    """``v += x; n = floor(v); v -= n`` in exact rational arithmetic (float64
    would lose the voltage's fraction next to an increment of 1e9)."""
    counts = np.zeros(x.shape)
    voltage = np.zeros(v0.shape)
    for b, n in np.ndindex(v0.shape):
        v = fractions.Fraction(float(v0[b, n]))
        for t in range(x.shape[1]):
            v += fractions.Fraction(float(x[b, t, n]))
            counts[b, t, n] = math.floor(v)
            v -= math.floor(v)
        voltage[b, n] = float(v)
    return counts, voltage


@pytest.mark.parametrize("form", FORMS)
def test_large_increments_exact(form):
    """Several spikes per step, up to increments of 3e38: the counts and
    the voltage are exact (increments with no bits below 2**-24)."""
    rng = np.random.default_rng(7)
    magnitudes = np.array([0.75, 7.5, 300.25, 2.0**20 + 0.5, 2.0**23, 1e9, 3e38])
    x = rng.choice(magnitudes, (BATCH, STEPS, UNITS))
    x *= np.where(rng.uniform(size=x.shape) < 0.2, -1, 1)
    x = x.astype("float32")
    v0 = (rng.integers(0, 64, (BATCH, UNITS)) / 64).astype("float32")
    counts, voltage = forced(form, kernels.integrate_spikes, x, v0)
    ref, ref_v = exact_spike_counts(x, v0)
    np.testing.assert_array_equal(counts, ref)
    np.testing.assert_array_equal(voltage, ref_v)


def test_overflowing_rates_saturate_to_inf():
    """``rate * dt`` beyond float32's range is inf: that step's spikes are
    inf, the voltage goes on as if the increment were 0."""
    rates = np.full((1, 4, 1), 100.0, "float32")
    rates[0, 1, 0] = 3e38
    v0 = np.full((1, 1), 0.5, "float32")
    spikes, voltage = run_jit(lambda r, v: kernels.spike_train(r, 4.0, v), rates, v0)
    np.testing.assert_array_equal(spikes[0, :, 0], [100.0, np.inf, 100.0, 100.0])
    np.testing.assert_array_equal(voltage, v0)
