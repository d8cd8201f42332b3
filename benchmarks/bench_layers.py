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
(the naive loop under ``tf.function`` without XLA: ``keras.ops.scan`` has no
fixed trip count), ``jax.jit`` on JAX, eager on PyTorch (forward under
``torch.no_grad()``).  Each cell is the median of ``--repeats`` runs after a
warm-up (fewer for runs over ``--budget`` seconds).

Then the numerics: spike mismatch rate of ``kernels.integrate_spikes``
against a float64 NumPy step-by-step reference, on increments uniform in
[-0.3, 1.7] (negative and multi-spike steps), and the lowpass's largest error
relative to the reference's largest value; and the peak memory of one
forward+backward at T=1000, measured in a fresh process as the peak resident
set size above the level before the call (glibc told to return every block
of 64 KiB or more to the OS on free, ``MALLOC_MMAP_THRESHOLD_=65536``; RSS
sampled every 0.1 ms by a thread), plus JAX's own
``compiled.memory_analysis()``.

Usage::

    python benchmarks/bench_layers.py                      # all backends
    python benchmarks/bench_layers.py --backend jax --threads 2 --steps 10 1000
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

BACKENDS = ("tensorflow", "torch", "jax")
BATCH, UNITS, DT, TAU = 32, 128, 0.01, 0.1


def _limit_threads(threads):
    """Pin this process to ``threads`` cores and tell every library so."""
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    flags = f"intra_op_parallelism_threads={threads}"
    if threads == 1:
        flags = "--xla_cpu_multi_thread_eigen=false " + flags
    os.environ["XLA_FLAGS"] = flags
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class Runner:
    """Compiled forward and forward+backward callables for one backend."""

    def __init__(self, backend, threads):
        self.backend = backend
        if backend == "torch":
            import torch

            torch.set_num_threads(threads)
            torch.set_num_interop_threads(1)
        import keras

        if backend == "tensorflow":
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        self.keras = keras

    # -- the three stacks, as functions of (x, tau, level) ----------------

    def stacks(self):
        import keras
        from keras import ops

        from keras_spiking import Lowpass, SpikingActivation, kernels
        from keras_spiking.backend import straight_through

        model = keras.Sequential(
            [
                SpikingActivation("relu", dt=DT),
                Lowpass(TAU, dt=DT),
            ]
        )
        model.build((BATCH, None, UNITS))

        v0 = ops.convert_to_tensor(
            __import__("numpy").random.default_rng(0).uniform(0, 1, (BATCH, UNITS)),
            "float32",
        )

        def naive(x, tau, level):
            rates = ops.relu(x)
            counts, _ = kernels.integrate_spikes_naive(
                ops.stop_gradient(rates) * DT, v0
            )
            spikes = straight_through(rates, counts / DT)
            y0 = ops.broadcast_to(level[None], (ops.shape(x)[0], UNITS))
            return kernels.lowpass_naive(spikes, -DT / tau, y0)

        return model, naive

    # -- timing helpers ---------------------------------------------------

    def sync(self, value):
        if self.backend == "jax":
            import jax

            jax.block_until_ready(value)
        elif self.backend == "tensorflow":
            import tensorflow as tf

            tf.nest.map_structure(lambda v: v.numpy(), value)
        return value

    def functions(self, x_np):
        """``{name: (forward, forward_backward)}``, zero-argument callables."""
        model, naive = self.stacks()
        keras = self.keras
        ops = keras.ops
        x = ops.convert_to_tensor(x_np)
        tau = ops.convert_to_tensor(__import__("numpy").full((UNITS,), TAU, "float32"))
        level = ops.zeros((UNITS,))

        if self.backend == "tensorflow":
            import tensorflow as tf

            def grad_of(fn, jit):
                @tf.function(jit_compile=jit)
                def step(x):
                    with tf.GradientTape() as tape:
                        tape.watch(x)
                        loss = tf.reduce_sum(fn(x))
                    return tape.gradient(loss, [x] + fn.variables)

                return step

            def fast(x, training=False):
                return model(x, training=training)

            fast.variables = model.trainable_variables
            tau_v, level_v = tf.Variable(tau), tf.Variable(level)

            def naive_fn(x):
                return naive(x, tau_v, level_v)

            naive_fn.variables = [tau_v, level_v]

            def relu(x):
                return tf.nn.relu(x)

            relu.variables = []
            fast_train = lambda x: fast(x, training=True)  # noqa: E731
            fast_train.variables = fast.variables

            def bind(compiled):
                return lambda: compiled(x)

            return {
                "relu": (
                    bind(tf.function(relu, jit_compile=True)),
                    bind(grad_of(relu, True)),
                ),
                "fast": (
                    bind(tf.function(fast, jit_compile=True)),
                    bind(grad_of(fast_train, True)),
                ),
                "naive": (bind(tf.function(naive_fn)), bind(grad_of(naive_fn, False))),
            }

        if self.backend == "jax":
            import jax

            trainable = [v.value for v in model.trainable_variables]
            fixed = [v.value for v in model.non_trainable_variables]

            def fast(train, x, training):
                y, _ = model.stateless_call(train, fixed, x, training=training)
                return y

            def loss_of(fn):
                return lambda *a: jax.numpy.sum(fn(*a))

            fast_fwd = jax.jit(lambda x: fast(trainable, x, False))
            fast_bwd = jax.jit(
                jax.grad(loss_of(lambda x, t: fast(t, x, True)), argnums=(0, 1))
            )
            naive_fwd = jax.jit(naive)
            naive_bwd = jax.jit(jax.grad(loss_of(naive), argnums=(0, 1, 2)))
            relu_fwd = jax.jit(jax.nn.relu)
            relu_bwd = jax.jit(jax.grad(loss_of(jax.nn.relu)))
            self.memory_fn = (fast_bwd, (x, trainable))
            return {
                "relu": (lambda: relu_fwd(x), lambda: relu_bwd(x)),
                "fast": (lambda: fast_fwd(x), lambda: fast_bwd(x, trainable)),
                "naive": (
                    lambda: naive_fwd(x, tau, level),
                    lambda: naive_bwd(x, tau, level),
                ),
            }

        import torch

        def backward(fn, *leaves):
            def run():
                leaves_ = [v.detach().requires_grad_(True) for v in leaves]
                fn(*leaves_).sum().backward()
                return [v.grad for v in leaves_]

            return run

        def backward_model():
            model.zero_grad()
            xg = x.detach().requires_grad_(True)
            model(xg, training=True).sum().backward()
            return xg.grad

        def no_grad(fn):
            def run():
                with torch.no_grad():
                    return fn()

            return run

        return {
            "relu": (no_grad(lambda: torch.relu(x)), backward(torch.relu, x)),
            "fast": (no_grad(lambda: model(x, training=False)), backward_model),
            "naive": (
                no_grad(lambda: naive(x, tau, level)),
                backward(naive, x, tau, level),
            ),
        }

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
    import numpy as np

    runner = Runner(backend, args.threads)
    steps = 1000
    x_np = np.random.default_rng(0).normal(50, 100, (BATCH, steps, UNITS))
    fns = runner.functions(x_np.astype("float32"))
    page = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    row = {"backend": backend, "steps": steps, "input": x_np.size * 4}
    for name in ("relu", "fast"):
        fn = fns[name][1]
        for _ in range(2):
            runner.sync(fn())
        base, peak, done = rss(), [0], [False]

        def sample(base=base, peak=peak, done=done):
            while not done[0]:
                peak[0] = max(peak[0], rss() - base)
                time.sleep(1e-4)

        thread = threading.Thread(target=sample)
        thread.start()
        time.sleep(0.01)
        result = runner.sync(fn())
        time.sleep(0.01)
        done[0] = True
        thread.join()
        del result
        row[name] = peak[0]
    if backend == "jax":
        fn, fn_args = runner.memory_fn
        stats = fn.lower(*fn_args).compile().memory_analysis()
        row["xla_temp"] = stats.temp_size_in_bytes
        row["xla_out"] = stats.output_size_in_bytes
    print(json.dumps(row), flush=True)


# --------------------------------------------------------------- parent ---


def _run_child(backend, args, mode):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    if mode == "memory":  # every block >= 64 KiB goes back to the OS on free
        env.update(MALLOC_ARENA_MAX="1", MALLOC_MMAP_THRESHOLD_="65536")
    elif not args.fresh_pages:  # keep freed memory: no page faults per call
        env.update(MALLOC_ARENA_MAX="1", MALLOC_MMAP_MAX_="0")
        env.update(MALLOC_TRIM_THRESHOLD_=str(1 << 40))
    command = [sys.executable, __file__, "--child", mode, "--backend", backend]
    command += ["--clock", args.clock]
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
        _limit_threads(args.threads)
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
            "\npeak memory of one forward+backward at T=1000 (MB above the "
            "level before the call; input 16.4 MB)"
        )
        for b in backends:
            for r in _run_child(b, args, "memory"):
                extra = ""
                if "xla_temp" in r:
                    extra = (
                        f"  (XLA memory_analysis: temp {r['xla_temp'] / 1e6:.1f} MB"
                        f" + outputs {r['xla_out'] / 1e6:.1f} MB)"
                    )
                print(
                    f"{r['backend']:<11} relu {r['relu'] / 1e6:7.1f}   "
                    f"stack {r['fast'] / 1e6:7.1f} = {r['fast'] / r['input']:.1f}x "
                    f"input{extra}"
                )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
