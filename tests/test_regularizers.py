"""``keras_spiking.regularizers`` and ``keras_spiking.constraints``' serialisation."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_spiking
from keras_spiking import regularizers

X = np.array([[-1.0, 0.5, 1.0, 2.0], [3.0, 4.5, 2.5, 0.0]], "float32")


def np_distance(x, target):
    """Distance from a target value, or from a (min, max) range (0 inside)."""
    if isinstance(target, tuple):
        return x - np.clip(x, *target)
    return x - target


def value(regularizer, x=X):
    return float(ops.convert_to_numpy(regularizer(ops.convert_to_tensor(x))))


@pytest.mark.parametrize("target", [0.0, 1.5, (0.5, 2.5), (-2.0, 5.0)])
def test_l1l2_values(target):
    d = np_distance(X, target)
    np.testing.assert_allclose(
        value(regularizers.L1L2(l1=0.1, l2=0.2, target=target)),
        0.1 * np.abs(d).sum() + 0.2 * (d**2).sum(),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        value(regularizers.L1(0.3, target=target)), 0.3 * np.abs(d).sum(), rtol=1e-6
    )
    np.testing.assert_allclose(
        value(regularizers.L2(0.4, target=target)), 0.4 * (d**2).sum(), rtol=1e-6
    )


@pytest.mark.parametrize("target", [1.0, (0.5, 2.5)])
def test_numpy_input(target):
    """Like Keras' own regularisers, they accept a NumPy array."""
    d = np_distance(X, target)
    l1, l2 = np.abs(d).sum(), (d**2).sum()
    cases = [
        (regularizers.L1L2(l1=0.1, l2=0.2, target=target), 0.1 * l1 + 0.2 * l2),
        (regularizers.L1(0.3, target=target), 0.3 * l1),
        (regularizers.L2(0.4, target=target), 0.4 * l2),
        (
            regularizers.RangedRegularizer(
                target=target, regularizer=keras.regularizers.L1(0.5)
            ),
            0.5 * l1,
        ),
    ]
    for reg, expected in cases:
        result = reg(X.copy())
        np.testing.assert_allclose(
            ops.convert_to_numpy(result), expected, rtol=1e-6, err_msg=repr(reg)
        )
    assert regularizers.RangedRegularizer(target=target).distance(X.copy()).shape == (
        X.shape
    )
    p = np.percentile(X, 90.0, axis=0)
    dp = np_distance(p, target)
    np.testing.assert_allclose(
        ops.convert_to_numpy(
            regularizers.Percentile(target=target, l2=0.3, percentile=90.0)(X.copy())
        ),
        0.3 * (dp**2).sum(),
        rtol=1e-5,
    )


def test_range_costs_nothing_inside_and_distance_outside():
    reg = regularizers.L1(1.0, target=(1.0, 3.0))
    assert value(reg, np.array([1.0, 2.0, 3.0], "float32")) == 0.0
    # 0.5 below the range and 1.5 above it.
    assert value(reg, np.array([0.5, 2.0, 4.5], "float32")) == pytest.approx(2.0)
    assert value(
        regularizers.L2(1.0, target=(1.0, 3.0)), np.array([4.0], "float32")
    ) == (pytest.approx(1.0))


def test_defaults():
    assert value(regularizers.L1(), X) == pytest.approx(0.01 * np.abs(X).sum())
    assert value(regularizers.L2(), X) == pytest.approx(0.01 * (X**2).sum())
    with pytest.warns(UserWarning, match="weight is zero"):
        assert value(regularizers.L1L2(), X) == 0.0
    assert value(regularizers.RangedRegularizer(), X) == pytest.approx(
        0.01 * (X**2).sum()
    )


def test_ranged_regularizer_wraps_any_keras_regularizer():
    reg = regularizers.RangedRegularizer(
        target=(0.0, 2.0), regularizer=keras.regularizers.L1(0.5)
    )
    d = np_distance(X, (0.0, 2.0))
    assert value(reg) == pytest.approx(0.5 * np.abs(d).sum())
    reg = regularizers.RangedRegularizer(target=1.0, regularizer="l2")
    assert value(reg) == pytest.approx(0.01 * ((X - 1.0) ** 2).sum())


@pytest.mark.parametrize(
    "percentile, axis, target",
    [(99.0, 0, 0.0), (90.0, 0, (0.5, 2.0)), (50.0, 1, 1.0), (75.0, None, (0.0, 1.0))],
)
def test_percentile_values(percentile, axis, target):
    x = np.random.RandomState(1).uniform(0, 3, size=(7, 5)).astype("float32")
    p = np.percentile(x, percentile, axis=axis)
    d = np_distance(p, target)
    reg = regularizers.Percentile(
        target=target, l1=0.2, l2=0.3, percentile=percentile, axis=axis
    )
    np.testing.assert_allclose(
        value(reg, x), 0.2 * np.abs(d).sum() + 0.3 * (d**2).sum(), rtol=1e-5
    )


def test_activity_regularizer_on_spiking_activation_sees_spikes_over_batch():
    """Keras 3 divides an activity regulariser by the batch size."""
    dt = 0.01
    layer = keras_spiking.SpikingActivation(
        "relu",
        dt=dt,
        seed=0,
        activity_regularizer=regularizers.L2(1e-3, target=(0, 50)),
    )
    x = np.random.RandomState(0).uniform(0, 200, size=(3, 10, 4)).astype("float32")
    spikes = ops.convert_to_numpy(layer(x))
    assert set(np.unique(spikes)) <= {0.0, 1 / dt, 2 / dt, 3 / dt}
    d = np_distance(spikes, (0.0, 50.0))
    expected = 1e-3 * (d**2).sum() / 3  # batch size 3
    (loss,) = layer.losses
    assert float(ops.convert_to_numpy(loss)) == pytest.approx(expected, rel=1e-5)


def rate_model(regularizer):
    inp = keras.Input((10, 8))
    # The same weights on every backend (seeded Keras initializers differ).
    kernel = np.random.RandomState(1).uniform(0, 20, (8, 16)).astype("float32")
    h = keras.layers.Dense(16, kernel_initializer=keras.initializers.Constant(kernel))(
        inp
    )
    spikes = keras_spiking.SpikingActivation("relu", dt=0.01, seed=0)(h)
    rates = keras_spiking.TemporalAvgPool(activity_regularizer=regularizer)(spikes)
    return keras.Model(inp, rates)


def test_training_moves_mean_rate_to_target():
    x = np.random.RandomState(0).uniform(0, 1, (64, 10, 8)).astype("float32")
    model = rate_model(regularizers.L2(1e-2, target=10.0))
    before = model.predict(x, verbose=0).mean()
    # No task loss: the regulariser is the whole loss.
    model.compile(optimizer=keras.optimizers.SGD(5.0))
    model.fit(x, epochs=25, batch_size=64, verbose=0)
    after = model.predict(x, verbose=0).mean()
    assert before > 30
    assert abs(after - 10.0) < 1.5


def test_training_with_percentile_limits_high_rates():
    x = np.random.RandomState(0).uniform(0, 1, (64, 10, 8)).astype("float32")
    model = rate_model(regularizers.Percentile(target=(0, 20), l2=0.5, percentile=90.0))
    before = np.percentile(model.predict(x, verbose=0), 90, axis=0)
    model.compile(optimizer=keras.optimizers.SGD(5.0))
    model.fit(x, epochs=25, batch_size=64, verbose=0)
    after = np.percentile(model.predict(x, verbose=0), 90, axis=0)
    assert before.max() > 50
    # A rate over 10 steps of 0.01 s is a multiple of 10 Hz, and the initial
    # voltage can add one spike (10 Hz) to a neuron firing at 20 Hz: so the
    # bound is the target plus one spike, and most neurons meet the target.
    assert after.max() <= 20 + 10
    assert np.median(after) <= 20


ALL = [
    regularizers.RangedRegularizer(
        target=(1, 2), regularizer=keras.regularizers.L1(0.3)
    ),
    regularizers.L1L2(l1=0.1, l2=0.2, target=(0.5, 1.5)),
    regularizers.L1(0.3, target=2.0),
    regularizers.L2(0.4, target=(0, 20)),
    regularizers.Percentile(target=(0, 100), l1=0.1, l2=0.2, percentile=95.0, axis=1),
]


@pytest.mark.parametrize("reg", ALL, ids=lambda r: type(r).__name__)
def test_serialization_round_trip(reg):
    config = keras.regularizers.serialize(reg)
    assert config["registered_name"] == f"keras_spiking>{type(reg).__name__}"
    restored = keras.regularizers.deserialize(config)
    assert type(restored) is type(reg)
    assert restored.get_config() == reg.get_config()
    assert value(restored) == pytest.approx(value(reg), rel=1e-6)


def test_saved_model_keeps_regularizers_and_constraint(tmp_path):
    inp = keras.Input((5, 3))
    x = keras_spiking.Lowpass(
        0.01, tau_constraint=keras_spiking.constraints.Mean(axis=0)
    )(inp)
    x = keras_spiking.SpikingActivation(
        "relu", activity_regularizer=regularizers.L2(0.1, target=(1, 2))
    )(x)
    out = keras_spiking.TemporalAvgPool(
        activity_regularizer=regularizers.Percentile(target=(0, 50), l2=0.1)
    )(x)
    model = keras.Model(inp, out)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for name in ("spiking_activation", "temporal_avg_pool"):
        original = model.get_layer(name).activity_regularizer
        restored = loaded.get_layer(name).activity_regularizer
        assert type(restored) is type(original)
        assert restored.get_config() == original.get_config()
    constraint = loaded.get_layer("lowpass").tau_constraint
    assert isinstance(constraint, keras_spiking.constraints.Mean)
    assert constraint.axis == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="`minimum` cannot exceed `maximum`"):
        regularizers.L2(target=(3, 1))
    with pytest.raises(ValueError, match="target"):
        regularizers.L1(target="high")
    with pytest.raises(ValueError, match="tuple with two elements"):
        regularizers.L1(target=(1, 2, 3))
    with pytest.raises(ValueError, match="l1"):
        regularizers.L1L2(l1=-1)
    for bad in (-0.1, 101, "99"):
        with pytest.raises(ValueError, match="percentile"):
            regularizers.Percentile(percentile=bad, l1=0.1)
