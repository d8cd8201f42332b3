"""Speed and memory of the LIF layer beside snnTorch, SpikingJelly, Norse and Spyx.

What is timed
-------------
The Open Neuromorphic SNN library benchmark, scaled to a CPU: batch 16,
``n = 512`` neurons (``--units``), T = 100 and 500 steps (``--steps``),
standard normal float32 input, decay per step 0.9, threshold 0.1 (our layer
adds a tenth of the input to the voltage: the threshold of 1 of
``v = 0.9 v + x``; every implementation fires on 5 to 12 % of the steps, as
the table of first calls shows).  Two configurations:

* ``dense``: ``keras.layers.Dense(n)`` then
  ``keras_spiking.LIF(tau=-dt / log(0.9), dt=0.001, threshold=0.1)`` in a
  ``keras.Model`` on a batch-major ``(16, T, n)`` input; forward+backward:
  the gradients of the sum of the output spikes for every trainable weight
  (kernel, bias, tau);
* ``alone``: the ``LIF`` layer on the input; forward+backward: the gradients
  of the input and of ``tau``.

Forward and forward+backward are timed apart: each cell is the median of
``--repeats`` runs after one or two warm-up calls (fewer runs, at least 3,
where they would take over ``--budget`` seconds), in milliseconds of wall
clock and of CPU time of the measuring process (all its threads; the steadier
figure on a machine shared with other work); ``--clock`` picks the one the
ratios use.

Our layer runs on each backend in Keras' default modes, each in a fresh
process with ``KERAS_BACKEND`` set: TensorFlow in ``tf.function`` without XLA
(what ``jit_compile="auto"`` gives on a CPU), and labelled apart with
``jit_compile=True``; PyTorch eagerly (forward under ``torch.no_grad()``);
JAX as ``jax.jit`` of ``stateless_call``.

The libraries run in their own virtual environment (``--libraries DIR``,
default ``.bench-lif`` at the repository root; create it with
``benchmarks/make_lif_env.sh``), each as its users run it, on a time-major
``(T, 16, n)`` copy of the same input, with ``Linear(n, n)`` in front for
``dense`` (see ``_lif_libraries.py``): snnTorch 1.0 ``Leaky`` in a Python
loop, SpikingJelly 2.0 ``LIFNode`` in multi-step mode, Norse 1.1
``LIFBoxCell`` in a Python loop (eager, and through ``torch.compile``), Spyx
1.0 ``LIF`` through ``spyx.nn.run`` under ``jax.jit``.

Every framework gets ``--threads`` threads (one by default).  Each
implementation, configuration and T runs in a fresh process; its memory is
the process's peak resident set size over its life (``getrusage``
``ru_maxrss``: imports, tracing/compilation and every run) and, in brackets,
that peak above the resident size after imports and set-up (before the first
call).  ``--scan-check`` also times one plain ``jax.lax.scan`` LIF under this
environment's JAX and under the library environment's, to tell apart a
library's speed and its jaxlib's.

Usage::

    benchmarks/make_lif_env.sh                   # once: the libraries
    python benchmarks/bench_lif.py               # everything, defaults
    python benchmarks/bench_lif.py --quick       # small smoke check
    python benchmarks/bench_lif.py --backend jax --steps 500 --no-libraries
"""

import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common  # noqa: E402
import _lif_libraries  # noqa: E402

#: Our rows: (backend, mode).
OURS = (
    ("tensorflow", "tf.function"),
    ("tensorflow", "tf.function+XLA"),
    ("torch", "eager"),
    ("jax", "jax.jit"),
)
LIBRARIES = _lif_libraries.LIBRARIES
CONFIGS = _lif_libraries.CONFIGS
BATCH, DT = _lif_libraries.BATCH, 0.001
#: The membrane time constant giving the libraries' decay of 0.9 per step.
TAU = -DT / math.log(_lif_libraries.BETA)
THRESHOLD = _lif_libraries.THRESHOLD
DEFAULT_LIBRARIES = _common.DEFAULT_LIBRARIES
#: Column labels.
LABELS = {
    ("tensorflow", "tf.function"): "TF",
    ("tensorflow", "tf.function+XLA"): "TF+XLA",
    ("torch", "eager"): "torch",
    ("jax", "jax.jit"): "JAX",
    "snntorch": "snnTorch",
    "spikingjelly": "SpikingJelly",
    "norse": "Norse",
    "norse-compiled": "Norse compiled",
    "spyx": "Spyx",
}
TORCH_LIBRARIES = ("snntorch", "spikingjelly", "norse", "norse-compiled")


# ---------------------------------------------------------------- child ---


def _our_functions(args):
    """``(forward, backward, sync)`` for our layer on ``args.backend`` in
    ``args.mode``, configuration ``args.config``; ``backward`` returns the
    list of gradients."""
    import keras
    import numpy as np

    from keras_spiking import LIF

    _common.configure_backend(args.backend, args.threads)
    x_np = np.random.default_rng(0).standard_normal((BATCH, args.steps, args.units))
    x_np = x_np.astype("float32")
    keras.utils.set_random_seed(0)
    if args.config == "dense":
        inputs = keras.Input((None, args.units))
        outputs = LIF(tau=TAU, dt=DT, threshold=THRESHOLD)(
            keras.layers.Dense(args.units)(inputs)
        )
        model = keras.Model(inputs, outputs)
    else:
        model = LIF(tau=TAU, dt=DT, threshold=THRESHOLD)
        model.build((BATCH, args.steps, args.units))
    alone = args.config == "alone"
    x = keras.ops.convert_to_tensor(x_np)

    if args.backend == "tensorflow":
        import tensorflow as tf

        def gradients(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(model(x, training=True))
            sources = ([x] if alone else []) + model.trainable_variables
            return tape.gradient(loss, sources)

        jit = args.mode == "tf.function+XLA"
        fwd = tf.function(lambda x: model(x, training=False), jit_compile=jit)
        bwd = tf.function(gradients, jit_compile=jit)

        def sync(value):
            return tf.nest.map_structure(lambda v: v.numpy(), value)

        return (lambda: fwd(x)), (lambda: bwd(x)), sync

    if args.backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        fixed = [v.value for v in model.non_trainable_variables]

        def spikes(train, x, training):
            return model.stateless_call(train, fixed, x, training=training)[0]

        fwd = jax.jit(lambda train, x: spikes(train, x, False))
        bwd = jax.jit(
            jax.grad(
                lambda train, x: jax.numpy.sum(spikes(train, x, True)),
                argnums=(0, 1) if alone else 0,
            )
        )
        return (
            (lambda: fwd(trainable, x)),
            (lambda: jax.tree_util.tree_leaves(bwd(trainable, x))),
            jax.block_until_ready,
        )

    import torch

    def forward():
        with torch.no_grad():
            return model(x, training=False)

    def backward():
        model.zero_grad(set_to_none=True)
        xg = x.detach().requires_grad_(alone)
        model(xg, training=True).sum().backward()
        grads = [v.value.grad for v in model.trainable_variables]
        return ([xg.grad] if alone else []) + grads

    return forward, backward, lambda value: value


def _child(args):
    _common.limit_threads(args.threads, args.pin)
    row = {
        "implementation": [args.backend, args.mode],
        "config": args.config,
        "steps": args.steps,
        "units": args.units,
        "batch": BATCH,
    }
    try:
        import keras

        forward, backward, sync = _our_functions(args)
        _lif_libraries.measure(
            row,
            forward,
            backward,
            sync,
            args,
            lambda out: float((keras.ops.convert_to_numpy(out) != 0).mean()),
        )
    except Exception as exc:  # noqa: BLE001 (reported in the table)
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    print(json.dumps(row), flush=True)


# --------------------------------------------------------------- parent ---


def _run(command, env, timeout):
    """JSON rows printed by a child, or one row with the error."""
    return _common.child_rows(command, env, timeout)


def _memory_cell(row):
    added = row["maxrss"] - row["rss_before"]
    return f"{row['maxrss'] / 1e6:.0f} (+{added / 1e6:.0f})"


def _first_call_cell(row):
    return (
        f"{row['first_forward']:.2f} / {row['first_backward']:.2f}; "
        f"{row['spike_rate']:.3f}"
    )


def _print_cells(header, rule, groups, columns, results, cell):
    """A table: a row per (configuration, T), ``cell(row)`` per column ("–"
    where a run has no result)."""
    print(header + "\n" + rule)
    for config, steps in groups:
        cells = []
        for c in columns:
            row = results.get((config, steps, c))
            cells.append("–" if not row or "error" in row else cell(row))
        print(f"| {config} | {steps} | " + " | ".join(cells) + " |")


def _common_options(args, config, steps):
    return [
        "--config",
        config,
        "--steps",
        str(steps),
        "--units",
        str(args.units),
        "--repeats",
        str(args.repeats),
        "--budget",
        str(args.budget),
    ] + _common.child_options(args)


def _our_row(args, backend, mode, config, steps):
    command = [sys.executable, __file__, "--child", "--mode", mode]
    command += ["--backend", backend] + _common_options(args, config, steps)
    env = _common.child_env(args, KERAS_BACKEND=backend)
    (row,) = _run(command, env, args.timeout)[:1]
    return row


def _library_python(args):
    """The library environment's python, or None with the reason."""
    return _common.library_python(
        args,
        "import snntorch, spikingjelly, norse, spyx",
        "snnTorch, SpikingJelly, Norse, Spyx",
    )


def _library_row(args, python, library, config, steps):
    command = [python, os.path.join(HERE, "_lif_libraries.py"), "time"]
    command += ["--library", library] + _common_options(args, config, steps)
    (row,) = _run(command, _common.library_env(args), args.timeout)[:1]
    return row


def _versions(args, python):
    """Versions of this environment's frameworks, and of the library
    environment's packages (``python``; None: not there)."""
    ours = _common.package_versions(_common.FRAMEWORKS)
    theirs = None
    if python:
        command = [python, os.path.join(HERE, "_lif_libraries.py"), "versions"]
        rows = _run(command, _common.library_env(args), 120)
        theirs = rows[0].get("versions") if rows else None
    return ours, theirs


def _key(row):
    implementation = row.get("implementation")
    return tuple(implementation) if isinstance(implementation, list) else implementation


#: The row keys of each clock's forward and forward+backward times.
KEYS = {"wall": ("forward", "backward"), "cpu": ("forward_cpu", "backward_cpu")}


def _cell(row, keys, digits=1):
    if row is None:
        return "–"
    if "error" in row:
        return "failed"
    forward, backward = (row[k] * 1e3 for k in keys)
    return f"{forward:.{digits}f} / {backward:.{digits}f}"


def _ratio(reference, row, direction):
    if not reference or not row or "error" in reference or "error" in row:
        return None
    return reference[direction] / row[direction]


def _fastest(rows, names, direction):
    ok = [r for r in rows if _key(r) in names and "error" not in r]
    return min(ok, key=lambda r: r[direction]) if ok else None


def _ratio_cell(reference_of, row, rows, keys):
    """``fwd / fwd+bwd`` ratios reference / row (above 1: ours faster), each
    with the reference's name where it is chosen per direction."""
    parts = []
    for direction in keys:
        reference, name = reference_of(rows, direction)
        ratio = _ratio(reference, row, direction)
        parts.append("–" if ratio is None else f"{ratio:.2f}{name}")
    return " / ".join(parts)


def _print_tables(args, results, columns):
    header = "| configuration | T | " + " | ".join(LABELS[c] for c in columns) + " |"
    rule = "|---|---:|" + "---:|" * len(columns)
    groups = [(c, t) for c in CONFIGS for t in args.steps]

    clocks = {"wall": "wall clock", "cpu": "CPU time of the process"}
    for clock in sorted(clocks, key=lambda c: c != args.clock):
        print(
            f"\nmilliseconds, forward / forward+backward (median of up to "
            f"{args.repeats} runs; {clocks[clock]})\n"
        )
        print(header + "\n" + rule)
        for config, steps in groups:
            cells = [
                _cell(results.get((config, steps, c)), KEYS[clock]) for c in columns
            ]
            print(f"| {config} | {steps} | " + " | ".join(cells) + " |")

    def fastest_torch(rows, direction):
        best = _fastest(rows, TORCH_LIBRARIES, direction)
        return best, f" ({LABELS[_key(best)]})" if best else ""

    def spyx(rows, direction):
        return _fastest(rows, ("spyx",), direction), ""

    def our_jax(rows, direction):
        return _fastest(rows, (("jax", "jax.jit"),), direction), ""

    comparisons = [
        (("torch", "eager"), "torch: fastest PyTorch library / ours", fastest_torch),
        (("jax", "jax.jit"), "JAX: Spyx / ours", spyx),
        (("tensorflow", "tf.function"), "TF: our JAX / TF", our_jax),
        (("tensorflow", "tf.function+XLA"), "TF+XLA: our JAX / TF+XLA", our_jax),
    ]
    comparisons = [c for c in comparisons if c[0] in columns]
    if comparisons:
        print(
            f"\nratios, forward / forward+backward, {args.clock} time (reference / "
            "ours: above 1, ours is faster)\n"
        )
        print(
            "| configuration | T | "
            + " | ".join(label for _, label, _ in comparisons)
            + " |\n|---|---:|"
            + "---|" * len(comparisons)
        )
        for config, steps in groups:
            rows = [results[k] for k in results if k[:2] == (config, steps)]
            cells = [
                _ratio_cell(
                    reference_of,
                    results.get((config, steps, ours)),
                    rows,
                    KEYS[args.clock],
                )
                for ours, _, reference_of in comparisons
            ]
            print(f"| {config} | {steps} | " + " | ".join(cells) + " |")

    print(
        "\npeak resident memory of the process, MB (in brackets: above the "
        "level after imports and set-up, before the first call)\n"
    )
    _print_cells(header, rule, groups, columns, results, _memory_cell)

    print(
        "\nfirst call, seconds, forward / forward+backward (tracing and "
        "compilation); spike rate (fraction of outputs that are spikes)\n"
    )
    _print_cells(header, rule, groups, columns, results, _first_call_cell)

    for (config, steps, c), row in results.items():
        if "error" in row:
            print(f"note: {LABELS[c]}, {config}, T = {steps}: failed: {row['error']}")


def _scan_check(args, python):
    print(
        "\nplain jax.lax.scan LIF (v = 0.9 v + x, subtractive reset), "
        "time-major input, ms forward / forward+backward (input gradient)"
    )
    pythons = [("this environment", sys.executable)]
    pythons += [("library environment", python)] if python else []
    for label, interpreter in pythons:
        for steps in args.steps:
            command = [interpreter, os.path.join(HERE, "_lif_libraries.py"), "scan"]
            command += _common_options(args, "alone", steps)
            env = _common.library_env(args)
            (row,) = _run(command, env, args.timeout)[:1]
            if "error" in row:
                print(f"  {label}, T = {steps}: failed: {row['error']}")
                continue
            print(
                f"  {label} (jax {row['jax']}, jaxlib {row['jaxlib']}), "
                f"T = {steps}: {_cell(row, KEYS[args.clock], 2)}"
            )


def main():
    parser = _common.make_parser(__doc__)
    _common.add_options(parser, predecessors=False)
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--units", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--budget", type=float, default=20.0, help="seconds per cell, roughly"
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="the time shown: wall clock, or CPU time of the measuring process "
        "(steadier on a shared machine); both are measured",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small smoke check: T = 20, 64 units, 3 runs",
    )
    parser.add_argument(
        "--libraries",
        metavar="DIR",
        help="virtual environment with snnTorch, SpikingJelly, Norse and Spyx "
        "(made by benchmarks/make_lif_env.sh DIR); default: .bench-lif at the "
        "repository root, if there; 'none': skip them",
    )
    parser.add_argument(
        "--no-libraries", action="store_true", help="time our layer only"
    )
    parser.add_argument(
        "--scan-check",
        action="store_true",
        help="also time a plain jax.lax.scan LIF under both environments' JAX",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds allowed to one measuring process",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--config", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.steps = args.steps[0]
        _child(args)
        return
    if args.quick:
        args.steps, args.units, args.repeats = [20], 64, 3

    started = time.perf_counter()
    python, status = _library_python(args)
    ours = [o for o in OURS if args.backend in ("all", o[0])]
    libraries = list(LIBRARIES) if python else []
    print(
        f"batch {BATCH}, n = {args.units}, T = {args.steps}; dt = {DT}, our tau = "
        f"{TAU:.6f} (decay 0.9 per step), threshold {THRESHOLD:.2f}; standard "
        "normal input"
    )
    print(_common.setup_line(args))
    versions, lib_versions = _versions(args, python)
    _common.print_environments(versions, status, lib_versions)

    results = {}
    for config in CONFIGS:
        for steps in args.steps:
            for backend, mode in ours:
                row = _our_row(args, backend, mode, config, steps)
                results[(config, steps, (backend, mode))] = row
            for library in libraries:
                row = _library_row(args, python, library, config, steps)
                results[(config, steps, library)] = row
            print(
                f"[{config}, T = {steps} done, {time.perf_counter() - started:.0f} s]"
            )
    _print_tables(args, results, [*ours, *libraries])
    if args.scan_check:
        _scan_check(args, python)
    print(
        f"\nload average at end: {os.getloadavg()}; "
        f"{time.perf_counter() - started:.0f} s in all"
    )


if __name__ == "__main__":
    main()
