"""``keras_spiking.measure_activity`` and ``callbacks.ActivityMonitor``.

References: hand-computed figures (the two-layer network below, the figures
sinabs' ``SNNAnalyzer`` gives for it) and a brute-force NumPy count of
(output position, kernel tap) pairs over the spike counts.
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
    through the rescaling and Flatten count; rates are consistent."""
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(2, 3, activation="relu", name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="relu", name="fc"),
            keras.layers.Dense(2, name="out"),
        ]
    )
    converted = keras_spiking.convert(
        model, dt=0.01, scale_firing_rates=50.0, seed=0, output="average"
    )
    x = np.random.default_rng(0).uniform(0, 1, (3, 8, 6, 6, 1)).astype(np.float32)
    activity = keras_spiking.measure_activity(converted, x)
    assert set(activity) == {"conv_spiking", "fc", "fc_spiking", "out"}
    conv = activity["conv_spiking"]
    assert conv.n_neurons == 4 * 4 * 2
    # every spike of the conv layer reaches the 3 units of fc
    assert activity["fc"].synops_per_sample == pytest.approx(conv.spikes_total / 3 * 3)
    assert activity["fc"].connections == 32 * 3
    assert conv.mean_rate_hz == pytest.approx(conv.rates_hz.mean())


def spiking_classifier():
    inp = keras.Input((4, 3))
    x = keras.layers.Dense(5, name="fc")(inp)
    x = keras_spiking.SpikingActivation("relu", dt=0.1, seed=0, name="spk")(x)
    x = keras_spiking.TemporalAvgPool()(x)
    out = keras.layers.Dense(2)(x)
    model = keras.Model(inp, out)
    model.compile("sgd", "mse")
    return model


def test_activity_monitor_logs_rates():
    """Rates land in the epoch logs (so in History), and in ``test_logs``
    (and evaluate's progress bar) at the end of evaluate."""
    keras.utils.set_random_seed(0)
    model = spiking_classifier()
    x = np.random.default_rng(0).uniform(0, 10, (8, 4, 3)).astype(np.float32)
    y = np.zeros((8, 2), np.float32)
    monitor = ActivityMonitor(x[:4], on_test=True)
    history = model.fit(
        x,
        y,
        epochs=2,
        batch_size=4,
        callbacks=[monitor],
        verbose=0,
        validation_data=(x, y),
    )
    for key in ("spk_rate_mean", "spk_rate_max"):
        assert len(history.history[key]) == 2, key
    expected = keras_spiking.measure_activity(model, x[:4])["spk"]
    assert history.history["spk_rate_mean"][-1] == pytest.approx(expected.mean_rate_hz)
    assert history.history["spk_rate_max"][-1] == pytest.approx(expected.max_rate_hz)
    monitor.test_logs = {}
    model.evaluate(x, y, callbacks=[monitor], verbose=0)
    assert monitor.test_logs == {
        "spk_rate_mean": pytest.approx(expected.mean_rate_hz),
        "spk_rate_max": pytest.approx(expected.max_rate_hz),
    }
    assert monitor.last["spk"].n_samples == 4


def test_errors():
    plain = keras.Sequential([keras.Input((3, 2)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"no SpikingActivation"):
        keras_spiking.measure_activity(plain, np.ones((1, 3, 2)))
    with pytest.raises(TypeError, match=r"keras.Model"):
        keras_spiking.measure_activity(keras.layers.Dense(2), np.ones((1, 3, 2)))
