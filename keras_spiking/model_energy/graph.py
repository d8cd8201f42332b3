r"""Walking a model's graph, and measuring rates with ``example_data``.

``model_calls`` lists every call of the model's layers (a layer called twice,
sharing its weights, has two calls), each call after the calls that make its
inputs.  ``measure`` runs ``example_data`` once through a probe model that
outputs the tensors asked for, and returns :math:`\mathrm{mean}(|x|)` of each
(over examples, timesteps and units).
"""

import keras
import numpy as np


class Call:
    """One call of a layer in the model.

    Attributes
    ----------
    layer : keras.layers.Layer
    index : int
        Which call of ``layer`` in this model it is (0 for the first).
    node : keras Node
        The Keras graph node.
    inputs, outputs : list of KerasTensor
        Its input tensors (none for an ``InputLayer``) and output tensors.
    """

    def __init__(self, layer, index, node):
        self.layer = layer
        self.index = index
        self.node = node
        self.inputs = [] if node.is_input else list(node.input_tensors)
        self.outputs = list(node.outputs)

    @property
    def key(self):
        """``(layer name, call index)``."""
        return self.layer.name, self.index


def not_functional(model, detail):
    return ValueError(
        f"ModelEnergy needs a functional or Sequential model built on "
        f"keras.Input; model '{model.name}' {detail}."
    )


def _parent(tensor):
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    return history[0]._inbound_nodes[history[1]]


def _graph_nodes(model):
    """The model's graph nodes, each after the nodes making its inputs."""
    try:
        inputs = keras.tree.flatten(model.inputs)
        outputs = keras.tree.flatten(model.outputs)
    except (AttributeError, ValueError) as error:
        raise not_functional(
            model, f"has no symbolic inputs and outputs ({error})"
        ) from error
    input_ids = {id(t) for t in inputs}
    roots = [_parent(t) for t in inputs if _parent(t) is not None]
    roots = [n for n in roots if n.is_input] + [_parent(t) for t in outputs]
    order, expanded = [], set()
    for root in roots:
        if root is None:
            raise not_functional(model, "has an output made outside Keras")
        stack = [(root, False)]
        while stack:
            node, finished = stack.pop()
            if finished:
                order.append(node)
            elif id(node) not in expanded:
                expanded.add(id(node))
                stack.append((node, True))
                for tensor in reversed(node.input_tensors):
                    source = None if id(tensor) in input_ids else _parent(tensor)
                    if source is not None and id(source) not in expanded:
                        stack.append((source, False))
    return order


def model_calls(model):
    """Every call of the model's layers, as `Call` objects in graph order.

    Raises
    ------
    ValueError
        If the model is not built on symbolic inputs, or one of its layers is
        not called in its graph.
    """
    layers = {id(layer): layer for layer in model.layers}
    nodes = [n for n in _graph_nodes(model) if id(n.operation) in layers]
    position = {id(n): n.operation._inbound_nodes.index(n) for n in nodes}
    count = {}
    index = {}
    for node in sorted(nodes, key=lambda n: position[id(n)]):
        index[id(node)] = count.get(id(node.operation), 0)
        count[id(node.operation)] = index[id(node)] + 1
    missing = [layer.name for key, layer in layers.items() if key not in count]
    if missing:
        raise not_functional(
            model, f"has layers that are not called in its graph: {', '.join(missing)}"
        )
    return [Call(n.operation, index[id(n)], n) for n in nodes]


def measure(model, tensors, example_data):
    """``mean(|x|)`` of each tensor in ``tensors`` for ``example_data``.

    Parameters
    ----------
    model : keras.Model
        The model whose inputs ``example_data`` feeds.
    tensors : list of list of KerasTensor
        Groups of tensors of the model's graph; a group's value is the mean
        over all the elements of its tensors (an empty group gives nan).
    example_data
        Anything ``model.predict`` accepts.

    Returns
    -------
    list of float
        One mean per group, from one ``predict`` of a probe model.
    """
    unique = {}
    for group in tensors:
        for tensor in group:
            unique.setdefault(id(tensor), tensor)
    if not unique:
        return [float("nan")] * len(tensors)
    probe = keras.Model(model.inputs, list(unique.values()))
    values = probe.predict(example_data, verbose=0)
    if len(unique) == 1:
        values = [values]
    sums = {
        key: (float(np.sum(np.abs(v), dtype=np.float64)), np.size(v))
        for key, v in zip(unique, values, strict=True)
    }
    means = []
    for group in tensors:
        total = sum(sums[id(t)][0] for t in group)
        size = sum(sums[id(t)][1] for t in group)
        means.append(total / size if size else float("nan"))
    return means
