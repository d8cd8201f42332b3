"""Speed of the spiking layers as users run them, beside their predecessors.

What is timed
-------------
A ``keras.Model`` on ``keras.Input((None, 128))`` made of
``SpikingActivation("relu", dt=0.01, seed=0)`` followed by
``Lowpass(0.1, dt=0.01)``, on a ``(32, T, 128)`` float32 input, for T in
{10, 100, 1000, 10000} (``--steps``):

* forward: ``model(x, training=False)``;
* forward+backward: the gradients of ``sum(model(x, training=True))`` for
  the input and every trainable weight (``tau``, the initial level).

Rows (each backend in a fresh process, its thread pools set to
``--threads`` threads, one by default):

* ``tensorflow tf.function``: ``tf.function(jit_compile=False)``, TensorFlow
  graphs without XLA: what Keras runs by default on a CPU
  (``jit_compile="auto"`` resolves to no XLA there);
* ``tensorflow tf.function+XLA``: ``tf.function(jit_compile=True)``;
* ``torch eager``: eager PyTorch, the forward under ``torch.no_grad()``;
* ``jax jax.jit``: ``jax.jit`` of ``model.stateless_call``.

In every row, two baselines compiled the same way: ``relu``, one relu over
the same tensor (the memory-bound floor), and ``naive``, the same model with
every kernel in its step-by-step form (``keras_spiking.kernels.forced_form
("naive")``: one ``keras.ops.scan`` iteration per step).  ``--form`` forces
a form on the layers' own kernels too (the default: the form the kernels
choose).  A variant is built, traced and timed inside its ``forced_form``
block.  A cell that fails (the naive baseline's forward+backward under
XLA, where ``keras.ops.scan``'s while loop has no fixed trip count) shows
``-``, with the error in a note below the table.

The predecessors, in the same run: keras-spiking 0.3.0 (tf-keras, called in
``tf.function`` without XLA) and pytorch-spiking 0.1.0 (eager, forward under
``torch.no_grad()``), same layers and workload, timed by ``_predecessors.py``
in their own virtual environment (``--predecessors DIR``, by default
``.bench-predecessors`` at the repository root; create it with
``benchmarks/make_predecessor_env.sh``).  Per T, each row is shown beside its
framework's predecessor with the ratio predecessor / keras_spiking (above 1:
keras_spiking is faster); JAX beside the fastest other keras_spiking row.

Each cell is the median of ``--repeats`` runs after one or two warm-up
calls (fewer runs, at least 3, where they would take over ``--budget``
seconds), wall-clock time (``--clock cpu``: the process's CPU time).  By
default glibc's allocator is left as users have it and processes are not
pinned to cores; ``--malloc-tuning`` and ``--pin`` change that (the printed
header says which).

Then the numerics (spike mismatch rate of ``kernels.integrate_spikes`` against
a float64 NumPy step-by-step reference on increments uniform in [-0.3, 1.7],
and the lowpass's largest error relative to the reference's largest value),
and the peak memory of one forward+backward at T=1000 per row, in a fresh
process (see ``_memory``).

Usage::

    benchmarks/make_predecessor_env.sh               # once: the predecessors
    python benchmarks/bench_layers.py                # everything, defaults
    python benchmarks/bench_layers.py --steps 10 100 --repeats 2   # quick
    python benchmarks/bench_layers.py --backend jax --form chunked \\
        --skip numerics memory
"""

import argparse
import contextlib
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

BACKENDS = _common.BACKENDS
#: (backend, mode) rows, and how each mode compiles.
MODES = {
    "tensorflow": ("tf.function", "tf.function+XLA"),
    "torch": ("eager",),
    "jax": ("jax.jit",),
}
FORMS = ("loop", "unrolled", "direct", "chunked", "naive")
BATCH, UNITS, DT, TAU = 32, 128, 0.01, 0.1
#: The predecessor row each keras_spiking row is compared with.
PREDECESSOR_OF = {"tensorflow": "keras-spiking", "torch": "pytorch-spiking"}


def _model():
    import keras

    from keras_spiking import Lowpass, SpikingActivation

    inputs = keras.Input((None, UNITS))
    x = SpikingActivation("relu", dt=DT, seed=0)(inputs)
    return keras.Model(inputs, Lowpass(TAU, dt=DT)(x))


def _forced(form):
    """``kernels.forced_form(form)``, or no change for ``None``."""
    if form is None:
        return contextlib.nullcontext()
    from keras_spiking import kernels

    return kernels.forced_form(form)


class Runner:
    """Forward and forward+backward callables for one backend."""

    def __init__(self, backend, threads):
        self.backend = backend
        _common.configure_backend(backend, threads)

    def sync(self, value):
        if self.backend == "jax":
            import jax

            jax.block_until_ready(value)
        elif self.backend == "tensorflow":
            import tensorflow as tf

            tf.nest.map_structure(lambda v: v.numpy(), value)
        return value

    def functions(self, x_np, mode, variant):
        """``(forward, forward_backward, lowerable)`` for ``variant``
        ("relu", or "layers" for the model) compiled as ``mode``: two
        zero-argument callables, and on JAX ``(jitted forward_backward,
        arguments)`` for ``_memory``.

        Build and call these inside the variant's ``forced_form`` block.
        """
        import keras

        x = keras.ops.convert_to_tensor(x_np)
        model = None if variant == "relu" else _model()

        if self.backend == "tensorflow":
            import tensorflow as tf

            def output(x, training):
                return tf.nn.relu(x) if model is None else model(x, training=training)

            def backward(x):
                weights = [] if model is None else model.trainable_variables
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = tf.reduce_sum(output(x, True))
                return tape.gradient(loss, [x] + weights)

            jit = mode == "tf.function+XLA"
            fwd = tf.function(lambda x: output(x, False), jit_compile=jit)
            bwd = tf.function(backward, jit_compile=jit)
            return (lambda: fwd(x)), (lambda: bwd(x)), None

        if self.backend == "jax":
            import jax

            if model is None:
                fwd = jax.jit(jax.nn.relu)
                bwd = jax.jit(jax.grad(lambda x: jax.numpy.sum(jax.nn.relu(x))))
                return (lambda: fwd(x)), (lambda: bwd(x)), (bwd, (x,))
            trainable = [v.value for v in model.trainable_variables]
            fixed = [v.value for v in model.non_trainable_variables]

            def call(train, x, training):
                return model.stateless_call(train, fixed, x, training=training)[0]

            fwd = jax.jit(lambda x, t: call(t, x, False))
            bwd = jax.jit(
                jax.grad(lambda x, t: jax.numpy.sum(call(t, x, True)), argnums=(0, 1))
            )
            return (
                (lambda: fwd(x, trainable)),
                (lambda: bwd(x, trainable)),
                (bwd, (x, trainable)),
            )

        import torch

        def forward():
            with torch.no_grad():
                return torch.relu(x) if model is None else model(x, training=False)

        def backward():
            if model is not None:
                model.zero_grad()
            xg = x.detach().requires_grad_(True)
            out = torch.relu(xg) if model is None else model(xg, training=True)
            out.sum().backward()
            return xg.grad

        return forward, backward, None


def _variants(args):
    """``{name: (variant, form)}``: what each column of a row runs."""
    return {"relu": ("relu", None), "layers": ("layers", args.form)} | (
        {} if args.no_naive else {"naive": ("layers", "naive")}
    )


def _error(exc):
    """The first sentence of an exception's message, with its type."""
    message = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {message.split('. ')[0][:200]}"


# ---------------------------------------------------------------- child ---


def _speed(backend, args):
    import numpy as np

    runner = Runner(backend, args.threads)
    timer = _common.clock(args.clock)
    for steps in args.steps:
        x_np = np.random.default_rng(steps).normal(50, 100, (BATCH, steps, UNITS))
        x_np = x_np.astype("float32")
        for mode in MODES[backend]:
            row = {"backend": backend, "mode": mode, "steps": steps, "errors": {}}
            for name, (variant, form) in _variants(args).items():
                if name == "naive" and steps > args.naive_max_steps:
                    continue
                row[name] = [None, None]
                for index, direction in enumerate(("forward", "forward+backward")):
                    try:
                        with _forced(form):
                            fn = runner.functions(x_np, mode, variant)[index]
                            row[name][index] = _common.median_time(
                                fn, runner.sync, args.repeats, args.budget, timer
                            )[0]
                    except Exception as exc:  # noqa: BLE001 (shown in the table)
                        row["errors"][f"{name} {direction}"] = _error(exc)
            print(json.dumps(row), flush=True)


def _numerics(backend, args):
    import numpy as np
    from keras import ops

    from keras_spiking import kernels

    Runner(backend, args.threads)
    rng = np.random.default_rng(1)
    for steps in args.steps:
        x = rng.uniform(-0.3, 1.7, (BATCH, steps, UNITS)).astype("float32")
        v0 = rng.uniform(0, 1, (BATCH, UNITS)).astype("float32")
        log_a = np.full(UNITS, -DT / TAU, "float32")
        y0 = rng.normal(size=(BATCH, UNITS)).astype("float32")
        with _forced(args.form):
            counts, _ = kernels.integrate_spikes(
                ops.convert_to_tensor(x), ops.convert_to_tensor(v0)
            )
            y = kernels.lowpass(
                ops.convert_to_tensor(x),
                ops.convert_to_tensor(log_a),
                ops.convert_to_tensor(y0),
            )
        counts, y = ops.convert_to_numpy(counts), ops.convert_to_numpy(y)
        v, yr = v0.astype(np.float64), y0.astype(np.float64)
        a = np.exp(log_a.astype(np.float64))
        mismatch = 0
        total = np.zeros((BATCH, UNITS))
        err = scale = 0.0
        for t in range(steps):
            v = v + x[:, t]
            n = np.floor(v)
            v -= n
            mismatch += np.count_nonzero(n != counts[:, t])
            total += counts[:, t] - n
            yr = a * yr + (1 - a) * x[:, t]
            err = max(err, np.abs(y[:, t] - yr).max())
            scale = max(scale, np.abs(yr).max())
        row = {
            "backend": backend,
            "steps": steps,
            "mismatch": mismatch / x.size,
            "total": float(np.abs(total).max()),
            "lowpass": err / scale,
        }
        print(json.dumps(row), flush=True)


def _memory(backend, args):
    """Peak memory of one forward+backward at T=1000, above the level before.

    TensorFlow: its allocator's own statistics (``get_memory_info``, which
    XLA's buffers go through too).  JAX: ``compiled.memory_analysis()`` (the
    temporaries plus the outputs of the compiled step).  PyTorch: the peak
    resident set size above the level before the call, sampled every 0.1 ms
    by a thread, with glibc returning every block of 64 KiB or more to the
    OS on free (``MALLOC_MMAP_THRESHOLD_=65536``, set by the parent for this
    process only).
    """
    import numpy as np

    runner = Runner(backend, args.threads)
    steps = 1000
    x_np = np.random.default_rng(0).normal(50, 100, (BATCH, steps, UNITS))
    x_np = x_np.astype("float32")
    for mode in MODES[backend]:
        row = {"backend": backend, "mode": mode, "steps": steps}
        row["input"], row["errors"] = x_np.size * 4, {}
        for name, (variant, form) in _variants(args).items():
            try:
                with _forced(form):
                    _, fn, lowerable = runner.functions(x_np, mode, variant)
                    for _ in range(2):
                        runner.sync(fn())
                    row[name] = _peak(backend, runner, fn, lowerable)
            except Exception as exc:  # noqa: BLE001 (reported in the table)
                row["errors"][name] = _error(exc)
        print(json.dumps(row), flush=True)


def _peak(backend, runner, fn, lowerable):
    if backend == "tensorflow":
        import tensorflow as tf

        base = tf.config.experimental.get_memory_info("CPU:0")["current"]
        tf.config.experimental.reset_memory_stats("CPU:0")
        runner.sync(fn())
        return tf.config.experimental.get_memory_info("CPU:0")["peak"] - base
    if backend == "jax":
        compiled, call_args = lowerable
        stats = compiled.lower(*call_args).compile().memory_analysis()
        return stats.temp_size_in_bytes + stats.output_size_in_bytes
    return _peak_rss(lambda: runner.sync(fn()))


def _peak_rss(fn):
    """Peak resident set size above the level before ``fn()``, sampled."""
    page = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    base, peak, done = rss(), [0], [False]

    def sample():
        while not done[0]:
            peak[0] = max(peak[0], rss() - base)
            time.sleep(1e-4)

    thread = threading.Thread(target=sample)
    thread.start()
    time.sleep(0.01)
    result = fn()
    time.sleep(0.01)
    done[0] = True
    thread.join()
    del result
    return peak[0]


# --------------------------------------------------------------- parent ---


def _run_child(backend, args, mode):
    env = _common.child_env(args, KERAS_BACKEND=backend)
    if mode == "memory":  # every block >= 64 KiB goes back to the OS on free
        env.update(MALLOC_ARENA_MAX="1", MALLOC_MMAP_THRESHOLD_="65536")
        env.pop("MALLOC_MMAP_MAX_", None)
    command = [sys.executable, __file__, "--child", mode, "--backend", backend]
    command += _common.child_options(args) + ["--clock", args.clock]
    command += ["--form", args.form] if args.form else []
    command += ["--no-naive"] if args.no_naive else []
    command += ["--repeats", str(args.repeats), "--budget", str(args.budget)]
    command += ["--naive-max-steps", str(args.naive_max_steps), "--steps"]
    command += [str(s) for s in args.steps]
    return _common.run_rows(command, env, f"{backend} {mode}")


def _label(row):
    if "package" in row:
        return f"{row['package']} {row['version']} {row['mode']}"
    return f"{row['backend']} {row['mode']}"


def _ms(seconds, width=9):
    return f"{seconds * 1e3:{width}.2f}" if seconds is not None else f"{'-':>{width}}"


def _ratio(a, b, width=7, digits=2):
    if a is None or b is None:
        return f"{'-':>{width}}"
    return f"{a / b:{width}.{digits}f}"


def _against(row, rows, index):
    """The row ``row`` (keras_spiking) is compared with, and its label."""
    same_t = [r for r in rows if r["steps"] == row["steps"]]
    if row["backend"] == "jax":
        others = [
            r
            for r in same_t
            if "package" not in r
            and r["backend"] != "jax"
            and r.get("layers")
            and r["layers"][index] is not None
        ]
        if not others:
            return None, "fastest other backend: -"
        best = min(others, key=lambda r: r["layers"][index])
        return best, "fastest other: " + _label(best)
    for r in same_t:
        if r.get("package") == PREDECESSOR_OF[row["backend"]]:
            return r, _label(r)
    return None, f"{PREDECESSOR_OF[row['backend']]}: not measured"


def _print_speed(rows, repeats):
    ours = [r for r in rows if "package" not in r]
    width = max([len(_label(r)) for r in rows] + [len("keras_spiking row")]) + 1
    errors = {}
    for index, direction in ((0, "forward"), (1, "forward+backward")):
        print(
            f"\n{direction} (ms, median of up to {repeats} runs; layers/relu: "
            "times the memory-bound floor; naive/layers: speed-up over the "
            "step-by-step kernels)"
        )
        print(
            f"{'row':<{width}}{'T':>6} {'relu':>9} {'layers':>9} {'naive':>9}"
            f" {'layers/relu':>12} {'naive/layers':>13}"
        )
        for row in sorted(rows, key=lambda r: r["steps"]):
            cells = {
                name: row[name][index] if row.get(name) else None
                for name in ("relu", "layers", "naive")
            }
            for name, message in row.get("errors", {}).items():
                errors.setdefault((_label(row), name, message), set()).add(row["steps"])
            print(
                f"{_label(row):<{width}}{row['steps']:>6} {_ms(cells['relu'])} "
                f"{_ms(cells['layers'])} {_ms(cells['naive'])} "
                f"{_ratio(cells['layers'], cells['relu'], 12)} "
                f"{_ratio(cells['naive'], cells['layers'], 13)}"
            )

        print(
            f"\n{direction}, against the predecessors (ms; ratio = theirs / "
            "keras_spiking: above 1, keras_spiking is faster)"
        )
        against = [_against(r, rows, index) for r in ours]
        other_width = max([len(label) for _, label in against] + [8]) + 1
        print(
            f"{'T':>6}  {'keras_spiking row':<{width}}{'ms':>9}  "
            f"{'against':<{other_width}}{'ms':>9} {'ratio':>7}"
        )
        for row, (other, label) in sorted(
            zip(ours, against, strict=True), key=lambda p: p[0]["steps"]
        ):
            mine = row["layers"][index] if row.get("layers") else None
            theirs = other["layers"][index] if other and other.get("layers") else None
            print(
                f"{row['steps']:>6}  {_label(row):<{width}}{_ms(mine)}  "
                f"{label:<{other_width}}{_ms(theirs)} {_ratio(theirs, mine)}"
            )
    for (label, name, message), steps in errors.items():
        steps = ", ".join(str(t) for t in sorted(steps))
        print(f"note: {label}, {name}, T = {steps}: failed: {message}")


def main():
    parser = _common.make_parser(__doc__)
    _common.add_options(parser)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--budget", type=float, default=20.0, help="seconds per cell, roughly"
    )
    parser.add_argument(
        "--form",
        choices=FORMS,
        help="force this kernel form on the layers (kernels.forced_form); "
        "default: the form the kernels choose",
    )
    parser.add_argument(
        "--naive-max-steps",
        type=int,
        default=10000,
        help="skip the naive baseline above this many steps",
    )
    parser.add_argument(
        "--no-naive", action="store_true", help="skip the naive baseline"
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall-clock time, or CPU time of the process (steadier on a "
        "shared machine)",
    )
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["speed", "numerics", "memory"]
    )
    parser.add_argument(
        "--child", choices=["speed", "numerics", "memory"], help=argparse.SUPPRESS
    )
    args = parser.parse_args()

    if args.child:
        _common.limit_threads(args.threads, args.pin)
        {"speed": _speed, "numerics": _numerics, "memory": _memory}[args.child](
            args.backend, args
        )
        return

    backends = BACKENDS if args.backend == "all" else (args.backend,)
    print(_common.setup_line(args))
    naive = "off" if args.no_naive else 'kernels.forced_form("naive")'
    form = args.form or "as the kernels choose"
    print(f"clock: {args.clock}; kernel form: {form}; naive baseline: {naive}")
    print(f"predecessors: {_common.predecessor_status(args)[1]}")
    if "speed" not in args.skip:
        rows = [r for b in backends for r in _run_child(b, args, "speed")]
        frameworks = [f for f in ("tensorflow", "torch") if f in backends]
        extra = ["--clock", args.clock, "--repeats", str(args.repeats)]
        extra += ["--budget", str(args.budget), "--steps"]
        extra += [str(s) for s in args.steps]
        rows += _common.predecessor_rows(args, "layers", frameworks, extra)
        if rows:
            _print_speed(rows, args.repeats)
    if "numerics" not in args.skip:
        print("\nnumerics vs float64 step-by-step (increments in [-0.3, 1.7))")
        print(
            f"{'backend':<11}{'T':>6} {'mismatch/step':>14} {'max |total diff|':>17} "
            f"{'lowpass rel. err':>17}"
        )
        for b in backends:
            for r in _run_child(b, args, "numerics"):
                print(
                    f"{r['backend']:<11}{r['steps']:>6} {r['mismatch']:>14.2e} "
                    f"{r['total']:>17.0f} {r['lowpass']:>17.2e}"
                )
    if "memory" not in args.skip:
        print(
            "\npeak memory of one forward+backward at T=1000, MB above the level "
            "before the call (input: 16.4 MB)"
        )
        print(
            f"{'row':<27} {'relu':>8} {'layers':>8} {'naive':>8} {'layers/input':>13}"
        )
        for b in backends:
            for r in _run_child(b, args, "memory"):
                mb = {
                    name: (f"{r[name] / 1e6:8.1f}" if name in r else f"{'-':>8}")
                    for name in ("relu", "layers", "naive")
                }
                share = (
                    f"{r['layers'] / r['input']:13.1f}"
                    if "layers" in r
                    else f"{'-':>13}"
                )
                print(
                    f"{_label(r):<27} {mb['relu']} {mb['layers']} {mb['naive']} {share}"
                )
                for name, message in r["errors"].items():
                    print(f"note: {_label(r)}, {name}: failed: {message}")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
