"""``keras_spiking.measure_activity`` and ``callbacks.ActivityMonitor``.

References, never the module's own output: spike trains counted by hand
(spiking layers fed constant inputs from a zero voltage, so every spike's
step is known), hand-computed figures (the two-layer network below, the
figures sinabs' ``SNNAnalyzer`` gives for it), fan-outs counted by hand for a
``Dense`` and a small ``Conv2D``, and brute-force NumPy counts of the layers'
output spikes and of (output position, kernel tap) pairs.
"""

import keras
import numpy as np
import pytest

import keras_spiking
from keras_spiking.callbacks import ActivityMonitor


def two_layer_network():
    """Dense 4->3 (weights 0.5, no bias), spiking, Dense 3->2 (weights 0.5),
    spiking; dt = 1; voltages starting at 0; batch 2."""
    inp = keras.Input(batch_shape=(2, 5, 4))
    x = keras.layers.Dense(3, use_bias=False, name="fc1")(inp)
    x = keras_spiking.SpikingActivation("relu", dt=1.0, stateful=True, name="s1")(x)
    x = keras.layers.Dense(2, use_bias=False, name="fc2")(x)
    x = keras_spiking.SpikingActivation("relu", dt=1.0, stateful=True, name="s2")(x)
    model = keras.Model(inp, x)
    for name in ("fc1", "fc2"):
        layer = model.get_layer(name)
        layer.set_weights([np.full(layer.kernel.shape, 0.5, np.float32)])
    for name in ("s1", "s2"):
        state = model.get_layer(name).states[0]
        state.assign(np.zeros(state.shape, np.float32))
    return model


def test_two_layer_network_figures():
    """Layer 1: 4 * 0.5 = 2 spikes per neuron per step; layer 2: 3 * 2 * 0.5
    = 3.  Synops into fc2: 3 neurons * 2 spikes * 5 steps * 2 connections =
    60 per sample (sinabs' SNNAnalyzer gives the same)."""
    model = two_layer_network()
    activity = keras_spiking.measure_activity(model, np.ones((2, 5, 4), np.float32))
    s1, s2 = activity["s1"], activity["s2"]
    assert s1.spikes_per_neuron_per_step == 2.0
    assert s2.spikes_per_neuron_per_step == 3.0
    assert s1.n_neurons == 3 and s2.n_neurons == 2
    assert s1.spikes_total == 2 * 5 * 3 * 2
    np.testing.assert_array_equal(s1.spikes_per_sample, [30, 30])
    assert s1.spikes_per_step == 6.0
    assert s1.mean_rate_hz == 2.0 and s2.mean_rate_hz == 3.0
    np.testing.assert_array_equal(s2.rates_hz, [3.0, 3.0])
    assert s1.silent_fraction == 0.0
    fc2 = activity["fc2"]
    assert fc2.source == "s1"
    assert fc2.synops_per_sample == 60.0
    assert fc2.synops_per_second == 60.0 / 5
    assert fc2.connections == 6
    assert "fc1" not in activity  # fed by the input, not by spikes
    table = activity.table()
    assert "| s1 | 3 | 2 |" in table and "fc2 (from s1)" in table
    assert str(activity) == table


def brute_force_synops(counts, kernel, strides, padding, dilation, per_channel):
    """Sum over every output position, kernel tap and input channel of the
    spike count read there (reads of the padding count nothing), times the
    output channels per input channel.  ``counts``: (batch, time, H, W, C)."""
    _, _, h, w, _ = counts.shape
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
    if padding == "valid":
        out = [
            (n - s) // st + 1 for n, s, st in zip((h, w), span, strides, strict=True)
        ]
        before = [0, 0]
    else:
        out = [-(-n // st) for n, st in zip((h, w), strides, strict=True)]
        before = [
            max((o - 1) * st + s - n, 0) // 2
            for o, st, s, n in zip(out, strides, span, (h, w), strict=True)
        ]
    total = 0.0
    for oi in range(out[0]):
        for oj in range(out[1]):
            for ki in range(kernel[0]):
                for kj in range(kernel[1]):
                    i = oi * strides[0] - before[0] + ki * dilation[0]
                    j = oj * strides[1] - before[1] + kj * dilation[1]
                    if 0 <= i < h and 0 <= j < w:
                        total += counts[:, :, i, j, :].sum()
    return total * per_channel / counts.shape[0]


def targets():
    """Name: (layer, kernel, strides, dilation, output channels per input
    channel)."""
    return {
        "same": (keras.layers.Conv2D(3, 3, padding="same"), (3, 3), (1, 1), 1, 3),
        "valid_stride": (
            keras.layers.Conv2D(2, (3, 2), strides=2),
            (3, 2),
            (2, 2),
            1,
            2,
        ),
        "dilated": (
            keras.layers.Conv2D(2, 3, padding="same", dilation_rate=2),
            (3, 3),
            (1, 1),
            2,
            2,
        ),
        "depthwise": (
            keras.layers.DepthwiseConv2D(
                3, strides=2, padding="same", depth_multiplier=2
            ),
            (3, 3),
            (2, 2),
            1,
            2,
        ),
        "pool": (keras.layers.AveragePooling2D(2), (2, 2), (2, 2), 1, 1),
        "pool_same": (
            keras.layers.AveragePooling2D(3, strides=2, padding="same"),
            (3, 3),
            (2, 2),
            1,
            1,
        ),
    }


def test_conv_and_pool_synops():
    """Synops into convolutions / pooling fed by spikes == brute-force count
    (kernel, strides, dilation, output channels per input channel)."""
    keras.utils.set_random_seed(0)
    steps, dt = 4, 0.5
    inp = keras.Input((steps, 7, 6, 2))
    spikes = keras_spiking.SpikingActivation("relu", dt=dt, seed=2, name="spikes")
    x = spikes(inp)
    x = keras.layers.Rescaling(0.25)(x)  # the event count must not change
    layers = targets()
    outputs = [
        keras.layers.TimeDistributed(target[0], name=name)(x)
        for name, target in layers.items()
    ]
    model = keras.Model(inp, outputs)
    data = np.random.default_rng(1).uniform(-1, 5, (3, steps, 7, 6, 2))
    data = data.astype(np.float32)
    activity = keras_spiking.measure_activity(model, data, batch_size=2)
    probe = keras.Model(inp, spikes.output)
    # same batches: the seeded voltages depend on the index within a batch
    counts = np.rint(np.asarray(probe.predict(data, batch_size=2, verbose=0)) * dt)
    assert counts.max() > 1  # several spikes per step occur
    for name, (layer, kernel, strides, dilation, per_channel) in layers.items():
        padding = layer.padding
        expected = brute_force_synops(
            counts, kernel, strides, padding, (dilation, dilation), per_channel
        )
        assert activity[name].synops_per_sample == pytest.approx(expected), name
        per_second = expected / (steps * dt)
        assert activity[name].synops_per_second == pytest.approx(per_second)
    assert activity["spikes"].spikes_total == counts.sum()
    silent = np.mean(counts.sum(axis=(0, 1)) == 0)
    assert activity["spikes"].silent_fraction == pytest.approx(silent)


def test_converted_model_activity():
    """measure_activity on keras_spiking.convert's output: Dense layers fed
    through the rescaling and Flatten count; the counts are those of the
    spiking layer's own output."""
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(2, 3, activation="relu", name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="relu", name="fc"),
            keras.layers.Dense(2, name="out"),
        ]
    )
    # positive convolution weights: every conv neuron fires (~4 spikes each)
    rng = np.random.default_rng(3)
    model.set_weights(
        [rng.uniform(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()]
    )
    converted = keras_spiking.convert(
        model, dt=0.01, scale_firing_rates=50.0, seed=0, output="average"
    )
    x = np.random.default_rng(0).uniform(0, 1, (3, 8, 6, 6, 1)).astype(np.float32)
    activity = keras_spiking.measure_activity(converted, x)
    assert set(activity) == {"conv_spiking", "fc", "fc_spiking", "out"}
    conv = activity["conv_spiking"]
    assert conv.n_neurons == 4 * 4 * 2
    # NumPy count of the spiking layer's own output (spikes of height 1 / dt)
    probe = keras.Model(converted.inputs, converted.get_layer("conv_spiking").output)
    counts = np.rint(np.abs(np.asarray(probe.predict(x, verbose=0))) * 0.01)
    assert counts.sum() > 0
    assert conv.spikes_total == counts.sum()
    np.testing.assert_array_equal(conv.spikes_per_sample, counts.sum(axis=(1, 2, 3, 4)))
    rates = counts.sum(axis=(0, 1)) / (3 * 8 * 0.01)  # 3 samples of 8 steps
    np.testing.assert_allclose(conv.rates_hz, rates)
    assert conv.mean_rate_hz == pytest.approx(counts.sum() / (3 * 8 * 32 * 0.01))
    # every spike of the conv layer reaches the 3 units of fc
    assert activity["fc"].synops_per_sample == pytest.approx(counts.sum() * 3 / 3)
    assert activity["fc"].connections == 32 * 3


# A hand-counted spike train: rate neurons from a zero voltage, dt = 0.25 s,
# 4 steps (1 s), fed constant inputs (Hz) that relu leaves as rates.  Per
# step a neuron gains rate * dt and emits floor(voltage) spikes:
#   sample 0: rates 0, 2, 8  -> gains 0, 0.5, 2 -> spikes per step
#             0 0 0 0 | 0 1 0 1 | 2 2 2 2        (totals 0, 2, 8)
#   sample 1: inputs -4, 4, 12 -> rates 0, 4, 12 -> gains 0, 1, 3
#             0 0 0 0 | 1 1 1 1 | 3 3 3 3        (totals 0, 4, 12)
HAND_DT, HAND_STEPS = 0.25, 4
HAND_INPUT = np.array([[0.0, 2.0, 8.0], [-4.0, 4.0, 12.0]], np.float32)
HAND_SPIKES = np.array(
    [
        [[0, 0, 2], [0, 1, 2], [0, 0, 2], [0, 1, 2]],
        [[0, 1, 3], [0, 1, 3], [0, 1, 3], [0, 1, 3]],
    ],
    np.float32,
)  # (sample, step, neuron)


def hand_inputs():
    return np.repeat(HAND_INPUT[:, None], HAND_STEPS, axis=1)  # (2, 4, 3)


def hand_spiking(name="spk", **kwargs):
    return keras_spiking.SpikingActivation(
        "relu", dt=HAND_DT, initial_voltage=0.0, name=name, **kwargs
    )


def assert_hand_figures(record):
    """``record``: the SpikingLayerActivity of the hand-counted train."""
    assert record.name == "spk"
    assert (record.n_neurons, record.n_samples, record.n_steps) == (3, 2, 4)
    assert record.dt == HAND_DT
    assert record.spikes_total == 26  # 0 + 2 + 8 + 0 + 4 + 12
    np.testing.assert_array_equal(record.spikes_per_sample, [10, 16])
    assert record.spikes_per_step == pytest.approx(26 / 8)  # 2 samples x 4 steps
    assert record.spikes_per_neuron_per_step == pytest.approx(26 / 24)
    # per neuron: (0 + 0, 2 + 4, 8 + 12) spikes over 2 samples of 1 s each
    np.testing.assert_allclose(record.rates_hz, [0.0, 3.0, 10.0])
    assert record.mean_rate_hz == pytest.approx(13 / 3)  # 26 spikes / 6 neuron-s
    assert record.max_rate_hz == pytest.approx(10.0)
    assert record.silent_fraction == pytest.approx(1 / 3)  # neuron 0


def test_hand_counted_train_and_dense_synops():
    """Every field against the hand-counted train; synops into a Dense(5):
    each spike reaches 5 units, 26 * 5 / 2 = 65 per sample, over 1 s."""
    inp = keras.Input((HAND_STEPS, 3))
    spikes = hand_spiking()(inp)
    out = keras.layers.Dense(5, name="fc")(spikes)
    model = keras.Model(inp, [spikes, out])
    x = hand_inputs()
    # the layer emits the hand-counted train (spikes of height 1 / dt)
    emitted = np.asarray(model.predict(x, verbose=0)[0]) * HAND_DT
    np.testing.assert_array_equal(emitted, HAND_SPIKES)

    activity = keras_spiking.measure_activity(model, x)
    assert list(activity) == ["spk", "fc"]
    assert_hand_figures(activity["spk"])
    fc = activity["fc"]
    assert fc.source == "spk"
    assert fc.connections == 3 * 5
    assert fc.synops_per_sample == pytest.approx(65.0)
    assert fc.synops_per_second == pytest.approx(65.0)  # 4 steps x 0.25 s = 1 s
    # one sample at a time: the same counts
    activity = keras_spiking.measure_activity(model, x, batch_size=1)
    assert_hand_figures(activity["spk"])
    assert activity["fc"].synops_per_sample == pytest.approx(65.0)


def test_negative_spikes_count_by_magnitude():
    """A linear rate neuron with rate -2 Hz, dt = 0.25, from 0: voltages
    -0.5 -> spike -1 (voltage 0.5), 0 -> none, again: spikes -1 0 -1 0,
    two spikes; the +2 Hz neuron: 0 1 0 1.  Synops into Dense(3): 4 * 3."""
    inp = keras.Input((4, 2))
    spikes = keras_spiking.SpikingActivation(
        "linear", dt=0.25, initial_voltage=0.0, name="spk"
    )(inp)
    out = keras.layers.Dense(3, name="fc")(spikes)
    model = keras.Model(inp, [spikes, out])
    x = np.repeat(np.array([[[-2.0, 2.0]]], np.float32), 4, axis=1)
    emitted = np.asarray(model.predict(x, verbose=0)[0]) * 0.25
    np.testing.assert_array_equal(emitted[0].T, [[-1, 0, -1, 0], [0, 1, 0, 1]])

    activity = keras_spiking.measure_activity(model, x)
    record = activity["spk"]
    assert record.spikes_total == 4
    np.testing.assert_allclose(record.rates_hz, [2.0, 2.0])
    assert record.silent_fraction == 0.0
    assert activity["fc"].synops_per_sample == pytest.approx(12.0)


def test_hand_counted_conv_synops():
    """Conv2D(2 filters, 2x2, valid) on 3x3 spiking inputs: along each axis
    the positions are read by 1, 2, 1 of the 2 windows, so a position's
    fan-out is (1 2 1 / 2 4 2 / 1 2 1) x 2 filters, 32 connections in all
    (4 windows x 4 taps x 2 filters).  dt = 0.5, 2 steps: the centre at 4 Hz
    spikes 2 + 2, the corner (0, 0) at 2 Hz 1 + 1, the edge (0, 1) at 1 Hz
    0 + 1; synops = 4 * 8 + 2 * 2 + 1 * 4 = 40 per sample, over 1 s."""
    per_position = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    conv = keras.layers.Conv2D(2, 2, name="conv")
    np.testing.assert_array_equal(
        keras_spiking.activity.fan_out(conv, (3, 3, 1))[..., 0], 2 * per_position
    )
    inp = keras.Input((2, 3, 3, 1))
    spikes = keras_spiking.SpikingActivation(
        "relu", dt=0.5, initial_voltage=0.0, name="spk"
    )(inp)
    out = keras.layers.TimeDistributed(conv, name="conv")(spikes)
    model = keras.Model(inp, out)
    rates = np.zeros((1, 2, 3, 3, 1), np.float32)
    rates[..., 1, 1, 0], rates[..., 0, 0, 0], rates[..., 0, 1, 0] = 4.0, 2.0, 1.0
    rates[..., 2, 2, 0] = -3.0  # rectified: silent

    activity = keras_spiking.measure_activity(model, rates)
    record = activity["spk"]
    assert record.spikes_total == 7
    want = np.zeros((3, 3, 1))
    want[1, 1, 0], want[0, 0, 0], want[0, 1, 0] = 4.0, 2.0, 1.0  # Hz, over 1 s
    np.testing.assert_allclose(record.rates_hz, want)
    assert record.mean_rate_hz == pytest.approx(7 / 9)
    assert record.max_rate_hz == pytest.approx(4.0)
    assert record.silent_fraction == pytest.approx(6 / 9)
    synaptic = activity["conv"]
    assert synaptic.source == "spk"
    assert synaptic.connections == 32
    assert synaptic.synops_per_sample == pytest.approx(40.0)
    assert synaptic.synops_per_second == pytest.approx(40.0)


def hand_classifier():
    """The hand-counted spiking layer straight after the input (training
    cannot change its spikes), then averaging and a trained Dense."""
    inp = keras.Input((HAND_STEPS, 3))
    x = hand_spiking()(inp)
    x = keras_spiking.TemporalAvgPool()(x)
    out = keras.layers.Dense(2)(x)
    model = keras.Model(inp, out)
    model.compile("sgd", "mse")
    return model


def test_activity_monitor_logs_hand_counted_rates():
    """Rates land in the epoch logs (so in History), and in ``test_logs``
    (and evaluate's progress bar) at the end of evaluate: the hand counts
    (mean 13/3 Hz, max 10 Hz)."""
    keras.utils.set_random_seed(0)
    model = hand_classifier()
    x = hand_inputs()
    y = np.zeros((2, 2), np.float32)
    monitor = ActivityMonitor(x, on_test=True)
    history = model.fit(
        x,
        y,
        epochs=2,
        batch_size=1,
        callbacks=[monitor],
        verbose=0,
        validation_data=(x, y),
    )
    assert history.history["spk_rate_mean"] == pytest.approx([13 / 3, 13 / 3])
    assert history.history["spk_rate_max"] == pytest.approx([10.0, 10.0])
    assert_hand_figures(monitor.last["spk"])
    monitor.test_logs = {}
    model.evaluate(x, y, callbacks=[monitor], verbose=0)
    assert monitor.test_logs == {
        "spk_rate_mean": pytest.approx(13 / 3),
        "spk_rate_max": pytest.approx(10.0),
    }
    assert_hand_figures(monitor.last["spk"])


# A SpikingActivation whose output is not (batch, time, ...) spikes: the
# counts would be wrong, so measuring must refuse it, naming layer and flag.
LAYOUTS = {
    "return_sequences": {"return_sequences": False},
    "time_major": {"time_major": True},
    "return_state": {"return_state": True},
}


def layout_model(flags):
    inp = keras.Input((HAND_STEPS, 3))
    x = hand_spiking(**flags)(inp)
    if flags.get("return_state"):
        x = x[0]
    if flags.get("return_sequences", True):
        x = keras_spiking.TemporalAvgPool()(x)
    out = keras.layers.Dense(2)(x)
    model = keras.Model(inp, out)
    model.compile("sgd", "mse")
    return model


def assert_names_layer_and_flag(error, flag):
    message = str(error).split("Arguments received")[0]
    assert "spk" in message and flag in message, message


@pytest.mark.parametrize("flag", LAYOUTS)
def test_measure_activity_refuses_other_layouts(flag):
    model = layout_model(LAYOUTS[flag])
    model.predict(hand_inputs(), verbose=0)  # the model itself runs
    with pytest.raises(ValueError) as caught:
        keras_spiking.measure_activity(model, hand_inputs())
    assert_names_layer_and_flag(caught.value, flag)


@pytest.mark.parametrize("flag", LAYOUTS)
def test_activity_monitor_refuses_other_layouts(flag):
    model = layout_model(LAYOUTS[flag])
    x, y = hand_inputs(), np.zeros((2, 2), np.float32)
    model.fit(x, y, epochs=1, verbose=0)  # the model itself trains
    with pytest.raises(ValueError) as caught:
        model.fit(x, y, epochs=1, verbose=0, callbacks=[ActivityMonitor(x)])
    assert_names_layer_and_flag(caught.value, flag)


def test_errors():
    plain = keras.Sequential([keras.Input((3, 2)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"no SpikingActivation"):
        keras_spiking.measure_activity(plain, np.ones((1, 3, 2)))
    with pytest.raises(TypeError, match=r"keras.Model"):
        keras_spiking.measure_activity(keras.layers.Dense(2), np.ones((1, 3, 2)))
