"""Per-step latency of streaming inference: one time step per call, batch 1.

What is timed
-------------
The real-time recipe of the README and ``docs/deployment.md``: a model is
made stateful with ``keras_spiking.stateful_copy(model, batch_size=1)`` and
fed one frame per ``predict_on_batch`` call, an input of shape
``(1, 1, 128)``; each call continues from the states the previous one ended
in.  Five models of the same width (``--units``, 128 by default)::

    relu       Dense(128, relu) -> Dense(10)       (no temporal layer: baseline)
    relu_ids   Dense(128, relu) -> Identity -> Identity -> Dense(10)
    rate       Dense(128) -> SpikingActivation("relu") -> Lowpass(0.1) -> Dense(10)
    lif        Dense(128) -> LIF() -> Dense(10)
    lif_rec    Dense(128) -> LIF(recurrent=True) -> Dense(10)

Each backend runs in a fresh process with ``KERAS_BACKEND`` set, in Keras'
default modes for ``predict_on_batch`` (TensorFlow: ``tf.function`` without
XLA on a CPU; PyTorch: eager; JAX: ``jax.jit``), with ``--threads`` threads
(one by default).  After ``--warmup`` calls of each model (tracing and
compilation), the models are called in turn, one step each, for ``--steps``
rounds (so that a change in the machine's load hits every model alike).  A
cell is the median time of one call, the numpy result included, in
milliseconds of wall clock and of CPU time of the process (the steadier
figure on a machine shared with other work).  The ratio is the model's
median over the relu model's on the same backend: the temporal layers' cost
per step (target: at most 1.5).  ``relu_ids`` measures what two Keras layers
that do nothing (``keras.layers.Identity``) add to a step: the floor under
the ``rate`` model's two temporal layers, and twice the floor under one
``LIF`` layer.

``--call model`` times a plain call, ``model(frame, training=False)``,
instead of ``predict_on_batch`` (eager on every backend: no ``tf.function``,
no ``jax.jit``).

``--profile`` then runs the model with the highest ratio under ``cProfile``
for ``--steps`` calls in a fresh process and prints the ten functions with
the most time of their own and the package's ten with the most cumulative
time.

Usage::

    python benchmarks/bench_streaming.py               # all backends, 500 steps
    python benchmarks/bench_streaming.py --quick       # small smoke check
    python benchmarks/bench_streaming.py --backend torch --steps 1000 --profile
    python benchmarks/bench_streaming.py --call model --steps 100
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common  # noqa: E402

MODELS = ("relu", "relu_ids", "rate", "lif", "lif_rec")
DESCRIPTIONS = {
    "relu": "Dense(relu) -> Dense(10)",
    "relu_ids": "Dense(relu) -> Identity -> Identity -> Dense(10) (the floor)",
    "rate": "Dense -> SpikingActivation(relu) -> Lowpass -> Dense(10)",
    "lif": "Dense -> LIF -> Dense(10)",
    "lif_rec": "Dense -> LIF(recurrent) -> Dense(10)",
}
OUTPUTS = 10
DT = 0.01
TARGET = 1.5


# ---------------------------------------------------------------- child ---


def _trained_model(name, units):
    """The (non-stateful) model ``name``, as a user would have trained it."""
    import keras

    import keras_spiking

    inputs = keras.Input((None, units))
    if name.startswith("relu"):
        x = keras.layers.Dense(units, activation="relu")(inputs)
        if name == "relu_ids":
            x = keras.layers.Identity()(keras.layers.Identity()(x))
    else:
        x = keras.layers.Dense(units)(inputs)
        if name == "rate":
            x = keras_spiking.SpikingActivation("relu", dt=DT, seed=0)(x)
            x = keras_spiking.Lowpass(0.1, dt=DT)(x)
        else:
            x = keras_spiking.LIF(tau=0.02, dt=DT, recurrent=name == "lif_rec")(x)
    outputs = keras.layers.Dense(OUTPUTS)(x)
    return keras.Model(inputs, outputs, name=name)


def _streaming_models(args):
    """``{name: stateful copy}`` with batch 1, and the input frames."""
    import keras
    import numpy as np

    import keras_spiking

    _common.configure_backend(args.backend, args.threads)
    keras.utils.set_random_seed(0)
    models = {
        name: keras_spiking.stateful_copy(_trained_model(name, args.units), 1)
        for name in args.models
    }
    rng = np.random.default_rng(0)
    # the rate at which the temporal layer's output is nonzero is reported
    frames = rng.uniform(0, 2, (64, 1, 1, args.units)).astype("float32")
    return models, frames


def _stepper(args, model):
    """One streaming step of ``model`` on a frame, as ``--call`` says."""
    if args.call == "model":
        import keras

        return lambda frame: keras.ops.convert_to_numpy(model(frame, training=False))
    return model.predict_on_batch


def _time_models(args):
    """One JSON row per model: the median wall and CPU time of one call."""
    models, frames = _streaming_models(args)
    steppers = {name: _stepper(args, model) for name, model in models.items()}
    warmup = {}
    for name, step in steppers.items():
        start = time.perf_counter()
        for i in range(args.warmup):
            step(frames[i % len(frames)])
        warmup[name] = time.perf_counter() - start
    wall = {name: [] for name in models}
    cpu = {name: [] for name in models}
    for i in range(args.steps):
        frame = frames[i % len(frames)]
        for name, step in steppers.items():
            cpu_start = time.process_time()
            start = time.perf_counter()
            step(frame)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cpu_start)
    rows = []
    for name in models:
        quartiles = statistics.quantiles(wall[name], n=4)
        rows.append(
            {
                "backend": args.backend,
                "model": name,
                "median": statistics.median(wall[name]),
                "q1": quartiles[0],
                "q3": quartiles[2],
                "cpu": statistics.median(cpu[name]),
                "warmup": warmup[name],
                "steps": args.steps,
                "spike_rate": _spike_rate(models[name], frames),
            }
        )
    return rows


def _spike_rate(model, frames):
    """Fraction of nonzero outputs of the model's temporal layer over the
    frames (None for a model without one), from a fresh stateful copy."""
    import keras
    import numpy as np

    import keras_spiking

    layers = [
        layer
        for layer in model.layers
        if isinstance(layer, (keras_spiking.SpikingActivation, keras_spiking.LIF))
    ]
    if not layers:
        return None
    probe = keras.Model(model.inputs, layers[0].output)
    keras_spiking.reset_states(model)
    spikes = [keras.ops.convert_to_numpy(probe(frame)) for frame in frames]
    keras_spiking.reset_states(model)
    return float((np.concatenate(spikes) != 0).mean())


def _profile_model(args):
    """A JSON row with cProfile's text for ``--steps`` calls of one model."""
    models, frames = _streaming_models(args)
    (model,) = models.values()
    step = _stepper(args, model)
    for i in range(args.warmup):
        step(frames[i % len(frames)])
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(args.steps):
        step(frames[i % len(frames)])
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(10)
    text.write("\nkeras_spiking functions, by cumulative time:\n")
    stats.sort_stats("cumulative").print_stats("keras_spiking", 10)
    return {"backend": args.backend, "model": model.name, "profile": text.getvalue()}


def _child(args):
    _common.limit_threads(args.threads, args.pin)
    try:
        if args.profile_model:
            args.models = [args.profile_model]
            rows = [_profile_model(args)]
        else:
            rows = _time_models(args)
    except Exception as exc:  # noqa: BLE001 (reported in the table)
        rows = [
            {
                "backend": args.backend,
                "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
            }
        ]
    for row in rows:
        print(json.dumps(row), flush=True)


# --------------------------------------------------------------- parent ---


def _run_child(args, backend, extra):
    command = [sys.executable, __file__, "--child", "--backend", backend]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    command += ["--units", str(args.units), "--call", args.call]
    command += _common.child_options(args) + extra
    env = _common.child_env(args, KERAS_BACKEND=backend)
    return _common.run_rows(command, env, f"{backend} child")


def _versions():
    names = ("keras", "tensorflow", "tensorflow-cpu", "torch", "jax")
    return ", ".join(f"{k} {v}" for k, v in _common.package_versions(names).items())


def _print_table(rows):
    print(
        "\n| backend | model | wall ms per step, median (quartiles) | CPU ms per "
        "step | ratio to relu, wall / CPU | spike rate |\n"
        "|---|---|---:|---:|---:|---:|"
    )
    baseline = {r["backend"]: r for r in rows if r.get("model") == "relu"}
    for row in rows:
        if "error" in row:
            print(f"| {row['backend']} | failed: {row['error']} | | | | |")
            continue
        relu = baseline[row["backend"]]
        row["ratio"] = row["median"] / relu["median"]
        row["cpu_ratio"] = row["cpu"] / relu["cpu"]
        over = row["model"] != "relu" and max(row["ratio"], row["cpu_ratio"]) > TARGET
        rate = "–" if row["spike_rate"] is None else f"{row['spike_rate']:.3f}"
        print(
            f"| {row['backend']} | {row['model']} | {row['median'] * 1e3:.3f} "
            f"({row['q1'] * 1e3:.3f}–{row['q3'] * 1e3:.3f}) | "
            f"{row['cpu'] * 1e3:.3f} | {row['ratio']:.2f} / {row['cpu_ratio']:.2f}"
            f"{' (over)' if over else ''} | {rate} |"
        )


def main():
    parser = _common.make_parser(__doc__)
    _common.add_options(parser, predecessors=False)
    parser.add_argument("--steps", type=int, default=500, help="timed calls per model")
    parser.add_argument(
        "--warmup", type=int, default=50, help="untimed calls per model first"
    )
    parser.add_argument("--units", type=int, default=128, help="model width")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke check: 30 steps, 5 warm-up"
    )
    parser.add_argument(
        "--call",
        choices=["predict_on_batch", "model"],
        default="predict_on_batch",
        help="how a step is run: model.predict_on_batch(frame) (the README's "
        "recipe) or model(frame, training=False)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the model with the highest ratio (cProfile, fresh process)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile-model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("steps", "warmup", "units", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1; got {getattr(args, name)}")
    if args.quick:
        args.steps, args.warmup = 30, 5
    args.models = list(MODELS)
    if args.child:
        _child(args)
        return

    backends = _common.BACKENDS if args.backend == "all" else (args.backend,)
    print(
        f"streaming, batch 1, one step per {args.call} call; width "
        f"{args.units} -> {OUTPUTS}; {args.steps} timed calls per model after "
        f"{args.warmup} warm-up calls; dt = {DT}"
    )
    print(_common.setup_line(args))
    print(f"versions: {_versions()}")
    for name in MODELS:
        print(f"  {name:8s} {DESCRIPTIONS[name]}")
    rows = []
    for backend in backends:
        rows += _run_child(args, backend, [])
    _print_table(rows)
    print(
        f"(ratio: median over the relu model's on the same backend; target <= "
        f"{TARGET}; load average after the run: {os.getloadavg()[0]:.2f})"
    )

    timed = [r for r in rows if "ratio" in r and not r["model"].startswith("relu")]
    if args.profile and timed:
        worst = max(timed, key=lambda r: r["cpu_ratio"])
        print(
            f"\nprofile: {worst['model']} on {worst['backend']} (ratio "
            f"{worst['ratio']:.2f} wall, {worst['cpu_ratio']:.2f} CPU), "
            f"{args.steps} calls of {args.call}\n"
        )
        for row in _run_child(
            args, worst["backend"], ["--profile-model", worst["model"]]
        ):
            print(row.get("profile") or f"failed: {row.get('error')}")


if __name__ == "__main__":
    main()
