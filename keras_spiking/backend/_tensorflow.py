"""TensorFlow shim: ``straight_through``, ``custom_vjp``, ``chunk_cumsum``,
``residue``, ``uniform``, ``loop_is_cheaper``,
``unroll``."""

import tensorflow as tf


@tf.custom_gradient
def straight_through(surrogate, value):
    """Return ``value``; send the incoming gradient to ``surrogate``.

    ``value`` must have the shape and dtype of ``surrogate``; it gets no
    gradient, so whatever computed it keeps no state for backprop.
    """

    def grad(upstream):
        return upstream, None

    return tf.identity(value), grad


def custom_vjp(forward, backward):
    """A function of tensors with a hand-written gradient.

    ``forward(*args) -> (output, residuals)`` and
    ``backward(residuals, upstream) -> gradients`` (one per argument).
    """

    @tf.custom_gradient
    def function(*args):
        output, residuals = forward(*args)

        def grad(upstream):
            return list(backward(residuals, upstream))

        return output, grad

    return function


def chunk_cumsum(x, initial=None, reverse=False, overwrite=False):
    """Running sum along axis 2 of a rank-4 tensor of short chunks.

    ``initial`` (rank 3, without axis 2) is added to the first element of
    each chunk (the last with ``reverse``) before summing; ``overwrite`` is a
    hint that ``x`` is not needed again (unused here).
    """
    del overwrite
    if initial is not None:
        initial = tf.expand_dims(initial, 2)
        if reverse:
            x = tf.concat([x[:, :, :-1], x[:, :, -1:] + initial], axis=2)
        else:
            x = tf.concat([x[:, :, :1] + initial, x[:, :, 1:]], axis=2)
    return tf.cumsum(x, axis=2, reverse=reverse)


def residue(x, bits):
    """``x mod 2**bits`` for int32 ``x`` (``floormod``: exports to ONNX)."""
    return tf.math.floormod(x, 1 << bits)


def uniform(shape, seed_generator):
    """Uniform ``[0, 1)`` float32 values drawn with ``seed_generator``.

    As ``keras.random.uniform``, but with TensorFlow's Philox generator named
    explicitly: under XLA on CPU, the default (``"auto_select"``) with a seed
    read from a variable costs about 1.4 ms per call for a (32, 128) draw,
    Philox 0.08 ms (TensorFlow 2.21).
    """
    seed = tf.cast(tf.math.floormod(seed_generator.next(), tf.int32.max - 1), "int32")
    return tf.random.stateless_uniform(shape, seed=seed, alg="philox")


def loop_is_cheaper(steps, width):
    """Whether a compiled loop over ``steps`` beats the chunked kernels.

    Measured on CPU (benchmarks/bench_layers.py): never for more than a
    handful of steps (an XLA while loop costs about 1 ms per call here,
    and TensorFlow graphs without XLA pay per iteration).
    """
    del steps, width
    return False


def unroll(steps):
    """Whether a loop over ``steps`` (static) steps is unrolled.

    Up to 16 steps: an XLA while loop costs about 1 ms per call here.
    """
    return steps <= 16
