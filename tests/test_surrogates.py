"""Surrogate gradients (``keras_spiking.surrogates``) against their formulas."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_spiking import surrogates
from keras_spiking.surrogates import (
    ATan,
    Boxcar,
    FastSigmoid,
    Sigmoid,
    StraightThrough,
    Triangle,
)
from tests.harness import gradients, numpy


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# (surrogate, derivative formula, primitive whose derivative it is), float64
# NumPy, written from the documented formulas.
CASES = {
    "fast_sigmoid": (
        FastSigmoid(slope=7.0),
        lambda u: 1 / (1 + 7 * np.abs(u)) ** 2,
        lambda u: u / (1 + 7 * np.abs(u)),
    ),
    "atan": (
        ATan(alpha=3.0),
        lambda u: 1.5 / (1 + (math.pi / 2 * 3 * u) ** 2),
        lambda u: np.arctan(math.pi / 2 * 3 * u) / math.pi + 0.5,
    ),
    "sigmoid": (
        Sigmoid(slope=5.0),
        lambda u: 5 * _sigmoid(5 * u) * (1 - _sigmoid(5 * u)),
        lambda u: _sigmoid(5 * u),
    ),
    "triangle": (
        Triangle(width=0.8),
        lambda u: np.maximum(0, 1 - np.abs(u) / 0.8) / 0.8,
        lambda u: (
            np.sign(u)
            * np.where(np.abs(u) < 0.8, np.abs(u) / 0.8 - u**2 / (2 * 0.8**2), 0.5)
        ),
    ),
    "boxcar": (
        Boxcar(width=0.4),
        lambda u: np.where(np.abs(u) < 0.4, 1 / 0.8, 0.0),
        lambda u: np.clip(u / 0.8, -0.5, 0.5),
    ),
    "straight_through": (StraightThrough(), lambda u: np.ones_like(u), lambda u: u),
}
NAMES = sorted(CASES)

#: Derivatives of the default-parameter surrogates (for ``tests.test_lif``).
DEFAULT_DERIVATIVES = {
    "fast_sigmoid": lambda u: 1 / (1 + 25 * np.abs(u)) ** 2,
    "atan": lambda u: 1 / (1 + (math.pi * u) ** 2),
    "sigmoid": lambda u: 25 * _sigmoid(25 * u) * (1 - _sigmoid(25 * u)),
    "triangle": lambda u: np.maximum(0, 1 - np.abs(u)),
    "boxcar": lambda u: np.where(np.abs(u) < 0.5, 1.0, 0.0),
    "straight_through": lambda u: np.ones_like(u),
}

# Away from the kinks of triangle and boxcar (|u| = 0, 0.4, 0.8).
U = np.array([-2.5, -0.9, -0.55, -0.31, -0.1, -0.02, 0.013, 0.07, 0.2, 0.37, 0.6, 3.0])


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_formula(name):
    surrogate, formula, _ = CASES[name]
    actual = numpy(surrogate.derivative(ops.convert_to_tensor(U, "float32")))
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, formula(U), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_formula_is_derivative_of_its_primitive(name):
    """The formulas above are what they claim: central differences of the
    primitive (float64) agree with them."""
    _, formula, primitive = CASES[name]
    h = 1e-6
    numeric = (primitive(U + h) - primitive(U - h)) / (2 * h)
    np.testing.assert_allclose(numeric, formula(U), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["atan", "sigmoid", "triangle", "boxcar"])
def test_bump_integrates_to_one(name):
    surrogate, _, _ = CASES[name]
    u = np.linspace(-400, 400, 800_001)
    values = numpy(surrogate.derivative(ops.convert_to_tensor(u, "float32")))
    assert abs(np.trapezoid(values.astype(np.float64), u) - 1) < 2e-3


@pytest.mark.parametrize("name", NAMES)
def test_defaults(name):
    surrogate = surrogates.get(name)
    actual = numpy(surrogate.derivative(ops.convert_to_tensor(U, "float32")))
    np.testing.assert_allclose(
        actual, DEFAULT_DERIVATIVES[name](U), rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("height", [1.0, 250.0])
def test_spike_fn_forward_and_gradient(name, height):
    surrogate, formula, _ = CASES[name]
    u = np.array([-0.3, -1e-4, 0.0, 1e-4, 0.25, 0.6], np.float32)
    upstream = np.array([1.0, -2.0, 0.5, 3.0, -1.5, 2.0], np.float32)

    spikes = numpy(surrogates.spike_fn(ops.convert_to_tensor(u), surrogate, height))
    np.testing.assert_array_equal(spikes, [0, 0, height, height, height, height])

    def fn(u, h):
        return ops.sum(
            surrogates.spike_fn(u, surrogate, h) * ops.convert_to_tensor(upstream)
        )

    # the height as a tensor, compiled under JAX
    value, (du, dh) = gradients(fn, u, np.float32(height), jit=True)
    assert value == pytest.approx(height * upstream[2:].sum())
    np.testing.assert_allclose(
        du, height * upstream * formula(u.astype(np.float64)), rtol=1e-5
    )
    assert dh == 0


def test_spike_fn_accepts_names():
    def fn(u):
        return ops.sum(surrogates.spike_fn(u, "ATan"))

    _, (du,) = gradients(fn, np.array([0.5], np.float32))
    np.testing.assert_allclose(du, DEFAULT_DERIVATIVES["atan"](0.5), rtol=1e-6)


# ------------------------------------------------------------------ get ---


@pytest.mark.parametrize(
    "identifier, cls",
    [
        ("fast_sigmoid", FastSigmoid),
        ("FastSigmoid", FastSigmoid),
        ("FASTSIGMOID", FastSigmoid),
        ("atan", ATan),
        ("ATan", ATan),
        ("Sigmoid", Sigmoid),
        ("triangle", Triangle),
        ("Boxcar", Boxcar),
        ("straight_through", StraightThrough),
        ("StraightThrough", StraightThrough),
        ("keras_spiking>FastSigmoid", FastSigmoid),
    ],
)
def test_get_by_name(identifier, cls):
    surrogate = surrogates.get(identifier)
    assert type(surrogate) is cls
    assert surrogate == cls()


def test_get_instance_and_config_round_trip():
    surrogate = ATan(alpha=4.5)
    assert surrogates.get(surrogate) is surrogate
    config = surrogates.serialize(surrogate)
    assert config["registered_name"] == "keras_spiking>ATan"
    restored = surrogates.get(config)
    assert restored == surrogate and restored is not surrogate
    assert surrogates.get({"class_name": "fast_sigmoid", "config": {"slope": 3}}) == (
        FastSigmoid(3.0)
    )
    assert surrogates.get({"class_name": "StraightThrough"}) == StraightThrough()
    for name in NAMES:
        surrogate = CASES[name][0]
        assert type(surrogate).from_config(surrogate.get_config()) == surrogate
    assert repr(Triangle(0.8)) == "Triangle(width=0.8)"
    assert FastSigmoid(2) != FastSigmoid(3) and FastSigmoid(2) != Sigmoid(2)


@keras.saving.register_keras_serializable(package="keras_spiking_tests")
class Gaussian(surrogates.Surrogate):
    """A user-defined surrogate, as the module docstring shows."""

    def __init__(self, sigma=0.5):
        self.sigma = float(sigma)

    def derivative(self, u):
        z = u / self.sigma
        return ops.exp(-0.5 * z * z) / (self.sigma * math.sqrt(2 * math.pi))

    def get_config(self):
        return {"sigma": self.sigma}


def test_user_defined_surrogate():
    surrogate = surrogates.get(surrogates.serialize(Gaussian(0.3)))
    assert surrogate == Gaussian(0.3)
    assert surrogates.get("keras_spiking_tests>Gaussian") == Gaussian()

    def fn(u):
        return ops.sum(surrogates.spike_fn(u, surrogate))

    u = np.array([-0.2, 0.1], np.float32)
    _, (du,) = gradients(fn, u)
    expected = np.exp(-0.5 * (u / 0.3) ** 2) / (0.3 * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(du, expected, rtol=1e-5)


@pytest.mark.parametrize(
    "identifier",
    ["superspike", "fast-sigmoidal", {"class_name": "nope"}, {"config": {}}],
)
def test_get_unknown_lists_known_names(identifier):
    with pytest.raises(ValueError, match="fast_sigmoid, sigmoid, straight_through"):
        surrogates.get(identifier)


def test_get_wrong_type():
    with pytest.raises(TypeError, match="got 3 of type int"):
        surrogates.get(3)
    # a registered object that is not a surrogate
    with pytest.raises(ValueError, match="atan"):
        surrogates.get("keras_spiking>Mean")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: FastSigmoid(0), "FastSigmoid expects `slope`"),
        (lambda: ATan(-1), "ATan expects `alpha`"),
        (lambda: Sigmoid(float("inf")), "Sigmoid expects `slope`"),
        (lambda: Triangle("wide"), "Triangle expects `width`"),
        (lambda: Boxcar(True), "Boxcar expects `width`"),
    ],
)
def test_bad_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_base_class_needs_a_derivative():
    with pytest.raises(NotImplementedError, match="must implement derivative"):
        surrogates.Surrogate().derivative(ops.zeros((2,)))
