r"""The time-axis and spike analysis of ``assume="as_built"``.

**Time axis.**  Statistics are per timestep, the whole model running once per
timestep.  A tensor has a time axis (axis 1, or axis 0 with
``time_major=True``) where it is the input or output of a spiking/filter
layer (``SpikingActivation``, ``LIF``, ``CubaLIF``, ``ALIF``, ``Lowpass``,
``Alpha``), the input of
``TemporalAvgPool``, the input or output of ``TimeDistributed``, or the
output of ``RepeatVector``; layers acting on each position alone (``Dense``,
activations, ``Dropout``, registered layers) carry it through.  Layers that
mix positions (convolutions, pooling, ``Flatten``, ``Reshape``) must not see
one (wrap them in ``TimeDistributed``).  Shapes must be defined apart from
the batch axis and, where taken as such, the time axis.

**Spikes.**  A tensor is spikes where it comes from a spiking layer
(``SpikingActivation``, ``LIF``, ``CubaLIF``, ``ALIF``: outputs of height
``1 / dt``), directly or through layers passing spikes on (``Flatten``,
``Reshape``, ``Dropout``, their ``TimeDistributed`` forms,
``TemporalAvgPool``).  A call receives spikes when all its inputs are
spikes.  A LIF layer with ``recurrent=True`` receives its own spikes: the
connections of its recurrent kernel are priced at its own rate.
"""

import math

import keras

from keras_spiking.activity import has_recurrent_spikes, is_spiking_layer
from keras_spiking.model_energy.counters import (
    NEEDS_TIME,
    PER_STEP,
    TEMPORAL,
    TIME_DISTRIBUTED,
    TIME_SOURCE,
    LayerNode,
    require_counter,
    run_counter,
)
from keras_spiking.temporal import TemporalLayer


def main_inputs(layer, inputs):
    """A call's data inputs (a temporal layer's extra inputs are states)."""
    return inputs[:1] if isinstance(layer, TemporalLayer) else inputs


def _demanded(calls, counters):
    """Ids of the tensors consumed as having a time axis (walking backwards)."""
    demanded = set()
    for call in reversed(calls):
        kind = counters[id(call.layer)].kind
        if kind in NEEDS_TIME or (
            kind == PER_STEP and any(id(t) in demanded for t in call.outputs)
        ):
            demanded.update(id(t) for t in main_inputs(call.layer, call.inputs))
    return demanded


def _no_time_error(call, producer, data):
    source = producer.get(id(data[0]))
    origin = (
        f"'{source.name}' ({type(source).__name__})"
        if source is not None
        else "a model input"
    )
    return ValueError(
        f"Layer '{call.layer.name}' ({type(call.layer).__name__}) needs a time "
        f"axis on its input, but its input comes from {origin}, which has none "
        f"for ModelEnergy (it acts across positions, or removed the time axis).  "
        f"Apply per-timestep layers with keras.layers.TimeDistributed."
    )


def _output_flags(call, kind, flags, demanded, producer):
    """Which outputs of ``call`` have a time axis, given its inputs' ``flags``."""
    layer, outputs = call.layer, call.outputs
    data = main_inputs(layer, call.inputs)
    if isinstance(layer, keras.layers.InputLayer):
        return [id(t) in demanded for t in outputs]
    if kind in NEEDS_TIME:
        if not all(flags):
            raise _no_time_error(call, producer, data)
        if kind == TEMPORAL:
            return [layer.return_sequences] + [False] * (len(outputs) - 1)
        return [kind == TIME_DISTRIBUTED] * len(outputs)
    if kind == PER_STEP:
        return [any(flags)] * len(outputs)
    if kind == TIME_SOURCE:
        return [True] * len(outputs)
    if any(flags):  # SPATIAL
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}) would act across the "
            f"time axis of its input (shape {tuple(data[0].shape)}), but "
            f"ModelEnergy counts statistics per timestep: wrap it in "
            f"keras.layers.TimeDistributed."
        )
    return [False] * len(outputs)


def step_shape(tensor, temporal):
    """A tensor's shape for one timestep: batch axis kept, time axis removed."""
    shape = tuple(tensor.shape)
    return shape[:1] + shape[2:] if temporal[id(tensor)] else shape


def _check_defined(layer, tensors, temporal, role):
    """Raise if a shape is undefined apart from the batch (and time) axis."""
    for tensor in tensors:
        if None in step_shape(tensor, temporal)[1:]:
            axes = (
                "batch and time axes (axes 0 and 1)"
                if temporal[id(tensor)]
                else "batch axis (axis 0); ModelEnergy found no time axis on it"
            )
            raise ValueError(
                f"Layer '{layer.name}' ({type(layer).__name__}) has {role} shape "
                f"{tuple(tensor.shape)}, undefined apart from the {axes}.  "
                f"ModelEnergy expects a fully defined shape apart from the batch "
                f"and the time axis: give keras.Input the full shape of the "
                f"features (an undefined time axis is fine where a spiking or "
                f"filter layer takes it as time)."
            )


def passes_spikes(layer, counter):
    """Whether ``layer`` (its counter ``counter``) passes spikes on unchanged."""
    if isinstance(layer, keras.layers.TimeDistributed):
        return require_counter(layer.layer).passes_spikes
    return counter.passes_spikes


def _spike_sources(call, counter, spikes):
    """The spike sources of a call's inputs (None unless all are spikes)."""
    sources = [spikes.get(id(t)) for t in main_inputs(call.layer, call.inputs)]
    if not sources or any(s is None for s in sources):
        return None
    return [x for s in sources for x in s]


class Analysis:
    """The as_built analysis of a model's calls.

    Attributes
    ----------
    stats : dict
        ``Call.key`` -> the call's counts (``connections``, ``neurons``,
        ``spiking``), its ``output_shape`` and ``spiking_input``.
    sources : dict
        ``Call.key`` of a call receiving spikes -> ``[(source key,
        spiking layer, neurons per step)]``.
    spike_outputs : list
        ``(Call.key, output tensor)`` of every spiking layer's call.
    """

    def __init__(self, model, calls):
        self.stats, self.sources, self.spike_outputs = {}, {}, []
        counters = {}
        for call in calls:
            counters.setdefault(id(call.layer), require_counter(call.layer))
        demanded = _demanded(calls, counters)
        temporal = {id(t): id(t) in demanded for t in model.inputs}
        producer, spikes = {}, {}
        for call in calls:
            counter = counters[id(call.layer)]
            data = main_inputs(call.layer, call.inputs)
            flags = [temporal.get(id(t), id(t) in demanded) for t in data]
            out_flags = _output_flags(call, counter.kind, flags, demanded, producer)
            for tensor, flag in zip(call.outputs, out_flags, strict=True):
                temporal[id(tensor)], producer[id(tensor)] = flag, call.layer
            if not isinstance(call.layer, keras.layers.InputLayer):
                # (An input layer's output is checked where it is used.)
                _check_defined(call.layer, call.inputs, temporal, "input")
                _check_defined(call.layer, call.outputs, temporal, "output")
            self._record(call, counter, temporal, spikes)

    def _record(self, call, counter, temporal, spikes):
        sources = _spike_sources(call, counter, spikes)
        layer = call.layer
        if is_spiking_layer(layer):
            size = int(math.prod(layer.feature_shape))
            spikes[id(call.outputs[0])] = [(call.key, layer, size)]
            self.spike_outputs.append((call.key, call.outputs[0]))
            if has_recurrent_spikes(layer):
                # its only connections are the recurrent kernel's: own spikes
                sources = [(call.key, layer, size)]
        elif sources is not None and passes_spikes(layer, counter):
            spikes[id(call.outputs[0])] = sources
        if sources is not None:
            self.sources[call.key] = sources
        inputs = call.outputs if not call.inputs else call.inputs
        node = LayerNode(
            layer,
            inputs,
            call.outputs,
            [step_shape(t, temporal) for t in inputs],
            [step_shape(t, temporal) for t in call.outputs],
        )
        stats = {"connections": 0, "neurons": 0, "spiking": True}
        stats.update(run_counter(counter, node))
        shapes = [tuple(t.shape) for t in call.outputs]
        stats["output_shape"] = shapes[0] if len(shapes) == 1 else shapes
        stats["spiking_input"] = sources is not None
        self.stats[call.key] = stats
