"""Test setup shared by every test module.

The backend is chosen by ``KERAS_BACKEND`` (one test process per backend, as in
Keras' own CI).  torch is imported before TensorFlow to avoid crashes when both
are installed in one process.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

try:  # noqa: SIM105 - order matters, see module docstring
    import torch  # noqa: F401
except ImportError:  # pragma: no cover
    pass

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from Keras' defaults and a fixed NumPy seed."""
    keras.backend.clear_session(free_memory=False)
    np.random.seed(0)  # noqa: NPY002 - for any code using the global RNG
    yield
    keras.backend.clear_session(free_memory=False)


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"
