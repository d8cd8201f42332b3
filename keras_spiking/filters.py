"""Filters with trainable time constants: ``Lowpass`` and ``Alpha``."""

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_spiking import kernels
from keras_spiking.temporal import TemporalLayer, check_bool


def _with_filter_parameters(cls):
    """Append ``_Filter``'s parameter documentation to ``cls.__doc__``.

    Docstrings are None under ``python -OO``: then there is nothing to append.
    """
    if cls.__doc__ and _Filter.__doc__:
        cls.__doc__ += _Filter.__doc__.split("\n", 1)[1]
    return cls


class _Filter(TemporalLayer):
    """Shared parts of the filters: ``tau``, the initial level, ``dt``.

    Parameters
    ----------
    tau_initializer : float or initializer
        Initial time constant(s) ``tau`` in seconds: a positive float, or
        anything ``keras.initializers.get`` accepts.
    dt : float or keras.Variable, optional
        Simulation time step in seconds; ``keras_spiking.default.dt`` if None.
    apply_during_training : bool
        If False, the layer is the identity during training (its weights then
        get no gradient), and filters only at inference.
    level_initializer : str or initializer
        Initializer of the trainable initial level (the output before the
        first step, with the filter at rest).
    initial_level_constraint, tau_constraint : constraint, optional
        Keras constraints on the initial level and on ``tau``.
    return_sequences, return_state, stateful, time_major, unroll : bool
        See ``keras_spiking.temporal.TemporalLayer``.
    **kwargs
        Passed to ``keras.layers.Layer``.

    Notes
    -----
    ``tau`` and the initial level have one value per feature (the shape of the
    input's feature axes).  ``tau`` is clipped to at least
    ``keras.config.epsilon()`` in the forward pass.
    """

    def __init__(
        self,
        tau_initializer,
        *,
        dt=None,
        apply_during_training=True,
        level_initializer="zeros",
        initial_level_constraint=None,
        tau_constraint=None,
        return_sequences=True,
        return_state=False,
        stateful=False,
        time_major=False,
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
        if isinstance(tau_initializer, numbers.Real) and not isinstance(
            tau_initializer, bool
        ):
            self._check_tau(float(tau_initializer))
            self.tau_initializer = keras.initializers.Constant(float(tau_initializer))
        else:
            self.tau_initializer = self._get(
                keras.initializers,
                tau_initializer,
                "tau_initializer",
                "a positive float (seconds) or a Keras initializer",
            )
        self.apply_during_training = check_bool(
            apply_during_training, "apply_during_training", self.name
        )
        self.level_initializer = self._get(
            keras.initializers,
            level_initializer,
            "level_initializer",
            "a Keras initializer",
        )
        self.initial_level_constraint = self._get(
            keras.constraints,
            initial_level_constraint,
            "initial_level_constraint",
            "a Keras constraint or None",
            optional=True,
        )
        self.tau_constraint = self._get(
            keras.constraints,
            tau_constraint,
            "tau_constraint",
            "a Keras constraint or None",
            optional=True,
        )

    def _get(self, module, identifier, argument, expected, optional=False):
        """``module.get(identifier)``, with errors that name the layer and argument.

        ``module`` is ``keras.initializers`` or ``keras.constraints``.
        """
        if identifier is None and not optional:
            found = None
        else:
            try:
                found = module.get(identifier)
            except (ValueError, TypeError):
                found = None
            if identifier is None or found is not None:
                return found
        raise ValueError(
            f"Layer '{self.name}' ({type(self).__name__}) expects "
            f"`{argument}` to be {expected}; got {identifier!r}."
        )

    def _check_tau(self, tau_min):
        if not (tau_min > 0 and math.isfinite(tau_min)):
            raise ValueError(
                f"Layer '{self.name}' ({type(self).__name__}) expects time "
                f"constants tau > 0 and finite (seconds); got a tau of {tau_min}."
            )

    def build_weights(self, feature_shape):
        self.tau = self.add_weight(
            shape=feature_shape,
            initializer=self.tau_initializer,
            constraint=self.tau_constraint,
            autocast=False,  # read in float32 under mixed precision too
            name="tau",
        )
        self.initial_level = self.add_weight(
            shape=feature_shape,
            initializer=self.level_initializer,
            constraint=self.initial_level_constraint,
            autocast=False,
            name="initial_level",
        )
        try:
            tau = np.asarray(self.tau.numpy())
        except Exception:  # not eager (a graph being traced): nothing to read
            return
        bad = tau[~np.isfinite(tau)]
        self._check_tau(float(bad.flat[0]) if bad.size else float(tau.min()))

    def initial_states(self, batch_size):
        """Every state at the trainable initial level (the filter at rest)."""
        level = ops.reshape(ops.cast(self.initial_level, "float32"), (1, self.units))
        level = ops.broadcast_to(level, (batch_size, self.units))
        return [level] * self.num_states

    def _log_a(self):
        """``-dt / tau`` per unit, float32."""
        return -self._dt_tensor() / self._per_unit(self.tau, keras.config.epsilon())

    def _filter(self, x, log_a, states):
        """Filter ``x`` with decay ``exp(log_a)`` per unit from ``states``.

        ``x`` is ``(batch, time, units)``, float32.  Returns the output (same
        layout) and the final states (implemented by each filter).
        """
        raise NotImplementedError

    def run_steps(self, x, states, training):
        """Filter ``x`` from ``states`` (the identity in training if so set)."""
        if training and not self.apply_during_training:
            return x, states
        y, states = self._filter(self._flat(x), self._log_a(), states)
        return self._unflat(y, x), states

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "tau_initializer": keras.initializers.serialize(self.tau_initializer),
                "apply_during_training": self.apply_during_training,
                "level_initializer": keras.initializers.serialize(
                    self.level_initializer
                ),
                "initial_level_constraint": keras.constraints.serialize(
                    self.initial_level_constraint
                ),
                "tau_constraint": keras.constraints.serialize(self.tau_constraint),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_spiking")
@_with_filter_parameters
class Lowpass(_Filter):
    r"""First-order lowpass filter with trainable time constants.

    The filter ``h(t) = exp(-t / tau) / tau``, discretised with a zero-order
    hold (without its one-step delay):

    .. math::

        a = e^{-dt / \tau}, \qquad y_t = (1 - a) x_t + a y_{t-1}

    with ``y_{-1}`` the trainable initial level.  The state is ``y``, shape
    ``(batch, *features)``.
    """

    num_states = 1

    def _filter(self, x, log_a, states):
        y = kernels.lowpass(x, log_a, states[0])
        return y, [y[:, -1]]


@keras.saving.register_keras_serializable(package="keras_spiking")
@_with_filter_parameters
class Alpha(_Filter):
    r"""Second-order (alpha) filter with trainable time constants.

    The filter ``h(t) = (t / tau^2) exp(-t / tau)``, discretised exactly with a
    zero-order hold (without its one-step delay).  With ``a = exp(-dt / tau)``
    and ``r = dt / tau``:

    .. math::

        y_t = 2 a y_{t-1} - a^2 y_{t-2} + (1 - a - r a) x_t + a (a + r - 1) x_{t-1}

    It is computed as two lowpass stages ``p`` (of ``x``) and ``q`` (of
    ``p``), ``y = (1 - c) p + c q`` with ``c = r / (1 - a)``.  The state is
    ``(p, q)``, two tensors of shape ``(batch, *features)``; both start at the
    trainable initial level (the filter at rest at that level).
    """

    num_states = 2

    def _filter(self, x, log_a, states):
        y, states = kernels.alpha(x, log_a, states)
        return y, list(states)
