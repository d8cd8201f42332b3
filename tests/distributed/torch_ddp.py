"""PyTorch ``DistributedDataParallel`` (gloo) with two CPU processes.

Usage: ``python -m tests.distributed.torch_ddp [lif] [abort-training |
abort-teardown]`` (the aborts: tests of the failure handling, below).  As in
the Keras guide "Multi-GPU distributed training with PyTorch": each process
builds the Keras model (a ``torch.nn.Module`` on this backend), wraps it in
``DistributedDataParallel``, reads its share of each batch through a
``DistributedSampler`` (no shuffling) and runs a plain torch training loop
(``torch.optim.SGD`` over ``model.parameters()``), adding the model's
activity-regularisation losses (``model.losses``) and setting ``dt`` by hand
each step (``DtScheduler`` is a ``fit`` callback).  The parent process then
trains single-device on the same batches and compares the weights of both
ranks with it.

The single-device reference runs each rank's share as a batch of its own
and averages the gradients (what DDP computes): a rank sees batch indices
``0 .. share - 1``, so a seeded ``SpikingActivation`` starts its examples
from those indices' voltages (see the note of issue 14).

The ranks meet at a barrier after training and again after saving their
weights, so that none shuts its gloo connections down (or rank 0 the store
it hosts) while another still uses them.  A rank that dies by a signal after
every rank has saved can only have died in torch's own teardown
(``destroy_process_group`` and the interpreter's exit): the weights are
compared as usual and the RESULT line names the signal, which the test
reports as a warning.  Any other failure fails the script.
"""

import faulthandler
import os
import socket
import sys
import tempfile

os.environ["KERAS_BACKEND"] = "torch"
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

WORLD = 2
ABORT = "KERAS_SPIKING_TEST_ABORT"  # "training" or "teardown": rank 0 aborts there


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup():
    """Model, optimiser and dt, identical in every process."""
    torch.set_num_threads(1)
    from tests.distributed import common

    model, dt = common.make_model()
    model.build((None, common.STEPS, common.FEATURES))
    optimizer = torch.optim.SGD(model.parameters(), lr=common.LEARNING_RATE)
    return common, model, dt, optimizer


def step_loss(model, x, y):
    """Mean cross-entropy of one (local) batch plus the regularisation."""
    logits = model(torch.as_tensor(x), training=True)
    loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(y))
    module = getattr(model, "module", model)
    return loss + sum(module.losses)


def worker(rank, port, folder):
    faulthandler.enable()  # a fatal signal prints every thread's Python stack
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    common, model, dt, optimizer = setup()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    x, y = common.data()
    dataset = torch.utils.data.TensorDataset(torch.as_tensor(x), torch.as_tensor(y))
    sampler = torch.utils.data.distributed.DistributedSampler(
        dataset, num_replicas=WORLD, rank=rank, shuffle=False
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=common.GLOBAL_BATCH // WORLD, sampler=sampler
    )
    for step, (xb, yb) in enumerate(loader):
        dt.assign(common.dt_schedule(step))
        optimizer.zero_grad()
        step_loss(ddp, xb, yb).backward()
        optimizer.step()
    if rank == 0 and os.environ.get(ABORT) == "training":
        os.abort()  # the test of a crash before the weights are saved
    dist.barrier()  # every rank has trained
    path = os.path.join(folder, f"rank{rank}.npz")
    np.savez(path + ".part.npz", **common.trainable(model))
    os.replace(path + ".part.npz", path)  # a file that exists is complete
    dist.barrier()  # every rank has saved
    dist.destroy_process_group()
    if rank == 0 and os.environ.get(ABORT) == "teardown":
        os.abort()  # the test of a crash in the teardown


def reference(common, split):
    """Single-process training on the global batches; with ``split``, each
    rank's share (a ``DistributedSampler``'s: every ``WORLD``-th example) as
    a batch of its own, gradients averaged."""
    _, model, dt, optimizer = setup()
    x, y = common.data()
    for step in range(common.BATCHES):
        dt.assign(common.dt_schedule(step))
        optimizer.zero_grad()
        xs = x[step * common.GLOBAL_BATCH : (step + 1) * common.GLOBAL_BATCH]
        ys = y[step * common.GLOBAL_BATCH : (step + 1) * common.GLOBAL_BATCH]
        if split:
            for rank in range(WORLD):
                (step_loss(model, xs[rank::WORLD], ys[rank::WORLD]) / WORLD).backward()
        else:
            step_loss(model, xs, ys).backward()
        optimizer.step()
    return common.trainable(model)


def main():
    teardown = None
    with tempfile.TemporaryDirectory() as folder:
        paths = [os.path.join(folder, f"rank{r}.npz") for r in range(WORLD)]
        try:
            mp.spawn(worker, args=(free_port(), folder), nprocs=WORLD, join=True)
        except mp.ProcessExitedException as error:
            if error.signal_name is None or not all(map(os.path.exists, paths)):
                raise
            teardown = f"rank {error.error_index} died by {error.signal_name}"
            print(f"after every rank saved its weights, {teardown}", flush=True)
        ranks = [dict(np.load(path)) for path in paths]
    from tests.distributed import common

    want = reference(common, split=True)
    worst = max(
        common.compare(got, want, f"DDP rank {r}") for r, got in enumerate(ranks)
    )
    moved = common.check_moved(want, common.initial_weights())
    common.report(
        engine="torch ddp",
        moved=moved,
        processes=WORLD,
        teardown=teardown,
        worst_relative=worst,
        worst_relative_to_global_batch_training=common.deviation(
            ranks[0], reference(common, split=False)
        ),
    )


if __name__ == "__main__":
    # ``lif``: the model of ``common`` with a LIF layer (an environment
    # variable, so that the spawned processes build it too)
    if "lif" in sys.argv[1:]:
        os.environ["KERAS_SPIKING_TEST_NEURON"] = "lif"
    # ``abort-training`` / ``abort-teardown``: rank 0 calls ``os.abort()``
    for where in ("training", "teardown"):
        if f"abort-{where}" in sys.argv[1:]:
            os.environ[ABORT] = where
    sys.exit(main())
