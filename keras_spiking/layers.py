"""All the layers and cells in one module, as keras-spiking 0.3 had them.

``from keras_spiking import layers`` then ``layers.SpikingActivation``,
``layers.LowpassCell`` and so on: code written for keras-spiking 0.3 keeps
working.  ``KerasSpikingLayer`` is the base class of the layers with a time
axis (``keras_spiking.temporal.TemporalLayer``), ``KerasSpikingCell`` that of
the cells.
"""

from keras_spiking.cells import (
    AlphaCell,
    KerasSpikingCell,
    LowpassCell,
    SpikingActivationCell,
)
from keras_spiking.filters import Alpha, Lowpass
from keras_spiking.pooling import TemporalAvgPool
from keras_spiking.spiking_activation import SpikingActivation
from keras_spiking.temporal import TemporalLayer

#: The keras-spiking 0.3 name of the base class of the temporal layers.
KerasSpikingLayer = TemporalLayer

__all__ = [
    "Alpha",
    "AlphaCell",
    "KerasSpikingCell",
    "KerasSpikingLayer",
    "Lowpass",
    "LowpassCell",
    "SpikingActivation",
    "SpikingActivationCell",
    "TemporalAvgPool",
    "TemporalLayer",
]
