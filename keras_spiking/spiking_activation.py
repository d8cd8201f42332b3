"""``SpikingActivation``: any activation function, turned into spiking neurons."""

import keras
from keras import ops

from keras_spiking import kernels
from keras_spiking.backend import straight_through, uniform
from keras_spiking.seeded_uniform import seeded_uniform
from keras_spiking.temporal import TemporalLayer, dt_config, resolve_dt


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
    return_sequences, return_state, stateful, time_major : bool
        See ``keras_spiking.temporal.TemporalLayer``.  The state is the
        voltage, shape ``(batch, *features)``.
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
        return_sequences=True,
        return_state=False,
        stateful=False,
        time_major=False,
        **kwargs,
    ):
        super().__init__(
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
        self.dt = resolve_dt(dt, self.name)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(
                f"Layer '{self.name}' expects `seed` to be an int or None; "
                f"got {seed!r}."
            )
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator() if seed is None else None
        self.spiking_aware_training = spiking_aware_training

    def _initial_states(self, batch_size):
        if self.seed is None:
            voltage = uniform((batch_size, self.units), self.seed_generator)
        else:
            voltage = seeded_uniform(batch_size, self.units, self.seed)
        return [voltage]

    def _run(self, x, states, training):
        rates = self.activation(x)
        if training and not self.spiking_aware_training:
            return rates, states
        spikes, voltage = kernels.spike_train(
            self._flat(ops.stop_gradient(rates)), self._dt_tensor(), states[0]
        )
        spikes = self._unflat(spikes, rates)
        return straight_through(rates, spikes), [voltage]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "activation": keras.activations.serialize(self.activation),
                "dt": dt_config(self.dt),
                "seed": self.seed,
                "spiking_aware_training": self.spiking_aware_training,
            }
        )
        return config
