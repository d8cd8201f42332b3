"""The project's test command: ``python -m tests``.

Runs the whole suite once per Keras backend, each in a process of its own
(Keras chooses its backend when it is imported, so one process cannot test
two), in the active Python environment; then, once, the distributed-training
tests (marked ``distributed``: each runs a script in a subprocess that picks
its own backend and virtual devices, so running them per backend would only
repeat them); then lints with ruff. Exits non-zero if any of them fails.

The per-backend runs exclude the distributed tests (``-m "not
distributed"``, before any pytest arguments, so a ``-m`` of yours wins). The
distributed step runs the tests of the selected backends (``--backend``), and
is skipped with ``--no-distributed`` or when pytest arguments are given.

Examples::

    python -m tests                          # 3 backends, distributed, ruff
    python -m tests --backend jax --no-lint  # one backend (and its distributed tests)
    python -m tests --no-distributed         # skip the multi-device step
    python -m tests -- tests/test_kernels.py -x   # arguments after -- go to pytest
"""

import argparse
import os
import subprocess
import sys

BACKENDS = ("tensorflow", "torch", "jax")


def _run(command, env=None):
    print(f"\n$ {' '.join(command)}", flush=True)
    return subprocess.call(command, env=env)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tests",
        description="Run the test suite under each Keras backend, then ruff.",
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="run only this backend (repeat for several); default: all three",
    )
    parser.add_argument("--no-lint", action="store_true", help="skip ruff")
    parser.add_argument(
        "--no-distributed",
        action="store_true",
        help="skip the distributed-training step (tests/test_distributed.py)",
    )
    parser.add_argument(
        "pytest_args",
        nargs="*",
        help="arguments for pytest (after --); default: tests",
    )
    args = parser.parse_args(argv)

    failures = []
    for backend in args.backend or BACKENDS:
        # the test extra is part of the suite here: a missing optional test
        # dependency fails instead of skipping (tests/harness.py)
        env = dict(os.environ, KERAS_BACKEND=backend, KERAS_SPIKING_REQUIRE_EXTRAS="1")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if backend == "torch":
            # One intra-op thread unless the user says otherwise: with two
            # threads on two cores busy with other work, the walkthrough test
            # took minutes instead of seconds (docs/walkthrough.md).
            env.setdefault("OMP_NUM_THREADS", "1")
        print(f"\n===== KERAS_BACKEND={backend} =====", flush=True)
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "not distributed",
            *(args.pytest_args or ["tests"]),
        ]
        # pytest's exit code 5 (no test collected) is a failure here too
        if _run(command, env) != 0:
            failures.append(f"pytest under {backend}")
    if not (args.no_distributed or args.pytest_args):
        # once, whatever the backend: each test's subprocess picks its own
        env = dict(os.environ, OMP_NUM_THREADS="1")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.setdefault("KERAS_BACKEND", "jax")  # this process only collects
        command = [sys.executable, "-m", "pytest", "-m", "distributed"]
        if args.backend:
            command += ["-k", " or ".join(args.backend)]
        print(
            "\n===== distributed training (each test its own backend) =====", flush=True
        )
        if _run([*command, "tests/test_distributed.py"], env) != 0:
            failures.append("distributed tests")
    if not args.no_lint:
        for command in (["check", "."], ["format", "--check", "."]):
            if _run([sys.executable, "-m", "ruff", *command]) != 0:
                failures.append(f"ruff {command[0]}")

    if failures:
        print(f"\nFAILED: {', '.join(failures)}", flush=True)
        return 1
    print("\nAll backends and lint passed.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
