"""Export to and import from NIR, the neuromorphic intermediate representation.

`NIR <https://github.com/neuromorphs/NIR>`_ (``pip install keras-spiking[nir]``,
which installs ``nir==1.0.8``) describes a spiking network as a graph of
continuous-time nodes that neuromorphic chips and simulators read (Lava,
SpiNNaker2, Xylo, Speck; sinabs, norse, Spyx).  ``export`` writes a Keras
model as such a graph, ``load`` builds a Keras model from one.  ``nir`` is
imported when these functions are called, not with ``keras_spiking``.

The mapping (features in NIR's channels-first order, without the batch and
time axes):

=============================================  ==================================
Keras                                          NIR
=============================================  ==================================
``keras.Input`` ``(time, *features)``          ``Input`` (features; images CHW)
``Dense``                                      ``Affine(kernel.T, bias)``
                                               (``Linear`` without a bias)
``Conv2D`` (channels last)                     ``Conv2d(kernel.transpose(3, 2,
                                               0, 1))``, integer padding
``AveragePooling2D`` (``"valid"``)             ``AvgPool2d``
``Flatten``                                    ``Flatten(start_dim=0)``, the next
                                               ``Dense``'s rows permuted from
                                               (h, w, c) to (c, h, w)
``SpikingActivation("relu", neuron="if")``     ``IF(r=1, v_threshold=1,
                                               v_reset=0)``
``Lowpass(tau)``                               ``LI(tau, r=1, v_leak=0)``
``Alpha(tau)``                                 ``CubaLI(tau_syn=tau,
                                               tau_mem=tau, r=1, v_leak=0)``
``Dropout``                                    nothing (identity at inference)
=============================================  ==================================

NIR nodes carry no time step and no units: times are in seconds, and the
graph's ``metadata`` records ``dt`` and the conventions under which the graph
reproduces the Keras model step for step (``CONVENTIONS``): inputs held
constant over each step and each node's output read at its end (the
zero-order hold that ``Lowpass``/``Alpha`` implement, ``Alpha`` being the
two-state ``CubaLI``); an ``IF`` neuron adds ``r * input * dt`` to its
voltage, which starts at 0, emits ``floor(v / v_threshold)`` spikes when that
is positive (several per step), each of height ``1 / dt`` (the discretised
unit-area spike), and subtracts them from its voltage (NIR's ``IF`` resets to
``v_reset`` and emits one spike at most: readers may ignore the metadata,
and then agree with the model only where no neuron fires twice in a step).

What NIR cannot express raises a ``ValueError`` naming the layer and the
reason, unless ``approximate=True`` (the choices are then listed in
``metadata["approximations"]``):

* ``SpikingActivation`` in its default ``neuron="rate"`` mode with ``"relu"``
  rectifies its input at every step (``v += max(x, 0) dt``), which NIR's
  ``IF`` does not: exact only where the layer's input is never negative (a
  first layer fed non-negative input), which cannot be known from the model.
  Use ``neuron="if"`` for exact exports; with ``approximate=True`` it is
  written as ``IF`` (and ``load`` restores the rectifying mode from the
  metadata).  Other activations have no NIR node: always an error.
* A random or non-zero initial voltage, a non-zero filter initial level:
  written as starting at 0.
* ``TemporalAvgPool`` as the last layer: left out (the graph outputs the
  sequence; average it over time yourself).

Always errors: other layers, activations inside ``Dense``/``Conv2D``,
``"same"`` padding that Keras splits unevenly (an odd total: Keras puts the
extra row/column at the bottom/right, NIR pads symmetrically),
``AveragePooling2D(padding="same")`` where it pads (Keras averages over the
cells inside the image only), layers with ``return_sequences=False``, and
layers with different ``dt``.
"""

import math

import keras
import numpy as np

from keras_spiking.filters import Alpha, Lowpass
from keras_spiking.pooling import TemporalAvgPool
from keras_spiking.spiking_activation import SpikingActivation
from keras_spiking.temporal import dt_value

#: What ``export`` records in the graph's metadata, besides ``dt``.
CONVENTIONS = {
    "producer": "keras_spiking",
    "time_unit": "s",
    "discretisation": (
        "zero-order hold: each node's input held constant over a step of dt, "
        "its output read at the end of the step (no one-step delay)"
    ),
    "if_reset": "subtract: v -= v_threshold for each spike",
    "if_spikes_per_step": "floor(v / v_threshold) when positive, several allowed",
    "if_spike_height": "1 / dt (a unit-area spike)",
    "initial_state": "zero voltages and filter states",
}


def _nir():
    try:
        import nir
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "keras_spiking.nir needs the `nir` package: pip install "
            "keras-spiking[nir] (or nir==1.0.8)."
        ) from error
    return nir


def _error(layer, reason):
    return ValueError(
        f"keras_spiking.nir.export cannot express layer '{layer.name}' "
        f"({type(layer).__name__}) in NIR: {reason}"
    )


def _chain(model):
    """The model's layers, in order, checked to form a single chain."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"keras_spiking.nir.export expects a keras.Model; got "
            f"{type(model).__name__}."
        )
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"keras_spiking.nir.export expects a model with one input and one "
            f"output (a chain of layers); model '{model.name}' has "
            f"{len(inputs or [])} input(s) and {len(outputs or [])} output(s)."
        )
    layers = [
        layer
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    previous = inputs[0]._keras_history.operation
    for layer in layers:
        if isinstance(layer, keras.Model):
            raise ValueError(
                f"keras_spiking.nir.export expects a flat model; layer "
                f"'{layer.name}' is a nested model (export it alone, or "
                f"rebuild the model flat)."
            )
        nodes = layer._inbound_nodes
        parents = [t._keras_history.operation for t in nodes[0].input_tensors]
        if len(nodes) != 1 or len(parents) != 1 or parents[0] is not previous:
            raise ValueError(
                f"keras_spiking.nir.export expects a chain of layers, each "
                f"called once on the previous one's output; layer '{layer.name}' "
                f"is not."
            )
        previous = layer
    if outputs[0]._keras_history.operation is not previous:
        raise ValueError(
            f"keras_spiking.nir.export expects the model's output to be its "
            f"last layer's; model '{model.name}' differs."
        )
    return inputs[0], layers


def _same_padding(size, kernel, stride, dilation):
    """Keras' total ``"same"`` padding along one axis."""
    out = math.ceil(size / stride)
    return max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


def _padding(layer, spatial, kernel, stride, dilation, outer):
    """Symmetric NIR padding for a Keras ``padding``, or a ValueError naming
    ``outer`` (the layer, or its ``TimeDistributed`` wrapper)."""
    if layer.padding == "valid":
        return (0, 0)
    totals = [
        _same_padding(s, k, st, d)
        for s, k, st, d in zip(spatial, kernel, stride, dilation, strict=True)
    ]
    if any(total % 2 for total in totals):
        raise _error(
            outer,
            f"padding='same' pads {totals[0]} row(s) and {totals[1]} column(s) "
            f"in all for an input of {spatial[0]}x{spatial[1]}; Keras puts an "
            f"odd one at the bottom/right, NIR pads symmetrically (use input "
            f"sizes that need even padding, or padding='valid').",
        )
    return (totals[0] // 2, totals[1] // 2)


def _to_nir_features(values, shape, order):
    """Per-feature parameters (Keras feature shape) in NIR's layout."""
    values = np.asarray(values, np.float32).reshape(shape)
    if len(shape) == 3:
        return np.ascontiguousarray(values.transpose(2, 0, 1))
    if order is not None:
        return values.reshape(-1)[order]
    return values


def _array(variable):
    """A Keras variable's value as NumPy."""
    return np.asarray(keras.ops.convert_to_numpy(variable))


def _layer_dt(layer):
    return dt_value(layer.dt)


def export(model, path=None, *, approximate=False):
    """Write ``model`` as a NIR graph.

    Parameters
    ----------
    model : keras.Model
        A chain of layers (``Sequential``, or functional with one input and
        one output, each layer called once on the previous one's output) of
        the kinds in the module docstring's table, taking ``(batch, time,
        *features)`` input.
    path : str or pathlib.Path, optional
        Where to write the graph (``nir.write``); not written if None.
    approximate : bool
        Write what NIR cannot express exactly as its nearest equivalent
        (listed in ``metadata["approximations"]``) rather than raising: see
        the module docstring.

    Returns
    -------
    nir.NIRGraph
        The graph, ``metadata`` holding ``dt`` (seconds) and ``CONVENTIONS``.
    """
    nir = _nir()
    model_input, layers = _chain(model)
    shape = tuple(model_input.shape[2:])  # Keras features (h, w, c) or (n,)
    if any(size is None for size in shape) or len(shape) not in (1, 3):
        raise ValueError(
            f"keras_spiking.nir.export expects inputs (batch, time, features) "
            f"or (batch, time, height, width, channels) with known feature "
            f"sizes; model '{model.name}' takes {tuple(model_input.shape)}."
        )

    def nir_shape(shape):
        return np.array((shape[2], shape[0], shape[1]) if len(shape) == 3 else shape)

    nodes = {"input": nir.Input(input_type={"input": nir_shape(shape)})}
    names = ["input"]
    approximations, rectified, dts = [], [], {}
    # with a flattened image, NIR index i holds Keras flat index order[i]
    order = None

    def add(node):
        nodes[outer.name] = node
        names.append(outer.name)

    for position, outer in enumerate(layers):
        # per-step layers wrapped in TimeDistributed (Conv2D, pooling, Flatten)
        layer = (
            outer.layer if isinstance(outer, keras.layers.TimeDistributed) else outer
        )
        if getattr(layer, "return_sequences", True) is False:
            raise _error(outer, "return_sequences=False (NIR outputs every step).")
        if isinstance(layer, keras.layers.Dropout):
            continue
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)) and (
            keras.activations.serialize(layer.activation) != "linear"
        ):
            raise _error(
                outer,
                f"activation {keras.activations.serialize(layer.activation)!r} "
                f"(NIR has no activation nodes; use SpikingActivation).",
            )
        if isinstance(layer, keras.layers.Dense):
            if len(shape) != 1:
                raise _error(outer, f"it acts on {shape} features; Flatten first.")
            kernel = np.asarray(_array(layer.kernel), np.float32)
            if order is not None:
                kernel = kernel[order]
            weight = np.ascontiguousarray(kernel.T)
            if layer.use_bias:
                node = nir.Affine(weight=weight, bias=np.asarray(_array(layer.bias)))
            else:
                node = nir.Linear(weight=weight)
            add(node)
            shape, order = (layer.units,), None
        elif isinstance(layer, keras.layers.Conv2D):
            if layer.data_format != "channels_last" or len(shape) != 3:
                raise _error(outer, "only channels-last images are supported.")
            if layer.groups != 1:
                raise _error(outer, f"groups={layer.groups} (only 1 is supported).")
            spatial = shape[:2]
            padding = _padding(
                layer,
                spatial,
                layer.kernel_size,
                layer.strides,
                layer.dilation_rate,
                outer,
            )
            kernel = np.asarray(_array(layer.kernel), np.float32)
            bias = (
                np.asarray(_array(layer.bias), np.float32)
                if layer.use_bias
                else np.zeros(layer.filters, np.float32)
            )
            node = nir.Conv2d(
                input_shape=tuple(int(s) for s in spatial),
                weight=np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)),
                stride=tuple(layer.strides),
                padding=padding,
                dilation=tuple(layer.dilation_rate),
                groups=layer.groups,
                bias=bias,
            )
            add(node)
            shape = tuple(layer.compute_output_shape((1,) + shape)[1:])
        elif isinstance(layer, keras.layers.AveragePooling2D):
            if layer.data_format != "channels_last" or len(shape) != 3:
                raise _error(outer, "only channels-last images are supported.")
            pads = [0, 0]
            if layer.padding == "same":
                pads = [
                    _same_padding(s, k, st, 1)
                    for s, k, st in zip(
                        shape[:2], layer.pool_size, layer.strides, strict=True
                    )
                ]
            if any(pads):
                raise _error(
                    outer,
                    "padding='same' pads here, and Keras then averages over the "
                    "cells inside the image only, which NIR's AvgPool2d cannot "
                    "say; use padding='valid'.",
                )
            add(
                nir.AvgPool2d(
                    kernel_size=np.array(layer.pool_size),
                    stride=np.array(layer.strides),
                    padding=np.array([0, 0]),
                ),
            )
            shape = tuple(layer.compute_output_shape((1,) + shape)[1:])
        elif isinstance(layer, keras.layers.Flatten):
            if len(shape) == 3:
                h, w, c = shape
                order = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1)
                order = order.reshape(-1)
                add(
                    nir.Flatten(
                        input_type={"input": nir_shape(shape)},
                        start_dim=0,
                        end_dim=-1,
                    ),
                )
                shape = (h * w * c,)
        elif isinstance(layer, SpikingActivation):
            dts[layer.name] = _layer_dt(layer)
            activation = keras.activations.serialize(layer.activation)
            if activation != "relu":
                raise _error(
                    outer,
                    f"activation {activation!r}: NIR's IF neuron fires at the "
                    f"rate relu(x); no NIR node fires at other rates.",
                )
            if layer.neuron != "if":
                reason = (
                    "neuron='rate' rectifies the input at every step "
                    "(v += max(x, 0) dt), NIR's IF integrates negative input "
                    "too: the same only where the input is never negative"
                )
                if not approximate:
                    raise _error(
                        outer,
                        f"{reason}. Use neuron='if' (exact at any depth), or "
                        f"export with approximate=True.",
                    )
                approximations.append(f"{layer.name}: {reason}")
                rectified.append(layer.name)
            if layer.initial_voltage != 0.0:
                reason = (
                    f"initial_voltage={layer.initial_voltage!r}; NIR neurons start at 0"
                )
                if not approximate:
                    raise _error(
                        outer,
                        f"{reason}. Create it with initial_voltage=0, or export "
                        f"with approximate=True.",
                    )
                approximations.append(f"{layer.name}: {reason}")
            ones = np.ones(nir_shape(shape), np.float32)
            add(nir.IF(r=ones, v_threshold=ones, v_reset=np.zeros_like(ones)))
        elif isinstance(layer, (Lowpass, Alpha)):
            dts[layer.name] = _layer_dt(layer)
            level = np.asarray(_array(layer.initial_level))
            if np.any(level != 0):
                reason = "a non-zero initial level; NIR filters start at 0"
                if not approximate:
                    raise _error(
                        outer,
                        f"{reason}. Set it to 0, or export with approximate=True.",
                    )
                approximations.append(f"{layer.name}: {reason}")
            tau = _to_nir_features(_array(layer.tau), shape, order)
            ones = np.ones_like(tau)
            zeros = np.zeros_like(tau)
            if isinstance(layer, Lowpass):
                node = nir.LI(tau=tau, r=ones, v_leak=zeros)
            else:
                node = nir.CubaLI(
                    tau_syn=tau, tau_mem=tau.copy(), r=ones, v_leak=zeros, w_in=ones
                )
            add(node)
        elif isinstance(layer, TemporalAvgPool) and position == len(layers) - 1:
            reason = "TemporalAvgPool (NIR graphs output every step)"
            if not approximate:
                raise _error(
                    outer,
                    f"{reason}. Remove it, or export with approximate=True to "
                    f"leave it out (average the output over time yourself).",
                )
            approximations.append(f"{layer.name}: left out: {reason}")
        else:
            raise _error(outer, "no NIR equivalent is implemented for this layer.")

    if len(set(dts.values())) > 1:
        raise ValueError(
            f"keras_spiking.nir.export expects every layer to have the same dt; "
            f"got {dts}."
        )
    nodes["output"] = nir.Output(output_type={"output": nir_shape(shape)})
    names.append("output")
    edges = list(zip(names[:-1], names[1:], strict=True))
    metadata = dict(CONVENTIONS)
    metadata["dt"] = float(next(iter(dts.values()), _default_dt()))
    metadata["rectified_if_nodes"] = ",".join(rectified)
    metadata["approximations"] = "; ".join(approximations)
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)
    if path is not None:
        nir.write(path, graph)
    return graph


def _default_dt():
    import keras_spiking

    return keras_spiking.default.dt


# ------------------------------------------------------------------ load ---


def _metadata_value(metadata, key, default=None):
    value = metadata.get(key, default)
    if isinstance(value, bytes):
        value = value.decode("utf8")
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    return value


def _load_error(name, node, reason):
    return ValueError(
        f"keras_spiking.nir.load cannot build node '{name}' "
        f"({type(node).__name__}): {reason}"
    )


def _chain_of(graph):
    """The graph's node names from its single input to its single output."""
    following = {}
    for source, target in graph.edges:
        if source in following:
            raise ValueError(
                f"keras_spiking.nir.load expects a chain of nodes; node "
                f"'{source}' has several outgoing edges."
            )
        following[source] = target
    nir = _nir()
    starts = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(starts) != 1:
        raise ValueError(
            f"keras_spiking.nir.load expects one Input node; got {len(starts)}."
        )
    chain = [starts[0]]
    while chain[-1] in following:
        chain.append(following[chain[-1]])
        if len(chain) > len(graph.nodes):
            raise ValueError("keras_spiking.nir.load: the graph has a cycle.")
    if not isinstance(graph.nodes[chain[-1]], nir.Output) or len(chain) != len(
        graph.nodes
    ):
        raise ValueError(
            "keras_spiking.nir.load expects a chain of nodes from the Input to "
            "the Output that covers the whole graph."
        )
    return chain


def _per_step(layer, name):
    """``layer`` applied at every step (``TimeDistributed``), named ``name``."""
    return keras.layers.TimeDistributed(layer, name=name)


def load(graph_or_path, dt=None):
    """Build a Keras model from a NIR graph (the inverse of ``export``).

    Nodes map back as in the module docstring's table: ``IF`` to
    ``SpikingActivation("relu", neuron="if")`` (the rectifying
    ``neuron="rate"`` for the nodes that ``export(approximate=True)`` listed
    in ``metadata["rectified_if_nodes"]``), ``LI`` to ``Lowpass``,
    ``CubaLI`` with equal time constants to ``Alpha``, ``Conv2d`` with
    symmetric padding to ``Conv2D`` (``"same"`` where that is Keras'
    padding, else ``ZeroPadding2D`` and ``"valid"``).  Neurons and filters
    start at 0.  ``IF`` nodes follow this package's conventions (subtractive
    reset, several spikes per step; see the module docstring), whoever
    wrote the graph; an ``IF`` or ``LI`` gain ``r`` (and an ``IF``
    threshold, as ``r / v_threshold``) that is not 1 is folded into the
    preceding ``Affine``/``Linear``/``Conv2d``.

    Parameters
    ----------
    graph_or_path : nir.NIRGraph, str or pathlib.Path
        A graph, or a file written by ``nir.write``.
    dt : float, optional
        Time step in seconds; by default ``metadata["dt"]`` (required where
        the graph has none).

    Returns
    -------
    keras.Model
        Input ``(batch, time, *features)`` (images channels last).
    """
    nir = _nir()
    graph = graph_or_path
    if not isinstance(graph, nir.NIRGraph):
        graph = nir.read(graph_or_path)
    metadata = graph.metadata if isinstance(graph.metadata, dict) else {}
    if dt is None:
        dt = _metadata_value(metadata, "dt")
        if dt is None:
            raise ValueError(
                "keras_spiking.nir.load needs `dt` (seconds): the graph's "
                "metadata has none."
            )
    dt = float(dt)
    rectified = set(
        filter(
            None, str(_metadata_value(metadata, "rectified_if_nodes", "")).split(",")
        )
    )
    chain = _chain_of(graph)

    first = graph.nodes[chain[0]]
    shape = tuple(int(s) for s in np.asarray(first.input_type["input"]).reshape(-1))
    if len(shape) == 3:
        keras_shape = (shape[1], shape[2], shape[0])
    elif len(shape) == 1:
        keras_shape = shape
    else:
        raise _load_error(chain[0], first, f"input shape {shape}: 1 or 3 axes.")
    inputs = keras.Input((None,) + keras_shape, name=chain[0])
    specs = []  # [layer, weights or None, gain target index]
    shape = keras_shape
    order = None  # after Flatten of an image: Keras flat index of NIR index i

    def fold(name, node, gain):
        """Multiply the previous weight layer's outputs by ``gain``."""
        gain = np.asarray(gain, np.float64)
        if np.all(gain == 1):
            return
        gain = gain.reshape(-1)
        if not specs or specs[-1][1] is None:
            raise _load_error(
                name,
                node,
                "a gain r (or r / v_threshold) other than 1 right after a node "
                "without weights.",
            )
        layer, weights = specs[-1][0], specs[-1][1]
        if isinstance(getattr(layer, "layer", None), keras.layers.Conv2D):
            channels = gain.reshape(layer.filters, -1)  # NIR (c, h, w) order
            if not np.all(channels == channels[:, :1]):
                raise _load_error(name, node, "a gain that varies within a channel.")
            gain = channels[:, 0]
        specs[-1][1] = [(w * gain).astype(np.float32) for w in weights]

    for name in chain[1:-1]:
        node = graph.nodes[name]
        if isinstance(node, (nir.Affine, nir.Linear)):
            if len(shape) != 1:
                raise _load_error(
                    name, node, f"acts on {shape} features; Flatten first."
                )
            weight = np.asarray(node.weight, np.float32)
            kernel = weight.T
            if order is not None:
                kernel = kernel[np.argsort(order)]
            has_bias = isinstance(node, nir.Affine)
            layer = keras.layers.Dense(weight.shape[0], use_bias=has_bias, name=name)
            weights = [kernel] + (
                [np.asarray(node.bias, np.float32)] if has_bias else []
            )
            specs.append([layer, weights])
            shape, order = (weight.shape[0],), None
        elif isinstance(node, nir.Conv2d):
            if len(shape) != 3:
                raise _load_error(name, node, f"acts on {shape} features.")
            weight = np.asarray(node.weight, np.float32)
            stride = tuple(int(s) for s in np.broadcast_to(node.stride, (2,)))
            dilation = tuple(int(s) for s in np.broadcast_to(node.dilation, (2,)))
            kernel_size = weight.shape[2:]
            padding = node.padding
            if isinstance(padding, (str, bytes)):
                padding = padding.decode() if isinstance(padding, bytes) else padding
                if padding == "same" and stride != (1, 1):
                    raise _load_error(name, node, "padding 'same' with a stride.")
                if padding == "same":
                    padding = tuple(
                        (d * (k - 1)) // 2
                        for k, d in zip(kernel_size, dilation, strict=True)
                    )
                    if any(
                        (d * (k - 1)) % 2
                        for k, d in zip(kernel_size, dilation, strict=True)
                    ):
                        raise _load_error(name, node, "asymmetric 'same' padding.")
                else:
                    padding = (0, 0)
            padding = tuple(int(p) for p in np.broadcast_to(padding, (2,)))
            keras_padding = "valid"
            if any(padding):
                same = [
                    _same_padding(s, k, st, d)
                    for s, k, st, d in zip(
                        shape[:2], kernel_size, stride, dilation, strict=True
                    )
                ]
                if [2 * p for p in padding] == same:
                    keras_padding = "same"
                else:
                    pad_layer = keras.layers.ZeroPadding2D(padding)
                    specs.append([_per_step(pad_layer, f"{name}_padding"), None])
                    shape = (
                        shape[0] + 2 * padding[0],
                        shape[1] + 2 * padding[1],
                        shape[2],
                    )
            groups = int(node.groups)
            layer = keras.layers.Conv2D(
                weight.shape[0],
                kernel_size,
                strides=stride,
                padding=keras_padding,
                dilation_rate=dilation,
                groups=groups,
            )
            bias = np.asarray(node.bias, np.float32).reshape(-1)
            if bias.size == 1 and weight.shape[0] != 1:
                bias = np.full(weight.shape[0], bias[0], np.float32)
            specs.append([_per_step(layer, name), [weight.transpose(2, 3, 1, 0), bias]])
            shape = tuple(layer.compute_output_shape((1,) + shape)[1:])
        elif isinstance(node, nir.AvgPool2d):
            if np.any(np.asarray(node.padding) != 0):
                raise _load_error(name, node, "padding (Keras cannot say it).")
            layer = keras.layers.AveragePooling2D(
                tuple(int(k) for k in np.broadcast_to(node.kernel_size, (2,))),
                strides=tuple(int(k) for k in np.broadcast_to(node.stride, (2,))),
            )
            specs.append([_per_step(layer, name), None])
            shape = tuple(layer.compute_output_shape((1,) + shape)[1:])
        elif isinstance(node, nir.Flatten):
            if len(shape) == 3:
                h, w, c = shape
                order = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1)
                order = order.reshape(-1)
                shape = (h * w * c,)
            specs.append([_per_step(keras.layers.Flatten(), name), None])
        elif isinstance(node, nir.IF):
            if np.any(np.asarray(node.v_reset) != 0):
                raise _load_error(name, node, "v_reset other than 0.")
            fold(name, node, np.asarray(node.r) / np.asarray(node.v_threshold))
            layer = SpikingActivation(
                "relu",
                dt=dt,
                neuron="rate" if name in rectified else "if",
                initial_voltage=0.0,
                name=name,
            )
            specs.append([layer, None])
        elif isinstance(node, (nir.LI, nir.CubaLI)):
            if np.any(np.asarray(node.v_leak) != 0):
                raise _load_error(name, node, "v_leak other than 0.")
            if isinstance(node, nir.LI):
                tau, gain, cls = node.tau, node.r, Lowpass
            else:
                if not np.array_equal(node.tau_syn, node.tau_mem):
                    raise _load_error(
                        name, node, "tau_syn != tau_mem (Alpha has one tau)."
                    )
                tau, cls = node.tau_mem, Alpha
                gain = np.asarray(node.r) * np.asarray(node.w_in)
            fold(name, node, gain)
            tau = np.asarray(tau, np.float32).reshape(-1)
            if len(shape) == 3:
                c, h, w = shape[2], shape[0], shape[1]
                tau = np.broadcast_to(tau, (c * h * w,)).reshape(c, h, w)
                tau = tau.transpose(1, 2, 0)
            elif order is not None:
                tau = np.broadcast_to(tau, (math.prod(shape),))[np.argsort(order)]
            tau = np.broadcast_to(tau, shape).astype(np.float32)
            layer = cls(float(tau.flat[0]), dt=dt, name=name)
            specs.append([layer, ("tau", tau)])
        else:
            raise _load_error(name, node, "no Keras equivalent is implemented.")

    x = inputs
    for layer, _ in specs:
        x = layer(x)
    model = keras.Model(inputs, x)
    for layer, weights in specs:
        if weights is None:
            continue
        if isinstance(weights, tuple):
            layer.tau.assign(weights[1])
        else:
            layer.set_weights(weights)
    return model
