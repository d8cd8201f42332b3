"""Seconds per epoch of ``model.fit`` for the walkthrough's spiking model.

The model of the spiking Fashion-MNIST walkthrough, spiking-aware training::

    Input((10, 784)) -> Dense(128) -> SpikingActivation("relu", dt=0.01)
    -> TemporalAvgPool -> Dense(10)

trained with Adam on sparse categorical cross-entropy from logits, batch 32,
on 60,000 synthetic samples (uniform [0, 1) images repeated over 10 steps,
random labels: the speed does not depend on the data), in data order (as
the walkthrough trains).  Each configuration runs in a fresh process pinned
to ``--threads`` cores; ``--epochs`` epochs are run and the median of all but
the first (which includes tracing and compilation) is reported: wall-clock
and CPU time of the process (steadier on a shared machine), and ``wait``,
the time from the start of the epoch to its first batch (the data iterator
starting, and on TensorFlow the previous epoch's iterator being torn down),
with the first epoch's wall-clock time shown apart.  ``--input tf.data``
feeds a batched ``tf.data.Dataset`` with autotuning off instead of the
NumPy arrays (``tf.data-autotune``: with an autotuned prefetch instead);
``--activation relu`` puts a plain relu in place of the
``SpikingActivation``: what the rest of the model and the training loop cost.

For reference on this machine kind, one thread (issue 5): the TensorFlow
predecessor (KerasSpiking) took 4.7 s per epoch with ``model.fit``; the
PyTorch predecessor (PyTorchSpiking) 4.2 s per epoch with a plain PyTorch
training loop.

Usage::

    python benchmarks/bench_fit.py                   # every backend and mode
    python benchmarks/bench_fit.py --backend jax --epochs 2
    python benchmarks/bench_fit.py --backend tensorflow --input tf.data
    python benchmarks/bench_fit.py --backend torch --jit true   # torch.compile
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import configure_backend, limit_threads  # noqa: E402

# (backend, jit_compile) pairs run by default; jax without jit is not how
# anyone trains (op by op); torch with jit_compile (torch.compile, a long
# first epoch) runs only when asked for: --backend torch --jit true
CONFIGS = [
    ("tensorflow", False),
    ("tensorflow", True),
    ("torch", False),
    ("jax", True),
]
PREDECESSORS = {"tensorflow": 4.7, "torch": 4.2}
SAMPLES, STEPS, PIXELS, BATCH = 60_000, 10, 784, 32


def _child(args):
    limit_threads(args.threads)
    configure_backend(os.environ["KERAS_BACKEND"], args.threads)
    import keras
    import numpy as np

    import keras_spiking

    if args.input.startswith("tf.data"):
        import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (SAMPLES, 1, PIXELS)).astype("float32")
    x = np.repeat(images, STEPS, axis=1)
    y = rng.integers(0, 10, SAMPLES).astype("int32")
    del images

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((STEPS, PIXELS)),
            keras.layers.Dense(128),
            keras_spiking.SpikingActivation(
                "relu", dt=0.01, spiking_aware_training=True
            )
            if args.activation == "spiking"
            else keras.layers.Activation("relu"),
            keras_spiking.TemporalAvgPool(),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=args.jit == "true",
    )

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times, self.cpu, self.wait = [], [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = (time.perf_counter(), time.process_time())
            self.waiting = True

        def on_train_batch_begin(self, batch, logs=None):
            if self.waiting:  # the data iterator's start (and previous end)
                self.wait.append(time.perf_counter() - self.start[0])
                self.waiting = False

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start[0])
            self.cpu.append(time.process_time() - self.start[1])

    timer = Timer()
    if args.input.startswith("tf.data"):
        # batched, in data order as the arrays (``shuffle=False`` below)
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
        if args.input == "tf.data":  # autotuning off
            options = tf.data.Options()
            options.autotune.enabled = False
            dataset = dataset.with_options(options)
        else:  # an autotuned prefetch, as Keras' pipeline for arrays has
            dataset = dataset.prefetch(tf.data.AUTOTUNE)
        data = {"x": dataset}
    else:
        data = {"x": x, "y": y, "batch_size": BATCH}
    model.fit(**data, epochs=args.epochs, shuffle=False, verbose=0, callbacks=[timer])
    print(
        json.dumps({"times": timer.times, "cpu": timer.cpu, "wait": timer.wait}),
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend", choices=["tensorflow", "torch", "jax", "all"], default="all"
    )
    parser.add_argument("--jit", choices=["true", "false", "both"], default="both")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--activation",
        choices=["spiking", "relu"],
        default="spiking",
        help="the walkthrough's SpikingActivation, or a plain relu in its place "
        "(what the rest of the model and Keras' training loop cost)",
    )
    parser.add_argument(
        "--input",
        choices=["arrays", "tf.data", "tf.data-autotune"],
        default="arrays",
        help="NumPy arrays (as the walkthrough), or a batched tf.data.Dataset "
        "with autotuning off, or with an autotuned prefetch",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    configs = [
        (b, jit)
        for b, jit in CONFIGS
        if args.backend in ("all", b) and args.jit in ("both", str(jit).lower())
    ]
    if args.backend == "torch" and args.jit == "true":  # only when asked for
        configs = [("torch", True)]
    print(f"load average at start: {os.getloadavg()}; threads: {args.threads}")
    print(f"input: {args.input}; activation: {args.activation}")
    print(
        f"{'backend':<11} {'jit_compile':>11} {'s/epoch':>8} {'cpu s':>6} "
        f"{'wait s':>6} {'first':>6} {'predecessor':>11} {'ratio':>6}"
    )
    for backend, jit in configs:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        command = [sys.executable, __file__, "--child", "--threads", str(args.threads)]
        command += ["--epochs", str(args.epochs), "--jit", str(jit).lower()]
        command += ["--input", args.input, "--activation", args.activation]
        out = subprocess.run(command, env=env, capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if out.returncode or not lines:
            print(f"{backend:<11} {str(jit):>11}  failed:\n{out.stderr[-2000:]}")
            continue
        result = json.loads(lines[-1])
        times, cpu = result["times"], result["cpu"]
        rest = sorted(times[1:]) or times
        median = rest[len(rest) // 2]
        rest = sorted(cpu[1:]) or cpu
        cpu_median = rest[len(rest) // 2]
        rest = sorted(result["wait"][1:]) or result["wait"]
        wait_median = rest[len(rest) // 2]
        ref = PREDECESSORS.get(backend)
        print(
            f"{backend:<11} {str(jit):>11} {median:>8.2f} {cpu_median:>6.2f} "
            f"{wait_median:>6.2f} {times[0]:>6.2f} "
            + (f"{ref:>11.1f} {median / ref:>6.2f}" if ref else f"{'-':>11} {'-':>6}")
        )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
