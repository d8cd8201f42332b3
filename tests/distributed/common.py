"""Shared pieces of the distributed-training scripts (``tests/distributed``).

Each script runs in a subprocess of its own (started by
``tests/test_distributed.py``), sets ``KERAS_BACKEND`` (and any device flags)
before Keras is imported, trains the model below single-device and
distributed on the same batches, and exits 0 if the weights agree.  This
module is imported after that, so it may import Keras.

The model is the walkthrough's spiking-aware model, small:
``Dense -> SpikingActivation("relu", seed=...) -> Lowpass -> TemporalAvgPool
(rate regulariser) -> Dense``, with one ``dt`` variable shared by the spiking
and filter layers and changed by ``keras_spiking.callbacks.DtScheduler`` (or
by hand in a custom loop), trained with plain SGD on fixed batches without
shuffling.  With the environment variable ``KERAS_SPIKING_TEST_NEURON=lif``
(set by a script given ``lif``, inherited by the processes it starts) the
spiking layer is a recurrent ``keras_spiking.LIF`` (trainable time constants
and threshold, surrogate gradient) and there is no ``Lowpass``.
"""

import json
import os
import sys

import keras
import numpy as np

import keras_spiking
import keras_spiking.callbacks
import keras_spiking.regularizers

STEPS, FEATURES, UNITS, CLASSES = 8, 6, 16, 3
GLOBAL_BATCH, BATCHES = 8, 3
SEED = 5
LEARNING_RATE = 0.05
NEURON_VARIABLE = "KERAS_SPIKING_TEST_NEURON"


def use_neuron(argv):
    """Set ``KERAS_SPIKING_TEST_NEURON=lif`` if ``argv`` holds ``lif``;
    returns ``argv`` without it."""
    if "lif" in argv:
        os.environ[NEURON_VARIABLE] = "lif"
    return [a for a in argv if a != "lif"]


def data():
    """Fixed inputs ``(GLOBAL_BATCH * BATCHES, STEPS, FEATURES)`` and one-hot
    targets."""
    rng = np.random.default_rng(0)
    n = GLOBAL_BATCH * BATCHES
    x = rng.uniform(0, 1, size=(n, STEPS, FEATURES)).astype("float32")
    y = np.eye(CLASSES, dtype="float32")[rng.integers(0, CLASSES, n)]
    return x, y


def dt_schedule(step):
    """``dt`` for training step ``step`` (seconds): changes every step."""
    return 0.01 * (1.0 + 0.25 * float(step))


def make_model(batch_size=None, stateful=False, dt=None):
    """The small spiking-aware model and its ``dt`` variable (``dt``: an
    existing variable to use, else a new one).

    Weights come from seeded initialisers, so every call (and every process)
    builds the same model.
    """
    if dt is None:
        dt = keras.Variable(0.01, trainable=False, name="dt", dtype="float32")
    inputs = keras.Input(
        shape=(STEPS, FEATURES),
        batch_size=batch_size,
        name="inputs",
    )
    x = keras.layers.Dense(
        UNITS,
        kernel_initializer=keras.initializers.GlorotUniform(seed=1),
        bias_initializer=keras.initializers.Constant(
            1.5 if os.environ.get(NEURON_VARIABLE) == "lif" else 50.0
        ),
        name="dense_in",
    )(inputs)
    if os.environ.get(NEURON_VARIABLE) == "lif":
        x = keras_spiking.LIF(
            tau=0.02,
            threshold=1.0,
            trainable_threshold=True,
            recurrent=True,
            recurrent_initializer=keras.initializers.Orthogonal(0.5, seed=3),
            dt=dt,
            stateful=stateful,
            name="spiking",
        )(x)
    else:
        x = keras_spiking.SpikingActivation(
            "relu", dt=dt, seed=SEED, stateful=stateful, name="spiking"
        )(x)
        x = keras_spiking.Lowpass(0.05, dt=dt, stateful=stateful, name="lowpass")(x)
    x = keras_spiking.TemporalAvgPool(
        activity_regularizer=keras_spiking.regularizers.L2(1e-4, target=(20, 40)),
        name="rates",
    )(x)
    outputs = keras.layers.Dense(
        CLASSES,
        kernel_initializer=keras.initializers.GlorotUniform(seed=2),
        name="dense_out",
    )(x)
    return keras.Model(inputs, outputs), dt


def compile_model(model):
    model.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )


def fit(model, dt, x, y):
    """``model.fit`` on fixed batches, no shuffling, ``DtScheduler`` on."""
    model.fit(
        x,
        y,
        batch_size=GLOBAL_BATCH,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[keras_spiking.callbacks.DtScheduler(dt, dt_schedule)],
    )


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def trainable(model):
    """Trainable weights by path, as NumPy."""
    return {v.path: numpy(v.value) for v in model.trainable_weights}


def compare(got, want, label, rtol=None, atol=None):
    """Largest relative deviation of ``got`` from ``want`` (dicts of arrays);
    raises AssertionError when beyond float32 tolerance.

    The default tolerance is ``rtol=1e-5, atol=1e-6``; with the LIF model
    ``rtol=2e-4, atol=2e-5``: backpropagation through time and the
    surrogate gradients sum many per-step terms, whose float32 rounding
    depends on how the batch is split (a spike that differed would move the
    weights by orders of magnitude more).
    """
    lif = os.environ.get(NEURON_VARIABLE) == "lif"
    if rtol is None:
        rtol = 2e-4 if lif else 1e-5
    if atol is None:
        atol = 2e-5 if lif else 1e-6
    assert got.keys() == want.keys(), (sorted(got), sorted(want))
    worst = 0.0
    for key in want:
        np.testing.assert_allclose(
            got[key], want[key], rtol=rtol, atol=atol, err_msg=f"{label}: {key}"
        )
        scale = np.maximum(np.abs(want[key]), 1e-3)
        worst = max(worst, float(np.max(np.abs(got[key] - want[key]) / scale)))
    return worst


def initial_weights():
    """The trainable weights of a freshly built model."""
    model, _ = make_model()
    return trainable(model)


def check_moved(final, initial):
    """Fails unless training changed the weights (a comparison of untrained
    models would prove nothing); returns the largest change."""
    moved = deviation(final, initial)
    if not moved > 1e-3:
        fail(f"training barely moved the weights ({moved})")
    return moved


def deviation(got, want):
    """Largest absolute difference of ``got`` from ``want`` (dicts of arrays)."""
    return max(float(np.max(np.abs(got[k] - want[k]))) for k in want)


def report(**results):
    """One JSON line on stdout for the calling test (and the note)."""
    print("RESULT " + json.dumps(results, sort_keys=True), flush=True)


def fail(message):
    print(f"FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)
