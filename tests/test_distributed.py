"""Training on several devices with the frameworks' own engines.

Each test runs a script of ``tests/distributed`` in a subprocess of its own
(the script chooses its Keras backend and its virtual devices before Keras
is imported): the small spiking-aware model of ``tests/distributed/common.py``
(``Dense -> SpikingActivation(seed) -> Lowpass -> TemporalAvgPool`` with a
rate regulariser ``-> Dense``, ``dt`` a variable changed every step) trains a
few SGD steps on fixed batches, distributed and single-device, and the
script fails unless the weights agree to float32 tolerance.

The ``lif`` variants replace the spiking and filter layers with a recurrent
``keras_spiking.LIF`` (surrogate gradients through time, trained time
constants and threshold).

These tests are marked ``distributed``: ``python -m tests`` runs them once,
in a step of their own, and excludes them from the per-backend runs.

Seeded initial voltages are a function of the example's place in the global
batch: JAX's ``keras.distribution`` sees the global batch, and under
``MirroredStrategy`` a replica numbers its examples from its slice's place,
so both equal plain single-device training.  Under
``DistributedDataParallel`` each process numbers its share from 0 (its
place in a global batch depends on the sampler), so the reference trains
each process's share as a batch of its own and averages the gradients.
"""

import json
import os
import pathlib
import subprocess
import sys
import warnings

import pytest

pytestmark = pytest.mark.distributed

ROOT = pathlib.Path(__file__).parent.parent
TIMEOUT = 240


class KnownFailure(Exception):
    """A script failed with the message of a known finding."""


def run_script(module, *args, known=None):
    """Run ``python -m tests.distributed.<module> args``; the parsed RESULT
    line, or a failure with the script's output (``KnownFailure`` if the
    output contains ``known``)."""
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-m", f"tests.distributed.{module}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0 and known is not None and known in output:
        raise KnownFailure(known)
    assert done.returncode == 0, f"{module} {args} failed:\n{output[-6000:]}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"{module} {args} printed no RESULT:\n{output[-6000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.parametrize("devices", [2, 4])
def test_jax_data_parallel(devices):
    result = run_script("jax_distribution", "data", str(devices))
    assert result["kernel_devices"] == devices  # replicated on every device


def test_jax_data_parallel_stateful():
    """Stateful layers built for the global batch: states as single-device."""
    result = run_script("jax_distribution", "data", "4", "stateful")
    assert result["stateful"]


def test_jax_model_parallel():
    result = run_script("jax_distribution", "model", "4")
    assert result["kernel_spec"] == "P(None, 'model')"  # sharded, not replicated


@pytest.mark.parametrize("stateful", [False, True], ids=["stateless", "stateful"])
def test_tensorflow_mirrored(stateful):
    result = run_script("tf_mirrored", *(["stateful"] if stateful else []))
    assert result["replicas"] == 2


def test_tensorflow_mirrored_stateful_global_batch_is_a_clear_error():
    """A stateful layer built for the global batch: each replica sees half of
    it, and the layer says so (build it with the per-replica batch)."""
    with pytest.raises(KnownFailure):
        run_script(
            "tf_mirrored", "stateful", "global-batch", known="per-replica batch size"
        )


def test_tensorflow_mirrored_dt_in_scope():
    """A ``dt`` variable created inside ``strategy.scope()`` (a
    ``MirroredVariable``) works like one created outside."""
    result = run_script("tf_mirrored", "dt-in-scope")
    assert result["replicas"] == 2


def check_torch_ddp(*args):
    result = run_script("torch_ddp", *args)
    assert result["processes"] == 2
    if result["teardown"]:
        # the weights agreed; a rank died in torch's teardown (see torch_ddp.py)
        warnings.warn(f"torch_ddp {args}: {result['teardown']}", stacklevel=2)


def test_torch_distributed_data_parallel():
    check_torch_ddp()


def test_torch_distributed_data_parallel_crash_in_teardown_is_reported():
    """A rank killed after every rank saved its weights: the weights are
    still compared, and the RESULT names the signal."""
    result = run_script("torch_ddp", "abort-teardown")
    assert result["teardown"] == "rank 0 died by SIGABRT"


def test_torch_distributed_data_parallel_crash_in_training_fails():
    with pytest.raises(KnownFailure):
        run_script("torch_ddp", "abort-training", known="ProcessExitedException")


# ------------------------------------------------------------------ LIF ---


@pytest.mark.parametrize("stateful", [False, True], ids=["stateless", "stateful"])
def test_jax_data_parallel_lif(stateful):
    result = run_script(
        "jax_distribution", "data", "4", *(["stateful"] if stateful else []), "lif"
    )
    assert result["kernel_devices"] == 4 and result["stateful"] == stateful


def test_jax_model_parallel_lif():
    result = run_script("jax_distribution", "model", "4", "lif")
    assert result["kernel_spec"] == "P(None, 'model')"


@pytest.mark.parametrize("stateful", [False, True], ids=["stateless", "stateful"])
def test_tensorflow_mirrored_lif(stateful):
    result = run_script("tf_mirrored", *(["stateful"] if stateful else []), "lif")
    assert result["replicas"] == 2


def test_torch_distributed_data_parallel_lif():
    check_torch_ddp("lif")
