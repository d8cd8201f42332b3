"""The LIF options (``discretization``, ``scale_input``, ``reset_delay``), the
initial and final voltage's gradients, and the membrane kernel against the
general loop: all against a float64 NumPy reference of the equations,
forward and backward through time (``keras_spiking.kernels.lif``)."""

import itertools

import numpy as np
import pytest
from keras import ops

from keras_spiking.kernels import lif as lif_kernels
from keras_spiking.lif import LIF, CubaLIF
from tests.harness import gradients
from tests.test_surrogates import DEFAULT_DERIVATIVES

DT = 0.001


def decay_and_gain(tau, discretization, scale_input):
    """``(a, g, da/dtau, dg/dtau)`` in float64."""
    tau = np.asarray(tau, np.float64)
    if discretization == "euler":
        a, g = 1 - DT / tau, DT / tau
        da, dg = DT / tau**2, -DT / tau**2
    else:
        a = np.exp(-DT / tau)
        g = 1 - a
        da = a * DT / tau**2
        dg = -da
    if not scale_input:
        g, dg = np.ones_like(g), np.zeros_like(g)
    return a, g, da, dg


def reference(x, tau, theta, v0, *, reset, delay, discretization, scale_input):
    """LIF in float64: spike counts, final voltage and the per-step trace."""
    a, g, _, _ = decay_and_gain(tau, discretization, scale_input)
    v = np.array(v0, np.float64)
    counts = np.zeros(x.shape)
    trace = []
    for t in range(x.shape[1]):
        v_previous = v
        if delay:
            r = (v >= theta).astype(np.float64)
            if reset == "subtract":
                pre = a * v - theta * r
            elif reset == "zero":
                pre = a * v * (1 - r)
            else:
                pre = a * v
            vp = pre + g * x[:, t]
            z = (vp >= theta).astype(np.float64)
            v = vp
        else:
            r = None
            vp = a * v + g * x[:, t]
            z = (vp >= theta).astype(np.float64)
            v = {"subtract": vp - theta * z, "zero": vp * (1 - z), "none": vp}[reset]
        counts[:, t] = z
        trace.append({"v_previous": v_previous, "r": r, "vp": vp, "z": z})
    return counts, v, trace


def reference_gradients(
    x, tau, theta, trace, up, up_v, derivative, *, reset, delay, detach, **options
):
    """The adjoint of ``reference`` for ``L = sum(up * counts) + sum(up_v *
    v_final)``: gradients w.r.t. ``x``, ``tau``, ``theta`` and ``v0``."""
    a, g, da_dtau, dg_dtau = decay_and_gain(tau, **options)
    d_x = np.zeros(x.shape)
    d_a = d_g = d_theta = 0.0
    lam = np.array(up_v, np.float64)  # dL / d(state after step t)
    for t in range(x.shape[1] - 1, -1, -1):
        s = trace[t]
        vp, z, v_prev = s["vp"], s["z"], s["v_previous"]
        sz = derivative(vp - theta)
        if delay:
            lam_vp = lam + up[:, t] * sz
            d_theta = d_theta - np.sum(up[:, t] * sz, 0)
        else:
            # v = R(vp, z)
            if reset == "subtract":
                lam_z = up[:, t] + (0 if detach else -theta * lam)
                lam_vp = lam + lam_z * sz
                d_theta = d_theta - np.sum(z * lam + lam_z * sz, 0)
            elif reset == "zero":
                lam_z = up[:, t] + (0 if detach else -vp * lam)
                lam_vp = (1 - z) * lam + lam_z * sz
                d_theta = d_theta - np.sum(lam_z * sz, 0)
            else:
                lam_vp = lam + up[:, t] * sz
                d_theta = d_theta - np.sum(up[:, t] * sz, 0)
        # vp = pre + g x_t
        d_x[:, t] = g * lam_vp
        d_g = d_g + np.sum(lam_vp * x[:, t], 0)
        if delay:
            r = s["r"]
            sr = 0 if detach else derivative(v_prev - theta)
            if reset == "subtract":  # pre = a v - theta r
                d_a = d_a + np.sum(lam_vp * v_prev, 0)
                d_theta = d_theta + np.sum(lam_vp * (-r + theta * sr), 0)
                lam = lam_vp * (a - theta * sr)
            elif reset == "zero":  # pre = a v (1 - r)
                d_a = d_a + np.sum(lam_vp * v_prev * (1 - r), 0)
                d_theta = d_theta + np.sum(lam_vp * a * v_prev * sr, 0)
                lam = lam_vp * (a * (1 - r) - a * v_prev * sr)
            else:
                d_a = d_a + np.sum(lam_vp * v_prev, 0)
                lam = lam_vp * a
        else:
            d_a = d_a + np.sum(lam_vp * v_prev, 0)
            lam = lam_vp * a
    return {
        "x": d_x,
        "tau": d_a * da_dtau + d_g * dg_dtau,
        "threshold": d_theta,
        "v0": lam,
    }


def make_case(seed, steps=25, units=5, batch=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 1.6, (batch, steps, units)).astype("float32")
    tau = rng.uniform(0.003, 0.012, units).astype("float32")
    theta = rng.uniform(0.5, 1.0, units).astype("float32")
    v0 = rng.uniform(-0.5, 1.4, (batch, units)).astype("float32")
    return x, tau, theta, v0


def build(tau, theta, shape, **kwargs):
    layer = LIF(dt=DT, return_state=True, trainable_threshold=True, **kwargs)
    layer.build(shape)
    layer.tau.assign(tau)
    layer.threshold.assign(theta)
    return layer


def run_with_gradients(layer, x, v0, up, up_v):
    """Outputs and gradients of ``sum(up * y dt) + sum(up_v * v)``."""
    names = [v.path.split("/")[-1] for v in layer.trainable_variables]
    weights = [ops.convert_to_numpy(v) for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    up, up_v = (ops.convert_to_tensor(np.asarray(u, "float32")) for u in (up, up_v))

    def fn(x, v0, *weights):
        (y, v), _ = layer.stateless_call(
            list(weights), non_trainable, x, initial_state=[v0]
        )
        return ops.sum(y * DT * up) + ops.sum(v * up_v)

    _, grads = gradients(fn, x, v0, *weights, jit=True)
    (y, v), _ = layer.stateless_call(
        [ops.convert_to_tensor(w) for w in weights],
        non_trainable,
        x,
        initial_state=[ops.convert_to_tensor(v0)],
    )
    out = dict(zip(["x", "v0"] + names, grads, strict=True))
    return ops.convert_to_numpy(y) * DT, ops.convert_to_numpy(v), out


CASES = [
    # reset, reset_delay, detach_reset, discretization, scale_input, surrogate
    *[
        (r, False, d, "exact", True, "fast_sigmoid")
        for r in ("subtract", "zero", "none")
        for d in (False, True)
    ],
    ("subtract", False, False, "euler", True, "atan"),
    ("zero", False, False, "exact", False, "sigmoid"),
    ("subtract", False, True, "euler", False, "triangle"),
    *[
        (r, True, d, "exact", False, "atan")
        for r in ("subtract", "zero")
        for d in (False, True)
    ],
    ("none", True, False, "exact", True, "fast_sigmoid"),
    ("zero", True, False, "euler", True, "boxcar"),
]


@pytest.mark.parametrize(
    "reset, delay, detach, discretization, scale_input, surrogate", CASES
)
def test_forward_and_gradients_match_reference(
    reset, delay, detach, discretization, scale_input, surrogate
):
    x, tau, theta, v0 = make_case(3)
    if not scale_input:
        x = x * 0.15  # the same voltages as with the gain of a small dt / tau
    options = {"discretization": discretization, "scale_input": scale_input}
    layer = build(
        tau,
        theta,
        x.shape,
        reset=reset,
        reset_delay=delay,
        detach_reset=detach,
        surrogate=surrogate,
        **options,
    )
    rng = np.random.default_rng(4)
    up = rng.normal(0, 1, x.shape)
    up_v = rng.normal(0, 1, v0.shape)
    counts, v, grads = run_with_gradients(layer, x, v0, up, up_v)

    ref_counts, ref_v, trace = reference(
        x, tau, theta, v0, reset=reset, delay=delay, **options
    )
    closest = min(np.abs(s["vp"] - theta).min() for s in trace)
    assert closest > 1e-5, f"test case too close to the threshold ({closest})"
    assert 0.05 < ref_counts.mean() < 0.9
    np.testing.assert_allclose(counts, ref_counts, atol=1e-6)
    np.testing.assert_allclose(v, ref_v, rtol=1e-5, atol=1e-5)
    expected = reference_gradients(
        x,
        tau,
        theta,
        trace,
        up,
        up_v,
        DEFAULT_DERIVATIVES[surrogate],
        reset=reset,
        delay=delay,
        detach=detach,
        **options,
    )
    for name in ("x", "v0", "tau", "threshold"):
        scale = np.abs(expected[name]).max()
        assert scale > 0, name
        np.testing.assert_allclose(
            np.reshape(grads[name], np.shape(expected[name])),
            expected[name],
            rtol=2e-3,
            atol=2e-4 * scale,
            err_msg=name,
        )


def test_options_change_the_dynamics():
    """Each option alone changes the spikes (so the reference test can tell
    the forms apart)."""
    x, tau, theta, v0 = make_case(5)
    base = dict(reset="subtract", delay=False, discretization="exact", scale_input=True)
    counts = reference(x, tau, theta, v0, **base)[0]
    for change in (
        {"delay": True},
        {"discretization": "euler"},
        {"scale_input": False},
    ):
        other = reference(x, tau, theta, v0, **dict(base, **change))[0]
        assert np.abs(other - counts).sum() > 0, change


@pytest.mark.parametrize("scale_input", [True, False])
def test_cuba_lif_synapse_options(scale_input):
    """CubaLIF's synapse takes ``scale_input``: ``i_t = a_s i_{t-1} + g_s x_t``."""
    x, tau, theta, _ = make_case(6)
    tau_syn = np.full(tau.shape, 0.004, "float32")
    x = x * 0.2 if not scale_input else x + 0.8
    layer = CubaLIF(dt=DT, tau=0.008, tau_syn=0.004, scale_input=scale_input)
    layer.build(x.shape)
    y = ops.convert_to_numpy(layer(x)) * DT
    a_s = np.exp(-DT / tau_syn.astype(np.float64))
    g_s = 1 - a_s if scale_input else 1.0
    i = np.zeros(x.shape[::2])
    current = np.zeros(x.shape)
    for t in range(x.shape[1]):
        i = a_s * i + g_s * x[:, t]
        current[:, t] = i
    expected = reference(
        current.astype(np.float64),
        np.full(tau.shape, 0.008),
        1.0,
        np.zeros(x.shape[::2]),
        reset="subtract",
        delay=False,
        discretization="exact",
        scale_input=scale_input,
    )[0]
    assert 0.05 < expected.mean() < 0.9
    np.testing.assert_allclose(y, expected, atol=1e-6)


@pytest.mark.parametrize(
    "reset, detach",
    list(itertools.product(("subtract", "zero", "none"), (False, True))),
)
def test_membrane_kernel_equals_general_loop(reset, detach):
    """The membrane kernel and ``neuron_loop`` agree, with gradients, on the
    same inputs (both are checked against the reference above; this pins the
    kernel on inputs the layer does not produce: values at scale 10)."""
    x, tau, theta, v0 = make_case(7, steps=12)
    x = x * 10
    log_a = (-DT / tau).astype("float32")
    a, g = np.exp(log_a), -np.expm1(log_a)
    up = np.random.default_rng(8).normal(0, 1, (x.shape[0], x.shape[1] + 1, x.shape[2]))
    up = ops.convert_to_tensor(up.astype("float32"))

    def fused(u, a, theta, v0, gain):
        counts, v = lif_kernels.membrane(
            u, a, theta, v0, gain=gain, reset=reset, detach_reset=detach
        )
        packed = ops.concatenate([counts, ops.expand_dims(v, 1)], 1)
        return ops.sum(packed * up)

    def loop(u, a, theta, v0, gain):
        log_a = ops.log(a)
        counts, (v,) = lif_kernels.neuron_loop(
            u * gain / -ops.expm1(log_a),
            log_a,
            theta,
            [v0],
            reset=reset,
            detach_reset=detach,
        )
        packed = ops.concatenate([counts, ops.expand_dims(v, 1)], 1)
        return ops.sum(packed * up)

    # the drive g x as one tensor (gain 1), and as x with the gain applied
    # by the kernel (a gain per unit, with its gradient)
    ones = np.ones_like(g)
    for args in ((x * g, a, theta, v0, ones), (x, a, theta, v0, g)):
        value_f, grads_f = gradients(fused, *args)
        value_l, grads_l = gradients(loop, *args)
        np.testing.assert_allclose(value_f, value_l, rtol=1e-5)
        names = ("u", "a", "theta", "v0", "gain")
        for name, gf, gl in zip(names, grads_f, grads_l, strict=True):
            scale = np.abs(gl).max()
            np.testing.assert_allclose(
                gf, gl, rtol=1e-3, atol=1e-4 * scale, err_msg=name
            )
    # no gain: the drive as it is
    x, g, a, theta, v0 = (
        ops.convert_to_tensor(np.asarray(t, np.float32)) for t in (x, g, a, theta, v0)
    )
    counts, _ = lif_kernels.membrane(x * g, a, theta, v0, reset=reset)
    counts_g, _ = lif_kernels.membrane(x, a, theta, v0, gain=g, reset=reset)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(counts), ops.convert_to_numpy(counts_g)
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"discretization": "rk4"},
            r"`discretization` to be one of \('exact', 'euler'\); got 'rk4'",
        ),
        ({"scale_input": "no"}, r"`scale_input` to be True or False; got 'no'"),
        ({"reset_delay": 1}, r"`reset_delay` to be True or False; got 1"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        LIF(name="opt", **kwargs)


@pytest.mark.parametrize("option", ["discretization", "scale_input", "reset_delay"])
def test_options_in_config(option):
    value = {"discretization": "euler", "scale_input": False, "reset_delay": True}[
        option
    ]
    layer = LIF(**{option: value})
    config = layer.get_config()
    assert config[option] == value
    assert getattr(LIF.from_config(config), option) == value
