"""PyTorch shim: ``straight_through``, ``custom_vjp``, ``chunk_cumsum``,
``residue``, ``uniform``, ``loop_is_cheaper``,
``unroll``."""

import keras
import torch


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, surrogate, value):
        return value.view_as(value)

    @staticmethod
    def backward(ctx, upstream):
        return upstream, None


def straight_through(surrogate, value):
    """Return ``value``; send the incoming gradient to ``surrogate``.

    ``value`` must have the shape and dtype of ``surrogate``; it gets no
    gradient, so whatever computed it keeps no state for backprop.
    """
    return _StraightThrough.apply(surrogate, value)


def custom_vjp(forward, backward):
    """A function of tensors with a hand-written gradient.

    ``forward(*args) -> (output, residuals)`` and
    ``backward(residuals, upstream) -> gradients`` (one per argument).
    ``forward`` runs without autograd tracking (so it may work in place on
    its own temporaries); residuals go through ``save_for_backward``.
    """

    class _Function(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            output, residuals = forward(*args)
            ctx.save_for_backward(*residuals)
            return output

        @staticmethod
        def backward(ctx, upstream):
            return tuple(backward(ctx.saved_tensors, upstream))

    return _Function.apply


def chunk_cumsum(x, initial=None, reverse=False, overwrite=False):
    """Running sum along axis 2 of a rank-4 tensor of short chunks.

    ``initial`` (rank 3, without axis 2) is added to the first element of
    each chunk (the last with ``reverse``) before summing.  Chunks are short
    (a few steps): one in-place add per step on a strided view is several
    times faster on CPU than ``torch.cumsum`` over a middle axis.  With
    ``overwrite=True`` the sum is taken in ``x``'s memory (the caller must
    own ``x``, not need it again, and not track it with autograd).
    """
    if torch.jit.is_tracing():  # export (ONNX): no in-place updates of views
        if initial is not None:
            initial = initial.unsqueeze(2)
            if reverse:
                x = torch.cat([x[:, :, :-1], x[:, :, -1:] + initial], dim=2)
            else:
                x = torch.cat([x[:, :, :1] + initial, x[:, :, 1:]], dim=2)
        if reverse:
            return torch.flip(torch.cumsum(torch.flip(x, [2]), 2), [2])
        return torch.cumsum(x, 2)
    y = x if overwrite else x.clone()
    steps = y.shape[2]
    if initial is not None:
        y[:, :, steps - 1 if reverse else 0] += initial
    if reverse:
        for c in range(steps - 2, -1, -1):
            y[:, :, c] += y[:, :, c + 1]
    else:
        for c in range(1, steps):
            y[:, :, c] += y[:, :, c - 1]
    return y


def residue(x, bits):
    """``x mod 2**bits`` for int32 ``x`` (two's complement, so a bit mask)."""
    return torch.bitwise_and(x, (1 << bits) - 1)


def uniform(shape, seed_generator):
    """Uniform ``[0, 1)`` float32 values drawn with ``seed_generator``."""
    return keras.random.uniform(shape, seed=seed_generator)


def loop_is_cheaper(steps, width):
    """Whether a loop over ``steps`` beats the chunked kernels.

    Never beyond a handful of steps: an eager loop pays the Python and
    dispatch cost of several operations per step, and autograd records each.
    """
    del steps, width
    return False


def unroll(steps):
    """Whether a loop over ``steps`` (static) steps is unrolled.

    Up to 16 steps (eager: the same operations either way, without the
    scan's stacking and transposes).
    """
    return steps <= 16
