"""What every layer with a time axis shares: shapes, ``dt``, state, layout."""

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_spiking.config import default


def resolve_dt(dt, layer_name):
    """Check a layer's ``dt`` argument; ``default.dt`` for None.

    Returns ``dt`` as given: a positive, finite float (any real number type,
    NumPy scalars included, converted to ``float``), or a non-trainable
    scalar float ``keras.Variable`` (kept, so that assigning to it changes the
    layer).
    """
    if dt is None:
        dt = default.dt
    if isinstance(dt, keras.Variable):
        if dt.trainable:
            raise ValueError(
                f"Layer '{layer_name}' expects a `dt` variable with "
                f"trainable=False (a time step is set, not learned); got a "
                f"trainable variable '{dt.name}'. Create it with "
                f"keras.Variable(value, trainable=False)."
            )
        if tuple(dt.shape) != () or "float" not in str(dt.dtype):
            raise ValueError(
                f"Layer '{layer_name}' expects a `dt` variable holding one "
                f"float (a scalar); got variable '{dt.name}' of shape "
                f"{tuple(dt.shape)} and dtype {dt.dtype}."
            )
    elif isinstance(dt, numbers.Real) and not isinstance(dt, bool):
        dt = float(dt)
    else:
        raise TypeError(
            f"Layer '{layer_name}' expects `dt` to be a positive float, a "
            f"keras.Variable or None; got {dt!r} of type {type(dt).__name__}."
        )
    value = dt_value(dt)
    # A variable may hold 0 until ``DtScheduler`` fills it in before the first
    # batch (as keras-spiking 0.3 allowed); a float must be a real time step.
    if not (
        (value > 0 and math.isfinite(value))
        or (isinstance(dt, keras.Variable) and value == 0)
    ):
        raise ValueError(
            f"Layer '{layer_name}' expects `dt` > 0 and finite (seconds), or a "
            f"variable holding 0 that a DtScheduler sets later; got dt={value}."
        )
    return dt


def check_bool(value, argument, layer_name):
    """``value`` as a ``bool``.

    A TypeError naming ``argument`` and the layer for anything but
    ``True``/``False`` (a string such as ``"no"`` is truthy).
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(
        f"Layer '{layer_name}' expects `{argument}` to be True or False; got "
        f"{value!r} of type {type(value).__name__}."
    )


def dt_value(dt):
    """The current value of ``dt`` (a float or a ``keras.Variable``), a float."""
    if isinstance(dt, keras.Variable):
        # the variable itself, not ``dt.value``: a tf.distribute
        # MirroredVariable's ``value`` does not convert to NumPy
        return float(ops.convert_to_numpy(dt))
    return float(dt)


def dt_config(dt):
    """The config entry for ``dt``: a float, or a dict for a variable.

    ``dt_from_config`` is the inverse.
    """
    if isinstance(dt, keras.Variable):
        return {"value": dt_value(dt), "name": dt.name}
    return dt


def dt_from_config(config_dt):
    """Inverse of ``dt_config``: a dict becomes a new non-trainable variable."""
    if isinstance(config_dt, dict):
        return keras.Variable(
            config_dt["value"],
            trainable=False,
            dtype="float32",
            autocast=False,  # a time step is not rounded to a mixed policy's dtype
            name=config_dt["name"],
        )
    return config_dt


def with_dt_decoded(config):
    """A copy of a layer's config with its ``dt`` entry decoded.

    The entry is decoded with ``dt_from_config``, for ``from_config``.
    """
    config = dict(config)
    if "dt" in config:
        config["dt"] = dt_from_config(config["dt"])
    return config


def layer_from_config(cls, config):
    """``cls(**config)`` with ``dt`` and ``dtype`` decoded.

    As Keras' ``Layer.from_config`` does, but letting the layer's own errors
    through: Keras re-raises any error of the constructor as a TypeError
    ("Error when deserializing class ..."), so a ``.keras`` file holding a bad
    value (say ``dt=-1``) would not fail with the layer's ValueError that
    names it.
    """
    config = with_dt_decoded(config)
    if isinstance(config.get("dtype"), dict):
        config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
    return cls(**config)


def as_float32(x):
    """``x`` as float32: ``x`` itself if it is a float32 tensor or variable.

    Anything else goes through ``keras.ops.cast`` (which also converts NumPy
    arrays).  Skipping the no-op cast matters in eager PyTorch, where a
    ``keras.ops`` call costs several times the operation it runs on a small
    tensor (streaming, one step per call).
    """
    if (ops.is_tensor(x) or isinstance(x, keras.Variable)) and (
        keras.backend.standardize_dtype(x.dtype) == "float32"
    ):
        return x
    return ops.cast(x, "float32")


def check_time_axis(layer, input_shape):
    """Raise a ValueError naming ``layer`` if ``input_shape`` has no time axis."""
    if len(input_shape) < 3:
        layout = "(time, batch, ...)" if layer.time_major else "(batch, time, ...)"
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}) expects inputs "
            f"with a time axis, {layout}, so of rank >= 3; got an input of "
            f"shape {tuple(input_shape)} (rank {len(input_shape)})."
        )


def check_some_steps(layer, input_shape, why):
    """Raise a ValueError naming ``layer`` if ``input_shape`` has 0 time steps.

    ``input_shape`` is batch-major or time-major as ``layer.time_major`` says;
    the check is for outputs that need at least one step (``why`` says which).
    """
    steps = input_shape[0 if layer.time_major else 1]
    if steps == 0:
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}) {why}, so it needs "
            f"at least one time step; got an input with 0 time steps, of "
            f"shape {tuple(input_shape)}."
        )


class TemporalLayer(keras.layers.Layer):
    """Base class of the layers whose inputs have a time axis.

    Inputs are ``(batch, time, *features)``, or ``(time, batch, *features)``
    with ``time_major=True``.  This class handles the layout, the initial and
    carried-over states, ``return_sequences``, ``return_state``,
    ``stateful``, output shapes, and the time step ``dt`` (checked with
    ``resolve_dt`` when the layer is created, stored as ``self.dt``, saved in
    ``get_config`` with ``dt_config`` and decoded by ``from_config``); a
    subclass implements the time-stepping itself.

    Subclass contract (``keras_spiking.kernels`` holds the time-stepping
    maths, plain functions on tensors; ``run_steps`` only calls it):

    * ``num_states``: the number of state tensors, an int.  A class
      attribute (1 by default) or, where it depends on the layer's
      arguments, an instance attribute set in ``__init__`` before the layer
      is built (``SpikingActivation`` has 2 with ``neuron="if"``, else 1).
    * ``build_weights(feature_shape)`` (optional): create the layer's weights
      with ``add_weight``; ``feature_shape`` is the input's feature axes.
      ``self.feature_shape`` and ``self.units`` (``prod(feature_shape)``)
      are set before it is called.
    * ``initial_states(batch_size)``: the states that start a new sequence.
      Returns a list of ``num_states`` float32 tensors of shape
      ``(batch_size, units)``.  Called once per call without
      ``initial_state`` (so it may draw random values), and by
      ``reset_state``.
    * ``run_steps(x, states, training)``: run the layer over a sequence.
      ``x`` is batch-major, ``(batch, time, *features)`` with at least one
      step, in the layer's compute dtype, feature axes kept; ``states`` is a
      list of ``num_states`` float32 ``(batch, units)`` tensors (those the
      sequence starts from); ``training`` is a bool.  Returns
      ``(outputs, final_states)``: the output sequence (the layout and dtype
      of ``x``) and the states after the last step (the same form as
      ``states``).  ``self._flat(x)`` gives the kernels' ``(batch, time,
      units)`` float32 layout and ``self._unflat(y, x)`` converts back;
      ``self._dt_tensor()`` is ``dt`` as a float32 scalar, read at each call
      (so that a ``keras.Variable`` can change between calls).

    A subclass passes ``dt`` (and the other arguments below) on to this
    class's ``__init__``; its own ``get_config`` adds only its own arguments.

    States of a stateful layer are non-trainable weights (``state`` or
    ``state_0``, ``state_1``), unlike Keras' RNN layers, whose states are
    untracked variables: under JAX, Keras' compiled ``predict`` only carries
    tracked variables from one call to the next (a stateful
    ``keras.layers.SimpleRNN`` restarts from zero on every ``predict`` call
    there).  So a stateful model has more weights than its non-stateful
    twin: make a streaming copy of a trained model with
    ``keras_spiking.stateful_copy``.

    Sequences of 0 steps: with ``return_sequences=True`` the output is an
    empty sequence, ``(batch, 0, *features)`` (``(0, batch, *features)``
    with ``time_major=True``), and the final states, returned with
    ``return_state=True`` and carried over by a stateful layer, are the
    states it started from; with ``return_sequences=False`` there is no last
    step to return, so the layer raises a ValueError.  (The number of steps
    must be known when the layer is called: inside a TensorFlow graph traced
    with an unknown time axis, 0 steps are not supported.)

    Parameters
    ----------
    dt : float or keras.Variable, optional
        Simulation time step in seconds; ``keras_spiking.default.dt`` if None.
        A non-trainable scalar float ``keras.Variable`` can be changed between
        calls (see ``keras_spiking.callbacks.DtScheduler``).
    return_sequences : bool
        Return the whole output sequence (True) or only its last step.
    return_state : bool
        Also return the final state(s), after the output.
    stateful : bool
        Carry the final state over to the next call, until ``reset_state()``.
        Needs a fixed batch size (``keras.Input(batch_shape=...)``).
    time_major : bool
        Inputs and outputs are ``(time, batch, ...)`` instead of
        ``(batch, time, ...)``.
    unroll : bool
        Accepted for keras-spiking 0.3 compatibility (where it unrolled the
        ``keras.layers.RNN`` loop); the outputs are the same either way, since
        the kernels choose their own form (``keras_spiking.kernels``).
    **kwargs
        Passed to ``keras.layers.Layer``.

    Raises
    ------
    TypeError, ValueError
        For a bad ``dt`` (see ``resolve_dt``) or a flag that is not a bool;
        the message names the layer.
    """

    #: Number of state tensors, each of shape ``(batch, *features)`` (a
    #: subclass may set its own, per instance, in ``__init__``).
    num_states = 1

    def __init__(
        self,
        *,
        dt=None,
        return_sequences=True,
        return_state=False,
        stateful=False,
        time_major=False,
        unroll=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dt = resolve_dt(dt, self.name)
        self.return_sequences = check_bool(
            return_sequences, "return_sequences", self.name
        )
        self.return_state = check_bool(return_state, "return_state", self.name)
        self.stateful = check_bool(stateful, "stateful", self.name)
        self.time_major = check_bool(time_major, "time_major", self.name)
        self.unroll = check_bool(unroll, "unroll", self.name)
        self.supports_masking = False
        self.states = None

    # ------------------------------------------------------------- shapes --

    def _check_input_shape(self, input_shape):
        check_time_axis(self, input_shape)
        if not self.return_sequences:
            check_some_steps(
                self, input_shape, "returns the last time step (return_sequences=False)"
            )
        for size in input_shape[2:]:
            if size is None:
                raise ValueError(
                    f"Layer '{self.name}' ({type(self).__name__}) needs the "
                    f"feature axes of its input to be known; got an input of "
                    f"shape {tuple(input_shape)}."
                )

    def _batch_major(self, shape):
        shape = tuple(shape)
        return (shape[1], shape[0]) + shape[2:] if self.time_major else shape

    def build(self, input_shape):
        """Create the layer's weights (and states, if stateful)."""
        self._check_input_shape(input_shape)
        shape = self._batch_major(input_shape)
        self.feature_shape = tuple(shape[2:])
        self.units = math.prod(self.feature_shape)
        self.build_weights(self.feature_shape)
        if self.stateful:
            if shape[0] is None:
                raise ValueError(
                    f"Layer '{self.name}' ({type(self).__name__}) is stateful, "
                    f"so it needs a fixed batch size (keras.Input(batch_shape="
                    f"...)); got an input of shape {tuple(input_shape)}."
                )
            self.states = [
                self.add_weight(
                    shape=(shape[0],) + self.feature_shape,
                    initializer="zeros",
                    trainable=False,
                    # float32 whatever the dtype policy: under a mixed policy
                    # an autocast state would be rounded at every call (and
                    # on torch, assigned into the rounded copy, never change)
                    autocast=False,
                    name=f"state_{i}" if self.num_states > 1 else "state",
                )
                for i in range(self.num_states)
            ]
            self.reset_state()

    def build_weights(self, feature_shape):
        """Create the layer's weights (override); called by ``build``."""

    def compute_output_shape(self, inputs_shape, initial_state_shape=None):
        """The shape of the output (and of the states, with ``return_state``)."""
        input_shape = inputs_shape
        self._check_input_shape(input_shape)
        if initial_state_shape is not None:
            self._check_initial_state_shapes(input_shape, initial_state_shape)
        shape = self._batch_major(input_shape)
        if self.return_sequences:
            output_shape = tuple(input_shape)
        else:
            output_shape = (shape[0],) + tuple(shape[2:])
        if self.return_state:
            state_shape = (shape[0],) + tuple(shape[2:])
            return (output_shape,) + (state_shape,) * self.num_states
        return output_shape

    # -------------------------------------------------------------- state --

    def initial_states(self, batch_size):
        """The states that start a new sequence (implemented by a subclass).

        Parameters
        ----------
        batch_size : int or scalar tensor
            Number of sequences in the batch.

        Returns
        -------
        list of tensors
            ``num_states`` float32 tensors of shape ``(batch_size, units)``.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement "
            f"initial_states(batch_size) (see TemporalLayer)."
        )

    def reset_state(self):
        """Restart a stateful layer: its states go back to their defaults."""
        if self.states is None:
            return
        batch_size = self.states[0].shape[0]
        for variable, value in zip(
            self.states, self.initial_states(batch_size), strict=True
        ):
            # A copy: states must not share memory with each other (Alpha's two
            # states start equal) or with a weight, or JAX's compiled predict
            # fails ("Attempt to donate the same buffer twice").
            variable.assign(ops.copy(ops.reshape(value, variable.shape)))

    def reset_states(self, states=None):
        """Reset a stateful layer's state, or set it.

        Parameters
        ----------
        states : array or list of arrays, optional
            New states (``num_states`` arrays of shape ``(batch, *features)``);
            by default the states that start a new sequence (``reset_state``).
            The keras-spiking 0.3 signature.
        """
        if states is None:
            self.reset_state()
            return
        if self.states is None:
            raise ValueError(
                f"Layer '{self.name}' ({type(self).__name__}) has no state to "
                f"set: it is not stateful, or not built yet (create it with "
                f"stateful=True and call it on an input with a fixed batch size)."
            )
        if not isinstance(states, (list, tuple)):
            states = [states]
        if len(states) != self.num_states:
            raise ValueError(
                f"Layer '{self.name}' expects {self.num_states} state array(s) "
                f"in reset_states; got {len(states)}."
            )
        for variable, value in zip(self.states, states, strict=True):
            shape = tuple(ops.shape(value))
            if shape != tuple(variable.shape):
                raise ValueError(
                    f"Layer '{self.name}' expects states of shape "
                    f"{tuple(variable.shape)} (batch, *features); got {shape}."
                )
            variable.assign(ops.cast(value, variable.dtype))

    # --------------------------------------------------------------- call --

    def _check_initial_state_shapes(self, input_shape, state_shapes):
        """Check the number and shapes of ``initial_state``.

        ``state_shapes`` (a single shape or a list of them) are checked against
        the input's shape.
        """
        if isinstance(state_shapes, tuple) and all(
            size is None or isinstance(size, int) for size in state_shapes
        ):
            state_shapes = [state_shapes]  # one shape, not a list of shapes
        if len(state_shapes) != self.num_states:
            raise ValueError(
                f"Layer '{self.name}' ({type(self).__name__}) expects "
                f"{self.num_states} initial state tensor(s), each of shape "
                f"(batch, *features); got {len(state_shapes)}."
            )
        shape = self._batch_major(input_shape)
        expected = (shape[0],) + tuple(shape[2:])
        for i, state_shape in enumerate(state_shapes):
            state_shape = tuple(state_shape)
            if len(state_shape) != len(expected) or any(
                a is not None and b is not None and a != b
                for a, b in zip(state_shape, expected, strict=True)
            ):
                raise ValueError(
                    f"Layer '{self.name}' ({type(self).__name__}) expects "
                    f"initial_state[{i}] of shape {expected} (batch, "
                    f"*features), like its input {tuple(input_shape)}; got "
                    f"shape {state_shape}."
                )

    def call(self, inputs, initial_state=None, training=None):
        """Run the layer on ``inputs``, from ``initial_state`` if given."""
        self._check_input_shape(tuple(inputs.shape))
        initial_state = self._initial_state_tensors(inputs, initial_state)
        if self.time_major:
            inputs = ops.transpose(inputs, (1, 0) + tuple(range(2, len(inputs.shape))))
        x = inputs
        batch_size = ops.shape(x)[0]
        states = self._start_states(x, batch_size, initial_state)

        if x.shape[1] == 0:
            # Nothing to run (the kernels need a step): an empty sequence,
            # and the states stay where they were.
            outputs = ops.zeros(ops.shape(x), self.compute_dtype)
        else:
            outputs, states = self.run_steps(x, states, training=bool(training))
            if self.stateful:
                for variable, state in zip(self.states, states, strict=True):
                    state = ops.stop_gradient(state)
                    if len(variable.shape) != 2:
                        state = ops.reshape(state, variable.shape)
                    variable.assign(state)
        return self._call_outputs(outputs, states, batch_size)

    def _initial_state_tensors(self, inputs, initial_state):
        """``initial_state`` as a checked list of tensors (None if not given)."""
        if initial_state is None:
            return None
        if not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        initial_state = [ops.convert_to_tensor(s) for s in initial_state]
        self._check_initial_state_shapes(
            tuple(inputs.shape), [tuple(s.shape) for s in initial_state]
        )
        return initial_state

    def _start_states(self, x, batch_size, initial_state):
        """The float32 ``(batch, units)`` states a call starts from.

        ``initial_state`` if given, else a stateful layer's carried-over
        states, else the defaults of a new sequence.
        """
        if initial_state is not None:
            states = [self._state_rows(s, batch_size) for s in initial_state]
        elif self.stateful:
            rows = self.states[0].shape[0]
            if x.shape[0] is not None and x.shape[0] != rows:
                raise ValueError(
                    f"Layer '{self.name}' ({type(self).__name__}) is stateful "
                    f"with states for a batch of {rows}; got a batch of "
                    f"{x.shape[0]}. (Under tf.distribute each replica sees its "
                    f"slice of the global batch: build stateful layers with "
                    f"the per-replica batch size.)"
                )
            # A copy: the variables are updated in place in ``call`` (on torch,
            # in place in the very storage autograd would have saved).
            states = [
                self._state_rows(ops.copy(ops.stop_gradient(s.value)), batch_size)
                for s in self.states
            ]
        else:
            states = self.initial_states(batch_size)
        return [as_float32(s) for s in states]

    def _state_rows(self, state, batch_size):
        """A ``(batch, *features)`` state as ``(batch, units)`` (no-op if so)."""
        if len(state.shape) == 2:
            return state
        return ops.reshape(state, (batch_size, self.units))

    def _call_outputs(self, outputs, states, batch_size):
        """What ``call`` returns, from the batch-major output sequence.

        The whole sequence or its last step (in the layer's layout), followed
        by the final states with ``return_state``.
        """
        if self.return_sequences:
            if self.time_major:
                perm = (1, 0) + tuple(range(2, len(outputs.shape)))
                outputs = ops.transpose(outputs, perm)
        else:
            outputs = outputs[:, -1]
        if self.return_state:
            shape = (batch_size,) + self.feature_shape
            return (outputs,) + tuple(
                ops.cast(ops.reshape(s, shape), self.compute_dtype) for s in states
            )
        return outputs

    def run_steps(self, x, states, training):
        """Run the layer over a sequence (implemented by a subclass).

        Parameters
        ----------
        x : tensor
            ``(batch, time, *features)`` (batch-major, feature axes kept,
            ``time >= 1``), in the layer's compute dtype.
        states : list of tensors
            ``num_states`` float32 tensors of shape ``(batch, units)``: the
            states the sequence starts from.
        training : bool
            Whether the layer runs in training mode.

        Returns
        -------
        outputs : tensor
            The output sequence, with the layout and dtype of ``x``.
        final_states : list of tensors
            The states after the last step, in the form of ``states``.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement "
            f"run_steps(x, states, training) (see TemporalLayer)."
        )

    def _dt_tensor(self):
        """``self.dt`` as a float32 scalar.

        The float itself for a float ``dt`` (every backend's operators take
        it as a float32 constant, and it costs no conversion per call); for a
        ``keras.Variable`` a tensor read when called, so that the variable
        can change between calls.
        """
        if isinstance(self.dt, float):
            return self.dt
        return ops.convert_to_tensor(self.dt, "float32")

    def _flat(self, x):
        """``(batch, time, *features)`` -> ``(batch, time, units)`` float32."""
        if len(x.shape) != 3:
            shape = ops.shape(x)
            x = ops.reshape(x, (shape[0], shape[1], self.units))
        return as_float32(x)

    def _unflat(self, y, like):
        """Inverse of ``_flat``, in the compute dtype."""
        if len(like.shape) != 3:
            y = ops.reshape(y, ops.shape(like))
        if keras.backend.standardize_dtype(y.dtype) == self.compute_dtype:
            return y
        return ops.cast(y, self.compute_dtype)

    def _per_unit(self, weight, minimum):
        """A per-unit weight as a float32 ``(units,)`` tensor, at least ``minimum``.

        ``weight`` has the shape of the feature axes (a time constant, a
        threshold).
        """
        value = ops.maximum(as_float32(weight), minimum)
        if len(value.shape) != 1:
            value = ops.reshape(value, (self.units,))
        return value

    def get_config(self):
        """The layer's arguments, for ``from_config``."""
        config = super().get_config()
        config.update(
            {
                "dt": dt_config(self.dt),
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
                "stateful": self.stateful,
                "time_major": self.time_major,
                "unroll": self.unroll,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        """Create a layer from its ``get_config``."""
        return layer_from_config(cls, config)
