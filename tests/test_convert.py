"""``keras_spiking.convert``: ANN to spiking network conversion.

References: the ANN itself (Keras' own ``Dense``/``Conv``/``BatchNormalization``
at inference), and NumPy formulas (ReLU of ``x W + b``, the lowpass filter in
``tests.references``, percentiles).
"""

import keras
import numpy as np
import pytest

import keras_spiking
from keras_spiking.conversion import fold_batch_norm
from tests import references

RNG = np.random.default_rng(0)


def randomize_batch_norms(model, rng):
    """Non-trivial BatchNormalization statistics and affine parameters."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 2.0, n),  # gamma
                    rng.normal(0, 0.5, n),  # beta
                    rng.normal(0, 0.5, n),  # moving mean
                    rng.uniform(0.5, 2.0, n),  # moving variance
                ]
            )


def dense_model():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(7, activation="relu"),
            keras.layers.ReLU(),
            keras.layers.Dense(3),
        ],
        name="dense_net",
    )
    randomize_batch_norms(model, np.random.default_rng(1))
    return model


def conv_model():
    inp = keras.Input((10, 10, 2), name="image")
    x = keras.layers.ZeroPadding2D(1)(inp)
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="conv1")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.AveragePooling2D(2)(x)
    y = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(x)
    y = keras.layers.Dropout(0.3)(y)
    x = keras.layers.Add()([x, y])  # skip connection
    z = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    z = keras.layers.BatchNormalization()(z)
    z = keras.layers.Activation("relu")(z)
    x = keras.layers.Concatenate(axis=3)([x, z])
    x = keras.layers.SeparableConv2D(3, 3)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu", name="relu3")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    g = keras.layers.GlobalAveragePooling2D()(x)
    f = keras.layers.Flatten()(x)
    x = keras.layers.Concatenate()([g, f])
    out = keras.layers.Dense(5, name="head")(x)
    model = keras.Model(inp, out, name="conv_net")
    randomize_batch_norms(model, np.random.default_rng(2))
    return model


def repeat(x, steps):
    return np.repeat(np.asarray(x, np.float32)[:, None], steps, axis=1)


def predict(model, x):
    return np.asarray(model.predict(x, verbose=0, batch_size=len(x)))


@pytest.mark.parametrize("make", [dense_model, conv_model])
def test_rate_model_equals_ann(make):
    """``spiking=False``: every step's output equals the ANN's (1e-5),
    with rescaled layers and normalisation too (the scalings cancel)."""
    model = make()
    shape = model.inputs[0].shape[1:]
    x = RNG.uniform(0, 1, (4, *shape)).astype(np.float32)
    if "MaxPooling2D" in {type(layer).__name__ for layer in model.layers}:
        # the reference: the same ANN with average pooling
        ann = predict(_max_to_avg(model), x)
    else:
        ann = predict(model, x)
    for kwargs in (
        {"scale_firing_rates": 7.0},
        {"normalize": "99%", "calibration_data": x, "dt": 0.01},
    ):
        rate = keras_spiking.convert(
            model, spiking=False, output="sequence", max_to_avg_pool=True, **kwargs
        )
        out = predict(rate, repeat(x, 3))
        np.testing.assert_allclose(out, np.repeat(ann[:, None], 3, 1), atol=1e-5)


def _max_to_avg(model):
    """``model`` with its MaxPooling2D replaced by AveragePooling2D."""

    def clone(layer):
        if isinstance(layer, keras.layers.MaxPooling2D):
            return keras.layers.AveragePooling2D.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    new = keras.models.clone_model(model, clone_function=clone)
    new.set_weights(model.get_weights())
    return new


@pytest.mark.parametrize(
    "make",
    [
        lambda: keras.layers.Dense(5),
        lambda: keras.layers.Dense(5, use_bias=False),
        lambda: keras.layers.Conv1D(4, 3, padding="same"),
        lambda: keras.layers.Conv2D(4, 3, strides=2),
        lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2),
        lambda: keras.layers.SeparableConv2D(4, 3, depth_multiplier=2),
    ],
    ids=["dense", "dense-nobias", "conv1d", "conv2d", "depthwise", "separable"],
)
def test_batch_norm_folding(make):
    """Folded weights == layer then BatchNormalization at inference (1e-5)."""
    layer = make()
    shape = (6,) if isinstance(layer, keras.layers.Dense) else (8, 8, 3)
    if isinstance(layer, keras.layers.Conv1D):
        shape = (9, 3)
    inp = keras.Input(shape)
    bn = keras.layers.BatchNormalization(epsilon=0.01)
    model = keras.Model(inp, bn(layer(inp)))
    randomize_batch_norms(model, np.random.default_rng(3))
    rng = np.random.default_rng(4)
    layer.set_weights([rng.normal(0, 1, w.shape) for w in layer.get_weights()])
    x = rng.normal(0, 1, (3, *shape)).astype(np.float32)
    expected = predict(model, x)

    folded = make().__class__.from_config(dict(layer.get_config(), use_bias=True))
    folded.build((None, *shape))
    folded.set_weights(fold_batch_norm(layer, bn))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(folded(x)), expected, atol=1e-5
    )

    converted = keras_spiking.convert(model, spiking=False, output="last")
    assert not any(
        isinstance(getattr(lay, "layer", lay), keras.layers.BatchNormalization)
        for lay in converted.layers
    )
    np.testing.assert_allclose(predict(converted, repeat(x, 2)), expected, atol=1e-5)


def first_layer_model():
    rng = np.random.default_rng(5)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(6, activation="relu", name="hidden")]
    )
    w = rng.normal(0, 1, (4, 6)).astype(np.float32)
    b = rng.normal(0, 0.5, 6).astype(np.float32)
    model.layers[0].set_weights([w, b])
    return model, w, b


@pytest.mark.parametrize("neuron", ["rate", "if"])
@pytest.mark.parametrize("scale", [1.0, 4.0])
@pytest.mark.parametrize("steps,dt", [(10, 0.1), (37, 0.01)])
def test_first_layer_rates(scale, steps, dt, neuron):
    """Each neuron's rate over T steps is within 1/(s T dt) of its ReLU rate
    (the voltage starts in [0, 1), so the spike count is off by less than 1)."""
    model, w, b = first_layer_model()
    x = np.random.default_rng(6).uniform(0, 3, (20, 4)).astype(np.float32)
    relu = np.maximum(x.astype(np.float64) @ w + b, 0)
    converted = keras_spiking.convert(
        model,
        dt=dt,
        scale_firing_rates=scale,
        seed=3,
        output="average",
        neuron=neuron,
    )
    assert converted.get_layer("hidden_spiking").neuron == neuron
    rates = predict(converted, repeat(x, steps))
    bound = 1 / (scale * steps * dt)
    assert np.all(np.abs(rates - relu) < bound * (1 + 1e-5))
    # spikes happen, and the bound is not trivially loose
    assert np.abs(rates - relu).max() > 0.1 * bound


def test_normalize_sets_percentile_to_one_spike_per_step():
    """``normalize``: scale_in of each layer is scale / (percentile * dt),
    the percentile taken over the ANN's activations (NumPy reference)."""
    model, w, b = first_layer_model()
    x = np.random.default_rng(7).uniform(0, 3, (50, 4)).astype(np.float32)
    relu = np.maximum(x.astype(np.float64) @ w + b, 0)
    for normalize, q in (("max", 100.0), ("99.9%", 99.9), ("90%", 90.0)):
        converted = keras_spiking.convert(
            model,
            dt=0.002,
            normalize=normalize,
            calibration_data=x,
            scale_firing_rates=2.0,
        )
        scale_in = converted.get_layer("hidden_spiking_scale_in").scale
        expected = 2.0 / (np.percentile(relu, q) * 0.002)
        np.testing.assert_allclose(scale_in, expected, rtol=1e-5)
    # with "max", no neuron fires more than one spike per step on that data
    converted = keras_spiking.convert(
        model, dt=0.002, normalize="max", calibration_data=x, output="sequence"
    )
    probe = keras.Model(converted.inputs, converted.get_layer("hidden_spiking").output)
    spikes = predict(probe, repeat(x, 20)) * 0.002
    assert spikes.max() == 1


def test_output_readouts():
    """``last`` is the last step; ``lowpass`` the NumPy lowpass of the
    (constant) rate-model output; ``average`` the mean."""
    model = dense_model()
    x = RNG.uniform(0, 1, (3, 6)).astype(np.float32)
    ann = predict(model, x)
    seq = repeat(x, 6)
    last = keras_spiking.convert(model, spiking=False, output="last")
    np.testing.assert_allclose(predict(last, seq), ann, atol=1e-5)
    low = keras_spiking.convert(model, spiking=False, output="lowpass", synapse=0.01)
    expected = references.lowpass(np.repeat(ann[:, None], 6, 1), 0.01, 0.001, 0.0)
    np.testing.assert_allclose(predict(low, seq), expected[:, -1], atol=1e-5)
    avg = keras_spiking.convert(model, spiking=False)
    np.testing.assert_allclose(predict(avg, seq), ann, atol=1e-5)


def test_swap_activations_and_config_round_trip():
    """A swapped activation becomes the SpikingActivation's rate function or
    the given layer; the converted model survives a config round trip."""
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(5, activation="tanh", name="a"),
            keras.layers.Dense(3, activation="softmax", name="b"),
        ]
    )
    converted = keras_spiking.convert(
        model,
        swap_activations={
            "tanh": "relu",
            keras.activations.softmax: keras.layers.Activation("softmax"),
        },
        output="last",
        seed=0,
    )
    spiking = converted.get_layer("a_spiking")
    assert isinstance(spiking, keras_spiking.SpikingActivation)
    assert spiking.activation is keras.activations.relu
    assert spiking.seed == 0
    copy = keras.Model.from_config(converted.get_config())
    copy.set_weights(converted.get_weights())
    x = repeat(RNG.uniform(0, 1, (2, 4)), 5)
    np.testing.assert_allclose(predict(copy, x), predict(converted, x), atol=1e-6)
    np.testing.assert_allclose(predict(converted, x).sum(axis=-1), 1, atol=1e-5)


def test_accuracy_grows_with_steps_and_scale():
    """On a small trained classifier, accuracy does not fall as the number
    of steps or the firing-rate scale grows (seeded, so deterministic)."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(8)
    centres = rng.normal(0, 2, (3, 4))
    y = rng.integers(0, 3, 1200)
    x = (centres[y] + rng.normal(0, 1.0, (1200, 4))).astype(np.float32)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3),
        ]
    )
    model.compile(
        keras.optimizers.Adam(0.05),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x[:200], y[:200], epochs=20, batch_size=200, verbose=0)
    x_test, y_test = x[200:], y[200:]
    ann = np.mean(np.argmax(predict(model, x_test), -1) == y_test)
    assert ann > 0.8

    def accuracy(scale, steps):
        """Accuracy after each of ``steps`` steps, from one run of the last:
        the mean of the first n outputs is the average read-out on n steps
        (the network is causal and its voltages seeded)."""
        converted = keras_spiking.convert(
            model, dt=0.01, scale_firing_rates=scale, seed=1, output="sequence"
        )
        running = np.cumsum(predict(converted, repeat(x_test, steps[-1])), axis=1)
        return [np.mean(np.argmax(running[:, n - 1], -1) == y_test) for n in steps]

    by_steps = accuracy(1.0, (2, 20, 200))
    by_scale = [accuracy(scale, (5,))[0] for scale in (1.0, 10.0, 1000.0)]
    assert by_steps == sorted(by_steps), by_steps
    assert by_scale == sorted(by_scale), by_scale
    assert by_steps[0] < ann - 0.1  # too few spikes: clearly worse
    assert by_scale[-1] >= ann - 0.02


def test_unsupported_layers_and_activations():
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, "sigmoid")])
    with pytest.raises(ValueError, match=r"'sigmoid'.*swap_activations"):
        keras_spiking.convert(dense)
    norm = keras.Sequential([keras.Input((4,)), keras.layers.LayerNormalization()])
    with pytest.raises(ValueError, match=r"LayerNormalization.*Supported layers"):
        keras_spiking.convert(norm)
    pool = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.MaxPooling2D(2)])
    with pytest.raises(ValueError, match=r"max_to_avg_pool=True"):
        keras_spiking.convert(pool)
    relu6 = keras.Sequential([keras.Input((4,)), keras.layers.ReLU(max_value=6.0)])
    with pytest.raises(ValueError, match=r"ReLU with max_value=6.0"):
        keras_spiking.convert(relu6)
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    nested = keras.Sequential([keras.Input((4,)), inner])
    with pytest.raises(ValueError, match=r"nested model"):
        keras_spiking.convert(nested)

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match=r"no graph of layers"):
        keras_spiking.convert(Sub())
    with pytest.raises(TypeError, match=r"keras.Model"):
        keras_spiking.convert(keras.layers.Dense(3))


def test_bad_arguments():
    model = dense_model()
    with pytest.raises(ValueError, match=r"`output`"):
        keras_spiking.convert(model, output="mean")
    with pytest.raises(ValueError, match=r"needs `synapse`"):
        keras_spiking.convert(model, output="lowpass")
    with pytest.raises(ValueError, match=r"only with output='lowpass'"):
        keras_spiking.convert(model, synapse=0.1)
    with pytest.raises(ValueError, match=r"percentile string"):
        keras_spiking.convert(model, normalize="p99", calibration_data=np.ones((1, 6)))
    with pytest.raises(ValueError, match=r"\(0, 100\]"):
        keras_spiking.convert(model, normalize="120%", calibration_data=np.ones((1, 6)))
    with pytest.raises(ValueError, match=r"needs `calibration_data`"):
        keras_spiking.convert(model, normalize="max")
    with pytest.raises(ValueError, match=r"names \['nope'\]"):
        keras_spiking.convert(model, scale_firing_rates={"nope": 2.0})
    with pytest.raises(ValueError, match=r"> 0"):
        keras_spiking.convert(model, scale_firing_rates=0.0)
    with pytest.raises(TypeError, match=r"`scale_firing_rates`"):
        keras_spiking.convert(model, scale_firing_rates="2")
    with pytest.raises(TypeError, match=r"`seed`"):
        keras_spiking.convert(model, seed=1.5)
    with pytest.raises(ValueError, match=r"key 'nope'"):
        keras_spiking.convert(model, swap_activations={"nope": "relu"})
