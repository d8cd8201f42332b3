"""``keras_spiking.ModelEnergy``: statistics, energies, registration, summary."""

import importlib.util
import math
import pathlib

import keras
import numpy as np
import pytest

import keras_spiking
from keras_spiking import ModelEnergy

CPU = ModelEnergy.devices["cpu"]
LOIHI = ModelEnergy.devices["loihi"]


def test_published_device_constants():
    expected = {
        "cpu": (8.6e-9, 8.6e-9, False),
        "gpu": (0.3e-9, 0.3e-9, False),
        "arm": (0.9e-9, 0.9e-9, False),
        "loihi": (27.1e-12, 81e-12, True),
        "spinnaker": (13.3e-9, 26e-9, True),
        "spinnaker2": (450e-12, 2.19e-9, True),
    }
    for name, (synop, neuron, spiking) in expected.items():
        device = ModelEnergy.devices[name]
        assert device["energy_per_synop"] == pytest.approx(synop, rel=1e-12)
        assert device["energy_per_neuron"] == pytest.approx(neuron, rel=1e-12)
        assert device["spiking"] is spiking


def dense_model():
    inp = keras.Input((6,))
    x = keras.layers.Dense(5, activation="relu", name="hidden")(inp)
    out = keras.layers.Dense(3, name="out")(x)
    return keras.Model(inp, out, name="mlp")


def test_dense_statistics_and_energy_by_hand():
    energy = ModelEnergy(dense_model())
    hidden, out = energy.layer_stats["hidden"], energy.layer_stats["out"]
    assert (hidden["connections"], hidden["neurons"], hidden["params"]) == (30, 5, 35)
    # A linear output layer updates no neurons.
    assert (out["connections"], out["neurons"], out["params"]) == (15, 0, 18)
    assert energy.layer_stats["input_layer"]["connections"] == 0
    assert not hidden["spiking_input"] and hidden["input_rate"] is None

    cpu = 8.6e-9 * (30 + 5 + 15)
    assert energy.total_energy("cpu") == pytest.approx(cpu)
    assert energy.total_energy("cpu", timesteps_per_inference=4) == pytest.approx(
        4 * cpu
    )
    assert energy.layer_energy("hidden", "gpu") == pytest.approx(0.3e-9 * 35)
    # Not spikes: a spiking device pays every synapse every step, as a CPU does.
    loihi = 27.1e-12 * (30 + 15) + 81e-12 * 5
    assert energy.total_energy("loihi", timesteps_per_inference=2) == pytest.approx(
        2 * loihi
    )
    layer = energy.model.get_layer("out")
    assert energy.layer_energy(layer, "spinnaker2") == pytest.approx(450e-12 * 15)


def ones_conv_pairs(input_shape, kernel_size, strides, padding):
    """(output, input) pairs under a sliding window, padding excluded.

    Counted by Keras itself: a one-filter convolution with a kernel of ones,
    on one input channel of ones, sums the in-bounds taps of each output.
    """
    conv_class = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D}[len(input_shape)]
    conv = conv_class(
        1,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer="ones",
    )
    y = conv(np.ones((1, *input_shape, 1), "float32"))
    return int(round(float(np.sum(keras.ops.convert_to_numpy(y)))))


def test_conv2d_statistics_by_hand():
    inp = keras.Input((7, 6, 2))
    x = keras.layers.Conv2D(
        3, (3, 2), strides=(2, 1), padding="same", activation="relu", name="conv"
    )(inp)
    x = keras.layers.MaxPooling2D(2, padding="same", name="pool")(x)
    x = keras.layers.Flatten(name="flat")(x)
    out = keras.layers.Dense(4, name="out")(x)
    energy = ModelEnergy(keras.Model(inp, out))

    conv = energy.layer_stats["conv"]
    assert conv["output_shape"] == (None, 4, 6, 3)
    # Pairs under the kernel x 2 input channels x 3 filters.
    pairs = ones_conv_pairs((7, 6), (3, 2), (2, 1), "same")
    assert conv["connections"] == pairs * 2 * 3
    # Without padding at the edges it would be 4 * 6 positions x 6 taps.
    assert conv["connections"] < 4 * 6 * 6 * 2 * 3
    assert conv["neurons"] == 4 * 6 * 3
    assert conv["params"] == 3 * 2 * 2 * 3 + 3

    pool = energy.layer_stats["pool"]
    assert pool["output_shape"] == (None, 2, 3, 3)
    assert pool["connections"] == ones_conv_pairs((4, 6), 2, 2, "same") * 3
    assert pool["neurons"] == 0
    assert energy.layer_stats["flat"]["connections"] == 0
    assert energy.layer_stats["out"]["connections"] == 2 * 3 * 3 * 4

    total = conv["connections"] + pool["connections"] + 72
    assert energy.total_energy("cpu") == pytest.approx(8.6e-9 * (total + 72))


def test_conv1d_valid_and_causal_by_hand():
    inp = keras.Input((5, 2))
    x = keras.layers.Conv1D(4, 3, padding="causal", name="causal")(inp)
    out = keras.layers.Conv1D(1, 2, padding="valid", name="valid")(x)
    energy = ModelEnergy(keras.Model(inp, out))
    # Causal: 5 outputs x 3 taps, minus the 2 + 1 taps before the start.
    assert energy.layer_stats["causal"]["connections"] == (15 - 3) * 2 * 4
    assert energy.layer_stats["valid"]["connections"] == 4 * 2 * 4 * 1


def test_global_pooling_and_activation_layers():
    inp = keras.Input((4, 4, 3))
    x = keras.layers.Activation("tanh", name="tanh")(inp)
    x = keras.layers.Activation("linear", name="linear")(x)
    x = keras.layers.ReLU(name="relu")(x)
    out = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    stats = ModelEnergy(keras.Model(inp, out)).layer_stats
    assert stats["tanh"]["neurons"] == 48
    assert stats["linear"]["neurons"] == 0
    assert stats["relu"]["neurons"] == 48
    assert (stats["gap"]["connections"], stats["gap"]["neurons"]) == (48, 0)


STEPS, DT = 20, 0.01


def spiking_model():
    """The walkthrough's shape: Dense -> spikes -> average over time -> Dense."""
    inp = keras.Input((STEPS, 8))
    # Fixed positive weights: rates of tens of Hz, the same on every backend.
    kernel = np.random.RandomState(2).uniform(0, 1, (8, 16)).astype("float32")
    x = keras.layers.Dense(
        16, kernel_initializer=keras.initializers.Constant(kernel), name="hidden"
    )(inp)
    x = keras_spiking.SpikingActivation("relu", dt=DT, seed=0, name="spikes")(x)
    x = keras_spiking.TemporalAvgPool(name="rates")(x)
    out = keras.layers.Dense(4, name="out")(x)
    return keras.Model(inp, out)


def measured_rate(model, data):
    """Mean firing rate (Hz): the time-averaged spikes, averaged."""
    rates = keras.Model(model.inputs, model.get_layer("rates").output)
    return float(np.mean(rates.predict(data, verbose=0)))


def test_spiking_model_statistics_per_timestep():
    model = spiking_model()
    data = np.random.RandomState(0).uniform(0, 20, (16, STEPS, 8)).astype("float32")
    energy = ModelEnergy(model, example_data=data)
    stats = energy.layer_stats
    # Per timestep: the time axis is not counted.
    assert stats["hidden"]["connections"] == 8 * 16
    assert stats["spikes"]["neurons"] == 16
    assert stats["out"]["connections"] == 16 * 4
    assert not stats["hidden"]["spiking_input"]
    assert stats["out"]["spiking_input"]
    rate = measured_rate(model, data)
    assert rate > 20
    assert stats["out"]["input_rate"] == pytest.approx(rate, rel=1e-5)
    assert stats["out"]["input_dt"] == DT
    assert stats["out"]["synops_per_second"] == pytest.approx(64 * rate, rel=1e-5)

    e_s, e_n = LOIHI["energy_per_synop"], LOIHI["energy_per_neuron"]
    expected = STEPS * (8 * 16 * e_s + 16 * e_n + 64 * rate * DT * e_s)
    assert energy.total_energy("loihi", timesteps_per_inference=STEPS) == pytest.approx(
        expected, rel=1e-5
    )
    # A different device timestep changes the spikes per step.
    assert energy.layer_energy("out", "loihi", dt=2 * DT) == pytest.approx(
        64 * rate * 2 * DT * e_s, rel=1e-5
    )
    # A non-spiking device pays every synapse every step, whatever the rates.
    cpu = STEPS * CPU["energy_per_synop"] * (8 * 16 + 16 + 64)
    assert energy.total_energy("cpu", timesteps_per_inference=STEPS) == pytest.approx(
        cpu
    )


def test_spiking_device_energy_scales_with_measured_rate():
    model = spiking_model()
    data = np.random.RandomState(0).uniform(0, 20, (16, STEPS, 8)).astype("float32")
    low, high = ModelEnergy(model, data), ModelEnergy(model, 3 * data)
    rate_low, rate_high = measured_rate(model, data), measured_rate(model, 3 * data)
    # ReLU with zero bias: three times the input, about three times the rate.
    assert rate_high / rate_low == pytest.approx(3, rel=0.1)
    for device in ("loihi", "spinnaker", "spinnaker2"):
        ratio = low.layer_energy("out", device) / high.layer_energy("out", device)
        assert ratio == pytest.approx(rate_low / rate_high, rel=1e-5)
    for device in ("cpu", "gpu", "arm"):
        assert low.total_energy(device) == high.total_energy(device)


def test_spiking_energy_needs_example_data():
    energy = ModelEnergy(spiking_model())
    assert energy.layer_stats["out"]["spiking_input"]
    assert energy.layer_stats["out"]["input_rate"] is None
    with pytest.raises(ValueError, match="example_data"):
        energy.total_energy("loihi")
    # Layers that do not receive spikes can still be estimated.
    assert energy.layer_energy("hidden", "loihi") > 0
    assert energy.total_energy("cpu") > 0


def test_time_distributed_filters_and_spike_passing():
    inp = keras.Input((STEPS, 6, 6, 1))
    x = keras.layers.TimeDistributed(
        keras.layers.Conv2D(2, 3, activation="relu"), name="td_conv"
    )(inp)
    x = keras_spiking.SpikingActivation("relu", dt=DT, seed=1, name="spikes")(x)
    x = keras.layers.TimeDistributed(keras.layers.Flatten(), name="td_flat")(x)
    x = keras.layers.Dense(5, name="dense")(x)
    x = keras_spiking.Lowpass(0.05, name="lowpass")(x)
    x = keras_spiking.Alpha(0.05, name="alpha")(x)
    out = keras_spiking.TemporalAvgPool(name="avg")(x)
    data = np.random.RandomState(0).uniform(0, 30, (4, STEPS, 6, 6, 1))
    energy = ModelEnergy(keras.Model(inp, out), data.astype("float32"))
    stats = energy.layer_stats
    assert stats["td_conv"]["type"] == "TimeDistributed(Conv2D)"
    assert stats["td_conv"]["connections"] == 4 * 4 * 9 * 2
    assert stats["td_conv"]["neurons"] == 4 * 4 * 2
    assert stats["spikes"]["neurons"] == 32
    # Flatten passes the spikes on: the Dense layer receives them.
    assert stats["dense"]["spiking_input"]
    assert stats["dense"]["connections"] == 32 * 5
    # Filters are not spikes: one state per unit (Lowpass), two (Alpha).
    assert stats["lowpass"]["neurons"] == 5
    assert stats["alpha"]["neurons"] == 10
    assert not stats["alpha"]["spiking_input"]
    assert stats["dense"]["input_rate"] > 0


@pytest.fixture
def registry():
    """Undo registrations made by a test."""
    devices, layers = dict(ModelEnergy.devices), dict(ModelEnergy._layers)
    yield
    ModelEnergy.devices.clear()
    ModelEnergy.devices.update(devices)
    ModelEnergy._layers.clear()
    ModelEnergy._layers.update(layers)


class Scale(keras.layers.Layer):
    """Multiply each input by its own weight."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=input_shape[-1:], initializer="ones")

    def call(self, x):
        return x * self.w


def test_unknown_layer_error_says_how_to_register():
    inp = keras.Input((STEPS, 4))
    out = Scale(name="scale")(inp)
    with pytest.raises(ValueError, match=r"register_layer\(Scale\)") as info:
        ModelEnergy(keras.Model(inp, out))
    assert "'scale'" in str(info.value)


def test_registered_layer_and_device(registry):
    seen = {}

    @ModelEnergy.register_layer(Scale)
    def scale_stats(layer, input_shape, output_shape):
        seen[layer.name] = (input_shape, output_shape)
        return {"connections": math.prod(input_shape), "neurons": 1}

    ModelEnergy.register_device("chip", 2e-12, 5e-12, spiking=True)

    inp = keras.Input((STEPS, 4))
    x = keras_spiking.SpikingActivation("relu", dt=DT, seed=0, name="spikes")(inp)
    out = Scale(name="scale")(x)
    model = keras.Model(inp, out)
    data = np.random.RandomState(0).uniform(0, 50, (8, STEPS, 4)).astype("float32")
    energy = ModelEnergy(model, data)
    # The function gets one timestep's shapes.
    assert seen["scale"] == ((4,), (4,))
    stats = energy.layer_stats["scale"]
    assert (stats["connections"], stats["neurons"]) == (4, 1)
    assert stats["spiking_input"]
    spikes = keras.Model(inp, x).predict(data, verbose=0)
    rate = float(np.mean(np.abs(spikes)))
    assert stats["input_rate"] == pytest.approx(rate, rel=1e-5)
    assert energy.layer_energy("scale", "chip", timesteps_per_inference=3) == (
        pytest.approx(3 * (4 * rate * DT * 2e-12 + 1 * 5e-12), rel=1e-5)
    )
    assert energy.total_energy("chip") == pytest.approx(
        4 * 5e-12 + 4 * rate * DT * 2e-12 + 5e-12, rel=1e-5
    )


def test_registration_errors(registry):
    with pytest.raises(TypeError, match="Layer subclass"):
        ModelEnergy.register_layer(int)
    with pytest.raises(ValueError, match="energy_per_synop"):
        ModelEnergy.register_device("bad", -1.0, 1.0, False)
    with pytest.raises(TypeError, match="spiking"):
        ModelEnergy.register_device("bad", 1.0, 1.0, "yes")

    @ModelEnergy.register_layer(Scale)
    def wrong(layer):
        return {"connections": 1.5}

    inp = keras.Input((3,))
    with pytest.raises(TypeError, match="must return"):
        ModelEnergy(keras.Model(inp, Scale()(inp)))


def test_layouts_that_cannot_be_counted_per_timestep():
    inp = keras.Input((STEPS, 4))
    x = keras_spiking.SpikingActivation("relu")(inp)
    with pytest.raises(ValueError, match="TimeDistributed"):
        ModelEnergy(keras.Model(inp, keras.layers.Flatten()(x)))
    x = keras.layers.Conv1D(2, 3)(inp)
    with pytest.raises(ValueError, match="needs a time axis"):
        ModelEnergy(keras.Model(inp, keras_spiking.SpikingActivation("relu")(x)))
    inner = dense_model()
    outer_in = keras.Input((6,))
    with pytest.raises(ValueError, match="Nested models"):
        ModelEnergy(keras.Model(outer_in, inner(outer_in)))


def test_undefined_axis_other_than_time_is_an_error():
    # An undefined axis 1 that no layer takes as the time axis.
    inp = keras.Input((None, 4))
    out = keras.layers.Dense(3, name="dense")(inp)
    with pytest.raises(
        ValueError,
        match=r"'dense' \(Dense\).*\(None, None, 4\).*fully defined shape apart "
        r"from the batch and the time axis",
    ):
        ModelEnergy(keras.Model(inp, out))
    inp = keras.Input((None, None, 1))
    out = keras.layers.GlobalAveragePooling2D(name="gap")(inp)
    with pytest.raises(ValueError, match=r"'gap'.*\(None, None, None, 1\)"):
        ModelEnergy(keras.Model(inp, out))
    # Undefined after the time axis.
    inp = keras.Input((None, None, 4))
    x = keras.layers.Dense(3, name="hidden")(inp)
    out = keras_spiking.TemporalAvgPool()(x)
    with pytest.raises(ValueError, match=r"'hidden'.*\(None, None, None, 4\)"):
        ModelEnergy(keras.Model(inp, out))
    # An undefined time axis is fine.
    inp = keras.Input((None, 4))
    x = keras.layers.Dense(3, name="hidden")(inp)
    out = keras_spiking.SpikingActivation("relu", name="spikes")(x)
    stats = ModelEnergy(keras.Model(inp, out)).layer_stats
    assert stats["hidden"]["connections"] == 12
    assert stats["spikes"]["neurons"] == 3


def test_shared_layer_counts_every_call():
    a, b = keras.Input((10,), name="a"), keras.Input((10,), name="b")
    shared = keras.layers.Dense(10, activation="relu", name="shared")
    energy = ModelEnergy(keras.Model([a, b], [shared(a), shared(b)]))
    stats = energy.layer_stats["shared"]
    # 100 synapses and 10 neurons per call; the weights once.
    assert (stats["connections"], stats["neurons"], stats["params"]) == (200, 20, 110)
    assert stats["calls"] == 2
    assert energy.total_energy("cpu") == pytest.approx(8.6e-9 * (200 + 20))
    assert energy.layer_energy(shared, "loihi", 3) == pytest.approx(
        3 * (27.1e-12 * 200 + 81e-12 * 20)
    )

    # Twice in sequence.
    inp = keras.Input((10,))
    twice = keras.layers.Dense(10, name="twice")
    out = keras.layers.Dense(2, name="out")(twice(twice(inp)))
    energy = ModelEnergy(keras.Model(inp, out, name="shared"))
    assert energy.layer_stats["twice"]["connections"] == 200
    assert energy.layer_stats["twice"]["calls"] == 2
    per_call = energy.layer_stats["twice"]["per_call"]
    assert [call["connections"] for call in per_call] == [100, 100]
    assert energy.total_energy("gpu") == pytest.approx(0.3e-9 * (200 + 20))

    # The same in a Sequential model.
    sequential = keras.Sequential([keras.Input((10,)), twice, twice])
    assert ModelEnergy(sequential).layer_stats["twice"]["connections"] == 200

    # The summary has one row for the layer, with the counts of both calls.
    lines = []
    energy.summary(print_fn=lines.append)
    _, _, body, total, _, _ = table(lines[0])
    assert [row.split()[0] for row in body] == ["input_layer", "twice", "out"]
    assert body[1].split()[:7] == [
        "twice",
        "(Dense)",
        "x2",
        "(None,",
        "10)",
        "110",
        "200",
    ]
    assert total.split()[:4] == ["Total", "132", "220", "0"]


def test_shared_layers_with_and_without_spikes():
    """Each call of a shared layer has its own input and rate."""
    inp = keras.Input((STEPS, 8))
    kernel = np.random.RandomState(2).uniform(0, 1, (8, 8)).astype("float32")
    louder = keras.layers.Dense(
        8, kernel_initializer=keras.initializers.Constant(2 * kernel), name="louder"
    )(inp)
    spikes = keras_spiking.SpikingActivation("relu", dt=DT, seed=0, name="spikes")
    quiet, loud = spikes(inp), spikes(louder)
    shared = keras.layers.Dense(4, name="shared")
    outputs = [shared(quiet), shared(loud), shared(inp)]
    model = keras.Model(inp, outputs)
    data = np.random.RandomState(0).uniform(0, 20, (8, STEPS, 8)).astype("float32")
    energy = ModelEnergy(model, data)
    rates = [
        float(np.mean(np.abs(y)))
        for y in keras.Model(inp, [quiet, loud]).predict(data, verbose=0)
    ]
    assert 0 < rates[0] < rates[1]

    stats = energy.layer_stats
    assert (stats["spikes"]["calls"], stats["spikes"]["neurons"]) == (2, 16)
    shared_stats = stats["shared"]
    assert (shared_stats["calls"], shared_stats["connections"]) == (3, 96)
    per_call = shared_stats["per_call"]
    assert [call["spiking_input"] for call in per_call] == [True, True, False]
    assert per_call[0]["input_rate"] == pytest.approx(rates[0], rel=1e-5)
    assert per_call[1]["input_rate"] == pytest.approx(rates[1], rel=1e-5)
    assert per_call[2]["input_rate"] is None
    # The layer as a whole: some calls receive spikes, at their mean rate.
    assert shared_stats["spiking_input"]
    assert shared_stats["input_rate"] == pytest.approx(sum(rates) / 2, rel=1e-5)
    assert shared_stats["synops_per_second"] == pytest.approx(32 * sum(rates), rel=1e-5)

    e_s, e_n = LOIHI["energy_per_synop"], LOIHI["energy_per_neuron"]
    # Two calls pay per input spike, the third every synapse every step.
    expected = 32 * (rates[0] + rates[1]) * DT * e_s + 32 * e_s
    assert energy.layer_energy("shared", "loihi") == pytest.approx(expected, rel=1e-5)
    assert energy.total_energy("loihi", timesteps_per_inference=STEPS) == (
        pytest.approx(STEPS * (expected + 64 * e_s + 16 * e_n), rel=1e-5)
    )
    assert energy.layer_energy("shared", "cpu") == pytest.approx(
        96 * CPU["energy_per_synop"]
    )


def test_bad_arguments():
    energy = ModelEnergy(dense_model())
    with pytest.raises(TypeError, match="keras.Model"):
        ModelEnergy(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="Unknown device 'tpu'"):
        energy.total_energy("tpu")
    with pytest.raises(ValueError, match="timesteps_per_inference"):
        energy.total_energy("cpu", timesteps_per_inference=0)
    with pytest.raises(ValueError, match="dt"):
        energy.total_energy("cpu", dt=-1)
    with pytest.raises(ValueError, match="no layer 'missing'"):
        energy.layer_energy("missing", "cpu")
    with pytest.raises(ValueError, match="Unknown summary column"):
        energy.summary(columns=("name", "energy_tpu"))


def table(text):
    """(caption lines, header, body rows, total row, rule width, all lines)."""
    rows = text.splitlines()
    rules = [i for i, row in enumerate(rows) if row and set(row) == {"="}]
    dashes = next(i for i, row in enumerate(rows) if row and set(row) == {"-"})
    return (
        rows[: rules[0]],
        rows[rules[0] + 1],
        rows[rules[1] + 1 : dashes],
        rows[dashes + 1],
        len(rows[rules[0]]),
        rows,
    )


def test_summary_text():
    energy = ModelEnergy(dense_model())
    lines = []
    energy.summary(timesteps_per_inference=2, print_fn=lines.append)
    (text,) = lines
    caption, header, body, total, width, rows = table(text)
    assert caption[0] == 'Model energy: "mlp"'
    assert " ".join(caption[1:]).startswith("(per inference: 2 timesteps;")
    assert (
        header.split()
        == (
            "Layer (type) Output shape Param # Connections Neurons "
            "J/inf (cpu) J/inf (loihi)"
        ).split()
    )
    assert [row.split()[0] for row in body] == ["input_layer", "hidden", "out"]
    cpu, loihi = 8.6e-9, 27.1e-12
    assert body[1].split() == [
        "hidden",
        "(Dense)",
        "(None,",
        "5)",
        "35",
        "30",
        "5",
        f"{2 * cpu * 35:.3g}",
        f"{2 * (loihi * 30 + 81e-12 * 5):.3g}",
    ]
    assert total.split() == [
        "Total",
        "53",
        "45",
        "5",
        f"{2 * cpu * 50:.3g}",
        f"{2 * (loihi * 45 + 81e-12 * 5):.3g}",
    ]
    assert all(len(row) <= width for row in rows)
    assert rows[-1] == "=" * width


def test_summary_columns_rates_and_line_length():
    model = spiking_model()
    data = np.random.RandomState(0).uniform(0, 20, (16, STEPS, 8)).astype("float32")
    lines = []
    ModelEnergy(model, data).summary(
        columns=("name", "rate", "synops", "energy_spinnaker2"),
        line_length=60,
        print_fn=lines.append,
    )
    _, _, body, _, width, rows = table(lines[0])
    assert width == 60
    assert all(len(row) <= 60 for row in rows)
    rate = measured_rate(model, data)
    # Names are truncated to fit; the numbers are not.
    out_row = next(row for row in body if row.startswith("out (Dense)"))
    assert out_row.split()[2:4] == [f"{rate:.3g}", f"{64 * rate:.3g}"]
    hidden_row = next(row for row in body if row.startswith("hidden"))
    assert hidden_row.split()[-3:-1] == ["-", "-"]

    lines = []
    ModelEnergy(model).summary(print_fn=lines.append)
    _, _, _, total, _, rows = table(lines[0])
    assert total.split()[-1] == "n/a"  # loihi needs the rates
    assert rows[-1].startswith("n/a: spike rates not measured")


def test_repeat_vector_adds_the_time_axis():
    """The walkthrough's form: Flatten -> RepeatVector -> Dense -> spikes."""
    inp = keras.Input((3, 3))
    x = keras.layers.Flatten(name="flat")(inp)
    x = keras.layers.RepeatVector(STEPS, name="frames")(x)
    x = keras.layers.Dense(4, name="hidden")(x)
    x = keras_spiking.SpikingActivation("relu", name="spikes")(x)
    x = keras_spiking.TemporalAvgPool(name="rates")(x)
    out = keras.layers.Dense(2, name="out")(x)
    stats = ModelEnergy(keras.Model(inp, out)).layer_stats
    assert stats["frames"]["connections"] == 0
    assert stats["hidden"]["connections"] == 9 * 4
    assert stats["spikes"]["neurons"] == 4
    assert stats["out"]["spiking_input"]


def test_example_runs(tmp_path):
    """Smoke test of examples/model_energy.py on a few synthetic images."""
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "model_energy.py"
    spec = importlib.util.spec_from_file_location("model_energy_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    rows = example.main(
        [
            "--data",
            "synthetic",
            "--limit",
            "64",
            "--epochs",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert [row[0] for row in rows] == list(ModelEnergy.devices)
    for device, spiking, plain, spiking_energy in rows:
        assert spiking is ModelEnergy.devices[device]["spiking"]
        assert plain > 0 and spiking_energy > 0
        if not spiking:
            # Every synapse and neuron every step: 10 steps cost 10 times one.
            assert spiking_energy == pytest.approx(10 * plain, rel=1e-6)
    png = (tmp_path / "model_energy.png").read_bytes()
    assert png.startswith(b"\x89PNG")
