r"""Surrogate gradients: smooth stand-ins for the derivative of a spike.

A spiking neuron fires when its voltage ``v`` reaches its threshold
``theta``: the spike is a step function of ``u = v - theta``,

.. math::

    z = H(u) = \begin{cases} 1, & u \ge 0 \\ 0, & u < 0 \end{cases}

whose derivative is zero almost everywhere, so gradient descent through it
learns nothing.  Surrogate-gradient training keeps the step on the forward
pass and, on the backward pass, replaces ``H'(u)`` by a smooth bump
``sigma'(u)`` (Neftci, Mostafa & Zenke 2019, "Surrogate gradient learning in
spiking neural networks", IEEE Signal Processing Magazine 36(6)).  Each class
here is one such ``sigma'``; ``spike_fn`` applies it.

Every surrogate is a function of ``u`` in the units of the voltage (the
threshold sits at ``u = 0``), so its width parameters are in the voltage's
units too.

Writing your own
----------------
Subclass ``Surrogate``, implement ``derivative(u)`` with ``keras.ops`` (so it
runs on every backend), return your arguments from ``get_config``, and
register the class so that models using it can be saved and loaded::

    import math

    import keras
    from keras import ops
    from keras_spiking import surrogates

    @keras.saving.register_keras_serializable(package="my_package")
    class Gaussian(surrogates.Surrogate):
        def __init__(self, sigma=0.5):
            self.sigma = float(sigma)

        def derivative(self, u):
            z = u / self.sigma
            return ops.exp(-0.5 * z * z) / (self.sigma * (2 * math.pi) ** 0.5)

        def get_config(self):
            return {"sigma": self.sigma}

    layer = keras_spiking.lif.LIF(surrogate=Gaussian(0.3))

``surrogates.get`` then also accepts ``"my_package>Gaussian"`` and the
serialized dict.
"""

import math

import keras
from keras import ops


class Surrogate:
    """Base class of the surrogate gradients.

    A surrogate is not called: ``spike_fn`` (and the spiking layers) read its
    ``derivative``.  Subclasses implement ``derivative`` and ``get_config``
    (see the module docstring).
    """

    def derivative(self, u):
        """The surrogate derivative of the spike w.r.t. ``u = v - threshold``.

        Parameters
        ----------
        u : tensor
            Voltage minus threshold (float).

        Returns
        -------
        tensor
            ``sigma'(u)``, same shape and dtype as ``u``.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement derivative(u) (see "
            f"keras_spiking.surrogates)."
        )

    def get_config(self):
        """The constructor arguments, as a JSON-serialisable dict."""
        return {}

    @classmethod
    def from_config(cls, config):
        """A new surrogate from ``get_config``'s dict."""
        return cls(**config)

    def __eq__(self, other):
        """Whether ``other`` is a surrogate of the same class and config."""
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        """A hash of the class and config (equal surrogates hash equal)."""
        return hash((type(self), tuple(sorted(self.get_config().items()))))

    def __repr__(self):
        """The class name and its config, as a constructor call."""
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


def _positive(cls_name, name, value):
    """``value`` as a float if it is a positive number, else a ValueError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"{cls_name} expects `{name}` to be a positive number; got {value!r}."
        )
    return float(value)


@keras.saving.register_keras_serializable(package="keras_spiking")
class FastSigmoid(Surrogate):
    r"""The fast-sigmoid (SuperSpike) surrogate.

    .. math::

        \sigma'(u) = \frac{1}{(1 + k |u|)^2}

    with ``k = slope``: the derivative of the fast sigmoid
    ``u / (1 + k |u|)`` (Zenke & Ganguli 2018,
    "SuperSpike: supervised learning in multilayer spiking neural networks",
    Neural Computation 30(6)).  Its peak is 1 at the threshold.  The default
    ``slope=25`` is snnTorch's (``snntorch.surrogate.fast_sigmoid``).

    Parameters
    ----------
    slope : float
        Steepness ``k`` (per unit of voltage), positive.
    """

    def __init__(self, slope=25.0):
        self.slope = _positive("FastSigmoid", "slope", slope)

    def derivative(self, u):
        """``1 / (1 + k |u|)^2``, elementwise (see ``Surrogate.derivative``)."""
        return 1.0 / ops.square(1.0 + self.slope * ops.abs(u))

    def get_config(self):
        """The constructor arguments: ``slope``."""
        return {"slope": self.slope}


@keras.saving.register_keras_serializable(package="keras_spiking")
class ATan(Surrogate):
    r"""The arctangent surrogate.

    .. math::

        \sigma(u) = \frac{1}{\pi} \arctan\left(\frac{\pi}{2} \alpha u\right)
        + \frac{1}{2}, \qquad
        \sigma'(u) = \frac{\alpha / 2}{1 + \left(\frac{\pi}{2} \alpha u\right)^2}

    as documented by SpikingJelly (``spikingjelly.activation_based.surrogate
    .ATan``, after Fang et al. 2021, "Incorporating learnable membrane time
    constant to enhance learning of spiking neural networks", ICCV) and
    snnTorch (``snntorch.surrogate.atan``, whose default ``alpha=2`` this
    takes: a peak of 1 at the threshold).  Its integral over ``u`` is 1.

    Parameters
    ----------
    alpha : float
        Steepness (per unit of voltage), positive; the peak is ``alpha / 2``.
    """

    def __init__(self, alpha=2.0):
        self.alpha = _positive("ATan", "alpha", alpha)

    def derivative(self, u):
        """The arctangent's derivative, elementwise (see ``Surrogate.derivative``)."""
        return (0.5 * self.alpha) / (1.0 + ops.square(0.5 * math.pi * self.alpha * u))

    def get_config(self):
        """The constructor arguments: ``alpha``."""
        return {"alpha": self.alpha}


@keras.saving.register_keras_serializable(package="keras_spiking")
class Sigmoid(Surrogate):
    r"""The logistic-sigmoid surrogate.

    .. math::

        \sigma'(u) = k \, s(k u) \, (1 - s(k u)), \qquad
        s(x) = \frac{1}{1 + e^{-x}}

    with ``k = slope``: the derivative of ``s(k u)``, so its integral is 1
    and its peak ``k / 4``.  The default ``slope=25`` is snnTorch's
    (``snntorch.surrogate.sigmoid``).

    Parameters
    ----------
    slope : float
        Steepness ``k`` (per unit of voltage), positive.
    """

    def __init__(self, slope=25.0):
        self.slope = _positive("Sigmoid", "slope", slope)

    def derivative(self, u):
        """``k s(k u) (1 - s(k u))``, elementwise (see ``Surrogate.derivative``)."""
        # s(x) s(-x) = s(x) (1 - s(x)), without the cancellation in 1 - s(x)
        # for large x
        x = self.slope * u
        return self.slope * ops.sigmoid(x) * ops.sigmoid(-x)

    def get_config(self):
        """The constructor arguments: ``slope``."""
        return {"slope": self.slope}


@keras.saving.register_keras_serializable(package="keras_spiking")
class Triangle(Surrogate):
    r"""The triangular surrogate.

    .. math::

        \sigma'(u) = \frac{1}{w} \max\left(0, 1 - \frac{|u|}{w}\right)

    with ``w = width``: zero outside ``(-w, w)``, integral 1.  The default
    ``width=1`` gives a peak of 1, the piecewise-linear pseudo-derivative
    of Bellec et al. 2018 ("Long short-term memory and learning-to-learn in
    networks of spiking neurons", NeurIPS) without their dampening factor.

    Parameters
    ----------
    width : float
        Half-width ``w`` of the support (in units of voltage), positive.
    """

    def __init__(self, width=1.0):
        self.width = _positive("Triangle", "width", width)

    def derivative(self, u):
        """``max(0, 1 - |u| / w) / w``, elementwise (see ``Surrogate.derivative``)."""
        return ops.maximum(0.0, 1.0 - ops.abs(u) / self.width) / self.width

    def get_config(self):
        """The constructor arguments: ``width``."""
        return {"width": self.width}


@keras.saving.register_keras_serializable(package="keras_spiking")
class Boxcar(Surrogate):
    r"""The rectangular (boxcar) surrogate.

    .. math::

        \sigma'(u) = \begin{cases} \frac{1}{2 w}, & |u| < w \\
        0, & \text{otherwise} \end{cases}

    with ``w = width``: integral 1.  The default ``width=0.5`` gives a peak
    of 1 over ``|u| < 0.5``, the rectangular surrogate of Wu et al. 2018
    ("Spatio-temporal backpropagation for training high-performance spiking
    neural networks", Frontiers in Neuroscience 12) with ``a = 1``.

    Parameters
    ----------
    width : float
        Half-width ``w`` of the support (in units of voltage), positive.
    """

    def __init__(self, width=0.5):
        self.width = _positive("Boxcar", "width", width)

    def derivative(self, u):
        """``1 / (2 w)`` where ``|u| < w``, else 0 (see ``Surrogate.derivative``)."""
        inside = ops.cast(ops.less(ops.abs(u), self.width), u.dtype)
        return inside * (0.5 / self.width)

    def get_config(self):
        """The constructor arguments: ``width``."""
        return {"width": self.width}


@keras.saving.register_keras_serializable(package="keras_spiking")
class StraightThrough(Surrogate):
    r"""The straight-through estimator: ``sigma'(u) = 1`` everywhere.

    The gradient passes through the spike unchanged (Bengio, Léonard &
    Courville 2013, "Estimating or propagating gradients through stochastic
    neurons for conditional computation", arXiv:1308.3432).
    """

    def derivative(self, u):
        """Ones, the shape and dtype of ``u`` (see ``Surrogate.derivative``)."""
        return ops.ones_like(u)


#: The built-in surrogates by their ``get`` names (see ``_key``).
_BUILT_IN = {
    "fast_sigmoid": FastSigmoid,
    "atan": ATan,
    "sigmoid": Sigmoid,
    "triangle": Triangle,
    "boxcar": Boxcar,
    "straight_through": StraightThrough,
}


def _key(name):
    """A name without case or underscores ("FastSigmoid" == "fast_sigmoid")."""
    return name.replace("_", "").lower()


_BY_KEY = {_key(name): cls for name, cls in _BUILT_IN.items()}


def _unknown(identifier):
    return ValueError(
        f"keras_spiking.surrogates.get expects a Surrogate, the name of a "
        f"built-in one ({', '.join(sorted(_BUILT_IN))}, in any case, with or "
        f"without underscores), a registered 'package>Name', or a serialized "
        f"dict; got {identifier!r}."
    )


def get(identifier):
    """A surrogate from an instance, a name or a config dict.

    Parameters
    ----------
    identifier : Surrogate or str or dict
        A ``Surrogate`` (returned as is); the name of a built-in one,
        case-insensitive, with or without underscores (``"fast_sigmoid"``,
        ``"FastSigmoid"``, ``"atan"``, ``"sigmoid"``, ``"triangle"``,
        ``"boxcar"``, ``"straight_through"``), with its default parameters;
        the registered name of a user-defined one (``"package>Name"``); or a
        dict ``{"class_name": name, "config": {...}}`` as ``serialize``
        writes it (``class_name`` as for a string).

    Returns
    -------
    Surrogate

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).
    TypeError
        For anything else.
    """
    if isinstance(identifier, Surrogate):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_KEY.get(_key(identifier))
        if cls is None:
            cls = keras.saving.get_registered_object(identifier)
        if not (isinstance(cls, type) and issubclass(cls, Surrogate)):
            raise _unknown(identifier)
        return cls()
    if isinstance(identifier, dict):
        class_name = identifier.get("class_name")
        config = identifier.get("config") or {}
        if not isinstance(class_name, str) or not isinstance(config, dict):
            raise _unknown(identifier)
        cls = _BY_KEY.get(_key(class_name))
        if cls is not None:
            return cls.from_config(config)
        try:
            surrogate = keras.saving.deserialize_keras_object(identifier)
        except (TypeError, ValueError) as error:
            raise _unknown(identifier) from error
        if not isinstance(surrogate, Surrogate):
            raise _unknown(identifier)
        return surrogate
    raise TypeError(
        f"keras_spiking.surrogates.get expects a Surrogate, a str or a dict; "
        f"got {identifier!r} of type {type(identifier).__name__}."
    )


def serialize(surrogate):
    """``surrogate`` as a JSON-serialisable dict that ``get`` accepts."""
    return keras.saving.serialize_keras_object(get(surrogate))


def spike_fn(v_minus_threshold, surrogate, height=1.0):
    r"""Spikes of height ``height`` where ``u = v - threshold >= 0``.

    Their gradient is the surrogate's:

    .. math::

        \text{forward: } z = h \, H(u), \qquad
        \text{backward: } \frac{\partial z}{\partial u} = h \, \sigma'(u)

    Parameters
    ----------
    v_minus_threshold : tensor
        ``u``, any shape (float).
    surrogate : Surrogate or str or dict
        Anything ``get`` accepts.
    height : float or scalar tensor
        Spike height ``h`` (for example ``1 / dt``, or 1 for spike counts);
        it receives no gradient.

    Returns
    -------
    tensor
        ``h`` where ``u >= 0``, else 0; the shape and dtype of ``u``.
    """
    surrogate = get(surrogate)

    # Tensors as positional arguments only, one output, the surrogate in the
    # closure: the portable form of ``keras.ops.custom_gradient`` (on torch
    # every positional argument is saved for backward and the gradient
    # function is called as ``grad(*args, upstream=...)``; under JAX a
    # closure must not hold traced values, so ``height`` is an argument).
    @ops.custom_gradient
    def spike(u, h):
        z = ops.cast(ops.greater_equal(u, 0.0), u.dtype) * h

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            du = upstream * h * ops.cast(surrogate.derivative(u), u.dtype)
            return du, ops.zeros_like(h)

        return z, grad

    u = ops.convert_to_tensor(v_minus_threshold)
    return spike(u, ops.cast(height, u.dtype))
