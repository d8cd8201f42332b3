"""Spiking neural networks in Keras 3, on the TensorFlow, PyTorch and JAX backends.

Wrap an activation in ``SpikingActivation`` to turn it into spiking neurons,
smooth spikes with the ``Lowpass`` and ``Alpha`` filters, and average them over
time with ``TemporalAvgPool``.
"""

from keras_spiking import callbacks, constraints, default, regularizers
from keras_spiking.filters import Alpha, Lowpass
from keras_spiking.model_energy import ModelEnergy
from keras_spiking.pooling import TemporalAvgPool
from keras_spiking.spiking_activation import SpikingActivation
from keras_spiking.streaming import reset_states, stateful_copy

__version__ = "0.4.0"

__all__ = [
    "Alpha",
    "Lowpass",
    "ModelEnergy",
    "SpikingActivation",
    "TemporalAvgPool",
    "callbacks",
    "constraints",
    "default",
    "regularizers",
    "reset_states",
    "stateful_copy",
]
