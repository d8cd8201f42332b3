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
    assert all(0 <= a <= 1 for a in accuracy.values()), accuracy
    assert accuracy["baseline"] > 0.5  # chance is 0.1

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
