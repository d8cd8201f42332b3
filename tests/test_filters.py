"""``Lowpass`` and ``Alpha`` against their formulas (``tests/references.py``)."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_spiking
from keras_spiking import Alpha, Lowpass
from tests import references
from tests.harness import gradients, numpy

FILTERS = {"Lowpass": (Lowpass, references.lowpass), "Alpha": (Alpha, references.alpha)}
NAMES = sorted(FILTERS)


def built(cls, shape, tau, level, **kwargs):
    """A filter built for ``shape`` with the given per-feature tau and level."""
    layer = cls(0.01, **kwargs)
    layer.build(shape)
    layer.tau.assign(np.broadcast_to(tau, layer.tau.shape).astype("float32"))
    layer.initial_level.assign(
        np.broadcast_to(level, layer.initial_level.shape).astype("float32")
    )
    layer.reset_state()  # a stateful layer starts from the new level
    return layer


def case(shape, seed=0):
    """Input signal, per-feature taus and levels for ``shape``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, size=shape).astype("float32")
    tau = rng.uniform(0.002, 0.05, size=shape[2:]).astype("float32")
    level = rng.normal(0, 1, size=shape[2:]).astype("float32")
    return x, tau, level


def assert_close(actual, expected, scale=1.0, tol=2e-5):
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


# --------------------------------------------------------------- formula ---


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "shape, dt",
    [
        ((3, 1, 4), 0.001),  # one step
        ((3, 5, 4), 0.004),  # under one chunk
        ((2, 70, 3, 2), 0.001),  # chunks and a remainder, two feature axes
        ((1, 1100, 2), 0.004),  # chunks of chunks
    ],
)
def test_filter_matches_reference(name, shape, dt):
    cls, reference = FILTERS[name]
    x, tau, level = case(shape)
    layer = built(cls, shape, tau, level, dt=dt)
    y = numpy(layer(x))
    assert y.shape == shape and layer.tau.shape == shape[2:]
    assert_close(y, reference(x, tau, dt, level), scale=np.abs(x).max())


@pytest.mark.parametrize("name", NAMES)
def test_filter_weights_from_initializers(name):
    cls, reference = FILTERS[name]
    x, _, _ = case((2, 40, 3, 2))
    layer = cls(
        keras.initializers.RandomUniform(0.003, 0.03, seed=2),
        level_initializer=keras.initializers.RandomNormal(seed=3),
    )
    y = numpy(layer(x))
    tau, level = numpy(layer.tau), numpy(layer.initial_level)
    assert tau.shape == level.shape == (3, 2)
    assert len(np.unique(tau)) == tau.size and tau.min() >= 0.003
    assert_close(y, reference(x, tau, 0.001, level), scale=3)


@pytest.mark.parametrize("name", NAMES)
def test_filter_float_tau_and_default_level(name):
    cls, reference = FILTERS[name]
    x, _, _ = case((2, 40, 3))
    layer = cls(0.02)
    y = numpy(layer(x))
    np.testing.assert_array_equal(numpy(layer.tau), np.full(3, 0.02, "float32"))
    np.testing.assert_array_equal(numpy(layer.initial_level), np.zeros(3))
    assert_close(y, reference(x, 0.02, 0.001, 0.0), scale=3)


@pytest.mark.parametrize("name", NAMES)
def test_filter_at_rest_stays_at_level(name):
    cls, _ = FILTERS[name]
    layer = built(cls, (2, 50, 3), 0.01, [0.5, -2.0, 3.0])
    y = numpy(layer(np.broadcast_to([0.5, -2.0, 3.0], (2, 50, 3)).astype("float32")))
    assert_close(y, np.broadcast_to([0.5, -2.0, 3.0], (2, 50, 3)), scale=3)


@pytest.mark.parametrize("tau", [0.005, 0.02])
def test_lowpass_step_response_is_continuous_step_response(tau):
    dt = 0.001
    layer = built(Lowpass, (1, 100, 1), tau, 0.0, dt=dt)
    y = numpy(layer(np.ones((1, 100, 1), "float32")))[0, :, 0]
    t = (np.arange(100) + 1) * dt
    assert_close(y, references.lowpass_step_response(t, tau))


@pytest.mark.parametrize("tau", [0.005, 0.02])
def test_alpha_step_and_impulse_responses_are_continuous_ones(tau):
    """Exact zero-order hold: step response = s((t+1) dt), sampled exactly."""
    dt, steps = 0.001, 300
    t = np.arange(steps + 1) * dt
    step = references.alpha_step_response(t, tau)

    layer = built(Alpha, (1, steps, 1), tau, 0.0, dt=dt)
    y = numpy(layer(np.ones((1, steps, 1), "float32")))[0, :, 0]
    assert_close(y, step[1:])

    impulse = np.zeros((1, steps, 1), "float32")
    impulse[0, 0, 0] = 1 / dt
    y = numpy(layer(impulse))[0, :, 0]
    # Held for one step: the step response's increments.
    assert_close(y * dt, np.diff(step), tol=1e-5)
    # ... which sample h(t) (integral 1) to within the step's curvature.
    h = references.alpha_impulse_response(t[:-1] + dt / 2, tau)
    np.testing.assert_allclose(y, h, atol=0.02 * h.max())
    assert y.sum() * dt == pytest.approx(step[-1], rel=1e-4)


# ------------------------------------------------------------ gradients ---


@pytest.mark.parametrize("name", NAMES)
def test_filter_gradients_match_reference(name):
    cls, reference = FILTERS[name]
    dt, shape = 0.002, (2, 9, 3)
    x, tau, level = case(shape, seed=4)
    weights = np.random.default_rng(5).normal(size=shape)
    layer = cls(0.01, dt=dt)
    layer.build(shape)

    def loss(tau, level, x):
        y = layer.stateless_call([tau, level], [], x, training=True)[0]
        return ops.sum(y * ops.convert_to_tensor(weights, "float32"))

    value, (g_tau, g_level, g_x) = gradients(loss, tau, level, x)

    def ref_loss(tau=tau, level=level, x=x):
        return np.sum(reference(x, tau, dt, level) * weights)

    assert value == pytest.approx(ref_loss(), rel=1e-4)
    np.testing.assert_allclose(
        g_tau,
        references.finite_difference(lambda v: ref_loss(tau=v), tau, 1e-6),
        rtol=1e-3,
    )
    np.testing.assert_allclose(
        g_level,
        references.finite_difference(lambda v: ref_loss(level=v), level, 1e-3),
        rtol=1e-4,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        g_x,
        references.finite_difference(lambda v: ref_loss(x=v), x, 1e-3),
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.parametrize("name", NAMES)
def test_apply_during_training_false_is_identity_in_training(name):
    cls, reference = FILTERS[name]
    shape = (2, 12, 3)
    x, tau, level = case(shape)
    layer = built(cls, shape, tau, level, apply_during_training=False)
    np.testing.assert_array_equal(numpy(layer(x, training=True)), x)
    assert_close(numpy(layer(x)), reference(x, tau, 0.001, level), scale=3)

    def loss(tau, level, x):
        return ops.sum(layer.stateless_call([tau, level], [], x, training=True)[0])

    _, (g_tau, g_level, g_x) = gradients(loss, tau, level, x)
    np.testing.assert_array_equal(g_tau, 0)
    np.testing.assert_array_equal(g_level, 0)
    np.testing.assert_array_equal(g_x, 1)


@pytest.mark.parametrize("name", NAMES)
def test_constraints_apply_to_tau_and_level(name):
    cls, _ = FILTERS[name]
    layer = cls(
        0.01,
        tau_constraint=keras.constraints.MinMaxNorm(0.0, 1.0, axis=[]),
        initial_level_constraint=keras.constraints.NonNeg(),
    )
    layer.build((2, 5, 3))
    optimizer = keras.optimizers.SGD(learning_rate=1.0)
    optimizer.apply(
        [ops.full((3,), -4.0), ops.full((3,), 2.0)],
        [layer.tau, layer.initial_level],
    )
    # tau would be 4.01 and the level -2 without the constraints.
    np.testing.assert_allclose(numpy(layer.tau), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(numpy(layer.initial_level), 0.0)
    config = layer.get_config()
    restored = cls.from_config(config)
    assert isinstance(restored.tau_constraint, keras.constraints.MinMaxNorm)
    assert isinstance(restored.initial_level_constraint, keras.constraints.NonNeg)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tau", [0.0, -0.01])
def test_tau_is_clipped_positive_in_forward_pass(name, tau):
    """A non-positive tau (after training) acts as a tiny one: the identity."""
    cls, reference = FILTERS[name]
    x, _, level = case((2, 10, 3))
    layer = built(cls, (2, 10, 3), 0.01, level)
    layer.tau.assign(np.full(3, tau, "float32"))
    y = numpy(layer(x))
    assert np.isfinite(y).all()
    expected = reference(x, keras.config.epsilon(), 0.001, level)
    np.testing.assert_allclose(expected, x, atol=1e-6)
    # Alpha mixes its two stages with weights ~dt/tau = 1e4: float32 rounding
    # of those terms is ~1e4 * 2**-24 * |x| per term.
    np.testing.assert_allclose(y, expected, atol=1e-2 if cls is Alpha else 1e-6)


# ---------------------------------------------------------------- state ---


@pytest.mark.parametrize("name", NAMES)
def test_return_sequences_and_return_state(name):
    cls, reference = FILTERS[name]
    shape = (2, 40, 3, 2)
    x, tau, level = case(shape)
    ref = reference(x, tau, 0.001, level)
    layer = built(cls, shape, tau, level, return_sequences=False, return_state=True)
    result = layer(x)
    assert len(result) == 1 + cls.num_states
    last, *states = numpy(result)
    assert last.shape == (2, 3, 2) and all(s.shape == (2, 3, 2) for s in states)
    assert_close(last, ref[:, -1], scale=3)
    # The first state is the (first) lowpass stage's output.
    assert_close(states[0], references.lowpass(x, tau, 0.001, level)[:, -1], scale=3)
    if cls is Lowpass:
        assert_close(states[0], ref[:, -1], scale=3)


@pytest.mark.parametrize("name", NAMES)
def test_stateful_continues_and_reset_state_restarts(name):
    cls, reference = FILTERS[name]
    shape = (2, 30, 3)
    x, tau, level = case(shape)
    ref = reference(x, tau, 0.001, level)
    layer = built(cls, shape, tau, level, stateful=True)
    first = numpy(layer(x[:, :13]))
    second = numpy(layer(x[:, 13:]))
    assert_close(np.concatenate([first, second], axis=1), ref, scale=3)
    layer.reset_state()
    assert_close(numpy(layer(x[:, :13])), ref[:, :13], scale=3)


@pytest.mark.parametrize("name", NAMES)
def test_initial_state_argument(name):
    cls, reference = FILTERS[name]
    shape = (2, 20, 3)
    x, tau, _ = case(shape)
    start = np.random.default_rng(6).normal(size=(2, 3)).astype("float32")
    layer = built(cls, shape, tau, 0.0)
    y = numpy(layer(x, initial_state=[start] * cls.num_states))
    # Both stages at `start` is the filter at rest at `start`.
    assert_close(y, reference(x, tau, 0.001, start), scale=3)


@pytest.mark.parametrize("name", NAMES)
def test_time_major_matches_batch_major(name):
    cls, reference = FILTERS[name]
    shape = (3, 25, 2, 2)
    x, tau, level = case(shape)
    layer = built(cls, shape[1:2] + shape[:1] + shape[2:], tau, level, time_major=True)
    y = numpy(layer(np.swapaxes(x, 0, 1)))
    assert_close(np.swapaxes(y, 0, 1), reference(x, tau, 0.001, level), scale=3)


# ------------------------------------------------------------------- dt ---


@pytest.mark.parametrize("name", NAMES)
def test_dt_variable_changes_outputs_without_rebuilding(name):
    cls, reference = FILTERS[name]
    dt = keras.Variable(0.001, trainable=False, dtype="float32")
    x, _, _ = case((2, 20, 3))
    model = keras.Sequential([keras.Input((20, 3)), cls(0.01, dt=dt)])
    assert_close(model.predict(x, verbose=0), reference(x, 0.01, 0.001, 0), scale=3)
    dt.assign(0.005)
    assert_close(model.predict(x, verbose=0), reference(x, 0.01, 0.005, 0), scale=3)


@pytest.mark.parametrize("name", NAMES)
def test_default_dt_affects_only_layers_created_afterwards(name, monkeypatch):
    cls, reference = FILTERS[name]
    x, _, _ = case((2, 20, 3))
    before = cls(0.01)
    monkeypatch.setattr(keras_spiking.default, "dt", 0.004)
    after = cls(0.01)
    assert_close(numpy(before(x)), reference(x, 0.01, 0.001, 0), scale=3)
    assert_close(numpy(after(x)), reference(x, 0.01, 0.004, 0), scale=3)


@pytest.mark.parametrize("name", NAMES)
def test_mixed_precision_outputs(name):
    cls, reference = FILTERS[name]
    x, _, _ = case((2, 20, 3))
    layer = cls(0.01, dtype="mixed_float16")
    y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    assert keras.backend.standardize_dtype(layer.tau.dtype) == "float32"
    np.testing.assert_allclose(
        numpy(y).astype(np.float64), reference(x, 0.01, 0.001, 0), atol=5e-3
    )


# ------------------------------------------------------------ bad input ---


@pytest.mark.parametrize("name", NAMES)
def test_rank_below_three_is_rejected(name):
    layer = FILTERS[name][0](0.01, name="flat_filter")
    with pytest.raises(ValueError, match="flat_filter.*rank"):
        layer(np.zeros((2, 3), "float32"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dt", [0.0, -1.0])
def test_non_positive_dt_is_rejected(name, dt):
    with pytest.raises(ValueError, match="bad_dt.*dt"):
        FILTERS[name][0](0.01, dt=dt, name="bad_dt")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tau", [0.0, -0.01])
def test_non_positive_float_tau_is_rejected(name, tau):
    with pytest.raises(ValueError, match="bad_tau.*tau"):
        FILTERS[name][0](tau, name="bad_tau")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "initializer", ["zeros", keras.initializers.Constant(-0.01)], ids=["zeros", "neg"]
)
def test_non_positive_tau_initializer_is_rejected_at_build(name, initializer):
    layer = FILTERS[name][0](initializer, name="bad_tau")
    with pytest.raises(ValueError, match="bad_tau.*tau"):
        layer(np.zeros((2, 4, 3), "float32"))


@pytest.mark.parametrize("name", NAMES)
def test_stateful_needs_fixed_batch_size(name):
    layer = FILTERS[name][0](0.01, stateful=True, name="stateful_filter")
    with pytest.raises(ValueError, match="stateful_filter.*batch"):
        layer(keras.Input((None, 3)))


@pytest.mark.parametrize("name", NAMES)
def test_wrong_number_of_initial_states_is_rejected(name):
    cls = FILTERS[name][0]
    layer = cls(0.01, name="few_states")
    states = [np.zeros((2, 3), "float32")] * (cls.num_states + 1)
    with pytest.raises(ValueError, match="few_states.*initial state"):
        layer(np.zeros((2, 4, 3), "float32"), initial_state=states)
