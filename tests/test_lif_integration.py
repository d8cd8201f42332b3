"""The LIF layers (``LIF``, ``CubaLIF``, ``ALIF``) with the rest of the package.

``.keras`` files across backends, ``stateful_copy`` streaming,
``measure_activity``/``ActivityMonitor``, ``ModelEnergy``, the rate
regularisers and ``DtScheduler``.  Spikes are checked against the float64
NumPy reference of ``tests.test_lif`` or against hand counts.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_spiking
from keras_spiking import ModelEnergy, regularizers, surrogates
from keras_spiking.callbacks import DtScheduler
from keras_spiking.lif import ALIF, LIF, CubaLIF
from tests.harness import BACKEND, gradients, numpy
from tests.test_lif import reference

BACKENDS = ("tensorflow", "torch", "jax")
MARGIN = 1e-5  # no voltage this close to its threshold (float32 == float64)


# ------------------------------------------------------------ references ---


def layer_reference(layer, x, states=None):
    """Spike counts and final states of a built LIF layer on ``x`` (float64),
    from its weights; ``x`` is ``(batch, time, units)``.

    Checks that no voltage comes within ``MARGIN`` of its threshold, so that
    the float32 layer must spike at the same steps.
    """
    kind = type(layer).__name__
    params = {
        "tau": numpy(layer.tau).reshape(-1),
        "threshold": numpy(layer.threshold).reshape(-1),
    }
    if kind == "CubaLIF":
        params["tau_syn"] = numpy(layer.tau_syn).reshape(-1)
    if kind == "ALIF":
        params["tau_adapt"] = numpy(layer.tau_adapt).reshape(-1)
        params["beta"] = layer.beta
    if layer.recurrent:
        params["kernel"] = numpy(layer.recurrent_kernel).astype(np.float64)
    starts = {}
    names = ["v0"] + {"LIF": [], "CubaLIF": ["i0"], "ALIF": ["b0"]}[kind]
    names += ["z0"] if layer.recurrent else []
    if states is not None:
        starts = dict(zip(names, states, strict=True))
    else:
        starts = {"v0": layer.initial_voltage}
    dt = float(numpy(layer.dt)) if isinstance(layer.dt, keras.Variable) else layer.dt
    tau, threshold = params.pop("tau"), params.pop("threshold")
    counts, final, trace = reference(
        x, dt, tau, threshold, reset=layer.reset, **params, **starts
    )
    closest = min(np.abs(s["v_new"] - s["theta"]).min() for s in trace)
    assert closest > MARGIN, f"case too close to the threshold ({closest})"
    chosen = ["v"] + {"LIF": [], "CubaLIF": ["i"], "ALIF": ["b"]}[kind]
    chosen += ["z"] if layer.recurrent else []
    return counts, [final[name] for name in chosen]


def dense_reference(layer, x):
    return np.asarray(x, np.float64) @ numpy(layer.kernel) + numpy(layer.bias)


# ------------------------------------------------- .keras across backends ---

FEATURES = 4
# One layer per surrogate (non-default parameters), reset and layer kind.
SAVED_LAYERS = (
    ("lif", LIF, {"surrogate": surrogates.FastSigmoid(slope=10.0)}),
    (
        "lif_rec",
        LIF,
        {"recurrent": True, "reset": "zero", "surrogate": surrogates.ATan(alpha=3.0)},
    ),
    ("cuba", CubaLIF, {"tau_syn": 0.002, "surrogate": surrogates.Sigmoid(slope=5.0)}),
    (
        "cuba_rec",
        CubaLIF,
        {
            "recurrent": True,
            "detach_reset": True,
            "surrogate": surrogates.Triangle(width=0.7),
        },
    ),
    (
        "alif",
        ALIF,
        {"tau_adapt": 0.03, "beta": 0.5, "surrogate": surrogates.Boxcar(width=0.3)},
    ),
    (
        "alif_rec",
        ALIF,
        {
            "recurrent": True,
            "beta": 0.2,
            "reset": "none",
            "surrogate": surrogates.StraightThrough(),
        },
    ),
)
SAVED_NAMES = tuple(name for name, _, _ in SAVED_LAYERS)


def build_saved_model():
    """The six layers side by side on one input; and the training model
    (their rates)."""
    dt = keras.Variable(0.001, trainable=False, dtype="float32", name="dt")
    inp = keras.Input((None, FEATURES), name="x")
    spikes = []
    for k, (name, cls, kwargs) in enumerate(SAVED_LAYERS):
        layer = cls(
            tau=keras.initializers.RandomUniform(0.003, 0.01, seed=k),
            threshold=0.7,
            trainable_threshold=True,
            recurrent_initializer=keras.initializers.RandomNormal(0, 0.3, seed=10 + k),
            dt=dt if k % 2 else 0.001,
            name=name,
            **kwargs,
        )
        spikes.append(layer(inp))
    # spikes per step (rate * dt): a loss of order 1
    rates = [keras_spiking.TemporalAvgPool()(s) * 0.001 for s in spikes]
    return keras.Model(inp, spikes), keras.Model(inp, rates)


def saved_inputs():
    rng = np.random.default_rng(21)
    return {
        "long": rng.normal(1.2, 1.5, (3, 60, FEATURES)).astype("float32"),
        "one": rng.normal(1.2, 1.5, (1, 1, FEATURES)).astype("float32"),
    }


LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    try:
        import torch  # before TensorFlow, see tests/conftest.py
    except ImportError:
        pass
    import keras
    import numpy as np
    import keras_spiking  # registers the classes

    model_path, inputs_path, out_path, names = sys.argv[1:]
    model = keras.saving.load_model(model_path)
    result = {"config": np.array(json.dumps(model.get_config(), sort_keys=True))}
    for layer in model.layers:
        for i, weight in enumerate(layer.weights):
            result[f"weight:{layer.name}/{i}"] = keras.ops.convert_to_numpy(weight)
    for name in names.split(","):
        layer = model.get_layer(name)
        result[f"surrogate:{name}"] = np.array(
            json.dumps(keras_spiking.surrogates.serialize(layer.surrogate))
            + "|" + type(layer).__name__
        )
    inputs = np.load(inputs_path)
    for key in inputs.files:
        outputs = model.predict(inputs[key], verbose=0)
        for name, value in zip(names.split(","), outputs, strict=True):
            result[f"{key}:{name}"] = keras.ops.convert_to_numpy(value)
    np.savez(out_path, **result)
    """
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The six layers, trained a few steps under this backend, saved."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(3)
    directory = tmp_path_factory.mktemp("lif_saving")
    model, trained = build_saved_model()
    before = {w.path: numpy(w) for w in model.weights}
    trained.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    rng = np.random.default_rng(5)
    x_train = rng.normal(1.2, 1.5, (8, 20, FEATURES)).astype("float32")
    y_train = [np.full((8, FEATURES), 0.1, "float32")] * len(SAVED_LAYERS)
    trained.fit(x_train, y_train, batch_size=4, epochs=1, verbose=0)
    path = str(directory / "model.keras")
    model.save(path)
    inputs = saved_inputs()
    inputs_path = str(directory / "inputs.npz")
    np.savez(inputs_path, **inputs)
    outputs = {
        key: dict(zip(SAVED_NAMES, model.predict(x, verbose=0), strict=True))
        for key, x in inputs.items()
    }
    started = {}
    env_base = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="1")
    for backend in BACKENDS:
        out_path = str(directory / f"loaded_{backend}.npz")
        started[backend] = (
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    LOAD_SCRIPT,
                    path,
                    inputs_path,
                    out_path,
                    ",".join(SAVED_NAMES),
                ],
                env=dict(env_base, KERAS_BACKEND=backend),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            ),
            out_path,
        )
    yield {
        "model": model,
        "before": before,
        "inputs": inputs,
        "outputs": outputs,
        "config": json.dumps(model.get_config(), sort_keys=True),
        "weights": {
            f"{layer.name}/{i}": numpy(w)
            for layer in model.layers
            for i, w in enumerate(layer.weights)
        },
        "started": started,
    }
    for proc, _ in started.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_saved_model_was_trained_and_matches_reference(saved):
    model = saved["model"]
    for name in SAVED_NAMES:
        layer = model.get_layer(name)
        for weight in (layer.tau, layer.threshold):
            assert not np.array_equal(numpy(weight), saved["before"][weight.path]), (
                f"training did not move {weight.path}"
            )
        for key, x in saved["inputs"].items():
            counts, _ = layer_reference(layer, x)
            np.testing.assert_array_equal(
                saved["outputs"][key][name] * 0.001, counts, err_msg=f"{name}, {key}"
            )
    # the long input makes every layer spike, and not at every step
    for name in SAVED_NAMES:
        spikes = saved["outputs"]["long"][name]
        assert 0 < np.count_nonzero(spikes) < spikes.size, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_file_loads_under_each_backend(saved, backend):
    proc, out_path = saved["started"][backend]
    _, stderr = proc.communicate(timeout=600)
    here = f"{BACKEND} -> {backend}"
    assert proc.returncode == 0, f"loading under {backend} failed:\n{stderr[-3000:]}"
    loaded = np.load(out_path)
    assert str(loaded["config"]) == saved["config"], here
    for key, value in saved["weights"].items():
        np.testing.assert_array_equal(
            loaded[f"weight:{key}"], value, err_msg=f"{here}: {key}"
        )
    for name, cls, kwargs in SAVED_LAYERS:
        surrogate, kind = str(loaded[f"surrogate:{name}"]).split("|")
        assert kind == cls.__name__, here
        assert surrogates.get(json.loads(surrogate)) == kwargs["surrogate"], here
    for key, outputs in saved["outputs"].items():
        for name, value in outputs.items():
            np.testing.assert_array_equal(
                loaded[f"{key}:{name}"], value, err_msg=f"{here}: {key}, {name}"
            )


# ------------------------------------------------------------- streaming ---


def streaming_model(steps=None, batch=None):
    """``Dense -> LIF(recurrent) -> CubaLIF(recurrent) -> ALIF(recurrent)``,
    every layer's spikes an output."""
    keras.utils.set_random_seed(7)
    inp = keras.Input((steps, 3), batch_size=batch)
    x = keras.layers.Dense(
        5,
        kernel_initializer=keras.initializers.RandomNormal(1.0, 0.6, seed=1),
        bias_initializer=keras.initializers.Constant(0.4),
        name="dense",
    )(inp)
    kwargs = {
        "dt": 0.001,
        "recurrent": True,
        "recurrent_initializer": keras.initializers.RandomNormal(0, 0.4, seed=2),
    }
    a = LIF(
        tau=keras.initializers.RandomUniform(0.002, 0.01, seed=3), name="a", **kwargs
    )(x)
    b = CubaLIF(tau=0.004, tau_syn=0.002, threshold=0.2, name="b", **kwargs)(a * 0.002)
    c = ALIF(tau=0.003, beta=0.3, threshold=0.1, name="c", **kwargs)(b * 0.002)
    return keras.Model(inp, [a, b, c])


def streaming_reference(model, x):
    """The model's spikes (counts) in float64, layer by layer."""
    counts_a, _ = layer_reference(
        model.get_layer("a"), dense_reference(model.get_layer("dense"), x)
    )
    counts_b, _ = layer_reference(model.get_layer("b"), counts_a / 0.001 * 0.002)
    counts_c, _ = layer_reference(model.get_layer("c"), counts_b / 0.001 * 0.002)
    return [counts_a, counts_b, counts_c]


def test_stateful_copy_streams_lif_layers():
    model = streaming_model()
    x = np.random.default_rng(8).uniform(0, 1, (2, 36, 3)).astype("float32")
    want = streaming_reference(model, x)
    for counts in want:
        assert 0 < np.count_nonzero(counts) < counts.size
    whole = model.predict(x, verbose=0)
    for got, counts in zip(whole, want, strict=True):
        np.testing.assert_array_equal(got * 0.001, counts)

    stream = keras_spiking.stateful_copy(model, batch_size=2)
    assert all(stream.get_layer(n).stateful for n in "abc")
    # compiled predict, pieces of different lengths
    pieces = [
        stream.predict(x[:, t0:t1], verbose=0) for t0, t1 in ((0, 5), (5, 6), (6, 36))
    ]
    for k, counts in enumerate(want):
        got = np.concatenate([p[k] for p in pieces], axis=1)
        np.testing.assert_array_equal(got * 0.001, counts, err_msg="abc"[k])
    # eager calls after a reset
    keras_spiking.streaming.reset_states(stream)
    pieces = [numpy(stream(x[:, t : t + 12])) for t in range(0, 36, 12)]
    for k, counts in enumerate(want):
        got = np.concatenate([p[k] for p in pieces], axis=1)
        np.testing.assert_array_equal(got * 0.001, counts, err_msg="abc"[k])
    # the carried states are those of one long run
    _, final = layer_reference(
        model.get_layer("a"), dense_reference(model.get_layer("dense"), x)
    )
    for variable, expected in zip(stream.get_layer("a").states, final, strict=True):
        np.testing.assert_allclose(numpy(variable), expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------ activity counting ---

DT = 0.001
# tau = dt: a = exp(-1).  Inputs 0 and 0.5 never reach the threshold 0.9; with
# a zero reset, input 1 fires every 3rd step (1 - a**n >= 0.9 from n = 3) and
# input 20 at every step.
HAND_INPUTS = (0.0, 0.5, 1.0, 20.0)
STEPS = 12
HAND_COUNTS = np.array([0, 0, STEPS // 3, STEPS])  # per neuron and sample


def hand_model(cls=LIF, recurrent=False, **kwargs):
    inp = keras.Input((None, len(HAND_INPUTS)))
    spikes = cls(
        tau=DT,
        threshold=0.9,
        reset="zero",
        dt=DT,
        recurrent=recurrent,
        recurrent_initializer="zeros",
        name="neurons",
        **kwargs,
    )(inp)
    dense = keras.layers.Dense(3, name="dense")(spikes)
    out = keras_spiking.TemporalAvgPool(name="pool")(dense)
    return keras.Model(inp, out)


def hand_inputs(batch=2):
    return np.broadcast_to(
        np.asarray(HAND_INPUTS, "float32"), (batch, STEPS, len(HAND_INPUTS))
    ).copy()


def test_hand_inputs_give_hand_counts():
    """The hand counts, against the float64 reference too."""
    model = hand_model()
    counts, _ = layer_reference(model.get_layer("neurons"), hand_inputs(1))
    np.testing.assert_array_equal(counts.sum(axis=1)[0], HAND_COUNTS)
    np.testing.assert_array_equal(counts[0, :, 2], np.tile([0, 0, 1], STEPS // 3))


@pytest.mark.parametrize("recurrent", [False, True])
def test_measure_activity_counts_lif_spikes(recurrent):
    model = hand_model(recurrent=recurrent)
    result = keras_spiking.measure_activity(model, hand_inputs(2), batch_size=1)
    record = result["neurons"]
    total = HAND_COUNTS.sum()
    assert isinstance(record, keras_spiking.activity.SpikingLayerActivity)
    assert record.n_neurons == 4 and record.n_steps == STEPS and record.dt == DT
    assert record.spikes_total == 2 * total
    np.testing.assert_array_equal(record.spikes_per_sample, [total, total])
    np.testing.assert_allclose(record.rates_hz, HAND_COUNTS / (STEPS * DT))
    assert record.mean_rate_hz == pytest.approx(total / (4 * STEPS * DT))
    assert record.max_rate_hz == pytest.approx(1 / DT)
    assert record.silent_fraction == 0.5
    dense = result["dense"]  # 3 connections per spike
    assert dense.source == "neurons" and dense.connections == 4 * 3
    assert dense.synops_per_sample == pytest.approx(3 * total)
    assert dense.synops_per_second == pytest.approx(3 * total / (STEPS * DT))
    if recurrent:  # each spike reaches the 4 neurons over the kernel
        rec = result["neurons/recurrent"]
        assert rec.source == "neurons" and rec.connections == 16
        assert rec.synops_per_sample == pytest.approx(4 * total)
    else:
        assert "neurons/recurrent" not in result


@pytest.mark.parametrize("cls", [CubaLIF, ALIF])
def test_measure_activity_counts_other_lif_layers(cls):
    inp = keras.Input((None, 3))
    spikes = cls(tau=0.004, threshold=0.6, dt=DT, name="neurons")(inp)
    model = keras.Model(inp, keras.layers.Dense(2, name="dense")(spikes))
    x = np.random.default_rng(2).uniform(0, 2, (3, 40, 3)).astype("float32")
    counts, _ = layer_reference(model.get_layer("neurons"), x)
    result = keras_spiking.measure_activity(model, x)
    record = result["neurons"]
    assert record.spikes_total == counts.sum() > 0
    np.testing.assert_array_equal(record.spikes_per_sample, counts.sum(axis=(1, 2)))
    np.testing.assert_allclose(record.rates_hz, counts.sum(axis=(0, 1)) / (3 * 40 * DT))
    assert result["dense"].synops_per_sample == pytest.approx(2 * counts.sum() / 3)


def test_measure_activity_checks_lif_layout():
    inp = keras.Input((None, 2))
    out = LIF(return_sequences=False, name="last")(inp)
    model = keras.Model(inp, out)
    with pytest.raises(ValueError, match=r"LIF layer 'last' has return_sequences"):
        keras_spiking.measure_activity(model, np.zeros((1, 3, 2), "float32"))


def test_activity_monitor_logs_lif_rates():
    model = hand_model(recurrent=True)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    monitor = keras_spiking.callbacks.ActivityMonitor(hand_inputs(2))
    history = model.fit(
        hand_inputs(4),
        np.zeros((4, 3), "float32"),
        epochs=2,
        verbose=0,
        callbacks=[monitor],
    )
    total = HAND_COUNTS.sum()
    np.testing.assert_allclose(
        history.history["neurons_rate_mean"], [total / (4 * STEPS * DT)] * 2
    )
    np.testing.assert_allclose(history.history["neurons_rate_max"], [1 / DT] * 2)


# ----------------------------------------------------------- ModelEnergy ---


@pytest.mark.parametrize("recurrent", [False, True])
def test_model_energy_as_built_counts_lif_as_spiking(recurrent):
    model = hand_model(recurrent=recurrent)
    energy = ModelEnergy(model, example_data=hand_inputs(2), assume="as_built")
    rate = HAND_COUNTS.sum() / (4 * STEPS * DT)  # mean rate of the neurons
    assert energy.rates == {"neurons": pytest.approx(rate)}
    neurons = energy.layer_details["neurons"]
    assert neurons["neurons"] == 4 and neurons["spiking"]
    assert neurons["connections"] == (16 if recurrent else 0)
    dense = energy.layer_details["dense"]
    assert dense["spiking_input"] and dense["connections"] == 12
    assert dense["input_rate"] == pytest.approx(rate)
    assert dense["synops_per_second"] == pytest.approx(12 * rate)
    # Loihi, 10 timesteps: synapses priced at the measured rate
    loihi = ModelEnergy.devices["loihi"]
    synop, neuron = energy.layer_energy(energy.model.get_layer("dense"), "loihi", 10)
    assert synop == pytest.approx(10 * 12 * rate * DT * loihi["energy_per_synop"])
    synop, neuron = energy.layer_energy(energy.model.get_layer("neurons"), "loihi", 10)
    assert neuron == pytest.approx(10 * 4 * loihi["energy_per_neuron"])
    if recurrent:  # the kernel carries the layer's own spikes
        assert neurons["spiking_input"] and neurons["input_rate"] == pytest.approx(rate)
        assert synop == pytest.approx(10 * 16 * rate * DT * loihi["energy_per_synop"])
    else:
        assert synop == 0


@pytest.mark.parametrize("cls", [LIF, CubaLIF, ALIF])
def test_model_energy_converted_counts_lif_neurons(cls):
    model = hand_model(cls, recurrent=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "cannot compute stats" warning
        energy = ModelEnergy(model)
    stats = energy.layer_stats[model.get_layer("neurons")]
    assert stats == {"connections": 16, "neurons": 4, "spiking": True}


# ----------------------------------------------------------- regularisers ---

RATES = HAND_COUNTS / (STEPS * DT)  # 0, 0, 333.3, 1000 Hz


def test_activity_regularizers_on_lif_spikes_and_rates():
    """On the spikes (values 0 or 1/dt) and on their rates (TemporalAvgPool)."""
    inp = keras.Input((STEPS, len(HAND_INPUTS)))
    spikes = LIF(
        tau=DT,
        threshold=0.9,
        reset="zero",
        dt=DT,
        activity_regularizer=regularizers.L1(1e-3, target=(0, 300)),
        name="neurons",
    )(inp)
    pool = keras_spiking.TemporalAvgPool(
        activity_regularizer=regularizers.L2(1e-4, target=(100, 200)), name="pool"
    )
    model = keras.Model(inp, pool(spikes))
    model(hand_inputs(2))
    spike_penalty, rate_penalty = (float(numpy(v)) for v in model.losses)
    # per sample (Keras divides by the batch): 4 + 12 spikes of 1000 Hz, each
    # 700 above the range
    assert spike_penalty == pytest.approx(1e-3 * 16 * 700, rel=1e-6)
    below, above = 100.0, np.array([1000 / 3 - 200, 1000 - 200])
    assert rate_penalty == pytest.approx(1e-4 * (2 * below**2 + (above**2).sum()))


def test_rate_regularizer_gradient_reaches_lif_input():
    """The penalty on rates above the range pushes the inputs of the neurons
    that fire too much down (surrogate gradient), and no other."""
    layer = LIF(tau=DT, threshold=0.9, reset="zero", dt=DT)
    penalty = regularizers.L2(1e-4, target=(0, 400))
    pool = keras_spiking.TemporalAvgPool()

    def loss(x):
        return penalty(pool(layer(x)))

    value, (grad,) = gradients(loss, hand_inputs(1))
    assert value == pytest.approx(1e-4 * 600**2, rel=1e-5)
    per_neuron = grad.sum(axis=(0, 1))
    np.testing.assert_array_equal(per_neuron[:3], 0)  # within the range
    assert per_neuron[3] > 0


# ------------------------------------------------------------ DtScheduler ---


def test_dt_scheduler_changes_lif_decay_and_spike_height():
    """Training steps with dt = 1, 2, 4 ms (tau = 2 ms, input 1, threshold
    0.9, zero reset): a = exp(-dt / tau) gives a spike every 5, 3, 2 steps
    (1 - a**n >= 0.9), so 2, 3, 5 spikes in 10 steps, of height 1 / dt: rates
    200, 150, 125 Hz.  With a learning rate of 0 the loss of each step is the
    squared rate."""
    dt = keras.Variable(0.001, trainable=False, dtype="float32", name="dt")
    inp = keras.Input((10, 1))
    spikes = LIF(tau=0.002, threshold=0.9, reset="zero", dt=dt)(inp)
    model = keras.Model(inp, keras_spiking.TemporalAvgPool()(spikes))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    schedule = [0.001, 0.002, 0.004]
    history = model.fit(
        np.ones((2, 10, 1), "float32"),
        np.zeros((2, 1), "float32"),
        batch_size=2,
        epochs=3,
        verbose=0,
        callbacks=[DtScheduler(dt, lambda step: schedule[step])],
    )
    for step_dt, rate in zip(schedule, (200, 150, 125), strict=True):
        a = np.exp(-step_dt / 0.002)
        period = next(n for n in range(1, 10) if 1 - a**n >= 0.9)
        counts, _, _ = reference(
            np.ones((1, 10, 1)),
            step_dt,
            np.array([0.002]),
            np.array([0.9]),
            reset="zero",
        )
        assert counts.sum() == 10 // period == rate * 10 * step_dt
    np.testing.assert_allclose(
        history.history["loss"], [200.0**2, 150.0**2, 125.0**2], rtol=1e-5
    )
    np.testing.assert_allclose(history.history["dt"], schedule, rtol=1e-6)
