r"""Leaky integrate-and-fire neurons trained through time with surrogate gradients.

The layers are ``LIF``, ``CubaLIF`` and ``ALIF``.

Each layer is a population of spiking neurons, one per element of the
input's feature axes, driven by the input as a current: put a ``Dense`` or
convolution before it for the synaptic weights (they then run over all steps
at once).  The neurons step through time in ``keras_spiking.kernels.lif``;
the spike's gradient is a surrogate (``keras_spiking.surrogates``), so a
model of these layers trains with backpropagation through time in
``model.fit`` on every backend.

Conventions shared by the three layers
--------------------------------------
* The membrane ``tau dv/dt = -v + I`` is discretised exactly for an input
  held over each step (zero-order hold): ``v_t = a v_{t-1} + (1 - a) I_t``,
  ``a = exp(-dt / tau)``.  A constant input ``I`` brings ``v`` to ``I``, so
  the input is in units of the voltage (the threshold's units).
* A neuron fires at step ``t`` when its voltage after the update reaches the
  threshold, ``v_t >= theta``; at most one spike per step; the reset happens
  in the same step.
* The output spikes have height ``1 / dt`` (``TemporalAvgPool`` of them is a
  firing rate in Hz).  The gradient of an output spike w.r.t. the voltage is
  ``surrogate.derivative(v - theta) / dt``.
* Time constants and thresholds are per neuron (the shape of the feature
  axes).  The forward pass clamps them to at least ``MIN_TAU`` and
  ``MIN_THRESHOLD``, and by default a ``MinValue`` constraint keeps the
  trained values there too.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_spiking import surrogates as _surrogates
from keras_spiking.kernels import lif as lif_kernels
from keras_spiking.temporal import TemporalLayer, as_float32, check_bool

#: Smallest time constant (seconds) the layers use (see ``MinValue``).
MIN_TAU = 1e-6
#: Smallest threshold the layers use.
MIN_THRESHOLD = 1e-6


@keras.saving.register_keras_serializable(package="keras_spiking")
class MinValue(keras.constraints.Constraint):
    r"""Clip a weight from below: ``w <- max(w, min_value)``.

    The default constraint of the spiking layers' time constants and
    thresholds (``MinValue(MIN_TAU)``, ``MinValue(MIN_THRESHOLD)``), which
    must stay positive.

    Parameters
    ----------
    min_value : float
        The smallest value allowed.
    """

    def __init__(self, min_value):
        if (
            isinstance(min_value, bool)
            or not isinstance(min_value, (int, float))
            or not math.isfinite(min_value)
        ):
            raise TypeError(
                f"MinValue constraint expects `min_value` to be a finite "
                f"number; got {min_value!r}."
            )
        self.min_value = float(min_value)

    def __call__(self, w):
        """``w`` clipped from below at ``min_value``."""
        return ops.maximum(w, ops.cast(self.min_value, w.dtype))

    def get_config(self):
        """The constraint's configuration: ``min_value``."""
        return {"min_value": self.min_value}


def _is_number(value):
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(
        value, bool
    )


class _LIFBase(TemporalLayer):
    """Shared parts of the LIF layers (see the module docstring).

    Subclasses set ``_time_constants`` (the names of their time-constant
    arguments, the membrane's ``"tau"`` first), ``_extra_states`` (the names
    of their states after ``v``) and implement ``_kernel``.
    """

    _time_constants = ("tau",)
    _extra_states = ()

    def __init__(
        self,
        *,
        threshold=1.0,
        reset="subtract",
        detach_reset=False,
        initial_voltage=0.0,
        surrogate="fast_sigmoid",
        trainable_tau=True,
        trainable_threshold=False,
        tau_constraint=None,
        threshold_constraint=None,
        recurrent=False,
        recurrent_initializer="orthogonal",
        recurrent_regularizer=None,
        recurrent_constraint=None,
        discretization="exact",
        scale_input=True,
        reset_delay=False,
        dt=None,
        return_sequences=True,
        return_state=False,
        stateful=False,
        time_major=False,
        time_constants=None,
        **kwargs,
    ):
        super().__init__(
            dt=dt,
            return_sequences=return_sequences,
            return_state=return_state,
            stateful=stateful,
            time_major=time_major,
            **kwargs,
        )
        kind = type(self).__name__
        self._where = f"Layer '{self.name}' ({kind})"

        # time constants: a positive float, or an initializer
        self._tau_arguments = {}
        self._tau_initializers = {}
        for name, value in time_constants.items():
            if _is_number(value):
                self._check_positive(name, float(value), "seconds")
                self._tau_arguments[name] = float(value)
                self._tau_initializers[name] = keras.initializers.Constant(float(value))
            else:
                try:
                    initializer = keras.initializers.get(value)
                except (ValueError, TypeError) as error:
                    raise ValueError(
                        f"{self._where} expects `{name}` to be a positive float "
                        f"(seconds) or a Keras initializer; got {value!r}."
                    ) from error
                if initializer is None:
                    raise ValueError(
                        f"{self._where} expects `{name}` to be a positive float "
                        f"(seconds) or a Keras initializer; got None."
                    )
                self._tau_arguments[name] = initializer
                self._tau_initializers[name] = initializer

        if not _is_number(threshold):
            raise TypeError(
                f"{self._where} expects `threshold` to be a positive float; "
                f"got {threshold!r} of type {type(threshold).__name__}."
            )
        self._check_positive("threshold", float(threshold), "")
        self.threshold_value = float(threshold)

        if reset not in lif_kernels.RESETS:
            raise ValueError(
                f"{self._where} expects `reset` to be one of "
                f"{lif_kernels.RESETS}; got {reset!r}."
            )
        self.reset = reset
        self.detach_reset = check_bool(detach_reset, "detach_reset", self.name)

        if not _is_number(initial_voltage) or not math.isfinite(initial_voltage):
            raise TypeError(
                f"{self._where} expects `initial_voltage` to be a finite float; "
                f"got {initial_voltage!r}."
            )
        self.initial_voltage = float(initial_voltage)

        try:
            self.surrogate = _surrogates.get(surrogate)
        except (ValueError, TypeError) as error:
            raise type(error)(
                f"{self._where} expects `surrogate` to be a "
                f"keras_spiking.surrogates.Surrogate, the name of one or its "
                f"config; got {surrogate!r}. ({error})"
            ) from error

        if discretization not in lif_kernels.DISCRETIZATIONS:
            raise ValueError(
                f"{self._where} expects `discretization` to be one of "
                f"{lif_kernels.DISCRETIZATIONS}; got {discretization!r}."
            )
        self.discretization = discretization
        self.scale_input = check_bool(scale_input, "scale_input", self.name)
        self.reset_delay = check_bool(reset_delay, "reset_delay", self.name)

        self.trainable_tau = check_bool(trainable_tau, "trainable_tau", self.name)
        self.trainable_threshold = check_bool(
            trainable_threshold, "trainable_threshold", self.name
        )
        self.tau_constraint = keras.constraints.get(tau_constraint)
        self.threshold_constraint = keras.constraints.get(threshold_constraint)

        self.recurrent = check_bool(recurrent, "recurrent", self.name)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)

        self.num_states = 1 + len(self._extra_states) + self.recurrent

    def _check_positive(self, name, value, unit):
        if not (math.isfinite(value) and value > 0):
            unit = f" ({unit})" if unit else ""
            raise ValueError(
                f"{self._where} expects `{name}` > 0{unit}; got {name}={value}."
            )

    # -------------------------------------------------------------- weights --

    def build_weights(self, feature_shape):
        for name in self._time_constants:
            weight = self.add_weight(
                shape=feature_shape,
                initializer=self._tau_initializers[name],
                constraint=self.tau_constraint or MinValue(MIN_TAU),
                trainable=self.trainable_tau,
                autocast=False,  # read in float32 under mixed precision too
                name=name,
            )
            setattr(self, name, weight)
            self._check_built_values(name, weight)
        self.threshold = self.add_weight(
            shape=feature_shape,
            initializer=keras.initializers.Constant(self.threshold_value),
            constraint=self.threshold_constraint or MinValue(MIN_THRESHOLD),
            trainable=self.trainable_threshold,
            autocast=False,
            name="threshold",
        )
        if self.recurrent:
            self.recurrent_kernel = self.add_weight(
                shape=(self.units, self.units),
                initializer=self.recurrent_initializer,
                regularizer=self.recurrent_regularizer,
                constraint=self.recurrent_constraint,
                autocast=False,
                name="recurrent_kernel",
            )
        else:
            self.recurrent_kernel = None

    def _check_built_values(self, name, weight):
        """Check that time constants from an initializer are positive.

        They are checked when they can be read: eagerly.
        """
        try:
            values = np.asarray(ops.convert_to_numpy(weight))
        except Exception:  # a graph being traced: nothing to read
            return
        if values.size:
            self._check_positive(name, float(values.min()), "seconds")

    def _log_decay(self, weight):
        """``-dt / tau`` per unit, float32, ``tau`` clamped to ``MIN_TAU``."""
        return -self._dt_tensor() / self._per_unit(weight, MIN_TAU)

    def _threshold_tensor(self):
        return self._per_unit(self.threshold, MIN_THRESHOLD)

    def _recurrent_tensor(self):
        if self.recurrent_kernel is None:
            return None
        return as_float32(self.recurrent_kernel)

    # ---------------------------------------------------------------- states --

    def initial_states(self, batch_size):
        """``v`` at ``initial_voltage``, the other states at 0."""
        voltage = ops.full((1, self.units), self.initial_voltage, "float32")
        zeros = ops.zeros((1, self.units), "float32")
        states = [voltage] + [zeros] * (self.num_states - 1)
        return [ops.broadcast_to(s, (batch_size, self.units)) for s in states]

    def _state_names(self):
        return ("v",) + self._extra_states + (("z",) if self.recurrent else ())

    def call(self, inputs, initial_state=None, training=None):
        """Run the neurons over the time axis of ``inputs``."""
        if initial_state is not None:
            self._check_initial_state(inputs, initial_state)
        return super().call(inputs, initial_state=initial_state, training=training)

    def _check_initial_state(self, inputs, initial_state):
        states = (
            list(initial_state)
            if isinstance(initial_state, (list, tuple))
            else [initial_state]
        )
        names = self._state_names()
        if len(states) != self.num_states:
            raise ValueError(
                f"{self._where} expects `initial_state` to be {self.num_states} "
                f"tensor(s) ({', '.join(names)}), each of shape (batch, "
                f"*features); got {len(states)}."
            )
        batch = inputs.shape[1 if self.time_major else 0]
        expected = (batch,) + tuple(self.feature_shape)
        for name, state in zip(names, states, strict=True):
            shape = tuple(state.shape)
            if len(shape) != len(expected) or any(
                e is not None and s is not None and e != s
                for s, e in zip(shape, expected, strict=True)
            ):
                raise ValueError(
                    f"{self._where} expects each `initial_state` tensor to have "
                    f"shape (batch, *features) = {expected}; got {shape} for "
                    f"state '{name}'."
                )

    # ------------------------------------------------------------------ run --

    def _kernel(self, x, states):
        """The spike counts and final states (``kernels.lif``)."""
        raise NotImplementedError

    def run_steps(self, x, states, training):
        """Spikes of height ``1 / dt`` and the final states (``_kernel``)."""
        counts, states = self._kernel(self._flat(x), states)
        spikes = counts / self._dt_tensor()
        return self._unflat(spikes, x), states

    def _kernel_options(self):
        return {
            "surrogate": self.surrogate,
            "reset": self.reset,
            "detach_reset": self.detach_reset,
            "recurrent_kernel": self._recurrent_tensor(),
            "discretization": self.discretization,
            "scale_input": self.scale_input,
            "reset_delay": self.reset_delay,
        }

    # --------------------------------------------------------------- config --

    def get_config(self):
        """The layer's configuration, with every constructor argument."""
        config = super().get_config()
        for name, value in self._tau_arguments.items():
            config[name] = (
                value
                if isinstance(value, float)
                else keras.initializers.serialize(value)
            )
        config.update(
            {
                "threshold": self.threshold_value,
                "reset": self.reset,
                "detach_reset": self.detach_reset,
                "initial_voltage": self.initial_voltage,
                "surrogate": _surrogates.serialize(self.surrogate),
                "trainable_tau": self.trainable_tau,
                "trainable_threshold": self.trainable_threshold,
                "tau_constraint": keras.constraints.serialize(self.tau_constraint),
                "threshold_constraint": keras.constraints.serialize(
                    self.threshold_constraint
                ),
                "recurrent": self.recurrent,
                "recurrent_initializer": keras.initializers.serialize(
                    self.recurrent_initializer
                ),
                "recurrent_regularizer": keras.regularizers.serialize(
                    self.recurrent_regularizer
                ),
                "recurrent_constraint": keras.constraints.serialize(
                    self.recurrent_constraint
                ),
                "discretization": self.discretization,
                "scale_input": self.scale_input,
                "reset_delay": self.reset_delay,
            }
        )
        return config


_SHARED_PARAMETERS = r"""
    threshold : float
        Firing threshold ``theta`` (> 0), the initial value of a per-neuron
        weight (named ``threshold``).
    reset : str
        What a spike does to the voltage, in the step it fires:
        ``"subtract"`` (default) ``v <- v - theta``, ``"zero"`` ``v <- 0``,
        ``"none"`` nothing.
    detach_reset : bool
        If True, the spike in the reset is a constant to the gradient (the
        reset still happens; only its gradient path through the spike is cut).
    initial_voltage : float
        Voltage of every neuron before the first step (when no
        ``initial_state`` is given, and after ``reset_state``).
    surrogate : str or dict or keras_spiking.surrogates.Surrogate
        The spike's surrogate gradient (``keras_spiking.surrogates.get``);
        ``"fast_sigmoid"`` (slope 25) by default.
    trainable_tau : bool
        Whether the time constants are trained (default True).
    trainable_threshold : bool
        Whether the threshold is trained (default False).
    tau_constraint, threshold_constraint : constraint, optional
        Keras constraints on the time constants and the threshold; by default
        ``MinValue(MIN_TAU)`` and ``MinValue(MIN_THRESHOLD)`` (whatever the
        constraint, the forward pass clamps them at those minima).
    recurrent : bool
        Add an all-to-all recurrent kernel ``W`` (``units x units``, a weight
        named ``recurrent_kernel``, units = the number of neurons): the
        previous step's spike *counts* (0 or 1, not the ``1 / dt`` heights, so
        ``W`` does not depend on ``dt``) enter the input current,
        ``I_t = x_t + z_{t-1} W``, as in ``keras.layers.SimpleRNN``
        (``W[j, k]``: from neuron ``j`` to neuron ``k``).  The last spike
        counts ``z`` become one more state.
    recurrent_initializer, recurrent_regularizer, recurrent_constraint
        For ``W``, as in ``keras.layers.SimpleRNN`` (default ``"orthogonal"``,
        None, None).
    discretization : str
        How each stage ``tau dv/dt = -v + I`` becomes a step: ``"exact"``
        (default; the zero-order hold, ``a = exp(-dt / tau)``, input gain
        ``1 - a``) or ``"euler"`` (forward Euler, ``a = 1 - dt / tau``, input
        gain ``dt / tau``, as Norse's ``LIFBoxCell`` and SpikingJelly's
        ``LIFNode``; stable only for ``dt < 2 tau``).
    scale_input : bool
        If False, the input is added to the voltage (and to the synaptic
        current) as it is, without the gain: ``v_t = a v_{t-1} + I_t``, as
        snnTorch's ``Leaky`` (``a`` is its ``beta``).
    reset_delay : bool
        If True, a spike resets the voltage at the next step, after the
        decay, instead of in the step it fires: ``v_t = a v_{t-1} + g I_t -
        theta z_{t-1}`` (subtract) or ``a (1 - z_{t-1}) v_{t-1} + g I_t``
        (zero), as snnTorch's ``Leaky`` (whose ``reset_delay`` defaults to
        True and whose reset spike is detached: ``detach_reset=True``).  The
        state ``v`` is then the voltage before the reset.
    dt : float or keras.Variable, optional
        Simulation time step in seconds; ``keras_spiking.default.dt`` if None.
    return_sequences, return_state, stateful, time_major : bool
        See ``keras_spiking.temporal.TemporalLayer``.
    **kwargs
        Passed to ``keras.layers.Layer``.
"""


def _with_shared_parameters(cls):
    """Append the shared parameter documentation to ``cls.__doc__``.

    ``cls.__doc__`` ends in its own ``Parameters`` section; docstrings are
    None under ``python -OO``.
    """
    if cls.__doc__:
        cls.__doc__ = cls.__doc__.rstrip() + "\n" + _SHARED_PARAMETERS.rstrip("\n")
    return cls


@keras.saving.register_keras_serializable(package="keras_spiking")
@_with_shared_parameters
class LIF(_LIFBase):
    r"""Leaky integrate-and-fire neurons with a surrogate gradient.

    For an input current ``x`` of shape ``(batch, time, *features)``, each
    neuron's voltage ``v`` follows, at every step ``t``:

    .. math::

        I_t &= x_t \; (+\, z_{t-1} W \text{ with } \texttt{recurrent}) \\
        v'_t &= a v_{t-1} + (1 - a) I_t, \qquad a = e^{-dt / \tau} \\
        z_t &= H(v'_t - \theta) \\
        v_t &= v'_t - \theta z_t \;\text{(subtract)}, \quad
              v'_t (1 - z_t) \;\text{(zero)}, \quad v'_t \;\text{(none)} \\
        y_t &= z_t / dt

    that is, the exact zero-order-hold solution of ``tau dv/dt = -v + I``
    over each step, a spike (at most one per step) where the updated voltage
    reaches ``theta``, and the reset in the same step.  ``v_{-1}`` is
    ``initial_voltage``.  On the backward pass
    ``dz_t / dv'_t = surrogate.derivative(v'_t - theta)``.

    The states are ``v`` and, with ``recurrent=True``, the last step's spike
    counts ``z``; each ``(batch, *features)``.

    Parameters
    ----------
    tau : float or initializer
        Membrane time constant(s) in seconds (> 0): a float, or anything
        ``keras.initializers.get`` accepts (for example
        ``keras.initializers.RandomUniform(0.01, 0.05)``); one per neuron, a
        weight named ``tau``.
    """

    def __init__(self, tau=0.02, **kwargs):
        super().__init__(time_constants={"tau": tau}, **kwargs)

    def _kernel(self, x, states):
        return lif_kernels.lif(
            x,
            self._log_decay(self.tau),
            self._threshold_tensor(),
            states,
            **self._kernel_options(),
        )


@keras.saving.register_keras_serializable(package="keras_spiking")
@_with_shared_parameters
class CubaLIF(_LIFBase):
    r"""Current-based leaky integrate-and-fire neurons.

    The input drives a synaptic current ``i`` through a first-order synapse,
    and the current drives the membrane of ``LIF``, in the same step:

    .. math::

        I_t &= x_t \; (+\, z_{t-1} W \text{ with } \texttt{recurrent}) \\
        i_t &= a_s i_{t-1} + (1 - a_s) I_t, \qquad a_s = e^{-dt / \tau_s} \\
        v'_t &= a v_{t-1} + (1 - a) i_t, \qquad a = e^{-dt / \tau} \\
        z_t &= H(v'_t - \theta), \quad \text{reset and } y_t = z_t / dt
              \text{ as in } \texttt{LIF}

    Each stage is the exact zero-order-hold solution of its own equation
    (``tau_syn di/dt = -i + I`` for an input held over the step, then
    ``tau dv/dt = -v + i`` for ``i_t`` held over the step).  ``i_{-1} = 0``.

    The states are ``v``, ``i`` and, with ``recurrent=True``, the last
    step's spike counts ``z``; each ``(batch, *features)``.

    Parameters
    ----------
    tau : float or initializer
        Membrane time constant(s) in seconds (> 0), as in ``LIF`` (weight
        ``tau``).
    tau_syn : float or initializer
        Synaptic time constant(s) in seconds (> 0) (weight ``tau_syn``);
        trained with ``tau`` (``trainable_tau``).
    """

    _time_constants = ("tau", "tau_syn")
    _extra_states = ("i",)

    def __init__(self, tau=0.02, tau_syn=0.005, **kwargs):
        super().__init__(time_constants={"tau": tau, "tau_syn": tau_syn}, **kwargs)

    def _kernel(self, x, states):
        return lif_kernels.cuba_lif(
            x,
            self._log_decay(self.tau),
            self._log_decay(self.tau_syn),
            self._threshold_tensor(),
            states,
            **self._kernel_options(),
        )


@keras.saving.register_keras_serializable(package="keras_spiking")
@_with_shared_parameters
class ALIF(_LIFBase):
    r"""Adaptive leaky integrate-and-fire neurons (LSNN-style).

    ``LIF`` with a threshold that rises with each spike and relaxes back
    (Bellec et al. 2018, "Long short-term memory and learning-to-learn in
    networks of spiking neurons", NeurIPS).  At every step ``t``:

    .. math::

        \theta_t &= \theta + \beta b_t \\
        I_t &= x_t \; (+\, z_{t-1} W \text{ with } \texttt{recurrent}) \\
        v'_t &= a v_{t-1} + (1 - a) I_t, \qquad a = e^{-dt / \tau} \\
        z_t &= H(v'_t - \theta_t) \\
        v_t &= v'_t - \theta_t z_t \;\text{(subtract)}, \quad
              v'_t (1 - z_t) \;\text{(zero)}, \quad v'_t \;\text{(none)} \\
        b_{t+1} &= a_b b_t + (1 - a_b) z_t, \qquad a_b = e^{-dt / \tau_b} \\
        y_t &= z_t / dt

    with ``b_0 = 0``: the threshold of step ``t`` counts the spikes up to
    step ``t - 1`` (``b_t = a_b b_{t-1} + (1 - a_b) z_{t-1}``), and a
    subtractive reset subtracts the adapted threshold ``theta_t``.  ``z``
    are spike counts (0 or 1), so ``b`` is in ``[0, 1]`` and ``beta`` in
    units of the voltage.  The gradient reaches ``b`` through the spikes
    (``detach_reset`` does not cut it).

    The states are ``v``, ``b`` (the adaptation that applies to the *next*
    step, ``b_{t+1}``) and, with ``recurrent=True``, the last step's spike
    counts ``z``; each ``(batch, *features)``.

    Parameters
    ----------
    tau : float or initializer
        Membrane time constant(s) in seconds (> 0), as in ``LIF`` (weight
        ``tau``).
    tau_adapt : float or initializer
        Adaptation time constant(s) ``tau_b`` in seconds (> 0) (weight
        ``tau_adapt``); trained with ``tau`` (``trainable_tau``).
    beta : float
        Threshold increase per unit of adaptation (>= 0; 0 makes the layer
        ``LIF``).
    """

    _time_constants = ("tau", "tau_adapt")
    _extra_states = ("b",)

    def __init__(self, tau=0.02, tau_adapt=0.2, beta=1.0, **kwargs):
        super().__init__(time_constants={"tau": tau, "tau_adapt": tau_adapt}, **kwargs)
        if not _is_number(beta) or not (math.isfinite(beta) and beta >= 0):
            raise ValueError(
                f"{self._where} expects `beta` to be a float >= 0; got {beta!r}."
            )
        self.beta = float(beta)

    def _kernel(self, x, states):
        return lif_kernels.alif(
            x,
            self._log_decay(self.tau),
            self._log_decay(self.tau_adapt),
            self._threshold_tensor(),
            self.beta,
            states,
            **self._kernel_options(),
        )

    def get_config(self):
        """The layer's configuration, with ``beta``."""
        config = super().get_config()
        config["beta"] = self.beta
        return config
