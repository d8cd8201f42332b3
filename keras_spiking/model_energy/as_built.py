r"""Built-in counters of ``assume="as_built"``: the model as it is.

Counters see the shapes of one timestep (batch axis first, the time axis
removed where ModelEnergy takes one; see ``timeaxis``), and count per
timestep:

- ``Dense``: inputs x units (at every position).
- ``ConvND``: every (output, input) pair under the kernel, padding excluded,
  x input channels per group x filters.
- Local pooling: every (output, input) pair in the pooling windows, padding
  excluded, x channels; global pooling: every input.
- Neurons: one per output value for ``SpikingActivation``,
  ``Activation``/``ReLU``/``LeakyReLU`` and ``Dense``/``ConvND`` with a
  non-linear activation; ``Lowpass`` one state per unit, ``Alpha`` two.
- ``LIF``, ``CubaLIF``, ``ALIF``: one spiking neuron per unit (a neuron
  update covers its synaptic current or adaptation too); with
  ``recurrent=True`` also ``units x units`` connections, which carry the
  layer's own spikes (see ``timeaxis``).
- Free: ``InputLayer``, ``Flatten``, ``Reshape``, ``Dropout``,
  ``RepeatVector``, ``TemporalAvgPool``.

Each registration also says how the layer treats a time axis (``kind``) and
whether it passes spikes on unchanged.
"""

import math

import keras

from keras_spiking import _graph
from keras_spiking.filters import Alpha, Lowpass
from keras_spiking.lif import ALIF, LIF, CubaLIF
from keras_spiking.model_energy.converted import activation_stats, lif_stats
from keras_spiking.model_energy.counters import (
    AS_BUILT,
    NEEDS_TIME,
    SPATIAL,
    TEMPORAL,
    TIME_DISTRIBUTED,
    TIME_POOL,
    TIME_SOURCE,
    LayerNode,
    register_layer,
    require_counter,
    run_counter,
)
from keras_spiking.pooling import TemporalAvgPool
from keras_spiking.spiking_activation import SpikingActivation


def _step(shapes):
    """One example's shape (or shapes) for one timestep: no batch axis."""
    if isinstance(shapes, list):
        return [tuple(s[1:]) for s in shapes]
    return tuple(shapes[1:])


def _size(shape):
    return int(math.prod(shape))


def _split_channels(layer, shape):
    """``(spatial shape, channels)`` of a per-example shape."""
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return tuple(shape[1:]), shape[0]
    return tuple(shape[:-1]), shape[-1]


def _windowed_pairs(node, window, strides, dilation):
    layer = node.layer
    in_spatial, channels = _split_channels(layer, _step(node.input_shapes))
    # (output, input) pairs along each axis, reads of the padding excluded
    pairs = math.prod(
        int(_graph.axis_fan_out(n, k, s, d, layer.padding).sum())
        for n, k, s, d in zip(in_spatial, window, strides, dilation, strict=True)
    )
    return pairs, channels


def _with_activation(connections, layer, output_shape):
    stats = {"connections": connections}
    stats.update(activation_stats(layer.activation, _size(output_shape)))
    return stats


@register_layer(keras.layers.InputLayer, assume=AS_BUILT)
@register_layer(keras.layers.Dropout, assume=AS_BUILT, passes_spikes=True)
@register_layer(TemporalAvgPool, assume=AS_BUILT, kind=TIME_POOL, passes_spikes=True)
@register_layer(keras.layers.RepeatVector, assume=AS_BUILT, kind=TIME_SOURCE)
@register_layer(keras.layers.Flatten, assume=AS_BUILT, kind=SPATIAL, passes_spikes=True)
@register_layer(keras.layers.Reshape, assume=AS_BUILT, kind=SPATIAL, passes_spikes=True)
def free_stats(node):
    """Nothing counted."""
    return {}


def _as_list(shapes):
    return shapes if isinstance(shapes, list) else [shapes]


@register_layer(keras.layers.TimeDistributed, assume=AS_BUILT, kind=TIME_DISTRIBUTED)
def time_distributed_stats(node):
    """The wrapped (per-timestep) layer's counter, on the same shapes."""
    inner = node.layer.layer
    counter = require_counter(inner)
    if counter.kind in NEEDS_TIME:
        raise ValueError(
            f"Layer '{node.layer.name}' wraps a {type(inner).__name__} in "
            f"TimeDistributed; ModelEnergy supports TimeDistributed around "
            f"per-timestep layers only."
        )
    inner_node = LayerNode(
        inner,
        node.input_tensors,
        node.output_tensors,
        _as_list(node.input_shapes),
        _as_list(node.output_shapes),
    )
    return run_counter(counter, inner_node)


@register_layer(keras.layers.Dense, assume=AS_BUILT)
def dense_stats(node):
    """Inputs x units at every position."""
    connections = _size(_step(node.input_shapes)) * node.layer.units
    return _with_activation(connections, node.layer, _step(node.output_shapes))


@register_layer(keras.layers.Conv1D, assume=AS_BUILT, kind=SPATIAL)
@register_layer(keras.layers.Conv2D, assume=AS_BUILT, kind=SPATIAL)
@register_layer(keras.layers.Conv3D, assume=AS_BUILT, kind=SPATIAL)
def conv_stats(node):
    """(output, input) pairs under the kernel x input channels per group x filters."""
    layer = node.layer
    pairs, channels = _windowed_pairs(
        node, layer.kernel_size, layer.strides, layer.dilation_rate
    )
    connections = pairs * (channels // layer.groups) * layer.filters
    return _with_activation(connections, layer, _step(node.output_shapes))


def _pooling_stats(node):
    """(output, input) pairs in the pooling windows x channels."""
    layer = node.layer
    pairs, channels = _windowed_pairs(
        node, layer.pool_size, layer.strides, (1,) * len(layer.pool_size)
    )
    return {"connections": pairs * channels, "neurons": 0}


def _global_pooling_stats(node):
    """Every input."""
    return {"connections": _size(_step(node.input_shapes)), "neurons": 0}


for _dims in (1, 2, 3):
    for _pool in ("AveragePooling", "MaxPooling"):
        _class = getattr(keras.layers, f"{_pool}{_dims}D")
        register_layer(_class, assume=AS_BUILT, kind=SPATIAL)(_pooling_stats)
        _class = getattr(keras.layers, f"Global{_pool}{_dims}D")
        register_layer(_class, assume=AS_BUILT, kind=SPATIAL)(_global_pooling_stats)


@register_layer(keras.layers.Activation, assume=AS_BUILT)
def activation_layer_stats(node):
    """One neuron per output value, unless the activation is linear."""
    return activation_stats(node.layer.activation, _size(_step(node.output_shapes)))


@register_layer(keras.layers.ReLU, assume=AS_BUILT)
@register_layer(keras.layers.LeakyReLU, assume=AS_BUILT)
def relu_stats(node):
    """One (non-spiking) neuron per output value."""
    return {"neurons": _size(_step(node.output_shapes)), "spiking": False}


@register_layer(SpikingActivation, assume=AS_BUILT, kind=TEMPORAL)
def spiking_activation_stats(node):
    """One spiking neuron per unit."""
    return {"neurons": _size(node.layer.feature_shape), "spiking": True}


@register_layer(LIF, assume=AS_BUILT, kind=TEMPORAL)
@register_layer(CubaLIF, assume=AS_BUILT, kind=TEMPORAL)
@register_layer(ALIF, assume=AS_BUILT, kind=TEMPORAL)
def lif_layer_stats(node):
    """One spiking neuron per unit; the recurrent kernel's connections."""
    return lif_stats(node.layer)


@register_layer(Lowpass, assume=AS_BUILT, kind=TEMPORAL)
@register_layer(Alpha, assume=AS_BUILT, kind=TEMPORAL)
def filter_stats(node):
    """One state per unit and state of the filter (Lowpass 1, Alpha 2)."""
    return {"neurons": node.layer.num_states * _size(node.layer.feature_shape)}
