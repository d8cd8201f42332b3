"""Weight constraints."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_spiking")
class Mean(keras.constraints.Constraint):
    r"""Replace a weight by its mean along an axis.

    .. math::

        w \leftarrow \mathrm{broadcast}\left(\frac{1}{n} \sum_{i} w_i\right)

    For example ``Lowpass(0.01, tau_constraint=Mean())`` keeps one time
    constant shared by all the filter's units (the optimiser updates them
    separately; after each update they are set to their mean).

    Parameters
    ----------
    axis : int or tuple of int or None
        Axis (axes) to average over; None averages over all of them.
    """

    def __init__(self, axis=-1):
        if isinstance(axis, list):
            axis = tuple(axis)
        if not (
            axis is None
            or (isinstance(axis, int) and not isinstance(axis, bool))
            or (isinstance(axis, tuple) and all(isinstance(a, int) for a in axis))
        ):
            raise TypeError(
                f"Mean constraint expects `axis` to be an int, a tuple of ints "
                f"or None; got {axis!r}."
            )
        self.axis = axis

    def __call__(self, w):
        """``w`` with every value replaced by the mean along ``axis``."""
        mean = ops.mean(w, axis=self.axis, keepdims=True)
        return ops.broadcast_to(mean, ops.shape(w))

    def get_config(self):
        """The constraint's arguments, for ``from_config``."""
        return {"axis": self.axis}
