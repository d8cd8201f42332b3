"""TensorFlow shim (see ``keras_spiking.backend``)."""

import functools

import tensorflow as tf

from keras_spiking.backend import _common
from keras_spiking.backend._common import add_initial


@tf.custom_gradient
def straight_through(surrogate, value):
    """Return ``value``; send the incoming gradient to ``surrogate``.

    ``value`` must have the shape and dtype of ``surrogate``; it gets no
    gradient, so whatever computed it keeps no state for backprop.
    """

    def grad(upstream):
        return upstream, None

    return tf.identity(value), grad


@functools.cache
def xla_available():
    """Whether this TensorFlow can compile with XLA on its default device.

    Checked once, eagerly, on a tiny function.
    """
    with tf.init_scope():
        try:
            probe = tf.function(lambda x: x + 1, jit_compile=True)
            probe(tf.zeros((1,)))
        except (tf.errors.OpError, ValueError, NotImplementedError):
            return False
    return True


def compiled(function):
    """``function`` compiled with XLA as a cluster of its own, in any mode.

    Keras runs TensorFlow models without XLA by default on machines without
    an accelerator (``jit_compile="auto"``), where each kernel would be
    dozens of separate graph operations (the spiking+lowpass stack at 1,000
    steps: 116 / 178 ms forward / forward+backward as plain graphs, against
    27 / 46 ms with these XLA clusters, in ``benchmarks/bench_layers.py``).
    In a graph, the operations are built inside
    ``tf.xla.experimental.jit_scope``, which marks them for XLA clustering
    but keeps them ordinary operations (a nested
    ``tf.function(jit_compile=True)`` would compile just as well, but
    exporters such as tf2onnx cannot convert the call).  Called eagerly, it
    runs as a ``tf.function(jit_compile=True)``.  Inside a model compiled
    with XLA it is simply part of that cluster.  Where XLA is not available,
    ``function`` runs as is.
    """
    xla = tf.function(function, jit_compile=True, autograph=False)

    @functools.wraps(function)
    def run(*args):
        if not xla_available():
            return function(*args)
        if tf.executing_eagerly():
            # not recorded by a surrounding tape (which would make TensorFlow
            # trace a variant of the function returning its intermediate
            # loop values, which cannot leave XLA): ``compiled`` functions
            # are not differentiated through; ``custom_vjp`` gives them
            # their gradients
            return xla(*tf.nest.map_structure(tf.stop_gradient, args))
        with tf.xla.experimental.jit_scope(
            compile_ops=True, separate_compiled_gradients=True
        ):
            return function(*args)

    return run


def custom_vjp(forward, backward):
    """A function of tensors with a hand-written gradient.

    ``forward(*args) -> (output, residuals)`` and
    ``backward(residuals, upstream) -> gradients`` (one per argument); both
    run ``compiled``.  ``output`` may be a tuple of tensors, and ``upstream``
    is then the tuple of their gradients (zeros for an output not used).
    """
    forward, backward = compiled(forward), compiled(backward)

    @tf.custom_gradient
    def function(*args):
        output, residuals = forward(*args)

        def grad(*upstream):
            if len(upstream) == 1:
                return list(backward(residuals, upstream[0]))
            upstream = tuple(
                tf.zeros_like(y) if g is None else g
                for y, g in zip(output, upstream, strict=True)
            )
            return list(backward(residuals, upstream))

        return output, grad

    return function


# No eager fused kernels (always None): every kernel runs under XLA
# (``compiled``).
fused_spikes = fused_lowpass = fused_fire = _common.no_fused_kernel
fused_lif = _common.no_fused_kernel


def scan(step, init, xs, reverse=False):
    """``keras.ops.scan`` over axis 0 of ``xs`` with a fixed trip count.

    ``keras.ops.scan`` calls ``tf.while_loop`` without
    ``maximum_iterations``, which XLA (``compiled``) cannot compile;
    ``tf.scan`` sets it.  ``step``'s output must have the carry's shape and
    dtype (true of every loop in ``kernels``).
    """

    def packed(previous, x):
        return step(previous[0], x)

    carry, ys = tf.scan(
        packed, xs, initializer=(init, tf.zeros_like(init)), reverse=reverse
    )
    return carry[0 if reverse else -1], ys


def chunk_cumsum(x, initial=None, reverse=False, overwrite=False):
    """Running sum along axis 2 of a rank-4 tensor of short chunks.

    ``initial`` (rank 3, without axis 2) is added to the first element of
    each chunk (the last with ``reverse``) before summing; ``overwrite`` is a
    hint that ``x`` is not needed again (unused here).
    """
    del overwrite
    return tf.cumsum(add_initial(x, initial, reverse), axis=2, reverse=reverse)


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


def loop_is_cheaper(kind, steps, width):
    """Whether a compiled loop over ``steps`` beats the chunked kernels.

    Measured on CPU (benchmarks/bench_layers.py): never for more than a
    handful of steps (an XLA while loop costs about 1 ms per call here).
    """
    del kind, steps, width
    return False


def unroll(steps):
    """Whether a loop over ``steps`` (static) steps is unrolled.

    Up to 16 steps: an XLA while loop costs about 1 ms per call here.
    """
    return steps <= 16


def replica_batch_offset(batch_size):
    """Index in the global batch of this replica's first example.

    Under ``tf.distribute`` (``MirroredStrategy``) each replica runs the
    model on its slice of the global batch, the slices in replica order, so
    replica ``r`` starts at ``r * batch_size``; outside a strategy, 0.  An
    int when the replica id is known when tracing, else an int32 tensor.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 0
    replica = context.replica_id_in_sync_group
    static = tf.get_static_value(replica)
    if static is not None and isinstance(batch_size, int):
        return int(static) * batch_size
    return tf.cast(replica, "int32") * tf.cast(batch_size, "int32")
