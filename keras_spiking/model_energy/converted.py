r"""Built-in counters of the default assumption, ``assume="converted"``.

These are keras-spiking 0.3's rules.  Shapes are full (batch axis first);
the *output size* of a call is the product of its output shape without the
batch axis and, if the next axis is undefined (``None``), without that one
too (taken as time).  Any other undefined axis is an error.

- ``Dense``: :math:`C = (\text{output size} / \text{units})
  \prod \text{kernel.shape}` (inputs x units at every position).
- ``Conv1D/2D/3D``: :math:`C = \text{output size} \prod
  \text{kernel.shape[:-1]}` (kernel taps x input channels per output value,
  padding included).
- ``Dense`` and convolutions with a non-linear activation, ``Activation``
  (non-linear), ``ReLU``, ``LeakyReLU``: :math:`N = \text{output size}`,
  ``spiking=False``.
- ``SpikingActivation``: :math:`N = \prod \text{input\_shape[2:]}` (per
  timestep), ``spiking=True``.
- ``LIF``, ``CubaLIF``, ``ALIF``: :math:`N` = units (one neuron update per
  unit and timestep), ``spiking=True``; with ``recurrent=True``
  :math:`C = \text{units}^2`, the recurrent kernel (priced, as every layer
  here, at the rate of the layer's input).
- ``TimeDistributed``: the wrapped layer's counter, on the shapes without
  axis 1.
- Free (nothing counted, no warning): ``InputLayer``, ``Flatten``,
  ``Reshape``, ``Dropout``, the merge layers (``Add``, ``Subtract``,
  ``Multiply``, ``Average``, ``Maximum``, ``Minimum``, ``Concatenate``),
  ``GlobalAveragePooling1D/2D/3D``, ``Lowpass``, ``Alpha``,
  ``TemporalAvgPool``.
- Any other layer (local pooling included, as in 0.3): a warning, and
  nothing counted.
"""

import math
import warnings

import keras

from keras_spiking.filters import Alpha, Lowpass
from keras_spiking.lif import ALIF, LIF, CubaLIF
from keras_spiking.model_energy.counters import (
    CONVERTED,
    LayerNode,
    find_counter,
    register_layer,
    run_counter,
)
from keras_spiking.pooling import TemporalAvgPool
from keras_spiking.spiking_activation import SpikingActivation

FREE_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Dropout,
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
    keras.layers.Concatenate,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    Lowpass,
    Alpha,
    TemporalAvgPool,
)


def _first(shapes):
    return shapes[0] if isinstance(shapes, list) else shapes


def defined_size(node, shape, role):
    """``prod(shape)``; a ValueError naming the layer if an axis is undefined."""
    shape = tuple(shape)
    if any(n is None for n in shape):
        raise ValueError(
            f"Cannot compute stats for '{node.layer.name}' layer because the "
            f"{role} shape {shape} contains undefined elements (only the batch "
            f"axis and, right after it, a time axis may be undefined)."
        )
    return math.prod(shape)


def output_size(node):
    """Output size of a call: no batch axis, nor a leading undefined (time) axis."""
    shape = tuple(_first(node.output_shapes))[1:]
    if shape and shape[0] is None:
        shape = shape[1:]
    return defined_size(node, shape, "output")


def is_linear(activation):
    """Whether ``activation`` is the identity (None or ``linear``)."""
    return (
        activation is None
        or activation is keras.activations.linear
        or getattr(activation, "__name__", None) == "linear"
    )


def activation_stats(activation, size):
    """Neurons of an activation on ``size`` values: none if it is linear."""
    if is_linear(activation):
        return {"neurons": 0, "spiking": True}
    return {"neurons": size, "spiking": False}


def _free_stats(node):
    return {}


for _layer_class in FREE_LAYERS:
    register_layer(_layer_class, assume=CONVERTED)(_free_stats)


@register_layer(keras.layers.Layer, assume=CONVERTED)
def unknown_layer_stats(node):
    """Any layer without a counter: warn, count nothing."""
    warnings.warn(
        f"Cannot compute stats for layer of type '{type(node.layer).__name__}'. "
        f"Use `ModelEnergy.register_layer` to register this layer.",
        stacklevel=2,
    )
    return {}


@register_layer(keras.layers.Dense, assume=CONVERTED)
def dense_stats(node):
    """Inputs x units at every position; neurons if the activation is non-linear."""
    size = output_size(node)
    kernel = math.prod(node.layer.kernel.shape)
    stats = {"connections": size // node.layer.units * kernel}
    stats.update(activation_stats(node.layer.activation, size))
    return stats


@register_layer(keras.layers.Conv1D, assume=CONVERTED)
@register_layer(keras.layers.Conv2D, assume=CONVERTED)
@register_layer(keras.layers.Conv3D, assume=CONVERTED)
def conv_stats(node):
    """Kernel taps x input channels per output value (padding included)."""
    size = output_size(node)
    stats = {"connections": size * math.prod(node.layer.kernel.shape[:-1])}
    stats.update(activation_stats(node.layer.activation, size))
    return stats


@register_layer(keras.layers.Activation, assume=CONVERTED)
def activation_layer_stats(node):
    """One neuron per output value, unless the activation is linear."""
    return activation_stats(node.layer.activation, output_size(node))


@register_layer(keras.layers.ReLU, assume=CONVERTED)
@register_layer(keras.layers.LeakyReLU, assume=CONVERTED)
def relu_stats(node):
    """One (non-spiking) neuron per output value."""
    return {"neurons": output_size(node), "spiking": False}


@register_layer(SpikingActivation, assume=CONVERTED)
def spiking_activation_stats(node):
    """One spiking neuron per unit of a timestep (input axes 2 onwards)."""
    shape = tuple(_first(node.input_shapes))[2:]
    return {"neurons": defined_size(node, shape, "input"), "spiking": True}


def lif_stats(layer):
    """A LIF layer's neurons (one per unit) and recurrent connections."""
    units = int(layer.units)
    connections = units * units if layer.recurrent else 0
    return {"connections": connections, "neurons": units, "spiking": True}


@register_layer(LIF, assume=CONVERTED)
@register_layer(CubaLIF, assume=CONVERTED)
@register_layer(ALIF, assume=CONVERTED)
def lif_layer_stats(node):
    """One spiking neuron per unit; the recurrent kernel's connections."""
    return lif_stats(node.layer)


def _without_axis_1(shape):
    return tuple(shape[:1]) + tuple(shape[2:])


def _as_list(shapes):
    return shapes if isinstance(shapes, list) else [shapes]


@register_layer(keras.layers.TimeDistributed, assume=CONVERTED)
def time_distributed_stats(node):
    """The wrapped layer's counter, on the shapes of one timestep."""
    inner = node.layer.layer
    inputs = [_without_axis_1(s) for s in _as_list(node.input_shapes)]
    outputs = [_without_axis_1(s) for s in _as_list(node.output_shapes)]
    tensors = [
        [keras.KerasTensor(s, dtype=t.dtype) for s, t in zip(shapes, ts, strict=True)]
        for shapes, ts in ((inputs, node.input_tensors), (outputs, node.output_tensors))
    ]
    inner_node = LayerNode(inner, *tensors, inputs, outputs)
    counter = find_counter(inner, CONVERTED)
    return run_counter(counter, inner_node)
