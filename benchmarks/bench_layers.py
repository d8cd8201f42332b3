"""Speed, numerics and memory of the spiking kernels, per backend.

Times ``SpikingActivation("relu", dt=0.01)`` followed by
``Lowpass(0.1, dt=0.01)`` on a ``(32, T, 128)`` float32 input, forward and
forward+backward (gradients for the input, ``tau`` and the initial level), for
T in {10, 100, 1000, 10000}, against two baselines measured in the same run:

* ``relu``: one ``keras.ops.relu`` over the same tensor (the memory-bound
  floor), compiled the same way;
* ``naive``: the same two layers' math step by step (``kernels.*_naive``, one
  ``keras.ops.scan`` iteration per step, straight-through spike gradient).

Compiled as a user would: ``tf.function(jit_compile=True)`` on TensorFlow
(the naive loop under ``tf.function`` without XLA: XLA cannot compile the
gradient of ``keras.ops.scan``), ``jax.jit`` on JAX, eager on PyTorch (forward under
``torch.no_grad()``).  Each cell is the median of ``--repeats`` runs after a
warm-up (fewer for runs over ``--budget`` seconds).

Then the numerics: spike mismatch rate of ``kernels.integrate_spikes``
against a float64 NumPy step-by-step reference, on increments uniform in
[-0.3, 1.7] (negative and multi-spike steps), and the lowpass's largest error
relative to the reference's largest value; and the peak memory of one
forward+backward at T=1000 in a fresh process (see ``_memory``: TensorFlow's
allocator statistics, JAX's ``compiled.memory_analysis()``, PyTorch's peak
resident set size).

Timing: glibc's malloc is told to keep freed memory (``MALLOC_ARENA_MAX=1``,
``MALLOC_MMAP_MAX_=0``, a large ``MALLOC_TRIM_THRESHOLD_``) so that a call
does not pay page faults for fresh 16-160 MB buffers (about 1.5 ms per
16 MB here, for every framework alike); ``--fresh-pages`` turns that off.
``--clock cpu`` times the process's CPU time instead of wall-clock time.

Usage::

    python benchmarks/bench_layers.py                      # all backends
    python benchmarks/bench_layers.py --backend jax --threads 2 --steps 10 1000
    python benchmarks/bench_layers.py --backend jax --chunked --skip numerics memory
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import configure_backend, limit_threads  # noqa: E402

BACKENDS = ("tensorflow", "torch", "jax")
BATCH, UNITS, DT, TAU = 32, 128, 0.01, 0.1


class Runner:
    """Compiled forward and forward+backward callables for one backend."""

    def __init__(self, backend, threads):
        self.backend = backend
        configure_backend(backend, threads)
        import keras

        self.keras = keras

    # -- the stacks -------------------------------------------------------

    @staticmethod
    def stack():
        """The two layers, in a model of their own."""
        import keras

        from keras_spiking import Lowpass, SpikingActivation

        model = keras.Sequential(
            [SpikingActivation("relu", dt=DT), Lowpass(TAU, dt=DT)]
        )
        model.build((BATCH, None, UNITS))
        return model

    @staticmethod
    def naive_kernels(fn):
        """``fn`` run with the layers' kernels swapped for the step-by-step
        ones, so that both stacks go through the same Keras layers."""
        from keras_spiking import kernels

        fast = (kernels.integrate_spikes, kernels.lowpass)

        def run(*args):
            kernels.integrate_spikes = lambda x, v0, **_: (
                kernels.integrate_spikes_naive(x, v0)
            )
            kernels.lowpass = lambda x, log_a, y0, **_: kernels.lowpass_naive(
                x, log_a, y0
            )
            try:
                return fn(*args)
            finally:
                kernels.integrate_spikes, kernels.lowpass = fast

        return run

    def sync(self, value):
        if self.backend == "jax":
            import jax

            jax.block_until_ready(value)
        elif self.backend == "tensorflow":
            import tensorflow as tf

            tf.nest.map_structure(lambda v: v.numpy(), value)
        return value

    def functions(self, x_np):
        """``{name: (forward, forward_backward)}``, zero-argument callables.

        Forward+backward: gradients of ``sum(output)`` for the input and every
        trainable weight (``tau``, the initial level).
        """
        x = self.keras.ops.convert_to_tensor(x_np)
        models = {"fast": self.stack(), "naive": self.stack()}
        wrap = {"fast": lambda fn: fn, "naive": self.naive_kernels}

        if self.backend == "tensorflow":
            import tensorflow as tf

            def forward(model, jit):
                return tf.function(lambda x: model(x, training=False), jit_compile=jit)

            def backward(model, jit):
                @tf.function(jit_compile=jit)
                def step(x):
                    with tf.GradientTape() as tape:
                        tape.watch(x)
                        loss = tf.reduce_sum(model(x, training=True))
                    return tape.gradient(loss, [x] + model.trainable_variables)

                return step

            def relu_backward(x):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = tf.reduce_sum(tf.nn.relu(x))
                return tape.gradient(loss, x)

            # no XLA for the naive loop: XLA cannot compile the gradient of
            # keras.ops.scan (TensorArrays without a fixed size)
            jit = {"fast": True, "naive": False}
            functions = {
                "relu": (
                    tf.function(tf.nn.relu, jit_compile=True),
                    tf.function(relu_backward, jit_compile=True),
                )
            }
            for name, model in models.items():
                functions[name] = (
                    wrap[name](forward(model, jit[name])),
                    wrap[name](backward(model, jit[name])),
                )
            return {
                name: tuple((lambda f=f: f(x)) for f in pair)
                for name, pair in functions.items()
            }

        if self.backend == "jax":
            import jax

            self.memory_fns = {}

            def loss_of(fn):
                return lambda *a: jax.numpy.sum(fn(*a))

            relu_fwd = jax.jit(jax.nn.relu)
            relu_bwd = jax.jit(jax.grad(loss_of(jax.nn.relu)))
            result = {"relu": (lambda: relu_fwd(x), lambda: relu_bwd(x))}
            for name, model in models.items():
                trainable = [v.value for v in model.trainable_variables]
                fixed = [v.value for v in model.non_trainable_variables]

                def call(train, x, training, model=model, fixed=fixed):
                    return model.stateless_call(train, fixed, x, training=training)[0]

                fwd = jax.jit(wrap[name](lambda x, t, call=call: call(t, x, False)))
                bwd = jax.jit(
                    wrap[name](
                        jax.grad(
                            loss_of(lambda x, t, call=call: call(t, x, True)),
                            argnums=(0, 1),
                        )
                    )
                )
                result[name] = (
                    lambda f=fwd, t=trainable: f(x, t),
                    lambda f=bwd, t=trainable: f(x, t),
                )
                self.memory_fns[name] = (bwd, (x, trainable))
            return result

        import torch

        def relu_backward():
            xg = x.detach().requires_grad_(True)
            torch.relu(xg).sum().backward()
            return xg.grad

        def forward(model):
            def run():
                with torch.no_grad():
                    return model(x, training=False)

            return run

        def backward(model):
            def run():
                model.zero_grad()
                xg = x.detach().requires_grad_(True)
                model(xg, training=True).sum().backward()
                return xg.grad

            return run

        result = {"relu": (lambda: torch.relu(x), relu_backward)}
        for name, model in models.items():
            result[name] = (wrap[name](forward(model)), wrap[name](backward(model)))
        return result

    def time(self, fn, repeats, budget, clock):
        """Median seconds of ``repeats`` runs after two warm-up calls."""
        start = time.perf_counter()
        self.sync(fn())
        first = time.perf_counter() - start
        if first < budget / repeats:
            self.sync(fn())
        runs = repeats if first * repeats <= budget else max(3, int(budget / first))
        times = []
        for _ in range(min(runs, repeats)):
            start = clock()
            self.sync(fn())
            times.append(clock() - start)
        times.sort()
        return times[len(times) // 2], len(times)


# ---------------------------------------------------------------- child ---


def _speed(backend, args):
    import numpy as np

    runner = Runner(backend, args.threads)
    if args.chunked:  # what the backend's compiled loop is measured against
        from keras_spiking import kernels

        kernels._backend.loop_is_cheaper = lambda steps, width: False
    rows = []
    for steps in args.steps:
        x_np = np.random.default_rng(steps).normal(50, 100, (BATCH, steps, UNITS))
        fns = runner.functions(x_np.astype("float32"))
        row = {"backend": backend, "steps": steps}
        for name, (fwd, bwd) in fns.items():
            if name == "naive" and steps > args.naive_max_steps:
                continue
            clock = time.process_time if args.clock == "cpu" else time.perf_counter
            row[name] = [
                runner.time(fwd, args.repeats, args.budget, clock)[0],
                runner.time(bwd, args.repeats, args.budget, clock)[0],
            ]
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


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
    XLA's buffers go through).  JAX: ``compiled.memory_analysis()`` (the
    temporaries plus the outputs of the compiled step).  PyTorch: the peak
    resident set size above the level before the call, sampled every 0.1 ms
    by a thread, with glibc returning every block of 64 KiB or more to the
    OS on free (``MALLOC_MMAP_THRESHOLD_=65536``).
    """
    import numpy as np

    runner = Runner(backend, args.threads)
    steps = 1000
    x_np = np.random.default_rng(0).normal(50, 100, (BATCH, steps, UNITS))
    fns = runner.functions(x_np.astype("float32"))
    row = {"backend": backend, "steps": steps, "input": x_np.size * 4}
    for name in ("relu", "fast", "naive"):
        fn = fns[name][1]
        for _ in range(2):
            runner.sync(fn())
        if backend == "tensorflow":
            import tensorflow as tf

            base = tf.config.experimental.get_memory_info("CPU:0")["current"]
            tf.config.experimental.reset_memory_stats("CPU:0")
            result = runner.sync(fn())
            row[name] = tf.config.experimental.get_memory_info("CPU:0")["peak"] - base
        elif backend == "jax":
            if name == "relu":
                row[name] = x_np.size * 4  # the gradient, the only buffer
                continue
            compiled, call_args = runner.memory_fns[name]
            stats = compiled.lower(*call_args).compile().memory_analysis()
            row[name] = stats.temp_size_in_bytes + stats.output_size_in_bytes
        else:
            row[name] = _peak_rss(lambda fn=fn: runner.sync(fn()))
        result = None
        del result
    print(json.dumps(row), flush=True)


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
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    if mode == "memory":  # every block >= 64 KiB goes back to the OS on free
        env.update(MALLOC_ARENA_MAX="1", MALLOC_MMAP_THRESHOLD_="65536")
    elif not args.fresh_pages:  # keep freed memory: no page faults per call
        env.update(MALLOC_ARENA_MAX="1", MALLOC_MMAP_MAX_="0")
        env.update(MALLOC_TRIM_THRESHOLD_=str(1 << 40))
    command = [sys.executable, __file__, "--child", mode, "--backend", backend]
    command += ["--clock", args.clock] + (["--chunked"] if args.chunked else [])
    command += ["--threads", str(args.threads), "--repeats", str(args.repeats)]
    command += ["--budget", str(args.budget)]
    command += ["--naive-max-steps", str(args.naive_max_steps), "--steps"]
    command += [str(s) for s in args.steps]
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line[:1] == "{"]
    if out.returncode:
        sys.stderr.write(out.stderr[-3000:])
    return rows


def _ms(seconds):
    return f"{seconds * 1e3:9.2f}"


def _print_speed(rows):
    for index, label in ((0, "forward"), (1, "forward+backward")):
        print(f"\n{label} (ms, median; ratios: fast / baseline)")
        print(
            f"{'backend':<11}{'T':>6} {'relu':>9} {'fast':>9} {'naive':>9}"
            f" {'fast/relu':>10} {'fast/naive':>11}"
        )
        for row in rows:
            relu, fast = row["relu"][index], row["fast"][index]
            naive = row["naive"][index] if "naive" in row else None
            print(
                f"{row['backend']:<11}{row['steps']:>6} {_ms(relu)} {_ms(fast)} "
                + (_ms(naive) if naive else f"{'-':>9}")
                + f" {fast / relu:>10.2f} "
                + (f"{fast / naive:>11.3f}" if naive else f"{'-':>11}")
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=BACKENDS + ("all",), default="all")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--budget", type=float, default=20.0, help="seconds per cell, roughly"
    )
    parser.add_argument(
        "--naive-max-steps",
        type=int,
        default=10000,
        help="skip the naive baseline above this many steps",
    )
    parser.add_argument(
        "--chunked",
        action="store_true",
        help="time the chunked kernels where the backend would take a "
        "compiled loop (JAX on CPU): what that choice is measured against",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall-clock time, or CPU time of the process (steadier on a "
        "shared machine)",
    )
    parser.add_argument(
        "--fresh-pages",
        action="store_true",
        help="leave glibc's malloc as it is (large buffers are then mapped "
        "afresh, page faults included, on many calls)",
    )
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["speed", "numerics", "memory"]
    )
    parser.add_argument("--child", choices=["speed", "numerics", "memory"])
    args = parser.parse_args()

    if args.child:
        limit_threads(args.threads)
        {"speed": _speed, "numerics": _numerics, "memory": _memory}[args.child](
            args.backend, args
        )
        return

    backends = BACKENDS if args.backend == "all" else (args.backend,)
    print(
        f"load average at start: {os.getloadavg()}; threads: {args.threads}; "
        f"clock: {args.clock}"
    )
    if "speed" not in args.skip:
        rows = [r for b in backends for r in _run_child(b, args, "speed")]
        _print_speed(rows)
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
            f"{'backend':<11} {'relu':>8} {'fast':>8} {'naive':>8} {'fast/input':>11}"
        )
        for b in backends:
            for r in _run_child(b, args, "memory"):
                print(
                    f"{r['backend']:<11} {r['relu'] / 1e6:8.1f} {r['fast'] / 1e6:8.1f} "
                    f"{r['naive'] / 1e6:8.1f} {r['fast'] / r['input']:11.1f}"
                )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
