"""Keras' functional graph, read in one place.

Keras 3 keeps a functional model's graph in private attributes: each symbolic
tensor's ``_keras_history`` (the operation that made it and which of that
operation's calls) and each layer's ``_inbound_nodes`` (one node per call).
This module alone reads them; ``convert``, ``keras_spiking.nir``,
``measure_activity`` and ``ModelEnergy`` walk models through it:

* `model_graph`: every call of every layer in topological order (a layer
  called twice, sharing its weights, has two calls), with each tensor's
  producer and consumers;
* `chain`: the layers of a model that is a single chain (NIR export);
* `predict_tensors`: the values of some of a model's symbolic tensors on data,
  through a probe model;
* `window`, `axis_fan_out`: the geometry of Keras' sliding windows
  (``"valid"``, ``"same"``, ``"causal"`` padding) along one axis.
"""

import keras
import numpy as np


class Call:
    """One call of a layer in a model's graph.

    Attributes
    ----------
    layer : keras.layers.Layer
        The layer (an ``InputLayer`` for a model input).
    index : int
        Which call of ``layer`` in this model it is (0 for the first).
    node : keras Node
        Keras' graph node of the call.
    inputs : list of KerasTensor
        Its symbolic input tensors, in argument order (none for an input).
    outputs : list of KerasTensor
        Its symbolic output tensors.
    """

    def __init__(self, layer, index, node):
        self.layer = layer
        self.index = index
        self.node = node
        self.inputs = [] if node.is_input else list(node.arguments.keras_tensors)
        self.outputs = list(node.outputs)

    @property
    def key(self):
        """``(layer name, call index)``."""
        return self.layer.name, self.index

    @property
    def is_input(self):
        """Whether this is a model input (an ``InputLayer``)."""
        return self.node.is_input


class Graph:
    """A functional model's graph (see `model_graph`).

    Attributes
    ----------
    model : keras.Model
    inputs, outputs : list of KerasTensor
        The model's symbolic inputs and outputs, flattened.
    calls : list of Call
        Every call, each after the calls that make its inputs; inputs first.
    """

    def __init__(self, model, inputs, outputs, calls):
        self.model = model
        self.inputs = inputs
        self.outputs = outputs
        self.calls = calls
        self._producer = {}
        self._consumers = {}
        for call in calls:
            for tensor in call.outputs:
                self._producer[id(tensor)] = call
            for tensor in call.inputs:
                self._consumers.setdefault(id(tensor), []).append(call)

    def producer(self, tensor):
        """The `Call` that makes ``tensor``."""
        return self._producer[id(tensor)]

    def consumers(self, tensor):
        """The calls that take ``tensor`` as an input (a list)."""
        return self._consumers.get(id(tensor), [])

    def is_output(self, tensor):
        """Whether ``tensor`` is one of the model's outputs."""
        return any(tensor is t for t in self.outputs)


def not_functional(who, model, detail):
    """The ValueError for a model without a graph of layers to walk."""
    name = getattr(model, "name", type(model).__name__)
    return ValueError(
        f"{who} needs a functional or Sequential model built on keras.Input "
        f"(a subclassed model has no graph of layers to read); model "
        f"'{name}' {detail}."
    )


def check_model(model, who):
    """``model``'s flat symbolic inputs and outputs, or a clear error."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{who} expects a keras.Model (Sequential or functional); got "
            f"{model!r} of type {type(model).__name__}."
        )
    try:
        inputs = keras.tree.flatten(model.inputs)
        outputs = keras.tree.flatten(model.outputs)
    except (AttributeError, ValueError, TypeError) as error:
        raise not_functional(
            who, model, f"has no symbolic inputs and outputs ({error})"
        ) from error
    if not inputs or not outputs:
        raise not_functional(
            who,
            model,
            "has no symbolic inputs and outputs (a Sequential model that was "
            "never built? give it keras.Input(...) as its first layer)",
        )
    return inputs, outputs


def node_of(tensor):
    """The graph node that made the symbolic ``tensor`` (None if none)."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    return history.operation._inbound_nodes[history.node_index]


def first_node(layer):
    """The graph node of ``layer``'s first call (None if never called)."""
    nodes = layer._inbound_nodes
    return nodes[0] if nodes else None


def producer_layer(tensor):
    """The layer (or operation) that made the symbolic ``tensor``."""
    return tensor._keras_history.operation


def _nodes_in_order(who, model, inputs, outputs):
    """The graph's nodes, each after the nodes that make its inputs."""
    input_ids = {id(t) for t in inputs}
    roots = [node_of(t) for t in inputs]
    roots = [n for n in roots if n is not None and n.is_input]
    roots += [node_of(t) for t in outputs]
    order, expanded = [], set()
    for root in roots:
        if root is None:
            raise not_functional(who, model, "has an output made outside Keras")
        stack = [(root, False)]
        while stack:
            node, finished = stack.pop()
            if finished:
                order.append(node)
            elif id(node) not in expanded:
                expanded.add(id(node))
                stack.append((node, True))
                for tensor in reversed(node.arguments.keras_tensors):
                    source = None if id(tensor) in input_ids else node_of(tensor)
                    if source is not None and id(source) not in expanded:
                        stack.append((source, False))
    return order


def model_graph(model, who, *, all_layers_called=False):
    """The graph of a functional or Sequential ``model``.

    Parameters
    ----------
    model : keras.Model
    who : str
        The public function or class asking, for error messages.
    all_layers_called : bool
        Raise a ValueError if one of ``model.layers`` is not called in the
        model's graph.

    Returns
    -------
    Graph
    """
    inputs, outputs = check_model(model, who)
    nodes = _nodes_in_order(who, model, inputs, outputs)
    # a layer's calls are numbered in the order Keras recorded them
    position = {id(n): n.operation._inbound_nodes.index(n) for n in nodes}
    count, index = {}, {}
    for node in sorted(nodes, key=lambda n: position[id(n)]):
        index[id(node)] = count.get(id(node.operation), 0)
        count[id(node.operation)] = index[id(node)] + 1
    if all_layers_called:
        missing = [layer.name for layer in model.layers if id(layer) not in count]
        if missing:
            raise not_functional(
                who,
                model,
                f"has layers that are not called in its graph: {', '.join(missing)}",
            )
    calls = [Call(n.operation, index[id(n)], n) for n in nodes]
    return Graph(model, inputs, outputs, calls)


def chain(model, who):
    """A model's input and its layers, checked to form a single chain.

    Each layer must be called once, on the previous layer's output (the first
    on the model's one input), and the last one's output must be the model's
    one output.

    Returns
    -------
    (KerasTensor, list of keras.layers.Layer)
        The model's input and its layers in order (no ``InputLayer``).
    """
    graph = model_graph(model, who)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ValueError(
            f"{who} expects a model with one input and one output (a chain of "
            f"layers); model '{model.name}' has {len(graph.inputs)} input(s) "
            f"and {len(graph.outputs)} output(s)."
        )
    layers = []
    previous = graph.inputs[0]
    for call in graph.calls:
        if call.is_input:
            continue
        layer = call.layer
        if isinstance(layer, keras.Model):
            raise ValueError(
                f"{who} expects a flat model; layer '{layer.name}' is a nested "
                f"model (export it alone, or rebuild the model flat)."
            )
        if (
            len(layer._inbound_nodes) != 1
            or len(call.inputs) != 1
            or call.inputs[0] is not previous
        ):
            raise ValueError(
                f"{who} expects a chain of layers, each called once on the "
                f"previous one's output; layer '{layer.name}' is not."
            )
        layers.append(layer)
        previous = call.outputs[0]
    if previous is not graph.outputs[0]:
        raise ValueError(
            f"{who} expects the model's output to be its last layer's; model "
            f"'{model.name}' differs."
        )
    return graph.inputs[0], layers


def predict_tensors(model, tensors, x, batch_size=None):
    """The values of symbolic ``tensors`` of ``model``'s graph on input ``x``.

    Builds a probe model from ``model``'s inputs to ``tensors`` and runs
    ``predict`` once.

    Returns
    -------
    list of numpy.ndarray
        One array per tensor (an empty list for no tensors).
    """
    if not tensors:
        return []
    inputs = model.inputs if len(model.inputs) > 1 else model.inputs[0]
    probe = keras.Model(inputs, list(tensors))
    values = probe.predict(x, batch_size=batch_size, verbose=0)
    if len(tensors) == 1:
        values = [values]
    return [np.asarray(v) for v in values]


def probe_model(model, tensors):
    """A model from ``model``'s inputs to the symbolic ``tensors``."""
    inputs = model.inputs if len(model.inputs) > 1 else model.inputs[0]
    return keras.Model(inputs, list(tensors))


# ---------------------------------------------------------------- windows --


def window(size, kernel, stride, dilation, padding):
    """A Keras sliding window along one axis: ``(n_out, before, total)``.

    Output ``o`` reads input ``o * stride - before + k * dilation`` for the
    taps ``k < kernel``.  ``n_out`` is the output length, ``before`` the zero
    padding in front and ``total`` the padding in all: ``"valid"`` pads
    nothing; ``"same"`` pads what makes the output ``ceil(size / stride)``
    long, the odd one at the end (TensorFlow's and Keras' convention);
    ``"causal"`` pads ``(kernel - 1) * dilation`` in front.
    """
    span = (kernel - 1) * dilation + 1
    padding = padding.lower()
    if padding == "valid":
        n_out = max((size - span) // stride + 1, 0)
        return n_out, 0, 0
    if padding == "same":
        n_out = -(-size // stride)
        total = max((n_out - 1) * stride + span - size, 0)
        return n_out, total // 2, total
    if padding == "causal":
        n_out = -(-size // stride)
        return n_out, (kernel - 1) * dilation, (kernel - 1) * dilation
    raise ValueError(
        f"unknown padding {padding!r}: expected 'valid', 'same' or 'causal'."
    )


def axis_fan_out(size, kernel, stride, dilation, padding):
    """Per input position along one axis: how many (output, tap) pairs read it.

    Reads of the padding are not counted (see `window`).
    """
    n_out, before, _ = window(size, kernel, stride, dilation, padding)
    counts = np.zeros(size, np.int64)
    for o in range(n_out):
        for k in range(kernel):
            i = o * stride - before + k * dilation
            if 0 <= i < size:
                counts[i] += 1
    return counts
