"""Time the predecessor packages on the workloads of ``bench_layers.py`` and
``bench_fit.py``; run by them with the predecessor environment's python.

keras-spiking 0.3.0 (on tf-keras, ``TF_USE_LEGACY_KERAS=1``) and
pytorch-spiking 0.1.0 import as ``keras_spiking`` and ``pytorch_spiking``; the
first clashes with this repository's package, so they live in their own
virtual environment (``benchmarks/make_predecessor_env.sh``) and this script
imports nothing from this repository but ``_common`` (standard library only).
Each call measures one framework and prints one JSON object per line, as the
children of ``bench_layers.py`` and ``bench_fit.py`` do.

* ``layers``: ``SpikingActivation("relu", dt=0.01, seed=0)`` then
  ``Lowpass(0.1, dt=0.01)`` in a tf.keras Model on
  ``tf.keras.Input((None, 128))``, called in ``tf.function`` (no XLA); or
  ``SpikingActivation(torch.nn.ReLU(), dt=0.01)`` then
  ``Lowpass(0.1, units=128, dt=0.01)``, eager (forward under
  ``torch.no_grad()``).  Forward, and forward+backward (gradients of
  ``sum(output)`` for the input and the trainable weights), on a
  ``(32, T, 128)`` float32 input; a relu of the same tensor as a baseline.
* ``fit``: ``Input((10, 784)) -> Dense(128) -> SpikingActivation("relu",
  dt=0.01) -> temporal average -> Dense(10)``, Adam, sparse cross-entropy
  from logits, batch 32, in data order: tf-keras ``model.fit`` (keras-spiking
  0.3 has no ``TemporalAvgPool``: ``GlobalAveragePooling1D``, the same mean
  over time), or a plain PyTorch training loop with ``torch.nn.Linear``,
  ``pytorch_spiking.SpikingActivation`` and ``pytorch_spiking.TemporalAvgPool``.
  Seconds of each epoch.

Usage (normally through ``bench_layers.py`` / ``bench_fit.py``)::

    TF_USE_LEGACY_KERAS=1 .bench-predecessors/bin/python \\
        benchmarks/_predecessors.py layers --framework tensorflow --steps 10 100
    .bench-predecessors/bin/python benchmarks/_predecessors.py fit \\
        --framework torch --epochs 2 --samples 6000
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# nothing from this repository but _common: its keras_spiking is not the
# predecessor's
sys.path[:] = [HERE] + [
    p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(HERE)
]

import _common  # noqa: E402

BATCH, UNITS, DT, TAU = 32, 128, 0.01, 0.1
STEPS, PIXELS = 10, 784


def _package(framework):
    """The predecessor module for ``framework``, its name and version."""
    if framework == "tensorflow":
        import keras_spiking as package

        name = "keras-spiking"
    else:
        import pytorch_spiking as package

        name = "pytorch-spiking"
    if not package.__file__.startswith(sys.prefix):
        raise RuntimeError(
            f"{package.__name__} imported from {package.__file__}, not from the "
            f"predecessor environment {sys.prefix}"
        )
    return package, name, package.__version__


def _sync(framework):
    if framework == "tensorflow":
        import tensorflow as tf

        return lambda value: tf.nest.map_structure(lambda v: v.numpy(), value)
    return lambda value: value


def _layer_functions(framework, x_np):
    """``{"relu": (forward, backward), "layers": (forward, backward)}``."""
    package, _, _ = _package(framework)
    if framework == "tensorflow":
        import tensorflow as tf

        inputs = tf.keras.Input((None, UNITS))
        hidden = package.SpikingActivation("relu", dt=DT, seed=0)(inputs)
        model = tf.keras.Model(inputs, package.Lowpass(TAU, dt=DT)(hidden))
        x = tf.convert_to_tensor(x_np)

        def grads(fn, weights):
            def run(x):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = tf.reduce_sum(fn(x))
                return tape.gradient(loss, [x] + weights)

            return run

        functions = {
            "relu": (tf.nn.relu, grads(tf.nn.relu, [])),
            "layers": (
                lambda x: model(x, training=False),
                grads(lambda x: model(x, training=True), model.trainable_variables),
            ),
        }

        def call(fn):
            fn = tf.function(fn, jit_compile=False)
            return lambda: fn(x)

        return {
            name: tuple(call(fn) for fn in pair) for name, pair in functions.items()
        }

    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        package.SpikingActivation(torch.nn.ReLU(), dt=DT),
        package.Lowpass(TAU, units=UNITS, dt=DT),
    )
    x = torch.from_numpy(x_np).clone()

    def forward(fn):
        def run():
            with torch.no_grad():
                return fn(x)

        return run

    def backward(fn):
        def run():
            model.zero_grad()
            xg = x.detach().requires_grad_(True)
            fn(xg).sum().backward()
            return xg.grad

        return run

    model.train()  # as the layers' training=True; no dropout or batch norm here
    return {
        "relu": (forward(torch.relu), backward(torch.relu)),
        "layers": (forward(model), backward(model)),
    }


def layers(args):
    import numpy as np

    _, name, version = _package(args.framework)
    mode = "tf.function" if args.framework == "tensorflow" else "eager"
    sync, timer = _sync(args.framework), _common.clock(args.clock)
    for steps in args.steps:
        x_np = np.random.default_rng(steps).normal(50, 100, (BATCH, steps, UNITS))
        row = {"package": name, "version": version, "backend": args.framework}
        row.update(mode=mode, steps=steps, errors={})
        for variant, pair in _layer_functions(
            args.framework, x_np.astype("float32")
        ).items():
            try:
                row[variant] = [
                    _common.median_time(fn, sync, args.repeats, args.budget, timer)[0]
                    for fn in pair
                ]
            except Exception as exc:  # noqa: BLE001 (reported in the table)
                row["errors"][variant] = f"{type(exc).__name__}: {exc}"[:200]
        print(json.dumps(row), flush=True)


def fit(args):
    import numpy as np

    package, name, version = _package(args.framework)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (args.samples, 1, PIXELS)).astype("float32")
    x = np.repeat(images, STEPS, axis=1)
    y = rng.integers(0, 10, args.samples).astype("int32")
    del images
    times, cpu, wait = [], [], []

    if args.framework == "tensorflow":
        import tensorflow as tf

        tf.keras.utils.set_random_seed(0)
        model = tf.keras.Sequential(
            [
                tf.keras.Input((STEPS, PIXELS)),
                tf.keras.layers.Dense(128),
                package.SpikingActivation("relu", dt=DT)
                if args.activation == "spiking"
                else tf.keras.layers.Activation("relu"),
                tf.keras.layers.GlobalAveragePooling1D(),
                tf.keras.layers.Dense(10),
            ]
        )
        model.compile(
            optimizer=tf.keras.optimizers.Adam(),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )

        class Timer(tf.keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = (time.perf_counter(), time.process_time())
                self.waiting = True

            def on_train_batch_begin(self, batch, logs=None):
                if self.waiting:
                    wait.append(time.perf_counter() - self.start[0])
                    self.waiting = False

            def on_epoch_end(self, epoch, logs=None):
                times.append(time.perf_counter() - self.start[0])
                cpu.append(time.process_time() - self.start[1])

        model.fit(
            x,
            y,
            batch_size=BATCH,
            epochs=args.epochs,
            shuffle=False,
            verbose=0,
            callbacks=[Timer()],
        )
        mode = "model.fit"
    else:
        import torch

        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(PIXELS, 128),
            package.SpikingActivation(torch.nn.ReLU(), dt=DT)
            if args.activation == "spiking"
            else torch.nn.ReLU(),
            package.TemporalAvgPool(),
            torch.nn.Linear(128, 10),
        )
        optimizer = torch.optim.Adam(model.parameters())
        loss_fn = torch.nn.CrossEntropyLoss()
        xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
        model.train()
        for _ in range(args.epochs):
            start = (time.perf_counter(), time.process_time())
            wait.append(0.0)
            for i in range(0, args.samples, BATCH):
                optimizer.zero_grad()
                loss = loss_fn(model(xt[i : i + BATCH]), yt[i : i + BATCH])
                loss.backward()
                optimizer.step()
            times.append(time.perf_counter() - start[0])
            cpu.append(time.process_time() - start[1])
        mode = "training loop"
    print(
        json.dumps(
            {
                "package": name,
                "version": version,
                "backend": args.framework,
                "mode": mode,
                "activation": args.activation,
                "times": times,
                "cpu": cpu,
                "wait": wait,
            }
        ),
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=["layers", "fit"])
    parser.add_argument("--framework", choices=["tensorflow", "torch"], required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pin", action="store_true")
    # layers
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--budget", type=float, default=20.0)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    # fit
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--activation", choices=["spiking", "relu"], default="spiking")
    args = parser.parse_args()

    # before TensorFlow is imported: tf.keras is then tf-keras (Keras 2), which
    # keras-spiking 0.3 needs
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    _common.limit_threads(args.threads, args.pin)
    _common.configure_backend(args.framework, args.threads)
    {"layers": layers, "fit": fit}[args.task](args)


if __name__ == "__main__":
    main()
