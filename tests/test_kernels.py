"""The fast kernels against the float64 NumPy step-by-step references
of ``tests/references.py``.

``keras_spiking.kernels`` computes spikes and filters without a loop over
time (chunked running sums, see its docstring).  Here every result is compared
with the step-by-step formula evaluated in float64 on the same float32
inputs: spike counts must match except where float32 puts the running voltage
within rounding of a threshold (totals per neuron never differ by more than
one, fewer than 1e-4 of the steps differ), filters to 1e-5 of their scale.
Gradients of the filters (by the hand-written adjoint) are checked against
float64 finite differences of the reference.
"""

import importlib

import numpy as np
import pytest
from keras import ops

from keras_spiking import kernels, seeded_uniform
from tests import references
from tests.harness import UNKNOWN_AXES, gradients, numpy, run_jit

# ---------------------------------------------------------------- checks ---


def check_spikes(counts, voltage, x, v0):
    """The spike criteria of the module docstring, against the reference."""
    ref, ref_v = references.spike_counts(x, v0)
    assert counts.shape == x.shape and voltage.shape == v0.shape
    np.testing.assert_array_equal(counts, np.round(counts))  # whole spikes
    totals = np.abs(counts.sum(axis=1) - ref.sum(axis=1))
    assert totals.max() <= 1
    assert np.mean(counts != ref) < 1e-4
    # the voltage is a fraction; compare on the circle (0 and 1 are close)
    gap = np.abs(voltage - ref_v)
    np.testing.assert_array_less(np.minimum(gap, 1 - gap), 1e-5)
    assert ((voltage >= 0) & (voltage < 1)).all()
    return ref


def assert_filter_close(y, ref):
    """Within 1e-5 of the reference, relative to its largest magnitude."""
    scale = np.abs(ref).max()
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * scale)


def random_increments(rng, shape, low=-1.3, high=2.7):
    """Increments ``rate * dt`` with negative and multi-spike steps."""
    return rng.uniform(low, high, shape).astype("float32")


# ----------------------------------------------------------------- spikes ---


@pytest.mark.parametrize("chunk", [3, 8])
@pytest.mark.parametrize("steps", [1, 9, 17, 100, 1001])
def test_spikes_match_reference(steps, chunk):
    rng = np.random.default_rng(steps * 10 + chunk)
    x = random_increments(rng, (3, steps, 5))
    v0 = rng.uniform(0, 1, (3, 5)).astype("float32")
    plan = kernels.Plan("chunked", levels=2, chunk=chunk)
    counts, voltage = run_jit(
        lambda x, v0: kernels.integrate_spikes(x, v0, plan=plan), x, v0
    )
    ref = check_spikes(counts, voltage, x, v0)
    if steps >= 100:  # the case has negative and multi-spike steps
        assert (ref < 0).any() and (ref >= 2).any()


def test_spikes_long_sequence():
    """T = 3000 at the default chunking (three levels), rates up to 3/step."""
    rng = np.random.default_rng(3)
    x = random_increments(rng, (4, 3000, 8), -0.3, 3.0)
    v0 = rng.uniform(0, 1, (4, 8)).astype("float32")
    counts, voltage = run_jit(kernels.integrate_spikes, x, v0)
    check_spikes(counts, voltage, x, v0)


def test_spikes_exact_for_dyadic_values():
    """Increments and voltages that float32 holds exactly give exact spikes."""
    rng = np.random.default_rng(4)
    x = (rng.integers(-600, 900, (2, 300, 3)) / 256).astype("float32")
    v0 = (rng.integers(0, 256, (2, 3)) / 256).astype("float32")
    counts, voltage = run_jit(kernels.integrate_spikes, x, v0)
    ref, ref_v = references.spike_counts(x, v0)
    np.testing.assert_array_equal(counts, ref)
    np.testing.assert_array_equal(voltage, ref_v)


def test_spike_train_wide_and_long_is_exact():
    """``spike_train`` (what the layer calls) on a (32, 1100, 128) input:
    wide and long enough for the eager kernels to work in blocks of steps,
    carrying the voltage from block to block.  Dyadic rates: the spikes of
    height 1/dt and the final voltage equal the reference exactly."""
    rng = np.random.default_rng(16)
    dt = 0.25
    rates = (rng.integers(-300, 900, (32, 1100, 128)) / 64).astype("float32")
    v0 = (rng.integers(0, 256, (32, 128)) / 256).astype("float32")
    spikes, voltage = run_jit(lambda r, v: kernels.spike_train(r, dt, v), rates, v0)
    ref, ref_v = references.spikes(rates, dt, v0)
    np.testing.assert_array_equal(spikes, ref)
    np.testing.assert_array_equal(voltage, ref_v)


def test_lowpass_wide_and_long():
    rng = np.random.default_rng(17)
    x = rng.normal(0, 1, (32, 1100, 128)).astype("float32")
    log_a = -np.geomspace(1e-3, 3, 128).astype("float32")
    y0 = rng.normal(0, 1, (32, 128)).astype("float32")
    y = run_jit(kernels.lowpass, x, log_a, y0)
    assert_filter_close(y, references.lowpass_log_a(x, log_a, y0))


def test_spikes_thresholds_and_edges():
    """Rates exactly 0, exactly 1/step, just below and above whole numbers."""
    x = np.array(
        [[0.0, 1.0, 0.5, 0.5, -0.5, -0.5, 2.0, 1 - 2**-24, 2**-24, -(2**-24), 3.0]],
        "float32",
    )[:, :, None]
    v0 = np.zeros((1, 1), "float32")
    counts, voltage = run_jit(kernels.integrate_spikes, x, v0)
    ref, ref_v = references.spike_counts(x, v0)
    np.testing.assert_array_equal(counts, ref)
    np.testing.assert_allclose(voltage, ref_v, atol=2**-24)


PLANS = {
    "loop": kernels.Plan("loop"),
    "unrolled": kernels.Plan("unrolled"),
    "direct": kernels.Plan("direct"),
    "chunked, 1 level": kernels.Plan("chunked", levels=1),
    "chunked, 3 levels of 4": kernels.Plan("chunked", levels=3, chunk=4),
}


@pytest.mark.parametrize("plan", PLANS.values(), ids=PLANS.keys())
def test_spikes_every_form(plan):
    """Every form gives the reference's spikes.

    ``direct`` over 400 steps is one running sum of int32 fixed-point values
    (each below ``2**24``) that wraps around past ``2**31``: only the value
    modulo ``2**24`` is used, so the result must not change.  ``loop`` is
    the loop over time (symbolic lengths, and where a backend says a loop
    is cheaper).
    """
    rng = np.random.default_rng(5)
    x = random_increments(rng, (2, 400 if plan.form == "direct" else 60, 4))
    v0 = rng.uniform(0, 1, (2, 4)).astype("float32")
    counts, voltage = run_jit(
        lambda x, v0: kernels.integrate_spikes(x, v0, plan=plan), x, v0
    )
    check_spikes(counts, voltage, x, v0)


@pytest.mark.parametrize("split", [13, 250])
def test_spikes_continue_across_calls(split):
    """Two calls carrying the voltage over equal one call on the whole."""
    rng = np.random.default_rng(6)
    x = random_increments(rng, (3, 300, 4))
    v0 = rng.uniform(0, 1, (3, 4)).astype("float32")
    first, middle = run_jit(kernels.integrate_spikes, x[:, :split], v0)
    second, last = run_jit(kernels.integrate_spikes, x[:, split:], middle)
    counts = np.concatenate([first, second], axis=1)
    check_spikes(counts, last, x, v0)
    whole, whole_v = run_jit(kernels.integrate_spikes, x, v0)
    assert np.mean(counts != whole) < 1e-4
    np.testing.assert_allclose(last, whole_v, atol=1e-6)


def test_wide_inputs():
    """2048 values per step (the width from which JAX on CPU takes the loop),
    long enough for 3 levels of chunks elsewhere."""
    rng = np.random.default_rng(16)
    x = random_increments(rng, (16, 150, 128))
    v0 = rng.uniform(0, 1, (16, 128)).astype("float32")
    counts, voltage = run_jit(kernels.integrate_spikes, x, v0)
    check_spikes(counts, voltage, x, v0)
    y = run_jit(kernels.lowpass, x, np.full(128, -0.1, "float32"), v0)
    assert_filter_close(y, references.lowpass_log_a(x, np.full(128, -0.1), v0))


def test_spikes_naive_kernel():
    """The step-by-step kernel (the benchmarks' baseline) is the formula too."""
    rng = np.random.default_rng(7)
    x = (rng.integers(-300, 600, (2, 40, 3)) / 256).astype("float32")
    v0 = (rng.integers(0, 256, (2, 3)) / 256).astype("float32")
    counts, voltage = kernels.integrate_spikes_naive(x, v0)
    ref, ref_v = references.spike_counts(x, v0)
    np.testing.assert_array_equal(numpy(counts), ref)
    np.testing.assert_array_equal(numpy(voltage), ref_v)


@pytest.mark.parametrize("chunk", [1, 9, 2.0, True])
def test_bad_chunk(chunk):
    with pytest.raises(ValueError, match="chunk"):
        kernels.Plan("chunked", levels=1, chunk=chunk)


def test_bad_plans():
    x, v0 = np.zeros((1, 4, 1), "float32"), np.zeros((1, 1), "float32")
    with pytest.raises(ValueError, match="form"):
        kernels.Plan("parallel")
    with pytest.raises(ValueError, match="levels"):
        kernels.Plan("chunked", levels=0)
    with pytest.raises(TypeError, match="plan"):
        kernels.integrate_spikes(x, v0, plan="loop")
    with pytest.raises(TypeError, match="plan"):
        kernels.lowpass(x, np.zeros(1, "float32"), v0, plan=3)
    with pytest.raises(ValueError, match="forced_form"):
        with kernels.forced_form("fast"):
            pass


@pytest.mark.parametrize(
    ("kind", "steps", "forms"),
    [
        ("spikes", 10, {"direct"}),
        ("spikes", 1000, {"chunked", "loop"}),
        ("filter", 10, {"unrolled", "loop"}),
        ("filter", 1000, {"chunked", "loop", "unrolled"}),
    ],
)
def test_choose_plan_and_forced_form(kind, steps, forms):
    """The default choice by length, and ``forced_form`` overriding it for
    the block only (nested blocks: the innermost wins)."""
    x = ops.zeros((32, steps, 128))
    assert kernels.choose_plan(kind, x).form in forms
    with kernels.forced_form("naive"):
        with kernels.forced_form("chunked"):
            plan = kernels.choose_plan(kind, x)
            assert plan.form == "chunked" and plan.levels >= 1
        assert kernels.choose_plan(kind, x).form == "naive"
    assert kernels.choose_plan(kind, x).form in forms


@pytest.mark.skipif(
    not UNKNOWN_AXES,
    reason="only TensorFlow traces graphs whose time axis is unknown (None)",
)
def test_unknown_time_axis_in_a_tensorflow_graph():
    import tensorflow as tf

    rng = np.random.default_rng(8)
    x = random_increments(rng, (2, 77, 3))
    v0 = rng.uniform(0, 1, (2, 3)).astype("float32")
    log_a = np.array([-0.01, -0.3, -2.0], "float32")
    spec = tf.TensorSpec((2, None, 3), tf.float32)

    @tf.function(input_signature=[spec])
    def run(x):
        assert x.shape[1] is None
        counts, voltage = kernels.integrate_spikes(x, v0)
        return counts, voltage, kernels.lowpass(x, log_a, v0)

    counts, voltage, y = run(x)
    check_spikes(counts.numpy(), voltage.numpy(), x, v0)
    assert_filter_close(y.numpy(), references.lowpass_log_a(x, log_a, v0))


# ---------------------------------------------------------------- filters ---

# log_a = -dt/tau: slow (a ~ 1), typical, fast, and below float32 resolution
LOG_A = np.array([-1e-4, -0.01, -0.1, -1.0, -5.0, -30.0], "float32")


@pytest.mark.parametrize("chunk", [3, 8])
@pytest.mark.parametrize("steps", [1, 17, 100, 1001])
def test_lowpass_matches_reference(steps, chunk):
    rng = np.random.default_rng(steps + chunk)
    x = rng.normal(0, 10, (3, steps, LOG_A.size)).astype("float32")
    y0 = rng.normal(0, 10, (3, LOG_A.size)).astype("float32")
    plan = kernels.Plan("chunked", levels=2, chunk=chunk)
    y = run_jit(lambda x, y0: kernels.lowpass(x, LOG_A, y0, plan=plan), x, y0)
    assert_filter_close(y, references.lowpass_log_a(x, LOG_A, y0))


def test_lowpass_of_spikes_long_sequence():
    """Sparse spike trains (mostly zeros) over 3000 steps."""
    rng = np.random.default_rng(9)
    x = (100 * (rng.uniform(size=(2, 3000, LOG_A.size)) < 0.05)).astype("float32")
    y0 = np.zeros((2, LOG_A.size), "float32")
    y = run_jit(kernels.lowpass, x, LOG_A, y0)
    assert_filter_close(y, references.lowpass_log_a(x, LOG_A, y0))


@pytest.mark.parametrize("plan", PLANS.values(), ids=PLANS.keys())
def test_lowpass_every_form(plan):
    rng = np.random.default_rng(10)
    x = rng.normal(0, 1, (2, 60, LOG_A.size)).astype("float32")
    y0 = rng.normal(0, 1, (2, LOG_A.size)).astype("float32")
    y = run_jit(lambda x, y0: kernels.lowpass(x, LOG_A, y0, plan=plan), x, y0)
    assert_filter_close(y, references.lowpass_log_a(x, LOG_A, y0))


@pytest.mark.parametrize("split", [1, 40])
def test_filters_continue_across_calls(split):
    rng = np.random.default_rng(11)
    x = rng.normal(0, 1, (2, 300, LOG_A.size)).astype("float32")
    y0 = rng.normal(0, 1, (2, LOG_A.size)).astype("float32")
    first = run_jit(kernels.lowpass, x[:, :split], LOG_A, y0)
    second = run_jit(kernels.lowpass, x[:, split:], LOG_A, first[:, -1])
    y = np.concatenate([first, second], axis=1)
    assert_filter_close(y, references.lowpass_log_a(x, LOG_A, y0))

    p0, q0 = y0, -y0
    head, (p, q) = run_jit(kernels.alpha, x[:, :split], LOG_A, (p0, q0))
    tail, (p, q) = run_jit(kernels.alpha, x[:, split:], LOG_A, (p, q))
    ref, ref_p, ref_q = references.alpha_states(x, LOG_A, p0, q0)
    assert_filter_close(np.concatenate([head, tail], axis=1), ref)
    assert_filter_close(p, ref_p)
    assert_filter_close(q, ref_q)


@pytest.mark.parametrize("steps", [5, 1000])
def test_alpha_matches_second_order_recurrence(steps):
    rng = np.random.default_rng(12)
    dt, tau = 0.001, np.array([0.0005, 0.005, 0.05, 5.0])
    x = rng.normal(0, 5, (2, steps, tau.size)).astype("float32")
    level = rng.normal(0, 1, tau.size).astype("float32")
    log_a = (-dt / tau).astype("float32")
    states = (np.tile(level, (2, 1)), np.tile(level, (2, 1)))
    y, _ = run_jit(kernels.alpha, x, log_a, states)
    ref = references.alpha(x, -dt / log_a.astype(np.float64), dt, level)
    assert_filter_close(y, ref)


def test_filters_naive_kernels():
    rng = np.random.default_rng(13)
    x = rng.normal(0, 1, (2, 30, LOG_A.size)).astype("float32")
    y0 = rng.normal(0, 1, (2, LOG_A.size)).astype("float32")
    assert_filter_close(
        numpy(kernels.lowpass_naive(x, LOG_A, y0)),
        references.lowpass_log_a(x, LOG_A, y0),
    )
    y, _ = kernels.alpha_naive(x, LOG_A, (y0, y0))
    assert_filter_close(numpy(y), references.alpha_states(x, LOG_A, y0, y0)[0])


# -------------------------------------------------------------- gradients ---

GRAD_LOG_A = np.array([-0.002, -0.05, -0.4, -3.0], "float32")


@pytest.mark.parametrize("filter_name", ["lowpass", "alpha"])
@pytest.mark.parametrize("steps", [3, 300])
def test_filter_gradients(filter_name, steps):
    """Backend autodiff (the adjoint) against float64 finite differences.

    The loss is a fixed random weighting of the output, so every step and
    unit contributes; gradients for ``log_a`` (so ``tau``), the initial
    level(s) and the input.
    """
    rng = np.random.default_rng(14 + steps)
    x = rng.normal(0, 1, (2, steps, GRAD_LOG_A.size)).astype("float32")
    y0 = rng.normal(0, 1, (2, GRAD_LOG_A.size)).astype("float32")
    weight_np = rng.normal(0, 1, x.shape).astype("float32")
    weight = ops.convert_to_tensor(weight_np)

    if filter_name == "lowpass":

        def loss(x, log_a, y0):
            return ops.sum(kernels.lowpass(x, log_a, y0) * weight)

        def reference(x, log_a, y0):
            return np.sum(references.lowpass_log_a(x, log_a, y0) * weight_np)

    else:

        def loss(x, log_a, y0):
            return ops.sum(kernels.alpha(x, log_a, (y0, 0.5 * y0))[0] * weight)

        def reference(x, log_a, y0):
            return np.sum(
                references.alpha_states(x, log_a, y0, 0.5 * y0)[0] * weight_np
            )

    value, (grad_x, grad_log_a, grad_y0) = gradients(loss, x, GRAD_LOG_A, y0, jit=True)
    np.testing.assert_allclose(value, reference(x, GRAD_LOG_A, y0), rtol=1e-5)

    x64, la64, y064 = (np.asarray(v, np.float64) for v in (x, GRAD_LOG_A, y0))
    fd_log_a = references.finite_difference(
        lambda v: reference(x64, v, y064), la64, 1e-6
    )
    fd_y0 = references.finite_difference(lambda v: reference(x64, la64, v), y064, 1e-4)
    np.testing.assert_allclose(grad_log_a, fd_log_a, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(grad_y0, fd_y0, rtol=1e-3, atol=1e-5)
    # the input gradient: the loss is linear in x, so a directional check
    # along random directions is exact up to rounding
    for seed in range(3):
        direction = np.random.default_rng(seed).normal(size=x.shape)
        fd = (
            reference(x64 + direction, la64, y064)
            - reference(x64 - direction, la64, y064)
        ) / 2
        np.testing.assert_allclose(np.sum(grad_x * direction), fd, rtol=1e-4)


def test_lowpass_gradient_is_independent_of_chunking():
    rng = np.random.default_rng(15)
    x = rng.normal(0, 1, (2, 45, GRAD_LOG_A.size)).astype("float32")
    y0 = rng.normal(0, 1, (2, GRAD_LOG_A.size)).astype("float32")
    results = []
    for plan in [
        kernels.Plan("chunked", levels=2, chunk=3),
        kernels.Plan("direct"),
        kernels.Plan("loop"),
        kernels.Plan("unrolled"),
    ]:

        def loss(x, log_a, y0, plan=plan):
            y = kernels.lowpass(x, log_a, y0, plan=plan)
            return ops.sum(y * y)

        results.append(gradients(loss, x, GRAD_LOG_A, y0, jit=True)[1])
    for other in results[1:]:
        for got, want in zip(other, results[0], strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------- initial voltages ---


def reference_seeded_uniform(batch_size, units, seed):
    """The hash of ``seeded_uniform`` in Python integers, for the unit
    indices ``units``:
    five rounds ``h = ((h + index) * m + o) ** 3 mod p`` per lane (indices:
    unit mod p, unit div p, batch mod p, batch div p, none), two lanes, then
    ``(high * p + low) / p**2`` in float32."""
    p = seeded_uniform._PRIME
    out = np.empty((batch_size, len(units)), np.float32)
    for b in range(batch_size):
        for column, n in enumerate(units):
            lanes = []
            for constants in seeded_uniform._LANES:
                h = seed % p
                for index, (m, o) in zip(
                    (n % p, n // p, b % p, b // p, 0), constants, strict=True
                ):
                    h = ((h + index) * m + o) % p
                    h = h**3 % p
                lanes.append(h)
            value = np.float32(lanes[0] * p + lanes[1]) * np.float32(1.0 / (p * p))
            out[b, column] = min(value, np.float32(1.0 - 2.0**-24))
    return out


@pytest.mark.parametrize("seed", [0, 123456789])
def test_seeded_uniform_matches_integer_reference(seed):
    """Both ways of computing the hash give the reference bit for bit: NumPy
    (an int batch size: a constant in the graph) and ``keras.ops`` (what a
    symbolic batch size, as in exports, runs)."""
    # past 46337 units the unit index's high part is used too
    units = list(range(0, 46340, 97)) + [46336, 46337, 46339]
    reference = reference_seeded_uniform(5, units, seed)
    static = numpy(seeded_uniform.seeded_uniform(5, 46340, seed))[:, units]
    traced = run_jit(lambda: seeded_uniform._seeded_uniform(5, 46340, seed, ops))[
        :, units
    ]
    np.testing.assert_array_equal(static, reference)
    np.testing.assert_array_equal(traced, reference)


# ----------------------------------------------------- package and backends ---

#: The names ``keras_spiking.kernels`` offered as one module, before it was
#: split into a package by kernel family.
PUBLIC_NAMES = (
    "CHUNK DYNAMIC_LEVELS FILTER_LOOP_MAX FORMS FRACTION_BITS LEVEL_FLOOR "
    "SPIKE_DIRECT_MAX Plan alpha alpha_naive choose_plan forced_form "
    "if_spike_train integrate_fire integrate_fire_naive integrate_spikes "
    "integrate_spikes_naive lowpass lowpass_naive spike_train"
).split()

FUSED = ("fused_spikes", "fused_fire", "fused_lowpass")


def test_kernels_package_offers_every_public_name():
    missing = [name for name in PUBLIC_NAMES if not hasattr(kernels, name)]
    assert not missing
    assert sorted(kernels.__all__) == sorted(PUBLIC_NAMES)
    assert (kernels.CHUNK, kernels.FRACTION_BITS, kernels.LEVEL_FLOOR) == (
        8,
        24,
        -(2**24),
    )


@pytest.mark.parametrize("module", ["_tensorflow", "_jax", "_torch"])
def test_every_backend_provides_the_fused_kernels_as_functions(module):
    """The same set of functions everywhere: a kernel only tests what they
    return (None: no native form), never whether they exist."""
    shim = importlib.import_module(f"keras_spiking.backend.{module}")
    assert all(callable(getattr(shim, name)) for name in FUSED)
    if module != "_torch":  # XLA compiles these backends' kernels: never native
        x = np.zeros((1, 2, 3), "float32")
        assert shim.fused_spikes(x, 0.001, x[:, 0], 8, 0, 24, None) is None
        assert shim.fused_fire(x, x[:, 0], -(2**24), 2**25, 8, 0, None) is None
        assert shim.fused_lowpass(x, x[0, 0], x[:, 0]) is None


@pytest.mark.parametrize("form", ["direct", "chunked"])
def test_kernels_run_the_generic_form_where_the_fused_one_returns_none(
    form, monkeypatch
):
    calls = []

    def declining(*args):
        calls.append(len(args))
        return None

    for name in FUSED:
        monkeypatch.setattr(kernels._backend, name, declining)
    rng = np.random.default_rng(5)
    x = random_increments(rng, (2, 20, 3))
    v0 = rng.uniform(0, 1, (2, 3)).astype("float32")
    plan = kernels.Plan(form) if form == "direct" else kernels.Plan(form, 1)
    counts, voltage = (numpy(v) for v in kernels.spike_train(x, 1.0, v0, plan=plan))
    check_spikes(counts, voltage, x, v0)
    fired, _ = kernels.if_spike_train(x, 1.0, (v0, np.zeros_like(v0)), plan=plan)
    np.testing.assert_array_equal(numpy(fired), np.round(numpy(fired)))
    log_a = np.full((3,), -0.1, "float32")
    y = kernels.lowpass(x, log_a, v0, plan=kernels.Plan("loop"))
    assert_filter_close(numpy(y), references.lowpass_log_a(x, log_a, v0))
    # spikes; integrate-and-fire (its spikes, its levels); lowpass
    assert calls == [7, 7, 7, 3]


def test_kernels_use_what_a_fused_kernel_returns(monkeypatch):
    marker = object()
    monkeypatch.setattr(kernels._backend, "fused_lowpass", lambda *args: marker)
    x = np.zeros((1, 4, 2), "float32")
    plan = kernels.Plan("loop")
    assert kernels.lowpass(x, np.zeros(2, "float32"), x[:, 0], plan=plan) is marker
