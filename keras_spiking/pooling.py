"""``TemporalAvgPool``: the mean over the time axis."""

import keras
from keras import ops

from keras_spiking.temporal import check_time_axis


@keras.saving.register_keras_serializable(package="keras_spiking")
class TemporalAvgPool(keras.layers.Layer):
    r"""Average over the time axis, removing it.

    .. math::

        y = \frac{1}{T} \sum_{t=0}^{T-1} x_t

    Parameters
    ----------
    time_major : bool
        Inputs are ``(time, batch, ...)`` instead of ``(batch, time, ...)``.
    **kwargs
        Passed to ``keras.layers.Layer``.
    """

    def __init__(self, *, time_major=False, **kwargs):
        super().__init__(**kwargs)
        self.time_major = time_major

    @property
    def _time_axis(self):
        return 0 if self.time_major else 1

    def build(self, input_shape):
        check_time_axis(self, input_shape)

    def call(self, inputs):
        return ops.mean(inputs, axis=self._time_axis)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        del shape[self._time_axis]
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config["time_major"] = self.time_major
        return config
