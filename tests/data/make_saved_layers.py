"""Write ``saved_layers_0.4.0.keras.zip``: the layers with a time axis as
keras-spiking 0.4.0 saves them (every ``dt`` form, cells, pooling).

Written once, from the repository root, by the code whose files the tests
must keep loading (keras-spiking 0.4.0 as of commit 63cf7c7, before
``TemporalLayer`` took over ``dt``)::

    KERAS_BACKEND=jax python tests/data/make_saved_layers.py

Do not run it again to "update" the file: the point is that the file stays
as that version wrote it.  It is a ``.keras`` file under another name
(``*.keras`` files are ignored by git); ``tests/test_temporal.py`` loads it
and checks the layers' settings given here.
"""

import pathlib
import shutil
import tempfile

import keras

import keras_spiking

HERE = pathlib.Path(__file__).parent
FILE = HERE / "saved_layers_0.4.0.keras.zip"

#: (time steps, features) of the model's input.
SHAPE = (8, 3)


def make_model():
    """The saved model: every layer with a time axis, each ``dt`` form."""
    dt = keras.Variable(0.25, trainable=False, dtype="float32", name="shared_dt")
    x = keras.Input(SHAPE)
    rate = keras_spiking.SpikingActivation(
        "relu", dt=0.25, initial_voltage=0.0, name="rate"
    )(x)
    lowpass = keras_spiking.Lowpass(0.5, dt=0.25, name="lowpass")(rate)
    fire = keras_spiking.SpikingActivation(
        "relu", dt=dt, neuron="if", initial_voltage=0.5, name="if"
    )(x)
    alpha = keras_spiking.Alpha(1.0, dt=dt, name="alpha")(fire)
    lif = keras_spiking.LIF(0.5, dt=0.25, name="lif")(x)
    cuba = keras_spiking.CubaLIF(0.5, 0.25, dt=0.125, name="cuba")(x)
    alif = keras_spiking.ALIF(0.5, 1.0, dt=0.0625, name="alif")(x)
    cell = keras.layers.RNN(
        keras_spiking.LowpassCell(SHAPE[1], 0.5, dt=0.25, name="lowpass_cell"),
        return_sequences=True,
        name="rnn",
    )(x)
    pooled = keras_spiking.TemporalAvgPool(name="pool")(lowpass)
    return keras.Model(x, [lowpass, alpha, lif, cuba, alif, cell, pooled])


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        path = pathlib.Path(directory) / "model.keras"
        make_model().save(path)
        shutil.copyfile(path, FILE)
    print(f"wrote {FILE} with keras-spiking {keras_spiking.__version__}")
