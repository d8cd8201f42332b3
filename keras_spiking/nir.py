"""Export to and import from NIR, the neuromorphic intermediate representation.

`NIR <https://github.com/neuromorphs/NIR>`_ (``pip install keras-spiking[nir]``,
which installs ``nir==1.0.8``) describes a spiking network as a graph of
continuous-time nodes that neuromorphic chips and simulators read (Lava,
SpiNNaker2, Xylo, Speck; sinabs, norse, Spyx).  ``export`` writes a Keras
model as such a graph, ``load`` builds a Keras model from one.  ``nir`` is
imported when these functions are called, not with ``keras_spiking``.

Which Keras layer becomes which NIR node, and back, is listed by
``mapping_table()`` (one row per layer type that ``export`` knows, built from
the same tables that ``export`` and ``load`` dispatch on).  Features are in
NIR's channels-first order, without the batch and time axes: a Keras image
``(height, width, channels)`` is ``(C, H, W)`` in the graph, weights are
transposed to match, and after a ``Flatten`` of an image the next ``Dense``'s
rows are permuted from Keras' ``(h, w, c)`` order to NIR's ``(c, h, w)``.
Each node is named after its layer; the graph's ``Input`` and ``Output``
nodes are ``"input"`` and ``"output"`` unless a layer has that name (then
``"input_0"``, ``"output_0"``, ...), so every layer keeps its name through
``export`` and ``load``.

NIR nodes carry no time step and no units: times are in seconds, and the
graph's ``metadata`` records ``dt`` and the conventions under which the graph
reproduces the Keras model step for step (``CONVENTIONS``): inputs held
constant over each step and each node's output read at its end (the
zero-order hold that ``Lowpass``/``Alpha`` implement, ``Alpha`` being the
two-state ``CubaLI``); an ``IF`` neuron adds ``r * input * dt`` to its
voltage, which starts at 0, emits ``floor(v / v_threshold)`` spikes when that
is positive (several per step), each of height ``1 / dt`` (the discretised
unit-area spike), and subtracts them from its voltage (NIR's ``IF`` resets to
``v_reset`` and emits one spike at most: readers that ignore the metadata
lose the voltage above the threshold at each spike, and agree with the
model only where none is left).

``LIF`` and ``CubaLIF`` layers are NIR's ``LIF`` and ``CubaLIF`` nodes with
``r = 1``, ``v_leak = 0`` and ``v_reset = 0``: ``reset="zero"`` is NIR's
reset, and the ``LIF`` layer's step, ``v = a v + (1 - a) I`` with
``a = exp(-dt / tau)``, is the exact zero-order hold of NIR's
``tau dv/dt = (v_leak - v) + r I``.  The metadata adds what NIR leaves
open: a spike when ``v >= v_threshold`` at the end of a step (NIR writes
``>``; the two differ only where the voltage lands exactly on the
threshold), one at most per step, of height ``1 / dt``, the reset in the
same step; and a ``CubaLIF`` steps in two stages, the synaptic current's
zero-order hold and then the membrane's driven by the current at the end of
the step (held over the step), as a ``LI`` node feeding a ``LIF`` node.
That is what ``CubaLIF`` computes (as do snnTorch's ``Synaptic`` and
Loihi's CUBA neurons, with forward-Euler stages); the exact solution of the
coupled equations differs from it, its membrane seeing the current rise
within each step rather than the current at the step's end.  With
``recurrent=True`` the graph has a cycle: the neuron's output feeds a
``Linear`` node named ``<layer>_recurrent`` with weight
``dt * recurrent_kernel.T`` (the kernel weighs spike counts, the edges
carry spikes of height ``1 / dt``; written in float64, so that ``load``
gets the kernel back bit for bit), which feeds the neuron's input one step
later (an edge that closes a cycle carries the previous step's output).

A ``Rescaling`` layer without offset (``convert`` puts one on each side of a
spiking layer whose firing rates it scales) is a ``Scale`` node, the same
multiplication as in Keras, and ``load`` makes it a ``Rescaling`` again: a
converted model exports and loads back spike for spike.  For readers without
``Scale`` nodes (sinabs, for one), ``export(..., fold_scales=True)`` folds
each ``Scale`` into the nearest ``Affine``/``Linear``/``Conv2d`` before it,
or else after it, across the nodes that commute with a scaling
(``Flatten``, ``AvgPool2d``, ``LI``, ``CubaLI``; a ``Conv2d`` or
``AvgPool2d`` needs the same scale across each channel); the folded weights
give the same model up to float32 rounding (exactly where the products are
exact, e.g. for power-of-two scales), and ``metadata["folded_scales"]``
names the layers folded.

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
* ``reset="subtract"`` (the LIF layers' default) or ``"none"``: NIR's
  ``LIF`` sets the voltage to ``v_reset`` at a spike, which only
  ``reset="zero"`` does.  Written with ``v_reset = 0``; the reset is kept in
  ``metadata["lif_resets"]``, from which ``load`` restores it.
* ``TemporalAvgPool`` as the last layer: left out (the graph outputs the
  sequence; average it over time yourself).

Always errors: ``ALIF`` (no NIR node has an adaptive threshold), the LIF
layers' ``discretization="euler"`` (its decay ``1 - dt / tau`` is the exact
one of ``tau' = -dt / log(1 - dt / tau)``: create the layer with that
``tau`` and ``tau_syn``), ``scale_input=False`` (multiply the weights before
the layer by ``1 / (1 - a)``, for ``CubaLIF`` by
``1 / ((1 - a) (1 - a_syn))``, instead) and ``reset_delay=True``, recurrent LIF
layers on image features, other layers, activations inside
``Dense``/``Conv2D``,
``"same"`` padding that Keras splits unevenly (an odd total: Keras puts the
extra row/column at the bottom/right, NIR pads symmetrically),
``AveragePooling2D(padding="same")`` where it pads (Keras averages over the
cells inside the image only), ``Rescaling`` with an offset, layers with
``return_sequences=False``, and layers with different ``dt``.
"""

import dataclasses
import os

import keras
import numpy as np

from keras_spiking import _graph
from keras_spiking.filters import Alpha, Lowpass
from keras_spiking.lif import ALIF, LIF, MIN_TAU, MIN_THRESHOLD, CubaLIF
from keras_spiking.pooling import TemporalAvgPool
from keras_spiking.spiking_activation import SpikingActivation
from keras_spiking.temporal import dt_value

_EXPORT = "keras_spiking.nir.export"
_LOAD = "keras_spiking.nir.load"

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
    "lif_spikes": (
        "LIF and CubaLIF: a spike when v >= v_threshold after the step's "
        "update, one at most per step, of height 1 / dt; v = v_reset in the "
        "same step"
    ),
    "cuba_lif": (
        "CubaLIF in two stages per step: the synaptic current's zero-order "
        "hold, then the membrane's, driven by the current at the end of the "
        "step held over the step (as a LI node feeding a LIF node)"
    ),
    "cycles": (
        "an edge that closes a cycle (a neuron's recurrent Linear) carries the "
        "previous step's output, 0 at the first step; edges into one node add up"
    ),
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


def _array(variable):
    """A Keras variable's (or a plain value's) value as float32 NumPy."""
    return np.asarray(keras.ops.convert_to_numpy(variable), np.float32)


# ---------------------------------------------------------------- layout ---


@dataclasses.dataclass
class _Layout:
    """The features between two layers: their Keras shape and NIR order.

    ``shape`` is the Keras feature shape, ``(n,)`` or ``(h, w, c)`` (NIR:
    ``(n,)`` or ``(c, h, w)``).  After a ``Flatten`` of an image the two flat
    orders differ: NIR's flat index ``i`` holds Keras' flat index
    ``order[i]`` (None where they agree).
    """

    shape: tuple
    order: np.ndarray = None

    @property
    def nir_shape(self):
        if len(self.shape) == 3:
            h, w, c = self.shape
            return (c, h, w)
        return tuple(self.shape)

    def to_nir(self, values):
        """Per-feature values (broadcast to the Keras shape) in NIR's layout."""
        values = np.broadcast_to(np.asarray(values, np.float32), self.shape)
        if len(self.shape) == 3:
            return np.ascontiguousarray(values.transpose(2, 0, 1))
        if self.order is not None:
            return values[self.order]
        return np.array(values)

    def to_keras(self, values):
        """Per-feature values (broadcast to the NIR shape) in Keras' layout.

        A ValueError if they do not broadcast.
        """
        values = np.asarray(values)
        if values.size == np.prod(self.nir_shape):  # also given flat
            values = values.reshape(self.nir_shape)
        values = np.broadcast_to(values, self.nir_shape)
        if len(self.shape) == 3:
            return np.ascontiguousarray(values.transpose(1, 2, 0))
        if self.order is not None:
            return values[np.argsort(self.order)]
        return np.array(values)

    def flattened(self):
        """The layout after a ``Flatten``."""
        if len(self.shape) != 3:
            return self
        h, w, c = self.shape
        order = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1)
        return _Layout((h * w * c,), order.reshape(-1))

    def after(self, layer):
        """The layout after a per-step layer that keeps the feature order."""
        shape = layer.compute_output_shape((1,) + tuple(self.shape))[1:]
        return _Layout(tuple(int(s) for s in shape))


# ---------------------------------------------------------------- export ---


@dataclasses.dataclass
class _ExportState:
    """What ``export`` carries from one layer to the next."""

    nir: object
    layout: _Layout
    approximate: bool
    last: bool = False
    nodes: dict = dataclasses.field(default_factory=dict)
    approximations: list = dataclasses.field(default_factory=list)
    rectified: list = dataclasses.field(default_factory=list)
    dts: dict = dataclasses.field(default_factory=dict)
    # node name -> (input shape, output shape), NIR's
    shapes: dict = dataclasses.field(default_factory=dict)
    # neuron node name -> its recurrent ``Linear`` node
    recurrent: dict = dataclasses.field(default_factory=dict)
    # neuron node name -> its reset, where NIR's ``LIF`` cannot say it
    resets: dict = dataclasses.field(default_factory=dict)

    def approximation(self, outer, reason, advice):
        """Record ``reason`` if approximating, else raise it with ``advice``."""
        if not self.approximate:
            raise _error(outer, f"{reason}. {advice}")
        self.approximations.append(f"{outer.name}: {reason}")


def _error(layer, reason):
    return ValueError(
        f"{_EXPORT} cannot express layer '{layer.name}' "
        f"({type(layer).__name__}) in NIR: {reason}"
    )


def _linear_activation(layer, outer):
    activation = keras.activations.serialize(layer.activation)
    if activation != "linear":
        raise _error(
            outer,
            f"activation {activation!r} (NIR has no activation nodes; use "
            f"SpikingActivation).",
        )


def _export_dense(layer, outer, state):
    _linear_activation(layer, outer)
    if len(state.layout.shape) != 1:
        raise _error(outer, f"it acts on {state.layout.shape} features; Flatten first.")
    kernel = _array(layer.kernel)
    if state.layout.order is not None:
        kernel = kernel[state.layout.order]
    weight = np.ascontiguousarray(kernel.T)
    state.layout = _Layout((layer.units,))
    if layer.use_bias:
        return state.nir.Affine(weight=weight, bias=_array(layer.bias))
    return state.nir.Linear(weight=weight)


def _images(layer, outer, state):
    """Check that ``layer`` acts on channels-last images."""
    if layer.data_format != "channels_last" or len(state.layout.shape) != 3:
        raise _error(outer, "only channels-last images are supported.")


def _same_totals(spatial, kernel, stride, dilation):
    """Keras' total ``"same"`` padding along each spatial axis."""
    return [
        _graph.window(s, k, st, d, "same")[2]
        for s, k, st, d in zip(spatial, kernel, stride, dilation, strict=True)
    ]


def _symmetric_padding(layer, outer, spatial):
    """NIR's symmetric padding for a ``Conv2D``'s, or a ValueError."""
    if layer.padding == "valid":
        return (0, 0)
    totals = _same_totals(
        spatial, layer.kernel_size, layer.strides, layer.dilation_rate
    )
    if any(total % 2 for total in totals):
        raise _error(
            outer,
            f"padding='same' pads {totals[0]} row(s) and {totals[1]} column(s) "
            f"in all for an input of {spatial[0]}x{spatial[1]}; Keras puts an "
            f"odd one at the bottom/right, NIR pads symmetrically (use input "
            f"sizes that need even padding, or padding='valid').",
        )
    return (totals[0] // 2, totals[1] // 2)


def _export_conv2d(layer, outer, state):
    _linear_activation(layer, outer)
    _images(layer, outer, state)
    if layer.groups != 1:
        raise _error(outer, f"groups={layer.groups} (only 1 is supported).")
    spatial = tuple(int(s) for s in state.layout.shape[:2])
    padding = _symmetric_padding(layer, outer, spatial)
    bias = _array(layer.bias) if layer.use_bias else np.zeros(layer.filters, "f4")
    node = state.nir.Conv2d(
        input_shape=spatial,
        weight=np.ascontiguousarray(_array(layer.kernel).transpose(3, 2, 0, 1)),
        stride=tuple(layer.strides),
        padding=padding,
        dilation=tuple(layer.dilation_rate),
        groups=layer.groups,
        bias=bias,
    )
    state.layout = state.layout.after(layer)
    return node


def _export_avg_pool(layer, outer, state):
    _images(layer, outer, state)
    if layer.padding == "same" and any(
        _same_totals(state.layout.shape[:2], layer.pool_size, layer.strides, (1, 1))
    ):
        raise _error(
            outer,
            "padding='same' pads here, and Keras then averages over the cells "
            "inside the image only, which NIR's AvgPool2d cannot say; use "
            "padding='valid'.",
        )
    state.layout = state.layout.after(layer)
    return state.nir.AvgPool2d(
        kernel_size=np.array(layer.pool_size),
        stride=np.array(layer.strides),
        padding=np.array([0, 0]),
    )


def _export_flatten(layer, outer, state):
    if len(state.layout.shape) != 3:
        return None  # flat already: nothing to do
    node = state.nir.Flatten(
        input_type={"input": np.array(state.layout.nir_shape)},
        start_dim=0,
        end_dim=-1,
    )
    state.layout = state.layout.flattened()
    return node


def _export_rescaling(layer, outer, state):
    offset = np.asarray(layer.offset, np.float64)
    if np.any(offset != 0):
        raise _error(
            outer,
            f"offset={layer.offset!r} (NIR's Scale multiplies only; use a "
            f"Rescaling without offset, or a Dense with a bias).",
        )
    scale = np.asarray(layer.scale, np.float32)
    try:
        scale = state.layout.to_nir(scale)
    except ValueError as error:
        raise _error(
            outer,
            f"scale of shape {scale.shape} does not broadcast to its "
            f"{state.layout.shape} features (batch and time axes excluded).",
        ) from error
    return state.nir.Scale(scale=scale)


def _export_spiking(layer, outer, state):
    state.dts[layer.name] = dt_value(layer.dt)
    activation = keras.activations.serialize(layer.activation)
    if activation != "relu":
        raise _error(
            outer,
            f"activation {activation!r}: NIR's IF neuron fires at the rate "
            f"relu(x); no NIR node fires at other rates.",
        )
    if layer.neuron != "if":
        state.approximation(
            outer,
            "neuron='rate' rectifies the input at every step "
            "(v += max(x, 0) dt), NIR's IF integrates negative input too: the "
            "same only where the input is never negative",
            "Use neuron='if' (exact at any depth), or export with approximate=True.",
        )
        state.rectified.append(layer.name)
    if layer.initial_voltage != 0.0:
        state.approximation(
            outer,
            f"initial_voltage={layer.initial_voltage!r}; NIR neurons start at 0",
            "Create it with initial_voltage=0, or export with approximate=True.",
        )
    ones = np.ones(state.layout.nir_shape, np.float32)
    return state.nir.IF(r=ones, v_threshold=ones, v_reset=np.zeros_like(ones))


def _export_filter(layer, outer, state):
    state.dts[layer.name] = dt_value(layer.dt)
    if np.any(_array(layer.initial_level) != 0):
        state.approximation(
            outer,
            "a non-zero initial level; NIR filters start at 0",
            "Set it to 0, or export with approximate=True.",
        )
    tau = state.layout.to_nir(_array(layer.tau))
    ones, zeros = np.ones_like(tau), np.zeros_like(tau)
    if isinstance(layer, Lowpass):
        return state.nir.LI(tau=tau, r=ones, v_leak=zeros)
    return state.nir.CubaLI(
        tau_syn=tau, tau_mem=tau.copy(), r=ones, v_leak=zeros, w_in=ones
    )


#: Options of the LIF layers (where the layer has them) that NIR's ``LIF``
#: cannot express: option -> (the value NIR's ``LIF`` means, why another is
#: not it).
_LIF_OPTIONS = {
    "discretization": (
        "exact",
        "NIR's LIF is the continuous equation, which graphs from keras_spiking "
        "step by its exact zero-order hold; the forward-Euler decay "
        "1 - dt / tau is the exact one of tau' = -dt / log(1 - dt / tau) "
        "(where tau > dt): create the layer with discretization='exact' and "
        "that tau' for each time constant",
    ),
    "scale_input": (
        True,
        "the input is added unscaled (v = a v + x), NIR's LIF scales it by "
        "1 - a: use scale_input=True and multiply the weights before the "
        "layer by 1 / (1 - a), a = exp(-dt / tau) (for CubaLIF by "
        "1 / ((1 - a) (1 - a_syn)))",
    ),
    "reset_delay": (
        False,
        "the reset acts one step after the spike, NIR's LIF resets when it "
        "fires: use reset_delay=False",
    ),
}


def _check_lif_options(layer, outer):
    """A ValueError for an option of ``_LIF_OPTIONS`` that is not NIR's."""
    for option, (nir_value, reason) in _LIF_OPTIONS.items():
        value = getattr(layer, option, nir_value)
        if value != nir_value:
            raise _error(outer, f"{option}={value!r}: {reason}.")


def _lif_reset(layer, outer, state):
    """Record a reset other than NIR's (``"zero"``) if approximating."""
    if layer.reset == "zero":
        return
    state.approximation(
        outer,
        f"reset={layer.reset!r} "
        + (
            "subtracts the threshold at a spike"
            if layer.reset == "subtract"
            else "keeps the voltage at a spike"
        )
        + ", NIR's LIF sets the voltage to v_reset",
        "Use reset='zero' (NIR's LIF with v_reset=0), or export with "
        "approximate=True (written as reset='zero'; load restores the reset "
        "from the metadata).",
    )
    state.resets[outer.name] = layer.reset


def _recurrent_weight(layer, outer, state):
    """NIR's ``Linear`` weight of a recurrent kernel: ``dt * W.T``, float64.

    The layer's ``W`` weighs spike counts, NIR's edges carry spikes of
    height ``1 / dt``; float64 so that ``weight / dt`` gives ``W`` back.
    """
    if len(state.layout.shape) != 1:
        raise _error(
            outer,
            f"recurrent=True on {state.layout.shape} features: NIR's Linear "
            f"acts on flat features; Flatten first.",
        )
    kernel = np.asarray(keras.ops.convert_to_numpy(layer.recurrent_kernel), "f8")
    order = state.layout.order
    if order is not None:
        kernel = kernel[np.ix_(order, order)]
    return np.ascontiguousarray(kernel.T) * dt_value(layer.dt)


def _export_lif(layer, outer, state):
    state.dts[layer.name] = dt_value(layer.dt)
    if isinstance(layer, ALIF):
        raise _error(
            outer,
            "NIR has no neuron with an adaptive threshold (its LIF and "
            "CubaLIF fire at a fixed v_threshold); use LIF or CubaLIF.",
        )
    _check_lif_options(layer, outer)
    _lif_reset(layer, outer, state)
    if layer.initial_voltage != 0.0:
        state.approximation(
            outer,
            f"initial_voltage={layer.initial_voltage!r}; NIR neurons start at 0",
            "Create it with initial_voltage=0, or export with approximate=True.",
        )

    def values(weight, least):
        return state.layout.to_nir(np.maximum(_array(weight), np.float32(least)))

    tau, threshold = values(layer.tau, MIN_TAU), values(layer.threshold, MIN_THRESHOLD)
    ones, zeros = np.ones_like(tau), np.zeros_like(tau)
    if layer.recurrent:
        weight = _recurrent_weight(layer, outer, state)
        state.recurrent[outer.name] = state.nir.Linear(weight=weight)
    if isinstance(layer, CubaLIF):
        return state.nir.CubaLIF(
            tau_syn=values(layer.tau_syn, MIN_TAU),
            tau_mem=tau,
            r=ones,
            v_leak=zeros,
            v_threshold=threshold,
            v_reset=zeros.copy(),
            w_in=ones.copy(),
        )
    return state.nir.LIF(
        tau=tau, r=ones, v_leak=zeros, v_threshold=threshold, v_reset=zeros.copy()
    )


def _export_nothing(layer, outer, state):
    return None


def _export_temporal_avg_pool(layer, outer, state):
    reason = "TemporalAvgPool (NIR graphs output every step)"
    if not state.last:
        raise _error(outer, f"{reason}, other than as the last layer.")
    state.approximation(
        outer,
        f"left out: {reason}",
        "Remove it, or export with approximate=True to leave it out (average "
        "the output over time yourself).",
    )
    return None


@dataclasses.dataclass(frozen=True)
class _Rule:
    """One row of the mapping: a Keras layer type, its NIR node(s), a note."""

    keras_type: type
    nir_nodes: str
    note: str
    export: object


_EXPORT_RULES = (
    _Rule(
        keras.layers.Dense,
        "Affine, Linear",
        "`Affine(weight=kernel.T, bias)`; `Linear` without a bias; no activation",
        _export_dense,
    ),
    _Rule(
        keras.layers.Conv2D,
        "Conv2d",
        "per step (`TimeDistributed`), channels last, no activation: `weight = "
        'kernel.transpose(3, 2, 0, 1)`; `"valid"`, or `"same"` where it '
        "pads evenly (`load`: other symmetric padding becomes `ZeroPadding2D`)",
        _export_conv2d,
    ),
    _Rule(
        keras.layers.AveragePooling2D,
        "AvgPool2d",
        "per step, channels last, without padding",
        _export_avg_pool,
    ),
    _Rule(
        keras.layers.Flatten,
        "Flatten",
        "per step: `Flatten(start_dim=0, end_dim=-1)` of `(C, H, W)`, the next "
        "`Dense`'s rows permuted from (h, w, c) to (c, h, w); nothing for flat "
        "features (`load`: a `Flatten` of one axis is nothing, of some axes an "
        "error)",
        _export_flatten,
    ),
    _Rule(
        keras.layers.Rescaling,
        "Scale",
        "`Scale(scale)` per feature, offset 0 (`convert`'s rate scaling); "
        "`export(fold_scales=True)` folds it into the nearest weights instead",
        _export_rescaling,
    ),
    _Rule(
        SpikingActivation,
        "IF",
        '`"relu"`, `neuron="if"`, `initial_voltage=0`: `IF(r=1, '
        "v_threshold=1, v_reset=0)` (`load`: a gain `r / v_threshold` other "
        "than 1 goes into the `Dense`/`Conv2D` right before it, else into a "
        "`Rescaling`)",
        _export_spiking,
    ),
    _Rule(
        Lowpass,
        "LI",
        "`LI(tau, r=1, v_leak=0)` (`load`: a gain `r` as for `IF`)",
        _export_filter,
    ),
    _Rule(
        Alpha,
        "CubaLI",
        "`CubaLI(tau_syn=tau, tau_mem=tau, r=1, v_leak=0, w_in=1)` (`load`: "
        "equal time constants; a gain `r * w_in` as for `IF`)",
        _export_filter,
    ),
    _Rule(
        LIF,
        "LIF, Linear",
        '`reset="zero"`: `LIF(tau, r=1, v_leak=0, v_threshold=threshold, '
        "v_reset=0)`; with `recurrent=True` also a cycle through "
        "`Linear(weight=dt * recurrent_kernel.T)` (float64) named "
        '`<layer>_recurrent`; `reset="subtract"`/`"none"` only with '
        "`approximate=True` (`load` restores them from the metadata; else a "
        "gain `r` as for `IF`, `v_leak` and `v_reset` 0)",
        _export_lif,
    ),
    _Rule(
        CubaLIF,
        "CubaLIF, Linear",
        "`CubaLIF(tau_syn, tau_mem=tau, r=1, v_leak=0, v_threshold=threshold, "
        "v_reset=0, w_in=1)`, the two stages one after the other in each "
        "step; resets and recurrence as for `LIF` (`load`: a gain "
        "`r * w_in` as for `IF`)",
        _export_lif,
    ),
    _Rule(
        ALIF,
        "",
        "always an error: NIR has no neuron with an adaptive threshold",
        _export_lif,
    ),
    _Rule(
        keras.layers.Dropout,
        "",
        "nothing (identity at inference)",
        _export_nothing,
    ),
    _Rule(
        TemporalAvgPool,
        "",
        "as the last layer, left out with `approximate=True` (average the "
        "graph's output over time yourself)",
        _export_temporal_avg_pool,
    ),
)

#: Keras layer type -> ``(layer, outer, state) -> NIR node or None``.
_EXPORTERS = {rule.keras_type: rule.export for rule in _EXPORT_RULES}


def mapping_table():
    """How Keras layers map to NIR nodes, one row per layer type.

    Built from the table that ``export`` dispatches on; ``load`` reverses
    each row (its own table has a function for each NIR node listed here).

    Returns
    -------
    list of (str, str, str)
        ``(keras_layer, nir_node, note)``; ``nir_node`` lists several nodes
        separated by ``", "`` and is empty where the layer is not written.
    """
    rows = [
        (
            "Input",
            "Input",
            "`keras.Input((time, *features))`: the features; images `(C, H, W)`",
        )
    ]
    rows += [(r.keras_type.__name__, r.nir_nodes, r.note) for r in _EXPORT_RULES]
    return rows


def _exporter(layer, outer):
    for cls in type(layer).__mro__:
        if cls in _EXPORTERS:
            return _EXPORTERS[cls]
    raise _error(outer, "no NIR equivalent is implemented for this layer.")


def _input_layout(model, model_input):
    shape = tuple(model_input.shape[2:])  # Keras features (h, w, c) or (n,)
    if any(size is None for size in shape) or len(shape) not in (1, 3):
        raise ValueError(
            f"{_EXPORT} expects inputs (batch, time, features) or (batch, time, "
            f"height, width, channels) with known feature sizes; model "
            f"'{model.name}' takes {tuple(model_input.shape)}."
        )
    return _Layout(tuple(int(s) for s in shape))


def _export_layer(outer, state):
    # per-step layers wrapped in TimeDistributed (Conv2D, pooling, Flatten)
    layer = outer.layer if isinstance(outer, keras.layers.TimeDistributed) else outer
    if getattr(layer, "return_sequences", True) is False:
        raise _error(outer, "return_sequences=False (NIR outputs every step).")
    before = state.layout.nir_shape
    node = _exporter(layer, outer)(layer, outer, state)
    if node is not None:
        state.nodes[outer.name] = node
        state.shapes[outer.name] = (before, state.layout.nir_shape)


def _free_name(base, taken):
    """``base``, or ``base_<i>`` for the first ``i`` not in ``taken``."""
    name, i = base, 0
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


def _common_dt(dts):
    if len(set(dts.values())) > 1:
        raise ValueError(
            f"{_EXPORT} expects every layer to have the same dt; got {dts}."
        )
    if dts:
        return float(next(iter(dts.values())))
    import keras_spiking

    return float(keras_spiking.default.dt)


def _graph_of(state, input_layout, fold_scales):
    nir = state.nir
    nodes = dict(state.nodes)
    metadata = dict(CONVENTIONS)
    metadata["dt"] = _common_dt(state.dts)
    metadata["rectified_if_nodes"] = ",".join(state.rectified)
    metadata["approximations"] = "; ".join(state.approximations)
    metadata["lif_resets"] = ",".join(f"{n}={r}" for n, r in state.resets.items())
    if fold_scales:
        metadata["folded_scales"] = ",".join(_fold_scales(nir, nodes, state.shapes))
    first = _free_name("input", nodes)
    last = _free_name("output", nodes)
    shape = np.array(state.layout.nir_shape)
    names = [first, *nodes, last]
    nodes[first] = nir.Input(input_type={"input": np.array(input_layout.nir_shape)})
    nodes[last] = nir.Output(output_type={"output": shape})
    edges = list(zip(names[:-1], names[1:], strict=True))
    for neuron, linear in state.recurrent.items():
        name = _free_name(f"{neuron}_recurrent", nodes)
        nodes[name] = linear
        names.insert(names.index(neuron) + 1, name)
        edges += [(neuron, name), (name, neuron)]
    nodes = {name: nodes[name] for name in names}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def export(model, path=None, *, approximate=False, fold_scales=False):
    """Write ``model`` as a NIR graph.

    Parameters
    ----------
    model : keras.Model
        A chain of layers (``Sequential``, or functional with one input and
        one output, each layer called once on the previous one's output) of
        the kinds in ``mapping_table()``, taking ``(batch, time, *features)``
        input.
    path : str or pathlib.Path, optional
        Where to write the graph (``nir.write``); not written if None.
    approximate : bool
        Write what NIR cannot express exactly as its nearest equivalent
        (listed in ``metadata["approximations"]``) rather than raising: see
        the module docstring.
    fold_scales : bool
        Fold every ``Scale`` node (a ``Rescaling`` layer) into the weights
        of the nearest ``Affine``/``Linear``/``Conv2d`` node before it, or
        else after it, so that the graph has no ``Scale`` nodes (for readers
        without them); exact up to float32 rounding.  A ``Scale`` that
        cannot be folded (only neurons between it and any weights, or a
        scale that varies within a channel where a convolution or pooling
        needs one per channel) raises a ``ValueError``.  The folded layers
        are listed in ``metadata["folded_scales"]``.

    Returns
    -------
    nir.NIRGraph
        The graph, ``metadata`` holding ``dt`` (seconds) and ``CONVENTIONS``.
    """
    nir = _nir()
    model_input, layers = _graph.chain(model, _EXPORT)
    input_layout = _input_layout(model, model_input)
    state = _ExportState(nir=nir, layout=input_layout, approximate=approximate)
    for position, outer in enumerate(layers):
        state.last = position == len(layers) - 1
        _export_layer(outer, state)
    graph = _graph_of(state, input_layout, fold_scales)
    if path is not None:
        nir.write(path, graph)
    return graph


# ------------------------------------------------------------ fold_scales ---


def _per_channel(scale):
    """A ``(C, ...)`` scale as ``(C,)``, or None if it varies in a channel."""
    scale = scale.reshape(scale.shape[0], -1)
    if not np.all(scale == scale[:, :1]):
        return None
    return scale[:, 0]


def _scale_into(nir, node, scale, side):
    """Scale the weights of ``node`` on its ``side`` ("out" or "in") by ``scale``.

    ``scale`` has that side's full NIR shape; returns whether it could be
    done.
    """
    if isinstance(node, nir.Conv2d):
        scale = _per_channel(scale)
        shape = (-1, 1, 1, 1) if side == "out" else (1, -1, 1, 1)
    else:
        scale = scale.reshape(-1)
        shape = (-1, 1) if side == "out" else (1, -1)
    if scale is None:
        return False
    node.weight = np.asarray(node.weight, np.float32) * scale.reshape(shape)
    if side == "out" and hasattr(node, "bias"):
        node.bias = np.asarray(node.bias, np.float32) * scale
    return True


def _scale_across(nir, node, scale, target):
    """``scale`` moved across ``node`` to its other side, of shape ``target``.

    ``scale`` has the full NIR shape on one side of ``node``; None if it
    cannot be moved.
    """
    if isinstance(node, (nir.LI, nir.CubaLI, nir.Scale)):
        return scale  # linear and elementwise: they commute with a scaling
    if isinstance(node, nir.Flatten):
        return scale.reshape(target)
    if isinstance(node, nir.AvgPool2d):
        channels = _per_channel(scale)
        if channels is not None:
            return np.broadcast_to(channels.reshape(-1, 1, 1), target)
    return None


def _fold_towards(nir, names, nodes, shapes, index, step):
    """Fold the ``Scale`` node ``names[index]`` into the first weights ``step`` of it.

    ``step`` is -1 (before) or 1 (after); returns whether it was done.
    """
    scale = np.asarray(nodes[names[index]].scale, np.float32)
    position = index + step
    while scale is not None and 0 <= position < len(names):
        node = nodes[names[position]]
        if isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)):
            return _scale_into(nir, node, scale, "out" if step < 0 else "in")
        # moving back: to the node's input shape; forward: to its output's
        target = shapes[names[position]][step > 0]
        scale = _scale_across(nir, node, scale, target)
        position += step
    return False


def _fold_scales(nir, nodes, shapes):
    """Fold every ``Scale`` node of ``nodes`` (in order) into weights, in place.

    Returns the names of the nodes removed.
    """
    scales = [name for name, node in nodes.items() if isinstance(node, nir.Scale)]
    for name in scales:
        names = list(nodes)
        index = names.index(name)
        if not any(
            _fold_towards(nir, names, nodes, shapes, index, step) for step in (-1, 1)
        ):
            raise ValueError(
                f"{_EXPORT}(fold_scales=True) cannot fold layer '{name}' "
                f"(Rescaling) into weights: no Dense or Conv2D is reached from "
                f"it across only Flatten, AveragePooling2D, filter and "
                f"Rescaling layers, with one scale per channel where a Conv2D "
                f"or pooling layer needs it; export with fold_scales=False to "
                f"keep it as a Scale node."
            )
        del nodes[name]
    return scales


# ------------------------------------------------------------------ load ---


@dataclasses.dataclass
class _Spec:
    """One Keras layer of the model ``load`` builds, and its values."""

    layer: keras.layers.Layer
    weights: list = None  # for ``set_weights``
    assign: dict = None  # variable name -> value (a filter's ``tau``, ...)

    @property
    def weight_layer(self):
        """The ``Dense``/``Conv2D`` (unwrapped) whose weights these are."""
        inner = getattr(self.layer, "layer", self.layer)
        if self.weights and isinstance(
            inner, (keras.layers.Dense, keras.layers.Conv2D)
        ):
            return inner
        return None


@dataclasses.dataclass
class _LoadState:
    """What ``load`` carries from one node to the next."""

    nir: object
    dt: float
    rectified: set
    layout: _Layout
    taken: set
    discretization: str = "exact"
    # neuron node name -> its recurrent Linear/Affine node
    loops: dict = dataclasses.field(default_factory=dict)
    # neuron node name -> its reset, from the metadata
    resets: dict = dataclasses.field(default_factory=dict)
    specs: list = dataclasses.field(default_factory=list)

    def add(self, layer, weights=None, assign=None):
        self.taken.add(layer.name)
        self.specs.append(_Spec(layer, weights, assign))

    def name(self, base):
        """A layer name not used by the graph or by the layers so far."""
        return _free_name(base, self.taken)


def _load_error(name, node, reason):
    return ValueError(
        f"{_LOAD} cannot build node '{name}' ({type(node).__name__}): {reason}"
    )


def _per_step(layer, name):
    """``layer`` applied at every step (``TimeDistributed``), named ``name``."""
    return keras.layers.TimeDistributed(layer, name=name)


def _ints(values, count=2):
    return tuple(int(v) for v in np.broadcast_to(np.asarray(values), (count,)))


def _keras_values(name, node, values, what, state):
    """NIR per-feature ``values`` in Keras' layout, or a clear error."""
    try:
        return state.layout.to_keras(values)
    except ValueError as error:
        raise _load_error(
            name,
            node,
            f"{what} of shape {np.shape(values)} does not broadcast to its "
            f"input's shape {state.layout.nir_shape}.",
        ) from error


def _load_dense(name, node, state):
    if len(state.layout.shape) != 1:
        raise _load_error(
            name, node, f"acts on {state.layout.shape} features; Flatten first."
        )
    weight = np.asarray(node.weight, np.float32)
    kernel = weight.T
    if state.layout.order is not None:
        kernel = kernel[np.argsort(state.layout.order)]
    has_bias = isinstance(node, state.nir.Affine)
    weights = [kernel]
    if has_bias:
        bias = np.broadcast_to(np.asarray(node.bias, np.float32), weight.shape[:1])
        weights.append(np.array(bias))
    layer = keras.layers.Dense(weight.shape[0], use_bias=has_bias, name=name)
    state.add(layer, weights)
    state.layout = _Layout((weight.shape[0],))


def _conv_padding(name, node, kernel_size, dilation, stride):
    """A ``Conv2d`` node's padding as two integers, or a clear error."""
    padding = node.padding
    if isinstance(padding, bytes):
        padding = padding.decode()
    if not isinstance(padding, str):
        return _ints(padding)
    if padding == "valid":
        return (0, 0)
    if padding != "same":
        raise _load_error(name, node, f"padding {padding!r}.")
    if stride != (1, 1):
        raise _load_error(name, node, "padding 'same' with a stride.")
    spans = [d * (k - 1) for k, d in zip(kernel_size, dilation, strict=True)]
    if any(span % 2 for span in spans):
        raise _load_error(name, node, "asymmetric 'same' padding.")
    return tuple(span // 2 for span in spans)


def _keras_padding(name, padding, kernel_size, stride, dilation, state):
    """``"same"`` or ``"valid"`` for symmetric ``padding``.

    Adds a ``ZeroPadding2D`` where neither is it.
    """
    if not any(padding):
        return "valid"
    same = _same_totals(state.layout.shape[:2], kernel_size, stride, dilation)
    if [2 * p for p in padding] == same:
        return "same"
    pad = keras.layers.ZeroPadding2D(padding)
    state.add(_per_step(pad, state.name(f"{name}_padding")))
    state.layout = state.layout.after(pad)
    return "valid"


def _load_conv2d(name, node, state):
    if len(state.layout.shape) != 3:
        raise _load_error(name, node, f"acts on {state.layout.shape} features.")
    weight = np.asarray(node.weight, np.float32)
    stride, dilation = _ints(node.stride), _ints(node.dilation)
    kernel_size = weight.shape[2:]
    padding = _conv_padding(name, node, kernel_size, dilation, stride)
    layer = keras.layers.Conv2D(
        weight.shape[0],
        kernel_size,
        strides=stride,
        padding=_keras_padding(name, padding, kernel_size, stride, dilation, state),
        dilation_rate=dilation,
        groups=int(node.groups),
    )
    bias = np.broadcast_to(
        np.asarray(node.bias, np.float32).reshape(-1), weight.shape[:1]
    )
    state.add(_per_step(layer, name), [weight.transpose(2, 3, 1, 0), np.array(bias)])
    state.layout = state.layout.after(layer)


def _load_avg_pool(name, node, state):
    if len(state.layout.shape) != 3:
        raise _load_error(name, node, f"acts on {state.layout.shape} features.")
    if np.any(np.asarray(node.padding) != 0):
        raise _load_error(name, node, "padding (Keras cannot say it).")
    layer = keras.layers.AveragePooling2D(
        _ints(node.kernel_size), strides=_ints(node.stride)
    )
    state.add(_per_step(layer, name))
    state.layout = state.layout.after(layer)


def _load_flatten(name, node, state):
    rank = len(state.layout.shape)
    start, end = int(node.start_dim), int(node.end_dim)
    start, end = start + rank * (start < 0), end + rank * (end < 0)
    if not 0 <= start <= end < rank:
        raise _load_error(
            name,
            node,
            f"start_dim={node.start_dim}, end_dim={node.end_dim} for an input "
            f"of shape {state.layout.nir_shape} (NIR counts the axes without "
            f"the batch and time axes).",
        )
    if start == end:
        return  # one axis: nothing changes
    if (start, end) != (0, rank - 1):
        raise _load_error(
            name,
            node,
            f"start_dim={node.start_dim}, end_dim={node.end_dim} flattens only "
            f"some axes of {state.layout.nir_shape}; keras_spiking builds "
            f"features of one axis or channels-last images (flatten all: "
            f"start_dim=0, end_dim=-1).",
        )
    state.add(_per_step(keras.layers.Flatten(), name))
    state.layout = state.layout.flattened()


def _rescaling(values, name):
    """A ``Rescaling`` by per-feature ``values`` (Keras layout)."""
    values = np.asarray(values, np.float32)
    if np.all(values == values.flat[0]):
        return keras.layers.Rescaling(float(values.flat[0]), name=name)
    return keras.layers.Rescaling(values, name=name)


def _load_scale(name, node, state):
    scale = _keras_values(name, node, node.scale, "scale", state)
    state.add(_rescaling(scale, name))


def _weight_factor(spec, gain):
    """``gain`` as a factor on the outputs of ``spec``'s weights, or None.

    ``gain`` is in Keras' layout; the weights are a ``Dense``'s or a
    ``Conv2D``'s (one factor per channel).
    """
    inner = spec.weight_layer if spec is not None else None
    if isinstance(inner, keras.layers.Dense):
        return gain
    if isinstance(inner, keras.layers.Conv2D):
        channels = gain.reshape(-1, gain.shape[-1])
        if np.all(channels == channels[:1]):
            return channels[0]
    return None


def _fold_gain(name, node, gain, state):
    """Multiply the input of the next layer by ``gain``.

    ``gain`` is NIR's per-feature ``r``, or ``r / v_threshold``.  It goes
    into the weights of the layer before it, where it is a ``Dense``, or a
    ``Conv2D`` with one gain per channel; else as a ``Rescaling`` named
    ``<name>_gain``.
    """
    gain = _keras_values(name, node, gain, "the gain", state)
    if np.all(gain == 1):
        return
    previous = state.specs[-1] if state.specs else None
    factor = _weight_factor(previous, gain)
    if factor is None:
        state.add(_rescaling(gain, state.name(f"{name}_gain")))
        return
    previous.weights = [(w * factor).astype(np.float32) for w in previous.weights]


def _load_if(name, node, state):
    if np.any(np.asarray(node.v_reset) != 0):
        raise _load_error(name, node, "v_reset other than 0.")
    threshold = np.asarray(node.v_threshold, np.float64)
    if np.any(threshold <= 0):
        raise _load_error(name, node, "v_threshold not positive.")
    _fold_gain(name, node, np.asarray(node.r, np.float64) / threshold, state)
    layer = SpikingActivation(
        "relu",
        dt=state.dt,
        neuron="rate" if name in state.rectified else "if",
        initial_voltage=0.0,
        name=name,
    )
    state.add(layer)


def _time_constant(name, node, tau, what, state, convert=True):
    """NIR time constants ``tau`` as the layers' (Keras layout, float32).

    Read as forward Euler (``load(discretization="euler")``) by a layer that
    steps exactly (``convert``), a decay ``1 - dt / tau`` per step is the
    exact decay of ``-dt / log(1 - dt / tau)``, which needs ``tau > dt``.
    """
    tau = np.asarray(tau, np.float64)
    if not np.all(tau > 0):
        raise _load_error(name, node, f"{what} not positive.")
    if convert and state.discretization == "euler":
        if not np.all(tau > state.dt):
            raise _load_error(
                name,
                node,
                f"{what} <= dt = {state.dt}: a forward-Euler step of it decays "
                f"by 1 - dt / {what} <= 0, which no time constant gives.",
            )
        tau = -state.dt / np.log1p(-state.dt / tau)
    return _keras_values(name, node, tau, what, state).astype(np.float32)


def _load_filter(name, node, state, cls, tau, gain):
    if np.any(np.asarray(node.v_leak) != 0):
        raise _load_error(name, node, "v_leak other than 0.")
    _fold_gain(name, node, gain, state)
    tau = _time_constant(name, node, tau, "tau", state)
    state.add(cls(float(tau.flat[0]), dt=state.dt, name=name), assign={"tau": tau})


def _load_li(name, node, state):
    _load_filter(name, node, state, Lowpass, node.tau, node.r)


def _load_cuba_li(name, node, state):
    if not np.array_equal(node.tau_syn, node.tau_mem):
        raise _load_error(name, node, "tau_syn != tau_mem (Alpha has one tau).")
    if state.discretization != "exact":
        raise _load_error(
            name,
            node,
            f"discretization={state.discretization!r}: Alpha is the exact "
            f"zero-order hold of the two-state filter (load it with "
            f"discretization='exact').",
        )
    gain = np.asarray(node.r, np.float64) * np.asarray(node.w_in, np.float64)
    _load_filter(name, node, state, Alpha, node.tau_mem, gain)


def _recurrent_kernel(name, node, gain, state):
    """The layer's recurrent kernel from the node's loop (or None).

    The loop's ``Linear`` weighs spikes of height ``1 / dt`` (``W = weight.T
    / dt``, on spike counts) and the node's gain ``r`` scales its current
    too.  ``gain`` is in Keras' layout.
    """
    if name not in state.loops:
        return None
    loop, linear = state.loops[name]
    if np.any(np.asarray(getattr(linear, "bias", 0.0)) != 0):
        raise _load_error(
            name,
            node,
            f"its recurrent loop '{loop}' has a bias (the layers' recurrent "
            f"kernels have none).",
        )
    units = int(np.prod(state.layout.shape))
    weight = np.asarray(linear.weight, np.float64)
    if len(state.layout.shape) != 1 or weight.shape != (units, units):
        raise _load_error(
            name,
            node,
            f"its recurrent loop '{loop}' has a weight of shape {weight.shape} "
            f"for {state.layout.nir_shape} neurons; expected ({units}, {units}) "
            f"on flat features.",
        )
    order = state.layout.order
    order = np.arange(units) if order is None else order
    kernel = np.empty((units, units))
    kernel[np.ix_(order, order)] = weight.T / state.dt
    return (kernel * np.reshape(gain, (1, units))).astype(np.float32)


def _load_neuron(name, node, state, cls, time_constants, gain):
    """A ``LIF`` or ``CubaLIF`` layer for a NIR ``LIF``/``CubaLIF`` node.

    ``time_constants``: the layer's argument name -> the node's values;
    ``gain`` the factor on the node's input current (``r``, ``r * w_in``).
    """
    for what in ("v_leak", "v_reset"):
        if np.any(np.asarray(getattr(node, what)) != 0):
            raise _load_error(
                name,
                node,
                f"{what} other than 0 (the layers reset to 0 and leak to 0).",
            )
    threshold = _keras_values(name, node, node.v_threshold, "v_threshold", state)
    if not np.all(threshold > 0):
        raise _load_error(name, node, "v_threshold not positive.")
    taus = {
        argument: _time_constant(name, node, values, argument, state, False)
        for argument, values in time_constants.items()
    }
    gain = _keras_values(name, node, np.asarray(gain, np.float64), "the gain", state)
    kernel = _recurrent_kernel(name, node, gain, state)
    _fold_gain(name, node, gain, state)
    layer = cls(
        **{argument: float(tau.flat[0]) for argument, tau in taus.items()},
        threshold=float(threshold.flat[0]),
        reset=state.resets.get(name, "zero"),
        initial_voltage=0.0,
        recurrent=kernel is not None,
        discretization=state.discretization,
        dt=state.dt,
        name=name,
    )
    assign = dict(taus, threshold=threshold.astype(np.float32))
    if kernel is not None:
        assign["recurrent_kernel"] = kernel
    state.add(layer, assign=assign)


def _load_lif(name, node, state):
    _load_neuron(name, node, state, LIF, {"tau": node.tau}, node.r)


def _load_cuba_lif(name, node, state):
    gain = np.asarray(node.r, np.float64) * np.asarray(node.w_in, np.float64)
    taus = {"tau": node.tau_mem, "tau_syn": node.tau_syn}
    _load_neuron(name, node, state, CubaLIF, taus, gain)


#: NIR node type name -> ``(name, node, state) -> None`` (adds Keras layers).
_LOADERS = {
    "Affine": _load_dense,
    "Linear": _load_dense,
    "Conv2d": _load_conv2d,
    "AvgPool2d": _load_avg_pool,
    "Flatten": _load_flatten,
    "Scale": _load_scale,
    "IF": _load_if,
    "LI": _load_li,
    "CubaLI": _load_cuba_li,
    "LIF": _load_lif,
    "CubaLIF": _load_cuba_lif,
}

#: The NIR nodes that take a recurrent loop (a ``Linear`` from and back to them).
_RECURRENT = ("LIF", "CubaLIF")


def _metadata_value(metadata, key, default=None):
    value = metadata.get(key, default)
    if isinstance(value, bytes):
        value = value.decode("utf8")
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    return value


def _loops(nir, graph):
    """The graph's recurrent loops: ``{neuron: (name, node)}``.

    A loop is a ``Linear``/``Affine`` node whose only edges are one from a
    node and one back to it.
    """
    into, out = {}, {}
    for source, target in graph.edges:
        out.setdefault(source, []).append(target)
        into.setdefault(target, []).append(source)
    loops = {}
    for name, node in graph.nodes.items():
        sources = into.get(name, [])
        if (
            isinstance(node, (nir.Linear, nir.Affine))
            and len(sources) == 1
            and out.get(name) == sources
            and sources[0] != name
        ):
            if sources[0] in loops:
                raise ValueError(
                    f"{_LOAD}: node '{sources[0]}' has several recurrent loops "
                    f"('{loops[sources[0]][0]}', '{name}'); the layers have one "
                    f"recurrent kernel."
                )
            loops[sources[0]] = (name, node)
    return loops


def _following(graph, loops):
    following = {}
    skipped = {name for name, _ in loops.values()}
    for source, target in graph.edges:
        if source in skipped or target in skipped:
            continue
        if source in following:
            raise ValueError(
                f"{_LOAD} expects a chain of nodes; node '{source}' has several "
                f"outgoing edges."
            )
        following[source] = target
    return following


def _chain_of(nir, graph, loops):
    """The graph's node names from its single input to its single output.

    The nodes of the recurrent ``loops`` (``_loops``) are left out.
    """
    following = _following(graph, loops)
    starts = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(starts) != 1:
        raise ValueError(f"{_LOAD} expects one Input node; got {len(starts)}.")
    chain = [starts[0]]
    while chain[-1] in following:
        chain.append(following[chain[-1]])
        if len(chain) > len(graph.nodes):
            raise ValueError(f"{_LOAD}: the graph has a cycle.")
    last = graph.nodes[chain[-1]]
    if not isinstance(last, nir.Output) or len(chain) + len(loops) != len(graph.nodes):
        raise ValueError(
            f"{_LOAD} expects a chain of nodes from the Input to the Output "
            f"that covers the whole graph, apart from recurrent loops (a "
            f"Linear from a LIF or CubaLIF node back to it)."
        )
    return chain


def _graph_dt(metadata, dt):
    if dt is None:
        dt = _metadata_value(metadata, "dt")
        if dt is None:
            raise ValueError(
                f"{_LOAD} needs `dt` (seconds): the graph's metadata has none."
            )
    return float(dt)


def _input_of(name, node):
    shape = tuple(int(s) for s in np.asarray(node.input_type["input"]).reshape(-1))
    if len(shape) == 3:
        return _Layout((shape[1], shape[2], shape[0]))
    if len(shape) == 1:
        return _Layout(shape)
    raise _load_error(name, node, f"input shape {shape}: 1 or 3 axes.")


def _load_node(name, node, state):
    for cls in type(node).__mro__:
        if cls.__name__ in _LOADERS and cls.__module__.startswith("nir"):
            if name in state.loops and cls.__name__ not in _RECURRENT:
                raise _load_error(
                    name,
                    node,
                    f"a recurrent loop ('{state.loops[name][0]}') into it; only "
                    f"{' and '.join(_RECURRENT)} nodes take one.",
                )
            return _LOADERS[cls.__name__](name, node, state)
    raise _load_error(name, node, "no Keras equivalent is implemented.")


def _build(inputs, specs):
    x = inputs
    for spec in specs:
        x = spec.layer(x)
    model = keras.Model(inputs, x)
    for spec in specs:
        if spec.weights is not None:
            spec.layer.set_weights(spec.weights)
        for variable, value in (spec.assign or {}).items():
            getattr(spec.layer, variable).assign(value)
    return model


def _read_graph(nir, graph_or_path):
    """The NIR graph given, or read from a file, or a clear error."""
    if isinstance(graph_or_path, nir.NIRGraph):
        return graph_or_path
    if not isinstance(graph_or_path, (str, os.PathLike)):
        raise TypeError(
            f"keras_spiking.nir.load expects a nir.NIRGraph or the path of a "
            f"file written by nir.write; got {graph_or_path!r} of type "
            f"{type(graph_or_path).__name__}."
        )
    try:
        return nir.read(graph_or_path)
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise ValueError(
            f"keras_spiking.nir.load cannot read a NIR graph from "
            f"'{os.fspath(graph_or_path)}' ({type(error).__name__}: {error}); "
            f"expected a file written by nir.write."
        ) from error


#: How ``load`` can read the leaky nodes' time constants.
_DISCRETIZATIONS = ("exact", "euler")


def _lif_resets(metadata):
    """The resets ``export(approximate=True)`` recorded: ``{node: reset}``."""
    text = str(_metadata_value(metadata, "lif_resets", ""))
    resets = {}
    for item in filter(None, text.split(",")):
        name, _, reset = item.rpartition("=")
        if reset not in ("subtract", "zero", "none") or not name:
            raise ValueError(
                f"{_LOAD}: metadata['lif_resets'] lists {item!r}; expected "
                f"'<node>=<reset>' with a reset of 'subtract', 'zero' or 'none'."
            )
        resets[name] = reset
    return resets


def _check_discretization(discretization):
    if discretization not in _DISCRETIZATIONS:
        raise ValueError(
            f"{_LOAD} expects `discretization` to be one of {_DISCRETIZATIONS}; "
            f"got {discretization!r}."
        )


def load(graph_or_path, dt=None, *, discretization="exact"):
    """Build a Keras model from a NIR graph (the inverse of ``export``).

    Nodes map back as in ``mapping_table()``: ``IF`` to
    ``SpikingActivation("relu", neuron="if")`` (the rectifying
    ``neuron="rate"`` for the nodes that ``export(approximate=True)`` listed
    in ``metadata["rectified_if_nodes"]``), ``LI`` to ``Lowpass``,
    ``CubaLI`` with equal time constants to ``Alpha``, ``Scale`` to
    ``Rescaling``, ``Conv2d`` with symmetric padding to ``Conv2D``
    (``"same"`` where that is Keras' padding, else ``ZeroPadding2D`` and
    ``"valid"``), ``Flatten`` of all axes to ``Flatten`` (of one axis: to
    nothing; of some axes: an error).  Neurons and filters start at 0.
    ``IF`` nodes follow this package's conventions (subtractive reset,
    several spikes per step; see the module docstring), whoever wrote the
    graph.  An ``IF``, ``LI`` or ``CubaLI`` gain (``r``; for ``IF``
    ``r / v_threshold``; for ``CubaLI`` ``r * w_in``) that is not 1 is
    folded into the ``Dense``/``Conv2D`` right before it (for a
    convolution: where it is the same across each channel), else applied
    by a ``Rescaling`` layer named ``<node>_gain`` before the neuron or
    filter.  Each layer is named after its node.

    ``LIF`` and ``CubaLIF`` nodes with ``v_leak = 0`` and ``v_reset = 0``
    become ``LIF`` and ``CubaLIF`` layers with ``reset="zero"`` (the reset
    that ``export(approximate=True)`` listed in ``metadata["lif_resets"]``),
    their gain (``r``; ``r * w_in``) folded as for ``IF``.  A ``Linear`` (or
    an ``Affine`` without bias) from such a node back to it is its
    ``recurrent_kernel``, ``weight.T / dt`` (times the gain), as ``export``
    writes it.

    Parameters
    ----------
    graph_or_path : nir.NIRGraph, str or pathlib.Path
        A graph, or a file written by ``nir.write``.
    dt : float, optional
        Time step in seconds; by default ``metadata["dt"]`` (required where
        the graph has none).
    discretization : str
        How the graph's leaky nodes (``LI``, ``LIF``, ``CubaLIF``) step:
        ``"exact"`` (default), the exact zero-order hold that ``export``
        writes; ``"euler"``, a forward-Euler step, ``v += dt / tau * (-v +
        r I)``, as snnTorch writes its graphs (``tau = dt / (1 - beta)``,
        ``r = tau / dt``): ``LIF``/``CubaLIF`` layers with
        ``discretization="euler"`` and the graph's ``tau``; a ``LI`` node's
        ``tau`` is read as ``-dt / log(1 - dt / tau)``, whose exact decay is
        ``1 - dt / tau`` (it must exceed ``dt``); ``CubaLI`` nodes are an
        error.

    Returns
    -------
    keras.Model
        Input ``(batch, time, *features)`` (images channels last).
    """
    _check_discretization(discretization)
    nir = _nir()
    graph = _read_graph(nir, graph_or_path)
    metadata = graph.metadata if isinstance(graph.metadata, dict) else {}
    rectified = str(_metadata_value(metadata, "rectified_if_nodes", ""))
    loops = _loops(nir, graph)
    chain = _chain_of(nir, graph, loops)
    state = _LoadState(
        nir=nir,
        dt=_graph_dt(metadata, dt),
        rectified=set(filter(None, rectified.split(","))),
        layout=_input_of(chain[0], graph.nodes[chain[0]]),
        taken=set(graph.nodes),
        discretization=discretization,
        loops=loops,
        resets=_lif_resets(metadata),
    )
    inputs = keras.Input((None,) + state.layout.shape, name=chain[0])
    for name in chain[1:-1]:
        _load_node(name, graph.nodes[name], state)
    return _build(inputs, state.specs)


__all__ = ["CONVENTIONS", "export", "load", "mapping_table"]
