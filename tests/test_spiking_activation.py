"""``SpikingActivation`` against its spiking formula (the README's layer table
and the layer's docstring: ``v += rate * dt; n = floor(v); v -= n; y = n / dt``).

Reference: ``tests/references.py``.  Where inputs are dyadic (``dt`` a power of
two, increments ``rate * dt`` multiples of 1/256, voltages multiples of
1/256) float32 is exact and outputs must equal the float64 reference exactly;
with arbitrary values a spike may move by one step only where the running
voltage is within rounding of an integer.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_spiking
from keras_spiking import SpikingActivation
from tests import references
from tests.harness import gradients, numpy

SHAPES = [(3, 20, 4), (2, 13, 3, 2)]  # one and two feature axes


def dyadic_case(shape, dt, seed=0, spread=3):
    """Inputs with increments ``k/256`` (|k| <= spread*256) and voltages ``j/256``.

    ``spread`` > 1 gives rates above ``1/dt`` (several spikes per step) and
    the sign of ``k`` gives negative rates.
    """
    rng = np.random.default_rng(seed)
    k = rng.integers(-spread * 256, spread * 256 + 1, size=shape)
    x = (k / (256 * dt)).astype("float32")
    v0 = (rng.integers(0, 256, size=(shape[0],) + shape[2:]) / 256).astype("float32")
    return x, v0


NUMPY_ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
}


# --------------------------------------------------------------- formula ---


@pytest.mark.parametrize("shape", SHAPES + [(2, 1, 3)])
@pytest.mark.parametrize("dt", [1 / 64, 1 / 8])
@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_spikes_match_reference_exactly(shape, dt, activation):
    x, v0 = dyadic_case(shape, dt)
    layer = SpikingActivation(activation, dt=dt, return_state=True)
    out, v = numpy(layer(x, initial_state=v0))
    ref, ref_v = references.spikes(NUMPY_ACTIVATIONS[activation](x), dt, v0)
    assert out.shape == x.shape and v.shape == v0.shape
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=0)
    np.testing.assert_allclose(v, ref_v, rtol=0, atol=0)
    # the case covers several spikes per step, and negative ones if linear
    if shape[1] > 1:
        assert (np.abs(ref) * dt >= 2).any()
        assert (ref < 0).any() == (activation == "linear")


@pytest.mark.parametrize("shape, dt", [(SHAPES[0], 0.001), (SHAPES[1], 0.005)])
@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_spikes_match_reference_arbitrary_values(shape, dt, activation):
    rng = np.random.default_rng(1)
    x = rng.uniform(-2.5 / dt, 2.5 / dt, size=shape).astype("float32")
    v0 = rng.uniform(0, 1, size=(shape[0],) + shape[2:]).astype("float32")
    layer = SpikingActivation(activation, dt=dt, return_state=True)
    out, v = numpy(layer(x, initial_state=v0))

    rates = NUMPY_ACTIVATIONS[activation](x)
    ref, _ = references.spikes(rates, dt, v0)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=0)  # same count
    # Spikes are whole multiples of 1/dt.
    counts = out.astype(np.float64) * np.float32(dt)
    whole = np.round(counts)
    np.testing.assert_allclose(counts, whole, atol=1e-4)
    assert (whole < 0).any() == (activation == "linear")
    assert (np.abs(whole) >= 2).any()

    # Final voltage: fractional part of the running voltage.
    running = references.running_voltage(rates, np.float32(dt), v0)
    frac = running[:, -1] - np.floor(running[:, -1])
    circular = np.abs((v - frac + 0.5) % 1 - 0.5)
    assert circular.max() < 1e-4
    assert ((v >= 0) & (v < 1)).all()


def test_long_sequence_spike_times_match_reference():
    """Over 3000 steps every spike is where the float64 reference puts it.

    The cumulative count up to step t is floor(v0 + sum_{s<=t} r_s dt); only
    where that sum is within float32 rounding of an integer may the count be
    off by one (a spike moved by one step).
    """
    dt, steps = 0.001, 3000
    rng = np.random.default_rng(12)
    x = rng.uniform(-300, 2600, size=(2, steps, 3)).astype("float32")
    v0 = rng.uniform(0, 1, size=(2, 3)).astype("float32")
    out, v = numpy(
        SpikingActivation("linear", dt=dt, return_state=True)(x, initial_state=v0)
    )
    counts = np.round(out.astype(np.float64) * np.float32(dt))
    running = references.running_voltage(x, np.float32(dt), v0)
    expected = np.floor(running)
    near_integer = np.abs(running - np.round(running)) < 2e-3
    difference = np.abs(np.cumsum(counts, axis=1) - expected)
    assert difference[~near_integer].max() == 0
    assert difference.max() <= 1
    assert near_integer.mean() < 0.01
    frac = running[:, -1] - np.floor(running[:, -1])
    assert np.abs((v - frac + 0.5) % 1 - 0.5).max() < 2e-3


@pytest.mark.parametrize("dt", [0.001, 0.01])
def test_spike_count_conservation(dt):
    """sum(out * dt) equals the integral of activation(x), within one spike."""
    rng = np.random.default_rng(2)
    x = rng.uniform(-3 / dt, 3 / dt, size=(4, 100, 3, 2)).astype("float32")
    layer = SpikingActivation("linear", dt=dt)  # random initial voltages
    out = numpy(layer(x)).astype(np.float64)
    total_spikes = (out * np.float32(dt)).sum(axis=1)
    total_rate = (x.astype(np.float64) * np.float32(dt)).sum(axis=1)
    assert np.abs(total_spikes - total_rate).max() < 1 + 1e-3
    # ... and it is not trivially so: the totals are large
    assert np.abs(total_rate).max() > 10


# ---------------------------------------------------------------- seeds ---


def initial_voltage(layer, batch=2, steps=1, features=(5,)):
    """A layer's initial voltage: the final state after zero input."""
    _, v = layer(np.zeros((batch, steps) + features, "float32"))
    return numpy(v)


def test_seed_gives_identical_spikes_across_layers_and_calls():
    x = np.random.default_rng(3).uniform(0, 800, (3, 30, 4)).astype("float32")
    a = SpikingActivation("relu", seed=7)
    b = SpikingActivation("relu", seed=7)
    c = SpikingActivation("relu", seed=8)
    out_a = numpy(a(x))
    np.testing.assert_array_equal(out_a, numpy(a(x)))
    np.testing.assert_array_equal(out_a, numpy(b(x)))
    assert not np.array_equal(out_a, numpy(c(x)))


def test_seeded_initial_voltage_is_uniform_in_unit_interval():
    layer = SpikingActivation("relu", seed=11, return_state=True)
    v = initial_voltage(layer, batch=4, features=(50, 20))
    assert ((v >= 0) & (v < 1)).all()
    assert abs(v.mean() - 0.5) < 0.03
    assert abs(v.var() - 1 / 12) < 0.01
    # Every neuron of a batch entry gets its own voltage.
    assert all(len(np.unique(row)) == row.size for row in v)
    again = SpikingActivation("relu", seed=11, return_state=True)
    np.testing.assert_array_equal(v, initial_voltage(again, 4, features=(50, 20)))


def test_seeded_initial_voltages_are_not_coarsely_quantised():
    """Seeded voltages are uniform on [0, 1), not on a coarse grid.

    A float32 uniform draw has ~2**24 levels: 20000 draws hardly ever repeat
    (about 12 repeats expected).  Repeats in the thousands would mean the
    seeded voltages take only a few tens of thousands of distinct values.
    """
    layer = SpikingActivation("relu", seed=11, return_state=True)
    v = initial_voltage(layer, batch=20, features=(1000,))
    repeats = v.size - len(np.unique(v))
    assert repeats < 200, f"{repeats} repeated values among {v.size} voltages"


def test_seed_none_draws_fresh_voltages():
    layer = SpikingActivation("relu", return_state=True)
    v1 = initial_voltage(layer, features=(100,))
    v2 = initial_voltage(layer, features=(100,))
    v3 = initial_voltage(SpikingActivation("relu", return_state=True), features=(100,))
    for v in (v1, v2, v3):
        assert ((v >= 0) & (v < 1)).all()
    assert not np.array_equal(v1, v2)
    assert not np.array_equal(v1, v3)


def test_unseeded_voltages_in_a_compiled_predict():
    """Without a seed, the voltages come from the layer's SeedGenerator
    (on TensorFlow with Philox named explicitly, see ``backend.uniform``):
    through ``predict`` (compiled with XLA on TensorFlow and JAX) they are
    still uniform in [0, 1) and drawn afresh for every batch."""
    inputs = keras.Input((1, 1000))
    _, voltage = SpikingActivation("relu", return_state=True)(inputs)
    model = keras.Model(inputs, voltage)
    model.compile()
    x = np.zeros((64, 1, 1000), "float32")
    v1 = model.predict(x, batch_size=32, verbose=0)
    v2 = model.predict(x, batch_size=32, verbose=0)
    for v in (v1, v2):
        assert ((v >= 0) & (v < 1)).all()
        # 64,000 values: the mean's standard error is 0.0011, each tenth's
        # count's is 76
        assert abs(v.mean() - 0.5) < 0.01
        assert abs(v.var() - 1 / 12) < 0.003
        counts = np.histogram(v, bins=10, range=(0, 1))[0]
        assert np.abs(counts - v.size / 10).max() < 400, counts
    assert not np.array_equal(v1[:32], v1[32:])
    assert not np.array_equal(v1, v2)


# ------------------------------------------------------------ gradients ---

ACTIVATION_GRADIENTS = {
    "relu": lambda x: (x > 0).astype(np.float64),
    "tanh": lambda x: 1 - np.tanh(x) ** 2,
    "sigmoid": lambda x: (s := 1 / (1 + np.exp(-x))) * (1 - s),
    "linear": lambda x: np.ones_like(x),
}


@pytest.mark.parametrize("activation", sorted(ACTIVATION_GRADIENTS))
@pytest.mark.parametrize("spiking_aware_training", [True, False])
def test_training_gradient_is_activation_gradient(activation, spiking_aware_training):
    rng = np.random.default_rng(4)
    x = rng.normal(0, 2, size=(2, 6, 3, 2)).astype("float32")
    weights = rng.normal(size=x.shape).astype("float32")
    layer = SpikingActivation(
        activation, seed=0, spiking_aware_training=spiking_aware_training
    )
    layer.build(x.shape)

    def loss(x):
        return ops.sum(layer(x, training=True) * ops.convert_to_tensor(weights))

    _, (grad,) = gradients(loss, x)
    expected = ACTIVATION_GRADIENTS[activation](x.astype(np.float64)) * weights
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


def test_spiking_aware_training_spikes_in_training():
    x, v0 = dyadic_case((2, 10, 3), 1 / 64)
    layer = SpikingActivation("relu", dt=1 / 64)
    ref, _ = references.spikes(np.maximum(x, 0), 1 / 64, v0)
    np.testing.assert_allclose(
        numpy(layer(x, initial_state=v0, training=True)), ref, rtol=1e-6
    )


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_no_spiking_aware_training_is_activation_in_training(activation):
    rng = np.random.default_rng(5)
    x = rng.normal(0, 2, size=(2, 8, 3)).astype("float32")
    layer = SpikingActivation(activation, spiking_aware_training=False, dt=1 / 64)
    train = numpy(layer(x, training=True))
    np.testing.assert_array_equal(train, numpy(keras.activations.get(activation)(x)))
    # Inference still spikes, as the reference says.
    v0 = np.full((2, 3), 0.5, "float32")
    ref, _ = references.spikes(numpy(keras.activations.get(activation)(x)), 1 / 64, v0)
    infer = numpy(layer(x, initial_state=v0, training=False))
    np.testing.assert_allclose(infer, ref, rtol=1e-6)
    assert not np.allclose(infer, train)


def test_fit_trains_and_predict_infers():
    """`fit` runs the training path (activation), `predict`/`evaluate` spike."""
    dt = 0.001
    x = np.full((4, 5, 3), 300.0, "float32")  # 1.5 spikes in 5 steps
    inp = keras.Input((5, 3))
    dense = keras.layers.Dense(3, use_bias=False, kernel_initializer="identity")
    spikes = SpikingActivation("linear", dt=dt, seed=1, spiking_aware_training=False)
    out = keras_spiking.TemporalAvgPool()(spikes(dense(inp)))
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.SGD(0.0), loss="mse")
    target = np.full((4, 3), 300.0, "float32")
    history = model.fit(x, target, epochs=1, batch_size=4, verbose=0)
    assert history.history["loss"][0] == pytest.approx(0.0, abs=1e-6)

    predicted = model.predict(x, verbose=0)
    # 1 or 2 spikes in 5 steps: a mean of 200 or 400 Hz, never 300.
    counts = predicted * 5 * dt
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-4)
    assert set(np.round(counts).ravel()) <= {1.0, 2.0}
    assert model.evaluate(x, target, verbose=0) == pytest.approx(
        np.mean((predicted - target) ** 2), rel=1e-5
    )
    assert model.evaluate(x, target, verbose=0) > 1000


# ---------------------------------------------------------------- state ---


def test_return_sequences_false_is_last_step():
    x, v0 = dyadic_case((2, 9, 3, 2), 1 / 64)
    full = SpikingActivation("linear", dt=1 / 64)
    last = SpikingActivation("linear", dt=1 / 64, return_sequences=False)
    out = numpy(last(x, initial_state=v0))
    assert out.shape == (2, 3, 2)
    np.testing.assert_array_equal(out, numpy(full(x, initial_state=v0))[:, -1])


def test_return_state_is_final_voltage_in_feature_shape():
    x, v0 = dyadic_case((2, 9, 3, 2), 1 / 16)
    layer = SpikingActivation(
        "linear", dt=1 / 16, return_sequences=False, return_state=True
    )
    result = layer(x, initial_state=v0)
    assert isinstance(result, tuple) and len(result) == 2
    _, ref_v = references.spikes(x, 1 / 16, v0)
    np.testing.assert_array_equal(numpy(result[1]), ref_v)


def seeded_voltage(seed, batch, features):
    """A seeded layer's initial voltage: its final state after zero input."""
    layer = SpikingActivation("linear", seed=seed, return_state=True)
    return numpy(layer(np.zeros((batch, 1) + features, "float32"))[1])


def test_stateful_continues_and_reset_state_restarts():
    dt = 1 / 64
    x, _ = dyadic_case((2, 24, 3), dt)
    ref, ref_v = references.spikes(x, dt, seeded_voltage(3, 2, (3,)))
    layer = SpikingActivation("linear", dt=dt, seed=3, stateful=True)
    first = numpy(layer(x[:, :12]))
    second = numpy(layer(x[:, 12:]))
    np.testing.assert_allclose(np.concatenate([first, second], 1), ref, rtol=1e-6)
    np.testing.assert_allclose(numpy(layer.states[0]), ref_v, atol=1e-6)
    # Without a reset the voltage carries on ...
    np.testing.assert_allclose(
        numpy(layer(x[:, :12])),
        references.spikes(x[:, :12], dt, ref_v)[0],
        rtol=1e-6,
    )
    # ... after a reset it restarts.
    layer.reset_state()
    np.testing.assert_array_equal(numpy(layer(x[:, :12])), first)


def test_time_major_matches_batch_major():
    x, v0 = dyadic_case((3, 11, 2, 2), 1 / 32)
    batch_major = numpy(SpikingActivation("linear", dt=1 / 32)(x, initial_state=v0))
    layer = SpikingActivation("linear", dt=1 / 32, time_major=True, return_state=True)
    out, v = numpy(layer(np.swapaxes(x, 0, 1), initial_state=v0))
    np.testing.assert_array_equal(out, np.swapaxes(batch_major, 0, 1))
    np.testing.assert_array_equal(v, references.spikes(x, 1 / 32, v0)[1])
    last = SpikingActivation(
        "linear", dt=1 / 32, time_major=True, return_sequences=False
    )
    np.testing.assert_array_equal(
        numpy(last(np.swapaxes(x, 0, 1), initial_state=v0)), batch_major[:, -1]
    )


# ------------------------------------------------------------------- dt ---


def test_dt_variable_changes_outputs_without_rebuilding():
    dt = keras.Variable(1 / 64, trainable=False, dtype="float32")
    x, _ = dyadic_case((2, 10, 4), 1 / 64)
    layer = SpikingActivation("linear", dt=dt, seed=5)
    model = keras.Sequential([keras.Input((10, 4)), layer])
    v0 = seeded_voltage(5, 2, (4,))
    out = model.predict(x, verbose=0)
    np.testing.assert_allclose(out, references.spikes(x, 1 / 64, v0)[0], rtol=1e-6)
    dt.assign(1 / 16)
    out = model.predict(x, verbose=0)
    np.testing.assert_allclose(out, references.spikes(x, 1 / 16, v0)[0], rtol=1e-6)


def test_default_dt_affects_only_layers_created_afterwards(monkeypatch):
    x, v0 = dyadic_case((2, 10, 4), 1 / 64)
    before = SpikingActivation("linear")
    monkeypatch.setattr(keras_spiking.default, "dt", 1 / 16)
    after = SpikingActivation("linear")
    np.testing.assert_allclose(
        numpy(before(x, initial_state=v0)),
        references.spikes(x, 0.001, v0)[0],
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        numpy(after(x, initial_state=v0)),
        references.spikes(x, 1 / 16, v0)[0],
        rtol=1e-6,
    )


def test_mixed_precision_outputs():
    x, v0 = dyadic_case((2, 10, 3), 1 / 64)
    layer = SpikingActivation("relu", dt=1 / 64, dtype="mixed_float16")
    out = layer(x, initial_state=v0)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    ref, _ = references.spikes(np.maximum(x, 0), 1 / 64, v0)
    np.testing.assert_array_equal(numpy(out).astype(np.float64), ref)


# ------------------------------------------------------------ bad input ---


def test_rank_below_three_is_rejected():
    layer = SpikingActivation("relu", name="flat_spikes")
    with pytest.raises(ValueError, match="flat_spikes.*rank"):
        layer(np.zeros((2, 3), "float32"))


@pytest.mark.parametrize("dt", [0.0, -0.001, "negative variable"])
def test_non_positive_dt_is_rejected(dt):
    if dt == "negative variable":
        # (a variable holding 0 is accepted: DtScheduler sets it later)
        dt = keras.Variable(-0.001, trainable=False)
    with pytest.raises(ValueError, match="bad_dt.*dt"):
        SpikingActivation("relu", dt=dt, name="bad_dt")


def test_trainable_dt_variable_is_rejected():
    dt = keras.Variable(0.01)  # trainable by default: a time step is not learned
    with pytest.raises(ValueError, match="bad_dt.*trainable=False"):
        SpikingActivation("relu", dt=dt, name="bad_dt")


def test_non_numeric_dt_is_rejected():
    with pytest.raises(TypeError, match="bad_dt.*dt"):
        SpikingActivation("relu", dt="fast", name="bad_dt")


def test_unknown_activation_is_rejected():
    with pytest.raises(ValueError, match="bad_act.*not_an_activation"):
        SpikingActivation("not_an_activation", name="bad_act")


def test_stateful_needs_fixed_batch_size():
    layer = SpikingActivation("relu", stateful=True, name="stateful_spikes")
    with pytest.raises(ValueError, match="stateful_spikes.*batch"):
        layer(keras.Input((None, 3)))


def test_wrong_number_of_initial_states_is_rejected():
    layer = SpikingActivation("relu", name="two_states")
    v0 = np.zeros((2, 3), "float32")
    with pytest.raises(ValueError, match="two_states.*1 initial state"):
        layer(np.zeros((2, 4, 3), "float32"), initial_state=[v0, v0])
