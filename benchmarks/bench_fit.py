"""Seconds per epoch of training the walkthrough's spiking model, as users
train it, beside the predecessor packages.

What is timed
-------------
The model of the spiking Fashion-MNIST walkthrough, spiking-aware training::

    Input((10, 784)) -> Dense(128) -> SpikingActivation("relu", dt=0.01)
    -> TemporalAvgPool -> Dense(10)

trained with Adam on sparse categorical cross-entropy from logits, batch 32,
on 60,000 synthetic samples (``--samples``; uniform [0, 1) images repeated
over 10 steps, random labels: the speed does not depend on the data), in
data order (as the walkthrough trains), with ``model.fit``.

Rows (each in a fresh process, its thread pools set to ``--threads``
threads, one by default):

* ``tensorflow jit_compile=auto``: Keras' default, which is TensorFlow
  graphs without XLA on a CPU;
* ``tensorflow jit_compile=True``: with XLA;
* ``torch eager`` (``jit_compile=False``, what ``"auto"`` gives on torch);
  ``--backend torch --jit true`` runs ``torch.compile`` instead;
* ``jax jax.jit`` (``jit_compile=True``, what ``"auto"`` gives on JAX).

Each row runs with the ``SpikingActivation`` and, in the same invocation,
with a plain relu in its place (``--activation spiking relu``, the
default): ``x relu`` is the spiking model's time over the relu model's, the
spiking layer's overhead over what the rest of the model and the training
loop cost.

The predecessors, in the same run (``_predecessors.py``, in the virtual
environment made by ``benchmarks/make_predecessor_env.sh``; ``--predecessors
DIR``, by default ``.bench-predecessors`` at the repository root):
keras-spiking 0.3.0 with tf-keras ``model.fit`` on the same model (its
temporal average is ``GlobalAveragePooling1D``: keras-spiking 0.3 has no
``TemporalAvgPool``), and pytorch-spiking 0.1.0 in a plain PyTorch training
loop over the same batches (``torch.nn.Linear``,
``pytorch_spiking.SpikingActivation``, ``pytorch_spiking.TemporalAvgPool``).
Each keras_spiking row is shown beside its framework's predecessor with the
ratio predecessor / keras_spiking (above 1: keras_spiking is faster); JAX
beside the fastest other keras_spiking row.

``--epochs`` epochs are run (3 by default) and the median of all but the
first (which includes tracing and compilation) is reported: wall-clock and
CPU time of the process, and ``wait``, the time from the start of the epoch
to its first batch (the data iterator starting, and on TensorFlow the
previous epoch's iterator being torn down), with the first epoch's
wall-clock time shown apart.  ``--input tf.data`` feeds our rows a batched
``tf.data.Dataset`` with autotuning off instead of the NumPy arrays
(``tf.data-autotune``: with an autotuned prefetch); the predecessors always
take arrays / tensors.  By default glibc's allocator is left as users have
it and processes are not pinned to cores; ``--malloc-tuning`` and ``--pin``
change that (the printed header says which).

Usage::

    benchmarks/make_predecessor_env.sh                # once: the predecessors
    python benchmarks/bench_fit.py                    # every row, defaults
    python benchmarks/bench_fit.py --epochs 2 --samples 3200   # quick
    python benchmarks/bench_fit.py --backend jax --activation spiking
    python benchmarks/bench_fit.py --backend tensorflow --input tf.data
    python benchmarks/bench_fit.py --backend torch --jit true   # torch.compile
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

BACKENDS = _common.BACKENDS
#: (backend, jit_compile) rows run by default, and their labels.  jax without
#: jit is not how anyone trains (op by op); torch.compile (a long first epoch)
#: runs only when asked for: --backend torch --jit true.
CONFIGS = {
    ("tensorflow", "auto"): "tensorflow jit_compile=auto",
    ("tensorflow", "true"): "tensorflow jit_compile=True",
    ("torch", "false"): "torch eager",
    ("jax", "true"): "jax jax.jit",
}
LABELS = CONFIGS | {
    ("tensorflow", "false"): "tensorflow jit_compile=False",
    ("torch", "true"): "torch torch.compile",
    ("torch", "auto"): "torch jit_compile=auto",
    ("jax", "false"): "jax jit_compile=False",
    ("jax", "auto"): "jax jit_compile=auto",
}
PREDECESSOR_OF = {"tensorflow": "keras-spiking", "torch": "pytorch-spiking"}
STEPS, PIXELS, BATCH = 10, 784, 32


def _child(args):
    _common.limit_threads(args.threads, args.pin)
    _common.configure_backend(os.environ["KERAS_BACKEND"], args.threads)
    import keras
    import numpy as np

    import keras_spiking

    if args.input.startswith("tf.data"):
        import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (args.samples, 1, PIXELS)).astype("float32")
    x = np.repeat(images, STEPS, axis=1)
    y = rng.integers(0, 10, args.samples).astype("int32")
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
    jit = {"auto": "auto", "true": True, "false": False}[args.jit]
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
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
        json.dumps(
            {
                "jit_compile": str(model.jit_compile),
                "times": timer.times,
                "cpu": timer.cpu,
                "wait": timer.wait,
            }
        ),
        flush=True,
    )


def _configs(args):
    """``[(backend, jit)]`` rows selected by ``--backend`` and ``--jit``."""
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    if args.jit is None:
        return [(b, jit) for b, jit in CONFIGS if b in backends]
    return [(b, args.jit) for b in backends]


def _run(args, backend, jit, activation):
    env = _common.child_env(args, KERAS_BACKEND=backend)
    command = [sys.executable, __file__, "--child", "--jit", jit]
    command += _common.child_options(args) + ["--epochs", str(args.epochs)]
    command += ["--samples", str(args.samples), "--input", args.input]
    command += ["--activation", activation]
    rows = _common.run_rows(command, env, f"{LABELS[backend, jit]} {activation}")
    if not rows:
        return None
    return dict(rows[-1], backend=backend, activation=activation)


def _label(row):
    if "package" in row:
        return f"{row['package']} {row['version']} {row['mode']}"
    return LABELS[row["backend"], row["jit"]]


def _cell(value, width=8):
    return f"{value:{width}.2f}" if value is not None else f"{'-':>{width}}"


def main():
    parser = _common.make_parser(__doc__)
    parser.add_argument(
        "--jit",
        choices=["auto", "true", "false"],
        help="run the selected backends with this jit_compile only (default: "
        "the rows listed above)",
    )
    _common.add_options(parser)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--samples", type=int, default=60_000, help="training samples per epoch"
    )
    parser.add_argument(
        "--activation",
        nargs="+",
        choices=["spiking", "relu"],
        default=["spiking", "relu"],
        help="the walkthrough's SpikingActivation, and/or a plain relu in its "
        "place (what the rest of the model and the training loop cost)",
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
        (args.activation,) = args.activation
        _child(args)
        return

    print(_common.setup_line(args))
    print(
        f"input: {args.input}; epochs: {args.epochs} (median of all but the "
        f"first); samples: {args.samples}; batch: {BATCH}"
    )
    print(f"predecessors: {_common.predecessor_status(args)[1]}")
    rows = []
    for backend, jit in _configs(args):
        for activation in args.activation:
            row = _run(args, backend, jit, activation)
            rows.append(row or {"backend": backend, "activation": activation})
            rows[-1]["jit"] = jit
    for framework in ("tensorflow", "torch"):
        if not any(r["backend"] == framework for r in rows):
            continue
        for activation in args.activation:
            extra = ["--epochs", str(args.epochs), "--samples", str(args.samples)]
            extra += ["--activation", activation]
            rows += [
                dict(r, activation=activation)
                for r in _common.predecessor_rows(args, "fit", [framework], extra)
            ]
    for row in rows:
        if "times" in row:
            row["s"] = _common.epoch_median(row["times"])
            row["cpu s"] = _common.epoch_median(row["cpu"])
            row["wait s"] = _common.epoch_median(row["wait"])
            row["first"] = row["times"][0]

    width = max([len(_label(r)) for r in rows] + [len("keras_spiking row")]) + 1
    print(
        "\nseconds per epoch (median of the epochs after the first; x relu: "
        "the spiking model over the relu model of the same row)"
    )
    print(
        f"{'row':<{width}}{'activation':>10} {'s/epoch':>8} {'cpu s':>8} "
        f"{'wait s':>8} {'first':>8} {'x relu':>8}  {'model.jit_compile':<17}"
    )
    by_key = {(_label(r), r["activation"]): r for r in rows}
    for row in rows:
        relu = by_key.get((_label(row), "relu"), {}).get("s")
        ratio = (
            row["s"] / relu
            if row["activation"] == "spiking" and relu and "s" in row
            else None
        )
        print(
            f"{_label(row):<{width}}{row['activation']:>10} {_cell(row.get('s'))} "
            f"{_cell(row.get('cpu s'))} {_cell(row.get('wait s'))} "
            f"{_cell(row.get('first'))} {_cell(ratio)}  "
            + (row.get("jit_compile", "-") if "s" in row else "(failed)")
        )

    for activation in args.activation:
        ours = [r for r in rows if "package" not in r and r["activation"] == activation]
        print(
            f"\nagainst the predecessors, {activation} model (s/epoch; ratio = "
            "theirs / keras_spiking: above 1, keras_spiking is faster)"
        )
        print(
            f"{'keras_spiking row':<{width}}{'s/epoch':>8}  {'against':<{width + 15}}"
            f"{'s/epoch':>8} {'ratio':>7}"
        )
        for row in ours:
            if row["backend"] == "jax":
                others = [r for r in ours if r["backend"] != "jax" and "s" in r]
                other = min(others, key=lambda r: r["s"]) if others else None
                label = "fastest other: " + (_label(other) if other else "-")
            else:
                package = PREDECESSOR_OF[row["backend"]]
                other = next(
                    (
                        r
                        for r in rows
                        if r.get("package") == package and r["activation"] == activation
                    ),
                    None,
                )
                label = _label(other) if other else f"{package}: not measured"
            mine, theirs = row.get("s"), (other or {}).get("s")
            ratio = theirs / mine if mine and theirs else None
            print(
                f"{_label(row):<{width}}{_cell(mine)}  {label:<{width + 15}}"
                f"{_cell(theirs)} {_cell(ratio, 7)}"
            )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
