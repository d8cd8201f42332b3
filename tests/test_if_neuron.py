"""``SpikingActivation("relu", neuron="if")``: integrate-and-fire neurons.

Against the step-by-step formula of the layer's docstring, written here in
float64 NumPy (``if_spikes``): ``v += x * dt; n = max(floor(v), 0);
v -= n; y = n / dt``, the voltage integrating negative input too.  Inputs are
dyadic (increments multiples of 1/256, ``dt`` a power of two), where float32
is exact, so spikes and states must equal the reference exactly, in every
kernel form, compiled or not; streamed in pieces they must equal the whole
sequence bit for bit.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_spiking
from keras_spiking import SpikingActivation, kernels
from tests import references
from tests.harness import (
    XLA,
    gradients,
    numpy,
    optional_import,
    run_jit,
    run_layer_test,
    skip_if_keras_cannot_export,
)
from tests.test_kernels import PLANS  # every kernel form, as the spike tests


def if_spikes(x, dt, v0):
    """Integrate-and-fire, step by step in float64: the layer's formula.

    Returns the spikes ``n / dt`` and the final voltage (any real number
    below 1)."""
    x = np.asarray(x, np.float64)
    v = np.array(v0, np.float64)
    out = np.zeros_like(x)
    for t in range(x.shape[1]):
        v += x[:, t] * dt
        n = np.maximum(np.floor(v), 0)
        v -= n
        out[:, t] = n / dt
    return out, v


def dyadic_input(shape, dt, seed=0, low=-3.0, high=4.0):
    """Inputs whose increments ``x * dt`` are multiples of 1/256 in
    ``[low, high]``: negative stretches, and several spikes per step."""
    rng = np.random.default_rng(seed)
    k = rng.integers(int(low * 256), int(high * 256) + 1, size=shape)
    return (k / (256 * dt)).astype("float32")


def dyadic_voltage(shape, seed=1):
    return (np.random.default_rng(seed).integers(0, 256, shape) / 256).astype("float32")


def zeros(shape):
    return np.zeros(shape, "float32")


# --------------------------------------------------------------- formula ---


@pytest.mark.parametrize("shape", [(3, 40, 4), (2, 13, 3, 2), (2, 1, 3)])
@pytest.mark.parametrize("dt", [1 / 64, 1.0])
def test_spikes_match_reference_exactly(shape, dt):
    x = dyadic_input(shape, dt)
    v0 = dyadic_voltage((shape[0],) + shape[2:])
    layer = SpikingActivation("relu", neuron="if", dt=dt, return_state=True)
    out, fraction, level = numpy(layer(x, initial_state=[v0, zeros(v0.shape)]))
    ref, ref_v = if_spikes(x, dt, v0)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(fraction + level, ref_v)
    assert ((fraction >= 0) & (fraction < 1)).all()
    np.testing.assert_array_equal(level, np.minimum(np.floor(ref_v), 0))
    if shape[1] > 1:  # several spikes per step, and voltages below 0
        assert (ref * dt >= 2).any() and (ref_v < 0).any()


def test_negative_input_is_integrated_not_rectified():
    """Hand-computed: -1.5, then +1 per step; the IF neuron first climbs back
    from -1.5 (fires at step 4), the rate mode ignores the negative step."""
    x = np.array([[-1.5, 1.0, 1.0, 1.0, 1.0]], "float32")[:, :, None]
    v0 = zeros((1, 1))
    fire = SpikingActivation("relu", neuron="if", dt=1.0)
    rate = SpikingActivation("relu", dt=1.0)
    out = numpy(fire(x, initial_state=[v0, v0]))[0, :, 0]
    np.testing.assert_array_equal(out, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(
        numpy(rate(x, initial_state=v0))[0, :, 0], [0, 1, 1, 1, 1]
    )


@pytest.mark.parametrize("plan", PLANS.values(), ids=PLANS.keys())
def test_kernel_every_form(plan):
    """``kernels.integrate_fire`` in every form (compiled under JAX), from a
    voltage below 0, equals the reference exactly."""
    steps = 40 if plan.form == "unrolled" else 300
    x = dyadic_input((2, steps, 5), 1.0, seed=2)
    fraction = dyadic_voltage((2, 5), seed=3)
    level = np.array([[0, -1, -3, 0, -2]] * 2, "float32")
    counts, (new_fraction, new_level) = run_jit(
        lambda x, f, v: kernels.integrate_fire(x, (f, v), plan=plan),
        x,
        fraction,
        level,
    )
    ref, ref_v = if_spikes(x, 1.0, fraction + level)
    np.testing.assert_array_equal(counts, ref)
    np.testing.assert_array_equal(new_fraction + new_level, ref_v)


@pytest.mark.parametrize("form", ["direct", "chunked", "loop", "unrolled"])
def test_layer_every_forced_form(form):
    steps = 12 if form in ("direct", "unrolled") else 90
    x = dyadic_input((2, steps, 3), 1 / 16, seed=4)
    v0 = dyadic_voltage((2, 3), seed=5)
    with kernels.forced_form(form):
        layer = SpikingActivation("relu", neuron="if", dt=1 / 16)
        out = numpy(layer(x, initial_state=[v0, zeros(v0.shape)]))
    np.testing.assert_array_equal(out, if_spikes(x, 1 / 16, v0)[0])


def test_long_sequence_default_form():
    """3,000 steps (three chunk levels; blocks of steps on PyTorch)."""
    x = dyadic_input((3, 3000, 4), 1 / 64, seed=6, low=-1.0, high=1.5)
    v0 = dyadic_voltage((3, 4), seed=7)
    layer = SpikingActivation("relu", neuron="if", dt=1 / 64)
    out = numpy(layer(x, initial_state=[v0, zeros(v0.shape)]))
    np.testing.assert_array_equal(out, if_spikes(x, 1 / 64, v0)[0])


def test_arbitrary_values_move_spikes_only_at_ties():
    """Non-dyadic inputs: the total up to each step is floor of the running
    maximum of the float64 running voltage, except within rounding of a
    threshold."""
    dt, steps = 0.001, 2000
    rng = np.random.default_rng(8)
    x = rng.uniform(-2000, 2600, size=(2, steps, 3)).astype("float32")
    v0 = rng.uniform(0, 1, size=(2, 3)).astype("float32")
    out = numpy(SpikingActivation("relu", neuron="if", dt=dt)(x, [v0, zeros(v0.shape)]))
    counts = np.round(out.astype(np.float64) * np.float32(dt))
    running = references.running_voltage(x, np.float32(dt), v0)
    expected = np.maximum(np.maximum.accumulate(np.floor(running), axis=1), 0)
    near = np.abs(running - np.round(running)) < 2e-3
    near = np.logical_or.accumulate(near, axis=1)  # a tie shifts later totals
    difference = np.abs(np.cumsum(counts, axis=1) - expected)
    assert difference[~near].max() == 0
    assert difference.max() <= 1
    assert counts.sum() > 100 and (counts >= 2).any()


def test_compiled_model_predict():
    """Through ``predict`` with ``jit_compile=True`` (XLA on TensorFlow and
    JAX), from a constant initial voltage."""
    x = dyadic_input((4, 50, 3), 1 / 32, seed=9)
    inputs = keras.Input((50, 3))
    layer = SpikingActivation("relu", neuron="if", dt=1 / 32, initial_voltage=0.25)
    model = keras.Model(inputs, layer(inputs))
    model.compile(jit_compile=XLA)
    out = model.predict(x, verbose=0, batch_size=2)
    np.testing.assert_array_equal(out, if_spikes(x, 1 / 32, np.full((4, 3), 0.25))[0])


# ------------------------------------------------------------ gradients ---


def test_gradient_is_relu_gradient_times_upstream():
    rng = np.random.default_rng(10)
    x = rng.normal(0, 2, size=(2, 6, 3, 2)).astype("float32")
    weights = rng.normal(size=x.shape).astype("float32")
    layer = SpikingActivation("relu", neuron="if", seed=0)
    layer.build(x.shape)

    def loss(x):
        return ops.sum(layer(x, training=True) * ops.convert_to_tensor(weights))

    for jit in (False, True):
        _, (grad,) = gradients(loss, x, jit=jit)
        np.testing.assert_allclose(grad, (x > 0) * weights, rtol=1e-6, atol=1e-7)


def test_no_spiking_aware_training_is_relu_in_training():
    x = dyadic_input((2, 8, 3), 1 / 64, seed=11)
    layer = SpikingActivation(
        "relu", neuron="if", spiking_aware_training=False, dt=1 / 64
    )
    np.testing.assert_array_equal(
        numpy(layer(x, training=True)), np.maximum(x, 0).astype("float32")
    )


# ------------------------------------------------------------ streaming ---


def stream(layer, x, sizes):
    ends = np.cumsum(sizes)
    return np.concatenate(
        [numpy(layer(x[:, e - s : e])) for s, e in zip(sizes, ends, strict=True)],
        axis=1,
    )


def test_stateful_stream_equals_whole_sequence_bit_for_bit():
    """A long non-dyadic stream in uneven pieces (one step, a few, several
    chunks of the kernels) equals the whole sequence bit for bit: both
    states (fraction, level) are exact float32 values."""
    dt, steps = 0.001, 1500
    rng = np.random.default_rng(12)
    x = rng.uniform(-1500, 2500, size=(2, steps, 3)).astype("float32")
    whole_layer = SpikingActivation("relu", neuron="if", dt=dt, seed=3)
    whole = numpy(whole_layer(x))
    layer = SpikingActivation("relu", neuron="if", dt=dt, seed=3, stateful=True)
    layer(keras.Input(batch_shape=(2, None, 3)))
    sizes = [1, 7, 100, 1, 33, 900, 458]
    np.testing.assert_array_equal(stream(layer, x, sizes), whole)
    assert len(layer.states) == 2
    assert (numpy(layer.states[1]) < 0).any()  # some voltages below 0 ...
    layer.reset_state()  # ... and a reset starts over
    np.testing.assert_array_equal(stream(layer, x[:, :50], [50]), whole[:, :50])


def test_stateful_copy_streams_an_if_model():
    dt = 1 / 64
    x = dyadic_input((1, 60, 3), dt, seed=13)
    inputs = keras.Input((None, 3))
    hidden = keras.layers.Dense(4, kernel_initializer="ones")(inputs)
    out = SpikingActivation("relu", neuron="if", dt=dt, initial_voltage=0)(hidden)
    model = keras.Model(inputs, out)
    copy = keras_spiking.stateful_copy(model, batch_size=1)
    streamed = np.concatenate(
        [copy.predict(x[:, i : i + 20], verbose=0) for i in (0, 20, 40)], 1
    )
    np.testing.assert_array_equal(streamed, model.predict(x, verbose=0))


# --------------------------------------------------- config, save, export ---


def test_config_round_trip_and_keras_test_case():
    layer = SpikingActivation("relu", neuron="if", dt=0.01, initial_voltage=0.5)
    config = layer.get_config()
    assert config["neuron"] == "if" and config["initial_voltage"] == 0.5
    again = SpikingActivation.from_config(config)
    assert (again.neuron, again.initial_voltage, again.num_states) == ("if", 0.5, 2)
    run_layer_test(
        SpikingActivation,
        {"activation": "relu", "neuron": "if", "dt": 0.01, "seed": 1},
        input_shape=(2, 5, 3),
        expected_output_shape=(2, 5, 3),
        expected_num_trainable_weights=0,
        supports_masking=False,
    )


def test_keras_save_and_load(tmp_path):
    dt = 1 / 32
    inputs = keras.Input((None, 3))
    out = SpikingActivation("relu", neuron="if", dt=dt, initial_voltage=0.0)(inputs)
    model = keras.Model(inputs, out)
    path = tmp_path / "if.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    layer = loaded.layers[-1]
    assert (layer.neuron, layer.initial_voltage) == ("if", 0.0)
    x = dyadic_input((2, 30, 3), dt, seed=14)
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), if_spikes(x, dt, zeros((2, 3)))[0]
    )


@pytest.mark.parametrize("fmt", ["onnx", "tf_saved_model"])
def test_export(fmt, tmp_path):
    """As ``tests/test_export.py``: dynamic batch and time, spikes equal.

    Skipped only for a (backend, format) pair that Keras itself cannot
    export from (``harness.KERAS_CANNOT_EXPORT``); anywhere else a failing
    exporter or converter fails the test."""
    skip_if_keras_cannot_export(fmt)
    dt = 1 / 64
    inputs = keras.Input((None, 3), name="x")
    out = SpikingActivation("relu", neuron="if", dt=dt, initial_voltage=0.5)(inputs)
    model = keras.Model(inputs, out)
    xs = [
        dyadic_input(shape, dt, seed=15)
        for shape in [(3, 50, 3), (1, 1, 3), (2, 300, 3)]
    ]
    model(xs[0])  # Keras under JAX exports only models that were called
    if fmt == "onnx":
        onnxruntime = optional_import("onnxruntime", "Running the exported ONNX model")
        path = str(tmp_path / "if.onnx")
        model.export(path, format="onnx", verbose=False)
        session = onnxruntime.InferenceSession(path)
        name = session.get_inputs()[0].name

        def run(x):
            return session.run(None, {name: x})[0]
    else:
        import tensorflow as tf

        path = str(tmp_path / "saved")
        model.export(path, format="tf_saved_model", verbose=False)
        reloaded = tf.saved_model.load(path)

        def run(x):
            return reloaded.serve(tf.constant(x)).numpy()

    for x in xs:
        want = if_spikes(x, dt, np.full((x.shape[0], 3), 0.5))[0]
        np.testing.assert_array_equal(run(x), want, err_msg=f"{fmt}, {x.shape}")


# ------------------------------------------------------------ bad input ---


def test_unknown_neuron_is_rejected():
    with pytest.raises(ValueError, match="bad_neuron.*neuron.*'lif'"):
        SpikingActivation("relu", neuron="lif", name="bad_neuron")


def test_if_needs_relu():
    with pytest.raises(ValueError, match="tanh_if.*relu.*'tanh'"):
        SpikingActivation("tanh", neuron="if", name="tanh_if")


@pytest.mark.parametrize("value", [1.0, -0.1, "zero", True])
def test_bad_initial_voltage_is_rejected(value):
    with pytest.raises(ValueError, match="bad_v0.*initial_voltage"):
        SpikingActivation("relu", initial_voltage=value, name="bad_v0")


def test_if_takes_two_initial_states():
    layer = SpikingActivation("relu", neuron="if", name="two_states")
    with pytest.raises(ValueError, match="two_states.*2 initial state"):
        layer(zeros((2, 4, 3)), initial_state=zeros((2, 3)))
