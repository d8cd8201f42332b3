r"""``convert``: turn a trained (non-spiking) Keras model into a spiking one.

The converted model takes ``(batch, time, *input_shape)``: the input is shown
at every step (a constant input current), every ReLU becomes a
``SpikingActivation("relu")``, and the output is read out over time.

How the time axis is handled: ``Dense``, ``SpikingActivation``, ``Add``,
``Average``, ``Concatenate`` and the rescalings broadcast over it natively;
every other layer (convolutions, pooling, ``Flatten``, ...) is wrapped in
``keras.layers.TimeDistributed``, so the converted model holds only Keras'
own layers and the package's registered ones.

``convert`` works in three steps: it checks its arguments, calibrates the
firing-rate scales on data (with ``normalize``), and rewrites the model's
graph call by call.  See the conversion guide for what the options give on
a trained CNN.
"""

import dataclasses
import math
import numbers
import re

import keras
import numpy as np
from keras import ops

from keras_spiking._graph import model_graph, predict_tensors, producer_layer
from keras_spiking.filters import Lowpass
from keras_spiking.pooling import TemporalAvgPool
from keras_spiking.spiking_activation import NEURONS, SpikingActivation
from keras_spiking.temporal import check_time_axis, dt_value, resolve_dt

OUTPUTS = ("average", "lowpass", "last", "sequence")


@keras.saving.register_keras_serializable(package="keras_spiking")
class LastStep(keras.layers.Layer):
    """The last step of a sequence: ``(batch, time, ...) -> (batch, ...)``.

    Parameters
    ----------
    time_major : bool
        Whether the inputs are ``(time, batch, ...)`` instead of
        ``(batch, time, ...)``.
    **kwargs
        Passed to ``keras.layers.Layer``.
    """

    def __init__(self, time_major=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(time_major, bool):
            raise TypeError(
                f"Layer '{self.name}' (LastStep) expects `time_major` to be "
                f"True or False; got {time_major!r}."
            )
        self.time_major = time_major

    def build(self, input_shape):
        """Check that ``input_shape`` has a time axis (no weights)."""
        check_time_axis(self, input_shape)

    def call(self, inputs):
        """The last step of ``inputs``."""
        return inputs[-1] if self.time_major else inputs[:, -1]

    def compute_output_shape(self, input_shape):
        """``input_shape`` without its time axis."""
        check_time_axis(self, input_shape)
        if self.time_major:
            return tuple(input_shape[1:])
        return (input_shape[0], *input_shape[2:])

    def get_config(self):
        """The layer's configuration, with ``time_major``."""
        config = super().get_config()
        config["time_major"] = self.time_major
        return config


# Layer types, by how they are converted.
_LINEAR = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
)
_PER_STEP = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.BatchNormalization,  # when it cannot be folded
)
_MAX_POOLING = {
    keras.layers.MaxPooling1D: keras.layers.AveragePooling1D,
    keras.layers.MaxPooling2D: keras.layers.AveragePooling2D,
    keras.layers.GlobalMaxPooling1D: keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalMaxPooling2D: keras.layers.GlobalAveragePooling2D,
}
_REMOVED = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
)
_ACTIVATIONS = (keras.layers.Activation, keras.layers.ReLU)
_SUPPORTED = (
    "InputLayer, Dense, Conv1D, Conv2D, DepthwiseConv2D, SeparableConv2D, "
    "AveragePooling1D/2D, MaxPooling1D/2D (with max_to_avg_pool=True), "
    "GlobalAveragePooling1D/2D, GlobalMaxPooling1D/2D (with "
    "max_to_avg_pool=True), Flatten, Reshape, ZeroPadding1D/2D, Dropout (and "
    "SpatialDropout, GaussianNoise, GaussianDropout: removed), "
    "BatchNormalization, Activation, ReLU, Add, Average, Concatenate"
)


def _fail(layer, what, fix):
    raise ValueError(
        f"convert: layer '{layer.name}' ({type(layer).__name__}) {what}. {fix}"
    )


def _relu_like(layer):
    """The activation (a callable) of an activation layer."""
    if isinstance(layer, keras.layers.ReLU):
        plain = (
            layer.max_value is None
            and float(layer.negative_slope) == 0.0
            and float(layer.threshold) == 0.0
        )
        if not plain:
            _fail(
                layer,
                f"is a ReLU with max_value={layer.max_value}, negative_slope="
                f"{layer.negative_slope}, threshold={layer.threshold}; only the "
                f"plain ReLU is converted",
                "Replace it with Activation('relu') (and retrain), or give the "
                "model a plain ReLU.",
            )
        return keras.activations.relu
    return layer.activation


def _activation_name(fn):
    try:
        return keras.activations.serialize(fn)
    except (ValueError, TypeError):
        return getattr(fn, "__name__", repr(fn))


def _is_linear(fn):
    return fn is None or fn is keras.activations.linear


def _holds_activation(layer):
    """Whether ``layer``'s output is an activation that may become spiking."""
    if isinstance(layer, _ACTIVATIONS):
        return True
    return isinstance(layer, _LINEAR) and not _is_linear(layer.activation)


# ---------------------------------------------------------------- folding --


def fold_batch_norm(layer, batch_norm):
    r"""Weights of ``layer`` (Dense or a convolution) with ``batch_norm`` folded in.

    At inference ``BatchNormalization`` is the per-channel affine map

    .. math::

        y = \gamma \frac{z - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta
          = a z + c, \quad a = \frac{\gamma}{\sqrt{\sigma^2 + \epsilon}},
          \quad c = \beta - a \mu

    so with ``z = W x + b``: ``W' = W a`` (each output channel's kernel
    scaled by its ``a``) and ``b' = a b + c``.  For ``SeparableConv2D`` ``a``
    scales the pointwise kernel.

    Returns
    -------
    list of numpy arrays
        The folded weights of ``layer``, always with a bias.
    """
    weights = [np.asarray(w, np.float64) for w in layer.get_weights()]
    params = {
        w.path.rsplit("/", 1)[-1]: np.asarray(ops.convert_to_numpy(w), np.float64)
        for w in batch_norm.weights
    }
    mean, variance = params["moving_mean"], params["moving_variance"]
    gamma = params.get("gamma", np.ones_like(mean))
    beta = params.get("beta", np.zeros_like(mean))
    a = gamma / np.sqrt(variance + batch_norm.epsilon)
    c = beta - a * mean
    if isinstance(layer, keras.layers.SeparableConv2D):
        depthwise, pointwise = weights[0], weights[1]
        bias = weights[2] if layer.use_bias else np.zeros(pointwise.shape[-1])
        out = [depthwise, pointwise * a, a * bias + c]
    elif isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel = weights[0]
        shape = kernel.shape
        bias = weights[1] if layer.use_bias else np.zeros(shape[2] * shape[3])
        flat = kernel.reshape(shape[0], shape[1], -1) * a
        out = [flat.reshape(shape), a * bias + c]
    else:
        kernel = weights[0]
        bias = weights[1] if layer.use_bias else np.zeros(kernel.shape[-1])
        out = [kernel * a, a * bias + c]
    return [w.astype(np.float32) for w in out]


def _batch_norm_after(call, graph):
    """The BatchNormalization call that alone takes ``call``'s output, if any.

    Only one that normalises the channels of a linear ``call`` (without
    activation) counts; None otherwise.
    """
    layer = call.layer
    if not isinstance(layer, _LINEAR) or not _is_linear(layer.activation):
        return None
    tensor = call.outputs[0]
    users = graph.consumers(tensor)
    if len(users) != 1 or graph.is_output(tensor):
        return None
    bn = users[0].layer
    if not isinstance(bn, keras.layers.BatchNormalization):
        return None
    rank = len(tensor.shape)
    channels_last = getattr(layer, "data_format", "channels_last") == "channels_last"
    if not isinstance(bn.axis, int) or bn.axis % rank != rank - 1 or not channels_last:
        return None
    return users[0]


def _same_folding(layer, batch_norms):
    """Whether folding each of ``batch_norms`` into ``layer`` gives the same weights.

    If so, one set of shared weights is exact for every call.
    """
    others = [bn for bn in batch_norms if bn is not batch_norms[0]]
    if not others:
        return True
    first = fold_batch_norm(layer, batch_norms[0])
    for bn in others:
        folded = fold_batch_norm(layer, bn)
        if not all(np.array_equal(a, b) for a, b in zip(first, folded, strict=True)):
            return False
    return True


def _fold_plan(graph):
    """Which BatchNormalization calls are folded into the layer before them.

    A layer's weights are shared by all its calls, so its BatchNormalization
    is folded only if every call of the layer is followed by one that folds
    to the same weights (the same layer, or one with the same statistics);
    otherwise every one of them stays a per-step layer.

    Returns
    -------
    (dict, set)
        ``{id(layer): BatchNormalization layer folded into it}``, and the ids
        of the graph nodes of the folded BatchNormalization calls.
    """
    calls_of = {}
    for call in graph.calls:
        if isinstance(call.layer, _LINEAR):
            calls_of.setdefault(id(call.layer), []).append(call)
    folds, folded_nodes = {}, set()
    for calls in calls_of.values():
        after = [_batch_norm_after(call, graph) for call in calls]
        if any(bn is None for bn in after):
            continue
        layer = calls[0].layer
        if _same_folding(layer, [bn.layer for bn in after]):
            folds[id(layer)] = after[0].layer
            folded_nodes.update(id(bn.node) for bn in after)
    return folds, folded_nodes


# ------------------------------------------------------- argument checks --


@dataclasses.dataclass(frozen=True)
class _Options:
    """``convert``'s arguments, checked."""

    output: str
    synapse: float | None
    dt: object
    default_scale: float
    layer_scales: dict
    percentile: float | None
    swaps: list
    max_to_avg_pool: bool
    spiking: bool
    spiking_aware_training: bool
    seed: int | None
    initial_voltage: object
    neuron: str
    n_steps: int | None
    name: str | None

    def scale(self, layer_name):
        """The firing-rate scale given for the layer named ``layer_name``."""
        return self.layer_scales.get(layer_name, self.default_scale)


def _check_output(output, synapse):
    if not isinstance(output, str) or output not in OUTPUTS:
        raise ValueError(
            f"convert expects `output` to be one of {OUTPUTS}; got {output!r}."
        )
    if output == "lowpass":
        if not _is_real(synapse) or not synapse > 0 or not math.isfinite(synapse):
            raise ValueError(
                f"convert with output='lowpass' needs `synapse`, the filter's "
                f"time constant in seconds (> 0); got {synapse!r}."
            )
        return float(synapse)
    if synapse is not None:
        raise ValueError(
            f"convert uses `synapse` only with output='lowpass'; got "
            f"synapse={synapse!r} with output={output!r}."
        )
    return None


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_initial_voltage(initial_voltage):
    if isinstance(initial_voltage, str) and initial_voltage == "uniform":
        return initial_voltage
    if _is_real(initial_voltage) and 0 <= initial_voltage < 1:
        return float(initial_voltage)
    raise ValueError(
        f"convert expects `initial_voltage` to be 'uniform' or a float in "
        f"[0, 1); got {initial_voltage!r}."
    )


def _check_bool(argument, value):
    if not isinstance(value, bool):
        raise TypeError(
            f"convert expects `{argument}` to be True or False; got {value!r}."
        )
    return value


def _check_seed(seed):
    if seed is not None and not _is_int(seed):
        raise TypeError(f"convert expects `seed` to be an int or None; got {seed!r}.")
    return None if seed is None else int(seed)


def _check_neuron(neuron):
    if not isinstance(neuron, str) or neuron not in NEURONS:
        raise ValueError(
            f"convert expects `neuron` to be one of {NEURONS}; got {neuron!r}."
        )
    return neuron


def _check_n_steps(n_steps):
    if n_steps is None:
        return None
    if not _is_int(n_steps):
        raise TypeError(
            f"convert expects `n_steps` to be a positive int or None; got "
            f"{n_steps!r} of type {type(n_steps).__name__}."
        )
    if n_steps < 1:
        raise ValueError(
            f"convert expects `n_steps` to be a positive int or None; got {n_steps}."
        )
    return int(n_steps)


def _check_name(name):
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(
            f"convert expects `name` to be a non-empty string or None; got {name!r}."
        )
    return name


def _check_scale(label, value):
    if not _is_real(value):
        raise TypeError(f"convert: {label} must be a float; got {value!r}.")
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"convert: {label} must be a finite float > 0; got {value!r}.")
    return float(value)


def _check_scales(scale_firing_rates):
    """``(default scale, {layer name: scale})``."""
    if isinstance(scale_firing_rates, dict):
        scales = {}
        for key, value in scale_firing_rates.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"convert: `scale_firing_rates` keys must be layer names "
                    f"(strings); got {key!r}."
                )
            scales[key] = _check_scale(f"`scale_firing_rates[{key!r}]`", value)
        return 1.0, scales
    if not _is_real(scale_firing_rates):
        raise TypeError(
            f"convert expects `scale_firing_rates` to be a float or a dict from "
            f"layer name to float; got {scale_firing_rates!r}."
        )
    return _check_scale("`scale_firing_rates`", scale_firing_rates), {}


def _percentile(normalize):
    if normalize == "max":
        return 100.0
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*%\s*", str(normalize))
    if not isinstance(normalize, str) or match is None:
        raise ValueError(
            f"convert expects `normalize` to be None, 'max' or a percentile "
            f"string such as '99.9%'; got {normalize!r}."
        )
    value = float(match.group(1))
    if not 0 < value <= 100:
        raise ValueError(
            f"convert expects the `normalize` percentile in (0, 100]; got "
            f"{normalize!r}."
        )
    return value


def _check_normalize(normalize, calibration_data):
    """The percentile of ``normalize`` (None without normalisation)."""
    if normalize is None:
        if calibration_data is not None:
            raise ValueError(
                "convert uses `calibration_data` only with `normalize` ('max' or "
                "a percentile such as '99.9%'); got calibration_data with "
                "normalize=None."
            )
        return None
    percentile = _percentile(normalize)
    if calibration_data is None:
        raise ValueError(
            f"convert with normalize={normalize!r} needs `calibration_data`: "
            f"inputs of the ANN (batch, *input_shape) to measure its "
            f"activations on."
        )
    return percentile


def _check_swap_value(key, value, neuron):
    if isinstance(value, keras.layers.Layer):
        return
    try:
        fn = keras.activations.get(value)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"convert: `swap_activations[{key!r}]` must be a keras.layers.Layer "
            f"or an activation keras.activations.get accepts; got {value!r}."
        ) from error
    if neuron == "if" and fn is not keras.activations.relu:
        raise ValueError(
            f"convert: `swap_activations[{key!r}]` is {value!r}, but "
            f"neuron='if' (integrate-and-fire) neurons fire at the rate 'relu' "
            f"only. Map it to 'relu', to a keras.layers.Layer, or pass "
            f"neuron='rate'."
        )


def _check_swaps(swap_activations, neuron):
    """``swap_activations`` as a list of ``(activation callable, value)``."""
    if swap_activations is None:
        return []
    if not isinstance(swap_activations, dict):
        raise TypeError(
            f"convert expects `swap_activations` to be a dict from activation "
            f"(name or callable) to replacement; got {swap_activations!r}."
        )
    swaps = []
    for key, value in swap_activations.items():
        try:
            fn = keras.activations.get(key)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"convert: `swap_activations` key {key!r} is not an activation "
                f"keras.activations.get accepts."
            ) from error
        _check_swap_value(key, value, neuron)
        swaps.append((fn, value))
    return swaps


def _check_arguments(
    output,
    synapse,
    dt,
    scale_firing_rates,
    normalize,
    calibration_data,
    swap_activations,
    max_to_avg_pool,
    spiking,
    spiking_aware_training,
    seed,
    initial_voltage,
    neuron,
    n_steps,
    name,
):
    """Every argument of ``convert`` but the model and the data, checked."""
    neuron = _check_neuron(neuron)
    default_scale, layer_scales = _check_scales(scale_firing_rates)
    return _Options(
        output=output,
        synapse=_check_output(output, synapse),
        dt=resolve_dt(dt, "convert"),
        default_scale=default_scale,
        layer_scales=layer_scales,
        percentile=_check_normalize(normalize, calibration_data),
        swaps=_check_swaps(swap_activations, neuron),
        max_to_avg_pool=_check_bool("max_to_avg_pool", max_to_avg_pool),
        spiking=_check_bool("spiking", spiking),
        spiking_aware_training=_check_bool(
            "spiking_aware_training", spiking_aware_training
        ),
        seed=_check_seed(seed),
        initial_voltage=_check_initial_voltage(initial_voltage),
        neuron=neuron,
        n_steps=_check_n_steps(n_steps),
        name=_check_name(name),
    )


def _calibration_array(tensor, value, label):
    """One input's calibration data, checked against the model input ``tensor``."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:
        raise TypeError(
            f"convert expects {label} to be an array; got {type(value).__name__} "
            f"({error})."
        ) from error
    expected = tuple(tensor.shape[1:])
    shape = array.shape[1:]
    fits = array.ndim == len(expected) + 1 and all(
        want is None or want == got for want, got in zip(expected, shape, strict=True)
    )
    if not fits or array.dtype.kind not in "biuf" or len(array) == 0:
        raise ValueError(
            f"convert expects {label} to be inputs of the ANN, numbers of shape "
            f"(batch, {', '.join(str(d) for d in expected)}) with batch >= 1 (no "
            f"time axis); got {array.dtype} data of shape {array.shape}."
        )
    return array


def _check_calibration(graph, calibration_data):
    """``calibration_data`` as one array per model input (one or a list)."""
    inputs = graph.inputs
    if len(inputs) == 1:
        return _calibration_array(inputs[0], calibration_data, "`calibration_data`")
    if not isinstance(calibration_data, (list, tuple)) or len(calibration_data) != len(
        inputs
    ):
        raise ValueError(
            f"convert expects `calibration_data` to be a list of {len(inputs)} "
            f"arrays, one per input of model '{graph.model.name}'; got "
            f"{type(calibration_data).__name__}."
        )
    arrays = [
        _calibration_array(tensor, value, f"`calibration_data[{i}]`")
        for i, (tensor, value) in enumerate(zip(inputs, calibration_data, strict=True))
    ]
    if len({len(a) for a in arrays}) > 1:
        raise ValueError(
            f"convert expects every array of `calibration_data` to hold the same "
            f"number of samples; got {[len(a) for a in arrays]}."
        )
    return arrays


# ------------------------------------------------------------ calibration --


def activation_scales(model, sites, calibration_data, percentile, batch_size=None):
    """The ``percentile`` of every site's ANN activations over the data.

    ``sites`` maps names to a symbolic tensor of ``model``, or a list of them
    (the calls of a shared layer); returns a dict of floats: the percentile
    of all the values of those tensors, over samples and neurons, zeros
    included.
    """
    names = list(sites)
    groups = [s if isinstance(s, (list, tuple)) else [s] for s in sites.values()]
    tensors = [tensor for group in groups for tensor in group]
    values = iter(predict_tensors(model, tensors, calibration_data, batch_size))
    scales = {}
    for name, group in zip(names, groups, strict=True):
        flat = [np.ravel(next(values)).astype(np.float64) for _ in group]
        scales[name] = float(np.percentile(np.concatenate(flat), percentile))
    return scales


def _rate_scales(model, graph, options, calibration_data):
    """Each layer's firing-rate scale: as given, or calibrated (``normalize``).

    With ``normalize`` a layer's scale is its given scale divided by
    ``lambda * dt``, ``lambda`` being the percentile of the layer's ANN
    activations on the data (over all its calls).

    Returns
    -------
    dict
        ``{layer name: scale}`` for the calibrated layers (the others have
        ``options.scale(name)``).
    """
    if options.percentile is None:
        return {}
    dt_now = dt_value(options.dt)
    if not dt_now > 0:
        raise ValueError(
            f"convert with `normalize` needs dt > 0 at conversion time, to "
            f"turn activations into spikes per step; got dt={dt_now}."
        )
    sites = {}
    for call in graph.calls:
        if not call.is_input and _holds_activation(call.layer):
            sites.setdefault(call.layer.name, []).append(call.outputs[0])
    data = _check_calibration(graph, calibration_data)
    lambdas = activation_scales(model, sites, data, options.percentile)
    return {
        name: options.scale(name) / (lam * dt_now)
        for name, lam in lambdas.items()
        if lam > 0
    }


# --------------------------------------------------------------- rewrite --


class _Builder:
    """Creates the new layers, one per old layer (shared layers stay shared)."""

    def __init__(self, options, scales, folds):
        self.options = options
        self.scales = scales
        self.folds = folds
        self.layers = {}
        self.count = 0
        self.sites = []
        self.rules = (
            (_REMOVED, self.removed),
            (_ACTIVATIONS, self.activation_layer),
            ((keras.layers.Add, keras.layers.Average), self.merge),
            (keras.layers.Concatenate, self.concatenate),
            (tuple(_MAX_POOLING), self.max_pooling),
            (_LINEAR, self.linear),
            (_PER_STEP, self.per_step),
        )

    def _cached(self, key, make):
        if key not in self.layers:
            self.layers[key] = make()
        return self.layers[key]

    def _copy(self, layer, cls=None, **changes):
        config = dict(layer.get_config(), **changes)
        return (cls or type(layer)).from_config(config)

    def convert(self, layer, args):
        """The new layers' output for one call of ``layer`` on ``args``."""
        if isinstance(layer, keras.Model):
            _fail(
                layer,
                "is a nested model",
                "Convert a model whose layers are not models: rebuild it with "
                "the inner model's layers called directly.",
            )
        for types, rule in self.rules:
            if isinstance(layer, types):
                return rule(layer, args)
        _fail(
            layer,
            "cannot be converted to a spiking layer",
            f"Supported layers: {_SUPPORTED}. Replace it in the ANN (and "
            f"retrain) or convert the part of the model before it.",
        )

    def removed(self, layer, args):
        return args[0]

    def activation_layer(self, layer, args):
        return self.activation(args[0], _relu_like(layer), layer)

    def merge(self, layer, args):
        return self._cached(id(layer), lambda: self._copy(layer))(args)

    def concatenate(self, layer, args):
        axis = layer.axis if layer.axis < 0 else layer.axis + 1
        return self._cached(id(layer), lambda: self._copy(layer, axis=axis))(args)

    def max_pooling(self, layer, args):
        if not self.options.max_to_avg_pool:
            _fail(
                layer,
                "is max pooling, which spike trains cannot compute",
                "Pass max_to_avg_pool=True to convert it to average "
                "pooling (best retrain the ANN with average pooling first).",
            )
        target = next(v for k, v in _MAX_POOLING.items() if isinstance(layer, k))
        config = layer.get_config()
        if "pool_size" not in config:  # global pooling
            kept = ("name", "data_format", "keepdims", "dtype")
            config = {k: v for k, v in config.items() if k in kept}
        new = self._cached(
            id(layer),
            lambda: keras.layers.TimeDistributed(
                target.from_config(config), name=layer.name
            ),
        )
        return new(args[0])

    def per_step(self, layer, args):
        """A layer applied at every step, with the ANN's weights."""
        new = self._cached(
            id(layer),
            lambda: keras.layers.TimeDistributed(self._copy(layer), name=layer.name),
        )
        fresh = not new.built
        result = new(args[0])
        if fresh and layer.weights:
            new.layer.set_weights(layer.get_weights())
        return result

    def linear(self, layer, args):
        """Dense or a convolution, then its activation.

        Its BatchNormalization is folded in if the fold plan says so.
        """
        bn = self.folds.get(id(layer))

        def make():
            changes = {"activation": "linear"}
            if bn is not None:
                changes["use_bias"] = True
            new = self._copy(layer, **changes)
            if isinstance(layer, keras.layers.Dense):
                return new
            return keras.layers.TimeDistributed(new, name=layer.name)

        new = self._cached(id(layer), make)
        fresh = not new.built
        y = new(args[0])
        if fresh:
            inner = new.layer if isinstance(new, keras.layers.TimeDistributed) else new
            weights = layer.get_weights() if bn is None else fold_batch_norm(layer, bn)
            inner.set_weights(weights)
        return self.activation(y, layer.activation, layer, fused=True)

    def activation(self, x, fn, layer, fused=False):
        for key, value in self.options.swaps:
            if key is fn:
                if isinstance(value, keras.layers.Layer):
                    return value(x)
                return self.spiking_layer(x, value, layer, fused)
        if _is_linear(fn):
            return x
        if fn is keras.activations.relu:
            return self.spiking_layer(x, "relu", layer, fused)
        name = _activation_name(fn)
        _fail(
            layer,
            f"has the activation '{name}', which has no spiking version here",
            f"Map it with swap_activations, e.g. swap_activations="
            f"{{'{name}': 'relu'}} for spiking neurons with another rate "
            f"function, or {{'{name}': keras.layers.Activation('{name}')}} to "
            f"keep it non-spiking (applied at every step).",
        )

    def _neurons(self, activation, name):
        options = self.options
        if not options.spiking:
            return keras.layers.Activation(activation, name=name)
        seed = None if options.seed is None else options.seed + self.count
        self.count += 1
        return SpikingActivation(
            activation,
            dt=options.dt,
            seed=seed,
            initial_voltage=options.initial_voltage,
            spiking_aware_training=options.spiking_aware_training,
            neuron=options.neuron,
            name=name,
        )

    def spiking_layer(self, x, activation, layer, fused):
        """``Rescaling(s)``, the spiking neurons, ``Rescaling(1 / s)``."""
        base = f"{layer.name}_spiking" if fused else layer.name
        scale = self.scales.get(layer.name, self.options.scale(layer.name))
        self.sites.append(layer.name)
        if scale != 1.0:
            up = self._cached(
                (id(layer), "in"),
                lambda: keras.layers.Rescaling(scale, name=f"{base}_scale_in"),
            )
            x = up(x)
        y = self._cached(
            (id(layer), "spiking"), lambda: self._neurons(activation, base)
        )(x)
        if scale != 1.0:
            down = self._cached(
                (id(layer), "out"),
                lambda: keras.layers.Rescaling(1.0 / scale, name=f"{base}_scale_out"),
            )
            y = down(y)
        return y

    def readout(self, x):
        output = self.options.output
        if output == "average":
            return TemporalAvgPool()(x)
        if output == "lowpass":
            return Lowpass(
                self.options.synapse, dt=self.options.dt, return_sequences=False
            )(x)
        if output == "last":
            return LastStep()(x)
        return x

    def check_scale_names(self, model):
        """Every layer named in ``scale_firing_rates`` got spiking neurons."""
        unknown = set(self.options.layer_scales) - set(self.sites)
        if unknown:
            raise ValueError(
                f"convert: `scale_firing_rates` names {sorted(unknown)}, which "
                f"hold no converted activation in model '{model.name}'; the keys "
                f"are names of layers holding a ReLU: {sorted(set(self.sites))}."
            )


def _rewrite(graph, builder, folded_nodes):
    """The new model: every call of the old graph, converted in order."""
    options = builder.options
    mapped, new_inputs = {}, []
    for tensor in graph.inputs:
        new = keras.Input(
            (options.n_steps, *tensor.shape[1:]),
            dtype=tensor.dtype,
            name=producer_layer(tensor).name,
        )
        mapped[id(tensor)] = new
        new_inputs.append(new)
    for call in graph.calls:
        if call.is_input:
            continue
        args = [mapped[id(t)] for t in call.inputs]
        if id(call.node) in folded_nodes:
            result = args[0]
        else:
            result = builder.convert(call.layer, args)
        for old in call.outputs:
            mapped[id(old)] = result
    new_outputs = [builder.readout(mapped[id(t)]) for t in graph.outputs]
    builder.check_scale_names(graph.model)
    return keras.Model(
        new_inputs if len(new_inputs) > 1 else new_inputs[0],
        new_outputs if len(new_outputs) > 1 else new_outputs[0],
        name=options.name or f"{graph.model.name}_spiking",
    )


# ---------------------------------------------------------------- convert --


def convert(
    model,
    *,
    output="average",
    synapse=None,
    dt=None,
    scale_firing_rates=1.0,
    normalize=None,
    calibration_data=None,
    swap_activations=None,
    max_to_avg_pool=False,
    spiking=True,
    spiking_aware_training=True,
    seed=None,
    initial_voltage="uniform",
    neuron="if",
    n_steps=None,
    name=None,
):
    r"""Convert a trained Keras model into a spiking one.

    The new model takes ``(batch, time, *input_shape)`` (the input shown at
    every step, e.g. the same image ``n`` times) and runs every layer on every
    step.  Each ReLU (an ``Activation("relu")`` or ``ReLU()`` layer, or
    ``activation="relu"`` of a ``Dense``/convolution) becomes a
    ``SpikingActivation("relu")``, whose spike rate (Hz) is the ReLU's output,
    so the time average of the spikes approximates the ANN's activation.
    Weights are copied; ``BatchNormalization`` right after a ``Dense`` or
    convolution (without activation) is folded into its weights
    (``fold_batch_norm``), otherwise kept as a per-step layer.  A layer
    called more than once shares its weights between the calls, so its
    ``BatchNormalization`` is folded only if every call is followed by one
    with the same statistics (e.g. the same ``BatchNormalization`` layer).
    ``Dropout`` and noise layers are removed; max pooling becomes average
    pooling on request (``max_to_avg_pool``).

    Firing-rate scaling.  A spiking layer with scale ``s`` is

    .. math::

        y = \frac{1}{s}\,\mathrm{spikes}(s\,x), \qquad
        \langle y \rangle \approx \frac{1}{s}\,\mathrm{relu}(s\,x)
        = \mathrm{relu}(x)

    (``s x`` in, ``1/s`` out, as ``keras.layers.Rescaling`` layers around the
    ``SpikingActivation``): the same function, ``s`` times more spikes.  With
    ``normalize`` (Rueckauer et al. 2017, "Conversion of continuous-valued
    deep networks to efficient event-driven networks"; SpikingJelly's
    ``ann2snn`` recipe) each layer gets ``s_l = scale_l / (\lambda_l\,dt)``,
    where ``\lambda_l`` is the chosen percentile of that layer's ANN
    activations over ``calibration_data``: the percentile activation then
    fires ``scale_l`` spikes per step (one with the default scale).  This is
    the per-layer rate-scale form of their weight normalisation
    ``W_l \leftarrow W_l \lambda_{l-1}/\lambda_l``,
    ``b_l \leftarrow b_l/\lambda_l`` (the two give the same spikes for ReLU,
    which is positively homogeneous), chosen because it leaves the weights
    as trained, keeps every layer's output in the ANN's units (so no final
    rescaling, and skip connections and concatenations of layers with
    different ``\lambda`` stay correct), and works for any swapped
    activation.

    Parameters
    ----------
    model : keras.Model
        A built Sequential or functional model.
    output : {"average", "lowpass", "last", "sequence"}
        Read-out of each model output: its mean over time
        (``TemporalAvgPool``), a ``Lowpass(synapse)`` filter's last step, the
        last step, or the whole sequence ``(batch, time, ...)``.
    synapse : float, optional
        Time constant (s) of the ``Lowpass`` read-out; needed (only) with
        ``output="lowpass"``.
    dt : float or keras.Variable, optional
        Time step (s) of the spiking layers (and the filter);
        ``keras_spiking.default.dt`` if None.
    scale_firing_rates : float or dict
        ``s`` above: one float for all spiking layers, or a dict from the
        ANN layer name holding the activation (the ``Activation``/``ReLU``
        layer, or the ``Dense``/convolution with ``activation="relu"``) to a
        float (missing layers: 1).
    normalize : {None, "max", "<p>%"}
        Data-based normalisation: scale every spiking layer so that the
        maximum, or the ``p``-th percentile (e.g. ``"99.9%"``), of its ANN
        activations on ``calibration_data`` (over all the layer's calls)
        gives ``scale_firing_rates`` spikes per step.  Uses ``dt``'s value at
        conversion time.
    calibration_data : array-like, optional
        Inputs of the ANN, ``(batch, *input_shape)`` (no time axis), a list
        of such arrays for a model with several inputs; needed (only) with
        ``normalize``.
    swap_activations : dict, optional
        What to do with activations other than ReLU (and linear), keyed by
        the activation's name or the callable itself.  A value that is a
        ``keras.layers.Layer`` is used as is on ``(batch, time, ...)``
        (e.g. ``keras.layers.Activation("softmax")`` to keep a non-spiking
        softmax per step; use each instance for one layer only); any other
        value is an activation for ``SpikingActivation`` (e.g.
        ``{"relu6": "relu"}``; with ``neuron="if"`` only ``"relu"``).  It
        can also override ``"relu"``.
    max_to_avg_pool : bool
        Convert max pooling (also global) to average pooling.  Without it,
        max pooling raises an error (a max of spike trains is not the spike
        train of the max).
    spiking : bool
        False gives the rate model: the same network with the plain
        activations in place of spiking neurons (all scalings kept), whose
        output equals the ANN's at every step.  For checks.
    spiking_aware_training, seed
        Passed to every ``SpikingActivation``; the ``i``-th spiking layer
        (in graph order) gets ``seed + i`` (then its initial voltages, uniform
        in ``[0, 1)`` per neuron, are a fixed function of the seed).
    initial_voltage : {"uniform"} or float
        Passed to every ``SpikingActivation``: random initial voltages
        (``"uniform"``, the default, which spreads the first spikes over
        time), or one value in ``[0, 1)`` for every neuron.  NIR neurons start
        at 0, so ``initial_voltage=0.0`` gives a model that
        ``keras_spiking.nir.export`` writes exactly (``"uniform"`` needs
        ``approximate=True``).
    neuron : {"rate", "if"}
        ``SpikingActivation``'s neuron model.  ``"rate"`` integrates
        ``relu(x_t)`` at every step; ``"if"`` (integrate-and-fire, ReLU only)
        integrates ``x_t`` itself, negative values included.  For a constant
        input (the first layer) they agree; deeper layers receive spike
        trains, whose per-step input fluctuates around its mean, and
        rectifying every step gives ``mean(relu(x_t)) >= relu(mean(x_t))``:
        the rate neurons fire too much, by an amount that does not shrink
        with more steps (only with more spikes per step), while the IF
        neurons' rates converge to ``relu`` of the mean input, as in
        Rueckauer et al.'s conversion.  So ``"if"`` is the default here
        (unlike ``SpikingActivation``'s, which is ``"rate"``); it is also
        NIR's ``IF`` neuron.  See the conversion guide for the accuracies
        each choice reaches.
    n_steps : int, optional
        Fix the number of steps of the new model's input (None: any).
    name : str, optional
        Name of the new model (default: the old name + ``"_spiking"``).

    Returns
    -------
    keras.Model
        A functional model, ``(batch, time, *input_shape)`` in.

    Raises
    ------
    TypeError
        For a model that is not a ``keras.Model``, or an argument of the
        wrong type.
    ValueError
        For a model without a graph of layers (subclassed), an unsupported
        layer or activation (naming it and what to do), or a bad argument
        value (naming the argument, the value and what is allowed).
    """
    options = _check_arguments(
        output,
        synapse,
        dt,
        scale_firing_rates,
        normalize,
        calibration_data,
        swap_activations,
        max_to_avg_pool,
        spiking,
        spiking_aware_training,
        seed,
        initial_voltage,
        neuron,
        n_steps,
        name,
    )
    graph = model_graph(model, "convert")
    scales = _rate_scales(model, graph, options, calibration_data)
    folds, folded_nodes = _fold_plan(graph)
    builder = _Builder(options, scales, folds)
    return _rewrite(graph, builder, folded_nodes)


__all__ = ["LastStep", "activation_scales", "convert", "fold_batch_norm"]
