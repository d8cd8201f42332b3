"""Streaming: stateful layers fed a sequence in chunks give the whole-sequence output.

With ``stateful=True`` (fixed batch size) each call starts from the state the
previous call ended in, so feeding a long sequence in chunks of any sizes,
one step at a time included, must give the outputs of feeding it at once, and
``reset_state()`` must start the sequence over.  Spikes must match exactly;
filter outputs to float32 rounding (the chunked and the whole computation
group the same sums differently).  The whole-sequence outputs are themselves
checked against the NumPy references of ``tests/references.py``.
"""

import keras
import numpy as np
import pytest

import keras_spiking
from tests import references
from tests.harness import numpy

BATCH, STEPS, FEATURES = 2, 30, 3
DT = 1 / 64

CHUNKINGS = {
    "whole": [STEPS],
    "single steps": [1] * STEPS,
    "uneven": [3, 7, 1, 19],  # 19 > 2 chunks of 8 steps inside the kernels
    "even": [10, 10, 10],
}


def smooth_input(shape, seed=0):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(size=shape), axis=1).astype("float32")


def layer_input(kind):
    """Integer rates for ``SpikingActivation`` (exact spikes), else a smooth
    signal, ``(BATCH, STEPS, FEATURES)``."""
    if kind == "SpikingActivation":
        return references.integer_rates((BATCH, STEPS, FEATURES))
    return smooth_input((BATCH, STEPS, FEATURES))


def stream(call, x, sizes):
    """Feed ``x`` to ``call`` in chunks of ``sizes`` steps; join the outputs."""
    assert sum(sizes) == x.shape[1]
    ends = np.cumsum(sizes)
    chunks = [
        numpy(call(x[:, end - size : end]))
        for size, end in zip(sizes, ends, strict=True)
    ]
    return np.concatenate(chunks, axis=1)


def make_layer(kind, stateful):
    if kind == "SpikingActivation":
        return keras_spiking.SpikingActivation("relu", dt=DT, seed=7, stateful=stateful)
    cls = getattr(keras_spiking, kind)
    return cls(
        keras.initializers.RandomUniform(0.02, 0.2, seed=1),
        dt=DT,
        level_initializer=keras.initializers.RandomNormal(seed=2),
        stateful=stateful,
    )


def layer_reference(kind, layer, x):
    """NumPy output of ``layer`` (non-stateful, fresh) on the whole ``x``."""
    if kind == "SpikingActivation":
        v0 = numpy(keras_spiking.seeded_uniform.seeded_uniform(BATCH, FEATURES, 7))
        return references.spikes(np.maximum(x, 0), DT, v0)[0]
    filter_ = references.lowpass if kind == "Lowpass" else references.alpha
    return filter_(x, numpy(layer.tau), DT, numpy(layer.initial_level))


def assert_stream_equal(kind, got, want, message=""):
    if kind == "SpikingActivation":
        np.testing.assert_array_equal(got, want, err_msg=message)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=message)


@pytest.mark.parametrize("kind", ["SpikingActivation", "Lowpass", "Alpha"])
def test_layer_stream_equals_whole_sequence(kind):
    x = layer_input(kind)
    layer = make_layer(kind, stateful=True)
    whole = numpy(layer(x))  # builds; then carries the state on
    layer.reset_state()
    again = numpy(layer(x))
    np.testing.assert_array_equal(again, whole)  # reset_state() restarts

    reference = layer_reference(kind, layer, x)
    if kind == "SpikingActivation":
        np.testing.assert_array_equal(whole, reference)
        assert (whole * DT >= 2).any() and (whole == 0).any()
    else:
        np.testing.assert_allclose(whole, reference, rtol=1e-4, atol=1e-4)

    for name, sizes in CHUNKINGS.items():
        layer.reset_state()
        assert_stream_equal(kind, stream(layer, x, sizes), whole, name)


@pytest.mark.parametrize("kind", ["SpikingActivation", "Lowpass", "Alpha"])
def test_state_carries_on_without_reset(kind):
    """Without ``reset_state()`` the second half continues from the first."""
    x = layer_input(kind)
    layer = make_layer(kind, stateful=True)
    whole = numpy(layer(x))
    layer.reset_state()
    half = STEPS // 2
    first = numpy(layer(x[:, :half]))
    second = numpy(layer(x[:, half:]))
    assert_stream_equal(kind, np.concatenate([first, second], axis=1), whole)
    # ... and differs from starting the second half afresh
    layer.reset_state()
    fresh = numpy(layer(x[:, half:]))
    assert not np.allclose(fresh, second)


def test_non_stateful_layer_does_not_carry_state():
    layer = make_layer("Lowpass", stateful=False)
    x = smooth_input((BATCH, STEPS, FEATURES))
    np.testing.assert_array_equal(numpy(layer(x)), numpy(layer(x)))


def build_model(stateful, batch):
    inp = keras.Input(batch_shape=(batch, None, FEATURES))
    x = keras_spiking.SpikingActivation(
        "relu", dt=DT, seed=3, stateful=stateful, name="spikes"
    )(inp)
    x = keras.layers.Dense(5, name="dense")(x)
    x = keras_spiking.Lowpass(0.05, dt=DT, stateful=stateful, name="lowpass")(x)
    x = keras_spiking.Alpha(0.02, dt=DT, stateful=stateful, name="alpha")(x)
    return keras.Model(inp, x)


def reset_states(model):
    for layer in model.layers:
        if isinstance(layer, keras_spiking.temporal.TemporalLayer):
            layer.reset_state()


@pytest.mark.parametrize("method", ["call", "predict_on_batch"])
def test_model_stream_equals_whole_sequence(method):
    """A trained-style non-stateful model vs its stateful copy, streamed."""
    x = references.integer_rates((BATCH, STEPS, FEATURES), seed=3)
    model = build_model(stateful=False, batch=None)
    model.get_layer("dense").set_weights(
        [
            np.random.default_rng(0).normal(size=(FEATURES, 5)).astype("float32")
            * 0.05,
            np.zeros(5, "float32"),
        ]
    )
    whole = numpy(model(x))

    streaming = build_model(stateful=True, batch=BATCH)
    targets = {weight.path: weight for weight in streaming.weights}
    for weight in model.weights:  # the stateful copy has state weights too
        targets[weight.path].assign(numpy(weight.value))
    call = streaming if method == "call" else streaming.predict_on_batch
    for name in ("single steps", "uneven"):  # the layer tests cover the rest
        sizes = CHUNKINGS[name]
        reset_states(streaming)
        np.testing.assert_allclose(
            stream(call, x, sizes), whole, rtol=1e-5, atol=1e-5, err_msg=name
        )


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_stateful_copy_streams_the_whole_sequence(kind):
    """``stateful_copy`` in one call: same weights, stateful layers, fixed
    batch; streamed outputs equal the original's on the whole sequence, and
    ``reset_states`` starts over."""
    x = references.integer_rates((BATCH, STEPS, FEATURES), seed=4)
    if kind == "functional":
        model = build_model(stateful=False, batch=None)
    else:
        model = keras.Sequential(
            [
                keras.Input((None, FEATURES)),
                keras_spiking.SpikingActivation("relu", dt=DT, seed=3),
                keras.layers.Dense(5),
                keras_spiking.Alpha(0.02, dt=DT),
            ]
        )
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    dense[0].kernel.assign(
        np.random.default_rng(1).normal(size=(FEATURES, 5)).astype("float32") * 0.05
    )
    whole = numpy(model(x))

    streaming = keras_spiking.stateful_copy(model, batch_size=BATCH)
    assert streaming.inputs[0].shape[0] == BATCH
    temporal = [
        layer
        for layer in streaming.layers
        if isinstance(layer, keras_spiking.temporal.TemporalLayer)
    ]
    assert temporal and all(layer.stateful for layer in temporal)
    for layer, twin in zip(model.layers, streaming.layers, strict=True):
        # each layer's own weights first; a stateful layer's states after them
        for original, weight in zip(layer.weights, twin.weights, strict=False):
            np.testing.assert_array_equal(numpy(weight.value), numpy(original.value))
    assert len(streaming.weights) == len(model.weights) + sum(
        layer.num_states for layer in temporal
    )

    for name in ("single steps", "uneven"):
        keras_spiking.reset_states(streaming)
        np.testing.assert_allclose(
            stream(streaming.predict_on_batch, x, CHUNKINGS[name]),
            whole,
            rtol=1e-5,
            atol=1e-5,
            err_msg=name,
        )
    # without a reset the copy carries on: the same input again differs
    assert not np.allclose(stream(streaming.predict_on_batch, x, [STEPS]), whole)


def test_stateful_copy_bad_arguments():
    model = build_model(stateful=False, batch=None)
    with pytest.raises(TypeError, match="keras.Model"):
        keras_spiking.stateful_copy(model.layers[1])
    with pytest.raises(TypeError, match="batch_size"):
        keras_spiking.stateful_copy(model, batch_size=2.0)
    with pytest.raises(ValueError, match="batch_size >= 1"):
        keras_spiking.stateful_copy(model, batch_size=0)


def test_stateful_voltage_is_exact_across_calls():
    """Ten stateful calls of 10 steps end with exactly the voltage (and
    spikes) of one call of 100 steps, for rates that are not multiples of
    any power of two: the carried state loses nothing."""
    rng = np.random.default_rng(21)
    x = rng.uniform(-200, 1000, (4, 100, 64)).astype("float32")
    layer = keras_spiking.SpikingActivation(
        "relu", dt=0.001, seed=2, stateful=True, return_state=True
    )
    whole, whole_v = numpy(layer(x))
    layer.reset_state()
    pieces = [numpy(layer(x[:, t : t + 10])) for t in range(0, 100, 10)]
    np.testing.assert_array_equal(np.concatenate([s for s, _ in pieces], 1), whole)
    np.testing.assert_array_equal(pieces[-1][1], whole_v)


def test_long_stream_equals_whole_sequence_exactly():
    """A (4, 3000, 64) stream at up to 1000 Hz, dt = 0.001, fed one step per
    call, gives the whole sequence's spikes exactly (768,000 steps)."""
    rng = np.random.default_rng(22)
    x = rng.uniform(0, 1000, (4, 3000, 64)).astype("float32")
    layer = keras_spiking.SpikingActivation("relu", dt=0.001, seed=4, stateful=True)
    whole = numpy(layer(x))
    layer.reset_state()
    np.testing.assert_array_equal(stream(layer, x, [1] * 3000), whole)
