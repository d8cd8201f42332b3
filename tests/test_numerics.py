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
  increment that overflows float32 is an inf (as above);
* integrate-and-fire (``neuron="if"``), against the step-by-step NumPy
  reference ``if_reference`` below, in every kernel plan (PyTorch's native
  kernels and the generic ones), in blocks of steps, through the layer
  (``return_state``, streaming, XLA): a non-finite step outputs relu of
  itself, as the rate mode does (nan, inf, 0 for -inf), and leaves the
  voltage as it is; counts are exact up to ``2**24`` spikes in a step and
  the nearest float32 beyond (never wrapped), and the voltage's integer part
  saturates at ``-2**24``.
"""

import fractions
import math

import keras
import numpy as np
import pytest

import keras_spiking
from keras_spiking import kernels
from tests import references
from tests.harness import BACKEND, XLA, numpy, run_jit
from tests.test_kernels import PLANS  # every kernel form and chunking

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


# ------------------------------------------- integrate-and-fire (neuron="if") ---

#: The documented floor of the integer part of the IF voltage.
IF_FLOOR = -(2.0**24)


def if_reference(increments, fraction, level):
    """Integrate-and-fire step by step: ``v += x; n = max(floor(v), 0);
    v -= n``, the voltage's integer part floored at ``-2**24``; a non-finite
    ``x`` leaves the voltage as if it were 0 and its step outputs relu of it
    (nan, inf, 0 for -inf).

    Exact for float32 increments that are integers or multiples of ``2**-8``
    (the tests' inputs): each increment is split into its integer and
    fractional parts, kept apart in float64 (the integer parts exact below
    ``2**53``; above, within ``2**25`` of a float32 whose neighbours are
    ``2**29`` away, so rounding to float32 is still the nearest).  Returns
    the counts rounded once to float32, and the final ``(fraction, level)``.
    """
    x = np.asarray(increments, np.float32).astype(np.float64)
    f = np.array(fraction, np.float64)
    v_level = np.array(level, np.float64)
    whole = np.floor(f)
    f, v_level = f - whole, v_level + whole
    v_level = np.clip(v_level, IF_FLOOR, -IF_FLOOR)  # as documented
    counts = np.zeros(x.shape, np.float32)
    for t in range(x.shape[1]):
        finite = np.isfinite(x[:, t])
        x_t = np.where(finite, x[:, t], 0.0)
        k = np.floor(x_t)
        f = f + (x_t - k)
        carry = np.floor(f)
        f -= carry
        total = v_level + k + carry
        n = np.maximum(total, 0.0).astype(np.float32)
        counts[:, t] = np.where(finite, n, np.where(x[:, t] < 0, 0.0, x[:, t]))
        v_level = np.clip(total, IF_FLOOR, 0.0)
    return counts, (f, v_level)


def relu_of(value):
    return 0.0 if value < 0 else value


def if_inputs(seed, shape=(BATCH, STEPS, UNITS)):
    """Increments that are multiples of 1/64 in [-2, 4], a fraction that is a
    multiple of 1/256 and integer levels at and below 0."""
    rng = np.random.default_rng(seed)
    x = (rng.integers(-2 * 64, 4 * 64 + 1, shape) / 64).astype("float32")
    fraction = (rng.integers(0, 256, (shape[0], shape[2])) / 256).astype("float32")
    level = rng.choice([0.0, 0.0, -1.0, -3.0], (shape[0], shape[2])).astype("float32")
    return x, fraction, level


def assert_if_equal(got, want):
    """Counts and both states equal (nan where nan)."""
    counts, (fraction, level) = got
    want_counts, (want_fraction, want_level) = want
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_array_equal(fraction, want_fraction)
    np.testing.assert_array_equal(level, want_level)


def integrate_fire(plan, x, fraction, level):
    return run_jit(
        lambda x, f, v: kernels.integrate_fire(x, (f, v), plan=plan), x, fraction, level
    )


#: PyTorch has native eager kernels for the direct and chunked plans; the
#: generic ``keras.ops`` kernels run there too (while tracing for export).
KERNEL_KINDS = ["native", "generic"] if BACKEND == "torch" else ["native"]


def generic_kernels(monkeypatch):
    monkeypatch.setattr(kernels._backend, "fused_fire", lambda *args: None)
    monkeypatch.setattr(kernels._backend, "fused_spikes", lambda *args: None)


@pytest.mark.parametrize("kind", KERNEL_KINDS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("plan", PLANS.values(), ids=PLANS.keys())
def test_if_nonfinite_step(plan, value, kind, monkeypatch):
    """A non-finite input at one step of an IF neuron: relu of it there, the
    voltage carried on as if that step's input were 0; every other neuron
    and step as the reference."""
    if kind == "generic":
        generic_kernels(monkeypatch)
    x, fraction, level = if_inputs(11)
    bad = with_bad(x, value)
    got = integrate_fire(plan, bad, fraction, level)
    want = if_reference(bad, fraction, level)
    np.testing.assert_array_equal(got[0][BAD], relu_of(value))
    assert_if_equal(got, want)
    # the reference is the same as a 0 there, and the neuron fires again
    clean = if_reference(with_bad(x, 0.0), fraction, level)
    clean[0][BAD] = relu_of(value)
    assert_if_equal(want, clean)
    assert want[0][BAD[0], BAD[1] + 1 :, BAD[2]].sum() > 0


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("form", FORMS)
def test_if_nonfinite_layer(form, value):
    """Through ``SpikingActivation(..., neuron="if", return_state=True)``: at
    the bad step the output is what the rate mode outputs there (relu of
    the value: nan, inf, 0), and the states are the reference's."""
    dt = 2**-6
    x, fraction, level = if_inputs(12)
    rates = with_bad(x / dt, value)
    with kernels.forced_form(form):
        layer = keras_spiking.SpikingActivation(
            "relu", neuron="if", dt=dt, return_state=True
        )
        out, got_fraction, got_level = numpy(
            layer(rates, initial_state=[fraction, level])
        )
        rate_out = numpy(keras_spiking.SpikingActivation("relu", dt=dt, seed=1)(rates))
    counts, (want_fraction, want_level) = if_reference(
        rates * np.float32(dt), fraction, level
    )
    np.testing.assert_array_equal(out[BAD], rate_out[BAD])
    np.testing.assert_array_equal(out[BAD], relu_of(value))
    np.testing.assert_array_equal(out, counts / np.float32(dt))
    np.testing.assert_array_equal(got_fraction, want_fraction)
    np.testing.assert_array_equal(got_level, want_level)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_if_nonfinite_compiled_and_streamed(value):
    """``predict`` with ``jit_compile=True`` (XLA on TensorFlow and JAX), and a
    stateful copy fed in three pieces (the bad step in the middle one): both
    equal the reference, and the stream ends in the reference's states."""
    dt = 2**-6
    x, _, _ = if_inputs(13)
    rates = with_bad(x / dt, value)
    inputs = keras.Input((None, UNITS))
    out = keras_spiking.SpikingActivation(
        "relu", neuron="if", dt=dt, initial_voltage=0.25
    )(inputs)
    model = keras.Model(inputs, out)
    model.compile(jit_compile=XLA)
    start = (np.full((BATCH, UNITS), 0.25, "float32"), np.zeros((BATCH, UNITS)))
    counts, (fraction, level) = if_reference(rates * np.float32(dt), *start)
    want = counts / np.float32(dt)
    np.testing.assert_array_equal(model.predict(rates, verbose=0), want)

    copy = keras_spiking.stateful_copy(model, batch_size=BATCH)
    pieces = [
        copy.predict(rates[:, a:b], verbose=0)
        for a, b in [(0, 5), (5, 25), (25, STEPS)]
    ]
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), want)
    layer = copy.layers[-1]
    np.testing.assert_array_equal(numpy(layer.states[0]), fraction)
    np.testing.assert_array_equal(numpy(layer.states[1]), level)


def test_if_nonfinite_in_blocks():
    """A (32, 1100, 128) input, long and wide enough for PyTorch's native
    kernels to work in blocks of steps: non-finite values in both blocks,
    the level carried across the block boundary exactly."""
    x, fraction, level = if_inputs(14, (32, 1100, 128))
    x[0, 3, 0], x[5, 1030, 7], x[31, 1099, 127], x[9, 1023, 4] = (
        np.nan,
        np.inf,
        -np.inf,
        np.nan,
    )
    got = run_jit(lambda x, f, v: kernels.integrate_fire(x, (f, v)), x, fraction, level)
    assert_if_equal(got, if_reference(x, fraction, level))


# huge increments: the limits of docs/numerics.md


@pytest.mark.parametrize("kind", KERNEL_KINDS)
@pytest.mark.parametrize("plan", PLANS.values(), ids=PLANS.keys())
def test_if_large_increments(plan, kind, monkeypatch):
    """Increments up to 3e38, either sign, with levels down to the floor:
    counts equal the exact count rounded once to float32 (exact up to
    ``2**24``; no sum of counts wraps around), the level saturates at
    ``-2**24``, the fraction is exact."""
    if kind == "generic":
        generic_kernels(monkeypatch)
    rng = np.random.default_rng(15)
    magnitudes = np.array(
        [
            0.75,
            7.5,
            300.25,
            2.0**20 + 0.5,
            2.0**23,
            2.0**24 + 2,
            1e9,
            2.0**31,
            1e10,
            3e38,
        ]
    )
    x = rng.choice(magnitudes, (BATCH, STEPS, UNITS))
    x *= np.where(rng.uniform(size=x.shape) < 0.3, -1, 1)
    x = x.astype("float32")
    fraction = (rng.integers(0, 64, (BATCH, UNITS)) / 64).astype("float32")
    level = np.array([[0, -1, IF_FLOOR], [-5, 0, -(2.0**23)]], "float32")
    got = integrate_fire(plan, x, fraction, level)
    want = if_reference(x, fraction, level)
    assert_if_equal(got, want)
    assert (want[0] > 2.0**31).any() and (want[1][1] == IF_FLOOR).any()


@pytest.mark.parametrize("kind", KERNEL_KINDS)
@pytest.mark.parametrize("plan", PLANS.values(), ids=PLANS.keys())
def test_if_limits_hand_counted(plan, kind, monkeypatch):
    """The limits, one neuron each, from ``v = 0.5``:

    * three steps of ``2**30``: ``2**30`` spikes each (their sum, 3 * 2**30,
      is past int32's range);
    * ``-2**30``, then ``2**24``, then 1: the voltage stops at ``0.5 -
      2**24``, is back at 0.5 after ``2**24`` and fires once after 1;
    * from ``v = -0.5`` (level -1), ``2**24``: ``2**24 - 1`` spikes (exact);
      ``2**24 + 2``: ``2**24 + 1`` spikes, which float32 rounds to ``2**24``
      (its nearest, ties to even).
    """
    if kind == "generic":
        generic_kernels(monkeypatch)
    x = np.array(
        [
            [2.0**30, 2.0**30, 2.0**30],
            [-(2.0**30), 2.0**24, 1.0],
            [2.0**24, 0.0, 0.0],
            [2.0**24 + 2, 0.0, 0.0],
        ],
        "float32",
    )[:, :, None]
    fraction = np.full((4, 1), 0.5, "float32")
    level = np.array([[0.0], [0.0], [-1.0], [-1.0]], "float32")
    counts, (new_fraction, new_level) = integrate_fire(plan, x, fraction, level)
    np.testing.assert_array_equal(
        counts[:, :, 0],
        [
            [2.0**30, 2.0**30, 2.0**30],
            [0.0, 0.0, 1.0],
            [2.0**24 - 1, 0.0, 0.0],
            [2.0**24, 0.0, 0.0],
        ],
    )
    np.testing.assert_array_equal(new_fraction, fraction)
    np.testing.assert_array_equal(new_level, np.zeros((4, 1)))


def test_if_layer_huge_input_does_not_wrap():
    """Inputs of 1e12 and 1e13 Hz at ``dt = 0.001`` (about 1e9 and 1e10
    spikes in a step: beyond int32), then -1e13 and 1e12 again, through the
    layer: the reference's spikes (rounded to float32); -1e13 takes the
    voltage to the floor, so the next 1e12 fires about ``1e9 - 2**24``."""
    dt = 0.001
    rates = np.array([[0.0, 1e12, 1e13, 0.0, -1e13, 0.0, 1e12]], "float32")
    rates = np.repeat(rates[:, :, None], 2, axis=2)
    v0 = np.full((1, 2), 0.5, "float32")
    layer = keras_spiking.SpikingActivation(
        "relu", neuron="if", dt=dt, return_state=True
    )
    out, fraction, level = numpy(layer(rates, initial_state=[v0, np.zeros_like(v0)]))
    increments = rates * np.float32(dt)  # whole numbers: exact
    counts, (want_fraction, want_level) = if_reference(
        increments, v0, np.zeros_like(v0)
    )
    np.testing.assert_array_equal(out, counts / np.float32(dt))
    np.testing.assert_array_equal(fraction, want_fraction)
    np.testing.assert_array_equal(level, want_level)
    assert counts[0, 2, 0] > 2**31
    assert counts[0, 6, 0] == np.float32(increments[0, 6, 0] + IF_FLOOR)
