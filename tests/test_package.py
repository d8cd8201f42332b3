"""The package as a whole: importable without docstrings, versioned above
its predecessor."""

import os
import pathlib
import re
import subprocess
import sys

import keras

import keras_spiking

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_import_under_python_OO():
    """``python -OO`` strips docstrings; nothing may depend on them."""
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    result = subprocess.run(
        [
            sys.executable,
            "-OO",
            "-c",
            "import keras_spiking; print(keras_spiking.Lowpass)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Lowpass" in result.stdout


def test_version_matches_pyproject_and_follows_predecessor():
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE).group(1)
    assert keras_spiking.__version__ == version
    # keras-spiking 0.3.0 is the TensorFlow-only predecessor: pip must never
    # prefer it over this package
    assert tuple(int(part) for part in version.split(".")[:3]) > (0, 3, 0)
