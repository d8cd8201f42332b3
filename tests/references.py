"""Small NumPy references of the layers' formulas, for the tests.

Written from the formulas in the README's layer table and the layers'
docstrings, step by step in float64, independent of ``keras_spiking``.  Every
formula takes batch-major arrays ``(batch, time, *features)`` and returns
float64 arrays.  The formulas come first in the layers' parameters (``rates``,
``tau``, ``dt``, ``level``), then in the kernels' (``keras_spiking.kernels``:
increments ``rate * dt``, ``log_a = -dt / tau``, any filter state), then the
reference gradient (central finite differences) and inputs for which float32
arithmetic is exact.
"""

import numpy as np


def spikes(rates, dt, v0):
    """Integrate-and-fire with fractional voltage.

    Each step: ``v += r * dt; n = floor(v); v -= n; out = n / dt``.

    Parameters
    ----------
    rates : array ``(batch, time, *features)``
        Firing rates ``activation(x)`` in Hz.
    dt : float
        Time step in seconds.
    v0 : array ``(batch, *features)``
        Initial voltage.

    Returns
    -------
    out : array ``(batch, time, *features)``
        Spikes, ``n / dt`` per step.
    v : array ``(batch, *features)``
        Voltage after the last step.
    """
    rates = np.asarray(rates, np.float64)
    v = np.array(v0, np.float64)
    out = np.zeros_like(rates)
    for t in range(rates.shape[1]):
        v += rates[:, t] * dt
        n = np.floor(v)
        v -= n
        out[:, t] = n / dt
    return out, v


def running_voltage(rates, dt, v0):
    """``v0 + sum_{s <= t} rates_s * dt`` for every ``t`` (before any floor).

    The cumulative spike count up to step ``t`` is the floor of this; it tells
    where float32 rounding can legitimately move a spike by one step (where
    the value is within rounding of an integer).
    """
    rates = np.asarray(rates, np.float64)
    return np.asarray(v0, np.float64)[:, None] + np.cumsum(rates * dt, axis=1)


def lowpass(x, tau, dt, level):
    """First-order lowpass: ``a = exp(-dt/tau); y_t = (1-a) x_t + a y_{t-1}``.

    ``y_{-1} = level``.  ``tau`` and ``level`` broadcast against the feature
    axes (``level`` may also carry a batch axis).  Returns ``y`` over time.
    """
    return _lowpass(x, np.exp(-dt / np.asarray(tau, np.float64)), level)


def _lowpass(x, a, level):
    """``y_t = (1-a) x_t + a y_{t-1}``, ``y_{-1} = level``, for a given ``a``."""
    x = np.asarray(x, np.float64)
    a = np.asarray(a, np.float64)
    y = np.broadcast_to(np.asarray(level, np.float64), x[:, 0].shape).copy()
    out = np.zeros_like(x)
    for t in range(x.shape[1]):
        y = (1 - a) * x[:, t] + a * y
        out[:, t] = y
    return out


def alpha(x, tau, dt, level):
    """Alpha filter by its transfer-function recurrence.

    With ``a = exp(-dt/tau)`` and ``r = dt/tau``::

        y_t = 2a y_{t-1} - a^2 y_{t-2} + (1 - a - r a) x_t + a (a + r - 1) x_{t-1}

    at rest at ``level`` before ``t = 0``: ``x_{-1} = y_{-1} = y_{-2} = level``.
    """
    x = np.asarray(x, np.float64)
    tau = np.asarray(tau, np.float64)
    a = np.exp(-dt / tau)
    r = dt / tau
    b0 = 1 - a - r * a
    b1 = a * (a + r - 1)
    rest = np.broadcast_to(np.asarray(level, np.float64), x[:, 0].shape).copy()
    y1, y2, x1 = rest, rest.copy(), rest.copy()
    out = np.zeros_like(x)
    for t in range(x.shape[1]):
        y = 2 * a * y1 - a**2 * y2 + b0 * x[:, t] + b1 * x1
        out[:, t] = y
        y1, y2, x1 = y, y1, x[:, t]
    return out


def alpha_step_response(t, tau):
    """Continuous step response ``s(t) = 1 - (1 + t/tau) exp(-t/tau)``.

    The integral of ``h(t) = (t / tau^2) exp(-t / tau)``.
    """
    t = np.asarray(t, np.float64)
    return 1 - (1 + t / tau) * np.exp(-t / tau)


def alpha_impulse_response(t, tau):
    """Continuous impulse response ``h(t) = (t / tau^2) exp(-t / tau)``."""
    t = np.asarray(t, np.float64)
    return t / tau**2 * np.exp(-t / tau)


def lowpass_step_response(t, tau):
    """Continuous step response of ``exp(-t/tau)/tau``: ``1 - exp(-t/tau)``."""
    return 1 - np.exp(-np.asarray(t, np.float64) / tau)


def temporal_avg_pool(x, time_axis=1):
    """Mean over the time axis: ``(1/T) sum_t x_t``."""
    x = np.asarray(x, np.float64)
    return x.sum(axis=time_axis) / x.shape[time_axis]


# ------------------------------------------------- in the kernels' terms ---


def spike_counts(increments, v0):
    """``spikes`` for increments ``rate * dt`` given directly (``dt = 1``).

    Each step: ``v += increment; n = floor(v); v -= n``.  Returns the counts
    ``n`` (not divided by ``dt``) and the voltage after the last step.
    """
    return spikes(increments, 1.0, v0)


def lowpass_log_a(x, log_a, y0):
    """``lowpass`` with ``a = exp(log_a)`` (``log_a = -dt / tau``) from state ``y0``."""
    return _lowpass(x, np.exp(np.asarray(log_a, np.float64)), y0)


def alpha_states(x, log_a, p0, q0):
    """The alpha filter as the kernels hold it: from any state ``(p0, q0)``.

    Two cascaded lowpass stages ``p = lowpass(x)``, ``q = lowpass(p)``, mixed
    as ``(1 - c) p + c q`` with ``c = -log_a / (1 - exp(log_a))``; at rest at
    ``level`` (``p0 = q0 = level``) this is ``alpha``.  Returns the output and
    the last ``p`` and ``q``.
    """
    log_a = np.asarray(log_a, np.float64)
    p = lowpass_log_a(x, log_a, p0)
    q = lowpass_log_a(p, log_a, q0)
    c = -log_a / (1 - np.exp(log_a))
    return (1 - c) * p + c * q, p[:, -1], q[:, -1]


# ------------------------------------------------------------- gradients ---


def finite_difference(f, value, eps):
    """Central differences of the float64 scalar ``f`` w.r.t. each entry of
    ``value``: ``(f(value + eps e_i) - f(value - eps e_i)) / (2 eps)``."""
    value = np.asarray(value, np.float64)
    grad = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        up, down = value.copy(), value.copy()
        up[index] += eps
        down[index] -= eps
        grad[index] = (f(up) - f(down)) / (2 * eps)
    return grad


# ---------------------------------------------------------------- inputs ---


def integer_rates(shape, seed=0, highest=199):
    """Integer rates from -20 to ``highest`` (float32, seeded).

    For ``dt`` a power of two every increment ``rate * dt`` is exact in
    float32, so layers' spikes equal ``spikes`` exactly.
    """
    rng = np.random.default_rng(seed)
    return rng.integers(-20, highest + 1, shape).astype("float32")
