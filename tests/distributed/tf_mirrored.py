"""``tf.distribute.MirroredStrategy`` over two logical CPU devices.

Usage: ``python -m tests.distributed.tf_mirrored [stateful] [global-batch]
[dt-in-scope] [lif]`` (``lif``: the model of ``common`` with a LIF layer).
Trains the small model under the strategy (each global
batch split into two contiguous slices, one per replica) and single-device
on the same batches, and compares the weights (and, for ``stateful``, each
replica's final states with the rows of its slice in the single-device
model's states).  A seeded ``SpikingActivation`` numbers a replica's
examples by their place in the global batch
(``keras_spiking.backend.replica_batch_offset``), so every example starts
from the voltages it has on one device.  Stateful layers are the exception
at the first batch: a replica's states are its copy of a ``MirroredVariable``,
initialised once for all replicas, so every replica starts from the initial
states of the first slice (the reference starts its stateful layers so).

Stateful layers are built with the per-replica batch
(``keras.Input(batch_size=global // replicas)``) unless ``global-batch`` is
given: with the global batch, the replica's call is a ValueError (its state
variables have the global batch's rows; the replica's slice has half of
them).  The ``dt`` variable is created outside ``strategy.scope()`` unless
``dt-in-scope`` is given (then it is a ``MirroredVariable``, which works
the same).
"""

import os
import sys

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

# two logical CPU devices; must happen before TensorFlow initialises devices
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2,
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tests.distributed import common  # noqa: E402

REPLICAS = 2


def state_variables(model):
    """``[(layer name, index, variable)]`` of the stateful layers' states."""
    return [
        (layer.name, i, v)
        for layer in model.layers
        for i, v in enumerate(getattr(layer, "states", None) or [])
    ]


def main(stateful, global_batch, dt_in_scope):
    x, y = common.data()
    local = common.GLOBAL_BATCH // REPLICAS
    # plain single-device training on the global batches
    model, dt = common.make_model(
        batch_size=common.GLOBAL_BATCH if stateful else None, stateful=stateful
    )
    if stateful:
        # A replica's states are a MirroredVariable's copy, initialised once
        # for all replicas (outside any replica): every replica starts from
        # the initial states of the first slice's rows.
        for layer in model.layers:
            if getattr(layer, "states", None):
                layer.reset_states(
                    [
                        np.concatenate([v.numpy()[:local]] * REPLICAS)
                        for v in layer.states
                    ]
                )
    common.compile_model(model)
    common.fit(model, dt, x, y)
    want = common.trainable(model)
    # replica r carries the states of the r-th slice of the global batch
    want_states = {
        (r, name, i): v.value.numpy()[r * local : (r + 1) * local]
        for name, i, v in state_variables(model)
        for r in range(REPLICAS)
    }

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dt = None if dt_in_scope else keras.Variable(0.01, trainable=False, name="dt")
    batch = common.GLOBAL_BATCH if global_batch else local
    with strategy.scope():
        model, dt = common.make_model(
            batch_size=batch if stateful else None, stateful=stateful, dt=dt
        )
        common.compile_model(model)
    common.fit(model, dt, x, y)
    got = common.trainable(model)
    worst = common.compare(got, want, f"MirroredStrategy stateful={stateful}")
    for name, i, v in state_variables(model):
        for r, value in enumerate(strategy.experimental_local_results(v.value)):
            np.testing.assert_allclose(
                value.numpy(),
                want_states[(r, name, i)],
                rtol=1e-5,
                atol=1e-5,
                err_msg=f"state {i} of {name} on replica {r}",
            )
    moved = common.check_moved(want, common.initial_weights())
    common.report(
        engine="tf mirrored",
        moved=moved,
        replicas=strategy.num_replicas_in_sync,
        stateful=stateful,
        worst_relative=worst,
    )


if __name__ == "__main__":
    flags = common.use_neuron(sys.argv[1:])
    main("stateful" in flags, "global-batch" in flags, "dt-in-scope" in flags)
