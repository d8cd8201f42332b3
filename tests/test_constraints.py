"""``keras_spiking.constraints.Mean``."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_spiking
from keras_spiking.constraints import Mean


@pytest.mark.parametrize("axis", [-1, 0, 1, (0, 2), None])
def test_mean_values(axis):
    w = np.random.RandomState(0).uniform(size=(2, 3, 4)).astype("float32")
    expected = np.broadcast_to(np.mean(w, axis=axis, keepdims=True), w.shape)
    result = ops.convert_to_numpy(Mean(axis=axis)(ops.convert_to_tensor(w)))
    assert result.shape == w.shape
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_config_round_trip():
    constraint = Mean(axis=(0, 1))
    config = keras.constraints.serialize(constraint)
    assert config["registered_name"] == "keras_spiking>Mean"
    restored = keras.constraints.deserialize(config)
    assert isinstance(restored, Mean)
    assert restored.axis == (0, 1)
    assert Mean().get_config() == {"axis": -1}


def test_bad_axis():
    with pytest.raises(TypeError, match="axis"):
        Mean(axis="time")


def lowpass_model(constraint):
    inp = keras.Input((6, 4))
    out = keras_spiking.Lowpass(
        keras.initializers.Constant([0.01, 0.02, 0.05, 0.1]),
        tau_constraint=constraint,
    )(inp)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def test_shares_one_time_constant_during_training():
    """After each update the time constants are the mean of the updated ones."""
    x = np.random.RandomState(0).uniform(size=(8, 6, 4)).astype("float32")
    y = np.random.RandomState(1).uniform(size=(8, 6, 4)).astype("float32")
    free = lowpass_model(None)
    shared = lowpass_model(Mean())
    # One full-batch step from the same starting point.
    free.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    shared.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    free_tau = ops.convert_to_numpy(free.layers[1].tau.value)
    shared_tau = ops.convert_to_numpy(shared.layers[1].tau.value)
    assert np.ptp(free_tau) > 0.05  # training alone keeps them different
    np.testing.assert_allclose(shared_tau, np.full(4, free_tau.mean()), rtol=1e-5)
