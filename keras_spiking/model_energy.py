r"""Estimate what a model would cost to run on CPUs, GPUs and neuromorphic chips.

``ModelEnergy(model, example_data)`` counts, for every layer, its synapses
(``connections``) and the neurons it updates, per timestep, and (from
``example_data`` run through the model) the firing rate of the spikes it
receives.  With a device's energy per synaptic operation :math:`E_s` and per
neuron update :math:`E_n`, the energy of a layer per inference of :math:`T`
timesteps is

.. math::

    E = T \left( S E_s + N E_n \right)

with :math:`N` the layer's neurons and :math:`S` its synaptic operations per
timestep:

- on a non-spiking device (``cpu``, ``gpu``, ``arm``), and on any device for
  a layer whose input is not spikes: every synapse every timestep,
  :math:`S = C`, the number of connections;
- on a spiking (event-driven) device (``loihi``, ``spinnaker``,
  ``spinnaker2``) for a layer whose input is spikes: one operation per synapse
  per input spike, :math:`S = C \, r \, dt`, with :math:`r` the mean firing
  rate of the layer's input (Hz) and :math:`dt` the timestep (s).

The input of a layer is *spikes* when it comes from a ``SpikingActivation``,
directly or through layers that pass spikes on unchanged (``Flatten``,
``Reshape``, ``Dropout``, their ``TimeDistributed`` versions, and
``TemporalAvgPool``: on a device the average is taken after the next layer,
which receives the spikes).  Model inputs are not spikes.  A
``SpikingActivation`` emits ``n / dt`` for ``n`` spikes in a step, so its mean
rate is measured as :math:`r = \mathrm{mean}(|y|)` over ``example_data``
(examples, timesteps and neurons).

**Timesteps.** Statistics are per timestep, and the whole model is assumed to
run once per timestep on the device (layers after ``TemporalAvgPool``
included).  A tensor has a time axis (axis 1, or axis 0 with
``time_major=True``) where it is the input or output of a spiking/filter layer
(``SpikingActivation``, ``Lowpass``, ``Alpha``), the input of
``TemporalAvgPool``, the input or output of ``TimeDistributed``, or the output
of ``RepeatVector`` (which repeats an input over time); layers
that act on each position independently (``Dense``, ``Activation``, ``ReLU``,
``LeakyReLU``, ``Dropout`` and registered layers) carry it through.  Their
statistics are for one timestep.  Layers that mix positions (convolutions,
pooling, ``Flatten``, ``Reshape``) must not see a time axis: wrap them in
``keras.layers.TimeDistributed``.  ``timesteps_per_inference`` is how many
timesteps one inference takes (for example the length of the time axis of the
input).

**What the layers count.**  ``Dense``: inputs x units (for every position).
``ConvND``: every (output, input) pair under the kernel, padding excluded.
Pooling: every (output, input) pair in the pooling windows; global pooling:
every input.  Neurons: ``SpikingActivation``, ``Activation``/``ReLU``/
``LeakyReLU`` and ``Dense``/``ConvND`` with a non-linear activation update one
neuron per output value; ``Lowpass`` one state per unit and ``Alpha`` two.
``InputLayer``, ``Flatten``, ``Reshape``, ``Dropout``, ``RepeatVector`` and
``TemporalAvgPool`` cost nothing.

**Shapes.**  Every tensor's shape must be fully defined apart from the batch
axis and, where ModelEnergy takes one, the time axis (``keras.Input((None,
8))`` is fine when a ``SpikingActivation`` takes axis 1 as time, not when no
layer does).

**Shared layers.**  A layer called more than once (the same instance applied
to several tensors, sharing its weights) costs its synaptic operations and
neuron updates on every call: its statistics are the sums over its calls,
each call with its own input (spikes or not) and input rate.  It still has
one entry in ``layer_stats`` and one row in ``summary`` (marked ``xN`` for
``N`` calls; its parameters counted once).

Energies are in joules.  The device constants are published estimates (see
``ModelEnergy.devices``); they ignore memory, communication and static power,
so treat the results as rough comparisons, not predictions.
"""

import inspect
import math
import numbers
import textwrap

import keras
import numpy as np

from keras_spiking.filters import Alpha, Lowpass
from keras_spiking.pooling import TemporalAvgPool
from keras_spiking.spiking_activation import SpikingActivation
from keras_spiking.temporal import TemporalLayer, dt_value

# How a layer treats a time axis.
_PER_STEP = "per_step"  # acts on each position alone: carries a time axis through
_TEMPORAL = "temporal"  # needs a time axis; keeps it if it returns sequences
_TIME_POOL = "time_pool"  # needs a time axis and removes it
_TIME_DISTRIBUTED = "time_distributed"  # needs a time axis and keeps it
_SPATIAL = "spatial"  # mixes positions: must not see a time axis
_TIME_SOURCE = "time_source"  # adds a time axis (RepeatVector)
_NEEDS_TIME = (_TEMPORAL, _TIME_POOL, _TIME_DISTRIBUTED)


class _Entry:
    def __init__(self, function, kind, passes_spikes):
        self.function = function
        self.kind = kind
        self.passes_spikes = passes_spikes


def _size(shape):
    return int(math.prod(shape))


def _nonlinear_size(activation, shape):
    """Neurons for an activation applied to ``shape``: 0 if it is linear."""
    if activation is None or activation is keras.activations.linear:
        return 0
    return _size(shape)


def _window_pairs(size, out, kernel, stride, dilation, padding):
    """(output, input) pairs of a sliding window along one axis.

    Counts the pairs where the tap lands inside the input (padding excluded),
    with TensorFlow's "same" convention (extra padding on the right).
    """
    if padding == "valid":
        left = 0
    elif padding == "same":
        left = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0) // 2
    elif padding == "causal":
        left = (kernel - 1) * dilation
    else:
        raise ValueError(f"Unknown padding {padding!r}.")
    return sum(
        1
        for o in range(out)
        for j in range(kernel)
        if 0 <= o * stride - left + j * dilation < size
    )


def _split_channels(layer, shape):
    """``(spatial shape, channels)`` of a per-example shape."""
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return tuple(shape[1:]), shape[0]
    return tuple(shape[:-1]), shape[-1]


def _windowed_connections(layer, input_shape, output_shape, kernel, strides, dilation):
    in_spatial, _ = _split_channels(layer, input_shape)
    out_spatial, _ = _split_channels(layer, output_shape)
    padding = layer.padding.lower()
    return math.prod(
        _window_pairs(n, o, k, s, d, padding)
        for n, o, k, s, d in zip(
            in_spatial, out_spatial, kernel, strides, dilation, strict=True
        )
    )


def _step_shape(tensor, temporal):
    """One example's shape for one timestep: no batch (and time) axis."""
    shape = tuple(tensor.shape)
    return shape[2:] if temporal[id(tensor)] else shape[1:]


def _dense_stats(layer, input_shape, output_shape):
    return {
        "connections": _size(input_shape) * layer.units,
        "neurons": _nonlinear_size(layer.activation, output_shape),
    }


def _conv_stats(layer, input_shape, output_shape):
    _, in_channels = _split_channels(layer, input_shape)
    pairs = _windowed_connections(
        layer,
        input_shape,
        output_shape,
        layer.kernel_size,
        layer.strides,
        layer.dilation_rate,
    )
    return {
        "connections": pairs * (in_channels // layer.groups) * layer.filters,
        "neurons": _nonlinear_size(layer.activation, output_shape),
    }


def _pooling_stats(layer, input_shape, output_shape):
    _, channels = _split_channels(layer, input_shape)
    pairs = _windowed_connections(
        layer,
        input_shape,
        output_shape,
        layer.pool_size,
        layer.strides,
        (1,) * len(layer.pool_size),
    )
    return {"connections": pairs * channels, "neurons": 0}


def _global_pooling_stats(layer, input_shape):
    return {"connections": _size(input_shape), "neurons": 0}


def _free_stats(layer):
    return {"connections": 0, "neurons": 0}


def _activation_stats(layer, output_shape):
    return {
        "connections": 0,
        "neurons": _nonlinear_size(layer.activation, output_shape),
    }


def _elementwise_neurons_stats(layer, output_shape):
    return {"connections": 0, "neurons": _size(output_shape)}


def _spiking_stats(layer):
    return {"connections": 0, "neurons": _size(layer.feature_shape)}


def _filter_stats(layer):
    return {"connections": 0, "neurons": layer.num_states * _size(layer.feature_shape)}


class ModelEnergy:
    r"""Per-layer statistics and energy estimates of a Keras model.

    See the module documentation (``keras_spiking.model_energy``) for exactly
    what is counted and how energy is computed.

    Parameters
    ----------
    model : keras.Model
        A functional or ``Sequential`` model built on ``keras.Input`` (so its
        layers have known input and output shapes).  A layer may be called
        more than once (shared weights): every call is counted.
    example_data : array or list of arrays, optional
        Inputs run through the model (``predict``) to measure the firing rate
        of every ``SpikingActivation``.  Without it, energy on spiking devices
        can be computed only for layers that do not receive spikes.

    Attributes
    ----------
    layer_stats : dict
        Layer name -> ``{"type", "output_shape", "params", "calls",
        "connections", "neurons", "spiking_input", "input_rate", "input_dt",
        "synops_per_second", "per_call"}``.  ``connections`` and ``neurons``
        are per timestep; ``input_rate`` is the mean rate (Hz) of the spikes
        the layer receives (None if its input is not spikes or was not
        measured), at the timestep ``input_dt`` of the layer(s) that emitted
        them; ``synops_per_second`` is ``connections * input_rate``.

        A layer called ``calls`` > 1 times (shared weights) has one entry:
        ``connections``, ``neurons`` and ``synops_per_second`` are sums over
        its calls; ``params`` counts the shared weights once;
        ``output_shape`` is that of the first call; ``spiking_input`` is True
        if any call receives spikes, and ``input_rate`` and ``input_dt`` are
        means over the spikes its calls receive (weighted by their neurons).
        ``per_call`` lists each call's ``{"output_shape", "connections",
        "neurons", "spiking_input", "input_rate", "input_dt",
        "synops_per_second"}`` in the order the calls were made (one entry
        for a layer called once); energies are computed call by call.

    Examples
    --------
    >>> energy = keras_spiking.ModelEnergy(model, example_data=x_test[:100])
    >>> energy.summary(columns=("name", "connections", "neurons",
    ...                         "energy_cpu", "energy_loihi"),
    ...                timesteps_per_inference=10)
    >>> energy.total_energy("loihi", timesteps_per_inference=10)
    """

    #: Devices: name -> ``{"energy_per_synop", "energy_per_neuron", "spiking"}``
    #: (joules).  ``cpu`` (Intel i7-4960X), ``gpu`` (Nvidia GTX Titan Black),
    #: ``arm`` (ARM Cortex-A): Degnan, Marr and Hasler, IEEE TVLSI 24(1),
    #: 2015.  ``loihi``: Davies et al., IEEE Micro 38(1), 2018 (synaptic
    #: operation 23.6 pJ plus synaptic update 3.5 pJ).  ``spinnaker``,
    #: ``spinnaker2``: Höppner et al., IEEE TCAS-I 66(8), 2019.
    devices = {
        "cpu": {
            "energy_per_synop": 8.6e-9,
            "energy_per_neuron": 8.6e-9,
            "spiking": False,
        },
        "gpu": {
            "energy_per_synop": 0.3e-9,
            "energy_per_neuron": 0.3e-9,
            "spiking": False,
        },
        "arm": {
            "energy_per_synop": 0.9e-9,
            "energy_per_neuron": 0.9e-9,
            "spiking": False,
        },
        "loihi": {
            "energy_per_synop": (23.6 + 3.5) * 1e-12,
            "energy_per_neuron": 81e-12,
            "spiking": True,
        },
        "spinnaker": {
            "energy_per_synop": 13.3e-9,
            "energy_per_neuron": 26e-9,
            "spiking": True,
        },
        "spinnaker2": {
            "energy_per_synop": 450e-12,
            "energy_per_neuron": 2.19e-9,
            "spiking": True,
        },
    }

    _layers = {}

    # ------------------------------------------------------- registration --

    @classmethod
    def register_device(cls, name, energy_per_synop, energy_per_neuron, spiking):
        """Add (or replace) a device.

        Parameters
        ----------
        name : str
            Device name, used in ``layer_energy``, ``total_energy`` and the
            ``energy_<name>`` summary column.
        energy_per_synop, energy_per_neuron : float
            Joules per synaptic operation and per neuron update.
        spiking : bool
            Whether the device is event-driven (synapses cost only per input
            spike) or not (every synapse costs every timestep).
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"Device names must be non-empty strings; got {name!r}.")
        for label, value in (
            ("energy_per_synop", energy_per_synop),
            ("energy_per_neuron", energy_per_neuron),
        ):
            if (
                not isinstance(value, numbers.Real)
                or isinstance(value, bool)
                or not value >= 0
            ):
                raise ValueError(
                    f"Device '{name}' expects `{label}` to be a number >= 0 "
                    f"(joules); got {value!r}."
                )
        if not isinstance(spiking, bool):
            raise TypeError(
                f"Device '{name}' expects `spiking` to be a bool; got {spiking!r}."
            )
        cls.devices[name] = {
            "energy_per_synop": float(energy_per_synop),
            "energy_per_neuron": float(energy_per_neuron),
            "spiking": spiking,
        }

    @classmethod
    def register_layer(cls, layer_class):
        """Decorator adding statistics for a layer type.

        The decorated function receives the layer and, if its signature asks
        for them, the keyword arguments ``input_shape`` and ``output_shape``:
        one example's shape for one timestep (no batch or time axis; a list
        of shapes for several inputs or outputs).  It returns
        ``{"connections": int, "neurons": int}``, per timestep.  The layer is
        assumed to act on each timestep separately (like ``Dense``); its
        output is not treated as spikes.  Subclasses of ``layer_class`` use
        the same function unless they have their own.

        Example::

            @keras_spiking.ModelEnergy.register_layer(MyLayer)
            def my_layer_stats(layer, input_shape, output_shape):
                return {"connections": math.prod(input_shape) * layer.units,
                        "neurons": math.prod(output_shape)}
        """
        cls._check_layer_class(layer_class)

        def decorator(function):
            if not callable(function):
                raise TypeError(
                    f"register_layer({layer_class.__name__}) decorates a "
                    f"function; got {function!r}."
                )
            cls._layers[layer_class] = _Entry(function, _PER_STEP, False)
            return function

        return decorator

    @staticmethod
    def _check_layer_class(layer_class):
        if not (
            isinstance(layer_class, type)
            and issubclass(layer_class, keras.layers.Layer)
        ):
            raise TypeError(
                f"register_layer expects a keras.layers.Layer subclass; got "
                f"{layer_class!r}."
            )

    @classmethod
    def _register(cls, layer_classes, function, kind, passes_spikes=False):
        for layer_class in layer_classes:
            cls._layers[layer_class] = _Entry(function, kind, passes_spikes)

    @classmethod
    def _entry(cls, layer):
        for klass in type(layer).__mro__:
            if klass in cls._layers:
                return cls._layers[klass]
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
            f"    def stats(layer, input_shape, output_shape):\n"
            f'        return {{"connections": ..., "neurons": ...}}\n\n'
            f"(per timestep; the shapes exclude the batch and time axes)."
        )

    # ----------------------------------------------------------- analysis --

    def __init__(self, model, example_data=None):
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"ModelEnergy expects a keras.Model; got {model!r} of type "
                f"{type(model).__name__}."
            )
        self.model = model
        self.layer_stats = {}
        # (layer name, call index) -> [((SpikingActivation name, call index),
        # SpikingActivation layer, neurons per step)] of a call's spike inputs.
        self._sources = {}
        # ((SpikingActivation name, call index), output) of every such call.
        self._spike_outputs = []
        self._analyse()
        self.rates = {}
        self._call_rates = {}
        if example_data is not None:
            self._measure_rates(example_data)
        self._set_rates()

    def _not_functional(self, detail):
        return ValueError(
            f"ModelEnergy needs a functional or Sequential model built on "
            f"keras.Input; model '{self.model.name}' {detail}."
        )

    def _calls(self):
        """Every call of the model's layers, each tensor made before it is used.

        Returns ``(layer, call index, inputs, outputs)`` for each node of the
        model's graph whose operation is one of its layers; the call index
        counts the calls of that layer in this model, in the order they were
        made.
        """
        layers = {}
        for layer in self.model.layers:
            layers.setdefault(id(layer), layer)
        try:
            inputs = keras.tree.flatten(self.model.inputs)
            outputs = keras.tree.flatten(self.model.outputs)
        except (AttributeError, ValueError) as error:
            raise self._not_functional(
                f"has no symbolic inputs and outputs ({error})"
            ) from error

        def parent(tensor):
            history = getattr(tensor, "_keras_history", None)
            if history is None:
                return None
            operation, node_index = history[0], history[1]
            return operation._inbound_nodes[node_index]

        input_ids = {id(t) for t in inputs}
        order, expanded = [], set()
        roots = [parent(t) for t in inputs if parent(t) is not None]
        roots = [n for n in roots if n.is_input] + [parent(t) for t in outputs]
        for root in roots:
            if root is None:
                raise self._not_functional("has an output made outside Keras")
            stack = [(root, False)]
            while stack:
                node, finished = stack.pop()
                if finished:
                    order.append(node)
                    continue
                if id(node) in expanded:
                    continue
                expanded.add(id(node))
                stack.append((node, True))
                for tensor in reversed(node.input_tensors):
                    if id(tensor) in input_ids:
                        continue
                    source = parent(tensor)
                    if source is not None and id(source) not in expanded:
                        stack.append((source, False))

        nodes = [node for node in order if id(node.operation) in layers]
        index = {id(node): node.operation._inbound_nodes.index(node) for node in nodes}
        calls = {}
        for node in sorted(nodes, key=lambda n: index[id(n)]):
            calls.setdefault(id(node.operation), []).append(node)
        call_index = {
            id(node): i
            for layer_nodes in calls.values()
            for i, node in enumerate(layer_nodes)
        }
        missing = [layer.name for key, layer in layers.items() if key not in calls]
        if missing:
            raise self._not_functional(
                f"has layers that are not called in its graph: {', '.join(missing)}"
            )
        return [
            (
                node.operation,
                call_index[id(node)],
                [] if node.is_input else list(node.input_tensors),
                list(node.outputs),
            )
            for node in nodes
        ]

    @staticmethod
    def _check_defined(layer, tensors, temporal, role):
        """Raise if a shape is undefined apart from the batch (and time) axis."""
        for tensor in tensors:
            if None in _step_shape(tensor, temporal):
                axes = (
                    "batch and time axes (axes 0 and 1)"
                    if temporal[id(tensor)]
                    else "batch axis (axis 0); ModelEnergy found no time axis on it"
                )
                raise ValueError(
                    f"Layer '{layer.name}' ({type(layer).__name__}) has {role} "
                    f"shape {tuple(tensor.shape)}, undefined apart from the "
                    f"{axes}.  ModelEnergy expects a fully defined shape apart "
                    f"from the batch and the time axis: give keras.Input the "
                    f"full shape of the features (an undefined time axis is "
                    f"fine where a spiking or filter layer takes it as time)."
                )

    def _analyse(self):
        calls = self._calls()
        entries = {}
        for layer, _, _, _ in calls:
            if id(layer) not in entries:
                entries[id(layer)] = self._entry(layer)

        def main_inputs(layer, inputs):
            # A temporal layer's extra inputs are initial states.
            return inputs[:1] if isinstance(layer, TemporalLayer) else inputs

        # Which tensors are consumed as having a time axis (backwards).
        demanded = set()
        for layer, _, inputs, outputs in reversed(calls):
            kind = entries[id(layer)].kind
            if kind in _NEEDS_TIME or (
                kind == _PER_STEP and any(id(t) in demanded for t in outputs)
            ):
                demanded.update(id(t) for t in main_inputs(layer, inputs))

        # Which tensors have a time axis, and which carry spikes (forwards).
        temporal = {id(t): id(t) in demanded for t in self.model.inputs}
        producer = {}
        spikes = {}  # id(tensor) -> [(source key, SpikingActivation, size)]
        per_call = {}  # layer name -> [statistics of each call]
        for layer, index, inputs, outputs in calls:
            entry = entries[id(layer)]
            data = main_inputs(layer, inputs)
            flags = [temporal.get(id(t), id(t) in demanded) for t in data]
            if isinstance(layer, keras.layers.InputLayer):
                out_flags = [id(t) in demanded for t in outputs]
            elif entry.kind in _NEEDS_TIME:
                if not all(flags):
                    source = producer.get(id(data[0]))
                    origin = (
                        f"'{source.name}' ({type(source).__name__})"
                        if source is not None
                        else "a model input"
                    )
                    raise ValueError(
                        f"Layer '{layer.name}' ({type(layer).__name__}) needs a "
                        f"time axis on its input, but its input comes from "
                        f"{origin}, which has none for ModelEnergy (it acts "
                        f"across positions, or removed the time axis).  Apply "
                        f"per-timestep layers with keras.layers.TimeDistributed."
                    )
                if entry.kind == _TEMPORAL:
                    out_flags = [layer.return_sequences] + [False] * (len(outputs) - 1)
                else:
                    out_flags = [entry.kind == _TIME_DISTRIBUTED] * len(outputs)
            elif entry.kind == _PER_STEP:
                out_flags = [any(flags)] * len(outputs)
            elif entry.kind == _TIME_SOURCE:
                out_flags = [True] * len(outputs)
            else:  # _SPATIAL
                if any(flags):
                    raise ValueError(
                        f"Layer '{layer.name}' ({type(layer).__name__}) would "
                        f"act across the time axis of its input (shape "
                        f"{tuple(data[0].shape)}), but ModelEnergy counts "
                        f"statistics per timestep: wrap it in "
                        f"keras.layers.TimeDistributed."
                    )
                out_flags = [False] * len(outputs)
            for tensor, flag in zip(outputs, out_flags, strict=True):
                temporal[id(tensor)] = flag
                producer[id(tensor)] = layer
            if not isinstance(layer, keras.layers.InputLayer):
                # (An input layer's output is checked where it is used.)
                self._check_defined(layer, inputs, temporal, "input")
                self._check_defined(layer, outputs, temporal, "output")

            sources = [spikes.get(id(t)) for t in data]
            spiking_input = bool(data) and all(s is not None for s in sources)
            if isinstance(layer, SpikingActivation):
                spikes[id(outputs[0])] = [
                    ((layer.name, index), layer, _size(layer.feature_shape))
                ]
            elif spiking_input and self._passes_spikes(layer, entry):
                spikes[id(outputs[0])] = [x for s in sources for x in s]

            in_shapes = [_step_shape(t, temporal) for t in inputs]
            out_shapes = [_step_shape(t, temporal) for t in outputs]
            stats = self._call_stats(layer, entry, in_shapes, out_shapes)
            output_shape = [tuple(t.shape) for t in outputs]
            per_call.setdefault(layer.name, []).append(
                {
                    "output_shape": output_shape[0]
                    if len(output_shape) == 1
                    else output_shape,
                    "connections": stats["connections"],
                    "neurons": stats["neurons"],
                    "spiking_input": spiking_input,
                    "input_rate": None,
                    "input_dt": None,
                    "synops_per_second": None,
                }
            )
            if spiking_input:
                self._sources[layer.name, index] = [x for s in sources for x in s]
            if isinstance(layer, SpikingActivation):
                self._spike_outputs.append(((layer.name, index), outputs[0]))

        # One entry per layer, in the order of ``model.layers``.
        for layer in self.model.layers:
            if layer.name in self.layer_stats:
                continue
            layer_calls = per_call[layer.name]
            self.layer_stats[layer.name] = {
                "type": self._type_name(layer),
                "output_shape": layer_calls[0]["output_shape"],
                "params": int(layer.count_params()),
                "calls": len(layer_calls),
                "connections": sum(c["connections"] for c in layer_calls),
                "neurons": sum(c["neurons"] for c in layer_calls),
                "spiking_input": any(c["spiking_input"] for c in layer_calls),
                "input_rate": None,
                "input_dt": None,
                "synops_per_second": None,
                "per_call": layer_calls,
            }

    @staticmethod
    def _type_name(layer):
        name = type(layer).__name__
        if isinstance(layer, keras.layers.TimeDistributed):
            name += f"({type(layer.layer).__name__})"
        return name

    def _passes_spikes(self, layer, entry):
        if isinstance(layer, keras.layers.TimeDistributed):
            return self._entry(layer.layer).passes_spikes
        return entry.passes_spikes

    def _call_stats(self, layer, entry, in_shapes, out_shapes):
        if isinstance(layer, keras.layers.TimeDistributed):
            inner = layer.layer
            inner_entry = self._entry(inner)
            if inner_entry.kind in _NEEDS_TIME:
                raise ValueError(
                    f"Layer '{layer.name}' wraps a {type(inner).__name__} in "
                    f"TimeDistributed; ModelEnergy supports TimeDistributed "
                    f"around per-timestep layers only."
                )
            return self._call_stats(inner, inner_entry, in_shapes, out_shapes)
        kwargs = {
            "input_shape": in_shapes[0] if len(in_shapes) == 1 else in_shapes,
            "output_shape": out_shapes[0] if len(out_shapes) == 1 else out_shapes,
        }
        parameters = inspect.signature(entry.function).parameters.values()
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            names = {p.name for p in parameters}
            kwargs = {k: v for k, v in kwargs.items() if k in names}
        stats = entry.function(layer, **kwargs)
        if not (
            isinstance(stats, dict)
            and all(
                isinstance(stats.get(k), (int, np.integer))
                and not isinstance(stats.get(k), bool)
                and stats[k] >= 0
                for k in ("connections", "neurons")
            )
        ):
            raise TypeError(
                f"The statistics function {entry.function.__name__!r} for layer "
                f"'{layer.name}' ({type(layer).__name__}) must return "
                f'{{"connections": int >= 0, "neurons": int >= 0}}; got '
                f"{stats!r}."
            )
        return {
            "connections": int(stats["connections"]),
            "neurons": int(stats["neurons"]),
        }

    def _measure_rates(self, example_data):
        if not self._spike_outputs:
            return
        outputs = [tensor for _, tensor in self._spike_outputs]
        probe = keras.Model(self.model.inputs, outputs)
        values = probe.predict(example_data, verbose=0)
        if len(outputs) == 1:
            values = [values]
        for (key, _), value in zip(self._spike_outputs, values, strict=True):
            self._call_rates[key] = float(np.mean(np.abs(value)))
        # A layer's rate: the mean over its calls (of the same size).
        by_layer = {}
        for (name, _), rate in self._call_rates.items():
            by_layer.setdefault(name, []).append(rate)
        self.rates = {name: float(np.mean(r)) for name, r in by_layer.items()}

    @staticmethod
    def _dt(layer):
        return dt_value(layer.dt)

    def _input_rate(self, sources):
        """Timestep and rate (None if not measured) of some spike sources.

        Both are means over the sources, weighted by their neurons.
        """
        total = sum(n for _, _, n in sources)
        dt = sum(self._dt(layer) * n for _, layer, n in sources) / total
        if not all(key in self._call_rates for key, _, _ in sources):
            return dt, None
        return dt, sum(self._call_rates[key] * n for key, _, n in sources) / total

    def _set_rates(self):
        for name, stats in self.layer_stats.items():
            layer_sources, synops = [], 0.0
            for index, call in enumerate(stats["per_call"]):
                sources = self._sources.get((name, index))
                if not sources:
                    continue
                layer_sources += sources
                call["input_dt"], rate = self._input_rate(sources)
                if rate is None:
                    synops = None
                else:
                    call["input_rate"] = rate
                    call["synops_per_second"] = call["connections"] * rate
                    if synops is not None:
                        synops += call["synops_per_second"]
            if layer_sources:
                stats["input_dt"], stats["input_rate"] = self._input_rate(layer_sources)
                stats["synops_per_second"] = synops

    # ------------------------------------------------------------- energy --

    def _device(self, device):
        if device not in self.devices:
            raise ValueError(
                f"Unknown device {device!r}; known devices: "
                f"{', '.join(sorted(self.devices))} (add one with "
                f"ModelEnergy.register_device)."
            )
        return self.devices[device]

    def _layer_name(self, layer):
        name = layer.name if isinstance(layer, keras.layers.Layer) else layer
        if name not in self.layer_stats:
            raise ValueError(
                f"Model '{self.model.name}' has no layer {name!r}; its layers: "
                f"{', '.join(self.layer_stats)}."
            )
        return name

    @staticmethod
    def _check_run(timesteps_per_inference, dt):
        if (
            not isinstance(timesteps_per_inference, (int, np.integer))
            or isinstance(timesteps_per_inference, bool)
            or timesteps_per_inference < 1
        ):
            raise ValueError(
                f"`timesteps_per_inference` must be an int >= 1; got "
                f"{timesteps_per_inference!r}."
            )
        if dt is not None and not (isinstance(dt, numbers.Real) and dt > 0):
            raise ValueError(
                f"`dt` must be a positive number of seconds or None; got {dt!r}."
            )

    def layer_energy(self, layer, device, timesteps_per_inference=1, dt=None):
        """Energy (J) of one layer for one inference on ``device``.

        Parameters
        ----------
        layer : keras.layers.Layer or str
            A layer of the model, or its name.
        device : str
            A key of ``ModelEnergy.devices``.
        timesteps_per_inference : int
            Timesteps one inference takes.
        dt : float, optional
            Timestep (s) of the device, which turns input rates into spikes
            per timestep on spiking devices; by default the ``dt`` of the
            ``SpikingActivation`` layer(s) that emit the spikes.
        """
        self._check_run(timesteps_per_inference, dt)
        name = self._layer_name(layer)
        spec = self._device(device)
        energy = 0.0
        # Each call of a shared layer has its own input (spikes or not).
        for call in self.layer_stats[name]["per_call"]:
            synops = call["connections"]
            if spec["spiking"] and call["spiking_input"] and synops:
                if call["input_rate"] is None:
                    raise ValueError(
                        f"Layer '{name}' receives spikes, so its energy on "
                        f"spiking device '{device}' depends on their rate: "
                        f"create ModelEnergy with example_data to measure it."
                    )
                synops = synops * call["input_rate"] * (dt if dt else call["input_dt"])
            energy += (
                synops * spec["energy_per_synop"]
                + call["neurons"] * spec["energy_per_neuron"]
            )
        return timesteps_per_inference * energy

    def total_energy(self, device, timesteps_per_inference=1, dt=None):
        """Energy (J) of the whole model for one inference on ``device``.

        The sum of ``layer_energy`` over the layers; same parameters.
        """
        return sum(
            self.layer_energy(name, device, timesteps_per_inference, dt)
            for name in self.layer_stats
        )

    # ------------------------------------------------------------ summary --

    _HEADERS = {
        "name": "Layer (type)",
        "output_shape": "Output shape",
        "params": "Param #",
        "connections": "Connections",
        "neurons": "Neurons",
        "rate": "Input rate (Hz)",
        "synops": "Synops/s",
    }

    def summary(
        self,
        columns=(
            "name",
            "output_shape",
            "params",
            "connections",
            "neurons",
            "energy_cpu",
            "energy_loihi",
        ),
        timesteps_per_inference=1,
        dt=None,
        line_length=None,
        print_fn=None,
    ):
        """Print a table of the statistics, like ``model.summary()``.

        Parameters
        ----------
        columns : sequence of str
            Any of ``"name"`` (layer and type), ``"output_shape"``,
            ``"params"``, ``"connections"``, ``"neurons"`` (per timestep),
            ``"rate"`` (input spike rate, Hz), ``"synops"`` (synaptic
            operations per second on a spiking device), and
            ``"energy_<device>"`` (J per inference) for any known device.
            Numeric columns get a total.  "-" marks a rate of an input that
            is not spikes, "n/a" a rate that was not measured (no
            ``example_data``).  A layer called more than once has one row
            with the sums over its calls, its name followed by ``xN`` for
            ``N`` calls, and output shape "multiple" if its calls' output
            shapes differ.
        timesteps_per_inference, dt
            As for ``total_energy``.
        line_length : int, optional
            Total width of the table; wider columns are truncated to fit.
        print_fn : callable, optional
            Called with the table's text (default ``print``).
        """
        self._check_run(timesteps_per_inference, dt)
        columns = list(columns)
        for column in columns:
            if column not in self._HEADERS and not (
                column.startswith("energy_") and column[7:] in self.devices
            ):
                raise ValueError(
                    f"Unknown summary column {column!r}; use any of "
                    f"{', '.join(self._HEADERS)} or energy_<device> with a "
                    f"device among {', '.join(sorted(self.devices))}."
                )
        headers = [self._HEADERS.get(c) or f"J/inf ({c[7:]})" for c in columns]
        rows, totals = [], {}
        missing_rate = False
        for name, stats in self.layer_stats.items():
            row = []
            for column in columns:
                if column == "name":
                    calls = f" x{stats['calls']}" if stats["calls"] > 1 else ""
                    row.append(f"{name} ({stats['type']}){calls}")
                elif column == "output_shape":
                    shapes = {str(c["output_shape"]) for c in stats["per_call"]}
                    row.append(shapes.pop() if len(shapes) == 1 else "multiple")
                elif column in ("params", "connections", "neurons"):
                    row.append(f"{stats[column]:,}")
                    totals[column] = totals.get(column, 0) + stats[column]
                elif column in ("rate", "synops"):
                    key = "input_rate" if column == "rate" else "synops_per_second"
                    if not stats["spiking_input"]:
                        row.append("-")
                    elif stats[key] is None:
                        row.append("n/a")
                        missing_rate = True
                    else:
                        row.append(f"{stats[key]:.3g}")
                    if column == "synops" and stats[key] is not None:
                        totals[column] = totals.get(column, 0) + stats[key]
                else:
                    try:
                        energy = self.layer_energy(
                            name, column[7:], timesteps_per_inference, dt
                        )
                    except ValueError:
                        row.append("n/a")
                        totals[column] = None
                        missing_rate = True
                    else:
                        row.append(f"{energy:.3g}")
                        if totals.get(column, 0) is not None:
                            totals[column] = totals.get(column, 0) + energy
            rows.append(row)

        total_row = []
        for column in columns:
            if column == "name":
                total_row.append("Total")
            elif column in ("params", "connections", "neurons"):
                total_row.append(f"{totals[column]:,}")
            elif column == "synops":
                total_row.append(f"{totals.get(column, 0):.3g}")
            elif column.startswith("energy_"):
                value = totals.get(column, 0)
                total_row.append("n/a" if value is None else f"{value:.3g}")
            else:
                total_row.append("")

        right = [c not in ("name", "output_shape") for c in columns]
        widths = [
            max(len(r[i]) for r in [headers, total_row, *rows])
            for i in range(len(columns))
        ]
        gap = 2
        if line_length is not None:
            # Shrink the text columns first, then the widest of all.
            text_columns = [i for i, r in enumerate(right) if not r]
            while sum(widths) + gap * (len(widths) - 1) > line_length:
                shrinkable = [i for i in text_columns if widths[i] > 12] or [
                    i for i in range(len(widths)) if widths[i] > 4
                ]
                if not shrinkable:
                    break
                widest = max(shrinkable, key=widths.__getitem__)
                widths[widest] -= 1
            extra = line_length - (sum(widths) + gap * (len(widths) - 1))
            widths[0] += max(extra, 0)
        width = sum(widths) + gap * (len(widths) - 1)

        def line(cells):
            parts = []
            for cell, w, r in zip(cells, widths, right, strict=True):
                if len(cell) > w:
                    cell = cell[: max(w - 1, 0)] + "~"
                parts.append(cell.rjust(w) if r else cell.ljust(w))
            return (" " * gap).join(parts).rstrip()

        step = "timestep" if timesteps_per_inference == 1 else "timesteps"
        dt_text = "" if dt is None else f", dt = {dt:g} s"
        caption = (
            f"(per inference: {timesteps_per_inference} {step}{dt_text}; "
            f"connections and neurons per timestep)"
        )
        text = [
            f'Model energy: "{self.model.name}"',
            *textwrap.wrap(caption, width),
            "=" * width,
            line(headers),
            "=" * width,
            *[line(row) for row in rows],
            "-" * width,
            line(total_row),
            "=" * width,
        ]
        if missing_rate:
            text += textwrap.wrap(
                "n/a: spike rates not measured; pass example_data to ModelEnergy.",
                width,
            )
        (print_fn or print)("\n".join(text))


ModelEnergy._register([keras.layers.InputLayer], _free_stats, _PER_STEP)
ModelEnergy._register([keras.layers.Dense], _dense_stats, _PER_STEP)
ModelEnergy._register(
    [keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D],
    _conv_stats,
    _SPATIAL,
)
ModelEnergy._register(
    [
        keras.layers.AveragePooling1D,
        keras.layers.AveragePooling2D,
        keras.layers.AveragePooling3D,
        keras.layers.MaxPooling1D,
        keras.layers.MaxPooling2D,
        keras.layers.MaxPooling3D,
    ],
    _pooling_stats,
    _SPATIAL,
)
ModelEnergy._register(
    [
        keras.layers.GlobalAveragePooling1D,
        keras.layers.GlobalAveragePooling2D,
        keras.layers.GlobalAveragePooling3D,
        keras.layers.GlobalMaxPooling1D,
        keras.layers.GlobalMaxPooling2D,
        keras.layers.GlobalMaxPooling3D,
    ],
    _global_pooling_stats,
    _SPATIAL,
)
ModelEnergy._register(
    [keras.layers.Flatten, keras.layers.Reshape], _free_stats, _SPATIAL, True
)
ModelEnergy._register([keras.layers.Dropout], _free_stats, _PER_STEP, True)
ModelEnergy._register([keras.layers.RepeatVector], _free_stats, _TIME_SOURCE)
ModelEnergy._register([keras.layers.Activation], _activation_stats, _PER_STEP)
ModelEnergy._register(
    [keras.layers.ReLU, keras.layers.LeakyReLU], _elementwise_neurons_stats, _PER_STEP
)
ModelEnergy._register([SpikingActivation], _spiking_stats, _TEMPORAL)
ModelEnergy._register([Lowpass, Alpha], _filter_stats, _TEMPORAL)
ModelEnergy._register([TemporalAvgPool], _free_stats, _TIME_POOL, True)
ModelEnergy._register([keras.layers.TimeDistributed], _free_stats, _TIME_DISTRIBUTED)
