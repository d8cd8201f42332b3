"""``TemporalAvgPool``: the mean over the time axis (``tests/references.py``)."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_spiking import TemporalAvgPool
from tests import references
from tests.harness import gradients, numpy


@pytest.mark.parametrize("shape", [(3, 7, 4), (2, 33, 3, 2), (2, 1, 5)])
def test_mean_over_time_matches_reference(shape):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    y = numpy(TemporalAvgPool()(x))
    assert y.shape == shape[:1] + shape[2:]
    np.testing.assert_allclose(y, references.temporal_avg_pool(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(7, 3, 4), (33, 2, 3, 2)])
def test_time_major_averages_axis_zero(shape):
    x = np.random.default_rng(1).normal(size=shape).astype("float32")
    y = numpy(TemporalAvgPool(time_major=True)(x))
    assert y.shape == shape[1:]
    np.testing.assert_allclose(
        y, references.temporal_avg_pool(x, time_axis=0), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("time_major", [False, True])
def test_compute_output_shape_removes_time_axis(time_major):
    layer = TemporalAvgPool(time_major=time_major)
    shape = (None, 4, 3, 2) if time_major else (4, None, 3, 2)
    assert layer.compute_output_shape(shape) == (4, 3, 2)
    assert layer.compute_output_shape((5, 6, 7)) == ((6, 7) if time_major else (5, 7))


def test_variable_time_length():
    inp = keras.Input((None, 3, 2))
    model = keras.Model(inp, TemporalAvgPool()(inp))
    assert model.output.shape == (None, 3, 2)
    rng = np.random.default_rng(2)
    for steps in (5, 17):
        x = rng.normal(size=(4, steps, 3, 2)).astype("float32")
        np.testing.assert_allclose(
            model.predict(x, verbose=0),
            references.temporal_avg_pool(x),
            rtol=1e-5,
            atol=1e-6,
        )


def test_gradient_is_one_over_steps():
    x = np.random.default_rng(3).normal(size=(2, 8, 3)).astype("float32")
    weights = np.random.default_rng(4).normal(size=(2, 3)).astype("float32")
    layer = TemporalAvgPool()

    def loss(x):
        return ops.sum(layer(x) * ops.convert_to_tensor(weights))

    _, (grad,) = gradients(loss, x)
    np.testing.assert_allclose(
        grad, np.broadcast_to(weights[:, None] / 8, x.shape), rtol=1e-6
    )


def test_mixed_precision_output():
    x = np.random.default_rng(5).normal(size=(2, 8, 3)).astype("float32")
    y = TemporalAvgPool(dtype="mixed_float16")(x)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    np.testing.assert_allclose(
        numpy(y).astype(np.float64), references.temporal_avg_pool(x), atol=2e-3
    )


def test_config_round_trip_keeps_time_major():
    layer = TemporalAvgPool(time_major=True, name="pool")
    restored = TemporalAvgPool.from_config(layer.get_config())
    assert restored.time_major is True and restored.name == "pool"


@pytest.mark.parametrize("shape", [(2, 3), (5,)])
def test_rank_below_three_is_rejected(shape):
    layer = TemporalAvgPool(name="flat_pool")
    with pytest.raises(ValueError, match="flat_pool.*rank"):
        layer(np.zeros(shape, "float32"))
