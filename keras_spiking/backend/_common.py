"""Backend-shim pieces that more than one backend shares (``keras.ops``)."""

import keras
from keras import ops


def add_initial(x, initial, reverse=False):
    """``x`` (rank 4, chunks on axis 2) with ``initial`` (rank 3) added.

    ``initial`` goes to the first element of each chunk (the last with
    ``reverse``).
    """
    if initial is None:
        return x
    initial = ops.expand_dims(initial, 2)
    if reverse:
        return ops.concatenate([x[:, :, :-1], x[:, :, -1:] + initial], axis=2)
    return ops.concatenate([x[:, :, :1] + initial, x[:, :, 1:]], axis=2)


def residue(x, bits):
    """``x mod 2**bits`` for int32 ``x`` (two's complement, so a bit mask)."""
    return ops.bitwise_and(x, (1 << bits) - 1)


def scan(step, init, xs, reverse=False):
    """``keras.ops.scan(step, init, xs, reverse=reverse)``.

    Returns the last carry and the stacked outputs.
    """
    return ops.scan(step, init, xs, reverse=reverse)


def uniform(shape, seed_generator):
    """Uniform ``[0, 1)`` float32 values drawn with ``seed_generator``."""
    return keras.random.uniform(shape, seed=seed_generator)


def no_fused_kernel(*args):
    """A fused-kernel function (``fused_*``) of a backend that has none.

    Always None, so the caller runs the generic ``keras.ops`` form.
    """
    del args
    return None


def not_compiled(function):
    """``compiled`` for backends that run kernels as the caller runs them."""
    return function


def no_replica_offset(batch_size):
    """``replica_batch_offset`` where it is always 0.

    For backends whose replicas see the global batch (JAX's
    ``keras.distribution``) or number their own examples (a PyTorch process
    under ``DistributedDataParallel``).
    """
    return 0
