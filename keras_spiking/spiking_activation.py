"""``SpikingActivation``: any activation function, turned into spiking neurons."""

import numbers

import keras
from keras import ops

from keras_spiking import kernels
from keras_spiking.backend import straight_through, uniform
from keras_spiking.seeded_uniform import seeded_uniform
from keras_spiking.temporal import TemporalLayer, check_bool

#: The neuron models of ``SpikingActivation`` (its ``neuron`` argument).
NEURONS = ("rate", "if")


@keras.saving.register_keras_serializable(package="keras_spiking")
class SpikingActivation(TemporalLayer):
    r"""Spiking neurons whose firing rate is an activation function's output.

    For an input ``x`` of shape ``(batch, time, *features)`` each neuron has a
    voltage ``v`` that starts uniformly random in ``[0, 1)`` and, at every
    step, integrates its rate ``r_t = activation(x_t)``:

    .. math::

        v_t' = v_{t-1} + r_t \, dt, \quad n_t = \lfloor v_t' \rfloor, \quad
        v_t = v_t' - n_t, \quad y_t = n_t / dt

    so the output is a train of spikes of height ``1 / dt`` whose integral
    equals that of ``activation(x)`` up to less than one spike per neuron.
    Negative rates give negative spikes; several spikes per step are allowed.

    With ``neuron="if"`` (``activation`` must be ``"relu"``) each neuron is an
    integrate-and-fire neuron instead: the voltage integrates the input
    itself, negative values included, and spikes only while it is at least 1
    (subtractive reset, several spikes per step allowed):

    .. math::

        v_t' = v_{t-1} + x_t \, dt, \quad n_t = \max(\lfloor v_t' \rfloor, 0), \quad
        v_t = v_t' - n_t, \quad y_t = n_t / dt

    Its firing rate is ``relu(x)`` for a constant input, as in the default
    mode, but a negative input lowers the voltage (so it delays later spikes)
    rather than being rectified away at every step.  This is the neuron of
    NIR's ``IF`` node and of ANN-to-SNN conversion, so ``keras_spiking.nir``
    exports it exactly at any depth.  Its voltage ``v`` saturates at
    ``-2**24`` (``kernels.LEVEL_FLOOR``: below that its float32 state would
    no longer hold every integer; see the numerics guide); it is kept as two
    tensors, a fraction in ``[0, 1)`` and an integer level in
    ``[-2**24, 0]``, ``v = fraction + level``, which are its two states.

    On the backward pass the spikes are replaced by the base activation: the
    gradient is ``activation'(x)`` times the incoming gradient
    (spiking-aware training).  With ``spiking_aware_training=False`` the layer
    is simply ``activation(x)`` during training and spikes at inference.

    Parameters
    ----------
    activation : str or callable
        Anything ``keras.activations.get`` accepts; gives the firing rates
        (in Hz).
    dt : float or keras.Variable, optional
        Simulation time step in seconds; ``keras_spiking.default.dt`` if None.
        A ``keras.Variable`` can be changed during training (see
        ``keras_spiking.callbacks.DtScheduler``).
    seed : int, optional
        Seed of the initial voltages.  With a seed, the initial voltages are a
        fixed function of (seed, batch index, neuron), the same on every call
        and every backend; without one, they are drawn afresh on every call.
    spiking_aware_training : bool
        Spike during training too (with the activation's gradient), or use the
        plain activation during training.
    neuron : str
        ``"rate"`` (default): the voltage integrates ``activation(x)``, so any
        activation, and negative rates give negative spikes.  ``"if"``:
        integrate-and-fire on the unrectified input (``activation`` must be
        ``"relu"``); see above.
    initial_voltage : str or float
        ``"uniform"`` (default): uniformly random in ``[0, 1)`` (see
        ``seed``).  A float in ``[0, 1)``: every neuron starts there (0 is
        what NIR graphs and most neuromorphic hardware assume).
    return_sequences, return_state, stateful, time_major : bool
        See ``keras_spiking.temporal.TemporalLayer``.  The state is the
        voltage, shape ``(batch, *features)``; with ``neuron="if"``, the
        two tensors ``(fraction, level)`` whose sum is the voltage.
    **kwargs
        Passed to ``keras.layers.Layer``.
    """

    def __init__(
        self,
        activation,
        *,
        dt=None,
        seed=None,
        spiking_aware_training=True,
        neuron="rate",
        initial_voltage="uniform",
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
        try:
            self.activation = keras.activations.get(activation)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"Layer '{self.name}' (SpikingActivation) expects an activation "
                f"that keras.activations.get accepts (a name such as 'relu', or "
                f"a callable); got {activation!r}."
            ) from error
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
        ):
            raise TypeError(
                f"Layer '{self.name}' expects `seed` to be an int or None; "
                f"got {seed!r}."
            )
        self.seed = None if seed is None else int(seed)
        self.seed_generator = keras.random.SeedGenerator() if seed is None else None
        self.spiking_aware_training = check_bool(
            spiking_aware_training, "spiking_aware_training", self.name
        )
        if not isinstance(neuron, str) or neuron not in NEURONS:
            raise ValueError(
                f"Layer '{self.name}' (SpikingActivation) expects `neuron` to be "
                f"one of {NEURONS}; got {neuron!r}."
            )
        if neuron == "if" and keras.activations.serialize(self.activation) != "relu":
            raise ValueError(
                f"Layer '{self.name}' (SpikingActivation) with neuron='if' "
                f"expects activation 'relu' (the firing rate of an "
                f"integrate-and-fire neuron); got "
                f"{keras.activations.serialize(self.activation)!r}."
            )
        self.neuron = neuron
        #: The integrate-and-fire voltage is two tensors (fraction, level).
        self.num_states = 2 if neuron == "if" else 1
        uniform_voltage = isinstance(initial_voltage, str) and (
            initial_voltage == "uniform"
        )
        if not (
            uniform_voltage
            or (
                isinstance(initial_voltage, numbers.Real)
                and not isinstance(initial_voltage, bool)
                and 0 <= initial_voltage < 1
            )
        ):
            raise ValueError(
                f"Layer '{self.name}' (SpikingActivation) expects "
                f"`initial_voltage` to be 'uniform' or a float in [0, 1); got "
                f"{initial_voltage!r}."
            )
        self.initial_voltage = "uniform" if uniform_voltage else float(initial_voltage)

    def initial_states(self, batch_size):
        """The initial voltages (see ``initial_voltage`` and ``seed``).

        One ``(batch_size, units)`` tensor, or ``(fraction, level)`` with
        ``neuron="if"`` (the level starts at 0).
        """
        if self.initial_voltage != "uniform":
            voltage = ops.full((1, self.units), self.initial_voltage, "float32")
            voltage = ops.broadcast_to(voltage, (batch_size, self.units))
        elif self.seed is None:
            voltage = uniform((batch_size, self.units), self.seed_generator)
        else:
            voltage = seeded_uniform(batch_size, self.units, self.seed)
        if self.neuron == "if":
            return [voltage, ops.zeros_like(voltage)]  # (fraction, level)
        return [voltage]

    def run_steps(self, x, states, training):
        """Spikes for ``x`` from the voltages ``states`` (see the class)."""
        rates = self.activation(x)
        if training and not self.spiking_aware_training:
            return rates, states
        if self.neuron == "if":
            spikes, states = kernels.if_spike_train(
                self._flat(ops.stop_gradient(x)), self._dt_tensor(), states
            )
            spikes = self._unflat(spikes, rates)
            return straight_through(rates, spikes), list(states)
        spikes, voltage = kernels.spike_train(
            self._flat(ops.stop_gradient(rates)), self._dt_tensor(), states[0]
        )
        spikes = self._unflat(spikes, rates)
        return straight_through(rates, spikes), [voltage]

    def get_config(self):
        """The layer's arguments, for ``from_config``."""
        config = super().get_config()
        config.update(
            {
                "activation": keras.activations.serialize(self.activation),
                "seed": self.seed,
                "spiking_aware_training": self.spiking_aware_training,
                "neuron": self.neuron,
                "initial_voltage": self.initial_voltage,
            }
        )
        return config
