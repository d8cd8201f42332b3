r"""Spike counts, firing rates and synaptic operations of a spiking model.

``measure_activity(model, x)`` runs a model with spiking layers on ``x`` and
reports, per spiking layer, its spikes and rates, and per layer fed by spikes,
the synaptic operations (synops) the spikes cause.  ``ActivityMonitor`` logs
per-layer rates during ``fit``/``evaluate``.

The spiking layers are ``SpikingActivation`` and the leaky integrate-and-fire
layers ``LIF``, ``CubaLIF`` and ``ALIF``: each outputs
spikes of height ``1 / dt``, so a step's value ``n / dt`` is ``n`` spikes.

Synaptic-operation convention
-----------------------------
A synaptic operation is one spike arriving over one existing connection: a
step in which an input neuron emits ``n`` spikes (``|n|`` for negative ones)
counts ``n`` times for each connection from that neuron.  The connections
are counted exactly, per input position: ``units`` for ``Dense``; for a
convolution, the (output position, kernel tap) pairs that read that input
position, so positions near a border, which fewer windows reach, count less
and the zero padding counts nothing (a ``ZeroPadding`` layer's zeros never
spike either); ``filters / groups`` output channels per input channel
(``depth_multiplier`` for depthwise convolutions; for ``SeparableConv2D``
only its depthwise stage sees spikes); one for average pooling windows and
global average pooling.  A LIF layer with ``recurrent=True`` delivers each of
its spikes over its recurrent kernel to the next step: ``units`` connections
per spike, counted as its own record ``"<name>/recurrent"`` (every spike of
the measured steps counts, including those of the last step, which reach the
state that a stateful layer carries on).

How this compares with other tools:

* sinabs (``SNNAnalyzer``, ``synops``) multiplies the layer's input values
  by the fan-out, so a spike of any height (or a ``1/dt`` spike) counts its
  value, and it works on the spike *values* it sees; here each event counts
  its number of spikes whatever their height ``1/dt`` or any rescaling, so
  the figures do not depend on ``dt`` or on ``scale_firing_rates``.  On a
  network with unit spikes (``dt = 1``) the two agree (e.g. 60 synops for
  the two-layer example in the tests).
* SpikingJelly's ``ops_monitor``/synops counters count the non-zero
  operands (a multi-spike event counts once, and some versions count every
  output position's multiply-accumulates including padding); here an
  ``n``-spike event counts ``n`` times and padding never counts.

Layers whose input reaches them from spikes only through shape-only or
scaling layers (``Rescaling``, ``Flatten``, ``Reshape``, ``ZeroPadding``,
``Dropout``, also inside ``TimeDistributed``) are counted;
layers fed through ``Add``/``Concatenate`` or any computation are not.
"""

import dataclasses

import keras
import numpy as np

from keras_spiking import _graph
from keras_spiking._graph import axis_fan_out
from keras_spiking.lif import ALIF, LIF, CubaLIF
from keras_spiking.spiking_activation import SpikingActivation
from keras_spiking.temporal import dt_value

#: The layers whose outputs are spikes of height ``1 / dt`` (and subclasses).
SPIKING_LAYERS = (SpikingActivation, LIF, CubaLIF, ALIF)


def is_spiking_layer(layer):
    """Whether ``layer`` outputs spikes of height ``1 / dt`` (``SPIKING_LAYERS``)."""
    return isinstance(layer, SPIKING_LAYERS)


def has_recurrent_spikes(layer):
    """Whether ``layer`` is a spiking layer feeding its spikes back to itself."""
    return is_spiking_layer(layer) and bool(getattr(layer, "recurrent", False))


@dataclasses.dataclass
class SpikingLayerActivity:
    """Activity of one spiking layer over the measured data.

    Attributes
    ----------
    name : str
        The layer's name.
    n_neurons : int
        Neurons per sample (the product of the feature axes).
    n_samples, n_steps : int
        Samples and time steps measured.
    dt : float
        The layer's time step (s).
    spikes_total : int
        Spikes over all samples, steps and neurons (``|n|`` per event).
    spikes_per_sample : numpy.ndarray
        Spikes of each sample, shape ``(n_samples,)``.
    spikes_per_step : float
        Spikes of the layer per step and sample.
    spikes_per_neuron_per_step : float
        Spikes per neuron per step (mean over samples and neurons).
    mean_rate_hz : float
        ``spikes_per_neuron_per_step / dt``.
    rates_hz : numpy.ndarray
        Each neuron's rate (Hz), averaged over samples and steps, shape of
        the feature axes.
    max_rate_hz : float
        The largest of ``rates_hz``.
    silent_fraction : float
        Fraction of neurons that never spike on the measured data.
    """

    name: str
    n_neurons: int
    n_samples: int
    n_steps: int
    dt: float
    spikes_total: int
    spikes_per_sample: np.ndarray
    spikes_per_step: float
    spikes_per_neuron_per_step: float
    mean_rate_hz: float
    rates_hz: np.ndarray
    max_rate_hz: float
    silent_fraction: float


@dataclasses.dataclass
class SynapticActivity:
    """Synaptic operations into one layer fed by spikes.

    Attributes
    ----------
    name : str
        The receiving layer's name (``"<name>/recurrent"`` for the recurrent
        kernel of a LIF layer).
    source : str
        The spiking layer whose spikes it receives.
    connections : int
        Connections from its input neurons (the sum of their fan-outs).
    synops_per_sample : float
        Spike arrivals (spikes x connections) per sample, over all steps.
    synops_per_second : float
        ``synops_per_sample / (n_steps * dt)``.
    """

    name: str
    source: str
    connections: int
    synops_per_sample: float
    synops_per_second: float


class Activity(dict):
    """``measure_activity``'s result: a dict from layer name to record.

    The values are ``SpikingLayerActivity`` (for spiking layers) and
    ``SynapticActivity`` (for layers fed by spikes, and for the recurrent
    kernels of LIF layers), in the model's layer order.  ``table()``
    formats them as a Markdown table; ``str()`` gives the same.
    """

    def spiking(self):
        """The ``SpikingLayerActivity`` records."""
        return [r for r in self.values() if isinstance(r, SpikingLayerActivity)]

    def synaptic(self):
        """The ``SynapticActivity`` records."""
        return [r for r in self.values() if isinstance(r, SynapticActivity)]

    def table(self):
        """A Markdown table, one row per spiking layer and per counted layer."""
        lines = [
            "| layer | neurons | spikes / neuron / step | mean rate (Hz) | "
            "max rate (Hz) | silent (%) | synops / sample | synops / s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in self.values():
            if isinstance(r, SpikingLayerActivity):
                lines.append(
                    f"| {r.name} | {r.n_neurons} | "
                    f"{r.spikes_per_neuron_per_step:.4g} | {r.mean_rate_hz:.4g} "
                    f"| {r.max_rate_hz:.4g} | {100 * r.silent_fraction:.1f} "
                    f"| - | - |"
                )
            else:
                lines.append(
                    f"| {r.name} (from {r.source}) | - | - | - | - | - | "
                    f"{r.synops_per_sample:.4g} | {r.synops_per_second:.4g} |"
                )
        return "\n".join(lines) + "\n"

    def __str__(self):
        """The Markdown table (``table()``)."""
        return self.table()


# ------------------------------------------------------------ connections --

_TRANSPARENT = (
    keras.layers.Rescaling,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.Dropout,
)
_CONVS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
)
_POOLS = (
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
)
_GLOBAL_POOLS = (
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
)


def _inner(layer):
    """The layer a ``TimeDistributed`` wrapper applies."""
    if isinstance(layer, keras.layers.TimeDistributed):
        return layer.layer
    return layer


def fan_out(layer, input_shape):
    """Count the connections leaving each input value of ``layer``.

    Returns an int array of ``input_shape`` (the per-sample, per-step
    shape), or None if ``layer`` is not one whose connections are counted.
    """
    layer = _inner(layer)
    if isinstance(layer, keras.layers.Dense):
        return np.full(input_shape, layer.units, np.int64)
    if isinstance(layer, _GLOBAL_POOLS):
        return np.ones(input_shape, np.int64)
    if not isinstance(layer, _CONVS + _POOLS):
        return None
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return None
    spatial = input_shape[:-1]
    if isinstance(layer, _POOLS):
        kernel, strides = layer.pool_size, layer.strides
        dilation = (1,) * len(spatial)
        per_channel = 1
    else:
        kernel, strides = layer.kernel_size, layer.strides
        dilation = layer.dilation_rate
        if isinstance(
            layer, (keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
        ):
            per_channel = layer.depth_multiplier
        else:
            per_channel = layer.filters // getattr(layer, "groups", 1)
    result = np.full(input_shape, per_channel, np.int64)
    for axis, size in enumerate(spatial):
        counts = axis_fan_out(
            size, kernel[axis], strides[axis], dilation[axis], layer.padding
        )
        shape = [1] * len(input_shape)
        shape[axis] = size
        result = result * counts.reshape(shape)
    return result


def _spike_source(tensor):
    """Find the spiking layer whose spikes ``tensor`` carries.

    Returns (the spiking layer, the scale of its spikes), followed through
    shape-only and scaling layers; None if there is none.
    """
    scale = 1.0
    while True:
        layer = _graph.producer_layer(tensor)
        if is_spiking_layer(layer):
            return layer, scale
        inner = _inner(layer)
        if not isinstance(inner, _TRANSPARENT):
            return None
        if isinstance(inner, keras.layers.Rescaling):
            if np.any(np.asarray(inner.offset) != 0):
                return None
            scale *= float(np.asarray(inner.scale))
        tensor = _graph.node_of(tensor).arguments.keras_tensors[0]


#: The layouts that the counts assume, as (flag, the value it needs, why).
_LAYOUT = (
    ("return_sequences", True, "the counts need every step's spikes"),
    ("return_state", False, "the counts need the spikes as the only output"),
    ("time_major", False, "the counts read inputs as (batch, time, ...)"),
)


def _check_layout(graph, layer):
    """Check that spiking ``layer`` gives (batch, time, ...) spikes, once.

    Returns its one call; raises a ValueError naming the flag otherwise.
    """
    for flag, needed, why in _LAYOUT:
        if getattr(layer, flag) != needed:
            raise ValueError(
                f"measure_activity: {type(layer).__name__} layer '{layer.name}' has "
                f"{flag}={getattr(layer, flag)!r}; {why}, so it needs "
                f"{flag}={needed!r} (measure a copy of the model built with "
                f"it)."
            )
    calls = [call for call in graph.calls if call.layer is layer]
    if len(calls) != 1:
        raise ValueError(
            f"measure_activity: {type(layer).__name__} layer '{layer.name}' is "
            f"called {len(calls)} times in model '{graph.model.name}'; its "
            f"spikes are counted per layer, so each spiking layer must be "
            f"called once."
        )
    return calls[0]


# --------------------------------------------------------------- measuring --


class _Probe:
    """Every spiking layer's output and every counted layer's input.

    A probe model returning them, and the bookkeeping to turn them into
    counts.
    """

    def __init__(self, model):
        graph = _graph.model_graph(model, "measure_activity")
        self.model = model
        self.spiking, self.counted, outputs = [], [], []
        for layer in model.layers:
            if is_spiking_layer(layer):
                self.spiking.append(layer)
                outputs.append(_check_layout(graph, layer).outputs[0])
        if not self.spiking:
            raise ValueError(
                f"measure_activity: model '{model.name}' has no "
                f"SpikingActivation, LIF, CubaLIF or ALIF layer (convert it with "
                f"keras_spiking.convert first)."
            )
        counted = set()
        for call in graph.calls:
            layer = call.layer
            if id(layer) in counted or len(call.inputs) != 1 or is_spiking_layer(layer):
                continue
            found = _spike_source(call.inputs[0])
            if found is None:
                continue
            fan = fan_out(layer, tuple(call.inputs[0].shape[2:]))
            if fan is None:
                continue
            counted.add(id(layer))
            self.counted.append((layer, found[0], found[1], fan))
            outputs.append(call.inputs[0])
        self.probe = _graph.probe_model(model, outputs)

    def run(self, x, batch_size=None):
        xs = x if isinstance(x, (list, tuple)) else [x]
        xs = [np.asarray(v) for v in xs]
        n = len(xs[0])
        batch_size = batch_size or n
        n_steps = xs[0].shape[1]
        spikes = [None] * len(self.spiking)
        per_sample = [[] for _ in self.spiking]
        synops = [0.0] * len(self.counted)
        for start in range(0, n, batch_size):
            batch = [v[start : start + batch_size] for v in xs]
            values = self.probe.predict_on_batch(batch if len(batch) > 1 else batch[0])
            if not isinstance(values, (list, tuple)):
                values = [values]
            values = [np.asarray(keras.ops.convert_to_numpy(v)) for v in values]
            for i, layer in enumerate(self.spiking):
                counts = np.rint(np.abs(values[i]) * dt_value(layer.dt))
                total = counts.sum(axis=(0, 1))
                spikes[i] = total if spikes[i] is None else spikes[i] + total
                per_sample[i].append(counts.reshape(len(counts), -1).sum(axis=1))
            for j, (_, source, scale, fan) in enumerate(self.counted):
                value = values[len(self.spiking) + j]
                counts = np.rint(np.abs(value) * dt_value(source.dt) / abs(scale))
                synops[j] += float((counts.sum(axis=1) * fan).sum())
        result = Activity()
        for i, layer in enumerate(self.spiking):
            dt = dt_value(layer.dt)
            n_neurons = int(spikes[i].size)
            total = float(spikes[i].sum())
            per_neuron_step = total / (n * n_steps * n_neurons)
            rates = spikes[i] / (n * n_steps * dt)
            result[layer.name] = SpikingLayerActivity(
                name=layer.name,
                n_neurons=n_neurons,
                n_samples=n,
                n_steps=n_steps,
                dt=dt,
                spikes_total=int(total),
                spikes_per_sample=np.concatenate(per_sample[i]),
                spikes_per_step=total / (n * n_steps),
                spikes_per_neuron_per_step=per_neuron_step,
                mean_rate_hz=per_neuron_step / dt,
                rates_hz=rates,
                max_rate_hz=float(rates.max()),
                silent_fraction=float(np.mean(spikes[i] == 0)),
            )
        for i, layer in enumerate(self.spiking):
            if has_recurrent_spikes(layer):
                result[f"{layer.name}/recurrent"] = _recurrent_activity(
                    layer, float(spikes[i].sum()) / n, n_steps
                )
        for j, (layer, source, _, fan) in enumerate(self.counted):
            per_sample_ops = synops[j] / n
            result[layer.name] = SynapticActivity(
                name=layer.name,
                source=source.name,
                connections=int(fan.sum()),
                synops_per_sample=per_sample_ops,
                synops_per_second=per_sample_ops / (n_steps * dt_value(source.dt)),
            )
        return result


def _recurrent_activity(layer, spikes_per_sample, n_steps):
    """The synaptic activity of a LIF layer's recurrent kernel.

    Each spike reaches ``units`` connections (one row of the kernel).
    """
    units = int(layer.units)
    per_sample_ops = spikes_per_sample * units
    return SynapticActivity(
        name=f"{layer.name}/recurrent",
        source=layer.name,
        connections=units * units,
        synops_per_sample=per_sample_ops,
        synops_per_second=per_sample_ops / (n_steps * dt_value(layer.dt)),
    )


def measure_activity(model, x, batch_size=None):
    """Spikes, rates and synaptic operations of a spiking model on ``x``.

    Parameters
    ----------
    model : keras.Model
        A functional or Sequential model with spiking layers
        (``SpikingActivation``, e.g. from ``keras_spiking.convert``, or
        ``LIF``, ``CubaLIF``, ``ALIF``), ``return_sequences=True``,
        batch-major.
    x : array or list of arrays
        The model's input(s), ``(batch, time, ...)``.
    batch_size : int, optional
        Samples per call (default: all at once).

    Returns
    -------
    Activity
        A dict from layer name to ``SpikingLayerActivity`` (every spiking
        layer: neurons, spike totals per layer and per sample, spikes per
        step, mean and per-neuron rates in Hz, fraction of silent neurons)
        or ``SynapticActivity`` (every layer fed by spikes: synaptic
        operations per sample and per second, counted as in this module's
        docstring).  ``print(result)`` or ``result.table()`` gives a
        Markdown table.

    Raises
    ------
    ValueError
        If the model has no spiking layer, or a spiking layer has
        ``return_sequences=False``, ``return_state=True`` or
        ``time_major=True``, or is called more than once (the counts need
        each layer's ``(batch, time, ...)`` spikes).

    Notes
    -----
    Spike counts are ``|output| * dt`` of each spiking layer, rounded (its
    output is ``n / dt``).  The model runs in inference mode
    (``predict_on_batch``), so a stateful model starts from its current
    state.
    """
    return _Probe(model).run(x, batch_size)


_KEYS = ("_rate_mean", "_rate_max")


class ActivityMonitor(keras.callbacks.Callback):
    """Log the spiking layers' mean and max firing rates during training.

    The model is run in inference mode on the fixed inputs ``x`` given here
    (a small fixed batch keeps the cost small and the numbers comparable
    from epoch to epoch), and for every spiking layer (``SpikingActivation``,
    ``LIF``, ``CubaLIF``, ``ALIF``)
    ``<name>_rate_mean`` (Hz, over samples, steps and neurons) and
    ``<name>_rate_max`` (the largest per-neuron rate, averaged over samples
    and steps) are added to the logs:

    * at the end of every training epoch: they show in ``fit``'s progress
      bar and are kept in ``History`` (``history.history["<name>_rate_mean"]``);
    * with ``on_test=True``, at the end of every ``evaluate`` (also
      ``fit``'s validation runs): they show in its progress bar and are kept
      in ``test_logs``.  Keras (3.15) hands ``on_test_end`` a copy of the
      logs, so they are not in the dict ``evaluate`` returns, nor in
      ``History`` with a ``val_`` prefix.

    ``last`` holds the latest full ``measure_activity`` result.

    Parameters
    ----------
    x : array or list of arrays
        Model inputs ``(batch, time, ...)``; a few dozen samples suffice.
    on_test : bool
        Also measure at the end of ``evaluate``.
    batch_size : int, optional
        Samples per call when measuring.
    """

    def __init__(self, x, on_test=True, batch_size=None):
        super().__init__()
        self.x = x
        self.on_test = on_test
        self.batch_size = batch_size
        self._probe = None
        self.last = None
        self.test_logs = {}

    def _measure(self, logs):
        """Measure on ``x``; add the rates to ``logs``."""
        model = self.model  # on JAX, syncs the trainer's variables back
        if self._probe is None or self._probe.model is not model:
            self._probe = _Probe(model)
        self.last = self._probe.run(self.x, self.batch_size)
        if logs is not None:
            for record in self.last.spiking():
                logs[f"{record.name}_rate_mean"] = record.mean_rate_hz
                logs[f"{record.name}_rate_max"] = record.max_rate_hz

    def on_epoch_end(self, epoch, logs=None):
        """Measure on ``x``; add the rates to the epoch's logs."""
        self._measure(logs)

    def on_test_end(self, logs=None):
        """With ``on_test``, measure on ``x``; keep the rates in ``test_logs``."""
        if self.on_test:
            logs = {} if logs is None else logs
            self._measure(logs)
            self.test_logs = {k: v for k, v in logs.items() if k.endswith(_KEYS)}


__all__ = [
    "Activity",
    "ActivityMonitor",
    "SpikingLayerActivity",
    "SynapticActivity",
    "axis_fan_out",
    "fan_out",
    "measure_activity",
]
