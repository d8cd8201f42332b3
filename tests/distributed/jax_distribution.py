"""``keras.distribution`` on JAX over virtual CPU devices.

Usage: ``python -m tests.distributed.jax_distribution MODE [DEVICES]
[stateful] [lif]`` with MODE ``data`` (``DataParallel`` over DEVICES devices) or
``model`` (``ModelParallel`` on a 2 x 2 mesh, the Dense kernels sharded over
the "model" axis).  Trains the small model single-device first (no
distribution set), then distributed, on the same batches, and compares the
weights (and, with ``stateful``, the states: stateful layers built for the
global batch; with ``lif``, the model of ``common`` with a LIF layer).  The
program sees the global batch, so the seeded voltages
are those of single-device training.
"""

import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
# virtual CPU devices: must be set before JAX is imported
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
)

import jax  # noqa: E402
import keras  # noqa: E402

from tests.distributed import common  # noqa: E402


def distribution(mode, count):
    devices = jax.devices("cpu")[:count]
    if len(devices) < count:
        common.fail(f"{count} devices asked for, {len(devices)} available")
    if mode == "data":
        return keras.distribution.DataParallel(devices=devices)
    mesh = keras.distribution.DeviceMesh(
        shape=(2, 2), axis_names=("batch", "model"), devices=devices
    )
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map["dense_in/kernel"] = (None, "model")
    layout_map["dense_in/bias"] = ("model",)
    layout_map["dense_out/kernel"] = ("model", None)
    return keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch"
    )


def train(x, y, stateful):
    batch = common.GLOBAL_BATCH if stateful else None
    model, dt = common.make_model(batch_size=batch, stateful=stateful)
    common.compile_model(model)
    common.fit(model, dt, x, y)
    return model


def states(model):
    return {
        f"{layer.name}/{i}": common.numpy(v.value)
        for layer in model.layers
        for i, v in enumerate(getattr(layer, "states", None) or [])
    }


def main(mode, count, stateful):
    x, y = common.data()
    single = train(x, y, stateful)
    want = common.trainable(single)
    moved = common.check_moved(want, common.initial_weights())
    keras.distribution.set_distribution(distribution(mode, count))
    model = train(x, y, stateful)
    kernel = model.get_layer("dense_in").kernel.value
    shards = len({shard.device for shard in kernel.addressable_shards})
    spec = str(kernel.sharding.spec) if hasattr(kernel.sharding, "spec") else ""
    got = common.trainable(model)
    worst = common.compare(got, want, f"jax {mode} parallel over {count}")
    if stateful:
        common.compare(states(model), states(single), "states", atol=1e-5)
    common.report(
        engine=f"jax {mode}",
        stateful=stateful,
        devices=count,
        worst_relative=worst,
        moved=moved,
        kernel_devices=shards,
        kernel_spec=spec,
    )


if __name__ == "__main__":
    argv = common.use_neuron(sys.argv[1:])
    args = [a for a in argv if a != "stateful"]
    main(args[0], int(args[1]) if len(args) > 1 else 4, "stateful" in argv)
