"""Backend-specific pieces behind backend-neutral functions.

Each backend has one small module here (``_tensorflow``, ``_torch``,
``_jax``; what they share is in ``_common``); this is the only place that
looks at ``keras.backend.backend()``.  Each module provides these names:

* ``straight_through(surrogate, value)``: forward ``value``, gradient to
  ``surrogate``.
* ``custom_vjp(forward, backward)``: a function of tensors with a hand-written
  gradient (``forward(*args) -> (output, residuals)``,
  ``backward(residuals, upstream) -> gradients``).
* ``compiled(function)``: ``function`` (of tensors) as the backend runs
  kernels fastest whatever the caller's mode: XLA on TensorFlow, as is
  elsewhere.
* ``fused_spikes(rates, dt, v0, chunk, levels, bits, levels_for)``: the
  ``direct``/``chunked`` form of ``kernels.spike_train`` written natively
  for eager execution, returning ``(spikes, voltage)``.
* ``fused_fire(counts, level0, floor, span, chunk, levels, levels_for)``:
  the integer part of ``kernels.integrate_fire`` (the level after each step,
  by compositions of level maps, and the spikes from it) written natively
  for eager execution, returning ``(fired, level)``.
* ``fused_lowpass(x, log_a, y0)``: the ``loop``/``unrolled`` form of
  ``kernels.lowpass``, natively, with its gradient, returning ``y``.
* ``fused_lif(u, gain, a, theta, v0, surrogate, reset, detach_reset)``:
  the membrane kernel of ``kernels.lif.membrane`` (its outputs ``(counts,
  v)`` for the drive ``gain * u``, ``gain`` None for 1, with its
  hand-written gradient) written natively: an eager loop on PyTorch,
  ``lax.fori_loop`` over the batch-major time axis on JAX with the gain
  applied in the loop (None for a symbolic time axis); None on TensorFlow.

  Every backend provides these fused kernels (``fused_*``) as functions;
  each returns None where it does not apply (always on TensorFlow and
  JAX, whose kernels XLA compiles; on PyTorch while tracing for export,
  and for the cases its docstring lists), and the caller then runs the
  generic ``keras.ops`` form.  A caller tests the result, never the
  function.
* ``chunk_cumsum(x, initial=None, reverse=False, overwrite=False)``: running
  sum along axis 2 of a rank-4 tensor of short chunks, each started from
  ``initial``.
* ``scan(step, init, xs, reverse=False)``: ``keras.ops.scan`` (over axis
  0), in a form that ``compiled`` compiles.
* ``residue(x, bits)``: ``x mod 2**bits`` for int32 tensors.
* ``replica_batch_offset(batch_size)``: index in the global batch of the
  first example this replica sees (``tf.distribute``; 0 elsewhere).
* ``loop_is_cheaper(kind, steps, width)``: whether a loop over time beats
  the chunked kernels for this kind of kernel (``"spikes"`` or
  ``"filter"``), backend and device (a speed hint).
* ``unroll(steps)``: whether a loop over a static number of steps is
  unrolled (a speed hint).
* ``uniform(shape, seed_generator)``: ``keras.random.uniform`` in ``[0, 1)``,
  with the generator that is fastest on the backend.
"""

import importlib

import keras

_BACKEND = keras.backend.backend()
if _BACKEND not in ("tensorflow", "torch", "jax"):  # pragma: no cover
    raise ImportError(
        f"keras_spiking supports the tensorflow, torch and jax backends, "
        f"not {_BACKEND!r}"
    )
_module = importlib.import_module(f"keras_spiking.backend._{_BACKEND}")

chunk_cumsum = _module.chunk_cumsum
compiled = _module.compiled
custom_vjp = _module.custom_vjp
fused_fire = _module.fused_fire
fused_lif = _module.fused_lif
fused_lowpass = _module.fused_lowpass
fused_spikes = _module.fused_spikes
loop_is_cheaper = _module.loop_is_cheaper
replica_batch_offset = _module.replica_batch_offset
residue = _module.residue
scan = _module.scan
straight_through = _module.straight_through
uniform = _module.uniform
unroll = _module.unroll
