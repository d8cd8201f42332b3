"""``keras_spiking.ModelEnergy``: statistics, energies, registration, summary.

The first part tests the default, ``assume="converted"`` (keras-spiking 0.3's
computation and printing; ported tests name the original in a comment); the
second the ``assume="as_built"`` option.
"""

import importlib.util
import math
import pathlib
import warnings

import keras
import numpy as np
import pytest

import keras_spiking
from keras_spiking import ModelEnergy
from keras_spiking.model_energy import counters

CPU = ModelEnergy.devices["cpu"]
LOIHI = ModelEnergy.devices["loihi"]
AS_BUILT = {"assume": "as_built"}


@pytest.fixture
def registry():
    """Undo device and layer registrations made by a test."""
    devices = dict(ModelEnergy.devices)
    layers = {mode: dict(table) for mode, table in counters.REGISTRY.items()}
    yield
    ModelEnergy.devices.clear()
    ModelEnergy.devices.update(devices)
    for mode, table in layers.items():
        counters.REGISTRY[mode].clear()
        counters.REGISTRY[mode].update(table)


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


# ---------------------------------------------------------------------------
# Default: assume="converted" (keras-spiking 0.3)
# ---------------------------------------------------------------------------


def mnist_dense():
    inp = keras.Input((784,))
    return keras.Model(inp, keras.layers.Dense(128, activation="relu")(inp))


def cells(line):
    return [cell.strip() for cell in line.split("|")]


def test_docstring_summary_numbers(registry):
    """keras-spiking 0.3's ModelEnergy docstring example, value for value."""
    energy = ModelEnergy(mnist_dense())
    lines = energy.summary_string(line_length=80).splitlines()
    assert cells(lines[0]) == [
        "Layer (type)",
        "Output shape",
        "Param #",
        "Conn #",
        "Neuron #",
        "J/inf (cpu)",
    ]
    assert set(lines[1]) == {"-", "|"}
    assert cells(lines[2])[1:] == ["(None, 784)", "0", "0", "0", "0"]
    assert cells(lines[3])[0].endswith(" (Dense)")
    assert cells(lines[3])[1:] == ["(None, 128)", "100480", "100352", "128", "0.00086"]
    assert lines[4] == "=" * len(lines[0])
    assert lines[5] == "Total energy per inference [Joules/inf] (cpu): 8.64e-04"
    assert lines[6].startswith("* These are estimates only")
    assert all(len(line) <= 80 for line in lines)
    # Columns as wide as their cells; values right-aligned, names left.
    assert lines[3].startswith("dense (Dense) ")
    assert lines[3].split("|")[2] == " 100480"

    ModelEnergy.register_device(
        "my-cpu", energy_per_synop=1e-10, energy_per_neuron=2e-9, spiking=False
    )
    lines = energy.summary_string(
        columns=("name", "energy cpu", "energy my-cpu"), line_length=80
    ).splitlines()
    assert cells(lines[0]) == ["Layer (type)", "J/inf (cpu)", "J/inf (my-cpu)"]
    assert cells(lines[3])[1:] == ["0.00086", "1e-05"]
    assert lines[5:7] == [
        "Total energy per inference [Joules/inf] (cpu): 8.64e-04",
        "Total energy per inference [Joules/inf] (my-cpu): 1.03e-05",
    ]
    # Our column names are accepted as aliases.
    alias = energy.summary_string(columns=("name", "energy_cpu", "energy_my-cpu"))
    assert alias == energy.summary_string(
        columns=("name", "energy cpu", "energy my-cpu")
    )


def test_summary_prints(capsys):
    energy = ModelEnergy(mnist_dense())
    energy.summary(line_length=80)
    assert capsys.readouterr().out == energy.summary_string(line_length=80) + "\n"
    lines = []
    energy.summary(print_warnings=False, print_fn=lines.append)
    assert lines[0].splitlines()[-1].startswith("Total energy per inference")


def test_docstring_compute_layer_stats():
    inp = keras.Input([None, 10])
    layer = keras.layers.TimeDistributed(keras.layers.Dense(5, "relu"))
    keras.Model(inp, [layer(inp)])
    stats = ModelEnergy.compute_layer_stats(layer)
    assert stats == {"connections": 50, "neurons": 5, "spiking": False}
    assert repr(stats) == "{'connections': 50, 'neurons': 5, 'spiking': False}"


def test_docstring_register_layer(registry):
    @ModelEnergy.register_layer(keras.layers.UpSampling2D)
    def upsampling2d_stats(node):
        assert isinstance(node, keras_spiking.model_energy.LayerNode)
        return {"connections": np.prod(node.output_shapes[1:]), "neurons": 0}

    inp = keras.Input([4, 4, 3])
    layer = keras.layers.UpSampling2D(size=(2, 2))
    keras.Model(inp, [layer(inp)])
    stats = ModelEnergy.compute_layer_stats(layer)
    assert repr(stats) == "{'connections': 192, 'neurons': 0}"


@pytest.mark.parametrize("use_time", [False, True])
@pytest.mark.parametrize("use_skip", [False, True])
def test_summary_lines(use_time, use_skip):
    # keras-spiking 0.3: test_summary
    keras.utils.set_random_seed(0)
    wrap = keras.layers.TimeDistributed if use_time else (lambda layer: layer)
    pool = (
        keras.layers.GlobalAveragePooling3D
        if use_time
        else keras.layers.GlobalAveragePooling2D
    )
    time = [10] if use_time else []
    data = np.random.RandomState(0).uniform(-1, 1, [4, *time, 22, 22, 3])
    inp = keras.Input([None] * use_time + [22, 22, 3])
    x1 = wrap(keras.layers.Conv2D(4, (1, 1), activation="relu"))(inp)
    x = wrap(keras.layers.Conv2D(32, (3, 3)))(x1)
    x = wrap(keras.layers.Activation("relu"))(x)
    x = wrap(keras.layers.Dropout(0.1))(x)
    x = pool()(x)
    y = keras.layers.Dense(10, activation="relu")(x)
    if use_skip:
        x = keras.layers.Dense(10, activation="relu")(pool()(x1))
        y = keras.layers.Add()([y, x])
    energy = ModelEnergy(keras.Model(inp, [y]), example_data=data)
    columns = ("name", "output_shape", "params", "connections", "neurons", "rate")
    columns += ("energy cpu", "energy spinnaker2", "synop_energy loihi")
    columns += ("neuron_energy loihi", "energy loihi")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every layer here is known
        text = energy.summary_string(
            columns=columns, timesteps_per_inference=10, line_length=200
        )
    lines = text.splitlines()
    rule = max(i for i, line in enumerate(lines) if line and set(line) == {"="})
    tail = lines[rule + 1 :]
    for line, device in zip(tail, ("cpu", "spinnaker2", "loihi"), strict=False):
        assert line.startswith(f"Total energy per inference [Joules/inf] ({device})")
    assert tail[3].startswith("* These are estimates only")
    assert tail[4].startswith("* This model contains non-spiking activations")
    assert len(lines[0]) <= 200

    if use_time:
        # A spiking model gets no note about non-spiking activations.
        model = keras.Model(inp, keras_spiking.SpikingActivation("relu")(inp))
        text = ModelEnergy(model).summary_string(
            columns=("name", "energy cpu"), line_length=200
        )
        lines = text.splitlines()
        assert lines[-1].startswith("* These are estimates only")
        assert not any("non-spiking activations" in line for line in lines)


@pytest.mark.parametrize("timesteps", [1, 8, None])
def test_spiking_energy_linear_in_timesteps(timesteps):
    # keras-spiking 0.3: test_device_energy
    wrap = keras.layers.TimeDistributed if timesteps != 1 else (lambda layer: layer)
    time = [] if timesteps == 1 else [timesteps]
    shape = [*time, 17, 17, 8]
    data_time = [] if timesteps == 1 else [timesteps or 5]
    data = np.random.RandomState(0).uniform(-1, 1, [2, *data_time, 17, 17, 8])
    inp = keras.Input(shape)
    x = wrap(keras.layers.Conv2D(32, (3, 3), activation="relu"))(inp)
    y = wrap(keras.layers.Dense(10, activation="relu"))(x)
    energy = ModelEnergy(keras.Model(inp, [y]), example_data=data)
    assert energy.total_energy("loihi", timesteps_per_inference=46) == (
        2 * energy.total_energy("loihi", timesteps_per_inference=23)
    )
    # A non-spiking device makes one pass per inference.
    assert energy.total_energy("cpu", timesteps_per_inference=46) == (
        energy.total_energy("cpu")
    )


@pytest.mark.parametrize("assume", ["converted", "as_built"])
def test_layer_called_twice_counts_twice(assume):
    # keras-spiking 0.3: test_layer_repeat
    layer = keras.layers.Dense(10, activation="relu")
    inp = keras.Input([10])
    once = ModelEnergy(keras.Model(inp, [layer(inp)]), assume=assume)
    twice = ModelEnergy(keras.Model(inp, [layer(layer(inp))]), assume=assume)
    for stat in ("connections", "neurons"):
        assert twice.layer_stats[layer][stat] == 2 * once.layer_stats[layer][stat]
    assert twice.layer_stats[layer]["connections"] == 200
    assert once.layer_stats[layer]["neurons"] == 10
    assert twice.total_energy("cpu") == pytest.approx(8.6e-9 * (200 + 20))


@pytest.mark.parametrize("dims", [1, 3])
@pytest.mark.parametrize(
    "spiking, timesteps",
    [(False, 1), (False, 8), (False, None), (True, 8), (True, None)],
)
def test_activation_layer_neurons(dims, spiking, timesteps):
    # keras-spiking 0.3: test_activation_stats
    shape = [5, 7, 6][-dims:]
    if timesteps != 1:
        shape = [timesteps, *shape]
    inp = keras.Input(shape)
    if spiking:
        layer = keras_spiking.SpikingActivation("relu")
    elif timesteps == 8:
        layer = keras.layers.TimeDistributed(keras.layers.Activation("relu"))
    else:
        layer = keras.layers.Activation("relu")
    out = layer(inp)
    energy = ModelEnergy(keras.Model(inp, [out]))
    per_step = tuple(out.shape)[2 if timesteps != 1 or spiking else 1 :]
    assert energy.layer_stats[layer]["connections"] == 0
    assert energy.layer_stats[layer]["neurons"] == math.prod(per_step)
    assert energy.layer_stats[layer]["spiking"] is spiking


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("act", [None, "relu"])
@pytest.mark.parametrize("strides", [(1, 1, 1), (2, 1, 2)])
@pytest.mark.parametrize("timesteps", [1, 8, None])
def test_conv_connections_include_padding_taps(dims, act, strides, timesteps):
    # keras-spiking 0.3: test_conv_stats
    conv_class = getattr(keras.layers, f"Conv{dims}D")
    kernel_size = [4, 5, 3][-dims:]
    shape = [5, 7, 6][-dims:] + [4]
    if timesteps != 1:
        shape = [timesteps, *shape]
    conv = conv_class(12, kernel_size, activation=act, strides=strides[-dims:])
    layer = keras.layers.TimeDistributed(conv) if timesteps != 1 else conv
    inp = keras.Input(shape)
    out = layer(inp)
    stats = ModelEnergy(keras.Model(inp, [out])).layer_stats[layer]
    size = math.prod(tuple(out.shape)[2 if timesteps != 1 else 1 :])
    assert stats["connections"] == size * math.prod(kernel_size) * 4
    assert stats["neurons"] == (0 if act is None else size)


def test_conv_same_padding_counts_every_tap():
    inp = keras.Input((7, 6, 2))
    conv = keras.layers.Conv2D(3, (3, 2), strides=(2, 1), padding="same")
    out = conv(inp)
    stats = ModelEnergy(keras.Model(inp, out)).layer_stats[conv]
    # 4 x 6 positions x 3 x 2 taps x 2 channels x 3 filters, padding included
    # (as_built excludes it: see test_conv2d_statistics_by_hand).
    assert tuple(out.shape) == (None, 4, 6, 3)
    assert stats["connections"] == 4 * 6 * 6 * 2 * 3


@pytest.mark.parametrize("input_shape", [[10], [5, 10]])
@pytest.mark.parametrize("act", [None, "relu"])
@pytest.mark.parametrize("timesteps", [1, 8, None])
def test_dense_connections(input_shape, act, timesteps):
    # keras-spiking 0.3: test_dense_stats
    time = [] if timesteps == 1 else [timesteps]
    inp = keras.Input([*time, *input_shape])
    dense = keras.layers.Dense(20, activation=act)
    layer = keras.layers.TimeDistributed(dense) if timesteps != 1 else dense
    out = layer(inp)
    stats = ModelEnergy(keras.Model(inp, [out])).layer_stats[layer]
    size = math.prod(tuple(out.shape)[2 if timesteps != 1 else 1 :])
    assert stats["connections"] == size * input_shape[-1]
    assert stats["neurons"] == (0 if act is None else size)
    assert stats["spiking"] is (act is None)


class DummyLayer(keras.layers.Layer):
    def call(self, x):
        return x


def test_errors_and_warnings(registry):
    # keras-spiking 0.3: test_modelenergy_errors
    with pytest.raises(ValueError, match="Cannot compute stats for layer of type"):
        ModelEnergy.compute_layer_stats(object())

    dummy = DummyLayer()
    dummy(keras.Input([10]))
    with pytest.warns(UserWarning, match="Cannot compute stats for layer of type"):
        assert ModelEnergy.compute_layer_stats(dummy) == {}

    @ModelEnergy.register_layer(DummyLayer)
    def dummy_stats(node):
        return {}

    with pytest.warns(UserWarning, match="Layer 'DummyLayer' already registered"):

        @ModelEnergy.register_layer(DummyLayer)
        def bad_dummy_stats(node):
            return {"notastat": 5}

    ModelEnergy.register_device(
        "dummydevice", energy_per_synop=1e-12, energy_per_neuron=1e-10, spiking=True
    )
    with pytest.warns(UserWarning, match="Device 'dummydevice' already registered"):
        ModelEnergy.register_device(
            "dummydevice", energy_per_synop=1e-12, energy_per_neuron=1e-10, spiking=True
        )
    with pytest.raises(ValueError, match="invalid stat 'notastat'"):
        ModelEnergy.compute_layer_stats(dummy)

    inp = keras.Input([5, 10])
    energy = ModelEnergy(keras.Model(inp, [keras.layers.Dense(20, "relu")(inp)]))
    with pytest.raises(ValueError, match="Energy specs unknown for device"):
        energy.total_energy("notadevice")
    with pytest.raises(ValueError, match="never been applied to any inputs"):
        ModelEnergy.compute_layer_stats(keras.layers.Dense(10))
    with pytest.raises(ValueError, match="Unknown column type 'notacolumn'"):
        energy.summary(columns=["name", "notacolumn"])

    inp = keras.Input([None, None, 5])
    model = keras.Model(inp, keras.layers.Dense(20)(inp))
    with pytest.raises(
        ValueError, match=r"output shape \(None, 20\) contains undefined elements"
    ):
        ModelEnergy(model)

    with pytest.raises(ValueError, match="example_data must be given"):
        energy.total_energy("loihi")


@pytest.mark.parametrize("time", [None, 5])
def test_time_axis_of_activations(time):
    # keras-spiking 0.3: test_activation_distribution
    inp = keras.Input((time, 10))
    relu = keras.layers.ReLU()
    relu_per_step = keras.layers.TimeDistributed(keras.layers.ReLU())
    spiking = keras_spiking.SpikingActivation("relu")
    for layer in (relu, relu_per_step, spiking):
        layer(inp)
    # An undefined axis 1 is time; a defined one is not (unless wrapped).
    assert ModelEnergy.compute_layer_stats(relu)["neurons"] == (
        10 if time is None else 50
    )
    assert ModelEnergy.compute_layer_stats(relu_per_step)["neurons"] == 10
    assert ModelEnergy.compute_layer_stats(spiking)["neurons"] == 10


def test_undefined_axis_is_a_clear_error():
    """Bug 3: a ValueError naming the layer, not a TypeError from math.prod."""
    inp = keras.Input((None, None, 1))
    out = keras.layers.Conv2D(2, 3, name="conv")(inp)
    with pytest.raises(
        ValueError, match=r"'conv' layer.*\(None, 2\) contains undefined"
    ):
        ModelEnergy(keras.Model(inp, out))
    inp = keras.Input((None, None, 4))
    out = keras.layers.ReLU(name="relu")(inp)
    with pytest.raises(ValueError, match=r"'relu' layer.*output shape \(None, 4\)"):
        ModelEnergy(keras.Model(inp, out))
    # A leading undefined axis is time.
    inp = keras.Input((None, 4))
    layer = keras.layers.Dense(3)
    stats = ModelEnergy(keras.Model(inp, layer(inp))).layer_stats[layer]
    assert stats == {"connections": 12, "neurons": 0, "spiking": True}


def test_free_and_unknown_layers():
    a, b = keras.Input((4, 4, 3)), keras.Input((4, 4, 3))
    merged = [
        layer([a, b])
        for layer in (
            keras.layers.Add(),
            keras.layers.Subtract(),
            keras.layers.Multiply(),
            keras.layers.Average(),
            keras.layers.Maximum(),
            keras.layers.Minimum(),
            keras.layers.Concatenate(),
        )
    ]
    x = keras.layers.Reshape((16, 3))(keras.layers.Dropout(0.5)(merged[0]))
    x = keras.layers.Flatten()(keras.layers.GlobalAveragePooling1D()(x))
    x = keras_spiking.Lowpass(0.01)(keras.layers.Reshape((1, 3))(x))
    x = keras_spiking.TemporalAvgPool()(keras_spiking.Alpha(0.01)(x))
    pooled = keras.layers.MaxPooling2D()(merged[1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        energy = ModelEnergy(keras.Model([a, b], [x, pooled, *merged[2:]]))
    assert [str(w.message) for w in caught] == [
        "Cannot compute stats for layer of type 'MaxPooling2D'. Use "
        "`ModelEnergy.register_layer` to register this layer."
    ]
    for stats in energy.layer_stats.values():
        assert stats == {"connections": 0, "neurons": 0, "spiking": True}


def dense_pair():
    inp = keras.Input((6,))
    x = keras.layers.Dense(5, activation="relu", name="hidden")(inp)
    out = keras.layers.Dense(3, name="out")(x)
    return keras.Model(inp, out)


def test_energy_formulas_by_hand():
    model = dense_pair()
    data = np.random.RandomState(0).uniform(-2, 1, (7, 6)).astype("float32")
    energy = ModelEnergy(model, example_data=data)
    hidden, out = model.get_layer("hidden"), model.get_layer("out")
    # Rate: mean |input| over the examples and units.
    hidden_out = keras.Model(model.inputs, hidden.output).predict(data, verbose=0)
    assert energy.layer_rates[hidden] == pytest.approx(np.mean(np.abs(data)), 1e-6)
    assert energy.layer_rates[out] == pytest.approx(np.mean(np.abs(hidden_out)), 1e-5)

    # Non-spiking: one pass, whatever the timesteps and dt.
    synop, neuron = energy.layer_energy(hidden, "cpu", timesteps_per_inference=9)
    assert (synop, neuron) == (pytest.approx(8.6e-9 * 30), pytest.approx(8.6e-9 * 5))
    assert energy.total_energy("GPU", dt=0.5) == pytest.approx(0.3e-9 * 50)
    # Spiking: synop = E_s C r dt T, neuron = E_n N T; dt: default.dt.
    assert keras_spiking.default.dt == 0.001
    rate = energy.layer_rates[out]
    synop, neuron = energy.layer_energy(out, "Loihi", timesteps_per_inference=4)
    assert synop == pytest.approx(27.1e-12 * 15 * rate * 0.001 * 4)
    assert neuron == 0
    synop, neuron = energy.layer_energy("hidden", "loihi", 4, dt=0.01)
    assert synop == pytest.approx(27.1e-12 * 30 * energy.layer_rates[hidden] * 0.04)
    assert neuron == pytest.approx(81e-12 * 5 * 4)

    # Without example_data: no rates, no spiking-device energy.
    energy = ModelEnergy(model)
    assert energy.layer_rates == {}
    with pytest.raises(ValueError, match="example_data must be given"):
        energy.layer_energy(hidden, "spinnaker")
    text = energy.summary_string(columns=("name", "rate"))
    assert cells(text.splitlines()[3])[1] == "nan"


def test_shared_layer_rates_add_up():
    """Bug 4 in the default mode: every call counts, rates summed over calls."""
    a, b = keras.Input((10,)), keras.Input((10,))
    shared = keras.layers.Dense(10, activation="relu", name="shared")
    model = keras.Model([a, b], [shared(a), shared(b)])
    data = [np.full((3, 10), 2.0, "float32"), np.full((3, 10), -0.5, "float32")]
    energy = ModelEnergy(model, example_data=data)
    assert energy.layer_stats[shared] == {
        "connections": 200,
        "neurons": 20,
        "spiking": False,
    }
    assert energy.layer_rates[shared] == pytest.approx(2.5)
    assert energy.total_energy("cpu") == pytest.approx(8.6e-9 * 220)
    lines = energy.summary_string(columns=("name", "output_shape", "calls")).split("\n")
    row = next(line for line in lines if line.startswith("shared"))
    assert cells(row) == ["shared (Dense)", "(None, 10)", "2"]


def notebook_model():
    """keras-spiking 0.3's model-energy notebook model, with fixed weights."""
    inp = x = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(filters=2, kernel_size=(7, 7))(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(units=128)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Dense(units=10)(x)
    model = keras.Model(inp, x)
    rng = np.random.RandomState(1)
    for layer in model.layers:
        weights = layer.get_weights()
        layer.set_weights([rng.uniform(-0.1, 0.2, w.shape) for w in weights])
    return model


def test_notebook_numbers_match_keras_spiking_03():
    """Totals and rates as keras-spiking 0.3 (tf-keras 2.21) computes them."""
    model = notebook_model()
    energy = ModelEnergy(model, example_data=np.ones((32, 28, 28, 1), "float32"))
    stats = [energy.layer_stats[layer] for layer in model.layers]
    assert [s["connections"] for s in stats] == [0, 47432, 0, 0, 123904, 0, 1280]
    assert [s["neurons"] for s in stats] == [0, 0, 968, 0, 0, 128, 0]
    rates = [energy.layer_rates[layer] for layer in model.layers]
    expected = [1, 1, 2.28817, 2.28817, 2.28817, 111.108, 111.108]
    assert rates == pytest.approx(expected, rel=1e-5)
    assert energy.total_energy("cpu") == pytest.approx(1.493923e-03, rel=1e-6)
    assert energy.total_energy("gpu", 10) == pytest.approx(5.211360e-05, rel=1e-6)
    assert energy.total_energy("loihi") == pytest.approx(1.015987e-07, rel=1e-5)
    assert energy.total_energy("loihi", 10, dt=0.002) == pytest.approx(
        1.144215e-06, rel=1e-5
    )
    assert energy.total_energy("spinnaker2", 10) == pytest.approx(
        2.613164e-05, rel=1e-5
    )


def test_narrow_table_cuts_columns():
    energy = ModelEnergy(mnist_dense())
    columns = ("name", "output_shape", "params", "connections", "energy loihi")
    text = ModelEnergy(mnist_dense()).summary_string(
        columns=("name", "output_shape", "params", "connections"), line_length=40
    )
    lines = text.splitlines()
    assert all(len(line) == 40 for line in lines[:4])
    # Columns narrower than an equal share (37 // 4) keep their width; the
    # width left goes to the name.
    assert [len(cell) for cell in lines[1].split("|")] == [15, 9, 7, 6]
    assert cells(lines[3])[2:] == ["100480", "100352"]
    with pytest.raises(ValueError, match="example_data must be given"):
        energy.summary_string(columns=columns)
    with pytest.raises(ValueError, match="Unknown column type 'energy tpu'"):
        energy.summary_string(columns=("name", "energy tpu"))


# ---------------------------------------------------------------------------
# assume="as_built": the model as it is
# ---------------------------------------------------------------------------


def built(*args, **kwargs):
    return ModelEnergy(*args, **AS_BUILT, **kwargs)


def layer_joules(energy, *args, **kwargs):
    """Synaptic plus neuron energy of one layer."""
    return sum(energy.layer_energy(*args, **kwargs))


def dense_model():
    inp = keras.Input((6,))
    x = keras.layers.Dense(5, activation="relu", name="hidden")(inp)
    out = keras.layers.Dense(3, name="out")(x)
    return keras.Model(inp, out, name="mlp")


def test_dense_statistics_and_energy_by_hand():
    energy = built(dense_model())
    hidden, out = energy.layer_details["hidden"], energy.layer_details["out"]
    assert (hidden["connections"], hidden["neurons"], hidden["params"]) == (30, 5, 35)
    # A linear output layer updates no neurons.
    assert (out["connections"], out["neurons"], out["params"]) == (15, 0, 18)
    assert energy.layer_details["input_layer"]["connections"] == 0
    assert not hidden["spiking_input"] and hidden["input_rate"] is None

    cpu = 8.6e-9 * (30 + 5 + 15)
    assert energy.total_energy("cpu") == pytest.approx(cpu)
    assert energy.total_energy("cpu", timesteps_per_inference=4) == pytest.approx(
        4 * cpu
    )
    assert layer_joules(energy, "hidden", "gpu") == pytest.approx(0.3e-9 * 35)
    # Not spikes: a spiking device pays every synapse every step, as a CPU does.
    loihi = 27.1e-12 * (30 + 15) + 81e-12 * 5
    assert energy.total_energy("loihi", timesteps_per_inference=2) == pytest.approx(
        2 * loihi
    )
    layer = energy.model.get_layer("out")
    assert layer_joules(energy, layer, "spinnaker2") == pytest.approx(450e-12 * 15)


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
    energy = built(keras.Model(inp, out))

    conv = energy.layer_details["conv"]
    assert conv["output_shape"] == (None, 4, 6, 3)
    # Pairs under the kernel x 2 input channels x 3 filters.
    pairs = ones_conv_pairs((7, 6), (3, 2), (2, 1), "same")
    assert conv["connections"] == pairs * 2 * 3
    # Without padding at the edges it would be 4 * 6 positions x 6 taps.
    assert conv["connections"] < 4 * 6 * 6 * 2 * 3
    assert conv["neurons"] == 4 * 6 * 3
    assert conv["params"] == 3 * 2 * 2 * 3 + 3

    pool = energy.layer_details["pool"]
    assert pool["output_shape"] == (None, 2, 3, 3)
    assert pool["connections"] == ones_conv_pairs((4, 6), 2, 2, "same") * 3
    assert pool["neurons"] == 0
    assert energy.layer_details["flat"]["connections"] == 0
    assert energy.layer_details["out"]["connections"] == 2 * 3 * 3 * 4

    total = conv["connections"] + pool["connections"] + 72
    assert energy.total_energy("cpu") == pytest.approx(8.6e-9 * (total + 72))


def test_conv1d_valid_and_causal_by_hand():
    inp = keras.Input((5, 2))
    x = keras.layers.Conv1D(4, 3, padding="causal", name="causal")(inp)
    out = keras.layers.Conv1D(1, 2, padding="valid", name="valid")(x)
    energy = built(keras.Model(inp, out))
    # Causal: 5 outputs x 3 taps, minus the 2 + 1 taps before the start.
    assert energy.layer_details["causal"]["connections"] == (15 - 3) * 2 * 4
    assert energy.layer_details["valid"]["connections"] == 4 * 2 * 4 * 1


def test_global_pooling_and_activation_layers():
    inp = keras.Input((4, 4, 3))
    x = keras.layers.Activation("tanh", name="tanh")(inp)
    x = keras.layers.Activation("linear", name="linear")(x)
    x = keras.layers.ReLU(name="relu")(x)
    out = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    stats = built(keras.Model(inp, out)).layer_details
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
    energy = built(model, example_data=data)
    stats = energy.layer_details
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
    assert layer_joules(energy, "out", "loihi", dt=2 * DT) == pytest.approx(
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
    low, high = built(model, data), built(model, 3 * data)
    rate_low, rate_high = measured_rate(model, data), measured_rate(model, 3 * data)
    # ReLU with zero bias: three times the input, about three times the rate.
    assert rate_high / rate_low == pytest.approx(3, rel=0.1)
    for device in ("loihi", "spinnaker", "spinnaker2"):
        ratio = layer_joules(low, "out", device) / layer_joules(high, "out", device)
        assert ratio == pytest.approx(rate_low / rate_high, rel=1e-5)
    for device in ("cpu", "gpu", "arm"):
        assert low.total_energy(device) == high.total_energy(device)


def test_spiking_energy_needs_example_data():
    energy = built(spiking_model())
    assert energy.layer_details["out"]["spiking_input"]
    assert energy.layer_details["out"]["input_rate"] is None
    with pytest.raises(ValueError, match="example_data"):
        energy.total_energy("loihi")
    # Layers that do not receive spikes can still be estimated.
    assert layer_joules(energy, "hidden", "loihi") > 0
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
    energy = built(keras.Model(inp, out), data.astype("float32"))
    stats = energy.layer_details
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
        built(keras.Model(inp, out))
    assert "'scale'" in str(info.value)


def test_registered_layer_and_device(registry):
    seen = {}

    @ModelEnergy.register_layer(Scale)
    def scale_stats(node):
        seen[node.layer.name] = (node.input_shapes, node.output_shapes)
        return {"connections": math.prod(node.input_shapes[1:]), "neurons": 1}

    ModelEnergy.register_device("chip", 2e-12, 5e-12, spiking=True)

    inp = keras.Input((STEPS, 4))
    x = keras_spiking.SpikingActivation("relu", dt=DT, seed=0, name="spikes")(inp)
    out = Scale(name="scale")(x)
    model = keras.Model(inp, out)
    data = np.random.RandomState(0).uniform(0, 50, (8, STEPS, 4)).astype("float32")
    energy = built(model, data)
    # The function gets one timestep's shapes (batch axis first).
    assert seen["scale"] == ((None, 4), (None, 4))
    stats = energy.layer_details["scale"]
    assert (stats["connections"], stats["neurons"]) == (4, 1)
    assert stats["spiking_input"]
    spikes = keras.Model(inp, x).predict(data, verbose=0)
    rate = float(np.mean(np.abs(spikes)))
    assert stats["input_rate"] == pytest.approx(rate, rel=1e-5)
    assert layer_joules(energy, "scale", "chip", timesteps_per_inference=3) == (
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
    def wrong(node):
        return {"connections": 1.5}

    inp = keras.Input((3,))
    with pytest.raises(TypeError, match="must return"):
        built(keras.Model(inp, Scale()(inp)))


def test_layouts_that_cannot_be_counted_per_timestep():
    inp = keras.Input((STEPS, 4))
    x = keras_spiking.SpikingActivation("relu")(inp)
    with pytest.raises(ValueError, match="TimeDistributed"):
        built(keras.Model(inp, keras.layers.Flatten()(x)))
    x = keras.layers.Conv1D(2, 3)(inp)
    with pytest.raises(ValueError, match="needs a time axis"):
        built(keras.Model(inp, keras_spiking.SpikingActivation("relu")(x)))
    inner = dense_model()
    outer_in = keras.Input((6,))
    with pytest.raises(ValueError, match="Nested models"):
        built(keras.Model(outer_in, inner(outer_in)))


def test_undefined_axis_other_than_time_is_an_error():
    # An undefined axis 1 that no layer takes as the time axis.
    inp = keras.Input((None, 4))
    out = keras.layers.Dense(3, name="dense")(inp)
    with pytest.raises(
        ValueError,
        match=r"'dense' \(Dense\).*\(None, None, 4\).*fully defined shape apart "
        r"from the batch and the time axis",
    ):
        built(keras.Model(inp, out))
    inp = keras.Input((None, None, 1))
    out = keras.layers.GlobalAveragePooling2D(name="gap")(inp)
    with pytest.raises(ValueError, match=r"'gap'.*\(None, None, None, 1\)"):
        built(keras.Model(inp, out))
    # Undefined after the time axis.
    inp = keras.Input((None, None, 4))
    x = keras.layers.Dense(3, name="hidden")(inp)
    out = keras_spiking.TemporalAvgPool()(x)
    with pytest.raises(ValueError, match=r"'hidden'.*\(None, None, None, 4\)"):
        built(keras.Model(inp, out))
    # An undefined time axis is fine.
    inp = keras.Input((None, 4))
    x = keras.layers.Dense(3, name="hidden")(inp)
    out = keras_spiking.SpikingActivation("relu", name="spikes")(x)
    stats = built(keras.Model(inp, out)).layer_details
    assert stats["hidden"]["connections"] == 12
    assert stats["spikes"]["neurons"] == 3


def test_shared_layer_counts_every_call():
    a, b = keras.Input((10,), name="a"), keras.Input((10,), name="b")
    shared = keras.layers.Dense(10, activation="relu", name="shared")
    energy = built(keras.Model([a, b], [shared(a), shared(b)]))
    stats = energy.layer_details["shared"]
    # 100 synapses and 10 neurons per call; the weights once.
    assert (stats["connections"], stats["neurons"], stats["params"]) == (200, 20, 110)
    assert stats["calls"] == 2
    assert energy.total_energy("cpu") == pytest.approx(8.6e-9 * (200 + 20))
    assert layer_joules(energy, shared, "loihi", 3) == pytest.approx(
        3 * (27.1e-12 * 200 + 81e-12 * 20)
    )

    # Twice in sequence.
    inp = keras.Input((10,))
    twice = keras.layers.Dense(10, name="twice")
    out = keras.layers.Dense(2, name="out")(twice(twice(inp)))
    energy = built(keras.Model(inp, out, name="shared"))
    assert energy.layer_details["twice"]["connections"] == 200
    assert energy.layer_details["twice"]["calls"] == 2
    per_call = energy.layer_details["twice"]["per_call"]
    assert [call["connections"] for call in per_call] == [100, 100]
    assert energy.total_energy("gpu") == pytest.approx(0.3e-9 * (200 + 20))

    # The same in a Sequential model.
    sequential = keras.Sequential([keras.Input((10,)), twice, twice])
    assert built(sequential).layer_details["twice"]["connections"] == 200

    # The summary has one row for the layer, with the counts of both calls.
    text = energy.summary_string(
        columns=("name", "output_shape", "params", "connections", "neurons", "calls")
    )
    body = [cells(line) for line in text.splitlines()[2:5]]
    assert [row[0] for row in body] == [
        "input_layer (InputLayer)",
        "twice (Dense)",
        "out (Dense)",
    ]
    assert body[1] == ["twice (Dense)", "(None, 10)", "110", "200", "0", "2"]
    assert [sum(int(row[i]) for row in body) for i in (2, 3, 4)] == [132, 220, 0]


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
    energy = built(model, data)
    rates = [
        float(np.mean(np.abs(y)))
        for y in keras.Model(inp, [quiet, loud]).predict(data, verbose=0)
    ]
    assert 0 < rates[0] < rates[1]

    stats = energy.layer_details
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
    assert layer_joules(energy, "shared", "loihi") == pytest.approx(expected, rel=1e-5)
    assert energy.total_energy("loihi", timesteps_per_inference=STEPS) == (
        pytest.approx(STEPS * (expected + 64 * e_s + 16 * e_n), rel=1e-5)
    )
    assert layer_joules(energy, "shared", "cpu") == pytest.approx(
        96 * CPU["energy_per_synop"]
    )


def test_bad_arguments():
    energy = built(dense_model())
    with pytest.raises(TypeError, match="keras.Model"):
        built(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="Energy specs unknown for device 'tpu'"):
        energy.total_energy("tpu")
    with pytest.raises(ValueError, match="timesteps_per_inference"):
        energy.total_energy("cpu", timesteps_per_inference=0)
    with pytest.raises(ValueError, match="dt"):
        energy.total_energy("cpu", dt=-1)
    with pytest.raises(ValueError, match="no layer 'missing'"):
        layer_joules(energy, "missing", "cpu")
    with pytest.raises(ValueError, match="Unknown column type 'energy_tpu'"):
        energy.summary(columns=("name", "energy_tpu"))


def test_summary_text():
    energy = built(dense_model())
    columns = ("name", "output_shape", "params", "connections", "neurons")
    text = energy.summary_string(
        columns=(*columns, "energy cpu", "energy loihi"), timesteps_per_inference=2
    )
    lines = text.splitlines()
    assert cells(lines[0]) == [
        "Layer (type)",
        "Output shape",
        "Param #",
        "Conn #",
        "Neuron #",
        "J/inf (cpu)",
        "J/inf (loihi)",
    ]
    body = [cells(line) for line in lines[2:5]]
    assert [row[0] for row in body] == [
        "input_layer (InputLayer)",
        "hidden (Dense)",
        "out (Dense)",
    ]
    cpu, loihi = 8.6e-9, 27.1e-12
    # As built, an inference is 2 timesteps on every device.
    assert body[1] == [
        "hidden (Dense)",
        "(None, 5)",
        "35",
        "30",
        "5",
        f"{2 * cpu * 35:.2g}",
        f"{2 * (loihi * 30 + 81e-12 * 5):.2g}",
    ]
    assert [sum(int(row[i]) for row in body) for i in (2, 3, 4)] == [53, 45, 5]
    assert lines[5] == "=" * len(lines[0])
    assert lines[6:8] == [
        f"Total energy per inference [Joules/inf] (cpu): {2 * cpu * 50:0.2e}",
        "Total energy per inference [Joules/inf] (loihi): "
        f"{2 * (loihi * 45 + 81e-12 * 5):0.2e}",
    ]
    # No note on non-spiking activations: as built, they are priced as such.
    assert [line[:2] for line in lines[8:]] == ["* "] + ["  "] * (len(lines) - 9)


def test_summary_columns_rates_and_line_length():
    model = spiking_model()
    data = np.random.RandomState(0).uniform(0, 20, (16, STEPS, 8)).astype("float32")
    text = built(model, data).summary_string(
        columns=("name", "rate", "synops", "energy_spinnaker2"), line_length=60
    )
    lines = text.splitlines()
    assert len(lines[0]) == 60
    # (The totals lines are not wrapped, as in keras-spiking 0.3.)
    assert all(len(line) <= 60 for line in lines if not line.startswith("Total"))
    rate = measured_rate(model, data)
    # Names are cut to fit; the numbers are not.
    out_row = cells(next(line for line in lines if line.startswith("out (Dense)")))
    assert out_row[1:3] == [f"{rate:.2g}", f"{64 * rate:.3g}"]
    hidden_row = cells(next(line for line in lines if line.startswith("hidden")))
    assert hidden_row[1:3] == ["-", "-"]

    text = built(model).summary_string(columns=("name", "energy loihi"))
    lines = text.splitlines()
    assert "Total energy per inference [Joules/inf] (loihi): n/a" in lines
    assert lines[-1].startswith("* n/a: spike rates not measured")


def test_repeat_vector_adds_the_time_axis():
    """The walkthrough's form: Flatten -> RepeatVector -> Dense -> spikes."""
    inp = keras.Input((3, 3))
    x = keras.layers.Flatten(name="flat")(inp)
    x = keras.layers.RepeatVector(STEPS, name="frames")(x)
    x = keras.layers.Dense(4, name="hidden")(x)
    x = keras_spiking.SpikingActivation("relu", name="spikes")(x)
    x = keras_spiking.TemporalAvgPool(name="rates")(x)
    out = keras.layers.Dense(2, name="out")(x)
    stats = built(keras.Model(inp, out)).layer_details
    assert stats["frames"]["connections"] == 0
    assert stats["hidden"]["connections"] == 9 * 4
    assert stats["spikes"]["neurons"] == 4
    assert stats["out"]["spiking_input"]


def test_example_runs(tmp_path, capsys):
    """Smoke test of examples/model_energy.py on a few synthetic images."""
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "model_energy.py"
    spec = importlib.util.spec_from_file_location("model_energy_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    argv = ["--data", "synthetic", "--limit", "64", "--epochs", "1"]
    rows = example.main([*argv, "--out", str(tmp_path)])
    assert [row[0] for row in rows] == list(ModelEnergy.devices)
    for device, spiking, plain, spiking_energy in rows:
        assert spiking is ModelEnergy.devices[device]["spiking"]
        assert plain > 0 and spiking_energy > 0
        if not spiking:
            # One pass per inference, the same connections and neurons.
            assert spiking_energy == pytest.approx(plain, rel=1e-9)
    by_device = {row[0]: row for row in rows}
    # The spiking model on Loihi: far less than its twin on a CPU or GPU.
    assert by_device["loihi"][3] < by_device["gpu"][2] / 100
    assert by_device["loihi"][3] < by_device["cpu"][2] / 1000
    assert "Total energy per inference [Joules/inf] (loihi)" in capsys.readouterr().out
    png = (tmp_path / "model_energy.png").read_bytes()
    assert png.startswith(b"\x89PNG")
