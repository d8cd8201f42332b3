r"""``convert``: turn a trained (non-spiking) Keras model into a spiking one.

The converted model takes ``(batch, time, *input_shape)``: the input is shown
at every step (a constant input current), every ReLU becomes a
``SpikingActivation("relu")``, and the output is read out over time.

How the time axis is handled: ``Dense``, ``SpikingActivation``, ``Add``,
``Average``, ``Concatenate`` and the rescalings broadcast over it natively;
every other layer (convolutions, pooling, ``Flatten``, ...) is wrapped in
``keras.layers.TimeDistributed``.  A wrapper that folds time into the batch
axis (one call on ``(batch * time, ...)``) was measured against it on a small
CNN (100 steps, batch 32, one thread, a loaded machine): 1.11 / 1.67 / 1.58 s
against TimeDistributed's 0.70 / 1.71 / 1.34 s per predict on TensorFlow /
PyTorch / JAX, so Keras' own wrapper stayed (no custom layer to serialize).
"""

import re

import keras
import numpy as np
from keras import ops

from keras_spiking.filters import Lowpass
from keras_spiking.pooling import TemporalAvgPool
from keras_spiking.spiking_activation import SpikingActivation
from keras_spiking.temporal import check_time_axis, dt_value, resolve_dt

OUTPUTS = ("average", "lowpass", "last", "sequence")


@keras.saving.register_keras_serializable(package="keras_spiking")
class LastStep(keras.layers.Layer):
    """The last step of a sequence: ``(batch, time, ...) -> (batch, ...)``.

    Parameters
    ----------
    **kwargs
        Passed to ``keras.layers.Layer``.
    """

    def build(self, input_shape):
        check_time_axis(self, input_shape)

    def call(self, inputs):
        return inputs[:, -1]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *input_shape[2:])


# Layer types, by how they are converted.
_LINEAR = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
)
_FOLDED = (
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


# ------------------------------------------------------------------ graph --


def _graph(model):
    """The model's nodes in topological order, and each tensor's consumers."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"convert expects a keras.Model (Sequential or functional); got "
            f"{model!r} of type {type(model).__name__}."
        )
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise ValueError(
            f"convert: model '{model.name}' has no graph of layers to convert "
            f"(a subclassed model, or a Sequential model that was never "
            f"built). Build it with keras.Input(...) as its first layer, or "
            f"rewrite it as a Sequential or functional model."
        )
    order, seen, consumers = [], set(), {}

    def visit(tensor):
        op, node_index, _ = tensor._keras_history
        node = op._inbound_nodes[node_index]
        if id(node) in seen:
            return
        seen.add(id(node))
        for parent in node.arguments.keras_tensors:
            consumers.setdefault(id(parent), []).append(node)
            visit(parent)
        order.append(node)

    for tensor in outputs:
        visit(tensor)
    return inputs, outputs, order, consumers


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


# ---------------------------------------------------------------- folding --


def fold_batch_norm(layer, batch_norm):
    """Weights of ``layer`` (Dense or a convolution) with ``batch_norm`` folded in.

    At inference ``BatchNormalization`` is the per-channel affine map

    .. math::

        y = \\gamma \\frac{z - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta
          = a z + c, \\quad a = \\frac{\\gamma}{\\sqrt{\\sigma^2 + \\epsilon}},
          \\quad c = \\beta - a \\mu

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


def _can_fold(node, consumers, outputs):
    """The BatchNormalization node that ``node``'s output feeds, if foldable."""
    layer = node.operation
    if not isinstance(layer, _LINEAR) or not _is_linear(layer.activation):
        return None
    tensor = node.outputs[0]
    users = consumers.get(id(tensor), [])
    if len(users) != 1 or any(tensor is t for t in outputs):
        return None
    bn = users[0].operation
    if not isinstance(bn, keras.layers.BatchNormalization):
        return None
    axis = bn.axis if isinstance(bn.axis, int) else None
    rank = len(tensor.shape)
    channels_last = getattr(layer, "data_format", "channels_last") == "channels_last"
    if axis is None or axis % rank != rank - 1 or not channels_last:
        return None
    return users[0]


# -------------------------------------------------------------- normalize --


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


def activation_scales(model, sites, calibration_data, percentile, batch_size=None):
    """The ``percentile`` of every site's ANN activations over the data.

    ``sites`` maps names to symbolic tensors of ``model``; returns a dict of
    floats (the percentile of all the values of that tensor, over samples
    and neurons, zeros included).
    """
    if not sites:
        return {}
    names = list(sites)
    inputs = model.inputs if len(model.inputs) > 1 else model.inputs[0]
    probe = keras.Model(inputs, [sites[name] for name in names])
    values = probe.predict(calibration_data, batch_size=batch_size, verbose=0)
    if len(names) == 1:
        values = [values]
    return {
        name: float(np.percentile(np.asarray(v, np.float64), percentile))
        for name, v in zip(names, values, strict=True)
    }


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
    (``fold_batch_norm``), otherwise kept as a per-step layer; ``Dropout``
    and noise layers are removed; max pooling becomes average pooling on
    request (``max_to_avg_pool``).

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
        activations on ``calibration_data`` gives ``scale_firing_rates``
        spikes per step.  Uses ``dt``'s value at conversion time.
    calibration_data : array-like, optional
        Inputs of the ANN, ``(batch, *input_shape)`` (no time axis); needed
        with ``normalize``.
    swap_activations : dict, optional
        What to do with activations other than ReLU (and linear), keyed by
        the activation's name or the callable itself.  A value that is a
        ``keras.layers.Layer`` is used as is on ``(batch, time, ...)``
        (e.g. ``keras.layers.Activation("softmax")`` to keep a non-spiking
        softmax per step; use each instance for one layer only); any other
        value is an activation for ``SpikingActivation`` (e.g.
        ``{"relu6": "relu"}``).  It can also override ``"relu"``.
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
        (unlike ``SpikingActivation``'s, which is ``"rate"``): on the
        example CNN it is what brings normalised conversion to the ANN's
        accuracy (README, "Converting a trained network"); and it exports
        to NIR exactly at every depth.
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
    ValueError
        For an unsupported layer or activation (naming it and what to do),
        or a bad argument.
    """
    if output not in OUTPUTS:
        raise ValueError(
            f"convert expects `output` to be one of {OUTPUTS}; got {output!r}."
        )
    if output == "lowpass":
        if synapse is None or isinstance(synapse, bool) or not synapse > 0:
            raise ValueError(
                f"convert with output='lowpass' needs `synapse`, the filter's "
                f"time constant in seconds (> 0); got {synapse!r}."
            )
    elif synapse is not None:
        raise ValueError(
            f"convert uses `synapse` only with output='lowpass'; got "
            f"synapse={synapse!r} with output={output!r}."
        )
    dt = resolve_dt(dt, "convert")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"convert expects `seed` to be an int or None; got {seed!r}.")
    swaps = _check_swaps(swap_activations)
    inputs, outputs, order, consumers = _graph(model)
    scales = _check_scales(scale_firing_rates, order)
    per_layer = isinstance(scale_firing_rates, dict)
    if normalize is not None:
        percentile = _percentile(normalize)
        if calibration_data is None:
            raise ValueError(
                f"convert with normalize={normalize!r} needs `calibration_data`: "
                f"inputs of the ANN (batch, *input_shape) to measure its "
                f"activations on."
            )
        sites = {}
        for node in order:
            layer = node.operation
            if isinstance(layer, (keras.layers.Activation, keras.layers.ReLU)) or (
                isinstance(layer, _LINEAR) and not _is_linear(layer.activation)
            ):
                sites[layer.name] = node.outputs[0]
        lambdas = activation_scales(model, sites, calibration_data, percentile)
        dt_now = dt_value(dt)
        for key, lam in lambdas.items():
            if lam > 0:
                scales[key] = scales.get(key, 1.0) / (lam * dt_now)
    builder = _Builder(
        dt, scales, swaps, max_to_avg_pool, spiking, spiking_aware_training, seed
    )
    builder.extra = {} if neuron == "rate" else {"neuron": neuron}
    mapped = {}
    for tensor in inputs:
        shape = tuple(tensor.shape[1:])
        new = keras.Input(
            (n_steps, *shape), dtype=tensor.dtype, name=tensor._keras_history[0].name
        )
        mapped[id(tensor)] = new
    new_inputs = [mapped[id(t)] for t in inputs]
    folded_bn = set()
    for node in order:
        layer = node.operation
        if isinstance(layer, keras.layers.InputLayer):
            continue
        args = [mapped[id(t)] for t in node.arguments.keras_tensors]
        if id(layer) in folded_bn:
            result = args[0]
        else:
            bn_node = _can_fold(node, consumers, outputs)
            if bn_node is not None:
                folded_bn.add(id(bn_node.operation))
            result = builder.convert(layer, args, bn_node)
        for old in node.outputs:
            mapped[id(old)] = result
    new_outputs = [builder.readout(mapped[id(t)], output, synapse) for t in outputs]
    unknown = set(scale_firing_rates) - set(builder.sites) if per_layer else set()
    if unknown:
        raise ValueError(
            f"convert: `scale_firing_rates` names {sorted(unknown)}, which hold "
            f"no converted activation in model '{model.name}'; the keys are "
            f"names of layers holding a ReLU: {sorted(builder.sites)}."
        )
    return keras.Model(
        new_inputs if len(new_inputs) > 1 else new_inputs[0],
        new_outputs if len(new_outputs) > 1 else new_outputs[0],
        name=name or f"{model.name}_spiking",
    )


def _check_swaps(swap_activations):
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
        swaps.append((fn, value))
    return swaps


def _check_scales(scale_firing_rates, order):
    if isinstance(scale_firing_rates, dict):
        scales = {}
        for key, value in scale_firing_rates.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(
                    f"convert: `scale_firing_rates[{key!r}]` must be a float; "
                    f"got {value!r}."
                )
            scales[key] = float(value)
    elif isinstance(scale_firing_rates, (int, float)) and not isinstance(
        scale_firing_rates, bool
    ):
        default = float(scale_firing_rates)
        scales = {node.operation.name: default for node in order}
    else:
        raise TypeError(
            f"convert expects `scale_firing_rates` to be a float or a dict from "
            f"layer name to float; got {scale_firing_rates!r}."
        )
    for key, value in scales.items():
        if not value > 0:
            raise ValueError(
                f"convert: scale_firing_rates must be > 0; got {value} for {key!r}."
            )
    return scales


class _Builder:
    """Creates the new layers, one per old layer (shared layers stay shared)."""

    def __init__(self, dt, scales, swaps, max_to_avg, spiking, aware, seed):
        self.dt = dt
        self.scales = scales
        self.swaps = swaps
        self.max_to_avg = max_to_avg
        self.spiking = spiking
        self.aware = aware
        self.seed = seed
        self.layers = {}
        self.count = 0
        self.sites = []
        self.extra = {}

    def _cached(self, key, make):
        if key not in self.layers:
            self.layers[key] = make()
        return self.layers[key]

    def _copy(self, layer, cls=None, **changes):
        config = dict(layer.get_config(), **changes)
        return (cls or type(layer)).from_config(config)

    def convert(self, layer, args, bn_node):
        if isinstance(layer, _REMOVED):
            return args[0]
        if isinstance(layer, keras.Model):
            _fail(
                layer,
                "is a nested model",
                "Convert a model whose layers are not models: rebuild it with "
                "the inner model's layers called directly.",
            )
        if isinstance(layer, (keras.layers.Activation, keras.layers.ReLU)):
            return self.activation(args[0], _relu_like(layer), layer)
        if isinstance(layer, (keras.layers.Add, keras.layers.Average)):
            new = self._cached(id(layer), lambda: self._copy(layer))
            return new(args)
        if isinstance(layer, keras.layers.Concatenate):
            axis = layer.axis if layer.axis < 0 else layer.axis + 1
            new = self._cached(id(layer), lambda: self._copy(layer, axis=axis))
            return new(args)
        if type(layer) in _MAX_POOLING:
            if not self.max_to_avg:
                _fail(
                    layer,
                    "is max pooling, which spike trains cannot compute",
                    "Pass max_to_avg_pool=True to convert it to average "
                    "pooling (best retrain the ANN with average pooling first).",
                )
            target = _MAX_POOLING[type(layer)]
            config = layer.get_config()
            if "pool_size" not in config:  # global pooling
                config = {
                    k: v
                    for k, v in config.items()
                    if k in ("name", "data_format", "keepdims", "dtype")
                }
            new = self._cached(
                id(layer),
                lambda: keras.layers.TimeDistributed(
                    target.from_config(config), name=layer.name
                ),
            )
            return new(args[0])
        if isinstance(layer, _LINEAR):
            return self.linear(layer, args[0], bn_node)
        if isinstance(layer, _FOLDED):

            def make():
                wrapper = keras.layers.TimeDistributed(
                    self._copy(layer), name=layer.name
                )
                return wrapper

            new = self._cached(id(layer), make)
            fresh = not new.built
            result = new(args[0])
            if fresh and layer.weights:
                new.layer.set_weights(layer.get_weights())
            return result
        _fail(
            layer,
            "cannot be converted to a spiking layer",
            f"Supported layers: {_SUPPORTED}. Replace it in the ANN (and "
            f"retrain) or convert the part of the model before it.",
        )

    def linear(self, layer, x, bn_node):
        activation = layer.activation

        def make():
            changes = {"activation": "linear"}
            if bn_node is not None:
                changes["use_bias"] = True
            new = self._copy(layer, **changes)
            if isinstance(layer, keras.layers.Dense):
                return new
            return keras.layers.TimeDistributed(new, name=layer.name)

        new = self._cached(id(layer), make)
        fresh = not new.built
        y = new(x)
        if fresh:
            inner = new.layer if isinstance(new, keras.layers.TimeDistributed) else new
            if bn_node is not None:
                inner.set_weights(fold_batch_norm(layer, bn_node.operation))
            else:
                inner.set_weights(layer.get_weights())
        return self.activation(y, activation, layer, fused=True)

    def activation(self, x, fn, layer, fused=False):
        for key, value in self.swaps:
            if key is fn:
                if isinstance(value, keras.layers.Layer):
                    return value(x)
                return self.spiking_layer(x, value, layer, fused)
        if _is_linear(fn):
            return x
        if fn is keras.activations.relu:
            return self.spiking_layer(x, "relu", layer, fused)
        _fail(
            layer,
            f"has the activation '{_activation_name(fn)}', which has no spiking "
            f"version here",
            f"Map it with swap_activations, e.g. swap_activations="
            f"{{'{_activation_name(fn)}': 'relu'}} for spiking neurons with "
            f"another rate function, or {{'{_activation_name(fn)}': "
            f"keras.layers.Activation('{_activation_name(fn)}')}} to keep it "
            f"non-spiking (applied at every step).",
        )

    def spiking_layer(self, x, activation, layer, fused):
        base = f"{layer.name}_spiking" if fused else layer.name
        scale = self.scales.get(layer.name, 1.0)
        self.sites.append(layer.name)
        if scale != 1.0:
            up = self._cached(
                (id(layer), "in"),
                lambda: keras.layers.Rescaling(scale, name=f"{base}_scale_in"),
            )
            x = up(x)

        def make():
            if not self.spiking:
                return keras.layers.Activation(activation, name=base)
            seed = None if self.seed is None else self.seed + self.count
            self.count += 1
            return SpikingActivation(
                activation,
                dt=self.dt,
                seed=seed,
                spiking_aware_training=self.aware,
                name=base,
                **self.extra,
            )

        y = self._cached((id(layer), "spiking"), make)(x)
        if scale != 1.0:
            down = self._cached(
                (id(layer), "out"),
                lambda: keras.layers.Rescaling(1.0 / scale, name=f"{base}_scale_out"),
            )
            y = down(y)
        return y

    def readout(self, x, output, synapse):
        if output == "average":
            return TemporalAvgPool()(x)
        if output == "lowpass":
            return Lowpass(synapse, dt=self.dt, return_sequences=False)(x)
        if output == "last":
            return LastStep()(x)
        return x


__all__ = ["LastStep", "activation_scales", "convert", "fold_batch_norm"]
