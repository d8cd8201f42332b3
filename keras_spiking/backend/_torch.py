"""PyTorch shim: ``straight_through`` with ``torch.autograd.Function``."""

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
