"""Smoke tests of ``examples/convert_cnn.py``,
``examples/streaming_inference.py`` and
``examples/sequential_fashion_mnist.py`` under the current backend, on the
embedded small data (``examples/data/fashion_mnist_small.npz``).

Each example runs in-process through its own entry point with flags that
make it quick; the tests check what the examples (and the README) claim
against references computed here.
"""

import csv
import importlib.util
import json
import pathlib

import numpy as np
import pytest

from tests.harness import optional_import

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------- convert_cnn --

# The README's conversion table, on the small data: the example's own ANN
# (its default training: 5 epochs on the 6,000 training images, seed 0),
# converted with normalize="99.9%" with rate neurons and with
# integrate-and-fire neurons, on the first CONVERT_TEST_IMAGES test images.
CONVERT_TEST_IMAGES = 300
CONVERT_ARGS = [
    "--epochs",
    "5",
    "--seed",
    "0",
    "--test-limit",
    str(CONVERT_TEST_IMAGES),
    "--steps",
    "10,50",
    "--variants",
    "normalize,normalize_if",
    "--batch-size",
    "150",
]
# Measured (Keras 3.15.1; TensorFlow 2.21, torch 2.13, JAX 0.10.2 on CPU),
# test accuracy in %:
#
#   backend     ANN    rate@10  if@10  rate@50  if@50
#   tensorflow  84.00  78.33    82.67  79.67    84.00
#   torch       81.67  81.67    83.00  82.00    82.00
#   jax         85.67  82.67    85.00  83.67    86.00
#
# On all 1,000 test images the rate neurons trail by 2.5-5.5 points at 50
# steps (rate / if / ANN: 75.0 / 80.5 / 80.9, 79.5 / 82.0 / 81.8,
# 79.4 / 82.4 / 82.5); on these 300 torch ties, so "at least as accurate"
# allows one point (3 images).  The whole test: about 60 s of CPU time per
# backend.
ANN_FLOOR = 0.75  # chance is 0.1
IF_BELOW_RATE = 0.01  # if >= rate - 1 point, at 10 and 50 steps
IF_BELOW_ANN = 0.02  # if >= ANN - 2 points at 50 steps


@pytest.fixture(scope="module")
def convert_cnn():
    optional_import("matplotlib", "The convert_cnn example (its plot)")
    return load_example("convert_cnn")


def test_convert_cnn_claims(convert_cnn, tmp_path):
    """After normalisation, integrate-and-fire neurons are at least as
    accurate as rate neurons, and within a few points of the ANN."""
    out = tmp_path / "out"
    assert convert_cnn.main([*CONVERT_ARGS, "--out", str(out)]) == 0

    saved = json.loads((out / "accuracy.json").read_text())
    ann = saved["ann"]
    # the variants, in the order asked for
    (rate_label, rate), (if_label, if_) = saved["results"].items()
    assert 'neuron="rate"' in rate_label and 'neuron="if"' in if_label
    assert ann > ANN_FLOOR, saved
    for steps in ("10", "50"):
        assert if_[steps] >= rate[steps] - IF_BELOW_RATE, (steps, saved)
    assert if_["50"] >= ann - IF_BELOW_ANN, saved
    for name in ("accuracy.md", "activity.md"):
        assert (out / name).read_text().startswith("| "), name
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_convert_cnn_rejects_bad_steps(convert_cnn, capsys):
    for steps in ("50,10", "0,5", "5,x"):
        with pytest.raises(SystemExit):
            convert_cnn.parse_args(["--steps", steps])
        assert "--steps" in capsys.readouterr().err, steps


# ------------------------------------------------------- streaming_inference --

STREAM_TEST_IMAGES = 100
# 2 epochs on 2,000 training images: after 30 steps the first 100 test images
# are classified with accuracy 0.61 / 0.68 / 0.63 (TensorFlow / torch / JAX,
# same versions as above); chance is 0.1.
STREAM_ACCURACY_FLOOR = 0.5


@pytest.fixture(scope="module")
def streaming():
    return load_example("streaming_inference")


def test_streaming_equals_whole_sequence(streaming):
    """The example's claim: the output after ``t`` one-step calls of the
    stateful copy is the output of the whole ``t``-step sequence, for one
    image and for the test images streamed together."""
    result = streaming.run(epochs=2, limit=2000, batch=STREAM_TEST_IMAGES)
    steps = streaming.STREAM_STEPS

    streamed, at_once = result["streamed"], result["at_once"]
    assert streamed.shape == at_once.shape == (steps, 10)
    assert np.abs(at_once).max() > 0
    np.testing.assert_allclose(
        streamed, at_once, rtol=1e-5, atol=1e-6 * np.abs(at_once).max()
    )

    images = result["test_images"]
    assert images.shape == (STREAM_TEST_IMAGES, 1, 784)
    frames = np.repeat(images, steps, axis=1)
    # one batch, as streamed: seeded initial voltages follow the batch index
    whole = result["model"].predict(frames, batch_size=len(frames), verbose=0)
    np.testing.assert_allclose(
        result["running"],
        whole[:, -1],
        rtol=1e-5,
        atol=1e-6 * np.abs(whole).max(),
    )
    # the briefly trained classifier is well above chance (0.1)
    labels = np.load(streaming.DATA)["y_test"][:STREAM_TEST_IMAGES]
    accuracy = np.mean(result["running"].argmax(axis=-1) == labels)
    assert accuracy > STREAM_ACCURACY_FLOOR, accuracy


def test_streaming_main_rejects_bad_flags(streaming, capsys):
    for flag in ("--epochs", "--limit", "--batch"):
        with pytest.raises(SystemExit):
            streaming.parse_args([flag, "0"])
        assert flag in capsys.readouterr().err, flag


# ---------------------------------------------------- sequential_fashion_mnist --

# One epoch on the first 1,000 embedded training images (63 batches of 16):
# the test accuracy on the first 1,000 test images, measured (same versions
# as above), in %:
#
#   backend     ff    synapse  recurrent
#   tensorflow  28.0  26.4     28.6
#   torch       28.2  27.7     26.6
#   jax         38.4  36.6     32.7
#
# Chance is 10 %; on 1,000 images its standard deviation is about 1 point.
SEQUENTIAL_ARGS = [
    "--epochs",
    "1",
    "--limit",
    "1000",
    "--hidden",
    "16",
    "--batch-size",
    "16",
    "--seed",
    "0",
]
SEQUENTIAL_ACCURACY_FLOOR = 0.2


@pytest.fixture(scope="module")
def sequential():
    return load_example("sequential_fashion_mnist")


def test_sequential_trains_and_writes_its_table(sequential, tmp_path):
    """All three variants train above chance through time in one epoch and
    the table, the history and (with matplotlib) the figures are written."""
    out = tmp_path / "out"
    assert sequential.main([*SEQUENTIAL_ARGS, "--out", str(out)]) == 0

    table = (out / "summary.md").read_text().splitlines()
    assert table[0].startswith("| model | epochs | test accuracy (%)"), table
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == ["ff", "synapse", "recurrent"]
    assert len(table) == 2 + len(rows)
    for r in rows:
        assert r["hidden"] == "16" and r["epochs"] == "1", r
        assert float(r["test_accuracy"]) > SEQUENTIAL_ACCURACY_FLOOR, r
        assert 0 <= float(r["train_accuracy"]) <= 1, r
        # at most one spike per 1 ms step: a rate in (0, 1000] Hz
        assert 0 < float(r["rate_mean_hz"]) <= 1 / sequential.DT, r
        assert float(r["first_epoch_s"]) > 0, r

    history = json.loads((out / "history.json").read_text())
    assert len(history) == len(rows)
    for curves in history.values():
        assert len(curves["val_accuracy"]) == len(curves["epoch_s"]) == 1

    if sequential.plt is not None:
        for name in ("raster.png", "accuracy.png", "rates.png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_sequential_hidden_spikes_are_rates_in_hz(sequential):
    """The spiking layer's output, probed as the example does, holds spikes of
    height 1 / DT at most once per step, so its time average is a rate in Hz:
    counted here by hand from the 0/1 spikes."""
    x_train, y_train, x_test, y_test = sequential.load("small", limit=8)
    assert x_train.shape == (8, 28, 28) and 0 <= x_train.min() <= x_train.max() <= 1
    model = sequential.build_model("recurrent", 4)
    # drive the hidden neurons hard enough to spike
    synapses = model.get_layer("synapses")
    synapses.set_weights([np.full((28, 4), 0.5, "float32"), np.zeros(4, "float32")])
    accuracy, spikes = sequential.probe(model, x_test, y_test)
    assert spikes.shape == (8, 28, 4)
    counts = spikes * sequential.DT
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-5)
    assert set(np.unique(np.round(counts))) <= {0.0, 1.0}
    assert counts.sum() > 0
    rate_hz = counts.sum(axis=1) / (28 * sequential.DT)  # spikes per second
    np.testing.assert_allclose(spikes.mean(axis=1), rate_hz, rtol=1e-5)
    assert 0 <= accuracy <= 1


def test_sequential_rejects_bad_flags(sequential, capsys):
    for flag, value in (
        ("--epochs", "0"),
        ("--batch-size", "-1"),
        ("--limit", "0"),
        ("--hidden", "32,0"),
        ("--hidden", "x"),
        ("--variants", "ff,lstm"),
    ):
        with pytest.raises(SystemExit):
            sequential.parse_args([flag, value])
        assert flag in capsys.readouterr().err, (flag, value)
