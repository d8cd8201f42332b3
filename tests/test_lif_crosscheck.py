"""``LIF`` against snnTorch 1.0's ``Leaky`` and Norse 1.1's ``LIFBoxCell``.

The same input and the same ``Linear``/``Dense`` weights feed the other
library's neurons (on PyTorch) and ``keras_spiking.lif.LIF`` (on the suite's
backend): the spikes agree spike for spike, and the gradients of a weighted
sum of the spikes w.r.t. the input and the synaptic weights agree to float32
rounding.  The mappings are the ones ``docs/lif.md`` documents:

* snnTorch ``Leaky(beta, threshold, spike_grad=surrogate.atan(alpha),
  reset_mechanism=...)`` with its default ``reset_delay=True`` is
  ``LIF(tau=-dt / log(beta), threshold, scale_input=False, reset_delay=True,
  detach_reset=True, surrogate=ATan(alpha), reset=...)``: ``mem_t = beta
  mem_{t-1} + x_t`` less the reset of the previous step's spike, which
  snnTorch detaches; its ``atan`` derivative is ``ATan``'s,
  ``(alpha / 2) / (1 + (pi alpha u / 2)^2)``.  With ``reset_delay=False``
  it is ``LIF(..., reset_delay=False, detach_reset=False)`` as long as no
  voltage reaches twice the threshold (``"subtract"``; see ``docs/lif.md``).
* Norse ``LIFBoxCell(LIFBoxParameters(tau_mem_inv, v_th, method="super"),
  dt)`` is ``LIF(tau=1 / tau_mem_inv, threshold=v_th,
  discretization="euler", reset="zero", surrogate=FastSigmoid(slope=1),
  dt=dt)``: ``v_t = v_{t-1} + dt tau_mem_inv (x_t - v_{t-1})``, reset to
  ``v_reset = 0`` in the same step through the (not detached) spike.  Norse
  1.1's ``"super"`` derivative is ``1 / (1 + |u|)^2`` whatever its
  ``alpha`` (the parameter is not used), hence ``slope=1``.

A float64 NumPy replay of these equations (``replay``) gives the other
library's spikes too, and keeps every case at least ``MARGIN`` away from the
threshold: both libraries fire on ``v > threshold``, ``LIF`` on
``v >= threshold``, and float32 arithmetic in another order moves a voltage
by rounding errors; with the margin neither decides a spike.
"""

import math

import numpy as np
import pytest
from keras import ops

from keras_spiking.lif import LIF
from keras_spiking.surrogates import ATan, FastSigmoid
from tests.harness import gradients, optional_import, run_jit

BATCH, STEPS, INPUTS, UNITS = 4, 50, 8, 32
DT = 0.001
MARGIN = 1e-5
RTOL, ATOL = 1e-4, 1e-5


# -------------------------------------------------------------- helpers ---


def linear_weights(seed, scale, offset):
    """``Linear`` weights ``(UNITS, INPUTS)`` and bias, float32."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(0, scale / math.sqrt(INPUTS), (UNITS, INPUTS))
    bias = rng.normal(offset, 0.5 * scale, UNITS)
    return weight.astype("float32"), bias.astype("float32")


def case_inputs(seed):
    """Input ``(BATCH, STEPS, INPUTS)`` and the weights of the spike sum."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (BATCH, STEPS, INPUTS)).astype("float32")
    upstream = rng.uniform(0.5, 1.5, (BATCH, STEPS, UNITS)).astype("float32")
    return x, upstream


def replay(x, weight, bias, a, g, threshold, reset, reset_delay):
    """Spike counts and voltages before the reset, in float64, of
    ``v'_t = a v_{t-1} + g (x_t W^T + b)`` with the reset of ``docs/lif.md``
    (in the same step, or at the next step with ``reset_delay``)."""
    drive = np.asarray(x, np.float64) @ np.asarray(weight, np.float64).T + bias
    v = np.zeros((BATCH, UNITS))
    z = np.zeros((BATCH, UNITS))
    counts, voltages = np.zeros_like(drive), np.zeros_like(drive)
    for t in range(STEPS):
        if reset_delay and reset == "subtract":
            v = a * v + g * drive[:, t] - threshold * z
        elif reset_delay:  # zero
            v = a * (1 - z) * v + g * drive[:, t]
        else:
            v = a * v + g * drive[:, t]
        z = (v >= threshold).astype(np.float64)
        counts[:, t], voltages[:, t] = z, v
        if not reset_delay:
            v = v - threshold * z if reset == "subtract" else v * (1 - z)
    return counts, voltages


def check_margin(voltages, threshold):
    """No voltage within ``MARGIN`` of the threshold (module docstring)."""
    closest = np.abs(voltages - threshold).min()
    assert closest > MARGIN, f"test case too close to the threshold ({closest})"


def torch_run(neuron_step, weight, bias, x, upstream):
    """Spike counts of ``neuron_step(drive_t, state) -> (spikes, state)``
    (one step of the other library's neurons) fed by ``Linear(weight,
    bias)``, and the gradients of ``sum(upstream * counts)`` w.r.t. ``x``,
    the kernel (``weight.T``, as ``Dense`` holds it) and the bias; NumPy."""
    torch = optional_import("torch", "The LIF cross-checks")
    linear = torch.nn.Linear(INPUTS, UNITS)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
        linear.bias.copy_(torch.from_numpy(bias))
    inputs = torch.tensor(x, requires_grad=True)
    spikes, state = [], None
    for drive_t in linear(inputs).unbind(1):
        spike, state = neuron_step(drive_t, state)
        spikes.append(spike)
    counts = torch.stack(spikes, dim=1)
    (counts * torch.from_numpy(upstream)).sum().backward()
    return {
        "counts": counts.detach().numpy(),
        "x": inputs.grad.numpy(),
        "kernel": linear.weight.grad.numpy().T,
        "bias": linear.bias.grad.numpy(),
    }


def keras_run(layer, weight, bias, x, upstream):
    """The same for ``Dense(weight.T, bias)`` feeding the built ``layer``
    (its spike counts are its output times ``DT``), by the backend's
    autodiff."""
    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    kernel = np.ascontiguousarray(weight.T)

    def counts_of(x, kernel, bias):
        drive = ops.matmul(x, kernel) + bias
        y, _ = layer.stateless_call(trainable, non_trainable, drive)
        return y * DT

    def loss(x, kernel, bias):
        return ops.sum(counts_of(x, kernel, bias) * ops.convert_to_tensor(upstream))

    counts = run_jit(counts_of, x, kernel, bias)
    _, (dx, dkernel, dbias) = gradients(loss, x, kernel, bias, jit=True)
    return {"counts": counts, "x": dx, "kernel": dkernel, "bias": dbias}


def compare(ours, theirs, expected_counts):
    """Spike for spike (the replay's spikes too), then the gradients."""
    counts = theirs["counts"]
    assert 0.05 < counts.mean() < 0.6, counts.mean()  # a meaningful case
    np.testing.assert_array_equal(counts, expected_counts)
    np.testing.assert_allclose(ours["counts"], counts, rtol=0, atol=1e-5)
    for name in ("x", "kernel", "bias"):
        assert np.abs(theirs[name]).max() > 0, name
        np.testing.assert_allclose(
            ours[name], theirs[name], rtol=RTOL, atol=ATOL, err_msg=name
        )


# ------------------------------------------------------------- snnTorch ---


@pytest.mark.parametrize("reset_delay", [True, False])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_snntorch_leaky(reset, reset_delay):
    """snnTorch ``Leaky`` (per-neuron ``beta``, ``atan`` surrogate) equals
    ``LIF(scale_input=False)`` with ``tau = -dt / log(beta)``, the same
    ``reset_delay`` and ``detach_reset=reset_delay`` (snnTorch detaches the
    delayed reset, not the reset in the same step)."""
    torch = optional_import("torch", "The snnTorch cross-check")
    snntorch = optional_import("snntorch", "The snnTorch cross-check")
    rng = np.random.default_rng(2)
    beta = rng.uniform(0.8, 0.95, UNITS).astype("float32")
    threshold = 0.8
    alpha = 2.0
    weight, bias = linear_weights(3, scale=0.3, offset=0.1)
    x, upstream = case_inputs(4)

    expected, voltages = replay(
        x, weight, bias, beta.astype(np.float64), 1.0, threshold, reset, reset_delay
    )
    check_margin(voltages, threshold)
    if not reset_delay and reset == "subtract":
        # where the mapping holds (docs/lif.md): below twice the threshold
        assert voltages.max() < 2 * threshold

    leaky = snntorch.Leaky(
        beta=torch.from_numpy(beta),
        threshold=threshold,
        spike_grad=snntorch.surrogate.atan(alpha=alpha),
        reset_mechanism=reset,
        reset_delay=reset_delay,
    )
    theirs = torch_run(leaky, weight, bias, x, upstream)

    layer = LIF(
        tau=0.01,  # per neuron below
        threshold=threshold,
        reset=reset,
        scale_input=False,
        reset_delay=reset_delay,
        detach_reset=reset_delay,
        surrogate=ATan(alpha=alpha),
        dt=DT,
    )
    layer.build((None, None, UNITS))
    layer.tau.assign(-DT / np.log(beta.astype(np.float64)))
    compare(keras_run(layer, weight, bias, x, upstream), theirs, expected)


# ---------------------------------------------------------------- Norse ---


def test_norse_lif_box():
    """Norse ``LIFBoxCell`` (per-neuron ``tau_mem_inv``, forward Euler,
    reset to zero, ``"super"`` surrogate) equals ``LIF(tau=1 / tau_mem_inv,
    discretization="euler", reset="zero", surrogate=FastSigmoid(slope=1))``
    at the same ``dt``."""
    torch = optional_import("torch", "The Norse cross-check")
    norse = optional_import("norse.torch", "The Norse cross-check")
    rng = np.random.default_rng(4)
    tau_mem_inv = rng.uniform(50.0, 200.0, UNITS).astype("float32")
    threshold = 1.0
    weight, bias = linear_weights(5, scale=2.0, offset=1.5)
    x, upstream = case_inputs(6)

    rate = DT * tau_mem_inv.astype(np.float64)
    expected, voltages = replay(
        x, weight, bias, 1 - rate, rate, threshold, "zero", reset_delay=False
    )
    check_margin(voltages, threshold)

    # alpha is Norse's default; its "super" derivative does not use it
    cell = norse.LIFBoxCell(
        norse.LIFBoxParameters(
            tau_mem_inv=torch.from_numpy(tau_mem_inv),
            v_th=torch.as_tensor(threshold),
            method="super",
            alpha=torch.as_tensor(100.0),
        ),
        dt=DT,
    )
    theirs = torch_run(cell, weight, bias, x, upstream)

    layer = LIF(
        tau=0.01,  # per neuron below
        threshold=threshold,
        reset="zero",
        discretization="euler",
        surrogate=FastSigmoid(slope=1.0),
        dt=DT,
    )
    layer.build((None, None, UNITS))
    layer.tau.assign(1.0 / tau_mem_inv.astype(np.float64))
    compare(keras_run(layer, weight, bias, x, upstream), theirs, expected)
