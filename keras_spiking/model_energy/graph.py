r"""The calls of a model's layers, and measuring rates with ``example_data``.

``model_calls`` lists every call of the model's layers (a layer called twice,
sharing its weights, has two calls), each call after the calls that make its
inputs (``keras_spiking._graph`` reads Keras' graph).  ``measure`` runs
``example_data`` once through a probe model that outputs the tensors asked
for, and returns :math:`\mathrm{mean}(|x|)` of each (over examples, timesteps
and units).
"""

import numpy as np

from keras_spiking import _graph

WHO = "ModelEnergy"


def model_calls(model):
    """Every call of the model's layers, as ``_graph.Call`` objects.

    The calls are in graph order: each after the calls making its inputs.

    Raises
    ------
    ValueError
        If the model is not built on symbolic inputs, or one of its layers is
        not called in its graph.
    """
    graph = _graph.model_graph(model, WHO, all_layers_called=True)
    layers = {id(layer) for layer in model.layers}
    return [call for call in graph.calls if id(call.layer) in layers]


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
    values = _graph.predict_tensors(model, list(unique.values()), example_data)
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
