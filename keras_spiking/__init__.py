"""Spiking neural networks in Keras 3, on the TensorFlow, PyTorch and JAX backends.

Wrap an activation in ``SpikingActivation`` to turn it into spiking neurons,
smooth spikes with the ``Lowpass`` and ``Alpha`` filters, and average them over
time with ``TemporalAvgPool``; train leaky integrate-and-fire neurons through
time with surrogate gradients (``LIF``, ``CubaLIF``, ``ALIF``).
"""

from keras_spiking import (
    callbacks,
    config,
    constraints,
    layers,
    lif,
    regularizers,
    surrogates,
    version,
)
from keras_spiking.activity import measure_activity
from keras_spiking.cells import AlphaCell, LowpassCell, SpikingActivationCell
from keras_spiking.config import default
from keras_spiking.conversion import convert
from keras_spiking.filters import Alpha, Lowpass
from keras_spiking.lif import ALIF, LIF, CubaLIF
from keras_spiking.model_energy import ModelEnergy
from keras_spiking.pooling import TemporalAvgPool
from keras_spiking.spiking_activation import SpikingActivation
from keras_spiking.streaming import reset_states, stateful_copy

__version__ = version.version
__copyright__ = version.copyright
__license__ = "Apache-2.0; see LICENSE"

__all__ = [
    "ALIF",
    "Alpha",
    "AlphaCell",
    "CubaLIF",
    "LIF",
    "Lowpass",
    "LowpassCell",
    "ModelEnergy",
    "SpikingActivation",
    "SpikingActivationCell",
    "TemporalAvgPool",
    "callbacks",
    "config",
    "constraints",
    "convert",
    "default",
    "layers",
    "lif",
    "measure_activity",
    "regularizers",
    "reset_states",
    "stateful_copy",
    "surrogates",
    "version",
]
