"""``TemporalAvgPool``: the mean over the time axis."""

import keras
from keras import ops

from keras_spiking.temporal import (
    check_bool,
    check_some_steps,
    check_time_axis,
    layer_from_config,
)

#: Why the layer needs a time step (for ``check_some_steps``' message).
_NEEDS_A_STEP = "averages over the time axis (a mean of no values is undefined)"


@keras.saving.register_keras_serializable(package="keras_spiking")
class TemporalAvgPool(keras.layers.Layer):
    r"""Average over the time axis, removing it.

    .. math::

        y = \frac{1}{T} \sum_{t=0}^{T-1} x_t

    An input of 0 time steps has no mean: the layer raises a ValueError.

    Parameters
    ----------
    time_major : bool
        Inputs are ``(time, batch, ...)`` instead of ``(batch, time, ...)``.
    **kwargs
        Passed to ``keras.layers.Layer``.
    """

    def __init__(self, *, time_major=False, **kwargs):
        super().__init__(**kwargs)
        self.time_major = check_bool(time_major, "time_major", self.name)

    @property
    def _time_axis(self):
        return 0 if self.time_major else 1

    def build(self, input_shape):
        """Check that the input has a time axis with at least one step."""
        check_time_axis(self, input_shape)
        check_some_steps(self, input_shape, _NEEDS_A_STEP)

    def call(self, inputs):
        """The mean of ``inputs`` over the time axis."""
        check_time_axis(self, inputs.shape)
        check_some_steps(self, tuple(inputs.shape), _NEEDS_A_STEP)
        return ops.mean(inputs, axis=self._time_axis)

    def compute_output_shape(self, input_shape):
        """``input_shape`` without the time axis."""
        check_time_axis(self, input_shape)
        check_some_steps(self, input_shape, _NEEDS_A_STEP)
        shape = list(input_shape)
        del shape[self._time_axis]
        return tuple(shape)

    def get_config(self):
        """The layer's arguments, for ``from_config``."""
        config = super().get_config()
        config["time_major"] = self.time_major
        return config

    @classmethod
    def from_config(cls, config):
        """Create a layer from its ``get_config``."""
        return layer_from_config(cls, config)
