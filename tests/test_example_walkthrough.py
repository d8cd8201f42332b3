"""Smoke test of ``examples/spiking_fashion_mnist.py`` under the current backend.

Runs the whole walkthrough in-process on the embedded small data (the first
1,500 training images, all 1,000 test images, one epoch) and checks its
summary table and figures; and checks that missing or corrupt data fail with
one clear line and leave no output folder behind.
"""

import csv
import importlib.util
import pathlib

import numpy as np
import pytest

from tests.harness import optional_import

EXAMPLE = (
    pathlib.Path(__file__).resolve().parents[1]
    / "examples"
    / ("spiking_fashion_mnist.py")
)
ROWS = [
    ("baseline", None),
    ("spiking_dt0.001", 0.001),
    ("spiking_dt0.01", 0.01),
    ("spiking_dt0.1", 0.1),
    ("spiking_dt1", 1.0),
    ("aware_dt0.01", 0.01),
    ("aware_dt0.01_l2rate", 0.01),
    ("aware_dt0.01_lowpass", 0.01),
]
# Test accuracy floors for this configuration (1 epoch, 1,500 training
# images, seed 0), about 8 points below the lowest of the three backends
# (measured with Keras 3.15.1, TensorFlow 2.21 / torch 2.13 / JAX 0.10.2 on
# CPU; in %, TensorFlow / torch / JAX):
#   baseline 69.8 / 67.8 / 69.4;  not spiking-aware: dt=0.01 41.2 / 37.5 /
#   37.6, dt=0.1 68.0 / 68.3 / 67.2, dt=1 69.4 / 69.5 / 68.1;
#   spiking-aware dt=0.01 41.1 / 43.4 / 41.4, with the rate loss
#   33.6 / 30.9 / 30.6, with Lowpass 42.4 / 42.6 / 42.9.
# Chance is 10%; dt=0.001 collapses to near it (15.9 / 16.0 / 14.4) by design.
ACCURACY_FLOORS = {
    "baseline": 0.6,
    "spiking_dt0.01": 0.29,
    "spiking_dt0.1": 0.59,
    "spiking_dt1": 0.6,
    "aware_dt0.01": 0.33,
    "aware_dt0.01_l2rate": 0.22,
    "aware_dt0.01_lowpass": 0.34,
}
COLLAPSED = 0.3  # dt=0.001: one spike per 1,000 Hz in 10 ms
FIGURES = [
    "samples.png",
    "dt_sweep_0.001.png",
    "dt_sweep_0.01.png",
    "dt_sweep_0.1.png",
    "dt_sweep_1.png",
    "rates.png",
]
N_STEPS = 10


@pytest.fixture(scope="module")
def example():
    optional_import("matplotlib", "The walkthrough example (its figures)")
    spec = importlib.util.spec_from_file_location("spiking_fashion_mnist", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read_summary(folder):
    with open(folder / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["key"]: r for r in rows}, [r["key"] for r in rows]


def test_walkthrough_end_to_end(example, tmp_path):
    out = tmp_path / "out"
    argv = ["--epochs", "1", "--limit", "1500", "--seed", "0", "--out", str(out)]
    assert example.main(argv) == 0

    summary, keys = _read_summary(out)
    assert keys == [key for key, _ in ROWS]
    accuracy = {key: float(summary[key]["test_accuracy"]) for key in keys}
    low = {k: a for k, a in accuracy.items() if a < ACCURACY_FLOORS.get(k, 0)}
    assert not low, f"below the floors {ACCURACY_FLOORS}: {low}"
    # At the default dt = 0.001 the 10-step simulation loses the information.
    assert accuracy["spiking_dt0.001"] < COLLAPSED, accuracy

    # Short simulations lose the information; long ones recover the baseline.
    assert accuracy["spiking_dt1"] > accuracy["spiking_dt0.001"] + 0.2
    assert accuracy["spiking_dt1"] > accuracy["baseline"] - 0.1

    assert summary["baseline"]["rate_mean_hz"] == ""
    for key, dt in ROWS[1:]:
        low, mean, high = (
            float(summary[key][f"rate_{s}_hz"]) for s in ("min", "mean", "max")
        )
        assert 0 <= low <= mean <= high, (key, low, mean, high)
        # A rate is spikes / (N_STEPS * dt): the largest is a whole number of
        # spikes over the simulated time.
        spikes = high * N_STEPS * dt
        assert spikes > 0.5 and np.isclose(spikes, np.round(spikes), atol=1e-3), key
    # The rate loss pulls the rates up toward its 20 Hz target.
    rate = {key: float(summary[key]["rate_mean_hz"]) for key, _ in ROWS[1:]}
    assert rate["aware_dt0.01_l2rate"] > 2 * rate["aware_dt0.01"]
    assert rate["aware_dt0.01_l2rate"] < 25

    markdown = (out / "summary.md").read_text().splitlines()
    assert len(markdown) == 2 + len(ROWS)
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_bad_data_fails_cleanly(example, tmp_path, monkeypatch, capsys, problem):
    data = tmp_path / "fashion_mnist_small.npz"
    if problem == "corrupt":
        data.write_bytes(b"PK\x03\x04 not really a zip file")
    monkeypatch.setattr(example, "SMALL_DATA", data)
    out = tmp_path / "out"

    assert example.main(["--epochs", "1", "--out", str(out)]) == 1

    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1, error
    assert str(data) in error[0] and "make_subset.py" in error[0]
    assert not out.exists()
