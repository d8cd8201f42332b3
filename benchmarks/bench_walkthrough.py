"""Benchmark: the full spiking Fashion-MNIST walkthrough under each backend.

Runs ``examples/spiking_fashion_mnist.py --data full --epochs 10`` once per
backend and seed, each in its own process with ``KERAS_BACKEND`` set, and
prints, per backend, the summary table (test accuracy: mean and [min-max] over
the seeds; spike rates: mean over the seeds) with the median wall-clock time
of ``model.fit`` for each model and its ratio to the non-spiking baseline's fit
time measured in the same runs, then one table across backends next to the
reference numbers of the PyTorch-only predecessor.

Usage::

    python benchmarks/bench_walkthrough.py                       # all three
    python benchmarks/bench_walkthrough.py --backends jax --seeds 0 1 2
    python benchmarks/bench_walkthrough.py --fashion-mnist-dir DIR

A run whose folder under ``--out`` already holds its results (from an earlier
call with the same ``--out``) is not run again but read back, unless
``--rerun`` is given; so seeds and backends can be added one call at a time.

``--threads N`` (default 1, as the reference numbers) limits each backend to
N CPU threads (``OMP_NUM_THREADS``, ``TF_NUM_INTRAOP_THREADS`` ..., and for
JAX ``XLA_FLAGS``); on a machine shared with other work, more threads than
free cores makes torch in particular many times slower.

``--fashion-mnist-dir DIR`` points at a folder holding the four Fashion-MNIST
``.gz`` files: a temporary ``KERAS_HOME`` whose ``datasets/fashion-mnist``
links to them is used, instead of Keras' own cache.  Each run's log, summary
and figures are kept under ``--out`` (default ``out/bench_walkthrough``), and
the tables are written to ``results.md`` there.
"""

import argparse
import csv
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "spiking_fashion_mnist.py"
BACKENDS = ("tensorflow", "torch", "jax")
FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)

# The same walkthrough run with the PyTorch-only predecessor (pytorch-spiking
# 0.1.0, torch 2.13.0, CPU) on the same 60,000/10,000 data, 10 epochs: test
# accuracy (%) and mean spike rate (Hz), mean over seeds 0, 1, 2.  For
# comparison only (see docs/walkthrough.md).
REFERENCE = {
    "baseline": (87.61, None),
    "spiking_dt0.001": (18.31, 0.70),
    "spiking_dt0.01": (61.89, 0.70),
    "spiking_dt0.1": (86.63, 0.70),
    "spiking_dt1": (87.12, 0.70),
    "aware_dt0.01": (84.35, 2.86),
    "aware_dt0.01_l2rate": (71.57, 18.78),
    "aware_dt0.01_lowpass": (85.24, 4.42),
}


def keras_home(folder, tmp):
    """A ``KERAS_HOME`` in ``tmp`` whose fashion-mnist files link to ``folder``."""
    folder = pathlib.Path(folder).resolve()
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        sys.exit(f"error: {folder} lacks {', '.join(missing)}")
    target = pathlib.Path(tmp) / "datasets" / "fashion-mnist"
    target.mkdir(parents=True)
    for name in FILES:
        (target / name).symlink_to(folder / name)
    return str(tmp)


def thread_env(threads):
    """Environment variables that limit the backends to ``threads`` threads."""
    n = str(threads)
    env = {
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "TF_NUM_INTRAOP_THREADS": n,
        "TF_NUM_INTEROP_THREADS": n,
    }
    if threads == 1:
        env["XLA_FLAGS"] = (
            "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        )
    return env


def run_once(backend, seed, args, out, env):
    """One walkthrough run (or its earlier results); (rows by key, seconds)."""
    done = out / "wall_s.txt"
    if args.rerun or not done.is_file():
        out.mkdir(parents=True, exist_ok=True)
        done.unlink(missing_ok=True)
        command = [sys.executable, str(EXAMPLE), "--data", args.data]
        command += ["--epochs", str(args.epochs), "--seed", str(seed)]
        command += ["--out", str(out)]
        print(f"running {backend}, seed {seed} ...", flush=True)
        start = time.perf_counter()
        with open(out / "log.txt", "w") as log:
            status = subprocess.run(
                command,
                env=dict(env, KERAS_BACKEND=backend),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        seconds = time.perf_counter() - start
        if status.returncode != 0:
            sys.exit(f"error: the {backend} run failed; see {out / 'log.txt'}")
        done.write_text(f"{seconds:.1f}\n")
        print(f"  done in {seconds:.0f} s", flush=True)
    with open(out / "summary.csv", newline="") as f:
        rows = {r["key"]: r for r in csv.DictReader(f)}
    return rows, float(done.read_text())


def _num(text):
    return None if text in ("", None) else float(text)


def _f(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"


def _column(runs, key, column):
    values = [_num(rows[key][column]) for rows, _ in runs]
    return [v for v in values if v is not None]


def _accuracy(runs, key):
    values = [100 * v for v in _column(runs, key, "test_accuracy")]
    text = f"{statistics.mean(values):.2f}"
    if len(values) > 1:
        text += f" [{min(values):.2f}-{max(values):.2f}]"
    return text


def _mean(runs, key, column):
    values = _column(runs, key, column)
    return statistics.mean(values) if values else None


def backend_table(backend, runs):
    """Markdown table for one backend over its runs (one per seed)."""
    keys = list(runs[0][0])
    base = statistics.median(_column(runs, "baseline", "fit_s"))
    wall = statistics.median(s for _, s in runs)
    lines = [
        f"#### {backend}: {len(runs)} run(s), median whole run {wall:.0f} s",
        "",
        "| model | test acc. (%) | mean / max rate (Hz) | fit (s) | fit / baseline |",
        "|---|---|---|---|---|",
    ]
    for key in keys:
        fits = _column(runs, key, "fit_s")
        fit = statistics.median(fits) if fits else None
        mean = _mean(runs, key, "rate_mean_hz")
        rates = (
            "-"
            if mean is None
            else (f"{mean:.2f} / {_mean(runs, key, 'rate_max_hz'):.0f}")
        )
        lines.append(
            f"| {runs[0][0][key]['model']} | {_accuracy(runs, key)} | {rates} "
            f"| {_f(fit, 1)} | {_f(None if fit is None else fit / base, 2)} |"
        )
    return "\n".join(lines) + "\n"


def comparison_table(results):
    """Accuracy and mean rate per backend next to the reference."""
    backends = list(results)
    first = results[backends[0]][0][0]
    head = " | ".join(f"{b}" for b in backends)
    lines = [
        f"| model | reference | {head} |",
        "|---" * (2 + len(backends)) + "|",
    ]
    for key in first:
        ref_acc, ref_rate = REFERENCE.get(key, (None, None))
        cells = [f"{_f(ref_acc, 2)} / {_f(ref_rate, 2)}"]
        for b in backends:
            runs = results[b]
            acc = statistics.mean(_column(runs, key, "test_accuracy")) * 100
            cells.append(f"{acc:.2f} / {_f(_mean(runs, key, 'rate_mean_hz'), 2)}")
        lines.append(f"| {first[key]['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=BACKENDS)
    parser.add_argument("--data", choices=("small", "full"), default="full")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads per run (0: default)"
    )
    parser.add_argument("--fashion-mnist-dir", default=None)
    parser.add_argument("--out", default="out/bench_walkthrough")
    parser.add_argument("--rerun", action="store_true", help="ignore earlier runs")
    args = parser.parse_args(argv)

    out = pathlib.Path(args.out)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if args.threads > 0:
        env.update(thread_env(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        if args.fashion_mnist_dir:
            env["KERAS_HOME"] = keras_home(args.fashion_mnist_dir, tmp)
        results = {
            backend: [
                run_once(backend, seed, args, out / backend / f"seed{seed}", env)
                for seed in args.seeds
            ]
            for backend in args.backends
        }

    threads = args.threads if args.threads > 0 else "default"
    text = (
        f"Walkthrough, --data {args.data} --epochs {args.epochs}, seeds "
        f"{' '.join(map(str, args.seeds))}; {os.cpu_count()} CPU cores, threads "
        f"per run: {threads}; fit times are medians over the runs.\n\n"
    )
    text += "\n".join(backend_table(b, runs) for b, runs in results.items())
    text += (
        "\n#### All backends: test accuracy (%) / mean spike rate (Hz), mean "
        "over the seeds\n\n"
    )
    text += comparison_table(results)
    print("\n" + text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text)


if __name__ == "__main__":
    main()
