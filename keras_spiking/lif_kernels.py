r"""Time-stepping kernels of the leaky integrate-and-fire layers.

Plain functions on tensors, apart from the layers (``keras_spiking.lif``),
so that a faster kernel can replace one without touching the layers.

Layout: inputs and outputs are batch-major, ``(batch, time, units)`` (the
feature axes flattened), float32, as in ``keras_spiking.kernels``; states are
``(batch, units)``; per-neuron parameters are ``(units,)`` (or scalars).
The input ``x`` is the input current of every step, already computed (the
synaptic ``Dense`` or convolution runs outside, over all steps at once).

The recurrences, for each step ``t`` (all per neuron; ``a = exp(log_a)``):

.. math::

    c_t &= x_t + z_{t-1} W                      && \text{(recurrent only)} \\
    i_t &= a_{syn} i_{t-1} + (1 - a_{syn}) c_t    && \text{(synapse only)} \\
    v'_t &= a v_{t-1} + (1 - a) d_t,
        \quad d_t = i_t \text{ with a synapse, else } c_t \\
    \theta_t &= \theta + \beta b_{t-1}            && \text{(adaptation only)} \\
    z_t &= H(v'_t - \theta_t)                    \\
    v_t &= v'_t - \theta_t z_t \text{ (subtract)}, \ v'_t (1 - z_t)
        \text{ (zero)}, \ v'_t \text{ (none)} \\
    b_t &= a_{adapt} b_{t-1} + (1 - a_{adapt}) z_t && \text{(adaptation only)}

``z_t`` are spike counts (0 or 1); their gradient w.r.t. ``v'_t - theta_t``
is the surrogate derivative (``keras_spiking.surrogates.spike_fn``).  With
``detach_reset`` the ``z_t`` of the reset line is a constant to the gradient
(the reset still happens; the gradient of ``theta_t`` through the subtracted
``theta_t z_t`` remains).  The adaptation ``b`` always receives the gradient
of ``z``.

The gradient is backpropagation through time by the backend's own autodiff
through the loop (``keras.ops.scan``, or a Python loop over a static number
of steps where the backend unrolls: see ``_time_loop``).  A hand-written
backward pass (the adjoint recurrence) and fused kernels are left for later:
this module is the reference they must match.
"""

from keras import ops

from keras_spiking import backend as _backend
from keras_spiking.surrogates import get as _get_surrogate
from keras_spiking.surrogates import spike_fn

#: The reset modes (what happens to the voltage at a spike).
RESETS = ("subtract", "zero", "none")


def _time_loop(step, states, x):
    """Run ``step(states, x_t) -> (states, z_t)`` over axis 1 of ``x``.

    ``states`` is a list of ``(batch, units)`` tensors; returns the final
    states and the ``z_t`` stacked on axis 1.  A Python loop over
    ``ops.unstack`` where the backend unrolls a static number of steps
    (PyTorch, where it is one backward op for the slicing; TensorFlow up to
    16 steps), else ``backend.scan`` (a loop that XLA compiles on
    TensorFlow), carrying the states and the last ``z`` as one stacked
    tensor (TensorFlow's ``backend.scan`` needs outputs shaped as the carry).
    """
    steps = x.shape[1]
    x = ops.transpose(x, (1, 0, 2))  # time-major inside the loop
    if isinstance(steps, int) and _backend.unroll(steps):
        outputs = []
        for x_t in ops.unstack(x, num=steps, axis=0):
            states, z = step(states, x_t)
            outputs.append(z)
        return states, ops.stack(outputs, axis=1)

    count = len(states)

    def packed(carry, x_t):
        new_states, z = step([carry[k] for k in range(count)], x_t)
        carry = ops.stack(list(new_states) + [z], axis=0)
        return carry, carry

    init = ops.stack(list(states) + [ops.zeros_like(states[0])], axis=0)
    carry, ys = _backend.scan(packed, init, x)
    final = [carry[k] for k in range(count)]
    return final, ops.transpose(ys[:, count], (1, 0, 2))


def _decay(log_a):
    """``(a, 1 - a)`` for ``a = exp(log_a)``, ``1 - a`` without cancellation."""
    return ops.exp(log_a), -ops.expm1(log_a)


def _check_loop_arguments(reset, states, synapse, adapt, recurrent, beta):
    """Check ``neuron_loop``'s arguments: a ValueError for a bad one.

    ``synapse``, ``adapt`` and ``recurrent`` say which optional parts the
    loop has (each needs one more state tensor).
    """
    if reset not in RESETS:
        raise ValueError(
            f"keras_spiking.lif_kernels expects `reset` to be one of {RESETS}; "
            f"got {reset!r}."
        )
    expected = 1 + synapse + adapt + recurrent
    if len(states) != expected:
        raise ValueError(
            f"keras_spiking.lif_kernels expects {expected} state tensors "
            f"(v{', i' * synapse}{', b' * adapt}{', z' * recurrent}); got "
            f"{len(states)}."
        )
    if adapt and beta is None:
        raise ValueError(
            "keras_spiking.lif_kernels: an adaptive threshold (`log_a_adapt`) "
            "needs `beta`."
        )


def _reset(v, theta, z, reset, detach_reset):
    """The voltage ``v`` after the reset of the spike counts ``z``.

    ``reset`` is one of ``RESETS``; with ``detach_reset`` the ``z`` of the
    reset is a constant to the gradient.
    """
    z_reset = ops.stop_gradient(z) if detach_reset else z
    if reset == "subtract":
        return v - theta * z_reset
    if reset == "zero":
        return v * (1.0 - z_reset)
    return v


def neuron_loop(
    x,
    log_a,
    threshold,
    states,
    *,
    surrogate="fast_sigmoid",
    reset="subtract",
    detach_reset=False,
    recurrent_kernel=None,
    log_a_syn=None,
    log_a_adapt=None,
    beta=None,
):
    r"""The general recurrence of the module docstring.

    Parameters
    ----------
    x : tensor
        Input currents, ``(batch, time, units)``, float32.
    log_a : tensor
        ``log`` of the membrane decay per step, ``-dt / tau``, ``(units,)``.
    threshold : tensor
        Threshold ``theta`` per neuron, ``(units,)`` (or a scalar).
    states : list of tensor
        ``(batch, units)`` each: ``v``, then ``i`` (if ``log_a_syn``), then
        ``b`` (if ``log_a_adapt``), then the last step's spike counts ``z``
        (if ``recurrent_kernel``).
    surrogate : Surrogate or str or dict
        The surrogate gradient (``keras_spiking.surrogates.get``).
    reset : str
        One of ``RESETS``.
    detach_reset : bool
        No gradient through the spike in the reset.
    recurrent_kernel : tensor, optional
        ``W``, ``(units, units)``: ``W[j, k]`` weighs neuron ``j``'s spike
        count of the previous step in neuron ``k``'s current.
    log_a_syn : tensor, optional
        ``-dt / tau_syn``, ``(units,)``: a current-based synapse.
    log_a_adapt : tensor, optional
        ``-dt / tau_adapt``, ``(units,)``: an adaptive threshold (needs
        ``beta``).
    beta : tensor or float, optional
        Threshold increase per unit of adaptation ``b``.

    Returns
    -------
    counts : tensor
        Spike counts ``z`` (0 or 1), ``(batch, time, units)``.
    states : list of tensor
        The final states, in the order of ``states``.
    """
    synapse = log_a_syn is not None
    adapt = log_a_adapt is not None
    recurrent = recurrent_kernel is not None
    _check_loop_arguments(reset, states, synapse, adapt, recurrent, beta)
    surrogate = _get_surrogate(surrogate)

    a_mem, b_mem = _decay(log_a)
    if synapse:
        a_syn, b_syn = _decay(log_a_syn)
    if adapt:
        a_adapt, b_adapt = _decay(log_a_adapt)
    # the first stage's input scale applied to all steps at once
    b_first = b_syn if synapse else b_mem
    x = x * b_first

    def step(states, x_t):
        states = list(states)
        v = states.pop(0)
        i = states.pop(0) if synapse else None
        b = states.pop(0) if adapt else None
        z_last = states.pop(0) if recurrent else None

        drive = x_t
        if recurrent:
            drive = drive + b_first * ops.matmul(z_last, recurrent_kernel)
        if synapse:
            i = a_syn * i + drive
            drive = b_mem * i
        v = a_mem * v + drive
        theta = threshold + beta * b if adapt else threshold
        z = spike_fn(v - theta, surrogate)
        v = _reset(v, theta, z, reset, detach_reset)

        new_states = [v]
        if synapse:
            new_states.append(i)
        if adapt:
            new_states.append(a_adapt * b + b_adapt * z)
        if recurrent:
            new_states.append(z)
        return new_states, z

    states, counts = _time_loop(step, list(states), x)
    return counts, list(states)


def lif(
    x,
    log_a,
    threshold,
    states,
    *,
    surrogate="fast_sigmoid",
    reset="subtract",
    detach_reset=False,
    recurrent_kernel=None,
):
    """Leaky integrate-and-fire neurons: ``neuron_loop`` without synapse or adaptation.

    ``states`` is ``[v]``, or ``[v, z]`` with a recurrent kernel; returns
    the spike counts and the final states.
    """
    return neuron_loop(
        x,
        log_a,
        threshold,
        states,
        surrogate=surrogate,
        reset=reset,
        detach_reset=detach_reset,
        recurrent_kernel=recurrent_kernel,
    )


def cuba_lif(
    x,
    log_a,
    log_a_syn,
    threshold,
    states,
    *,
    surrogate="fast_sigmoid",
    reset="subtract",
    detach_reset=False,
    recurrent_kernel=None,
):
    """Current-based LIF neurons: ``neuron_loop`` with a synapse.

    ``states`` is ``[v, i]`` (``[v, i, z]`` with a recurrent kernel).
    """
    return neuron_loop(
        x,
        log_a,
        threshold,
        states,
        surrogate=surrogate,
        reset=reset,
        detach_reset=detach_reset,
        recurrent_kernel=recurrent_kernel,
        log_a_syn=log_a_syn,
    )


def alif(
    x,
    log_a,
    log_a_adapt,
    threshold,
    beta,
    states,
    *,
    surrogate="fast_sigmoid",
    reset="subtract",
    detach_reset=False,
    recurrent_kernel=None,
):
    """Adaptive LIF neurons: ``neuron_loop`` with an adaptive threshold.

    ``states`` is ``[v, b]`` (``[v, b, z]`` with a recurrent kernel).
    """
    return neuron_loop(
        x,
        log_a,
        threshold,
        states,
        surrogate=surrogate,
        reset=reset,
        detach_reset=detach_reset,
        recurrent_kernel=recurrent_kernel,
        log_a_adapt=log_a_adapt,
        beta=beta,
    )
