"""Time-stepping kernels: plain functions on tensors, apart from the layers.

Every function here takes tensors with the batch on axis 0, time on axis 1 and
all feature axes flattened into axis 2, that is ``(batch, time, units)``, and
computes in float32.  The layers (``SpikingActivation``, ``Lowpass``,
``Alpha``) only reshape, cast and call them.

One module per family of kernels, each with its maths in its docstring; the
names below are all re-exported here, so ``keras_spiking.kernels.X`` is the
way to use them:

* ``kernels.plan``: the forms a kernel runs in (``Plan``, ``choose_plan``,
  ``forced_form``), the limits of the chunked forms (``CHUNK`` and the
  constants beside it) and the helpers every family shares (loops over
  time, chunking);
* ``kernels.spikes``: fractional-voltage spikes in exact fixed point
  (``integrate_spikes``, ``spike_train``), the neurons of
  ``SpikingActivation``;
* ``kernels.integrate_and_fire``: integrate-and-fire on the unrectified
  input (``integrate_fire``, ``if_spike_train``), for ``neuron="if"``;
* ``kernels.filters``: the linear recurrences of ``Lowpass`` and ``Alpha``
  (``lowpass``, ``alpha``), with hand-written gradients;
* ``kernels.lif``: the leaky integrate-and-fire neurons of
  ``keras_spiking.lif`` (``membrane``, ``neuron_loop``, ``lif``,
  ``cuba_lif``, ``alif``), with hand-written gradients; a module of its own,
  not re-exported here (its names would shadow the layers' module).

Each family calls its backend's native eager form where one exists
(``backend.fused_spikes``, ``fused_fire``, ``fused_lowpass``: functions on
every backend, returning None where they do not apply) and its
``keras.ops`` form otherwise.

Exporter constraints the kernels respect (each one is a workaround; keep
them): no ``expm1`` (``_one_minus_exp``: not in every ONNX exporter); zeros
made by broadcasting a ``(1, 1, 1)`` constant and indices by ``arange``, not
``ops.zeros(shape)`` or running sums of ones (torch's ONNX tracer freezes
such shapes at the example's); symbolic lengths take the loop (jax2onnx
cannot pad and reshape a symbolic axis into chunks); ``residue`` of a
non-negative argument on TensorFlow (tf2onnx turns ``FloorMod`` of a
negative int into a truncated remainder); no integer division in the
seeded voltages (``keras_spiking.seeded_uniform``); on TensorFlow,
``backend.compiled`` marks operations with ``jit_scope`` rather than calling
a nested XLA function (tf2onnx cannot convert the call); the PyTorch fused
kernels step aside while tracing.  ``docs/design.md`` lists them all.
"""

# the backend shims, as ``kernels._backend`` (the tests replace its fused
# kernels to run the generic forms)
from keras_spiking import backend as _backend  # noqa: F401
from keras_spiking.kernels.filters import alpha, alpha_naive, lowpass, lowpass_naive
from keras_spiking.kernels.integrate_and_fire import (
    LEVEL_FLOOR,
    if_spike_train,
    integrate_fire,
    integrate_fire_naive,
)
from keras_spiking.kernels.plan import (
    CHUNK,
    DYNAMIC_LEVELS,
    FILTER_LOOP_MAX,
    FORMS,
    FRACTION_BITS,
    SPIKE_DIRECT_MAX,
    Plan,
    choose_plan,
    forced_form,
)
from keras_spiking.kernels.spikes import (
    integrate_spikes,
    integrate_spikes_naive,
    spike_train,
)

__all__ = [
    "CHUNK",
    "DYNAMIC_LEVELS",
    "FILTER_LOOP_MAX",
    "FORMS",
    "FRACTION_BITS",
    "LEVEL_FLOOR",
    "SPIKE_DIRECT_MAX",
    "Plan",
    "alpha",
    "alpha_naive",
    "choose_plan",
    "forced_form",
    "if_spike_train",
    "integrate_fire",
    "integrate_fire_naive",
    "integrate_spikes",
    "integrate_spikes_naive",
    "lowpass",
    "lowpass_naive",
    "spike_train",
]
