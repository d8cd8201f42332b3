"""Time the LIF neurons of snnTorch, SpikingJelly, Norse and Spyx on the
workload of ``bench_lif.py``; run by it with the library environment's python
(``benchmarks/make_lif_env.sh``).

Each library is used as its users write it, on a time-major ``(T, batch, n)``
float32 input of standard normal numbers (the same numbers as the
batch-major input of ``bench_lif.py``), with a decay of 0.9 per step and
each library's other defaults.  snnTorch and Spyx add the input to the
voltage (``v = 0.9 v + x``, threshold 1); SpikingJelly and Norse, like
``keras_spiking.LIF``, add a tenth of it (``v = 0.9 v + 0.1 x``): their
threshold is 0.1 (``THRESHOLD``), so that every implementation sees the same
input relative to its threshold and fires on about a tenth of the steps.

* ``snntorch``: ``snntorch.Leaky(beta=0.9)`` stepped in a Python loop over
  ``x.unbind(0)``, the spikes stacked;
* ``spikingjelly``: ``LIFNode(tau=10.0, v_threshold=0.1, step_mode="m")``
  (multi-step, its PyTorch implementation on a CPU; hard reset to 0),
  ``functional.reset_net`` before each call; with a
  ``layer.Linear(step_mode="m")`` in front for ``dense``;
* ``norse``: ``norse.torch.LIFBoxCell(LIFBoxParameters(v_th=0.1))``
  (``tau_mem_inv = 100 / s``, ``dt = 1 ms``, reset to 0) stepped in a Python
  loop over ``x.unbind(0)``; ``norse-compiled``: the same module through
  ``torch.compile``;
* ``spyx``: ``spyx.nn.LIF((n,), beta=0.9)`` driven by ``spyx.nn.run`` (one
  ``jax.lax.scan``) under ``jax.jit``, the Flax NNX module split into
  parameters and graph as ``spyx.bench`` does; for ``dense`` the
  ``nnx.Linear`` sits inside ``spyx.nn.Sequential``, so it runs inside the
  scan, once per step, as in Spyx's examples.

Configurations: ``dense``, ``Linear(n, n)`` then the neurons, gradients of the
trainable weights; ``alone``, the neurons on the input, gradients of the input
(and of the neurons' trainable parameters: Spyx's ``beta``; the PyTorch
libraries' defaults have none).  Loss: the sum of the output spikes.  The
PyTorch forward runs under ``torch.no_grad()``; each gradient pass starts from
cleared gradients, as ``optimizer.zero_grad()`` leaves them.

Each call measures one library, configuration and T and prints one JSON
object (times in seconds, memory in bytes); ``versions`` prints the versions
of what is installed; ``scan`` times a plain ``jax.lax.scan`` LIF (nothing
but JAX: run it with any python that has JAX, to compare jaxlib builds).

Usage (normally through ``bench_lif.py``)::

    .bench-lif/bin/python benchmarks/_lif_libraries.py time --library spyx \\
        --config dense --steps 100
    .bench-lif/bin/python benchmarks/_lif_libraries.py versions
    .venv/bin/python benchmarks/_lif_libraries.py scan --steps 500
"""

import argparse
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if __name__ == "__main__":  # nothing from this repository but _common
    sys.path[:] = [HERE] + [
        p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(HERE)
    ]
else:  # imported by bench_lif.py for ``measure``
    sys.path.insert(0, HERE)

import _common  # noqa: E402

LIBRARIES = ("snntorch", "spikingjelly", "norse", "norse-compiled", "spyx")
CONFIGS = ("dense", "alone")
BATCH = 16
BETA = 0.9
#: Threshold of the neurons that add ``(1 - BETA) x`` to the voltage.
THRESHOLD = 1 - BETA


def rss_bytes():
    """The resident set size now (bytes)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(row, forward, backward, sync, args, spikes):
    """Fill ``row`` with the median times of ``forward`` and ``backward``
    (``_common.median_times``: wall clock, and CPU time of the process, all
    its threads, with the suffix ``_cpu``),
    the number of gradients (``backward`` returns a list of them), the spike
    rate (``spikes(forward())``: fraction of nonzero outputs) and
    the memory: ``rss_before``, the resident set size after imports and
    set-up, before the first call, and ``maxrss``, the process's peak
    resident set size over its life (imports, compilation and every run;
    ``getrusage``)."""
    row["rss_before"] = rss_bytes()
    start = time.perf_counter()
    out = sync(forward())
    row["first_forward"] = time.perf_counter() - start
    row["spike_rate"] = spikes(out)
    del out
    start = time.perf_counter()
    row["grads"] = len(sync(backward()))
    row["first_backward"] = time.perf_counter() - start
    clocks = (time.perf_counter, time.process_time)
    (row["forward"], row["forward_cpu"]), row["runs"] = _common.median_times(
        forward, sync, args.repeats, args.budget, clocks
    )
    (row["backward"], row["backward_cpu"]), _ = _common.median_times(
        backward, sync, args.repeats, args.budget, clocks
    )
    row["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return row


def _input(args):
    """The standard normal input, time-major ``(T, batch, n)`` float32: the
    transpose of ``bench_lif.py``'s batch-major input."""
    import numpy as np

    x = np.random.default_rng(0).standard_normal((BATCH, args.steps, args.units))
    return np.ascontiguousarray(x.astype("float32").transpose(1, 0, 2))


# ---------------------------------------------------------------- PyTorch ---


def _torch_neurons(library, n):
    """A ``torch.nn.Module`` mapping ``(T, batch, n)`` currents to spikes."""
    import torch

    if library == "snntorch":
        import snntorch

        class Loop(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lif = snntorch.Leaky(beta=BETA)

            def forward(self, x):
                mem = self.lif.init_leaky()
                out = []
                for x_t in x.unbind(0):
                    spk, mem = self.lif(x_t, mem)
                    out.append(spk)
                return torch.stack(out)

        return Loop()
    if library == "spikingjelly":
        from spikingjelly.activation_based import functional, neuron

        class Multi(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lif = neuron.LIFNode(
                    tau=1 / (1 - BETA), v_threshold=THRESHOLD, step_mode="m"
                )

            def forward(self, x):
                functional.reset_net(self)
                return self.lif(x)

        return Multi()
    import norse.torch

    class Cell(torch.nn.Module):
        def __init__(self):
            super().__init__()
            # tau_mem_inv 100 / s and dt 1 ms by default: decay 0.9
            threshold = torch.as_tensor(THRESHOLD)
            self.lif = norse.torch.LIFBoxCell(
                norse.torch.LIFBoxParameters(v_th=threshold)
            )

        def forward(self, x):
            state, out = None, []
            for x_t in x.unbind(0):
                z, state = self.lif(x_t, state)
                out.append(z)
            return torch.stack(out)

    return Cell()


def _torch_row(args, row):
    import torch

    _common.configure_backend("torch", args.threads)
    torch.manual_seed(0)
    x_np = _input(args)
    neurons = _torch_neurons(args.library.replace("-compiled", ""), args.units)
    if args.config == "dense":
        if args.library == "spikingjelly":
            from spikingjelly.activation_based import layer

            linear = layer.Linear(args.units, args.units, step_mode="m")
        else:
            linear = torch.nn.Linear(args.units, args.units)
        model = torch.nn.Sequential(linear, neurons)
    else:
        model = neurons
    if args.library == "norse-compiled":
        model = torch.compile(model)
    x = torch.from_numpy(x_np)
    x_grad = x.clone().requires_grad_(args.config == "alone")

    def forward():
        with torch.no_grad():
            return model(x)

    def backward():
        model.zero_grad(set_to_none=True)
        x_grad.grad = None
        model(x_grad).sum().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        return grads + ([x_grad.grad] if args.config == "alone" else [])

    return measure(
        row,
        forward,
        backward,
        lambda value: value,
        args,
        lambda out: float((out != 0).float().mean()),
    )


# -------------------------------------------------------------------- JAX ---


def _spyx_row(args, row):
    import jax
    import jax.numpy as jnp
    import spyx.nn as snn
    from flax import nnx

    rngs = nnx.Rngs(0)
    lif = snn.LIF((args.units,), beta=BETA, rngs=rngs)
    if args.config == "dense":
        module = snn.Sequential(nnx.Linear(args.units, args.units, rngs=rngs), lif)
    else:
        module = lif
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def spikes(params, x):
        return snn.run(nnx.merge(graphdef, params, rest), x)[0]

    def loss(params, x):
        return jnp.sum(spikes(params, x))

    argnums = (0, 1) if args.config == "alone" else 0
    forward_jit = jax.jit(spikes)
    backward_jit = jax.jit(jax.grad(loss, argnums=argnums))
    x = jnp.asarray(_input(args))
    return measure(
        row,
        lambda: forward_jit(params, x),
        lambda: jax.tree_util.tree_leaves(backward_jit(params, x)),
        jax.block_until_ready,
        args,
        lambda out: float(jnp.mean(out != 0)),
    )


# ------------------------------------------------------------------ tasks ---


def _time(args):
    _common.limit_threads(args.threads, args.pin)
    row = {
        "implementation": args.library,
        "config": args.config,
        "steps": args.steps,
        "units": args.units,
        "batch": BATCH,
    }
    try:
        if args.library == "spyx":
            _spyx_row(args, row)
        else:
            _torch_row(args, row)
    except Exception as exc:  # noqa: BLE001 (reported in the table)
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    print(json.dumps(row), flush=True)


def _versions(args):
    names = ("torch", "snntorch", "spikingjelly", "norse", "spyx", "jax", "jaxlib")
    names += ("flax", "numpy")
    versions = _common.package_versions(names, include_missing=True)
    versions["python"] = sys.version.split()[0]
    print(json.dumps({"versions": versions}), flush=True)


def _scan(args):
    """A plain ``jax.lax.scan`` LIF (``v = 0.9 v + x``, spike where ``v >= 1``,
    subtractive reset, SuperSpike-like surrogate) on the time-major input,
    forward and gradient of the input, under ``jax.jit``."""
    _common.limit_threads(args.threads, args.pin)
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def spike(v):
        return (v >= 0).astype(v.dtype)

    def spike_fwd(v):
        return spike(v), v

    def spike_bwd(v, g):
        return (g / (1 + 25 * jnp.abs(v)) ** 2,)

    spike.defvjp(spike_fwd, spike_bwd)

    def run(x):
        def step(v, x_t):
            v = BETA * v + x_t
            z = spike(v - 1.0)
            return v - z, z

        return jax.lax.scan(step, jnp.zeros(x.shape[1:], x.dtype), x)[1]

    forward = jax.jit(run)
    backward = jax.jit(jax.grad(lambda x: jnp.sum(run(x))))
    x = jnp.asarray(_input(args))
    row = {"implementation": "lax.scan", "steps": args.steps, "units": args.units}
    import jaxlib

    row["jax"], row["jaxlib"] = jax.__version__, jaxlib.__version__
    row["python"] = sys.executable
    measure(
        row,
        lambda: forward(x),
        lambda: [backward(x)],
        jax.block_until_ready,
        args,
        lambda out: float(jnp.mean(out != 0)),
    )
    print(json.dumps(row), flush=True)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("task", choices=["time", "versions", "scan"])
    parser.add_argument("--library", choices=LIBRARIES, default="spyx")
    parser.add_argument("--config", choices=CONFIGS, default="dense")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--units", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--budget", type=float, default=20.0)
    _common.add_options(parser, predecessors=False)
    args = parser.parse_args()
    {"time": _time, "versions": _versions, "scan": _scan}[args.task](args)


if __name__ == "__main__":
    main()
