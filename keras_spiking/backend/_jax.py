"""JAX shim: ``straight_through``, ``custom_vjp``, ``chunk_cumsum``,
``residue``."""

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


def custom_vjp(forward, backward):
    """A function of tensors with a hand-written gradient.

    ``forward(*args) -> (output, residuals)`` and
    ``backward(residuals, upstream) -> gradients`` (one per argument).
    """

    @jax.custom_vjp
    def function(*args):
        return forward(*args)[0]

    function.defvjp(forward, lambda res, g: tuple(backward(res, g)))
    return function


def chunk_cumsum(x, initial=None, reverse=False, overwrite=False):
    """Running sum along axis 2 of a rank-4 tensor of short chunks.

    ``initial`` (rank 3, without axis 2) is added to the first element of
    each chunk (the last with ``reverse``) before summing; ``overwrite`` is a
    hint that ``x`` is not needed again (unused here).
    """
    del overwrite
    if initial is not None:
        initial = jax.numpy.expand_dims(initial, 2)
        if reverse:
            x = jax.numpy.concatenate([x[:, :, :-1], x[:, :, -1:] + initial], axis=2)
        else:
            x = jax.numpy.concatenate([x[:, :, :1] + initial, x[:, :, 1:]], axis=2)
    return jax.lax.cumsum(x, axis=2, reverse=reverse)


def residue(x, bits):
    """``x mod 2**bits`` for int32 ``x`` (two's complement, so a bit mask)."""
    return jax.numpy.bitwise_and(x, (1 << bits) - 1)
