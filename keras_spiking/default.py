"""Package-wide defaults.

``keras_spiking.default.dt`` is the simulation time step (in seconds) used by
every layer created with ``dt=None``; changing it affects layers created
afterwards, not existing ones.
"""

#: Default simulation time step, in seconds.
dt = 0.001
