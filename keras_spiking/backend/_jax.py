"""JAX shim (see ``keras_spiking.backend``)."""

import jax

from keras_spiking.backend import _common
from keras_spiking.backend._common import add_initial

# shared with another backend (see _common)
compiled = _common.not_compiled
residue = _common.residue
scan = _common.scan
uniform = _common.uniform
replica_batch_offset = _common.no_replica_offset


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
    ``backward(residuals, upstream) -> gradients`` (one per argument);
    ``output`` may be a tuple of tensors, and ``upstream`` is then the tuple
    of their gradients.
    """

    @jax.custom_vjp
    def function(*args):
        return forward(*args)[0]

    function.defvjp(forward, lambda res, g: tuple(backward(res, g)))
    return function


# No eager fused kernels (always None): XLA fuses the kernels under ``jax.jit``.
fused_spikes = fused_lowpass = fused_fire = _common.no_fused_kernel
from keras_spiking.backend._jax_lif import fused_lif  # noqa: E402, F401


def chunk_cumsum(x, initial=None, reverse=False, overwrite=False):
    """Running sum along axis 2 of a rank-4 tensor of short chunks.

    ``initial`` (rank 3, without axis 2) is added to the first element of
    each chunk (the last with ``reverse``) before summing; ``overwrite`` is a
    hint that ``x`` is not needed again (unused here).
    """
    del overwrite
    x = add_initial(x, initial, reverse)
    return jax.lax.cumsum(x, axis=2, reverse=reverse)


def loop_is_cheaper(kind, steps, width):
    """Whether a compiled loop over ``steps`` beats the chunked kernels.

    On CPU, ``lax.scan`` costs a few microseconds per iteration, so once a
    step has a few thousand values (``width`` = batch x units) the loop is
    faster than the chunked sums at every length we measured
    (benchmarks/bench_layers.py, (32, T, 128), T up to 10,000).  On
    accelerators a loop over time leaves the device idle: chunked kernels.
    """
    del kind, steps
    return width is not None and width >= 2048 and jax.devices()[0].platform == "cpu"


def unroll(steps):
    """Whether a loop over ``steps`` (static) steps is unrolled.

    Never: XLA would compute each unrolled step's output in a fusion of its
    own, recomputing the recurrence from the first step (quadratic work);
    ``lax.scan`` costs a few microseconds per step on CPU.
    """
    del steps
    return False
