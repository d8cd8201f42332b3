"""JAX shim: ``straight_through`` with ``jax.custom_vjp``."""

import jax


@jax.custom_vjp
def straight_through(surrogate, value):
    """Return ``value``; send the incoming gradient to ``surrogate``.

    ``value`` must have the shape and dtype of ``surrogate``; it gets no
    gradient, so whatever computed it keeps no state for backprop.
    """
    return value


def _forward(surrogate, value):
    return value, None


def _backward(_, upstream):
    return upstream, None


straight_through.defvjp(_forward, _backward)
