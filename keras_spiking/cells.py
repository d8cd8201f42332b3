"""RNN cells: the layers' maths one step at a time, for ``keras.layers.RNN``.

keras-spiking 0.3 built its layers from these cells; here the layers run
their own (faster) kernels over whole sequences, and the cells are kept for
code that puts them in a ``keras.layers.RNN``, alone or beside other cells::

    layer = keras.layers.RNN(
        keras_spiking.layers.SpikingActivationCell(size=32, activation="relu"),
        return_sequences=True,
    )

A cell steps the same maths as its layer (each cell owns a layer and runs it
on a sequence of one step), so ``RNN(SpikingActivationCell(...))`` gives the
same outputs as ``SpikingActivation(...)``, spike for spike, with the same
``seed``; likewise for ``LowpassCell``/``Lowpass`` and ``AlphaCell``/``Alpha``
up to float32 rounding.  The whole-sequence layers are much faster.

``size`` may have several axes (``(height, width, channels)``): the state then
has that shape too.  ``keras.layers.RNN`` only infers symbolic output shapes
for one axis (``output_size`` must be an int there), so use several axes on
tensors (eagerly, or inside a subclassed model).

The cells keep their states in float32 whatever the dtype policy, as the
layers do: under ``mixed_float16`` a cell computes like its layer (the
activation in float16, the states in float32) and
``RNN(cell, return_sequences=True)`` gives the layer's outputs exactly.  (A
cell's own ``compute_dtype`` is therefore float32, which is what makes
``keras.layers.RNN`` carry float32 states; the ``dtype`` argument sets the
policy of the maths, as the layer's.  ``keras.layers.StackedRNNCells`` and a
stateful ``RNN`` store states in the RNN's dtype, so they still round them.)

``keras.layers.RNN`` needs at least one time step, whatever the cell (it
reads the first step before calling the cell); for sequences that may be
empty, use the layers, which return an empty sequence.
"""

import functools
import inspect
import math

import keras
from keras import ops

from keras_spiking.filters import Alpha, Lowpass
from keras_spiking.spiking_activation import SpikingActivation
from keras_spiking.temporal import TemporalLayer, as_float32, layer_from_config


def _check_size(size, cell_name):
    """``size`` as a tuple of positive ints."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size,)
    try:
        size = tuple(size)
    except TypeError:
        size = None
    if not size or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size
    ):
        raise ValueError(
            f"Cell '{cell_name}' expects `size` to be a positive int or a "
            f"tuple of positive ints (the shape of one step's input without "
            f"the batch axis); got {size!r}."
        )
    return size


class KerasSpikingCell(keras.layers.Layer):
    """Base class of the cells: a ``TemporalLayer`` run one step at a time.

    A subclass makes its layer and passes it to ``__init__``; this class
    builds it for inputs of shape ``(batch, 1, *size)``, provides
    ``state_size``, ``output_size`` and ``get_initial_state`` as
    ``keras.layers.RNN`` expects, and steps the layer's ``run_steps``.

    Parameters
    ----------
    size : int or tuple of int
        Shape of one step's input (and output), without the batch axis.
    layer : keras_spiking.temporal.TemporalLayer or callable
        The layer whose maths the cell steps (not built yet), or a callable
        that makes it, given the keyword arguments ``name`` (the cell's, so
        that the layer's error messages name the cell) and ``dtype``.
    **kwargs
        Passed to ``keras.layers.Layer``; ``dtype`` is the dtype policy of
        the layer's maths (the cell itself computes its states in float32).
    """

    def __init__(self, size, layer, **kwargs):
        dtype = kwargs.pop("dtype", None)
        # float32: keras.layers.RNN casts the states to the cell's
        # compute_dtype, and the states stay float32 as in the layers
        super().__init__(dtype="float32", **kwargs)
        if not isinstance(layer, TemporalLayer):
            layer = layer(name=self.name, dtype=dtype)
        self.layer = layer
        self.size = _check_size(size, self.name)
        units = math.prod(self.size)
        flat = units if len(self.size) == 1 else self.size
        self.output_size = flat
        self.state_size = [flat] * self.layer.num_states

    @property
    def dt(self):
        """The layer's time step (a float or a ``keras.Variable``)."""
        return self.layer.dt

    def build(self, input_shape):
        """Check the input's shape and build the wrapped layer."""
        input_shape = tuple(input_shape)
        if input_shape[1:] != self.size:
            raise ValueError(
                f"Cell '{self.name}' ({type(self).__name__}) was created with "
                f"size={self.size}, so it expects inputs of shape (batch, "
                f"*{self.size}); got {input_shape}."
            )
        self._build_layer()

    def _build_layer(self):
        if not self.layer.built:
            self.layer.build((None, 1) + self.size)

    def get_initial_state(self, batch_size=None):
        """The states that start a sequence, each ``(batch, *size)``."""
        self._build_layer()
        return [
            ops.reshape(s, (batch_size,) + self.size)
            for s in self.layer.initial_states(batch_size)
        ]

    def _check_states(self, states):
        if len(states) != self.layer.num_states:
            raise ValueError(
                f"Cell '{self.name}' ({type(self).__name__}) expects "
                f"{self.layer.num_states} state tensor(s), each of shape "
                f"(batch, *{self.size}); got {len(states)}."
            )
        for i, state in enumerate(states):
            shape = tuple(state.shape)
            if shape[1:] not in (self.size, (self.layer.units,)):
                raise ValueError(
                    f"Cell '{self.name}' ({type(self).__name__}) expects "
                    f"states[{i}] of shape (batch, *{self.size}); got shape "
                    f"{shape}."
                )

    def call(self, inputs, states, training=None):
        """Run one step on ``inputs`` from ``states``; the output and new states."""
        if not isinstance(states, (list, tuple)):
            states = [states]
        self._check_states(states)
        batch_size = ops.shape(inputs)[0]
        flat = [as_float32(self.layer._state_rows(s, batch_size)) for s in states]
        x = ops.expand_dims(inputs, 1)
        if keras.backend.is_float_dtype(x.dtype):
            # as the layer's own call casts its input (its autocast)
            x = ops.cast(x, self.layer.compute_dtype)
        y, new_states = self.layer.run_steps(x, flat, training=bool(training))
        new_states = [
            ops.cast(ops.reshape(s, (batch_size,) + self.size), "float32")
            for s in new_states
        ]
        return y[:, 0], new_states

    def get_config(self):
        """The cell's arguments (its layer's included), for ``from_config``."""
        config = super().get_config()
        config["size"] = list(self.size)
        # the policy of the maths (the cell's own is always float32)
        config["dtype"] = keras.dtype_policies.serialize(self.layer.dtype_policy)
        config.update(_layer_config(self.layer))
        return config

    @classmethod
    def from_config(cls, config):
        """Create a cell from its ``get_config``."""
        return layer_from_config(cls, config)


#: Arguments of a whole layer that a cell (one step, no sequence) has not.
_NOT_CELL_ARGUMENTS = (
    "name",
    "trainable",
    "dtype",
    "return_sequences",
    "return_state",
    "stateful",
    "time_major",
    "unroll",
)


def _layer_config(layer):
    """The layer's own arguments (not the base layer's or the sequence ones)."""
    config = layer.get_config()
    for key in _NOT_CELL_ARGUMENTS:
        config.pop(key, None)
    return config


def _layer_arguments(layer_class, kwargs):
    """Take the arguments of ``layer_class`` out of ``kwargs``.

    Its own arguments, not ``Layer``'s: a cell passes its layer's options on
    (for example ``SpikingActivation``'s ``neuron``), and the rest to
    ``keras.layers.Layer``.
    """
    own = inspect.signature(layer_class.__init__).parameters
    return {
        key: kwargs.pop(key)
        for key in list(kwargs)
        if key in own and key not in _NOT_CELL_ARGUMENTS
    }


@keras.saving.register_keras_serializable(package="keras_spiking")
class SpikingActivationCell(KerasSpikingCell):
    """``SpikingActivation`` one step at a time (see that layer).

    Parameters
    ----------
    size : int or tuple of int
        Shape of one step's input, without the batch axis.
    activation, dt, seed, spiking_aware_training
        As for ``keras_spiking.SpikingActivation``.
    **kwargs
        ``SpikingActivation``'s other options (such as ``neuron``), then
        ``keras.layers.Layer``'s.
    """

    def __init__(
        self,
        size,
        activation,
        *,
        dt=None,
        seed=None,
        spiking_aware_training=True,
        **kwargs,
    ):
        layer = functools.partial(
            SpikingActivation,
            activation,
            dt=dt,
            seed=seed,
            spiking_aware_training=spiking_aware_training,
            **_layer_arguments(SpikingActivation, kwargs),
        )
        super().__init__(size, layer, **kwargs)


class _FilterCell(KerasSpikingCell):
    """What ``LowpassCell`` and ``AlphaCell`` share: the filter's arguments.

    Parameters
    ----------
    size : int or tuple of int
        Shape of one step's input, without the batch axis.
    tau_initializer, dt, apply_during_training, level_initializer, \
initial_level_constraint, tau_constraint
        As for ``keras_spiking.Lowpass`` / ``keras_spiking.Alpha``.
    **kwargs
        The layer's other options, then ``keras.layers.Layer``'s.
    """

    #: The layer whose maths the cell steps (set by each subclass).
    _layer_class = None

    def __init__(
        self,
        size,
        tau_initializer,
        *,
        dt=None,
        apply_during_training=True,
        level_initializer="zeros",
        initial_level_constraint=None,
        tau_constraint=None,
        **kwargs,
    ):
        layer = functools.partial(
            self._layer_class,
            tau_initializer,
            dt=dt,
            apply_during_training=apply_during_training,
            level_initializer=level_initializer,
            initial_level_constraint=initial_level_constraint,
            tau_constraint=tau_constraint,
            **_layer_arguments(self._layer_class, kwargs),
        )
        super().__init__(size, layer, **kwargs)

    def _layer_weight(self, name):
        if not self.layer.built:
            raise AttributeError(
                f"Cell '{self.name}' ({type(self).__name__}) has no `{name}` "
                f"yet: it is not built (call it, or the keras.layers.RNN "
                f"holding it, on an input first)."
            )
        return getattr(self.layer, name)

    @property
    def tau(self):
        """The time constants (seconds): the trainable weight ``tau``.

        Of shape ``size``, as keras-spiking 0.3's cells had it (once built).
        """
        return self._layer_weight("tau")

    @property
    def initial_level(self):
        """The trainable initial level, of shape ``size``.

        As keras-spiking 0.3's cells had it (once built).
        """
        return self._layer_weight("initial_level")


@keras.saving.register_keras_serializable(package="keras_spiking")
class LowpassCell(_FilterCell):
    """``Lowpass`` one step at a time (see that layer and ``_FilterCell``)."""

    _layer_class = Lowpass


@keras.saving.register_keras_serializable(package="keras_spiking")
class AlphaCell(_FilterCell):
    """``Alpha`` one step at a time, two states.

    See that layer and ``_FilterCell``.
    """

    _layer_class = Alpha
