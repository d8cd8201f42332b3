"""``keras_spiking.callbacks.DtScheduler``."""

import keras
import numpy as np
import pytest

import keras_spiking
from keras_spiking.callbacks import DtScheduler
from tests.harness import XLA

JIT_MODES = [False, True] if XLA else [False]  # see ``tests.harness.XLA``

TAU = 0.02
STEPS, UNITS = 5, 3


def lowpass_mean_sq(dt, tau=TAU, steps=STEPS):
    """Loss of the test model for inputs of ones: (mean_t y_t)^2.

    ``y_t = a y_{t-1} + (1 - a) * 1``, ``y_{-1} = 0``, ``a = exp(-dt / tau)``,
    computed step by step.
    """
    a = np.exp(-dt / tau)
    y, total = 0.0, 0.0
    for _ in range(steps):
        y = a * y + (1 - a)
        total += y
    return (total / steps) ** 2


class BatchLosses(keras.callbacks.Callback):
    """Per-batch losses, recovered from Keras' running mean over the epoch."""

    def __init__(self):
        super().__init__()
        self.losses = []

    def on_epoch_begin(self, epoch, logs=None):
        self._previous = 0.0

    def on_train_batch_end(self, batch, logs=None):
        mean = float(logs["loss"])
        self.losses.append((batch + 1) * mean - batch * self._previous)
        self._previous = mean


def lowpass_model(dt):
    inp = keras.Input((STEPS, UNITS))
    x = keras_spiking.Lowpass(TAU, dt=dt)(inp)
    out = keras_spiking.TemporalAvgPool()(x)
    return keras.Model(inp, out)


@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_dt_read_live_in_compiled_train_step(jit_compile):
    dt = keras.Variable(0.001, trainable=False, dtype="float32", name="dt")
    model = lowpass_model(dt)
    # Learning rate 0: the weights stay put, so only dt changes the loss.
    model.compile(
        optimizer=keras.optimizers.SGD(0.0), loss="mse", jit_compile=jit_compile
    )

    def schedule(step):
        return 0.002 * (step + 1)

    recorder = BatchLosses()
    x = np.ones((16, STEPS, UNITS), "float32")
    y = np.zeros((16, UNITS), "float32")
    history = model.fit(
        x,
        y,
        batch_size=4,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[DtScheduler(dt, schedule), recorder],
    )
    expected = [lowpass_mean_sq(schedule(step)) for step in range(8)]
    np.testing.assert_allclose(recorder.losses, expected, rtol=2e-4)
    # Every batch saw a different dt, so every loss differs.
    assert len(set(np.round(recorder.losses, 8))) == 8
    # The epoch logs carry the value used by the epoch's last batch.
    np.testing.assert_allclose(history.history["dt"], [schedule(3), schedule(7)])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(dt.value), schedule(7))


def test_learning_rate_schedule_and_fit_resumes_step():
    """A Keras schedule works, and the step carries over between ``fit`` calls."""
    dt = keras.Variable(0.001, trainable=False, dtype="float32", name="dt")
    model = lowpass_model(dt)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    schedule = keras.optimizers.schedules.ExponentialDecay(
        0.01, decay_steps=1, decay_rate=0.5
    )
    x = np.ones((8, STEPS, UNITS), "float32")
    y = np.zeros((8, UNITS), "float32")
    recorder = BatchLosses()
    for _ in range(2):
        model.fit(
            x,
            y,
            batch_size=4,
            epochs=1,
            verbose=0,
            callbacks=[DtScheduler(dt, schedule), recorder],
        )
    expected = [lowpass_mean_sq(0.01 * 0.5**step) for step in range(4)]
    np.testing.assert_allclose(recorder.losses, expected, rtol=2e-4)


def test_shared_variable_tracked_once_as_model_state():
    dt = keras.Variable(0.001, trainable=False, dtype="float32", name="dt")
    inp = keras.Input((STEPS, UNITS))
    x = keras_spiking.SpikingActivation("relu", dt=dt)(inp)
    out = keras_spiking.Lowpass(TAU, dt=dt)(x)
    model = keras.Model(inp, out)
    shared = [v for v in model.non_trainable_variables if v is dt]
    assert len(shared) == 1
    assert not any(v is dt for v in model.trainable_variables)


def test_verbose_prints_changes(capsys):
    dt = keras.Variable(0.001, trainable=False, dtype="float32", name="dt")
    model = lowpass_model(dt)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x = np.ones((8, STEPS, UNITS), "float32")
    model.fit(
        x,
        np.zeros((8, UNITS), "float32"),
        batch_size=4,
        verbose=0,
        callbacks=[DtScheduler(dt, lambda step: 0.005, verbose=True)],
    )
    lines = [
        line for line in capsys.readouterr().out.splitlines() if "DtScheduler" in line
    ]
    # The value is set on both batches but printed once (it did not change).
    assert lines == ["DtScheduler: step 0, setting dt to 0.005"]


def test_float_dt_is_a_type_error():
    with pytest.raises(TypeError, match="keras.Variable"):
        DtScheduler(0.001, lambda step: 0.001)


def test_trainable_or_nonscalar_variable_rejected():
    with pytest.raises(ValueError, match="non-trainable"):
        DtScheduler(keras.Variable(0.001), lambda step: 0.001)
    with pytest.raises(ValueError, match="scalar"):
        DtScheduler(keras.Variable([0.001, 0.002], trainable=False), lambda s: 0.001)
    with pytest.raises(TypeError, match="callable"):
        DtScheduler(keras.Variable(0.001, trainable=False), 0.002)


def fit_ones(model, callback):
    """One epoch on 4 examples of ones (targets zeros) with ``callback``."""
    model.fit(
        np.ones((4, STEPS, UNITS), "float32"),
        np.zeros((4, UNITS), "float32"),
        verbose=0,
        callbacks=[callback],
    )


def test_variable_not_used_by_model_rejected():
    model = lowpass_model(0.001)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    unused = keras.Variable(0.001, trainable=False, name="unused_dt")
    with pytest.raises(ValueError, match="no layer of model"):
        fit_ones(model, DtScheduler(unused, lambda step: 0.002))


def test_bad_schedule_value_rejected():
    dt = keras.Variable(0.001, trainable=False, dtype="float32", name="dt")
    model = lowpass_model(dt)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    with pytest.raises(ValueError, match="dt must be > 0"):
        fit_ones(model, DtScheduler(dt, lambda step: 0.0))
