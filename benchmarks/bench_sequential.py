"""Seconds per training epoch of the sequential Fashion-MNIST model beside
snnTorch and Spyx.

What is timed
-------------
The feed-forward model of ``examples/sequential_fashion_mnist.py``: each
28 x 28 image is read one row per 1 ms step (28 steps), ``Dense(H)`` ->
``keras_spiking.LIF(tau=0.02, surrogate="atan")`` -> ``Rescaling(dt)`` ->
``Dense(10)`` -> ``TemporalAvgPool`` (the logits), Adam with learning rate
5e-3 on sparse categorical cross-entropy, batch 64, ``H`` = 32 and 128
hidden neurons (``--hidden``).  Ours is the example's own ``build_model``
trained with ``model.fit`` (shuffled each epoch, accuracy metric, no
validation), on each backend in Keras' default modes, each in a fresh
process with ``KERAS_BACKEND`` set: TensorFlow graphs without XLA (what
``jit_compile="auto"`` gives on a CPU), PyTorch eagerly, JAX under
``jax.jit``.

The same model written with the libraries, in their own virtual environment
(``--libraries DIR``, default ``.bench-lif`` at the repository root; create
it with ``benchmarks/make_lif_env.sh``), each as its users write it (see
``_sequential_libraries.py``): snnTorch 1.0, ``Linear`` -> ``Leaky(beta=
exp(-1/20), spike_grad=surrogate.atan())`` -> ``Linear`` in a Python loop
over the 28 steps, a ``DataLoader``, ``torch.optim.Adam``; Spyx 1.0 (Flax
NNX), ``nnx.Linear`` -> ``spyx.nn.LIF`` -> ``nnx.Linear`` through
``spyx.nn.run`` (one ``jax.lax.scan``), ``optax.adam``, the whole training
step under ``jax.jit``; and the same Spyx module trained by Spyx's own loop,
``spyx.optimize.fit`` (a step under ``nnx.jit``).

Data: the training images of the embedded subset
``examples/data/fashion_mnist_small.npz`` (6,000 real Fashion-MNIST images:
94 batches per epoch, the last of 48), or with ``--data-dir DIR`` the full
training set (60,000) from the ``.gz`` files there.  Every implementation
trains ``1 + --epochs`` epochs; the first (tracing and compilation) is a
warm-up, shown apart; the table gives the median of the other ``--epochs``
(3 by default), in seconds of wall clock and of CPU time of the process (all
its threads: the steadier figure on a machine shared with other work), the
images per second of that median, and the ratio to ours on JAX (above 1:
slower than ours on JAX).  Every framework gets ``--threads`` threads (one
by default).  The training accuracy of the last epoch (accuracy during the
epoch; Spyx's ``fit`` reports none, so after it) shows that each trains.

Usage::

    benchmarks/make_lif_env.sh                          # once: the libraries
    nice -n 10 python benchmarks/bench_sequential.py    # everything, defaults
    python benchmarks/bench_sequential.py --quick       # small smoke check
    python benchmarks/bench_sequential.py --backend jax --hidden 32 --no-libraries
    python benchmarks/bench_sequential.py --data-dir ~/.keras/datasets/fashion-mnist
"""

import argparse
import importlib.util
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common  # noqa: E402
import _sequential_libraries  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(HERE), "examples", "sequential_fashion_mnist.py")
DEFAULT_LIBRARIES = _common.DEFAULT_LIBRARIES
LIBRARIES = _sequential_libraries.LIBRARIES
BATCH = _sequential_libraries.BATCH
#: Row labels.
LABELS = {
    "tensorflow": "ours, TensorFlow (tf.function)",
    "torch": "ours, PyTorch (eager)",
    "jax": "ours, JAX (jax.jit)",
    "snntorch": "snnTorch 1.0 (eager loop)",
    "spyx": "Spyx 1.0 (jax.jit step)",
    "spyx-fit": "Spyx 1.0 (spyx.optimize.fit)",
}
REFERENCE = "jax"


# ---------------------------------------------------------------- child ---


def _example():
    """``examples/sequential_fashion_mnist.py`` as a module."""
    spec = importlib.util.spec_from_file_location("sequential_fashion_mnist", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child(args):
    _common.limit_threads(args.threads, args.pin)
    row = {"implementation": args.backend, "hidden": args.hidden[0], "batch": BATCH}
    try:
        _common.configure_backend(args.backend, args.threads)
        import keras

        example = _example()
        x, y = _sequential_libraries.load_data(args.data_dir, args.limit)
        row["images"] = len(x)
        keras.utils.set_random_seed(0)
        model = example.build_model("ff", args.hidden[0])
        clock = _sequential_libraries.EpochClock()
        timer = keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs: clock.start(),
            on_epoch_end=lambda epoch, logs: clock.stop(),
        )
        history = model.fit(
            x, y, batch_size=BATCH, epochs=1 + args.epochs, callbacks=[timer], verbose=0
        )
        row["accuracy"] = [float(a) for a in history.history["accuracy"]]
        row["epoch_wall"], row["epoch_cpu"] = clock.wall, clock.cpu
    except Exception as exc:  # noqa: BLE001 (reported in the table)
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    print(json.dumps(row), flush=True)


# --------------------------------------------------------------- parent ---


def _run(command, env, timeout):
    """The JSON row printed by a child, or a row with the error."""
    return _common.child_rows(command, env, timeout)[0]


def _data_options(args, hidden):
    options = ["--hidden", str(hidden)]
    options += ["--data-dir", args.data_dir] if args.data_dir else []
    options += ["--limit", str(args.limit)] if args.limit else []
    return options + _common.child_options(args)


def _our_row(args, backend, hidden):
    command = [sys.executable, __file__, "--child", "--backend", backend]
    command += ["--epochs", str(args.epochs)] + _data_options(args, hidden)
    env = _common.child_env(args, KERAS_BACKEND=backend)
    return _run(command, env, args.timeout)


def _library_python(args):
    """The library environment's python, or None with the reason."""
    return _common.library_python(
        args, "import snntorch, spyx.nn, optax", "snnTorch, Spyx"
    )


def _library_row(args, python, library, hidden):
    command = [python, os.path.join(HERE, "_sequential_libraries.py"), "time"]
    command += ["--library", library, "--epochs", str(1 + args.epochs)]
    command += _data_options(args, hidden)
    return _run(command, _common.library_env(args), args.timeout)


def _versions(python, args):
    ours = _common.package_versions(_common.FRAMEWORKS)
    theirs = None
    if python:
        command = [python, os.path.join(HERE, "_sequential_libraries.py"), "versions"]
        theirs = _run(command, _common.library_env(args), 120).get("versions")
    return ours, theirs


def _seconds(row, clock):
    """Median seconds per epoch after the warm-up (None if failed)."""
    if not row or "error" in row:
        return None
    return _common.epoch_median(row[f"epoch_{clock}"])


def _print_tables(args, results, columns):
    sizes = args.hidden
    clocks = {"wall": "wall clock", "cpu": "CPU time of the process"}
    for clock in ("wall", "cpu"):
        print(
            f"\nseconds per epoch, median of {args.epochs} epochs after a warm-up "
            f"epoch ({clocks[clock]}); images/s; ratio to ours on JAX (above "
            "1: slower)\n"
        )
        head = " | ".join(f"H={h}: s/epoch | img/s | / ours JAX" for h in sizes)
        print(f"| implementation | {head} |\n|---|" + "---:|---:|---:|" * len(sizes))
        for c in columns:
            cells = []
            for hidden in sizes:
                row = results.get((c, hidden))
                seconds = _seconds(row, clock)
                reference = _seconds(results.get((REFERENCE, hidden)), clock)
                if seconds is None:
                    cells += ["failed" if row else "–", "–", "–"]
                    continue
                ratio = f"{seconds / reference:.2f}" if reference else "–"
                cells += [f"{seconds:.2f}", f"{row['images'] / seconds:,.0f}", ratio]
            print(f"| {LABELS[c]} | " + " | ".join(cells) + " |")

    print(
        "\nfirst (warm-up) epoch, seconds of wall clock; training accuracy of "
        "the last epoch (%)\n"
    )
    head = " | ".join(f"H={h}: first epoch | accuracy" for h in sizes)
    print(f"| implementation | {head} |\n|---|" + "---:|---:|" * len(sizes))
    for c in columns:
        cells = []
        for hidden in sizes:
            row = results.get((c, hidden))
            if not row or "error" in row:
                cells += ["–", "–"]
                continue
            cells += [f"{row['epoch_wall'][0]:.1f}", f"{100 * row['accuracy'][-1]:.1f}"]
        print(f"| {LABELS[c]} | " + " | ".join(cells) + " |")
    for (c, hidden), row in results.items():
        if "error" in row:
            print(f"note: {LABELS[c]}, H = {hidden}: failed: {row['error']}")


def main():
    parser = _common.make_parser(__doc__)
    _common.add_options(parser, predecessors=False)
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=[32, 128],
        help="numbers of hidden neurons (default: 32 128)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=3,
        help="timed epochs after the warm-up epoch (default: 3)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder with the Fashion-MNIST training files "
        "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz): the full "
        "60,000 images; default: the embedded 6,000-image subset",
    )
    parser.add_argument(
        "--limit", type=int, metavar="N", help="train on the first N images only"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small smoke check: 640 images, H = 32, 1 timed epoch",
    )
    parser.add_argument(
        "--libraries",
        metavar="DIR",
        help="virtual environment with snnTorch and Spyx (made by "
        "benchmarks/make_lif_env.sh DIR); default: .bench-lif at the "
        "repository root, if there; 'none': skip them",
    )
    parser.add_argument(
        "--no-libraries", action="store_true", help="time our model only"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="seconds allowed to one measuring process",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("epochs", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be a positive integer; got {value}")
    if min(args.hidden) < 1:
        parser.error(f"--hidden must be positive integers; got {args.hidden}")
    if args.child:
        _child(args)
        return
    if args.quick:
        args.limit, args.hidden, args.epochs = 640, [32], 1

    started = time.perf_counter()
    python, status = _library_python(args)
    backends = [b for b in _common.BACKENDS if args.backend in ("all", b)]
    columns = backends + (list(LIBRARIES) if python else [])
    data = args.data_dir or "embedded subset examples/data/fashion_mnist_small.npz"
    print(
        f"sequential Fashion-MNIST, 28 steps of 28 pixels, 28-H-10 LIF, H = "
        f"{args.hidden}, batch {BATCH}; training images: {data}"
        + (f" (first {args.limit})" if args.limit else "")
    )
    print(_common.setup_line(args))
    versions, lib_versions = _versions(python, args)
    _common.print_environments(versions, status, lib_versions)

    results = {}
    for hidden in args.hidden:
        for c in columns:
            if c in LIBRARIES:
                results[(c, hidden)] = _library_row(args, python, c, hidden)
            else:
                results[(c, hidden)] = _our_row(args, c, hidden)
            print(
                f"[{LABELS[c]}, H = {hidden} done, "
                f"{time.perf_counter() - started:.0f} s]",
                flush=True,
            )
    _print_tables(args, results, columns)
    print(
        f"\nload average at end: {os.getloadavg()}; "
        f"{time.perf_counter() - started:.0f} s in all"
    )


if __name__ == "__main__":
    main()
