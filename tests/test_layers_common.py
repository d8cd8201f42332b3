"""What every layer shares: Keras' layer checks, the functional API, `.keras`
files, XLA, mixed precision, and training a small model."""

import json
import zipfile

import keras
import numpy as np
import pytest

import keras_spiking
from keras_spiking import Alpha, Lowpass, SpikingActivation, TemporalAvgPool
from tests import references
from tests.harness import UNKNOWN_AXES, XLA, numpy, run_layer_test

# ------------------------------------------------------ Keras' own checks ---

LAYER_CASES = [
    # (class, init kwargs, input shape, expected output shape(s),
    #  trainable weights, non-trainable weights, seed generators)
    (SpikingActivation, dict(activation="relu", seed=1), (2, 5, 3), (2, 5, 3), 0, 0, 0),
    (SpikingActivation, {"activation": "tanh"}, (2, 5, 3, 2), (2, 5, 3, 2), 0, 0, 1),
    (
        SpikingActivation,
        dict(activation="relu", seed=2, return_sequences=False, return_state=True),
        (2, 5, 3),
        ((2, 3), (2, 3)),
        0,
        0,
        0,
    ),
    (
        SpikingActivation,
        {"activation": "relu", "seed": 2, "stateful": True, "dt": 0.01},
        (2, 5, 3),
        (2, 5, 3),
        0,
        1,
        0,
    ),
    (
        SpikingActivation,
        {"activation": "sigmoid", "spiking_aware_training": False, "time_major": True},
        (5, 2, 3),
        (5, 2, 3),
        0,
        0,
        1,
    ),
    (Lowpass, {"tau_initializer": 0.01}, (2, 5, 3), (2, 5, 3), 2, 0, 0),
    (
        Lowpass,
        {
            "tau_initializer": "ones",
            "level_initializer": "ones",
            "tau_constraint": "non_neg",
            "apply_during_training": False,
            "return_state": True,
            "dt": 0.002,
        },
        (2, 5, 3, 2),
        ((2, 5, 3, 2), (2, 3, 2)),
        2,
        0,
        0,
    ),
    (Lowpass, dict(tau_initializer=0.01, stateful=True), (2, 5, 3), (2, 5, 3), 2, 1, 0),
    (Alpha, dict(tau_initializer=0.01, stateful=True), (2, 5, 3), (2, 5, 3), 2, 2, 0),
    (
        Alpha,
        {"tau_initializer": 0.02, "return_sequences": False, "return_state": True},
        (2, 5, 3),
        ((2, 3), (2, 3), (2, 3)),
        2,
        0,
        0,
    ),
    (Alpha, dict(tau_initializer=0.01, time_major=True), (5, 2, 4), (5, 2, 4), 2, 0, 0),
    (TemporalAvgPool, {}, (2, 5, 3), (2, 3), 0, 0, 0),
    (TemporalAvgPool, {"time_major": True}, (5, 2, 3, 2), (2, 3, 2), 0, 0, 0),
]


@pytest.mark.parametrize(
    "cls, kwargs, input_shape, output_shape, trainable, non_trainable, seeds",
    LAYER_CASES,
    ids=[f"{case[0].__name__}-{i}" for i, case in enumerate(LAYER_CASES)],
)
def test_keras_layer_checks(
    cls, kwargs, input_shape, output_shape, trainable, non_trainable, seeds
):
    run_layer_test(
        cls,
        kwargs,
        input_shape=input_shape,
        expected_output_shape=output_shape,
        expected_num_trainable_weights=trainable,
        expected_num_non_trainable_weights=non_trainable,
        expected_num_seed_generators=seeds,
        expected_num_non_trainable_variables=non_trainable + seeds,
        supports_masking=False,
    )


# ----------------------------------------------------------- functional ---


def spiking_chain(dt=1 / 64, **kwargs):
    """Input((None, 784)) -> every layer; the layers, and the model."""
    layers = [
        SpikingActivation("linear", dt=dt, seed=3, **kwargs),
        Lowpass(0.05, dt=dt, **kwargs),
        Alpha(0.02, dt=dt, **kwargs),
        TemporalAvgPool(**kwargs),
    ]
    inp = keras.Input((None, 784))
    out = inp
    for layer in layers:
        out = layer(out)
    return layers, keras.Model(inp, out)


def chain_reference(x, dt=1 / 64):
    """The NumPy reference of ``spiking_chain``'s model."""
    v0 = SpikingActivation("linear", seed=3, return_state=True)(
        np.zeros((x.shape[0], 1, x.shape[2]), "float32")
    )[1]
    spikes, _ = references.spikes(x, dt, numpy(v0))
    y = references.lowpass(spikes, 0.05, dt, 0.0)
    y = references.alpha(y, 0.02, dt, 0.0)
    return references.temporal_avg_pool(y)


def dyadic_input(batch, steps, units=784, dt=1 / 64, seed=0):
    """Rates whose increments are multiples of 1/256 (exact in float32)."""
    k = np.random.default_rng(seed).integers(-512, 513, size=(batch, steps, units))
    return (k / (256 * dt)).astype("float32")


def test_variable_time_length_matches_reference():
    layers, model = spiking_chain()
    assert [tuple(layer.output.shape) for layer in layers] == [
        (None, None, 784),
        (None, None, 784),
        (None, None, 784),
        (None, 784),
    ]
    for steps in (5, 17, 70):
        x = dyadic_input(2, steps, seed=steps)
        y = model.predict(x, verbose=0)
        assert y.shape == (2, 784)
        ref = chain_reference(x)
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_symbolic_output_shapes_match_eager_ones():
    x = np.zeros((2, 6, 3, 4), "float32")
    for layer in [
        SpikingActivation("relu", return_state=True, return_sequences=False),
        Lowpass(0.01, return_state=True),
        Alpha(0.01, return_state=True, time_major=True),
        TemporalAvgPool(time_major=True),
    ]:
        symbolic = layer(keras.Input(batch_shape=x.shape))
        eager = layer(x)
        shapes = [tuple(t.shape) for t in keras.tree.flatten(eager)]
        assert [tuple(t.shape) for t in keras.tree.flatten(symbolic)] == shapes
        assert keras.tree.flatten(layer.compute_output_shape(x.shape)) == (
            keras.tree.flatten(shapes)
        )


def test_stateful_model_predict_carries_state():
    x = dyadic_input(2, 24, units=5)
    inp = keras.Input(batch_shape=(2, None, 5))
    spikes = SpikingActivation("linear", dt=1 / 64, seed=4, stateful=True)
    filt = Lowpass(0.05, dt=1 / 64, stateful=True)
    model = keras.Model(inp, filt(spikes(inp)))
    plain = SpikingActivation("linear", dt=1 / 64, seed=4)(inp)
    plain = Lowpass(0.05, dt=1 / 64)(plain)
    whole = keras.Model(inp, plain).predict(x, verbose=0, batch_size=2)
    first = model.predict(x[:, :12], verbose=0, batch_size=2)
    second = model.predict(x[:, 12:], verbose=0, batch_size=2)
    np.testing.assert_allclose(np.concatenate([first, second], 1), whole, atol=1e-3)
    spikes.reset_state()
    filt.reset_state()
    np.testing.assert_allclose(
        model.predict(x[:, :12], verbose=0, batch_size=2), first, atol=1e-4
    )


# ----------------------------------------------------------- .keras files ---


def every_layer_model(dt=0.01):
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, 6))
    x = keras.layers.Dense(8)(inp)
    x = SpikingActivation("relu", dt=dt, seed=5)(x)
    x = Lowpass(keras.initializers.RandomUniform(0.01, 0.1, seed=1), dt=dt)(x)
    x = Alpha(0.03, dt=dt, level_initializer=keras.initializers.RandomNormal(seed=2))(x)
    pooled = TemporalAvgPool()(x)
    x = SpikingActivation("tanh", dt=dt, seed=6)(keras.layers.Reshape((-1, 4, 2))(x))
    last = Lowpass(0.02, dt=dt, return_sequences=False)(x)
    x = keras.layers.Concatenate()([pooled, keras.layers.Flatten()(last)])
    return keras.Model(inp, keras.layers.Dense(3)(x))


def test_keras_file_round_trip(tmp_path):
    model = every_layer_model()
    x = np.random.default_rng(7).normal(0, 30, size=(4, 12, 6)).astype("float32")
    # Random initializers: every weight differs from its layer's default.
    expected = model.predict(x, verbose=0)

    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    registered = {layer["registered_name"] for layer in config["config"]["layers"]}
    assert {
        "keras_spiking>SpikingActivation",
        "keras_spiking>Lowpass",
        "keras_spiking>Alpha",
        "keras_spiking>TemporalAvgPool",
    } <= registered

    keras.backend.clear_session(free_memory=False)
    loaded = keras.models.load_model(path)  # no custom_objects
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    for original, restored in zip(model.layers, loaded.layers, strict=True):
        assert type(original) is type(restored)
        assert original.get_config() == restored.get_config()
        for a, b in zip(original.weights, restored.weights, strict=True):
            np.testing.assert_array_equal(numpy(a), numpy(b))


def test_keras_file_round_trip_with_dt_variable(tmp_path):
    dt = keras.Variable(0.01, trainable=False, dtype="float32", name="dt")
    inp = keras.Input((None, 3))
    out = Lowpass(0.05, dt=dt)(SpikingActivation("relu", dt=dt, seed=1)(inp))
    model = keras.Model(inp, out)
    dt.assign(0.02)
    x = np.random.default_rng(8).uniform(0, 100, size=(2, 10, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "dt.keras")
    loaded = keras.models.load_model(tmp_path / "dt.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)


# ------------------------------------------------------------- compiled ---

JIT = True if XLA else "auto"


# A fixed and an unknown number of steps trace different graphs on TensorFlow;
# JAX always traces concrete shapes.
@pytest.mark.parametrize("steps", [10, None] if UNKNOWN_AXES else [None])
def test_compiled_fit_and_predict(steps):
    """XLA (``jit_compile=True``) on TensorFlow and JAX; torch's default."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((steps, 4))
    x = keras.layers.Dense(6)(inp)
    x = SpikingActivation("relu", dt=0.01, seed=2)(x)
    x = Lowpass(0.05, dt=0.01)(x)
    x = Alpha(0.05, dt=0.01)(x)
    out = keras.layers.Dense(1)(TemporalAvgPool()(x))
    model = keras.Model(inp, out)
    data = np.random.default_rng(9).normal(0, 20, size=(8, 10, 4)).astype("float32")
    eager = numpy(model(data))
    model.compile("sgd", "mse", jit_compile=JIT)
    predicted = model.predict(data, verbose=0)
    np.testing.assert_allclose(predicted, eager, rtol=1e-4, atol=1e-4)
    before = [numpy(w) for w in model.trainable_weights]
    model.fit(data, np.ones((8, 1)), epochs=2, batch_size=4, verbose=0)
    after = [numpy(w) for w in model.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    np.testing.assert_allclose(
        model.predict(data, verbose=0), numpy(model(data)), rtol=1e-4, atol=1e-4
    )


# --------------------------------------------------------------- mixed ---


def test_mixed_float16_policy_keeps_outputs():
    x = dyadic_input(2, 20, units=784)
    _, model32 = spiking_chain()
    expected = model32.predict(x, verbose=0)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layers, model16 = spiking_chain()
    finally:
        keras.config.set_dtype_policy("float32")
    out = model16.predict(x, verbose=0)
    assert out.dtype == np.float16
    assert all(w.dtype == "float32" for layer in layers for w in layer.weights)
    np.testing.assert_allclose(
        out.astype(np.float32), expected, atol=2e-3 * np.abs(expected).max()
    )


# -------------------------------------------------------------- training ---


def test_fit_lowers_the_loss():
    """A spiking classifier learns a linearly separable task."""
    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(10)
    features = rng.normal(size=(256, 4)).astype("float32")
    labels = (features @ np.array([1.0, -1.0, 0.5, 0.0]) > 0).astype("int32")
    x = np.repeat(features[:, None], 20, axis=1)  # constant over 20 steps

    inp = keras.Input((None, 4))
    h = keras.layers.Dense(32)(inp)
    h = SpikingActivation("relu", dt=0.05, seed=3)(h)
    h = Lowpass(0.1, dt=0.05)(h)
    out = keras.layers.Dense(2)(TemporalAvgPool()(h))
    model = keras.Model(inp, out)
    model.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    initial_loss, _ = model.evaluate(x, labels, verbose=0)
    model.fit(x, labels, epochs=15, batch_size=32, verbose=0)
    final_loss, accuracy = model.evaluate(x, labels, verbose=0)
    assert final_loss < 0.5 * initial_loss
    assert accuracy > 0.9
    # Trained on 20 steps, it also runs (better) on longer inputs.
    _, longer_accuracy = model.evaluate(np.repeat(x, 3, axis=1), labels, verbose=0)
    assert longer_accuracy > 0.9


def test_default_dt_is_a_millisecond():
    assert keras_spiking.default.dt == 0.001


# ------------------------------------------------ sequences of 0 steps ---

SEQUENCE_LAYERS = {
    "rate": lambda **kwargs: SpikingActivation("relu", **kwargs),
    "if": lambda **kwargs: SpikingActivation("relu", neuron="if", **kwargs),
    "lowpass": lambda **kwargs: Lowpass(0.01, **kwargs),
    "alpha": lambda **kwargs: Alpha(0.01, **kwargs),
}


def starting_states(name, batch=2, units=3):
    """Distinct states to start from (for the IF neuron: a fraction in [0, 1)
    and an integer level <= 0)."""
    first = np.arange(batch * units, dtype="float32").reshape(batch, units) / 8
    if name == "if":
        return [first, -np.ones((batch, units), "float32")]
    if name == "alpha":
        return [first, first + 1]
    return [first]


@pytest.mark.parametrize("name", SEQUENCE_LAYERS)
@pytest.mark.parametrize("time_major", [False, True])
def test_zero_steps_give_an_empty_sequence(name, time_major):
    shape = (0, 2, 3) if time_major else (2, 0, 3)
    out = numpy(
        SEQUENCE_LAYERS[name](time_major=time_major)(np.zeros(shape, "float32"))
    )
    assert out.shape == shape
    assert out.dtype == np.float32
    # and symbolically
    inp = keras.Input(batch_shape=shape)
    assert tuple(SEQUENCE_LAYERS[name](time_major=time_major)(inp).shape) == shape


@pytest.mark.parametrize("name", SEQUENCE_LAYERS)
def test_zero_steps_leave_the_state_where_it_was(name):
    start = starting_states(name)
    layer = SEQUENCE_LAYERS[name](return_state=True)
    out, *states = numpy(layer(np.zeros((2, 0, 3), "float32"), initial_state=start))
    assert out.shape == (2, 0, 3)
    assert len(states) == len(start)
    for state, expected in zip(states, start, strict=True):
        np.testing.assert_array_equal(state, expected)

    # a stateful layer keeps its state through an empty call
    stateful = SEQUENCE_LAYERS[name](stateful=True, return_state=True)
    _, *before = numpy(stateful(np.ones((2, 4, 3), "float32")))
    out, *after = numpy(stateful(np.ones((2, 0, 3), "float32")))
    assert out.shape == (2, 0, 3)
    for state, expected in zip(after, before, strict=True):
        np.testing.assert_array_equal(state, expected)
    for variable, expected in zip(stateful.states, before, strict=True):
        np.testing.assert_array_equal(numpy(variable), expected)


@pytest.mark.parametrize("name", SEQUENCE_LAYERS)
def test_zero_steps_have_no_last_step(name):
    layer = SEQUENCE_LAYERS[name](return_sequences=False, name="last_step")
    with pytest.raises(ValueError) as info:
        layer(np.zeros((2, 0, 3), "float32"))
    message = str(info.value).split("Arguments received")[0]
    assert "'last_step'" in message and "return_sequences=False" in message
    assert "at least one time step" in message and "0 time steps" in message
    with pytest.raises(ValueError, match="last_step2.*at least one time step"):
        SEQUENCE_LAYERS[name](return_sequences=False, name="last_step2")(
            keras.Input((0, 3))
        )


@pytest.mark.parametrize("time_major", [False, True])
def test_temporal_avg_pool_of_zero_steps_is_undefined(time_major):
    shape = (0, 2, 3) if time_major else (2, 0, 3)
    layer = TemporalAvgPool(time_major=time_major, name="mean_of_nothing")
    with pytest.raises(ValueError) as info:
        layer(np.zeros(shape, "float32"))
    message = str(info.value).split("Arguments received")[0]
    assert "'mean_of_nothing'" in message and "at least one time step" in message
    with pytest.raises(ValueError, match="mean_of_nothing2.*at least one time step"):
        TemporalAvgPool(time_major=time_major, name="mean_of_nothing2")(
            keras.Input(batch_shape=shape)
        )


# ----------------------------------------------- initial_state checks ---


@pytest.mark.parametrize("name", SEQUENCE_LAYERS)
@pytest.mark.parametrize("bad", [(2, 5), (3, 3), (2, 3, 1), (6,), (2, 1)])
def test_initial_state_of_the_wrong_shape_is_rejected(name, bad):
    good = starting_states(name)
    states = [np.zeros(bad, "float32")] + good[1:]
    layer = SEQUENCE_LAYERS[name](name="bad_start")
    with pytest.raises(ValueError) as info:
        layer(np.zeros((2, 4, 3), "float32"), initial_state=states)
    message = str(info.value).split("Arguments received")[0]
    assert "'bad_start'" in message
    assert "initial_state[0]" in message
    assert "(2, 3)" in message and str(bad) in message


@pytest.mark.parametrize("name", SEQUENCE_LAYERS)
def test_initial_state_checks_symbolic_shapes(name):
    count = len(starting_states(name))
    layer = SEQUENCE_LAYERS[name](name="bad_symbolic_start")
    with pytest.raises(
        ValueError, match=r"bad_symbolic_start.*\(None, 3\).*\(None, 5\)"
    ):
        layer(keras.Input((4, 3)), initial_state=[keras.Input((5,))] * count)
    # the right shape is accepted, with the batch axis unknown
    layer = SEQUENCE_LAYERS[name]()
    out = layer(keras.Input((4, 3)), initial_state=[keras.Input((3,))] * count)
    assert tuple(out.shape) == (None, 4, 3)


@pytest.mark.parametrize("name", SEQUENCE_LAYERS)
def test_initial_state_count_is_checked(name):
    count = len(starting_states(name))
    layer = SEQUENCE_LAYERS[name](name="state_count")
    states = [np.zeros((2, 3), "float32")] * (count + 1)
    with pytest.raises(ValueError) as info:
        layer(np.zeros((2, 4, 3), "float32"), initial_state=states)
    message = str(info.value).split("Arguments received")[0]
    assert "'state_count'" in message and f"expects {count} initial state" in message
    assert f"got {count + 1}" in message
