"""Estimate what a model would cost to run on CPUs, GPUs and neuromorphic chips.

``ModelEnergy(model, example_data)`` counts every layer's connections and
neurons and prices them with a device's energy per synaptic operation and per
neuron update.  By default (``assume="converted"``) it computes exactly as
keras-spiking 0.3 did; ``assume="as_built"`` estimates the model as it is.

Modules: ``devices`` (the device figures, ``register_device``), ``counters``
(``LayerNode``, ``register_layer`` and the registry), ``converted`` and
``as_built`` (the built-in counters of each assumption), ``graph`` (the
model's calls, rate measurement), ``timeaxis`` (the as_built time-axis and
spike analysis), ``modes`` (the two estimates), ``table`` (the summary) and
``core`` (``ModelEnergy``).
"""

from keras_spiking.model_energy import as_built, converted  # noqa: F401 (registers)
from keras_spiking.model_energy.core import ModelEnergy
from keras_spiking.model_energy.counters import LayerNode

__all__ = ["LayerNode", "ModelEnergy"]
