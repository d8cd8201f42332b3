"""Bad inputs to the public entry points, one table.

Each case either works (and checks its own result against a hand-counted
value) or raises a ValueError/TypeError whose own message (the part before
Keras' "Arguments received by ...", which echoes every argument) names the
layer or argument and says what is expected.  Cases marked ``xfail`` are
known defects that are being fixed; ``strict=True`` makes them fail once
fixed, so that the mark is removed.
"""

import json
import re
import zipfile

import keras
import numpy as np
import pytest

import keras_spiking
from keras_spiking import (
    Alpha,
    AlphaCell,
    Lowpass,
    LowpassCell,
    SpikingActivation,
    SpikingActivationCell,
    TemporalAvgPool,
    regularizers,
)
from keras_spiking.callbacks import ActivityMonitor, DtScheduler
from keras_spiking.constraints import Mean
from tests.harness import numpy

# ---------------------------------------------------------------- inputs ---


def zeros(*shape, dtype="float32"):
    return np.zeros(shape, dtype)


def ones(*shape, dtype="float32"):
    return np.ones(shape, dtype)


def works(fn):
    """A case that must work: ``fn`` checks its own result."""
    return fn


def expect_shape(layer, x, shape):
    """``layer(x)`` works and has ``shape`` (float32)."""

    def run():
        out = numpy(layer()(x))
        assert out.shape == shape, out.shape
        assert out.dtype == np.float32

    return run


def empty_sequence(make):
    """0 steps in, 0 steps out, batch-major and time-major."""

    def run():
        assert numpy(make()(zeros(2, 0, 3))).shape == (2, 0, 3)
        assert numpy(make(time_major=True)(zeros(0, 2, 3))).shape == (0, 2, 3)

    return run


def spikes_of_int_input():
    # rate 2 Hz, dt 1 s, voltage from 0: two spikes (of height 1/dt) a step
    out = numpy(SpikingActivation("relu", dt=1, initial_voltage=0)(ones(1, 4, 1) * 2))
    ints = numpy(
        SpikingActivation("relu", dt=1, initial_voltage=0)(
            np.full((1, 4, 1), 2, "int32")
        )
    )
    np.testing.assert_array_equal(out.ravel(), [2, 2, 2, 2])
    np.testing.assert_array_equal(ints, out)


def lowpass_of_int_input():
    # a = exp(-1) per step from level 0: y = 1 - a^(t+1) for a unit step
    a = np.exp(-1.0)
    expected = 1 - a ** np.arange(1, 5)
    out = numpy(Lowpass(1.0, dt=1.0)(np.ones((1, 4, 1), "int32")))
    np.testing.assert_allclose(out.ravel(), expected, rtol=1e-6)


def mean_of_int_input():
    out = numpy(TemporalAvgPool()(np.arange(4, dtype="int32").reshape(1, 4, 1)))
    np.testing.assert_allclose(out.ravel(), [1.5])  # (0 + 1 + 2 + 3) / 4


def rnn_cell_of_int_input():
    cell = SpikingActivationCell(1, "relu", dt=1, initial_voltage=0)
    out = numpy(keras.layers.RNN(cell, return_sequences=True)(np.full((1, 4, 1), 3)))
    np.testing.assert_array_equal(out.ravel(), [3, 3, 3, 3])


def voltage_zero_is_accepted():
    # from voltage 0, rate 0.5 Hz, dt 1 s: a spike every second step
    out = numpy(SpikingActivation("relu", dt=1, initial_voltage=0.0)(ones(1, 4, 1) / 2))
    np.testing.assert_array_equal(out.ravel(), [0, 1, 0, 1])


def numpy_scalar_arguments():
    layer = SpikingActivation("relu", dt=np.float32(0.5), seed=np.int64(3))
    assert layer.dt == 0.5 and isinstance(layer.dt, float)
    assert layer.seed == 3 and isinstance(layer.seed, int)
    assert Lowpass(np.float64(0.1), dt=np.float32(0.25)).dt == 0.25


def stateful_other_batch():
    layer = Lowpass(0.01, stateful=True, name="stateful_two")
    layer(zeros(2, 4, 3))
    layer(zeros(3, 4, 3))


def reset_states_wrong_shape():
    layer = SpikingActivation("relu", stateful=True, name="stateful_reset")
    layer(zeros(2, 4, 3))
    layer.reset_states(zeros(2, 5))


def rnn(cell, x, **kwargs):
    return lambda: keras.layers.RNN(cell(), **kwargs)(x)


# ------------------------------------------------------- other entry points --


def tiny_model(dt=0.001):
    inp = keras.Input((5, 4))
    out = SpikingActivation("relu", dt=dt, seed=0)(keras.layers.Dense(3)(inp))
    return keras.Model(inp, out)


def model_without_spikes():
    inp = keras.Input((5, 4))
    return keras.Model(inp, keras.layers.Dense(3)(inp))


def ann():
    inp = keras.Input((4,))
    hidden = keras.layers.Dense(5, activation="relu")(inp)
    return keras.Model(inp, keras.layers.Dense(2)(hidden))


def lstm_model():
    inp = keras.Input((3, 4))
    return keras.Model(inp, keras.layers.LSTM(2)(inp))


def gru_sequence_model():
    inp = keras.Input((5, 4))
    return keras.Model(inp, keras.layers.GRU(3, return_sequences=True)(inp))


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


def subclassed_model():
    model = Subclassed()
    model(zeros(1, 4))
    return model


def fit_with_scheduler(scheduler, dt=None):
    dt = keras.Variable(0.001, trainable=False, name="dt") if dt is None else dt
    inp = keras.Input((5, 2))
    out = SpikingActivation("relu", dt=dt, seed=0)(keras.layers.Dense(2)(inp))
    model = keras.Model(inp, out)
    model.compile("sgd", "mse")
    model.fit(
        ones(4, 5, 2),
        zeros(4, 5, 2),
        epochs=1,
        verbose=0,
        callbacks=[DtScheduler(dt, scheduler)],
    )


def fit_with_other_dt_variable():
    other = keras.Variable(0.001, trainable=False, name="unused_dt")
    inp = keras.Input((5, 2))
    model = keras.Model(inp, SpikingActivation("relu", dt=0.001)(inp))
    model.compile("sgd", "mse")
    model.fit(
        ones(4, 5, 2),
        zeros(4, 5, 2),
        verbose=0,
        callbacks=[DtScheduler(other, lambda step: 0.001)],
    )


def fit_with_activity_monitor():
    model = model_without_spikes()
    model.compile("sgd", "mse")
    x = ones(4, 5, 4)
    model.fit(x, zeros(4, 5, 3), verbose=0, callbacks=[ActivityMonitor(x)])


def energy(*args, **kwargs):
    return keras_spiking.ModelEnergy(tiny_model(), *args, **kwargs)


def nir_module():
    return pytest.importorskip("nir", reason="keras_spiking.nir needs nir")


def nir_export(model):
    import keras_spiking.nir

    return keras_spiking.nir.export(model)


def nir_load(graph):
    import keras_spiking.nir

    return keras_spiking.nir.load(graph)


def nir_load_garbage_file(tmp_path):
    path = tmp_path / "garbage.nir"
    path.write_bytes(b"this is not an HDF5 file")
    return nir_load(str(path))


def nir_threshold_graph():
    nir = nir_module()
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([3])),
            "threshold": nir.Threshold(threshold=np.ones(3)),
            "output": nir.Output(np.array([3])),
        },
        edges=[("input", "threshold"), ("threshold", "output")],
        metadata={"dt": 0.001},
    )


def nir_graph_without_dt():
    nir = nir_module()
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([3])),
            "output": nir.Output(np.array([3])),
        },
        edges=[("input", "output")],
    )


def tampered_keras_file(tmp_path, layer_class, key, value):
    """Save a model, rewrite ``key`` of its ``layer_class`` layer's config
    inside the ``.keras`` zip, and load it."""
    inp = keras.Input((5, 3))
    out = SpikingActivation("relu", seed=0, dt=0.001)(inp)
    out = Lowpass(0.01, dt=0.001)(out)
    path = tmp_path / "model.keras"
    keras.Model(inp, out).save(path)
    tampered = tmp_path / "tampered.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(tampered, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                for layer in config["config"]["layers"]:
                    if layer["class_name"] == layer_class:
                        layer["config"][key] = value
                data = json.dumps(config).encode()
            target.writestr(item, data)
    return keras.saving.load_model(tampered)


KERAS_RNN_NEEDS_A_STEP = pytest.mark.xfail(
    reason="keras.layers.RNN reads the first step before calling any cell "
    "(GRUCell too), so 0 steps fail inside Keras: IndexError or "
    "InvalidArgumentError by backend; the cells cannot intercept it",
    strict=True,
)


# ----------------------------------------------------------------- table ---


def case(case_id, fn, error=None, pattern=None, *marks):
    """One row: ``fn`` (taking ``tmp_path`` if it has a parameter), then the
    error type and a regex on its message, or None for a case that works."""
    return pytest.param(fn, error, pattern, id=case_id, marks=marks)


CASES = [
    # ---- no time axis
    case(
        "spiking-no-time-axis",
        lambda: SpikingActivation("relu", name="flat_in")(zeros(2, 3)),
        ValueError,
        r"'flat_in'.*expects inputs with a time axis.*rank >= 3.*\(2, 3\)",
    ),
    case(
        "lowpass-time-major-no-time-axis",
        lambda: Lowpass(0.01, time_major=True, name="flat_tm")(zeros(2, 3)),
        ValueError,
        r"'flat_tm'.*time axis, \(time, batch, \.\.\.\)",
    ),
    case(
        "pool-no-time-axis",
        lambda: TemporalAvgPool(name="flat_pool")(zeros(2, 3)),
        ValueError,
        r"'flat_pool'.*time axis",
    ),
    case(
        "cell-in-rnn-no-time-axis",
        rnn(lambda: LowpassCell(3, 0.01, name="flat_cell"), zeros(2, 3)),
        ValueError,
        r"'flat_cell'.*size=\(3,\).*expects inputs of shape",
    ),
    case(
        "cell-called-on-wrong-size",
        lambda: AlphaCell(3, 0.01, name="odd_cell")(zeros(2, 4), [zeros(2, 4)] * 2),
        ValueError,
        r"'odd_cell'.*size=\(3,\).*got \(2, 4\)",
    ),
    case(
        "cell-called-with-wrong-state-shape",
        lambda: LowpassCell(3, 0.01, name="state_cell")(zeros(2, 3), [zeros(2, 5)]),
        ValueError,
        r"'state_cell'.*states\[0\] of shape \(batch, \*\(3,\)\); got shape \(2, 5\)",
    ),
    case(
        "cell-called-with-wrong-state-count",
        lambda: AlphaCell(3, 0.01, name="count_cell")(zeros(2, 3), [zeros(2, 3)]),
        ValueError,
        r"'count_cell'.*expects 2 state tensor\(s\).*got 1",
    ),
    case(
        "feature-axes-unknown",
        lambda: Lowpass(0.01, name="unknown_features")(keras.Input((4, None))),
        ValueError,
        r"'unknown_features'.*feature axes.*known",
    ),
    # ---- 0 steps: an empty sequence, or an error where there is no last step
    case(
        "zero-steps-rate",
        works(empty_sequence(lambda **kw: SpikingActivation("relu", **kw))),
    ),
    case(
        "zero-steps-if",
        works(
            empty_sequence(lambda **kw: SpikingActivation("relu", neuron="if", **kw))
        ),
    ),
    case("zero-steps-lowpass", works(empty_sequence(lambda **kw: Lowpass(0.01, **kw)))),
    case("zero-steps-alpha", works(empty_sequence(lambda **kw: Alpha(0.01, **kw)))),
    case(
        "zero-steps-last-step",
        lambda: Alpha(0.01, return_sequences=False, name="no_last")(zeros(2, 0, 3)),
        ValueError,
        r"'no_last'.*return_sequences=False.*at least one time step.*0 time steps",
    ),
    case(
        "zero-steps-mean",
        lambda: TemporalAvgPool(name="empty_mean")(zeros(2, 0, 3)),
        ValueError,
        r"'empty_mean'.*at least one time step",
    ),
    case(
        "zero-steps-rnn-cell",
        rnn(lambda: LowpassCell(3, 0.01), zeros(2, 0, 3), return_sequences=True),
        ValueError,
        r"time step",
        KERAS_RNN_NEEDS_A_STEP,
    ),
    # ---- batch of 0
    case(
        "batch-zero-seeded-spiking",
        works(
            expect_shape(
                lambda: SpikingActivation("relu", seed=1), zeros(0, 4, 3), (0, 4, 3)
            )
        ),
    ),
    case(
        "batch-zero-if",
        works(
            expect_shape(
                lambda: SpikingActivation("relu", neuron="if"),
                zeros(0, 4, 3),
                (0, 4, 3),
            )
        ),
    ),
    case(
        "batch-zero-alpha",
        works(expect_shape(lambda: Alpha(0.01), zeros(0, 4, 3), (0, 4, 3))),
    ),
    case(
        "batch-zero-mean",
        works(expect_shape(TemporalAvgPool, zeros(0, 4, 3), (0, 3))),
    ),
    case(
        "batch-zero-rnn-cell",
        works(
            expect_shape(
                lambda: keras.layers.RNN(LowpassCell(3, 0.01), return_sequences=True),
                zeros(0, 4, 3),
                (0, 4, 3),
            )
        ),
    ),
    # ---- integer inputs
    case("int-input-spiking", works(spikes_of_int_input)),
    case("int-input-lowpass", works(lowpass_of_int_input)),
    case("int-input-mean", works(mean_of_int_input)),
    case("int-input-rnn-cell", works(rnn_cell_of_int_input)),
    # ---- initial_state
    case(
        "initial-state-wrong-size",
        lambda: Lowpass(0.01, name="start_size")(
            zeros(2, 4, 3), initial_state=zeros(2, 5)
        ),
        ValueError,
        r"'start_size'.*initial_state\[0\] of shape \(2, 3\).*got shape \(2, 5\)",
    ),
    case(
        "initial-state-wrong-batch",
        lambda: SpikingActivation("relu", name="start_batch")(
            zeros(2, 4, 3), initial_state=zeros(3, 3)
        ),
        ValueError,
        r"'start_batch'.*initial_state\[0\] of shape \(2, 3\).*got shape \(3, 3\)",
    ),
    case(
        "initial-state-extra-axis",
        lambda: Alpha(0.01, name="start_rank")(
            zeros(2, 4, 3), initial_state=[zeros(2, 3), zeros(2, 3, 1)]
        ),
        ValueError,
        r"'start_rank'.*initial_state\[1\] of shape \(2, 3\).*got shape \(2, 3, 1\)",
    ),
    case(
        "initial-state-wrong-count",
        lambda: Alpha(0.01, name="start_count")(
            zeros(2, 4, 3), initial_state=zeros(2, 3)
        ),
        ValueError,
        r"'start_count'.*expects 2 initial state tensor\(s\).*got 1",
    ),
    case(
        "initial-state-if-needs-two",
        lambda: SpikingActivation("relu", neuron="if", name="start_if")(
            zeros(2, 4, 3), initial_state=zeros(2, 3)
        ),
        ValueError,
        r"'start_if'.*expects 2 initial state tensor\(s\).*got 1",
    ),
    case(
        "initial-state-symbolic",
        lambda: Lowpass(0.01, name="start_symbolic")(
            keras.Input((4, 3)), initial_state=keras.Input((5,))
        ),
        ValueError,
        r"'start_symbolic'.*\(None, 3\).*got shape \(None, 5\)",
    ),
    # ---- stateful layers
    case(
        "stateful-other-batch",
        stateful_other_batch,
        ValueError,
        r"'stateful_two'.*stateful with states for a batch of 2; got a batch of 3",
    ),
    case(
        "stateful-without-fixed-batch",
        lambda: Alpha(0.01, stateful=True, name="stateful_free")(keras.Input((4, 3))),
        ValueError,
        r"'stateful_free'.*stateful.*fixed batch size",
    ),
    case(
        "reset-states-wrong-shape",
        reset_states_wrong_shape,
        ValueError,
        r"'stateful_reset' expects states of shape \(2, 3\).*got \(2, 5\)",
    ),
    # ---- dt
    case(
        "dt-zero",
        lambda: Lowpass(0.01, dt=0, name="dt_zero"),
        ValueError,
        r"'dt_zero' expects `dt` > 0.*got dt=0\.0",
    ),
    case(
        "dt-negative",
        lambda: SpikingActivation("relu", dt=-0.001, name="dt_negative"),
        ValueError,
        r"'dt_negative' expects `dt` > 0.*got dt=-0\.001",
    ),
    case(
        "dt-nan",
        lambda: Alpha(0.01, dt=float("nan"), name="dt_nan"),
        ValueError,
        r"'dt_nan' expects `dt` > 0.*got dt=nan",
    ),
    case(
        "dt-infinite",
        lambda: SpikingActivation("relu", dt=float("inf"), name="dt_inf"),
        ValueError,
        r"'dt_inf' expects `dt` > 0 and finite.*got dt=inf",
    ),
    case(
        "dt-string",
        lambda: SpikingActivation("relu", dt="0.001", name="dt_string"),
        TypeError,
        r"'dt_string' expects `dt` to be a positive float.*got '0\.001' of type str",
    ),
    case(
        "dt-bool",
        lambda: Lowpass(0.01, dt=True, name="dt_bool"),
        TypeError,
        r"'dt_bool' expects `dt`.*got True of type bool",
    ),
    case(
        "dt-trainable-variable",
        lambda: SpikingActivation("relu", dt=keras.Variable(0.001), name="dt_var"),
        ValueError,
        r"'dt_var' expects a `dt` variable with trainable=False",
    ),
    case(
        "dt-vector-variable",
        lambda: Lowpass(
            0.01,
            dt=keras.Variable([0.001, 0.002], trainable=False),
            name="dt_vector",
        ),
        ValueError,
        r"'dt_vector' expects a `dt` variable holding one float.*shape \(2,\)",
    ),
    case(
        "dt-cell-zero",
        lambda: SpikingActivationCell(3, "relu", dt=0, name="dt_cell"),
        ValueError,
        r"'dt_cell' expects `dt` > 0",
    ),
    case("dt-and-seed-numpy-scalars", works(numpy_scalar_arguments)),
    # ---- tau
    case(
        "tau-zero",
        lambda: Lowpass(0, name="tau_zero"),
        ValueError,
        r"'tau_zero' \(Lowpass\) expects time constants tau > 0.*got a tau of 0\.0",
    ),
    case(
        "tau-negative",
        lambda: Alpha(-0.01, name="tau_negative"),
        ValueError,
        r"'tau_negative' \(Alpha\) expects time constants tau > 0.*-0\.01",
    ),
    case(
        "tau-infinite",
        lambda: Lowpass(float("inf"), name="tau_inf"),
        ValueError,
        r"'tau_inf' \(Lowpass\) expects time constants tau > 0 and finite",
    ),
    case(
        "tau-negative-initializer",
        lambda: Lowpass(keras.initializers.Constant(-1.0), name="tau_init")(
            zeros(2, 4, 3)
        ),
        ValueError,
        r"'tau_init' \(Lowpass\) expects time constants tau > 0.*got a tau of -1\.0",
    ),
    case(
        "tau-string",
        lambda: Lowpass("fast", name="tau_string"),
        ValueError,
        r"'tau_string' \(Lowpass\) expects `tau_initializer` to be a positive "
        r"float.*got 'fast'",
    ),
    case(
        "tau-none",
        lambda: Alpha(None, name="tau_none"),
        ValueError,
        r"'tau_none' \(Alpha\) expects `tau_initializer`.*got None",
    ),
    case(
        "tau-list",
        lambda: Lowpass([0.01, 0.02], name="tau_list"),
        ValueError,
        r"'tau_list' \(Lowpass\) expects `tau_initializer`.*got \[0\.01, 0\.02\]",
    ),
    case(
        "tau-cell-negative",
        lambda: LowpassCell(3, -1.0, name="tau_cell"),
        ValueError,
        r"'tau_cell' \(Lowpass\) expects time constants tau > 0",
    ),
    case(
        "tau-cell-string",
        lambda: AlphaCell(3, "slow", name="tau_cell_string"),
        ValueError,
        r"'tau_cell_string' \(Alpha\) expects `tau_initializer`.*got 'slow'",
    ),
    case(
        "level-initializer-unknown",
        lambda: Lowpass(0.01, level_initializer="bogus", name="bad_level"),
        ValueError,
        r"'bad_level' \(Lowpass\) expects `level_initializer`.*got 'bogus'",
    ),
    case(
        "tau-constraint-unknown",
        lambda: Alpha(0.01, tau_constraint="bogus", name="bad_constraint"),
        ValueError,
        r"'bad_constraint' \(Alpha\) expects `tau_constraint` to be a Keras "
        r"constraint.*got 'bogus'",
    ),
    # ---- activation, neuron, initial voltage, seed
    case(
        "activation-unknown",
        lambda: SpikingActivation("bogus", name="bad_activation"),
        ValueError,
        r"'bad_activation'.*expects an activation that keras.activations.get "
        r"accepts.*got 'bogus'",
    ),
    case(
        "activation-unknown-cell",
        lambda: SpikingActivationCell(3, "bogus", name="bad_cell_activation"),
        ValueError,
        r"'bad_cell_activation'.*expects an activation.*got 'bogus'",
    ),
    case(
        "neuron-unknown",
        lambda: SpikingActivation("relu", neuron="lif", name="bad_neuron"),
        ValueError,
        r"'bad_neuron'.*expects `neuron` to be one of \('rate', 'if'\); got 'lif'",
    ),
    case(
        "neuron-none",
        lambda: SpikingActivationCell(3, "relu", neuron=None, name="none_neuron"),
        ValueError,
        r"'none_neuron'.*expects `neuron` to be one of.*got None",
    ),
    case(
        "neuron-if-needs-relu",
        lambda: SpikingActivation("tanh", neuron="if", name="if_tanh"),
        ValueError,
        r"'if_tanh'.*neuron='if' expects activation 'relu'.*got 'tanh'",
    ),
    case(
        "initial-voltage-one",
        lambda: SpikingActivation("relu", initial_voltage=1.0, name="v_one"),
        ValueError,
        r"'v_one'.*expects `initial_voltage` to be 'uniform' or a float in "
        r"\[0, 1\); got 1\.0",
    ),
    case(
        "initial-voltage-negative",
        lambda: SpikingActivation("relu", initial_voltage=-0.5, name="v_negative"),
        ValueError,
        r"'v_negative'.*`initial_voltage`.*got -0\.5",
    ),
    case(
        "initial-voltage-string",
        lambda: SpikingActivation("relu", initial_voltage="zero", name="v_string"),
        ValueError,
        r"'v_string'.*`initial_voltage`.*got 'zero'",
    ),
    case("initial-voltage-zero", works(voltage_zero_is_accepted)),
    case(
        "seed-string",
        lambda: SpikingActivation("relu", seed="abc", name="bad_seed"),
        TypeError,
        r"'bad_seed' expects `seed` to be an int or None; got 'abc'",
    ),
    # ---- options
    case(
        "unknown-option-layer",
        lambda: SpikingActivation("relu", threshold=2),
        ValueError,
        r"Unrecognized keyword arguments passed to SpikingActivation: "
        r"\{'threshold': 2\}",
    ),
    case(
        "unknown-option-filter",
        lambda: Lowpass(0.01, synapse=0.1),
        ValueError,
        r"Unrecognized keyword arguments passed to Lowpass: \{'synapse': 0\.1\}",
    ),
    case(
        "unknown-option-cell",
        lambda: LowpassCell(3, 0.01, return_sequences=True),
        ValueError,
        r"Unrecognized keyword arguments passed to LowpassCell: "
        r"\{'return_sequences': True\}",
    ),
    case(
        "flag-string",
        lambda: Lowpass(0.01, return_sequences="no", name="flag_string"),
        TypeError,
        r"'flag_string' expects `return_sequences` to be True or False; got 'no'",
    ),
    case(
        "spiking-aware-training-string",
        lambda: SpikingActivation(
            "relu", spiking_aware_training="false", name="flag_aware"
        ),
        TypeError,
        r"'flag_aware' expects `spiking_aware_training` to be True or False",
    ),
    case(
        "pool-time-major-string",
        lambda: TemporalAvgPool(time_major="yes", name="flag_pool"),
        TypeError,
        r"'flag_pool' expects `time_major` to be True or False; got 'yes'",
    ),
    # ---- regularisers and constraints
    case(
        "regularizer-min-above-max",
        lambda: regularizers.L2(0.01, target=(5, 1)),
        ValueError,
        r"L2 expects a target range \(min, max\) whose `minimum` cannot exceed "
        r"`maximum`; got \(5, 1\)",
    ),
    case(
        "regularizer-target-string",
        lambda: regularizers.L1(0.01, target="high"),
        ValueError,
        r"L1 expects `target` to be a number or a \(min, max\) pair.*got 'high'",
    ),
    case(
        "regularizer-target-three-values",
        lambda: regularizers.L1L2(l1=0.01, target=(1, 2, 3)),
        ValueError,
        r"L1L2 expects a target range as a tuple with two elements \(min, max\)",
    ),
    case(
        "regularizer-target-nan",
        lambda: regularizers.L2(0.01, target=float("nan")),
        ValueError,
        r"L2 expects a finite `target`.*got nan",
    ),
    case(
        "regularizer-range-nan",
        lambda: regularizers.L2(0.01, target=(float("nan"), 1)),
        ValueError,
        r"L2 expects a target range.*both numbers; got \(nan, 1\)",
    ),
    case(
        "regularizer-weight-negative",
        lambda: regularizers.L2(-1),
        ValueError,
        r"L2 expects `l2` >= 0 and finite; got -1",
    ),
    case(
        "regularizer-weight-string",
        lambda: regularizers.L2("strong"),
        TypeError,
        r"L2 expects `l2` to be a number >= 0; got 'strong' of type str",
    ),
    case(
        "regularizer-weight-none",
        lambda: regularizers.L1(None),
        TypeError,
        r"L1 expects `l1` to be a number >= 0; got None",
    ),
    case(
        "percentile-out-of-range",
        lambda: regularizers.Percentile(percentile=101, l2=0.01),
        ValueError,
        r"Percentile expects `percentile` to be a number in the range \[0, 100\]; "
        r"got 101",
    ),
    case(
        "percentile-axis-string",
        lambda: regularizers.Percentile(axis="batch", l2=0.01),
        TypeError,
        r"Percentile expects `axis` to be an int, a tuple of ints or None; "
        r"got 'batch'",
    ),
    case(
        "ranged-regularizer-unknown",
        lambda: regularizers.RangedRegularizer(0, regularizer="bogus"),
        ValueError,
        r"RangedRegularizer expects `regularizer` to be a Keras regularizer.*"
        r"got 'bogus'",
    ),
    case(
        "activity-regularizer-unknown",
        lambda: SpikingActivation("relu", activity_regularizer="keras_spiking>Nope"),
        ValueError,
        r"Could not interpret regularizer identifier: keras_spiking>Nope",
    ),
    case(
        "mean-constraint-axis",
        lambda: Mean(axis="features"),
        TypeError,
        r"Mean constraint expects `axis` to be an int, a tuple of ints or None",
    ),
    # ---- DtScheduler
    case(
        "scheduler-float-dt",
        lambda: DtScheduler(0.001, lambda step: 0.001),
        TypeError,
        r"DtScheduler expects `dt` to be a keras.Variable.*got 0\.001 of type float",
    ),
    case(
        "scheduler-trainable-dt",
        lambda: DtScheduler(keras.Variable(0.001, name="learned"), lambda s: 0.001),
        ValueError,
        r"DtScheduler expects a non-trainable `dt` variable.*'learned'",
    ),
    case(
        "scheduler-int-dt",
        lambda: DtScheduler(keras.Variable(1, trainable=False), lambda s: 0.001),
        ValueError,
        r"DtScheduler expects a scalar float `dt` variable.*dtype int",
    ),
    case(
        "scheduler-not-callable",
        lambda: DtScheduler(keras.Variable(0.001, trainable=False), 0.5),
        TypeError,
        r"DtScheduler expects `scheduler` to be a LearningRateSchedule or a "
        r"callable.*got 0\.5",
    ),
    case(
        "scheduler-negative-dt",
        lambda: fit_with_scheduler(lambda step: -0.001),
        ValueError,
        r"DtScheduler's scheduler returned dt=-0\.001 at step 0; dt must be > 0",
    ),
    case(
        "scheduler-returns-string",
        lambda: fit_with_scheduler(lambda step: "fast"),
        TypeError,
        r"DtScheduler's scheduler returned 'fast' at step 0; it must return a "
        r"number",
    ),
    case(
        "scheduler-unused-variable",
        fit_with_other_dt_variable,
        ValueError,
        r"DtScheduler: no layer of model .* uses the variable 'unused_dt'",
    ),
    # ---- streaming
    case(
        "stateful-copy-not-a-model",
        lambda: keras_spiking.stateful_copy(Lowpass(0.01)),
        TypeError,
        r"stateful_copy expects a keras.Model; got Lowpass",
    ),
    case(
        "stateful-copy-batch-zero",
        lambda: keras_spiking.stateful_copy(tiny_model(), batch_size=0),
        ValueError,
        r"stateful_copy expects batch_size >= 1; got 0",
    ),
    # ---- ModelEnergy
    case(
        "energy-not-a-model",
        lambda: keras_spiking.ModelEnergy("model"),
        TypeError,
        r"ModelEnergy expects a keras.Model; got 'model'",
    ),
    case(
        "energy-unknown-device",
        lambda: energy().total_energy("abacus"),
        ValueError,
        r"device 'abacus'.*known devices: .*cpu",
    ),
    case(
        "energy-unknown-layer",
        lambda: energy().layer_energy("no_such_layer", "cpu"),
        ValueError,
        r"no layer 'no_such_layer'",
    ),
    case(
        "energy-zero-timesteps",
        lambda: energy().total_energy("loihi", timesteps_per_inference=0),
        ValueError,
        r"`timesteps_per_inference` must be an int >= 1; got 0",
    ),
    case(
        "energy-string-timesteps",
        lambda: energy().total_energy("loihi", timesteps_per_inference="10"),
        ValueError,
        r"`timesteps_per_inference` must be an int >= 1; got '10'",
    ),
    case(
        "energy-negative-dt",
        lambda: energy().total_energy("loihi", dt=-1),
        ValueError,
        r"`dt` must be a positive number of seconds or None; got -1",
    ),
    case(
        "energy-unknown-assumption",
        lambda: energy(assume="magic"),
        ValueError,
        r"`assume` must be one of .*'converted'.*got 'magic'",
    ),
    # ---- convert
    case(
        "convert-not-a-model",
        lambda: keras_spiking.convert("model"),
        TypeError,
        r"convert expects a keras.Model.*got 'model'",
    ),
    case(
        "convert-subclassed-model",
        lambda: keras_spiking.convert(subclassed_model()),
        ValueError,
        r"convert needs a functional or Sequential model.*'subclassed'",
    ),
    case(
        "convert-unsupported-layer",
        lambda: keras_spiking.convert(lstm_model()),
        ValueError,
        r"convert: layer 'lstm.*' \(LSTM\) cannot be converted",
    ),
    case(
        "convert-normalize-without-data",
        lambda: keras_spiking.convert(ann(), normalize="max"),
        ValueError,
        r"normalize='max' needs `calibration_data`",
    ),
    case(
        "convert-unknown-option",
        lambda: keras_spiking.convert(ann(), synapses=0.01),
        TypeError,
        r"unexpected keyword argument 'synapses'",
    ),
    case(
        "convert-unknown-output",
        lambda: keras_spiking.convert(ann(), output="spikes"),
        ValueError,
        r"convert expects `output` to be one of .*got 'spikes'",
    ),
    case(
        "convert-unknown-neuron",
        lambda: keras_spiking.convert(ann(), neuron="lif"),
        ValueError,
        r"`neuron`.*'lif'",
    ),
    case(
        "convert-unknown-neuron-without-spikes",
        lambda: keras_spiking.convert(ann(), neuron="lif", spiking=False),
        ValueError,
        r"`neuron`.*'lif'",
    ),
    # ---- measure_activity and ActivityMonitor
    case(
        "measure-not-a-model",
        lambda: keras_spiking.measure_activity("model", ones(2, 5, 4)),
        TypeError,
        r"measure_activity expects a keras.Model.*got 'model'",
    ),
    case(
        "measure-no-spiking-layer",
        lambda: keras_spiking.measure_activity(model_without_spikes(), ones(2, 5, 4)),
        ValueError,
        r"measure_activity: model '.*' has no SpikingActivation, LIF, CubaLIF "
        r"or ALIF layer",
    ),
    case(
        "monitor-no-spiking-layer",
        fit_with_activity_monitor,
        ValueError,
        r"has no SpikingActivation, LIF, CubaLIF or ALIF layer",
    ),
    # ---- NIR
    case(
        "nir-export-not-a-model",
        lambda: nir_export(SpikingActivation("relu")),
        TypeError,
        r"keras_spiking.nir.export expects a keras.Model.*SpikingActivation",
    ),
    case(
        "nir-export-unsupported-layer",
        lambda: nir_export(gru_sequence_model()),
        ValueError,
        r"keras_spiking.nir.export cannot express layer 'gru.*' \(GRU\) in NIR",
    ),
    case(
        "nir-load-unsupported-node",
        lambda: nir_load(nir_threshold_graph()),
        ValueError,
        r"keras_spiking.nir.load cannot build node 'threshold' \(Threshold\)",
    ),
    case(
        "nir-load-without-dt",
        lambda: nir_load(nir_graph_without_dt()),
        ValueError,
        r"keras_spiking.nir.load needs `dt`",
    ),
    case(
        "nir-load-garbage-file",
        nir_load_garbage_file,
        ValueError,
        r"keras_spiking.nir.load.*garbage\.nir",
    ),
    case(
        "nir-load-not-a-graph",
        lambda: nir_load(123),
        TypeError,
        r"nir\.load.*(NIRGraph|graph).*123",
    ),
    # ---- tampered .keras files fail with the layer's own error
    case(
        "keras-file-negative-dt",
        lambda tmp_path: tampered_keras_file(tmp_path, "SpikingActivation", "dt", -1),
        ValueError,
        r"expects `dt` > 0.*got dt=-1",
    ),
    case(
        "keras-file-unknown-neuron",
        lambda tmp_path: tampered_keras_file(
            tmp_path, "SpikingActivation", "neuron", "lif"
        ),
        ValueError,
        r"\(SpikingActivation\) expects `neuron` to be one of.*got 'lif'",
    ),
    case(
        "keras-file-string-flag",
        lambda tmp_path: tampered_keras_file(
            tmp_path, "Lowpass", "return_sequences", "yes"
        ),
        TypeError,
        r"expects `return_sequences` to be True or False; got 'yes'",
    ),
]


def test_the_table_is_large_and_its_ids_unique():
    ids = [param.id for param in CASES]
    assert len(ids) >= 45
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(("make", "error", "pattern"), CASES)
def test_bad_input(make, error, pattern, tmp_path):
    call = (lambda: make(tmp_path)) if make.__code__.co_argcount else make
    if error is None:
        call()  # a case that works checks its own result
        return
    with pytest.raises(error) as info:
        call()
    # the error's own message, without Keras' echo of the call's arguments
    message = str(info.value).split("Arguments received")[0]
    assert re.search(pattern, message, re.DOTALL), message
