"""``LIF``, ``CubaLIF`` and ``ALIF`` against float64 NumPy references of their
equations, forward and backward through time (``keras_spiking.lif``)."""

import math
import re

import keras
import numpy as np
import pytest
from keras import ops

from keras_spiking.lif import ALIF, LIF, CubaLIF, MinValue
from keras_spiking.pooling import TemporalAvgPool
from keras_spiking.surrogates import ATan, Boxcar
from tests.harness import BACKEND, gradients, numpy, run_layer_test
from tests.test_surrogates import DEFAULT_DERIVATIVES

CLASSES = {"LIF": LIF, "CubaLIF": CubaLIF, "ALIF": ALIF}
RESETS = ("subtract", "zero", "none")


# ------------------------------------------------------------ reference ---


def reference(
    x,
    dt,
    tau,
    threshold,
    *,
    reset="subtract",
    tau_syn=None,
    tau_adapt=None,
    beta=0.0,
    kernel=None,
    v0=0.0,
    i0=0.0,
    b0=0.0,
    z0=0.0,
):
    """The layers' equations in float64, step by step.

    ``x`` is ``(batch, time, units)``; parameters per unit.  Returns the spike
    counts, the final states ``(v, i, b, z)`` and the per-step values the
    backward pass needs.
    """
    x = np.asarray(x, np.float64)
    batch, steps, units = x.shape
    full = lambda value: np.broadcast_to(np.asarray(value, np.float64), (batch, units))  # noqa: E731
    a = np.exp(-dt / np.asarray(tau, np.float64))
    a_syn = None if tau_syn is None else np.exp(-dt / np.asarray(tau_syn, np.float64))
    a_b = None if tau_adapt is None else np.exp(-dt / np.asarray(tau_adapt, np.float64))
    v, i, b, z = full(v0).copy(), full(i0).copy(), full(b0).copy(), full(z0).copy()
    trace = []
    counts = np.zeros_like(x)
    for t in range(steps):
        current = x[:, t] + (0 if kernel is None else z @ kernel)
        i_previous = i
        if a_syn is not None:
            i = a_syn * i + (1 - a_syn) * current
            drive = i
        else:
            drive = current
        v_previous, b_previous, z_previous = v, b, z
        v_new = a * v + (1 - a) * drive
        theta = threshold + (beta * b if a_b is not None else 0)
        z = (v_new >= theta).astype(np.float64)
        if reset == "subtract":
            v = v_new - theta * z
        elif reset == "zero":
            v = v_new * (1 - z)
        else:
            v = v_new
        if a_b is not None:
            b = a_b * b + (1 - a_b) * z
        counts[:, t] = z
        trace.append(
            {
                "current": current,
                "i_previous": i_previous,
                "drive": drive,
                "v_previous": v_previous,
                "v_new": v_new,
                "theta": theta,
                "z": z,
                "b_previous": b_previous,
                "z_previous": z_previous,
            }
        )
    return counts, {"v": v, "i": i, "b": b, "z": z}, trace


def reference_gradients(
    upstream,
    trace,
    dt,
    tau,
    derivative,
    *,
    reset="subtract",
    detach_reset=False,
    tau_syn=None,
    tau_adapt=None,
    beta=0.0,
    kernel=None,
):
    """Backpropagation through time of ``L = sum(upstream * counts / dt)``,
    written by hand: the adjoint of each line of ``reference``, in reverse.

    Returns the gradients w.r.t. the input, ``tau``, ``threshold``, the
    recurrent kernel, ``tau_syn`` and ``tau_adapt``.
    """
    upstream = np.asarray(upstream, np.float64)
    batch, steps, units = upstream.shape
    a = np.exp(-dt / np.asarray(tau, np.float64))
    synapse, adapt = tau_syn is not None, tau_adapt is not None
    a_syn = np.exp(-dt / np.asarray(tau_syn, np.float64)) if synapse else 0
    a_b = np.exp(-dt / np.asarray(tau_adapt, np.float64)) if adapt else 0

    d_x = np.zeros_like(upstream)
    d_a = d_a_syn = d_a_b = d_threshold = np.zeros(units)
    d_kernel = np.zeros((units, units))
    # adjoints of the states after step t (from the steps after t)
    lam_v, lam_i, lam_b, lam_z = (np.zeros((batch, units)) for _ in range(4))
    for t in range(steps - 1, -1, -1):
        s = trace[t]
        z = s["z"]
        lam_z = lam_z + upstream[:, t] / dt
        if adapt:  # b_t = a_b b_{t-1} + (1 - a_b) z_t
            lam_z = lam_z + (1 - a_b) * lam_b
            d_a_b = d_a_b + np.sum(lam_b * (s["b_previous"] - z), axis=0)
            lam_b_previous = a_b * lam_b
        # the reset: v_t = f(v'_t, theta_t, z_t)
        if reset == "subtract":
            d_v_new, d_theta, d_z = lam_v, -z * lam_v, -s["theta"] * lam_v
        elif reset == "zero":
            d_v_new, d_theta, d_z = (1 - z) * lam_v, 0 * lam_v, -s["v_new"] * lam_v
        else:
            d_v_new, d_theta, d_z = lam_v, 0 * lam_v, 0 * lam_v
        if not detach_reset:
            lam_z = lam_z + d_z
        # the spike: z_t = H(v'_t - theta_t), surrogate derivative
        lam_u = lam_z * derivative(s["v_new"] - s["theta"])
        lam_v_new = d_v_new + lam_u
        d_theta = d_theta - lam_u
        d_threshold = d_threshold + np.sum(d_theta, axis=0)
        if adapt:  # theta_t = threshold + beta b_{t-1}
            lam_b_previous = lam_b_previous + beta * d_theta
        # v'_t = a v_{t-1} + (1 - a) drive_t
        d_a = d_a + np.sum(lam_v_new * (s["v_previous"] - s["drive"]), axis=0)
        lam_v = a * lam_v_new
        lam_drive = (1 - a) * lam_v_new
        if synapse:  # i_t = a_syn i_{t-1} + (1 - a_syn) current_t
            lam_i = lam_i + lam_drive
            d_a_syn = d_a_syn + np.sum(lam_i * (s["i_previous"] - s["current"]), axis=0)
            lam_current = (1 - a_syn) * lam_i
            lam_i = a_syn * lam_i
        else:
            lam_current = lam_drive
        d_x[:, t] = lam_current
        # current_t = x_t + z_{t-1} W
        if kernel is not None:
            d_kernel = d_kernel + s["z_previous"].T @ lam_current
            lam_z = lam_current @ kernel.T
        else:
            lam_z = np.zeros_like(lam_z)
        if adapt:
            lam_b = lam_b_previous

    def d_tau(d_decay, tau):  # decay = exp(-dt / tau)
        tau = np.asarray(tau, np.float64)
        return d_decay * np.exp(-dt / tau) * dt / tau**2

    return {
        "x": d_x,
        "tau": d_tau(d_a, tau),
        "threshold": d_threshold,
        "recurrent_kernel": d_kernel,
        "tau_syn": d_tau(d_a_syn, tau_syn) if synapse else None,
        "tau_adapt": d_tau(d_a_b, tau_adapt) if adapt else None,
    }


def check_margin(trace, margin=1e-5):
    """No voltage within ``margin`` of its threshold: float32 and float64
    spike at the same steps (so the comparisons below are meaningful)."""
    closest = min(np.abs(s["v_new"] - s["theta"]).min() for s in trace)
    assert closest > margin, f"test case too close to the threshold ({closest})"


# ---------------------------------------------------------------- cases ---

DT = 0.001


def case(name, units=4, steps=30, batch=2, seed=0, recurrent=False):
    """Input, per-neuron parameters and the matching layer arguments."""
    rng = np.random.default_rng(seed)
    x = rng.normal(1.2, 1.5, size=(batch, steps, units)).astype("float32")
    params = {
        "tau": rng.uniform(0.002, 0.01, units).astype("float32"),
        "threshold": rng.uniform(0.5, 1.0, units).astype("float32"),
    }
    if name == "CubaLIF":
        params["tau_syn"] = rng.uniform(0.001, 0.004, units).astype("float32")
    if name == "ALIF":
        params["tau_adapt"] = rng.uniform(0.01, 0.05, units).astype("float32")
    if recurrent:
        params["kernel"] = rng.normal(0, 0.4, (units, units)).astype("float32")
    return x, params


def make_layer(name, params, shape, **kwargs):
    """A built layer of class ``name`` with the weights in ``params``."""
    cls = CLASSES[name]
    if name == "ALIF":
        kwargs.setdefault("beta", 0.7)
    layer = cls(recurrent="kernel" in params, dt=DT, **kwargs)
    layer.build(shape)
    features = tuple(shape[2:])
    for weight in ("tau", "tau_syn", "tau_adapt", "threshold"):
        if weight in params:
            getattr(layer, weight).assign(np.reshape(params[weight], features))
    if "kernel" in params:
        layer.recurrent_kernel.assign(params["kernel"])
    return layer


def reference_kwargs(name, params, beta=0.7):
    kwargs = {k: params[k] for k in ("tau_syn", "tau_adapt", "kernel") if k in params}
    if name == "ALIF":
        kwargs["beta"] = beta
    return kwargs


def state_names(name, recurrent):
    extra = {"LIF": [], "CubaLIF": ["i"], "ALIF": ["b"]}[name]
    return ["v"] + extra + (["z"] if recurrent else [])


# -------------------------------------------------------------- forward ---


@pytest.mark.parametrize("name", sorted(CLASSES))
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("recurrent", [False, True])
def test_forward_matches_reference(name, reset, recurrent):
    x, params = case(name, recurrent=recurrent)
    layer = make_layer(name, params, x.shape, reset=reset, return_state=True)
    outputs = numpy(layer(x))
    counts, states, trace = reference(
        x,
        DT,
        params["tau"],
        params["threshold"],
        reset=reset,
        **reference_kwargs(name, params),
    )
    check_margin(trace)
    assert counts.sum() > 10 and (1 - counts).sum() > 10  # spikes and silences

    spikes = outputs[0]
    assert spikes.shape == x.shape and spikes.dtype == np.float32
    np.testing.assert_array_equal(np.round(spikes * DT), counts)
    np.testing.assert_allclose(spikes, counts / np.float32(DT), rtol=1e-6)
    names = state_names(name, recurrent)
    assert len(outputs) == 1 + len(names)
    for state_name, actual in zip(names, outputs[1:], strict=True):
        np.testing.assert_allclose(
            actual, states[state_name], rtol=1e-4, atol=1e-5, err_msg=state_name
        )


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_short_and_multi_axis_inputs(name):
    """Few steps (TensorFlow unrolls up to 16) and two feature axes."""
    x, params = case(name, units=6, steps=7, seed=3, recurrent=True)
    shape = (2, 7, 3, 2)
    layer = make_layer(name, params, shape)
    spikes = numpy(layer(x.reshape(shape)))
    counts, _, trace = reference(
        x, DT, params["tau"], params["threshold"], **reference_kwargs(name, params)
    )
    check_margin(trace)
    assert counts.sum() > 0
    np.testing.assert_array_equal(np.round(spikes * DT).reshape(x.shape), counts)
    assert layer.tau.shape == (3, 2) and layer.recurrent_kernel.shape == (6, 6)


@pytest.mark.parametrize(
    "reset, counts, voltage",
    [
        # a = 0.5, input 1.5, threshold 1: v' = 0.75, 1.125 (spike), ...
        ("subtract", [0, 1, 0, 1, 0], 0.828125),  # .75 .125 .8125 .15625 .828125
        ("zero", [0, 1, 0, 1, 0], 0.75),  # .75 0 .75 0 .75
        ("none", [0, 1, 1, 1, 1], 1.453125),  # .75 1.125 1.3125 1.40625 1.453125
    ],
)
def test_hand_counted_spikes(reset, counts, voltage):
    dt = 0.001
    layer = LIF(dt / math.log(2), reset=reset, dt=dt, return_state=True)
    spikes, v = numpy(layer(np.full((1, 5, 1), 1.5, "float32")))
    np.testing.assert_allclose(spikes[0, :, 0], np.array(counts) / dt, rtol=1e-6)
    assert v[0, 0] == pytest.approx(voltage, abs=1e-6)


def test_spike_when_voltage_equals_threshold():
    """v'_t >= theta fires: with tau << dt, a = 0 and 1 - a = 1 exactly in
    float32, so an input equal to the threshold gives v'_0 = theta."""
    layer = LIF(1e-6, threshold=0.75, dt=0.001, return_state=True)
    spikes, v = numpy(layer(np.full((1, 2, 1), [[0.75], [0.7499]], "float32")))
    np.testing.assert_allclose(spikes[0, :, 0], [1000, 0], rtol=1e-6)
    assert v[0, 0] == pytest.approx(0.7499, abs=1e-7)


def test_initial_voltage_and_state():
    x, params = case("LIF", steps=20, seed=4)
    layer = make_layer("LIF", params, x.shape, initial_voltage=0.4, return_state=True)
    counts, states, _ = reference(x, DT, params["tau"], params["threshold"], v0=0.4)
    spikes, v = numpy(layer(x))
    np.testing.assert_array_equal(np.round(spikes * DT), counts)
    np.testing.assert_allclose(v, states["v"], rtol=1e-4, atol=1e-5)

    # explicit initial states, for ALIF with its recurrent state too
    x, params = case("ALIF", steps=20, seed=5, recurrent=True)
    layer = make_layer("ALIF", params, x.shape, return_state=True)
    rng = np.random.default_rng(6)
    v0 = rng.uniform(0, 0.5, (2, 4)).astype("float32")
    b0 = rng.uniform(0, 1, (2, 4)).astype("float32")
    z0 = (rng.uniform(0, 1, (2, 4)) > 0.5).astype("float32")
    outputs = numpy(layer(x, initial_state=[v0, b0, z0]))
    counts, states, trace = reference(
        x,
        DT,
        params["tau"],
        params["threshold"],
        v0=v0,
        b0=b0,
        z0=z0,
        **reference_kwargs("ALIF", params),
    )
    check_margin(trace)
    np.testing.assert_array_equal(np.round(outputs[0] * DT), counts)
    for actual, state_name in zip(outputs[1:], ["v", "b", "z"], strict=True):
        np.testing.assert_allclose(actual, states[state_name], rtol=1e-4, atol=1e-5)


def test_spike_height_follows_dt_variable():
    dt = keras.Variable(0.002, trainable=False)
    layer = LIF(0.01, dt=dt)
    x = np.full((1, 30, 1), 3.0, "float32")
    first = numpy(layer(x))
    counts, _, _ = reference(x, 0.002, 0.01, 1.0)
    np.testing.assert_allclose(first, counts / 0.002, rtol=1e-6)
    dt.assign(0.001)
    second, _, _ = reference(x, 0.001, 0.01, 1.0)
    assert second.sum() != counts.sum()  # the decay follows dt too
    np.testing.assert_allclose(numpy(layer(x)), second / 0.001, rtol=1e-6)


# ------------------------------------------------------------- backward ---


def layer_gradients(layer, x, upstream):
    """Gradients of ``sum(upstream * layer(x))`` w.r.t. ``x`` and each of
    the layer's trainable weights, by the backend's autodiff."""
    names = [v.path.split("/")[-1] for v in layer.trainable_variables]
    values = [numpy(v) for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    upstream = ops.convert_to_tensor(upstream, "float32")

    def fn(x, *weights):
        y, _ = layer.stateless_call(list(weights), non_trainable, x)
        return ops.sum(y * upstream)

    _, grads = gradients(fn, x, *values, jit=True)
    return dict(zip(["x"] + names, grads, strict=True))


def check_gradients(actual, expected, names):
    for name in names:
        scale = np.abs(expected[name]).max()
        assert scale > 0, name
        np.testing.assert_allclose(
            np.reshape(actual[name], np.shape(expected[name])),
            expected[name],
            rtol=2e-3,
            atol=2e-4 * scale,
            err_msg=name,
        )


GRADIENT_CASES = [
    # name, reset, detach_reset, recurrent, surrogate
    ("LIF", "subtract", False, True, "fast_sigmoid"),
    ("LIF", "subtract", True, True, "fast_sigmoid"),
    ("LIF", "zero", False, True, "atan"),
    ("LIF", "zero", True, False, "sigmoid"),
    ("LIF", "none", False, True, "triangle"),
    ("LIF", "subtract", False, False, "boxcar"),
    ("LIF", "subtract", False, False, "straight_through"),
    ("CubaLIF", "subtract", False, True, "fast_sigmoid"),
    ("CubaLIF", "subtract", False, False, "fast_sigmoid"),
    ("CubaLIF", "zero", False, False, "atan"),
    ("CubaLIF", "zero", True, True, "atan"),
    ("ALIF", "subtract", False, True, "fast_sigmoid"),
    ("ALIF", "subtract", True, True, "atan"),
    ("ALIF", "zero", False, False, "triangle"),
]


@pytest.mark.parametrize(
    "name, reset, detach_reset, recurrent, surrogate", GRADIENT_CASES
)
def test_gradients_match_bptt_reference(
    name, reset, detach_reset, recurrent, surrogate
):
    x, params = case(name, steps=20, seed=7, recurrent=recurrent)
    x = x * 0.8  # fewer saturated neurons: more of them near the threshold
    layer = make_layer(
        name,
        params,
        x.shape,
        reset=reset,
        detach_reset=detach_reset,
        surrogate=surrogate,
        trainable_threshold=True,
    )
    upstream = np.random.default_rng(8).normal(0, 1, x.shape).astype("float32")
    actual = layer_gradients(layer, x, upstream)

    ref = reference_kwargs(name, params)
    counts, _, trace = reference(
        x, DT, params["tau"], params["threshold"], reset=reset, **ref
    )
    check_margin(trace)
    assert 0 < counts.mean() < 0.9
    if "kernel" in ref:
        ref["kernel"] = ref["kernel"].astype(np.float64)
    expected = reference_gradients(
        upstream,
        trace,
        DT,
        params["tau"],
        DEFAULT_DERIVATIVES[surrogate],
        reset=reset,
        detach_reset=detach_reset,
        **ref,
    )
    names = ["x", "tau", "threshold"]
    names += [n for n in ("tau_syn", "tau_adapt") if n in params]
    names += ["recurrent_kernel"] if recurrent else []
    assert sorted(actual) == sorted(names)
    check_gradients(actual, expected, names)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_detach_reset_changes_the_gradient(reset):
    """The two modes differ (so the reference test can tell them apart)."""
    x, params = case("LIF", steps=20, seed=7)
    upstream = np.random.default_rng(8).normal(0, 1, x.shape).astype("float32")
    grads = [
        layer_gradients(
            make_layer("LIF", params, x.shape, reset=reset, detach_reset=d),
            x,
            upstream,
        )["x"]
        for d in (False, True)
    ]
    assert np.abs(grads[0] - grads[1]).max() > 1e-2 * np.abs(grads[0]).max()


def test_gradient_of_one_step():
    """dy/dx = (1 / dt) (1 - a) sigma'(v' - theta), counted by hand."""
    dt, tau, x = 0.001, 0.004, 0.9
    a = math.exp(-dt / tau)
    layer = LIF(tau, dt=dt, surrogate=ATan(alpha=2))
    layer.build((1, 1, 1))
    grads = layer_gradients(layer, np.full((1, 1, 1), x, "float32"), np.ones((1, 1, 1)))
    u = (1 - a) * x - 1.0
    expected = (1 - a) / (1 + (math.pi * u) ** 2) / dt
    assert grads["x"][0, 0, 0] == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------- layouts, state ---


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_layouts(name):
    x, params = case(name, steps=20, seed=9, recurrent=True)
    full = numpy(make_layer(name, params, x.shape, return_state=True)(x))

    time_major = make_layer(
        name, params, x.shape[1::-1] + x.shape[2:], time_major=True, return_state=True
    )
    outputs = numpy(time_major(np.swapaxes(x, 0, 1)))
    np.testing.assert_array_equal(np.swapaxes(outputs[0], 0, 1), full[0])
    for actual, expected in zip(outputs[1:], full[1:], strict=True):
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)

    last = make_layer(name, params, x.shape, return_sequences=False)
    np.testing.assert_array_equal(numpy(last(x)), full[0][:, -1])

    layer = make_layer(name, params, x.shape, return_state=True)
    shapes = layer.compute_output_shape((None, 20, 4))
    assert shapes == ((None, 20, 4),) + ((None, 4),) * len(full[1:])
    symbolic = layer(keras.Input((20, 4)))
    assert [tuple(s.shape) for s in symbolic] == list(shapes)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_stateful_streaming_equals_one_call(name):
    x, params = case(name, steps=24, seed=10, recurrent=True)
    whole = numpy(make_layer(name, params, x.shape, return_state=True)(x))

    layer = make_layer(name, params, x.shape, stateful=True)
    pieces = [numpy(layer(x[:, t : t + 8])) for t in range(0, 24, 8)]
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), whole[0])
    for variable, expected in zip(layer.states, whole[1:], strict=True):
        np.testing.assert_allclose(numpy(variable), expected, rtol=1e-5, atol=1e-6)

    layer.reset_state()
    np.testing.assert_array_equal(numpy(layer(x[:, :8])), whole[0][:, :8])


# -------------------------------------------------------------- training ---


def spiking_model(name, steps=20, **kwargs):
    inputs = keras.Input((steps, 3))
    currents = keras.layers.Dense(
        4, kernel_initializer=keras.initializers.RandomNormal(1.0, 0.5, seed=1)
    )(inputs)
    spikes = CLASSES[name](
        tau=0.01, recurrent=True, trainable_threshold=True, name="neurons", **kwargs
    )(currents)
    rates = TemporalAvgPool()(spikes)
    outputs = keras.layers.Dense(2)(rates)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("name", sorted(CLASSES))
def fit_changes_weights(name, jit_compile):
    keras.utils.set_random_seed(0)
    model = spiking_model(name)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=jit_compile
    )
    rng = np.random.default_rng(11)
    x = rng.uniform(0, 1, (8, 20, 3)).astype("float32")
    y = rng.normal(0, 1, (8, 2)).astype("float32")
    layer = model.get_layer("neurons")
    before = {v.path: numpy(v) for v in layer.trainable_variables}
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert len(before) == len(layer.trainable_variables) >= 3
    for variable in layer.trainable_variables:
        assert np.abs(numpy(variable) - before[variable.path]).max() > 0, variable.path
    assert numpy(layer.tau).min() > 0


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_fit_trains_time_constants(name):
    """``model.fit`` as each backend runs it by default (a TensorFlow graph,
    JAX compiled, PyTorch eager): tau, threshold and the recurrent kernel
    all change."""
    fit_changes_weights(name, "auto")


@pytest.mark.skipif(BACKEND != "tensorflow", reason="XLA on TensorFlow only")
def test_fit_with_xla_on_tensorflow():
    """XLA needs a loop with a fixed trip count (``backend.scan``); 20 steps
    is past the unrolled lengths."""
    fit_changes_weights("ALIF", True)


def test_unknown_time_axis():
    """A model built for any number of steps (a TensorFlow graph with an
    unknown time axis), run on two lengths."""
    inputs = keras.Input((None, 3))
    outputs = LIF(0.01, recurrent=True)(keras.layers.Dense(3)(inputs))
    model = keras.Model(inputs, outputs)
    for steps in (5, 20):
        x = np.random.default_rng(steps).uniform(0, 2, (2, steps, 3)).astype("float32")
        y = model.predict(x, verbose=0)
        assert y.shape == (2, steps, 3)
        np.testing.assert_array_equal(numpy(model(x)), y)


def test_time_constants_stay_positive():
    layer = LIF(0.01)
    layer.build((1, 2, 3))
    assert isinstance(layer.tau.constraint, MinValue)
    np.testing.assert_array_equal(
        numpy(layer.tau.constraint(ops.convert_to_tensor([-1.0, 0.0, 0.5]))),
        np.array([1e-6, 1e-6, 0.5], "float32"),
    )
    # a tau of 0 that reaches the forward pass (a constraint of the user's)
    # is clamped there: no NaN in the gradients (dt / tau**2 would be inf)
    layer.tau.assign(np.array([0.0, 1e-9, 0.01], "float32"))
    x = np.full((1, 2, 3), 2.0, "float32")
    grads = layer_gradients(layer, x, np.ones_like(x))
    assert np.all(np.isfinite(grads["x"])) and np.all(np.isfinite(grads["tau"]))
    assert grads["tau"][2] != 0


# ------------------------------------------------------------ saving ---


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_config_round_trip(name):
    cls = CLASSES[name]
    kwargs = {
        "threshold": 0.8,
        "reset": "zero",
        "detach_reset": True,
        "initial_voltage": 0.25,
        "surrogate": ATan(alpha=3.0),
        "trainable_tau": False,
        "trainable_threshold": True,
        "recurrent": True,
        "recurrent_initializer": "glorot_uniform",
        "recurrent_regularizer": "l2",
        "tau_constraint": MinValue(0.002),
        "dt": 0.002,
        "time_major": True,
        "return_state": True,
    }
    if name == "ALIF":
        kwargs.update(beta=0.3, tau_adapt=0.1)
    if name == "CubaLIF":
        kwargs["tau_syn"] = keras.initializers.RandomUniform(0.001, 0.003)
    layer = cls(tau=0.03, **kwargs)
    config = layer.get_config()
    restored = cls.from_config(config)
    assert restored.get_config() == config
    assert restored.surrogate == ATan(alpha=3.0)
    assert config["tau"] == 0.03 and config["threshold"] == 0.8
    if name == "CubaLIF":
        assert config["tau_syn"]["class_name"] == "RandomUniform"
    layer.build((5, 2, 3))
    assert not layer.tau.trainable and layer.threshold.trainable
    assert len(layer.losses) == 1  # the recurrent regularizer


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_keras_file_round_trip(name, tmp_path):
    keras.utils.set_random_seed(1)
    model = spiking_model(name, surrogate=Boxcar(width=0.3), reset="zero")
    x = np.random.default_rng(12).uniform(0, 1, (2, 20, 3)).astype("float32")
    expected = numpy(model(x))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(numpy(loaded(x)), expected)
    layer = loaded.get_layer("neurons")
    assert type(layer) is CLASSES[name]
    assert layer.surrogate == Boxcar(width=0.3) and layer.reset == "zero"


def test_run_layer_test():
    run_layer_test(
        ALIF,
        {"tau": 0.01, "recurrent": True, "trainable_threshold": True},
        input_shape=(2, 5, 3),
        expected_output_shape=(2, 5, 3),
        expected_num_trainable_weights=4,
        expected_num_non_trainable_weights=0,
        supports_masking=False,
        run_mixed_precision_check=BACKEND != "torch",
    )


# ------------------------------------------------------------ bad input ---


def message(error):
    """The part of an error message before Keras' "Arguments received"."""
    return str(error.value).split("Arguments received")[0]


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: LIF(tau=0.0), ValueError, r"\(LIF\) expects `tau` > 0.*tau=0.0"),
        (lambda: LIF(tau=-0.01), ValueError, r"`tau` > 0"),
        (lambda: CubaLIF(tau_syn=-1), ValueError, r"\(CubaLIF\) expects `tau_syn`"),
        (lambda: ALIF(tau_adapt=0), ValueError, r"\(ALIF\) expects `tau_adapt`"),
        (lambda: LIF(tau="fast"), ValueError, r"`tau` to be a positive float"),
        (lambda: LIF(threshold=0), ValueError, r"`threshold` > 0; got threshold=0"),
        (lambda: LIF(threshold=-1.0), ValueError, r"`threshold` > 0"),
        (lambda: LIF(threshold="1"), TypeError, r"`threshold` to be a positive"),
        (lambda: LIF(reset="soft"), ValueError, r"`reset` to be one of.*'soft'"),
        (lambda: LIF(surrogate="superspike"), ValueError, r"`surrogate`.*atan"),
        (lambda: LIF(surrogate=3), TypeError, r"`surrogate`"),
        (lambda: ALIF(beta=-0.1), ValueError, r"`beta` to be a float >= 0"),
        (lambda: LIF(initial_voltage="rest"), TypeError, r"`initial_voltage`"),
        (lambda: LIF(dt=0), ValueError, r"`dt` > 0"),
        (lambda: LIF(recurrent="yes"), TypeError, r"`recurrent` to be True or"),
        (lambda: ALIF(detach_reset=1), TypeError, r"`detach_reset` to be True"),
    ],
)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_tau_from_initializer():
    layer = LIF(tau=keras.initializers.Constant(-0.5), name="neurons")
    with pytest.raises(ValueError, match=r"'neurons' \(LIF\) expects `tau` > 0"):
        layer.build((1, 3, 2))


def test_bad_input_rank():
    with pytest.raises(ValueError, match=r"\(LIF\) expects inputs with a time axis"):
        LIF()(np.ones((2, 3), "float32"))


@pytest.mark.parametrize(
    "states, match",
    [
        ([np.zeros((2, 4))], r"`initial_state` to be 2 tensor\(s\) \(v, i\)"),
        (
            [np.zeros((2, 4)), np.zeros((2, 5))],
            r"shape \(batch, \*features\) = \(2, 4\); got \(2, 5\) for state 'i'",
        ),
        (
            [np.zeros((3, 4)), np.zeros((3, 4))],
            r"= \(2, 4\); got \(3, 4\) for state 'v'",
        ),
    ],
)
def test_bad_initial_state(states, match):
    layer = CubaLIF(name="cuba")
    x = np.ones((2, 5, 4), "float32")
    states = [ops.convert_to_tensor(s, "float32") for s in states]
    with pytest.raises(ValueError) as error:
        layer(x, initial_state=states)
    assert "'cuba' (CubaLIF)" in message(error)
    assert re.search(match, message(error)), message(error)
