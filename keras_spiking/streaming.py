"""Streaming copies of trained models: ``stateful_copy``."""

import keras

from keras_spiking.temporal import TemporalLayer


def stateful_copy(model, batch_size=1):
    """A copy of ``model`` for streaming: stateful temporal layers, fixed batch.

    Every ``keras_spiking`` layer with a time axis (``SpikingActivation``,
    ``Lowpass``, ``Alpha``, ``LIF``, ``CubaLIF``, ``ALIF``) is re-created
    with ``stateful=True``, the inputs get the fixed batch size
    ``batch_size`` (which stateful layers need), and all weights are copied
    from ``model``.  Each call of the copy continues from the states the
    previous call ended in (voltages, synaptic currents, adaptations, last
    spikes, filter states), so a sequence fed in pieces of any length gives
    the output of feeding it at once; ``reset_state()`` on the copy's layers
    (or ``reset_states(copy)``) starts a new sequence.

    The states of stateful layers are non-trainable weights (so that JAX's
    compiled ``predict`` carries them from call to call; see
    ``keras_spiking.temporal.TemporalLayer``), which is why the copy has more
    weights than ``model`` and ``copy.set_weights(model.get_weights())``
    does not apply: this function copies layer by layer instead.

    Parameters
    ----------
    model : keras.Model
        A built functional or ``Sequential`` model.
    batch_size : int
        Number of streams fed together.

    Returns
    -------
    keras.Model
        The streaming copy, its states at their initial values.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"stateful_copy expects a keras.Model; got {type(model).__name__}."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(f"stateful_copy expects an int batch_size; got {batch_size!r}.")
    if batch_size < 1:
        raise ValueError(f"stateful_copy expects batch_size >= 1; got {batch_size}.")
    try:
        model_inputs = model.inputs
    except (AttributeError, ValueError):
        model_inputs = None
    if not model_inputs:
        raise ValueError(
            f"stateful_copy expects a model with defined inputs (a functional "
            f"model, or a Sequential model that starts with keras.Input); "
            f"model '{model.name}' has none."
        )

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, TemporalLayer):
            config["stateful"] = True
        return type(layer).from_config(config)

    inputs = [
        keras.Input(batch_shape=(batch_size,) + tuple(x.shape[1:]), dtype=x.dtype)
        for x in model_inputs
    ]
    copy = keras.models.clone_model(
        model,
        input_tensors=inputs if len(inputs) > 1 else inputs[0],
        clone_function=clone,
        recursive=True,
    )
    _copy_weights(model, copy)
    reset_states(copy)
    return copy


def _copy_weights(source, target):
    """Copy the weights of ``source`` into ``target``, layer by layer.

    Each target layer's first weights are the source's (a stateful layer's
    states come after its own weights).
    """
    for layer, twin in zip(source.layers, target.layers, strict=True):
        if isinstance(layer, keras.Model):
            _copy_weights(layer, twin)
            continue
        for value, variable in zip(layer.get_weights(), twin.weights, strict=False):
            variable.assign(value)


def reset_states(model):
    """Start a new sequence: ``reset_state()`` on every stateful layer of ``model``.

    Nested models included.
    """
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            reset_states(layer)
        elif isinstance(layer, TemporalLayer) and layer.stateful:
            layer.reset_state()
