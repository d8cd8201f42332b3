"""The contract of ``TemporalLayer``: it owns ``dt``, its subclass hooks are
public, and ``.keras`` files saved by keras-spiking 0.4.0 still load."""

import math
import pathlib
import shutil

import keras
import numpy as np
import pytest
from keras import ops

import keras_spiking
from keras_spiking import temporal
from keras_spiking.cells import KerasSpikingCell
from tests import references
from tests.harness import numpy

DATA = pathlib.Path(__file__).parent / "data"

#: Every TemporalLayer of the package, with the arguments it needs.
LAYERS = {
    "SpikingActivation": (keras_spiking.SpikingActivation, {"activation": "relu"}),
    "SpikingActivation_if": (
        keras_spiking.SpikingActivation,
        {"activation": "relu", "neuron": "if"},
    ),
    "Lowpass": (keras_spiking.Lowpass, {"tau_initializer": 0.1}),
    "Alpha": (keras_spiking.Alpha, {"tau_initializer": 0.1}),
    "LIF": (keras_spiking.LIF, {}),
    "CubaLIF": (keras_spiking.CubaLIF, {}),
    "ALIF": (keras_spiking.ALIF, {}),
}


@keras.saving.register_keras_serializable(package="keras_spiking_tests")
class Integrator(temporal.TemporalLayer):
    """``y_t = y_{t-1} + x_t dt`` from 0, written against the public hooks
    only: it does nothing about ``dt`` but read it."""

    def initial_states(self, batch_size):
        zeros = ops.zeros((1, self.units), "float32")
        return [ops.broadcast_to(zeros, (batch_size, self.units))]

    def run_steps(self, x, states, training):
        flat = self._flat(x)
        y = ops.expand_dims(states[0], 1) + ops.cumsum(flat, axis=1) * self._dt_tensor()
        return self._unflat(y, x), [y[:, -1]]


def all_layers():
    """``LAYERS`` and the minimal subclass above."""
    return {**LAYERS, "Integrator": (Integrator, {})}


def make(key, **kwargs):
    cls, arguments = all_layers()[key]
    return cls(**arguments, **kwargs)


# ----------------------------------------------------------------- dt ------


@pytest.mark.parametrize("name", all_layers())
def test_dt_is_checked_once_by_the_base_class(name, monkeypatch):
    """``TemporalLayer.__init__`` checks ``dt``, and nothing else does."""
    calls = []

    def counting(dt, layer_name):
        calls.append(layer_name)
        return resolve_dt(dt, layer_name)

    resolve_dt = temporal.resolve_dt
    monkeypatch.setattr(temporal, "resolve_dt", counting)
    modules = {type(make(n)).__module__ for n in all_layers()}
    calls.clear()
    for module in modules:  # a copy imported by a subclass's module counts too
        monkeypatch.setattr(f"{module}.resolve_dt", counting, raising=False)
    layer = make(name, dt=0.004, name="checked")
    assert calls == ["checked"]
    assert layer.dt == 0.004


@pytest.mark.parametrize(
    "dt, error, expected",
    [
        (-0.001, ValueError, "> 0 and finite"),
        (0.0, ValueError, "> 0 and finite"),
        (math.nan, ValueError, "> 0 and finite"),
        (math.inf, ValueError, "> 0 and finite"),
        ("0.001", TypeError, "positive float"),
        (True, TypeError, "positive float"),
    ],
)
@pytest.mark.parametrize("name", all_layers())
def test_bad_dt_is_rejected_naming_the_layer(name, dt, error, expected):
    with pytest.raises(error, match=f"Layer 'bad_dt' expects `dt`.*{expected}"):
        make(name, dt=dt, name="bad_dt")


@pytest.mark.parametrize("name", all_layers())
def test_trainable_dt_variable_is_rejected_naming_the_layer(name):
    dt = keras.Variable(0.001, trainable=True, name="learned_dt")
    with pytest.raises(ValueError, match="Layer 'bad_dt' expects a `dt` variable"):
        make(name, dt=dt, name="bad_dt")


@pytest.mark.parametrize("name", all_layers())
def test_default_dt(name, monkeypatch):
    assert make(name).dt == keras_spiking.default.dt
    monkeypatch.setattr(keras_spiking.default, "dt", 0.0025)
    layer = make(name)
    assert layer.dt == 0.0025
    assert layer.get_config()["dt"] == 0.0025


@pytest.mark.parametrize("name", all_layers())
def test_dt_round_trips_through_the_config(name):
    layer = make(name, dt=np.float32(0.5))
    config = layer.get_config()
    assert config["dt"] == 0.5 and type(config["dt"]) is float
    assert type(layer).from_config(config).dt == 0.5


@pytest.mark.parametrize("name", all_layers())
def test_dt_variable_round_trips_through_the_config(name):
    dt = keras.Variable(0.002, trainable=False, dtype="float32", name="step")
    layer = make(name, dt=dt)
    assert layer.dt is dt
    config = layer.get_config()
    assert config["dt"]["name"] == "step"
    assert config["dt"]["value"] == pytest.approx(0.002)
    again = type(layer).from_config(config)
    assert isinstance(again.dt, keras.Variable) and not again.dt.trainable
    assert float(numpy(again.dt)) == pytest.approx(0.002)


def test_dt_is_read_at_every_call():
    """The subclass reads ``dt`` through the base class: a variable can
    change between calls."""
    dt = keras.Variable(0.1, trainable=False, dtype="float32")
    layer = Integrator(dt=dt)
    x = np.ones((1, 4, 2), "float32")
    np.testing.assert_allclose(numpy(layer(x))[0, :, 0], [0.1, 0.2, 0.3, 0.4])
    dt.assign(0.5)
    np.testing.assert_allclose(numpy(layer(x))[0, :, 0], [0.5, 1.0, 1.5, 2.0])


# ------------------------------------------------------------- hooks -------


def test_public_hooks_run_the_layer():
    """A subclass with ``initial_states`` and ``run_steps`` gets layouts,
    ``return_state``, ``stateful`` and cells from the base classes."""
    x = np.random.default_rng(1).uniform(-1, 1, (2, 5, 3, 2)).astype("float32")
    want = np.cumsum(x.astype(np.float64), axis=1) * 0.25
    np.testing.assert_allclose(numpy(Integrator(dt=0.25)(x)), want, rtol=1e-5)

    transposed = Integrator(dt=0.25, time_major=True)(np.swapaxes(x, 0, 1))
    np.testing.assert_allclose(np.swapaxes(numpy(transposed), 0, 1), want, rtol=1e-5)

    last, state = Integrator(dt=0.25, return_sequences=False, return_state=True)(x)
    np.testing.assert_allclose(numpy(last), want[:, -1], rtol=1e-5)
    np.testing.assert_allclose(numpy(state), want[:, -1], rtol=1e-5)

    stateful = Integrator(dt=0.25, stateful=True)
    inputs = keras.Input(batch_shape=(2, None, 3, 2))
    model = keras.Model(inputs, stateful(inputs))
    first = model.predict(x[:, :2], verbose=0)
    second = model.predict(x[:, 2:], verbose=0)
    got = np.concatenate([first, second], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    stateful.reset_state()
    np.testing.assert_allclose(numpy(stateful.states[0]), 0.0)

    cell = KerasSpikingCell((3, 2), Integrator(dt=0.25))
    states = cell.get_initial_state(batch_size=2)
    for t in range(x.shape[1]):
        y, states = cell(x[:, t], states)
        np.testing.assert_allclose(numpy(y), want[:, t], rtol=1e-5, atol=1e-6)


def test_missing_hooks_say_what_to_implement():
    class Bare(temporal.TemporalLayer):
        pass

    with pytest.raises(NotImplementedError, match=r"Bare must implement initial_"):
        Bare()(np.zeros((1, 2, 3), "float32"))

    class NoRun(Bare):
        initial_states = Integrator.initial_states

    with pytest.raises(NotImplementedError, match=r"NoRun must implement run_steps"):
        NoRun()(np.zeros((1, 2, 3), "float32"))


@pytest.mark.parametrize("name", all_layers())
def test_num_states_matches_the_initial_states(name):
    layer = make(name)
    layer.build((2, 3, 4))
    states = layer.initial_states(2)
    assert len(states) == layer.num_states
    assert all(tuple(s.shape) == (2, 4) for s in states)


# --------------------------------------------- files saved by 0.4.0 --------


def if_reference(x, dt, v0):
    """Integrate-and-fire on ``x`` (any sign): ``v += x dt``,
    ``n = max(floor(v), 0)``, ``v -= n``; spikes ``n / dt``."""
    v = np.full(x[:, 0].shape, v0, np.float64)
    out = np.zeros(x.shape)
    for t in range(x.shape[1]):
        v += x[:, t] * dt
        n = np.maximum(np.floor(v), 0)
        v -= n
        out[:, t] = n / dt
    return out


@pytest.fixture(scope="module")
def saved_040(tmp_path_factory):
    """The model of ``tests/data/make_saved_layers.py``, as saved by
    keras-spiking 0.4.0 under JAX, loaded under this backend."""
    path = tmp_path_factory.mktemp("saved") / "model.keras"
    shutil.copyfile(DATA / "saved_layers_0.4.0.keras.zip", path)
    return keras.saving.load_model(path)


def test_file_saved_by_040_keeps_its_dt(saved_040):
    layers = {layer.name: layer for layer in saved_040.layers}
    for name, dt in [("rate", 0.25), ("lowpass", 0.25), ("lif", 0.25)]:
        assert layers[name].dt == dt
    assert (layers["cuba"].dt, layers["alif"].dt) == (0.125, 0.0625)
    assert layers["rnn"].cell.dt == 0.25
    for name in ("if", "alpha"):
        dt = layers[name].dt
        assert isinstance(dt, keras.Variable) and not dt.trainable
        assert float(numpy(dt)) == 0.25
        assert layers[name].get_config()["dt"] == {"value": 0.25, "name": "shared_dt"}
    np.testing.assert_array_equal(numpy(layers["lowpass"].tau), 0.5)
    np.testing.assert_array_equal(numpy(layers["alpha"].tau), 1.0)
    np.testing.assert_allclose(numpy(layers["cuba"].tau_syn), 0.25)
    np.testing.assert_allclose(numpy(layers["alif"].tau_adapt), 1.0)


def test_file_saved_by_040_computes_the_formulas(saved_040):
    # integer inputs: every increment x * dt (dt = 1/4) is exact in float32
    x = np.random.default_rng(3).integers(-4, 8, (2, 8, 3)).astype("float32")
    lowpass, alpha, lif, cuba, alif, cell, pooled = (numpy(y) for y in saved_040(x))
    spikes, _ = references.spikes(np.maximum(x, 0), 0.25, np.zeros((2, 3)))
    want = references.lowpass(spikes, 0.5, 0.25, 0.0)
    np.testing.assert_allclose(lowpass, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pooled, want.mean(axis=1), rtol=1e-5, atol=1e-5)
    fired = if_reference(x, 0.25, 0.5)
    want = references.alpha(fired, 1.0, 0.25, 0.0)
    np.testing.assert_allclose(alpha, want, rtol=1e-5, atol=1e-5)
    want = references.lowpass(x, 0.5, 0.25, 0.0)
    np.testing.assert_allclose(cell, want, rtol=1e-5, atol=1e-5)
    for out, dt in [(lif, 0.25), (cuba, 0.125), (alif, 0.0625)]:
        assert out.shape == x.shape
        np.testing.assert_array_equal(np.isin(out * dt, [0.0, 1.0]), True)
