"""Package-wide defaults (the keras-spiking 0.3 module, kept for its users).

``keras_spiking.default`` (also ``keras_spiking.config.default``) holds the
default values of layer arguments.  Changing one affects layers created
afterwards, not existing ones::

    keras_spiking.default.dt = 0.01
    layer = keras_spiking.SpikingActivation("relu")  # layer.dt == 0.01
"""


class DefaultManager:
    """Default values of layer arguments.

    Do not create one: use ``keras_spiking.default``.

    Parameters
    ----------
    dt : float
        Simulation time step in seconds of every layer created with
        ``dt=None`` (0.001 s unless changed).
    """

    def __init__(self, dt=0.001):
        self.dt = dt

    def __repr__(self):
        """``DefaultManager(dt=...)``."""
        return f"DefaultManager(dt={self.dt!r})"


#: The defaults that the layers read.
default = DefaultManager()
