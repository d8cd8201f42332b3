""".keras files: save under this backend, load under all three.

The test run under backend ``B`` trains and saves a model with every
``keras_spiking`` layer under ``B`` and loads it in a subprocess under each of
the three backends, so the three per-backend runs of the suite together cover
all nine (save, load) pairs once.  The loaded model must have the same config,
the same weights and, for its fixed seed, the same spikes (bit for bit) and
filter outputs, at batch sizes and numbers of steps other than the ones it was
trained with.
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
from keras_spiking import constraints, regularizers
from tests import references
from tests.harness import BACKEND, numpy

BACKENDS = ("tensorflow", "torch", "jax")
FEATURES = 4
UNITS = 6
SEED = 11
DT = 1 / 64  # a power of two: integer rates give exact increments
MAX_RATE = 150  # the highest integer rate of the inputs
OUTPUTS = ("spikes", "lowpass", "alpha", "pool")


def build_model():
    """Every layer, a shared ``dt`` variable, regularisers and constraints.

    Returns the model with all four outputs and the training model (same
    layers) with only the pooled output.

    ``SpikingActivation`` comes first, so its spikes depend only on the input
    and the seed (no backend-specific matrix product before it).
    """
    dt = keras.Variable(DT, trainable=False, dtype="float32", name="dt")
    inp = keras.Input((None, FEATURES), name="x")
    spikes = keras_spiking.SpikingActivation("relu", dt=dt, seed=SEED, name="spikes")(
        inp
    )
    hidden = keras.layers.Dense(
        UNITS,
        kernel_regularizer=regularizers.L1L2(l2=1e-4, target=(-0.5, 0.5)),
        name="dense",
    )(spikes)
    low = keras_spiking.Lowpass(
        keras.initializers.RandomUniform(0.02, 0.1, seed=1),
        dt=dt,
        level_initializer=keras.initializers.RandomNormal(seed=2),
        initial_level_constraint=keras.constraints.NonNeg(),
        name="lowpass",
    )(hidden)
    alp = keras_spiking.Alpha(
        0.03, dt=dt, tau_constraint=constraints.Mean(), name="alpha"
    )(low)
    pool = keras_spiking.TemporalAvgPool(
        activity_regularizer=regularizers.L2(1e-4, target=(0, 20)), name="pool"
    )(alp)
    return keras.Model(inp, [spikes, low, alp, pool]), keras.Model(inp, pool)


def layer_weights(model):
    """``{"layer/index": value}`` for every weight (``dt`` included)."""
    return {
        f"{layer.name}/{i}": numpy(weight.value)
        for layer in model.layers
        for i, weight in enumerate(layer.weights)
    }


def config_json(model):
    return json.dumps(model.get_config(), sort_keys=True)


# Runs in a fresh interpreter with KERAS_BACKEND set: load, call, write back.
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

    OUTPUTS = ("spikes", "lowpass", "alpha", "pool")
    model_path, inputs_path, out_path = sys.argv[1:]
    model = keras.saving.load_model(model_path)
    result = {"config": np.array(json.dumps(model.get_config(), sort_keys=True))}
    for layer in model.layers:
        for i, weight in enumerate(layer.weights):
            result[f"weight:{layer.name}/{i}"] = keras.ops.convert_to_numpy(weight)
    inputs = np.load(inputs_path)
    for name in inputs.files:
        outputs = model.predict(inputs[name], verbose=0)
        for output, value in zip(OUTPUTS, outputs, strict=True):
            result[f"{name}:{output}"] = keras.ops.convert_to_numpy(value)
    np.savez(out_path, **result)
    """
)


def start_loading(backend, model_path, inputs_path, out_path):
    """Start ``LOAD_SCRIPT`` under ``backend`` (the three run concurrently)."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen(
        [sys.executable, "-c", LOAD_SCRIPT, model_path, inputs_path, out_path],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A model trained with 1 step per example under this backend, saved."""
    keras.backend.clear_session()
    directory = tmp_path_factory.mktemp("saving")
    model, trained = build_model()
    trained.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    x_train = references.integer_rates((16, 1, FEATURES), seed=0, highest=MAX_RATE)
    y_train = np.random.default_rng(1).normal(size=(16, UNITS)).astype("float32")
    trained.fit(x_train, y_train, batch_size=8, epochs=2, verbose=0)
    path = str(directory / "model.keras")
    model.save(path)

    # other batch sizes and many more steps than in training
    inputs = {
        "long": references.integer_rates((5, 100, FEATURES), seed=2, highest=MAX_RATE),
        "random": np.random.default_rng(3)
        .uniform(-30, 200, (3, 37, FEATURES))
        .astype("float32"),
        "one": references.integer_rates((1, 1, FEATURES), seed=4, highest=MAX_RATE),
    }
    inputs_path = str(directory / "inputs.npz")
    np.savez(inputs_path, **inputs)
    outputs = {
        name: dict(zip(OUTPUTS, model.predict(x, verbose=0), strict=True))
        for name, x in inputs.items()
    }
    return {
        "model": model,
        "path": path,
        "inputs": inputs,
        "inputs_path": inputs_path,
        "outputs": outputs,
        "weights": layer_weights(model),
        "config": config_json(model),
        "directory": directory,
    }


def test_training_applied_the_constraints(saved):
    model = saved["model"]
    tau = numpy(model.get_layer("alpha").tau)
    np.testing.assert_array_equal(tau, np.full_like(tau, tau[0]))  # Mean()
    assert not np.allclose(tau, 0.03)  # training moved it
    assert numpy(model.get_layer("lowpass").initial_level).min() >= 0  # NonNeg()


def test_outputs_at_other_shapes_match_reference(saved):
    """Trained with 1 step and batch 8; run with 100 steps and batch 5."""
    model, x = saved["model"], saved["inputs"]["long"]
    out = saved["outputs"]["long"]
    v0 = numpy(keras_spiking.seeded_uniform.seeded_uniform(x.shape[0], FEATURES, SEED))
    spikes, _ = references.spikes(np.maximum(x, 0), DT, v0)
    np.testing.assert_array_equal(out["spikes"], spikes)
    assert (spikes * DT >= 2).any() and (spikes == 0).any()

    dense = model.get_layer("dense")
    hidden = spikes @ numpy(dense.kernel) + numpy(dense.bias)
    lowpass, alpha = model.get_layer("lowpass"), model.get_layer("alpha")
    low = references.lowpass(
        hidden, numpy(lowpass.tau), DT, numpy(lowpass.initial_level)
    )
    alp = references.alpha(low, numpy(alpha.tau), DT, numpy(alpha.initial_level))
    scale = np.abs(hidden).max()
    np.testing.assert_allclose(out["lowpass"], low, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(out["alpha"], alp, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(
        out["pool"], alp.mean(axis=1), rtol=1e-4, atol=1e-5 * scale
    )


def test_loaded_model_has_the_same_objects(saved):
    loaded = keras.saving.load_model(saved["path"])
    for name in ("spikes", "lowpass", "alpha"):
        dt = loaded.get_layer(name).dt
        assert isinstance(dt, keras.Variable) and not dt.trainable
        assert float(numpy(dt)) == DT
    dense, pool = loaded.get_layer("dense"), loaded.get_layer("pool")
    assert isinstance(dense.kernel_regularizer, regularizers.L1L2)
    assert dense.kernel_regularizer.get_config() == {
        "l1": 0.0,
        "l2": 1e-4,
        "target": (-0.5, 0.5),
    }
    assert isinstance(pool.activity_regularizer, regularizers.L2)
    assert pool.activity_regularizer.target == (0.0, 20.0)
    assert isinstance(loaded.get_layer("alpha").tau_constraint, constraints.Mean)
    assert isinstance(
        loaded.get_layer("lowpass").initial_level_constraint, keras.constraints.NonNeg
    )
    assert loaded.get_layer("spikes").seed == SEED


@pytest.fixture(scope="module")
def loading(saved):
    """The three loading subprocesses, started together: ``{backend: (proc, out)}``."""
    started = {}
    for backend in BACKENDS:
        out_path = str(saved["directory"] / f"loaded_{backend}.npz")
        proc = start_loading(backend, saved["path"], saved["inputs_path"], out_path)
        started[backend] = (proc, out_path)
    yield started
    for proc, _ in started.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("backend", BACKENDS)
def test_load_under_each_backend(saved, loading, backend):
    here = BACKEND
    proc, out_path = loading[backend]
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"loading under {backend} failed:\n{stderr[-3000:]}"
    loaded = np.load(out_path)

    assert str(loaded["config"]) == saved["config"], f"{here} -> {backend}"
    for key, value in saved["weights"].items():
        np.testing.assert_array_equal(
            loaded[f"weight:{key}"], value, err_msg=f"{here} -> {backend}: {key}"
        )
    for name, outputs in saved["outputs"].items():
        for output, value in outputs.items():
            got = loaded[f"{name}:{output}"]
            message = f"{here} -> {backend}: input {name!r}, output {output!r}"
            assert got.shape == value.shape, message
            if output == "spikes":  # bit for bit
                np.testing.assert_array_equal(got, value, err_msg=message)
            else:  # filters: float32 rounding of exp/matmul may differ
                scale = np.abs(value).max()
                np.testing.assert_allclose(
                    got, value, rtol=1e-5, atol=1e-6 * scale, err_msg=message
                )
