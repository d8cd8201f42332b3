"""The library side of ``bench_sequential.py``: one training run of the
sequential Fashion-MNIST model written with snnTorch 1.0 or Spyx 1.0, run
with the library environment's python (``benchmarks/make_lif_env.sh``).

The model is the one of ``examples/sequential_fashion_mnist.py`` (feed-forward
variant): each 28 x 28 image is read one row per time step (28 steps),
``Linear(28, H)`` -> LIF neurons (decay ``exp(-1/20)`` per step: tau = 20 ms
at 1 ms steps; subtractive reset at threshold 1; arctangent surrogate) ->
``Linear(H, 10)`` at every step, averaged over the 28 steps into the logits;
cross-entropy, Adam with learning rate 5e-3, batch 64, the training images
shuffled each epoch.  Each library is written as its users write it:

* ``snntorch``: ``torch.nn.Linear`` -> ``snntorch.Leaky(beta, spike_grad=
  snntorch.surrogate.atan())`` -> ``torch.nn.Linear`` stepped in a Python
  loop over the 28 rows (``x[:, step]``), the readouts stacked and averaged;
  a ``torch.utils.data.DataLoader`` over a ``TensorDataset``
  (``shuffle=True``), ``torch.optim.Adam``,
  ``torch.nn.functional.cross_entropy``; eager PyTorch;
* ``spyx``: ``spyx.nn.Sequential(flax.nnx.Linear, spyx.nn.LIF(beta,
  activation=spyx.axn.arctan()), flax.nnx.Linear)`` driven over time by
  ``spyx.nn.run`` (one ``jax.lax.scan``; both ``Linear`` layers inside it,
  once per step), the module split into parameters and graph
  (``flax.nnx.split``), ``optax.adam``, and the whole training step (forward,
  gradient, Adam update) under one ``jax.jit``; batches sliced from the
  shuffled NumPy arrays;
* ``spyx-fit``: the same module trained by Spyx's own loop,
  ``spyx.optimize.fit`` (``flax.nnx.Optimizer``, a step under ``nnx.jit``).

Spyx 1.0 is built on Flax NNX; the Haiku API of Spyx 0.x
(``hk.dynamic_unroll``) is gone.  Spyx's LIF spikes on the membrane
potential of the previous step (``spike(V - threshold)`` before the
update), snnTorch's on the updated one: the same work per step.

The data (``load_data``) is the embedded 6,000-image training subset of
``examples/data/fashion_mnist_small.npz`` or the four Fashion-MNIST ``.gz``
files of a folder; ``bench_sequential.py`` reads it with the same function.

Each ``time`` call trains one model for ``--epochs`` epochs (the first a
warm-up that includes tracing and compilation) and prints one JSON object:
seconds of wall clock and of CPU time of the process per epoch, and the
training accuracy of each epoch.

Usage (normally through ``bench_sequential.py``)::

    .bench-lif/bin/python benchmarks/_sequential_libraries.py time \\
        --library spyx --hidden 32 --epochs 4
    .bench-lif/bin/python benchmarks/_sequential_libraries.py versions
"""

import argparse
import gzip
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if __name__ == "__main__":  # nothing from this repository but _common
    sys.path[:] = [HERE] + [
        p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(HERE)
    ]
else:  # imported by bench_sequential.py for ``load_data``
    sys.path.insert(0, HERE)

import _common  # noqa: E402

LIBRARIES = ("snntorch", "spyx", "spyx-fit")
#: The embedded training subset (6,000 images).
SMALL_DATA = os.path.join(
    os.path.dirname(HERE), "examples", "data", "fashion_mnist_small.npz"
)
N_STEPS, N_PIXELS, N_CLASSES = 28, 28, 10
BATCH = 64
LEARNING_RATE = 5e-3
#: Membrane decay per step: tau = 20 ms at dt = 1 ms.
BETA = math.exp(-1 / 20)


def load_data(folder=None, limit=None):
    """The training images ``(n, 28, 28)`` float32 in [0, 1] and labels
    ``(n,)`` int32: the embedded subset, or (``folder``) the full training set
    from ``train-images-idx3-ubyte.gz`` and ``train-labels-idx1-ubyte.gz``
    there; the first ``limit`` only if given."""
    import numpy as np

    if folder is None:
        with np.load(SMALL_DATA) as data:
            x, y = data["x_train"], data["y_train"]
    else:
        paths = [
            os.path.join(folder, f"train-{what}-idx{dims}-ubyte.gz")
            for what, dims in (("images", 3), ("labels", 1))
        ]
        missing = [os.path.basename(p) for p in paths if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(
                f"Fashion-MNIST training file(s) {', '.join(missing)} not in "
                f"--data-dir {folder}"
            )
        with gzip.open(paths[0], "rb") as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(paths[1], "rb") as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x.astype("float32") / 255, y.astype("int32")


class EpochClock:
    """Wall-clock and process CPU seconds of each epoch."""

    def __init__(self):
        self.wall, self.cpu = [], []
        self._start = None

    def start(self):
        self._start = time.perf_counter(), time.process_time()

    def stop(self):
        wall, cpu = self._start
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(time.process_time() - cpu)


# ---------------------------------------------------------------- snnTorch --


def _snntorch_run(args, x_np, y_np, clock):
    import snntorch
    import torch
    from snntorch import surrogate

    _common.configure_backend("torch", args.threads)
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self, hidden):
            super().__init__()
            self.fc1 = torch.nn.Linear(N_PIXELS, hidden)
            self.lif1 = snntorch.Leaky(beta=BETA, spike_grad=surrogate.atan())
            self.fc2 = torch.nn.Linear(hidden, N_CLASSES)

        def forward(self, x):
            mem1 = self.lif1.init_leaky()
            out = []
            for step in range(x.shape[1]):  # one image row per step
                spk1, mem1 = self.lif1(self.fc1(x[:, step]), mem1)
                out.append(self.fc2(spk1))
            return torch.stack(out).mean(0)

    net = Net(args.hidden)
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    dataset = torch.utils.data.TensorDataset(
        torch.from_numpy(x_np), torch.from_numpy(y_np).long()
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True)
    accuracy = []
    for _ in range(args.epochs):
        clock.start()
        net.train()
        correct = 0
        for x, y in loader:
            logits = net(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            correct += (logits.argmax(1) == y).sum().item()
        clock.stop()
        accuracy.append(correct / len(dataset))
    return accuracy


# -------------------------------------------------------------------- Spyx --


def _spyx_model(hidden):
    import spyx.axn
    import spyx.nn as snn
    from flax import nnx

    rngs = nnx.Rngs(0)
    return snn.Sequential(
        nnx.Linear(N_PIXELS, hidden, rngs=rngs),
        snn.LIF((hidden,), beta=BETA, activation=spyx.axn.arctan(), rngs=rngs),
        nnx.Linear(hidden, N_CLASSES, rngs=rngs),
    )


def _logits(model, x):
    """Readout of every step (batch-major rows in), averaged over time."""
    import spyx.nn as snn

    return snn.run(model, x, batch_major=True)[0].mean(axis=1)


def _batches(x_np, y_np, rng):
    order = rng.permutation(len(x_np))
    for start in range(0, len(order), BATCH):
        index = order[start : start + BATCH]
        yield x_np[index], y_np[index]


def _spyx_run(args, x_np, y_np, clock):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    graphdef, params, rest = nnx.split(_spyx_model(args.hidden), nnx.Param, ...)
    tx = optax.adam(LEARNING_RATE)
    opt_state = tx.init(params)

    def loss_fn(params, x, y):
        logits = _logits(nnx.merge(graphdef, params, rest), x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, logits

    @jax.jit
    def train_step(params, opt_state, x, y):
        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, loss, jnp.sum(jnp.argmax(logits, -1) == y)

    rng = np.random.default_rng(0)
    accuracy = []
    for _ in range(args.epochs):
        clock.start()
        correct = []
        for x, y in _batches(x_np, y_np, rng):
            params, opt_state, loss, right = train_step(params, opt_state, x, y)
            correct.append(right)
        total = int(sum(jax.block_until_ready(correct)))
        clock.stop()
        accuracy.append(total / len(x_np))
    return accuracy


def _spyx_fit_run(args, x_np, y_np, clock):
    import numpy as np
    import optax
    import spyx.optimize

    model = _spyx_model(args.hidden)

    def loss_fn(model, x, y):
        logits = _logits(model, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def accuracy_fn(model, x, y):
        logits = _logits(model, x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return (logits.argmax(-1) == y).mean(), loss

    rng = np.random.default_rng(0)

    def on_epoch_end(epoch, metrics):  # train_loss is a float: synchronised
        clock.stop()
        clock.start()

    clock.start()
    spyx.optimize.fit(
        model,
        optax.adam(LEARNING_RATE),
        loss_fn,
        lambda: _batches(x_np, y_np, rng),
        epochs=args.epochs,
        on_epoch_end=on_epoch_end,
    )
    # the training accuracy after the last epoch (fit reports the loss only)
    step = spyx.optimize.make_eval_step(accuracy_fn)
    batches = _batches(x_np, y_np, rng)
    right = sum(float(step(model, x, y)[0]) * len(x) for x, y in batches)
    return [None] * (args.epochs - 1) + [right / len(x_np)]


# ------------------------------------------------------------------ tasks ---


def _time(args):
    _common.limit_threads(args.threads, args.pin)
    row = {"implementation": args.library, "hidden": args.hidden, "batch": BATCH}
    try:
        x, y = load_data(args.data_dir, args.limit)
        row["images"] = len(x)
        clock = EpochClock()
        run = {"snntorch": _snntorch_run, "spyx": _spyx_run}
        run = run.get(args.library, _spyx_fit_run)
        row["accuracy"] = run(args, x, y, clock)
        row["epoch_wall"], row["epoch_cpu"] = clock.wall, clock.cpu
    except Exception as exc:  # noqa: BLE001 (reported in the table)
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    print(json.dumps(row), flush=True)


def _versions(args):
    names = ("torch", "snntorch", "spyx", "jax", "jaxlib", "flax", "optax")
    versions = _common.package_versions(names, include_missing=True)
    versions["python"] = sys.version.split()[0]
    print(json.dumps({"versions": versions}), flush=True)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("task", choices=["time", "versions"])
    parser.add_argument("--library", choices=LIBRARIES, default="spyx")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--limit", type=int, default=None)
    _common.add_options(parser, predecessors=False)
    args = parser.parse_args()
    {"time": _time, "versions": _versions}[args.task](args)


if __name__ == "__main__":
    main()
