"""Setup shared by the benchmark scripts (standard library only: the
predecessor child, ``_predecessors.py``, imports it from another
environment)."""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
#: Default virtual environment of the predecessor packages
#: (``make_predecessor_env.sh``).
DEFAULT_PREDECESSORS = os.path.join(os.path.dirname(HERE), ".bench-predecessors")

#: glibc malloc settings that keep freed memory in the process (no page
#: faults for fresh large buffers).  Users do not set these: only with
#: ``--malloc-tuning``.
MALLOC_TUNING = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(1 << 40),
}
#: Variables that tell a framework's thread pools how many threads to start.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


BACKENDS = ("tensorflow", "torch", "jax")


def make_parser(doc):
    """An argument parser whose help is the script's docstring ``doc``
    (first paragraph, then its ``Usage::`` part), with ``--backend``."""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=doc.split("Usage::")[1],
    )
    parser.add_argument("--backend", choices=BACKENDS + ("all",), default="all")
    return parser


def add_options(parser, predecessors=True):
    """The options the benchmarks share: threads, pinning, allocator, and
    the predecessor environment (if ``predecessors``)."""
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads per framework (intra-op pools; inter-op pools get one)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin each measuring process to the first --threads cores "
        "(sched_setaffinity; off by default: users do not pin)",
    )
    parser.add_argument(
        "--malloc-tuning",
        action="store_true",
        help="tell glibc's malloc to keep freed memory ("
        + " ".join(f"{k}={v}" for k, v in MALLOC_TUNING.items())
        + "); off by default: users do not set these",
    )
    if not predecessors:
        return
    parser.add_argument(
        "--predecessors",
        metavar="DIR",
        help="virtual environment with keras-spiking 0.3.0 and pytorch-spiking "
        "0.1.0 (made by benchmarks/make_predecessor_env.sh DIR); default: "
        ".bench-predecessors at the repository root, if there; 'none': skip them",
    )


def child_options(args):
    """Command-line arguments passing ``add_options``' values to a child."""
    return ["--threads", str(args.threads)] + (["--pin"] if args.pin else [])


def child_env(args, **extra):
    """The environment of a measuring child process."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in MALLOC_TUNING or args.malloc_tuning
    }
    if args.malloc_tuning:
        env.update(MALLOC_TUNING)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def setup_line(args):
    """One line describing the machine setup, for a printed header."""
    allocator = (
        "tuned (" + " ".join(f"{k}={v}" for k, v in MALLOC_TUNING.items()) + ")"
        if args.malloc_tuning
        else "glibc defaults"
    )
    return (
        f"threads per framework: {args.threads}; "
        f"pinned to cores: {'yes' if args.pin else 'no'}; "
        f"allocator: {allocator}; "
        f"load average: {os.getloadavg()[0]:.2f}; cores: {os.cpu_count()}"
    )


def limit_threads(threads, pin=False):
    """Tell every library to use ``threads`` threads; pin the process to the
    first ``threads`` cores only if ``pin``.

    Call before importing any framework: the thread pools read these
    variables when they start.
    """
    if pin:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    # XLA's CPU thread pool has no flag for its size: one thread is Eigen's
    # single-threaded mode (a bare word in XLA_FLAGS would be read as a
    # file name, and XLA aborts)
    if threads == 1:
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def configure_backend(backend, threads):
    """Set the thread pools of ``backend`` ("tensorflow" or "torch")."""
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def clock(name):
    """``time.perf_counter`` for "wall", ``time.process_time`` for "cpu"."""
    return time.process_time if name == "cpu" else time.perf_counter


def median_times(fn, sync, repeats, budget, timers=(time.perf_counter,)):
    """Median seconds of ``sync(fn())`` by each of ``timers`` over ``repeats``
    runs (a list, one per timer), and the number of runs, after one warm-up
    call (two if it is quick).

    Fewer runs (at least 3) where ``repeats`` would take over ``budget``
    seconds.
    """
    start = time.perf_counter()
    sync(fn())
    first = time.perf_counter() - start
    if first < budget / repeats:
        sync(fn())
    runs = repeats if first * repeats <= budget else max(3, int(budget / first))
    samples = [[] for _ in timers]
    for _ in range(min(runs, repeats)):
        starts = [timer() for timer in timers]
        sync(fn())
        for times, timer, begun in zip(samples, timers, starts, strict=True):
            times.append(timer() - begun)
    return [median(times) for times in samples], len(samples[0])


def median_time(fn, sync, repeats, budget, timer=time.perf_counter):
    """``median_times`` with one timer: the median seconds and the runs."""
    (seconds,), runs = median_times(fn, sync, repeats, budget, (timer,))
    return seconds, runs


def package_versions(names, include_missing=False):
    """``{name: version}`` of the installed packages among ``names``; with
    ``include_missing``, None for the others."""
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if include_missing:
                versions[name] = None
    return versions


#: The frameworks whose versions the benchmarks report for this environment.
FRAMEWORKS = ("keras", "tensorflow-cpu", "tensorflow", "torch", "jax", "jaxlib")


def print_environments(versions, status, library_versions):
    """Print this environment's versions, the library environment's status
    and, if measured there, its versions."""
    print("this environment: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"libraries: {status}")
    if library_versions:
        print(
            "library environment: "
            + ", ".join(f"{k} {v}" for k, v in library_versions.items())
        )


def median(values):
    """The median (upper middle) of ``values``."""
    values = sorted(values)
    return values[len(values) // 2]


def epoch_median(times):
    """Median of the epochs after the first (the first includes tracing and
    compilation); the first alone if there is only one."""
    return median(times[1:] or times)


def run_rows(command, env, what):
    """JSON rows printed by a child; its error output if it failed."""
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line[:1] == "{"]
    if out.returncode:
        print(f"[{what} failed, exit status {out.returncode}]", file=sys.stderr)
        sys.stderr.write(out.stderr[-3000:])
    return rows


def predecessor_status(args):
    """The predecessor environment's directory, or None with the reason."""
    if args.predecessors == "none":
        return None, "not measured (--predecessors none)"
    directory = args.predecessors or DEFAULT_PREDECESSORS
    python = os.path.join(directory, "bin", "python")
    probe = (
        "import importlib.util as u; "
        "assert u.find_spec('keras_spiking') and u.find_spec('pytorch_spiking')"
    )
    if not (
        os.path.exists(python)
        and subprocess.run([python, "-I", "-c", probe], capture_output=True).returncode
        == 0
    ):
        return None, (
            f"NOT MEASURED: no predecessor environment (keras-spiking 0.3.0, "
            f"pytorch-spiking 0.1.0) at {directory}; create it "
            f"with `benchmarks/make_predecessor_env.sh {directory}` (a few "
            f"minutes, about 2.5 GB on disk) and run this again"
        )
    return directory, f"measured with {python}"


def predecessor_rows(args, task, frameworks, extra):
    """Rows of ``_predecessors.py task`` for each of ``frameworks``, run with
    the predecessor environment's python (``[]`` if there is none)."""
    directory, _ = predecessor_status(args)
    if directory is None:
        return []
    rows = []
    for framework in frameworks:
        env = child_env(args, TF_USE_LEGACY_KERAS="1")
        env.pop("PYTHONPATH", None)  # this repository's keras_spiking: not here
        env.pop("KERAS_BACKEND", None)
        command = [os.path.join(directory, "bin", "python")]
        command += [os.path.join(HERE, "_predecessors.py")]
        command += [task, "--framework", framework] + child_options(args)
        rows += run_rows(command + extra, env, f"predecessor {framework} {task}")
    return rows


#: Default virtual environment of the LIF libraries (``make_lif_env.sh``).
DEFAULT_LIBRARIES = os.path.join(os.path.dirname(HERE), ".bench-lif")


def library_python(args, probe, names):
    """The library environment's python (``args.libraries``), or None.

    Returns ``(python, status)``; None where ``--no-libraries`` was given or
    the environment does not import ``probe`` (``names`` in the message).
    """
    if args.no_libraries or args.libraries == "none":
        return None, "not measured (--no-libraries)"
    directory = args.libraries or DEFAULT_LIBRARIES
    python = os.path.join(directory, "bin", "python")
    command = [python, "-I", "-c", probe]
    if not (
        os.path.exists(python)
        and subprocess.run(command, capture_output=True).returncode == 0
    ):
        return None, (
            f"NOT MEASURED: no library environment ({names}) at {directory}; "
            f"create it with `benchmarks/make_lif_env.sh {directory}` (about a "
            f"minute from a package cache, 1.7 GB on disk) and run this again"
        )
    return python, f"measured with {python}"


def library_env(args):
    """The environment of a child in the library environment: ``child_env``
    without this repository on the path or a Keras backend."""
    env = child_env(args)
    env.pop("PYTHONPATH", None)
    env.pop("KERAS_BACKEND", None)
    return env


def child_rows(command, env, timeout):
    """The JSON rows a child process prints, or one row with its error.

    Rows are the lines of its standard output that start with ``{``; with
    none, the row says why (the timeout, or the exit status and the last line
    of its standard error).
    """
    try:
        out = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return [{"error": f"no result within {timeout} s (--timeout)"}]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line[:1] == "{"]
    if rows:
        return rows
    tail = out.stderr.strip().splitlines()[-1:] or [""]
    return [{"error": f"exit status {out.returncode}: {tail[0][:200]}"}]
