"""Per-layer counters: ``LayerNode``, the registry and ``register_layer``.

A *counter* (stats function) receives a ``LayerNode`` (one call of a layer)
and returns a dict with any of

- ``"connections"`` (int, default 0): synapses from the call's inputs to its
  outputs;
- ``"neurons"`` (int, default 0): neuron updates per timestep;
- ``"spiking"`` (bool, default True): whether the layer could run on a
  spiking device as it is (False for non-spiking non-linearities such as
  ``ReLU``).

There is one registry per assumption (``"converted"``, the default, and
``"as_built"``; see ``keras_spiking.model_energy``), filled by the one
decorator ``register_layer``, for the built-in counters and user counters
alike.  A counter registered without ``assume`` serves both.
"""

import numbers
import warnings

import keras
import numpy as np

CONVERTED, AS_BUILT = "converted", "as_built"
ASSUMPTIONS = (CONVERTED, AS_BUILT)
STATS = ("connections", "neurons", "spiking")

# How a layer treats a time axis (as_built mode only).
PER_STEP = "per_step"  # acts on each position alone: carries a time axis through
TEMPORAL = "temporal"  # needs a time axis; keeps it if it returns sequences
TIME_POOL = "time_pool"  # needs a time axis and removes it
TIME_DISTRIBUTED = "time_distributed"  # needs a time axis and keeps it
SPATIAL = "spatial"  # mixes positions: must not see a time axis
TIME_SOURCE = "time_source"  # adds a time axis (RepeatVector)
NEEDS_TIME = (TEMPORAL, TIME_POOL, TIME_DISTRIBUTED)
KINDS = (PER_STEP, TEMPORAL, TIME_POOL, TIME_DISTRIBUTED, SPATIAL, TIME_SOURCE)


def _one_or_list(shapes):
    return shapes[0] if len(shapes) == 1 else list(shapes)


class LayerNode:
    """One call of a layer, as a counter sees it.

    Parameters
    ----------
    layer : keras.layers.Layer
        The layer called.
    input_tensors, output_tensors : list of KerasTensor
        The symbolic tensors of the call (for an ``InputLayer``, its inputs
        are its outputs).
    input_shapes, output_shapes : tuple or list of tuple, optional
        Shapes given to the counter, by default those of the tensors.

    Attributes
    ----------
    layer, input_tensors, output_tensors
        As given.
    input_shapes, output_shapes : tuple or list of tuple
        Full shapes, batch axis (``None``) first: one tuple for one tensor, a
        list of tuples for several.  With ``assume="as_built"`` the time axis,
        where ModelEnergy takes one, is removed: the shapes of one timestep.
    """

    def __init__(
        self,
        layer,
        input_tensors,
        output_tensors,
        input_shapes=None,
        output_shapes=None,
    ):
        self.layer = layer
        self.input_tensors = list(input_tensors)
        self.output_tensors = list(output_tensors)
        if input_shapes is None:
            input_shapes = [tuple(t.shape) for t in self.input_tensors]
        if output_shapes is None:
            output_shapes = [tuple(t.shape) for t in self.output_tensors]
        self.input_shapes = _one_or_list(input_shapes)
        self.output_shapes = _one_or_list(output_shapes)

    @classmethod
    def from_keras_node(cls, node):
        """Wrap a node of a Keras graph (one call of a layer)."""
        outputs = list(node.outputs)
        inputs = outputs if node.is_input else list(node.input_tensors)
        return cls(node.operation, inputs, outputs)

    def __repr__(self):
        """The layer's name and its input and output shapes."""
        return (
            f"LayerNode({self.layer.name!r}, input_shapes={self.input_shapes!r}, "
            f"output_shapes={self.output_shapes!r})"
        )


class Counter:
    """A registered counter: its function and, for as_built, how it treats time."""

    def __init__(self, function, kind=PER_STEP, passes_spikes=False):
        self.function = function
        self.kind = kind
        self.passes_spikes = passes_spikes


#: assumption -> {layer class: Counter}
REGISTRY = {assume: {} for assume in ASSUMPTIONS}


def _check_layer_class(layer_class):
    if not (
        isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)
    ):
        raise TypeError(
            f"register_layer expects a keras.layers.Layer subclass; got "
            f"{layer_class!r}."
        )


def register_layer(layer_class, *, assume=None, kind=PER_STEP, passes_spikes=False):
    """Decorator registering a counter (stats function) for ``layer_class``.

    Parameters
    ----------
    layer_class : type
        A ``keras.layers.Layer`` subclass; its subclasses use the counter too
        unless they have their own.
    assume : {"converted", "as_built"}, optional
        The registry to fill; by default both.
    kind : str
        (as_built only) How the layer treats a time axis; the default, for
        layers acting on each timestep alone, suits most user layers.
    passes_spikes : bool
        (as_built only) Whether the layer passes spikes on unchanged.

    Returns
    -------
    decorator
        Registers the decorated function, which takes a `LayerNode` and
        returns ``{"connections": int, "neurons": int, "spiking": bool}``
        (any of them), and returns it unchanged.  Registering a class again
        warns and replaces the earlier counter.
    """
    _check_layer_class(layer_class)
    targets = ASSUMPTIONS if assume is None else (assume,)
    if any(a not in ASSUMPTIONS for a in targets) or kind not in KINDS:
        raise ValueError(
            f"register_layer: `assume` must be one of {ASSUMPTIONS} or None and "
            f"`kind` one of {KINDS}; got {assume!r}, {kind!r}."
        )

    def decorator(function):
        if not callable(function):
            raise TypeError(
                f"register_layer({layer_class.__name__}) decorates a function; "
                f"got {function!r}."
            )
        if any(layer_class in REGISTRY[a] for a in targets):
            warnings.warn(
                f"Layer '{layer_class.__name__}' already registered; replacing its "
                f"counter with {getattr(function, '__name__', function)!r}.",
                stacklevel=2,
            )
        for target in targets:
            REGISTRY[target][layer_class] = Counter(function, kind, passes_spikes)
        return function

    return decorator


def find_counter(layer, assume):
    """The counter of the closest registered class of ``layer``, or None."""
    registry = REGISTRY[assume]
    for klass in type(layer).__mro__:
        if klass in registry:
            return registry[klass]
    return None


def require_counter(layer):
    """The as_built counter of ``layer``; a ValueError saying how to add one."""
    counter = find_counter(layer, AS_BUILT)
    if counter is not None:
        return counter
    name = type(layer).__name__
    nested = (
        " Nested models are not supported: build one model from their layers."
        if isinstance(layer, keras.Model)
        else ""
    )
    raise ValueError(
        f"ModelEnergy does not know layer '{layer.name}' of type {name}.{nested} "
        f"Register its statistics with\n\n"
        f"    @keras_spiking.ModelEnergy.register_layer({name})\n"
        f"    def stats(node):\n"
        f'        return {{"connections": ..., "neurons": ...}}\n\n'
        f"(node.input_shapes and node.output_shapes are one timestep's shapes)."
    )


def _count(value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    if value < 0 or value != int(value):
        return None
    return int(value)


def _checked(stats):
    """``stats`` with int counts and a bool ``spiking``; None if malformed."""
    result = {}
    for key, value in stats.items():
        if key == "spiking":
            if not isinstance(value, (bool, np.bool_)):
                return None
            result[key] = bool(value)
        else:
            result[key] = _count(value)
            if result[key] is None:
                return None
    return result


def run_counter(counter, node):
    """Call ``counter`` on ``node`` and check its result.

    Returns
    -------
    dict
        The keys the counter returned, with ``int`` counts and a ``bool``
        ``"spiking"``.

    Raises
    ------
    ValueError
        If a key is not one of ``"connections"``, ``"neurons"``, ``"spiking"``.
    TypeError
        If the result is not a dict of counts >= 0 (and a bool ``spiking``).
    """
    stats = counter.function(node)
    name = getattr(counter.function, "__name__", repr(counter.function))
    where = f"for layer '{node.layer.name}' ({type(node.layer).__name__})"
    for key in stats if isinstance(stats, dict) else ():
        if key not in STATS:
            raise ValueError(
                f"The stats function {name!r} {where} returned an invalid stat "
                f"'{key}'; valid stats: {', '.join(STATS)}."
            )
    result = _checked(stats) if isinstance(stats, dict) else None
    if result is None:
        raise TypeError(
            f"The stats function {name!r} {where} must return a dict of "
            f'{{"connections": int >= 0, "neurons": int >= 0, "spiking": bool}} '
            f"(any of them); got {stats!r}."
        )
    return result
