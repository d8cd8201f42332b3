"""``keras_spiking.convert``: ANN to spiking network conversion.

References: the ANN itself (Keras' own ``Dense``/``Conv``/``BatchNormalization``
at inference), and NumPy formulas (ReLU of ``x W + b``, the lowpass filter in
``tests.references``, percentiles).
"""

import keras
import numpy as np
import pytest

import keras_spiking
from keras_spiking.conversion import LastStep, fold_batch_norm
from tests import references
from tests.harness import run_layer_test

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
    called = Sub()
    called(np.ones((2, 4), np.float32))  # built, but still no graph
    with pytest.raises(ValueError, match=r"subclassed model.*'sub"):
        keras_spiking.convert(called)
    lam = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: 2 * x)])
    with pytest.raises(ValueError, match=r"layer 'lambda.*\(Lambda\) cannot be"):
        keras_spiking.convert(lam)
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
    with pytest.raises(TypeError, match=r"`spiking` to be True or False; got 0"):
        keras_spiking.convert(model, spiking=0)
    with pytest.raises(ValueError, match=r"key 'nope'"):
        keras_spiking.convert(model, swap_activations={"nope": "relu"})


# ------------------------------------------------ shared layers and folding --


def shared_dense_model(case):
    """One Dense called twice (on the input and on its ReLU), each call's
    output followed by a BatchNormalization or not, as ``case`` says."""
    inp = keras.Input((5,))
    dense = keras.layers.Dense(4, name="shared")
    a = dense(inp)
    b = dense(keras.layers.ReLU(name="pre")(inp))
    bn1 = keras.layers.BatchNormalization(name="bn1")
    bn2 = keras.layers.BatchNormalization(name="bn2")
    if case == "first":
        a = bn1(a)
    elif case == "second":
        b = bn1(b)
    elif case == "same_layer":
        a, b = bn1(a), bn1(b)
    elif case in ("different", "equal_statistics"):
        a, b = bn1(a), bn2(b)
    elif case == "bn_shared_elsewhere":
        # bn1 also normalises another Dense's ReLU output: not foldable there
        other = keras.layers.Activation("relu")(keras.layers.Dense(4)(inp))
        a, b = bn1(a), bn1(b)
        b = keras.layers.Add()([b, bn1(other)])
    out = keras.layers.Concatenate()([a, b])
    model = keras.Model(inp, keras.layers.Activation("relu", name="out")(out))
    rng = np.random.default_rng(9)
    dense.set_weights([rng.normal(0, 1, (5, 4)), rng.normal(0, 0.5, 4)])
    randomize_batch_norms(model, rng)
    if case == "equal_statistics":
        bn2.set_weights(bn1.get_weights())
    return model


def batch_norms_in(model):
    return [
        lay
        for lay in model.layers
        if isinstance(getattr(lay, "layer", lay), keras.layers.BatchNormalization)
    ]


@pytest.mark.parametrize(
    "case,n_kept",
    [
        ("first", 1),  # the second call has no BN: folding would change it
        ("second", 1),
        ("same_layer", 0),  # every call followed by the same BN: folded
        ("different", 2),  # different statistics: no shared folded weights
        ("equal_statistics", 0),  # two BN layers that fold to the same weights
        ("bn_shared_elsewhere", 1),  # folded after the Dense, kept after the ReLU
    ],
)
def test_shared_layer_batch_norm(case, n_kept):
    """A Dense shared by two calls: the rate model equals the ANN (1e-5) in
    every case, and a BatchNormalization is folded only when it is exact for
    both calls (the number of BatchNormalization layers kept as per-step
    layers, counted by hand)."""
    model = shared_dense_model(case)
    x = np.random.default_rng(10).normal(0, 1, (6, 5)).astype(np.float32)
    ann = predict(model, x)
    for kwargs in ({}, {"normalize": "90%", "calibration_data": x}):
        rate = keras_spiking.convert(model, spiking=False, output="sequence", **kwargs)
        np.testing.assert_allclose(
            predict(rate, repeat(x, 2)), np.repeat(ann[:, None], 2, 1), atol=1e-5
        )
        assert len(batch_norms_in(rate)) == n_kept
        # the shared Dense stays one layer with one set of weights
        assert sum(lay.name == "shared" for lay in rate.layers) == 1


def test_normalize_shared_layer_uses_every_call():
    """A ReLU Dense called on two inputs: its one rate scale is set by the
    percentile of its activations over both calls (NumPy reference)."""
    rng = np.random.default_rng(11)
    in1, in2 = keras.Input((3,), name="in1"), keras.Input((3,), name="in2")
    dense = keras.layers.Dense(4, activation="relu", name="hidden")
    out = keras.layers.Concatenate()([dense(in1), dense(in2)])
    model = keras.Model([in1, in2], out)
    w = rng.normal(0, 1, (3, 4)).astype(np.float32)
    b = rng.normal(0, 0.5, 4).astype(np.float32)
    dense.set_weights([w, b])
    x1 = rng.uniform(0, 5, (40, 3)).astype(np.float32)  # the larger activations
    x2 = rng.uniform(0, 1, (40, 3)).astype(np.float32)
    relu = np.maximum(np.concatenate([x1, x2]).astype(np.float64) @ w + b, 0)
    converted = keras_spiking.convert(
        model, dt=0.01, normalize="90%", calibration_data=[x1, x2]
    )
    scale_in = converted.get_layer("hidden_spiking_scale_in").scale
    np.testing.assert_allclose(
        scale_in, 1 / (np.percentile(relu, 90) * 0.01), rtol=1e-5
    )


# -------------------------------------------------------------- LastStep --


@pytest.mark.parametrize("time_major", [False, True])
def test_last_step(time_major):
    """The last step of ``(batch, time, ...)`` or ``(time, batch, ...)``."""
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    layer = LastStep(time_major=time_major)
    expected = x[-1] if time_major else x[:, -1]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), expected)
    assert layer.compute_output_shape((2, 3, 4)) == expected.shape
    assert layer.compute_output_shape((None, 3, 4)) == (
        (3, 4) if time_major else (None, 4)
    )
    again = LastStep.from_config(layer.get_config())
    assert again.time_major is time_major
    run_layer_test(
        LastStep,
        {"time_major": time_major},
        input_shape=(2, 3, 4),
        expected_output_shape=expected.shape,
        expected_num_trainable_weights=0,
        supports_masking=False,
    )


def test_last_step_bad_input():
    """A clear error, naming the layer, for an input without a time axis or
    a ``time_major`` that is not a bool."""
    with pytest.raises(ValueError, match=r"'last'.*\(LastStep\).*rank >= 3"):
        LastStep(name="last")(keras.Input((4,)))
    with pytest.raises(ValueError, match=r"'last'.*\(time, batch, \.\.\.\)"):
        LastStep(time_major=True, name="last").compute_output_shape((2, 4))
    with pytest.raises(TypeError, match=r"`time_major`.*got 'yes'"):
        LastStep(time_major="yes")


# ------------------------------------------------------- argument checks --


def small_model():
    return keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2, activation="relu", name="h")]
    )


@pytest.mark.parametrize("spiking", [True, False])
@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"neuron": "lif"}, ValueError, r"`neuron`.*\('rate', 'if'\).*'lif'"),
        ({"n_steps": 0}, ValueError, r"`n_steps`.*positive int.*got 0"),
        ({"n_steps": 2.5}, TypeError, r"`n_steps`.*positive int.*2\.5"),
        ({"n_steps": True}, TypeError, r"`n_steps`.*positive int.*True"),
        ({"name": 3}, TypeError, r"`name`.*string.*got 3"),
        ({"max_to_avg_pool": "yes"}, TypeError, r"`max_to_avg_pool`.*'yes'"),
        ({"spiking_aware_training": 1}, TypeError, r"`spiking_aware_training`"),
        ({"scale_firing_rates": [2.0]}, TypeError, r"`scale_firing_rates`.*\[2"),
        ({"scale_firing_rates": float("inf")}, ValueError, r"finite float > 0"),
        ({"scale_firing_rates": float("nan")}, ValueError, r"finite float > 0"),
        ({"scale_firing_rates": {"h": "2"}}, TypeError, r"\['h'\].*'2'"),
        ({"scale_firing_rates": {1: 2.0}}, TypeError, r"keys.*layer names.*1"),
        ({"synapse": -1.0, "output": "lowpass"}, ValueError, r"`synapse`.*-1"),
        ({"calibration_data": np.ones((2, 3))}, ValueError, r"only with `normal"),
        ({"swap_activations": {"tanh": "nope"}}, ValueError, r"\['tanh'\].*'nope'"),
        ({"unknown_option": 1}, TypeError, r"unexpected keyword.*unknown_option"),
        ({"initial_voltage": 1.0}, ValueError, r"`initial_voltage`.*\[0, 1\).*1\.0"),
        ({"initial_voltage": "zero"}, ValueError, r"`initial_voltage`.*'zero'"),
    ],
)
def test_bad_arguments_whatever_spiking(kwargs, error, match, spiking):
    """Every argument is checked up front, for the rate model too."""
    with pytest.raises(error, match=match):
        keras_spiking.convert(small_model(), spiking=spiking, **kwargs)


@pytest.mark.parametrize("spiking", [True, False])
def test_if_neurons_take_relu_only(spiking):
    """A swap to another rate function needs neuron='rate'."""
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2, activation="tanh", name="h")]
    )
    swap = {"swap_activations": {"tanh": "sigmoid"}, "spiking": spiking}
    with pytest.raises(ValueError, match=r"\['tanh'\].*neuron='if'.*'relu' only"):
        keras_spiking.convert(model, **swap)
    converted = keras_spiking.convert(model, neuron="rate", **swap)
    assert converted.get_layer("h_spiking").activation is keras.activations.sigmoid


@pytest.mark.parametrize(
    "data,match",
    [
        (np.ones((4, 5, 3)), r"shape \(batch, 3\).*no time axis.*\(4, 5, 3\)"),
        (np.ones((4, 2)), r"shape \(batch, 3\).*\(4, 2\)"),
        (np.ones((0, 3)), r"batch >= 1.*\(0, 3\)"),
        (np.array([["a", "b", "c"]]), r"numbers.*<U1"),
    ],
)
def test_calibration_data_shape(data, match):
    with pytest.raises(ValueError, match=r"`calibration_data`.*" + match):
        keras_spiking.convert(small_model(), normalize="max", calibration_data=data)


def test_calibration_data_of_several_inputs():
    in1, in2 = keras.Input((3,)), keras.Input((2,))
    dense = keras.layers.Dense(2, activation="relu")
    model = keras.Model([in1, in2], dense(keras.layers.Concatenate()([in1, in2])))
    x1, x2 = np.ones((4, 3)), np.ones((4, 2))
    with pytest.raises(ValueError, match=r"list of 2 arrays.*got ndarray"):
        keras_spiking.convert(model, normalize="max", calibration_data=x1)
    with pytest.raises(ValueError, match=r"`calibration_data\[1\]`.*\(batch, 2\)"):
        keras_spiking.convert(model, normalize="max", calibration_data=[x1, x1])
    with pytest.raises(ValueError, match=r"same number of samples.*\[4, 3\]"):
        keras_spiking.convert(model, normalize="max", calibration_data=[x1, x2[:3]])
    converted = keras_spiking.convert(model, normalize="max", calibration_data=[x1, x2])
    assert len(converted.inputs) == 2


def test_normalize_needs_a_time_step():
    """A dt variable still holding 0 (set later by DtScheduler) cannot turn
    activations into spikes per step."""
    dt = keras.Variable(0.0, trainable=False)
    with pytest.raises(ValueError, match=r"`normalize` needs dt > 0.*dt=0"):
        keras_spiking.convert(
            small_model(), dt=dt, normalize="max", calibration_data=np.ones((2, 3))
        )


@pytest.mark.parametrize("initial_voltage", [0.0, 0.25])
def test_initial_voltage(initial_voltage):
    """One initial voltage for every neuron: with a constant input ``x`` and
    ``dt = 1``, an IF neuron starting at ``v0`` has fired
    ``floor(v0 + t x)`` spikes after ``t`` steps (a NumPy count)."""
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, activation="relu", name="h")]
    )
    model.get_layer("h").set_weights([np.ones((1, 1)), np.zeros(1)])
    converted = keras_spiking.convert(
        model, dt=1.0, output="sequence", initial_voltage=initial_voltage
    )
    layer = converted.get_layer("h_spiking")
    assert layer.initial_voltage == initial_voltage
    x = np.full((1, 8, 1), 0.3, "float32")
    spikes = converted.predict(x, verbose=0)[0, :, 0]
    t = np.arange(1, 9)
    want = np.diff(np.floor(initial_voltage + t * np.float32(0.3)), prepend=0.0)
    np.testing.assert_array_equal(spikes, want)
