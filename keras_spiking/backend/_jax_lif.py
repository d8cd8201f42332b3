"""The LIF membrane kernel under JAX (``fused_lif``).

``kernels.lif.membrane`` as ``lax.fori_loop``s over the time axis of the
batch-major tensors (dynamic slices of axis 1), forward and backward (the
adjoint recurrence of ``kernels.lif.membrane_gradients``): the generic form's
``lax.scan`` needs time-major tensors, and the transposes to and from that
layout cost about as much as the loop itself at a few hundred steps on CPU.
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

    def forward(u, a, theta, v0):
        def body(t, carry):
            v, vps = carry
            vp = a * v + lax.dynamic_index_in_dim(u, t, 1, keepdims=False)
            vps = lax.dynamic_update_index_in_dim(vps, vp, t, 1)
            _, _, v, _, _ = lif.step_factors(vp, theta, surrogate, reset, False)
            return v, vps

        v, vps = _loop(body, u.shape[1], (v0, jax.numpy.zeros_like(u)))
        counts = (vps >= theta).astype(u.dtype)
        return (counts, v), (vps, a, theta, v0)

    def backward(residuals, upstream):
        vps, a, theta, v0 = residuals
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
        return lam, g_a, g_theta, g_first

    @jax.custom_vjp
    def membrane(u, a, theta, v0):
        return forward(u, a, theta, v0)[0]

    membrane.defvjp(forward, backward)
    return membrane


_FUNCTIONS = {}


def fused_lif(u, a, theta, v0, surrogate, reset, detach_reset):
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
    a, theta = (jax.numpy.broadcast_to(p, u.shape[2:]) for p in (a, theta))
    return _FUNCTIONS[key](u, a, theta, v0)
