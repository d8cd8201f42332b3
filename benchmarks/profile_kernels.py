"""Where the time of the spiking kernels goes, per backend.

The profile behind the account of the speed targets in docs/performance.md that are
missed.  For the model of ``bench_layers.py`` (``SpikingActivation("relu",
dt=0.01, seed=0)`` followed by ``Lowpass(0.1, dt=0.01)`` in a ``keras.Model``
on ``keras.Input((None, 128))``) on a ``(32, T, 128)`` float32 input
(T = 1000 by default), each backend in a fresh process with ``--threads``
threads (one by default), compiled as users run it by default:
``tf.function`` without XLA on TensorFlow (Keras' default on a CPU;
``--xla``: ``jit_compile=True``), ``jax.jit`` on JAX, eager PyTorch (forward
under ``torch.no_grad()``).  The kernels take the form they choose
themselves.

* **stages** (ms, median of ``--repeats`` after a dozen warm-up calls):
  ``relu`` (the memory-bound floor); the spike kernel
  (``kernels.integrate_spikes`` of ``relu(x) * dt``) and the lowpass kernel
  (``kernels.lowpass``), each also in its step-by-step form
  (``kernels.*_naive``); the lowpass forward+backward; the two layers as a
  model, forward and forward+backward; each also as a multiple of ``relu``;
* **JAX, and TensorFlow with** ``--xla``: the optimised XLA program of the
  model's forward pass: its top-level instructions that write a full-size
  ``(32, T, 128)`` tensor (each is at least one pass over memory, about one
  ``relu``), by kind, and its while loops (one iteration per step or chunk);
* **PyTorch**: the operators that take the most time in one forward and one
  forward+backward of the model (``torch.profiler``), with their call
  counts;
* **fixed costs per call** (microseconds): the seeded initial voltages
  (``keras_spiking.seeded_uniform``) as a hash in the graph and as a NumPy
  constant; on TensorFlow the unseeded draw with ``keras.random.uniform`` and
  with ``backend.uniform``; on PyTorch a ``keras.ops`` call against the
  torch call, and the operator calls of each kernel stage.

By default glibc's allocator is left as users have it and processes are not
pinned to cores; ``--malloc-tuning`` (keep freed memory:
``MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0`` and a large
``MALLOC_TRIM_THRESHOLD_``) and ``--pin`` change that (the printed header
says which).

Usage::

    python benchmarks/profile_kernels.py                  # every backend
    python benchmarks/profile_kernels.py --backend jax --steps 100
    python benchmarks/profile_kernels.py --backend tensorflow --xla
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

BACKENDS = _common.BACKENDS
BATCH, UNITS, DT, TAU = 32, 128, 0.01, 0.1


def _model():
    """The workload of ``bench_layers.py``."""
    import keras

    from keras_spiking import Lowpass, SpikingActivation

    inputs = keras.Input((None, UNITS))
    x = SpikingActivation("relu", dt=DT, seed=0)(inputs)
    return keras.Model(inputs, Lowpass(TAU, dt=DT)(x))


def _forward_compiler(backend, xla):
    """``(compile, sync)``: how a forward function is compiled on ``backend``
    (``tf.function``, with XLA if ``xla``, on TensorFlow; ``jax.jit``; eager
    without autograd on PyTorch), and how its result is waited for."""
    if backend == "tensorflow":
        import tensorflow as tf

        def sync(value):
            return tf.nest.map_structure(lambda v: v.numpy(), value)

        return (lambda fn: tf.function(fn, jit_compile=xla)), sync
    if backend == "jax":
        import jax

        return jax.jit, jax.block_until_ready
    import torch

    def no_grad(fn):
        def run(*args):
            with torch.no_grad():
                return fn(*args)

        return run

    return no_grad, lambda value: value


def _stages(backend, x_np, xla):
    """``{name: zero-argument callable}`` (results synchronised), and the
    model's forward function for ``_xla_passes``."""
    import numpy as np
    from keras import ops

    from keras_spiking import kernels

    v0 = np.random.default_rng(1).uniform(0, 1, (BATCH, UNITS)).astype("float32")
    log_a = np.full(UNITS, -DT / TAU, "float32")
    model = _model()
    # copies, as bench_layers.py: a NumPy array's buffer is not always 64-byte
    # aligned, and an unaligned one made torch's relu 10 times slower here
    tensors = [ops.convert_to_tensor(v) for v in (x_np, v0, log_a)]

    def spikes(x, v0):
        return kernels.integrate_spikes(ops.relu(x) * DT, v0)[0]

    def lowpass(x, log_a, y0):
        return kernels.lowpass(x, log_a, y0)

    def spikes_naive(x, v0):
        return kernels.integrate_spikes_naive(ops.relu(x) * DT, v0)[0]

    jit, sync = _forward_compiler(backend, xla)
    x, v0, log_a = tensors
    kernel_calls = {
        "spikes": (jit(spikes), (x, v0)),
        "spikes, step by step": (jit(spikes_naive), (x, v0)),
        "lowpass": (jit(lowpass), (x, log_a, v0)),
        "lowpass, step by step": (jit(kernels.lowpass_naive), (x, log_a, v0)),
    }

    if backend == "tensorflow":
        import tensorflow as tf

        def lowpass_grad(x, log_a, y0):
            with tf.GradientTape() as tape:
                tape.watch([x, log_a, y0])
                loss = tf.reduce_sum(lowpass(x, log_a, y0))
            return tape.gradient(loss, [x, log_a, y0])

        def model_grad(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(model(x, training=True))
            return tape.gradient(loss, [x] + model.trainable_variables)

        forward = jit(lambda x: model(x, training=False))
        calls = {
            "relu": (jit(tf.nn.relu), (x,)),
            **kernel_calls,
            "lowpass fwd+bwd": (jit(lowpass_grad), (x, log_a, v0)),
            "model": (forward, (x,)),
            "model fwd+bwd": (jit(model_grad), (x,)),
        }
        hlo = (
            forward.experimental_get_compiler_ir(x)(stage="optimized_hlo")
            if xla
            else None
        )
    elif backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        fixed = [v.value for v in model.non_trainable_variables]

        def call(train, x, training):
            return model.stateless_call(train, fixed, x, training=training)[0]

        def total(fn):
            return lambda *a: jax.numpy.sum(fn(*a))

        forward = jax.jit(lambda x, t: call(t, x, False))
        calls = {
            "relu": (jit(jax.nn.relu), (x,)),
            **kernel_calls,
            "lowpass fwd+bwd": (
                jax.jit(jax.grad(total(lowpass), argnums=(0, 1, 2))),
                (x, log_a, v0),
            ),
            "model": (forward, (x, trainable)),
            "model fwd+bwd": (
                jax.jit(
                    jax.grad(
                        total(lambda x, t: call(t, x, True)),
                        argnums=(0, 1),
                    )
                ),
                (x, trainable),
            ),
        }
        hlo = forward.lower(x, trainable).compile().as_text()
    else:
        import torch

        def lowpass_grad(x, log_a, y0):
            args = [v.detach().requires_grad_(True) for v in (x, log_a, y0)]
            lowpass(*args).sum().backward()
            return [v.grad for v in args]

        def model_grad(x):
            model.zero_grad()
            x = x.detach().requires_grad_(True)
            model(x, training=True).sum().backward()
            return x.grad

        calls = {
            "relu": (jit(torch.relu), (x,)),
            **kernel_calls,
            "lowpass fwd+bwd": (lowpass_grad, (x, log_a, v0)),
            "model": (jit(lambda x: model(x, training=False)), (x,)),
            "model fwd+bwd": (model_grad, (x,)),
        }
        hlo = None
    return {
        name: (lambda fn=fn, args=args: sync(fn(*args)))
        for name, (fn, args) in calls.items()
    }, hlo


def _median_ms(fn, repeats):
    # a dozen warm-up calls: JAX's first few calls at T = 1000 took 10 times
    # longer (fresh output buffers, while freed ones are not yet reused)
    for _ in range(12):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e3


def _per_call_us(fn, calls=300):
    """Mean microseconds per call of ``fn``, after warm-up calls."""
    for _ in range(30):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def _overheads(backend, stages, xla):
    """Fixed per-call costs behind the short-sequence results (microseconds),
    and on PyTorch the operator calls of each kernel stage."""
    import keras
    from keras import ops

    from keras_spiking import backend as shim
    from keras_spiking.seeded_uniform import _seeded_uniform, seeded_uniform

    jit, sync = _forward_compiler(backend, xla)
    costs = {
        "seeded voltages, hash in the graph": jit(
            lambda: _seeded_uniform(BATCH, UNITS, 0, ops)
        ),
        "seeded voltages, NumPy constant": jit(lambda: seeded_uniform(BATCH, UNITS, 0)),
    }
    if backend == "tensorflow":
        generator = keras.random.SeedGenerator(0)
        costs["unseeded voltages, keras.random.uniform"] = jit(
            lambda: keras.random.uniform((BATCH, UNITS), seed=generator)
        )
        costs["unseeded voltages, backend.uniform"] = jit(
            lambda: shim.uniform((BATCH, UNITS), generator)
        )
    if backend == "torch":
        import torch

        a, b = torch.rand(BATCH, 10, UNITS), torch.rand(BATCH, 10, UNITS)
        costs["keras.ops.add, (32, 10, 128)"] = lambda: ops.add(a, b)
        costs["torch.add, (32, 10, 128)"] = lambda: torch.add(a, b)
        costs["keras.ops.reshape, (32, 10, 128)"] = lambda: ops.reshape(a, (-1, UNITS))
        costs["torch.reshape, (32, 10, 128)"] = lambda: torch.reshape(a, (-1, UNITS))
    print("  fixed costs per call (us)")
    for name, fn in costs.items():
        print(f"    {name:<40} {_per_call_us(lambda fn=fn: sync(fn())):8.1f}")
    if backend == "torch":
        import torch.profiler

        print("  operator calls per forward of each kernel stage")
        for name in (
            "spikes",
            "spikes, step by step",
            "lowpass",
            "lowpass, step by step",
        ):
            with torch.profiler.profile() as prof:
                stages[name]()
            calls = sum(e.count for e in prof.key_averages())
            print(f"    {name:<40} {calls:8d}")


def _xla_passes(hlo, full_size):
    """Top-level instructions of the entry computation that write at least
    ``full_size`` elements, by kind; and the number of while loops."""
    entry = hlo[hlo.index("\nENTRY") :]
    entry = entry[: entry.index("\n}")]
    kinds, loops = collections.Counter(), 0
    for line in entry.splitlines():
        match = re.match(r"\s*(?:ROOT )?%\S+ = (\w+)\[([\d,]*)\]\S* ([\w-]+)\(", line)
        if not match:
            if " while(" in line:
                loops += 1
            continue
        dims, kind = match.group(2), match.group(3)
        if kind == "while":
            loops += 1
        size = 1
        for dim in filter(None, dims.split(",")):
            size *= int(dim)
        free = ("parameter", "bitcast", "get-tuple-element", "constant", "tuple")
        if size >= full_size and kind not in free:
            name = re.search(r'op_name="([^"]+)"', line)
            label = kind
            if kind == "fusion" and name:  # what the fusion was made from
                label = "fusion(" + name.group(1).split("/")[-1] + ")"
            kinds[label] += 1
    return kinds, loops


def _child(backend, args):
    import numpy as np

    _common.configure_backend(backend, args.threads)
    x_np = np.random.default_rng(0).normal(50, 100, (BATCH, args.steps, UNITS))
    stages, hlo = _stages(backend, x_np.astype("float32"), args.xla)
    times = {name: _median_ms(fn, args.repeats) for name, fn in stages.items()}
    relu = times["relu"]
    mode = {"torch": "eager", "jax": "jax.jit"}.get(
        backend, "tf.function+XLA" if args.xla else "tf.function"
    )
    print(f"\n== {backend} {mode}, T = {args.steps}: stages (ms, median; x relu)")
    for name, ms in times.items():
        print(f"  {name:<22} {ms:9.3f} {ms / relu:8.1f}")
    if hlo is not None:
        kinds, loops = _xla_passes(hlo, BATCH * args.steps * UNITS)
        print(
            f"  XLA forward: {sum(kinds.values())} full-size writes, "
            f"{loops} while loop(s)"
        )
        for kind, count in kinds.most_common():
            print(f"    {count:3d} x {kind}")
    _overheads(backend, stages, args.xla)
    if backend == "torch":
        import torch.profiler

        for name in ("model", "model fwd+bwd"):
            with torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU]
            ) as prof:
                stages[name]()
            print(f"  torch.profiler, {name}: top operators by self CPU time")
            events = sorted(
                prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True
            )
            total = sum(e.self_cpu_time_total for e in events)
            calls = sum(e.count for e in events)
            print(f"    total self CPU {total / 1e3:.2f} ms, {calls} calls")
            for event in events[: args.top]:
                print(
                    f"    {event.key:<32} {event.count:5d} calls "
                    f"{event.self_cpu_time_total / 1e3:8.2f} ms"
                )


def main():
    parser = _common.make_parser(__doc__)
    _common.add_options(parser, predecessors=False)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--top", type=int, default=8, help="PyTorch operators shown")
    parser.add_argument(
        "--xla",
        action="store_true",
        help="TensorFlow: tf.function(jit_compile=True), and the optimised XLA "
        "program's passes (default: tf.function without XLA, Keras' default "
        "on a CPU)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _common.limit_threads(args.threads, args.pin)
        _child(os.environ["KERAS_BACKEND"], args)
        return
    print(_common.setup_line(args))
    for backend in BACKENDS if args.backend == "all" else (args.backend,):
        env = _common.child_env(args, KERAS_BACKEND=backend)
        command = [sys.executable, __file__, "--child", "--backend", backend]
        command += _common.child_options(args) + ["--steps", str(args.steps)]
        command += ["--repeats", str(args.repeats), "--top", str(args.top)]
        command += ["--xla"] if args.xla else []
        out = subprocess.run(command, env=env, capture_output=True, text=True)
        sys.stdout.write(out.stdout)
        if out.returncode:
            sys.stderr.write(out.stderr[-3000:])
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
