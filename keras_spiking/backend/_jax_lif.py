"""The LIF membrane kernel under JAX (``fused_lif``).

``kernels.lif.membrane`` as ``lax.fori_loop``s over the time axis of the
batch-major tensors (dynamic slices of axis 1), forward and backward (the
adjoint recurrence of ``kernels.lif.membrane_gradients``): the generic form's
``lax.scan`` needs time-major tensors, and the transposes to and from that
layout cost about as much as the loop itself at a few hundred steps on CPU.
The input gain is applied inside the forward loop: XLA does not fuse an
elementwise producer into a loop, so multiplying first would be a pass of
its own over the input.
"""

import jax
from jax import lax


def _loop(body, steps, init, reverse=False):
    """``lax.fori_loop`` over ``t = 0 .. steps - 1`` (backwards if ``reverse``)."""
    if reverse:
        return lax.fori_loop(0, steps, lambda i, c: body(steps - 1 - i, c), init)
    return lax.fori_loop(0, steps, body, init)


def _function(surrogate, reset, detach_reset):
    """``jax.custom_vjp`` of the membrane for one configuration."""
    from keras_spiking.kernels import lif

    config = {"surrogate": surrogate, "reset": reset, "detach_reset": detach_reset}

    def run(u, g, a, theta, v0, keep):
        """The loop, writing the spikes, or (``keep``) the voltages ``v'``."""

        def body(t, carry):
            v, out = carry
            vp = a * v + g * lax.dynamic_index_in_dim(u, t, 1, keepdims=False)
            _, z, v, _, _ = lif.step_factors(vp, theta, surrogate, reset, False)
            out = lax.dynamic_update_index_in_dim(out, vp if keep else z, t, 1)
            return v, out

        return _loop(body, u.shape[1], (v0, jax.numpy.zeros_like(u)))

    def forward(u, g, a, theta, v0):
        v, vps = run(u, g, a, theta, v0, keep=True)
        counts = (vps >= theta).astype(u.dtype)
        return (counts, v), (vps, u, g, a, theta, v0)

    def backward(residuals, upstream):
        vps, u, g, a, theta, v0 = residuals
        g_counts, g_last = upstream

        def body(t, carry):
            g, lam = carry
            vp = lax.dynamic_index_in_dim(vps, t, 1, keepdims=False)
            gz = lax.dynamic_index_in_dim(g_counts, t, 1, keepdims=False)
            s, _, _, d, c = lif.step_factors(vp, theta, **config)
            lam_t = (d + s * c) * g + s * gz
            return a * lam_t, lax.dynamic_update_index_in_dim(lam, lam_t, t, 1)

        init = (g_last, jax.numpy.zeros_like(vps))
        g_first, lam = _loop(body, vps.shape[1], init, reverse=True)
        g_a, g_theta = lif.parameter_gradients(
            vps, lam, g_counts, g_last, a, theta, v0, 1, **config
        )
        g_g = jax.numpy.sum(lam * u, axis=(0, 1))
        return lam * g, g_g, g_a, g_theta, g_first

    @jax.custom_vjp
    def membrane(u, g, a, theta, v0):
        # without a gradient, no voltages to keep: the loop writes the spikes
        # (one pass over them fewer)
        v, counts = run(u, g, a, theta, v0, keep=False)
        return counts, v

    membrane.defvjp(forward, backward)
    return membrane


_FUNCTIONS = {}


def fused_lif(u, gain, a, theta, v0, surrogate, reset, detach_reset):
    """``kernels.lif.membrane``'s outputs, with their gradient.

    None where the generic form must run: a time axis whose length is not a
    number (export with a symbolic shape), other dtypes.
    """
    if not isinstance(u.shape[1], int) or u.dtype != jax.numpy.float32:
        return None
    from keras_spiking.kernels.lif import surrogate_key

    key = (surrogate_key(surrogate), reset, detach_reset)
    if key not in _FUNCTIONS:
        _FUNCTIONS[key] = _function(surrogate, reset, detach_reset)
    gain = 1.0 if gain is None else gain
    gain, a, theta = (
        jax.numpy.broadcast_to(jax.numpy.asarray(p, u.dtype), u.shape[2:])
        for p in (gain, a, theta)
    )
    return _FUNCTIONS[key](u, gain, a, theta, v0)
