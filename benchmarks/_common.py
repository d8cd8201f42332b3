"""Setup shared by the benchmark scripts: one process, a fixed number of cores."""

import os


def limit_threads(threads):
    """Pin this process to ``threads`` cores and tell every library so.

    Call before importing any framework: the thread pools read these
    variables when they start.
    """
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    flags = f"intra_op_parallelism_threads={threads}"
    if threads == 1:
        flags = "--xla_cpu_multi_thread_eigen=false " + flags
    os.environ["XLA_FLAGS"] = flags
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def configure_backend(backend, threads):
    """Set the thread pools of ``backend`` (the running Keras backend)."""
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
