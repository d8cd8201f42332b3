r"""Time-stepping kernels of the leaky integrate-and-fire layers.

Plain functions on tensors, apart from the layers (``keras_spiking.lif``),
so that a faster kernel can replace one without touching the layers.

Layout: inputs and outputs are batch-major, ``(batch, time, units)`` (the
feature axes flattened), float32, as in ``keras_spiking.kernels``; states are
``(batch, units)``; per-neuron parameters are ``(units,)`` (or scalars).
The input ``x`` is the input current of every step, already computed (the
synaptic ``Dense`` or convolution runs outside, over all steps at once).

The recurrences, for each step ``t`` (all per neuron):

.. math::

    c_t &= x_t + z_{t-1} W                      && \text{(recurrent only)} \\
    i_t &= a_{syn} i_{t-1} + g_{syn} c_t        && \text{(synapse only)} \\
    v'_t &= a v_{t-1} + g d_t,
        \quad d_t = i_t \text{ with a synapse, else } c_t \\
    \theta_t &= \theta + \beta b_{t-1}            && \text{(adaptation only)} \\
    z_t &= H(v'_t - \theta_t)                    \\
    v_t &= v'_t - \theta_t z_t \text{ (subtract)}, \ v'_t (1 - z_t)
        \text{ (zero)}, \ v'_t \text{ (none)} \\
    b_t &= a_{adapt} b_{t-1} + (1 - a_{adapt}) z_t && \text{(adaptation only)}

Each stage's decay and input gain come from ``log_a = -dt / tau`` and the
``discretization``: ``"exact"`` (the zero-order hold, ``a = exp(log_a)``,
``g = 1 - a``) or ``"euler"`` (forward Euler, ``a = 1 + log_a = 1 - dt / tau``,
``g = dt / tau``); with ``scale_input=False`` the gains are 1 (the input is
added as it is).  With ``reset_delay=True`` a spike resets the voltage at the
*next* step instead, after the decay: ``v'_t = a v'_{t-1} + g d_t - \theta
z_{t-1}`` (subtract) or ``a (1 - z_{t-1}) v'_{t-1} + g d_t`` (zero), and the
state is the voltage before any reset (``z_{t-1} = H(v'_{t-1} - \theta)``
needs no state of its own).

``z_t`` are spike counts (0 or 1); their gradient w.r.t. ``v'_t - theta_t``
is the surrogate derivative (``keras_spiking.surrogates.spike_fn``).  With
``detach_reset`` the ``z`` of the reset is a constant to the gradient (the
reset still happens; the gradient of ``theta_t`` through the subtracted
``theta_t z`` remains).  The adaptation ``b`` always receives the gradient
of ``z``.

Two forms compute the same numbers:

* the membrane kernel (``membrane``): neurons without adaptation or
  recurrence and with the reset in the same step (the synapse, a linear
  filter of the input, runs before it as ``kernels.filters.lowpass``).  Its gradient
  is written by hand: the adjoint recurrence is linear,
  ``lambda_t = k_t a lambda_{t+1} + s_t g_t`` with ``s_t`` the surrogate
  derivative, so the backward pass is one multiply-add per step.  It stores
  the voltages ``v'_t`` of every step (one float32 per neuron and step) and
  recomputes everything else from them.  On PyTorch and JAX it runs as a
  native loop (``backend.fused_lif``: an eager loop, a ``lax.fori_loop``
  over the batch-major time axis); on TensorFlow as ``backend.scan`` (an
  XLA loop, see ``backend.compiled``).
* the general loop (``neuron_loop``): any configuration, the gradient by the
  backend's own autodiff through the loop.
"""

from keras import ops

from keras_spiking import backend as _backend
from keras_spiking.kernels.filters import _one_minus_exp, lowpass
from keras_spiking.surrogates import get as _get_surrogate
from keras_spiking.surrogates import spike_fn

#: The reset modes (what happens to the voltage at a spike).
RESETS = ("subtract", "zero", "none")
#: The discretisations of ``tau dv/dt = -v + x`` over one step.
DISCRETIZATIONS = ("exact", "euler")


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


def decay_and_gain(log_a, discretization="exact", scale_input=True):
    """A stage's decay ``a`` and input gain ``g`` (see the module docstring).

    Parameters
    ----------
    log_a : tensor
        ``-dt / tau`` per neuron.
    discretization : str
        ``"exact"`` (``a = exp(log_a)``, ``g = 1 - a``, computed without
        cancellation and without ``expm1``, which not every ONNX exporter
        converts) or ``"euler"`` (``a = 1 + log_a``, ``g = -log_a``).
    scale_input : bool
        If False, ``g = 1``.

    Returns
    -------
    a, g : tensor
    """
    if discretization == "euler":
        a, g = 1.0 + log_a, -log_a
    else:
        a, g = ops.exp(log_a), _one_minus_exp(log_a)
    return a, (g if scale_input else ops.ones_like(g))


def _check_loop_arguments(reset, states, synapse, adapt, recurrent, beta, options):
    """Check ``neuron_loop``'s arguments: a ValueError for a bad one.

    ``synapse``, ``adapt`` and ``recurrent`` say which optional parts the
    loop has (each needs one more state tensor).
    """
    if reset not in RESETS:
        raise ValueError(
            f"keras_spiking.kernels.lif expects `reset` to be one of {RESETS}; "
            f"got {reset!r}."
        )
    if options["discretization"] not in DISCRETIZATIONS:
        raise ValueError(
            f"keras_spiking.kernels.lif expects `discretization` to be one of "
            f"{DISCRETIZATIONS}; got {options['discretization']!r}."
        )
    expected = 1 + synapse + adapt + recurrent
    if len(states) != expected:
        raise ValueError(
            f"keras_spiking.kernels.lif expects {expected} state tensors "
            f"(v{', i' * synapse}{', b' * adapt}{', z' * recurrent}); got "
            f"{len(states)}."
        )
    if adapt and beta is None:
        raise ValueError(
            "keras_spiking.kernels.lif: an adaptive threshold (`log_a_adapt`) "
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


def _delayed_reset(v, theta, a, surrogate, reset, detach_reset):
    """``a v`` with the reset of the spike ``H(v - theta)`` of ``v`` applied.

    For ``reset_delay``: the decayed voltage of the previous step, reset by
    that step's spike.
    """
    if reset == "none":
        return a * v
    z = spike_fn(v - theta, surrogate)
    if detach_reset:
        z = ops.stop_gradient(z)
    if reset == "subtract":
        return a * v - theta * z
    return a * v * (1.0 - z)


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
    discretization="exact",
    scale_input=True,
    reset_delay=False,
):
    r"""The general recurrence of the module docstring, step by step.

    Parameters
    ----------
    x : tensor
        Input currents, ``(batch, time, units)``, float32.
    log_a : tensor
        ``-dt / tau`` of the membrane, ``(units,)``.
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
    discretization : str
        ``"exact"`` or ``"euler"`` (``decay_and_gain``), for the membrane
        and the synapse.
    scale_input : bool
        If False, the input gains are 1.
    reset_delay : bool
        Reset at the next step, after the decay (see the module docstring).

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
    options = {"discretization": discretization}
    _check_loop_arguments(reset, states, synapse, adapt, recurrent, beta, options)
    surrogate = _get_surrogate(surrogate)

    a_mem, g_mem = decay_and_gain(log_a, discretization, scale_input)
    if synapse:
        a_syn, g_syn = decay_and_gain(log_a_syn, discretization, scale_input)
    if adapt:
        a_adapt, g_adapt = decay_and_gain(log_a_adapt)
    # the first stage's input gain applied to all steps at once
    g_first = g_syn if synapse else g_mem
    x = x * g_first

    def step(states, x_t):
        states = list(states)
        v = states.pop(0)
        i = states.pop(0) if synapse else None
        b = states.pop(0) if adapt else None
        z_last = states.pop(0) if recurrent else None

        drive = x_t
        if recurrent:
            drive = drive + g_first * ops.matmul(z_last, recurrent_kernel)
        if synapse:
            i = a_syn * i + drive
            drive = g_mem * i
        theta = threshold + beta * b if adapt else threshold
        if reset_delay:
            v = _delayed_reset(v, theta, a_mem, surrogate, reset, detach_reset)
            v = v + drive
            z = spike_fn(v - theta, surrogate)
        else:
            v = a_mem * v + drive
            z = spike_fn(v - theta, surrogate)
            v = _reset(v, theta, z, reset, detach_reset)

        new_states = [v]
        if synapse:
            new_states.append(i)
        if adapt:
            new_states.append(a_adapt * b + g_adapt * z)
        if recurrent:
            new_states.append(z)
        return new_states, z

    states, counts = _time_loop(step, list(states), x)
    return counts, list(states)


# ---------------------------------------------------------------------------
# the membrane kernel: a hand-written gradient, native loops where they exist


def _reset_terms(vp, z, theta, reset, detach_reset):
    """Per-step factors of the same-step reset ``v = R(v', z)``.

    Returns ``(v, d, c)``: the voltage after the reset, ``dv/dv'`` holding
    ``z`` and ``dv/dz`` (zero with ``detach_reset``), each broadcast against
    ``vp``.
    """
    if reset == "subtract":
        return vp - theta * z, 1.0, (0.0 if detach_reset else -theta)
    if reset == "zero":
        return vp * (1.0 - z), 1.0 - z, (0.0 if detach_reset else -vp)
    return vp, 1.0, 0.0


def membrane_forward(u, a, theta, v0, reset):
    """The voltages ``v'_t`` of every step before the reset, time-major.

    ``u`` is the scaled drive ``g d_t``, ``(batch, time, units)``; returns
    the voltage after the last step's reset and ``v'`` as ``(time, batch,
    units)`` (by ``backend.scan``).
    """

    def step(v, u_t):
        vp = a * v + u_t
        z = ops.cast(ops.greater_equal(vp, theta), vp.dtype)
        return _reset_terms(vp, z, theta, reset, False)[0], vp

    return _backend.scan(step, v0, ops.transpose(u, (1, 0, 2)))


def step_factors(vp, theta, surrogate, reset, detach_reset):
    """``(s, z, v, d, c)`` of the voltages ``vp`` before their reset.

    The surrogate derivative ``s``, the spikes ``z``, the voltage after the
    reset ``v``, ``d = dv / dv'`` holding ``z`` and ``c = dv / dz`` (0 with
    ``detach_reset``), elementwise.
    """
    s = ops.cast(surrogate.derivative(vp - theta), vp.dtype)
    z = ops.cast(ops.greater_equal(vp, theta), vp.dtype)
    v, d, c = _reset_terms(vp, z, theta, reset, detach_reset)
    return s, z, v, d, c


def parameter_gradients(vp, lam, g_counts, g_last, a, theta, v0, axis, **config):
    """The gradients of ``a`` and ``theta``, for all steps at once.

    ``vp`` (the voltages before the reset), ``lam`` (the gradients of the
    drive) and ``g_counts`` have time on ``axis`` (0 or 1, the batch on the
    other); ``g_last`` is the gradient of the final voltage; ``config`` is
    ``surrogate``, ``reset`` and ``detach_reset``.
    """
    s, z, v, _, c = step_factors(vp, theta, **config)
    lam_next = lam[1:] if axis == 0 else lam[:, 1:]
    v_before = v[:-1] if axis == 0 else v[:, :-1]
    g_v = ops.concatenate([a * lam_next, ops.expand_dims(g_last, axis)], axis)
    g_theta = -s * (g_counts + c * g_v)
    if config["reset"] == "subtract":
        g_theta = g_theta - z * g_v
    previous = ops.concatenate([ops.expand_dims(v0, axis), v_before], axis=axis)
    g_a = ops.sum(lam * previous, axis=(0, 1))
    return g_a, ops.sum(g_theta, axis=(0, 1))


def membrane_gradients(residuals, upstream, surrogate, reset, detach_reset):
    """The gradients of ``membrane`` for the gradients ``upstream`` of its outputs.

    ``residuals`` are the time-major voltages ``v'`` before the reset, ``a``,
    ``theta`` and ``v0``.  One ``backend.scan`` backwards in time computes,
    step by step, with ``g_t`` the gradient of the voltage after step ``t``'s
    reset, ``s_t`` the surrogate derivative, ``gz_t`` the gradient of the
    spike counts, ``c_t = dv_t / dz_t`` (0 with ``detach_reset``) and ``k_t
    = dv_t / dv'_t + s_t c_t``: ``lambda_t = k_t g_t + s_t gz_t`` (the
    gradient of ``u_t``) and ``g_{t-1} = a lambda_t``.  Returns the
    gradients of ``u``, ``a``, ``theta`` and ``v0``.
    """
    vp, a, theta, v0 = residuals
    g_counts, g_last = upstream
    g_counts = ops.transpose(g_counts, (1, 0, 2))
    config = {"surrogate": surrogate, "reset": reset, "detach_reset": detach_reset}

    def step(g, inputs):  # v'_t and gz_t stacked: one tensor (TF's scan)
        s, _, _, d, c = step_factors(inputs[0], theta, **config)
        lam = (d + s * c) * g + s * inputs[1]
        return a * lam, lam

    inputs = ops.stack([vp, g_counts], axis=1)
    g_first, lam = _backend.scan(step, g_last, inputs, reverse=True)
    g_a, g_theta = parameter_gradients(
        vp, lam, g_counts, g_last, a, theta, v0, 0, **config
    )
    return ops.transpose(lam, (1, 0, 2)), g_a, g_theta, g_first


def surrogate_key(surrogate):
    """A hashable key of a surrogate: its class and configuration."""
    return type(surrogate), tuple(sorted(surrogate.get_config().items()))


_MEMBRANE_KERNELS = {}


def _membrane_kernel(surrogate, reset, detach_reset):
    """``membrane`` for one configuration, with its gradient written by hand."""
    key = (surrogate_key(surrogate), reset, detach_reset)
    if key not in _MEMBRANE_KERNELS:
        _MEMBRANE_KERNELS[key] = _make_membrane_kernel(surrogate, reset, detach_reset)
    return _MEMBRANE_KERNELS[key]


def _make_membrane_kernel(surrogate, reset, detach_reset):
    """A new ``_membrane_kernel``."""

    def forward(u, a, theta, v0):
        v_last, vp = membrane_forward(u, a, theta, v0, reset)
        z = ops.cast(ops.greater_equal(vp, theta), vp.dtype)
        return (ops.transpose(z, (1, 0, 2)), v_last), (vp, a, theta, v0)

    def backward(residuals, upstream):
        return membrane_gradients(residuals, upstream, surrogate, reset, detach_reset)

    return _backend.custom_vjp(forward, backward)


def membrane(
    u,
    a,
    theta,
    v0,
    *,
    gain=None,
    surrogate="fast_sigmoid",
    reset="subtract",
    detach_reset=False,
):
    """LIF membranes driven by ``gain * u``, reset in the same step.

    ``v'_t = a v_{t-1} + g u_t``, ``z_t = H(v'_t - theta)``, ``v_t =
    R(v'_t, z_t)`` (module docstring).  Gradients for ``u``, ``a``,
    ``theta``, ``v0`` and the gain come from the adjoint recurrence
    (``membrane_gradients``).

    Parameters
    ----------
    u : tensor
        The drive ``d_t``, ``(batch, time, units)``, float32.
    a : tensor
        Decay per step, ``(units,)``.
    theta : tensor
        Threshold, ``(units,)``.
    v0 : tensor
        Voltage before the first step, ``(batch, units)``.
    gain : tensor or None
        The input gain ``g``, ``(units,)`` (or a scalar); None for 1.  The
        native loops apply it inside the loop (one pass over the input
        fewer than multiplying first); the generic form multiplies first.
    surrogate : Surrogate or str or dict
        The surrogate gradient.
    reset : str
        One of ``RESETS``.
    detach_reset : bool
        No gradient through the spike in the reset.

    Returns
    -------
    counts : tensor
        ``(batch, time, units)``.
    v : tensor
        The voltage after the last step (after its reset), ``(batch, units)``.
    """
    surrogate = _get_surrogate(surrogate)
    outputs = _backend.fused_lif(u, gain, a, theta, v0, surrogate, reset, detach_reset)
    if outputs is None:
        if gain is not None:
            u = u * gain
        outputs = _membrane_kernel(surrogate, reset, detach_reset)(u, a, theta, v0)
    return tuple(outputs)


def _fast_path(options, synapse, adapt, recurrent):
    """Whether ``membrane`` (``filters.lowpass`` for the synapse) applies."""
    return not (adapt or recurrent or options["reset_delay"]) and (
        options["discretization"] == "exact" or not synapse
    )


def _run(
    x, log_a, threshold, states, options, log_a_syn=None, log_a_adapt=None, beta=None
):
    """``neuron_loop``, or the membrane kernel where it applies."""
    synapse = log_a_syn is not None
    recurrent = options["recurrent_kernel"] is not None
    if not _fast_path(options, synapse, log_a_adapt is not None, recurrent):
        return neuron_loop(
            x,
            log_a,
            threshold,
            states,
            log_a_syn=log_a_syn,
            log_a_adapt=log_a_adapt,
            beta=beta,
            **options,
        )
    _check_loop_arguments(
        options["reset"], states, synapse, False, False, None, options
    )
    a, g = decay_and_gain(log_a, options["discretization"], options["scale_input"])
    drive = x
    i_last = None
    if synapse:  # i_t = a_s i_{t-1} + g_s x_t, a lowpass of x / (1 - a_s) * g_s
        if options["scale_input"]:
            current = lowpass(x, log_a_syn, states[1])
        else:
            current = lowpass(x / _one_minus_exp(log_a_syn), log_a_syn, states[1])
        i_last = current[:, -1]
        drive = current
    counts, v = membrane(
        drive,
        a,
        threshold,
        states[0],
        gain=g if options["scale_input"] else None,
        surrogate=options["surrogate"],
        reset=options["reset"],
        detach_reset=options["detach_reset"],
    )
    return counts, [v] if i_last is None else [v, i_last]


def _options(surrogate, reset, detach_reset, recurrent_kernel, extra):
    """The keyword arguments ``neuron_loop`` shares with every layer kernel."""
    options = {
        "surrogate": surrogate,
        "reset": reset,
        "detach_reset": detach_reset,
        "recurrent_kernel": recurrent_kernel,
        "discretization": "exact",
        "scale_input": True,
        "reset_delay": False,
    }
    unknown = set(extra) - set(options)
    if unknown:
        raise TypeError(
            f"keras_spiking.kernels.lif got unexpected keyword arguments "
            f"{sorted(unknown)}; expected some of {sorted(options)}."
        )
    options.update(extra)
    return options


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
    **options,
):
    """Leaky integrate-and-fire neurons: no synapse, no adaptation.

    ``states`` is ``[v]``, or ``[v, z]`` with a recurrent kernel; returns
    the spike counts and the final states.  ``options``:
    ``discretization``, ``scale_input``, ``reset_delay`` (``neuron_loop``).
    """
    options = _options(surrogate, reset, detach_reset, recurrent_kernel, options)
    return _run(x, log_a, threshold, states, options)


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
    **options,
):
    """Current-based LIF neurons: a synapse before the membrane.

    ``states`` is ``[v, i]`` (``[v, i, z]`` with a recurrent kernel).
    """
    options = _options(surrogate, reset, detach_reset, recurrent_kernel, options)
    return _run(x, log_a, threshold, states, options, log_a_syn=log_a_syn)


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
    **options,
):
    """Adaptive LIF neurons: an adaptive threshold.

    ``states`` is ``[v, b]`` (``[v, b, z]`` with a recurrent kernel).
    """
    options = _options(surrogate, reset, detach_reset, recurrent_kernel, options)
    return _run(
        x, log_a, threshold, states, options, log_a_adapt=log_a_adapt, beta=beta
    )
