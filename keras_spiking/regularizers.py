"""Regularisers that pull activity toward a target value or range.

They are ordinary ``keras.regularizers.Regularizer`` objects: pass them as
``activity_regularizer=`` (or ``kernel_regularizer=`` ...) to any layer.  The
usual use is to keep spike rates in a range::

    rates = keras_spiking.TemporalAvgPool(
        activity_regularizer=keras_spiking.regularizers.L2(1e-3, target=(10, 50))
    )(spikes)

Notes
-----
Keras 3 divides an *activity* regulariser's value by the batch size (the size
of the output's first axis) before adding it to the loss, so the penalty is a
per-example mean over the batch and a sum over every other axis (time, units).
(For a ``time_major=True`` output the first axis is time, so Keras divides by
the number of timesteps instead.)
Given directly to ``SpikingActivation``, a regulariser sees the spike trains
(values ``n / dt``) rather than rates; put it on a time-averaged signal
(``TemporalAvgPool``, or a ``Lowpass`` output) to act on rates.
"""

import math
import numbers
import warnings

import keras
from keras import ops


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_weight(value, name, owner):
    """A penalty weight (``l1``, ``l2``) as a float >= 0."""
    if not _is_number(value):
        raise TypeError(
            f"{owner} expects `{name}` to be a number >= 0; got {value!r} of "
            f"type {type(value).__name__}."
        )
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{owner} expects `{name}` >= 0 and finite; got {value}.")
    return float(value)


def _check_target(target, owner):
    """A scalar target, or a ``(min, max)`` range as a tuple of floats.

    A bound may be infinite: ``(10, inf)`` is "at least 10".
    """
    if _is_number(target):
        if not math.isfinite(target):
            raise ValueError(
                f"{owner} expects a finite `target` (or a (min, max) range); "
                f"got {target!r}."
            )
        return float(target)
    if isinstance(target, (tuple, list)):
        if (
            len(target) != 2
            or not all(_is_number(v) for v in target)
            or any(math.isnan(v) for v in target)
        ):
            raise ValueError(
                f"{owner} expects a target range as a tuple with two elements "
                f"(min, max), both numbers; got {target!r}."
            )
        low, high = target
        if low > high:
            raise ValueError(
                f"{owner} expects a target range (min, max) whose `minimum` "
                f"cannot exceed `maximum`; got {tuple(target)!r}."
            )
        return (float(low), float(high))
    raise ValueError(
        f"{owner} expects `target` to be a number or a (min, max) pair of "
        f"numbers; got {target!r}."
    )


@keras.saving.register_keras_serializable(package="keras_spiking")
class RangedRegularizer(keras.regularizers.Regularizer):
    r"""Apply a regulariser to the distance from a target value or range.

    With a scalar target :math:`t` the penalty is ``regularizer(x - t)``; with
    a range :math:`(a, b)` it is ``regularizer(d)`` with

    .. math::

        d = x - \mathrm{clip}(x, a, b) = \begin{cases}
            x - a & x < a \\ 0 & a \le x \le b \\ x - b & x > b \end{cases}

    so values inside the range cost nothing.

    Parameters
    ----------
    target : float or tuple of (float, float)
        The target value, or the ``(min, max)`` range.
    regularizer : keras.regularizers.Regularizer or str or dict
        The penalty applied to the distance (anything
        ``keras.regularizers.get`` accepts).
    """

    def __init__(self, target=0, regularizer=None):
        self.target = _check_target(target, type(self).__name__)
        if regularizer is None:
            regularizer = keras.regularizers.L2(0.01)
        try:
            self.regularizer = keras.regularizers.get(regularizer)
        except (ValueError, TypeError):
            self.regularizer = None
        if self.regularizer is None or not callable(self.regularizer):
            raise ValueError(
                f"{type(self).__name__} expects `regularizer` to be a Keras "
                f"regularizer (an object, a name such as 'l2', or a config "
                f"dict); got {regularizer!r}."
            )

    def distance(self, x):
        """``x`` minus its target (zero inside a target range)."""
        # Keras' own regularisers accept NumPy arrays; ``x - tensor`` with an
        # array ``x`` fails on some backends (PyTorch), so convert first.
        x = ops.convert_to_tensor(x)
        if isinstance(self.target, tuple):
            low, high = self.target
            return x - ops.clip(x, low, high)
        return x - ops.convert_to_tensor(self.target, dtype=x.dtype)

    def __call__(self, x):
        """The penalty on ``x``: the regularizer of its distance from the target."""
        return self.regularizer(self.distance(x))

    def get_config(self):
        """The regularizer's arguments, for ``from_config``."""
        return {
            "target": self.target,
            "regularizer": keras.regularizers.serialize(self.regularizer),
        }

    @classmethod
    def from_config(cls, config):
        """Create a regularizer from its ``get_config``."""
        config = dict(config)
        if isinstance(config.get("target"), list):
            config["target"] = tuple(config["target"])
        config["regularizer"] = keras.regularizers.deserialize(config["regularizer"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_spiking")
class L1L2(RangedRegularizer):
    r"""L1 and L2 penalties on the distance ``d`` from a target (or range).

    .. math::

        \ell_1 \sum |d| + \ell_2 \sum d^2

    Parameters
    ----------
    l1, l2 : float
        Non-negative weights of the two penalties.
    target : float or tuple of (float, float)
        Target value or ``(min, max)`` range (see ``RangedRegularizer``).
    """

    def __init__(self, l1=0.0, l2=0.0, target=0):
        self.l1 = _check_weight(l1, "l1", type(self).__name__)
        self.l2 = _check_weight(l2, "l2", type(self).__name__)
        if self.l1 == 0 and self.l2 == 0:
            warnings.warn(
                f"{type(self).__name__}: Regularization weight is zero, it will "
                f"have no effect (l1 = l2 = 0).",
                stacklevel=2,
            )
        super().__init__(
            target=target, regularizer=keras.regularizers.L1L2(self.l1, self.l2)
        )

    def get_config(self):
        """The regularizer's arguments, for ``from_config``."""
        return {"l1": self.l1, "l2": self.l2, "target": self.target}

    @classmethod
    def from_config(cls, config):
        """Create a regularizer from its ``get_config``."""
        config = dict(config)
        if isinstance(config.get("target"), list):
            config["target"] = tuple(config["target"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_spiking")
class L1(L1L2):
    r"""L1 penalty ``l1 * sum(|d|)`` on the distance ``d`` from a target.

    Parameters
    ----------
    l1 : float
        Non-negative weight of the penalty.
    target : float or tuple of (float, float)
        Target value or ``(min, max)`` range (see ``RangedRegularizer``).
    """

    def __init__(self, l1=0.01, target=0):
        super().__init__(l1=l1, l2=0.0, target=target)

    def get_config(self):
        """The regularizer's arguments, for ``from_config``."""
        return {"l1": self.l1, "target": self.target}


@keras.saving.register_keras_serializable(package="keras_spiking")
class L2(L1L2):
    r"""L2 penalty ``l2 * sum(d^2)`` on the distance ``d`` from a target.

    Parameters
    ----------
    l2 : float
        Non-negative weight of the penalty.
    target : float or tuple of (float, float)
        Target value or ``(min, max)`` range (see ``RangedRegularizer``).
    """

    def __init__(self, l2=0.01, target=0):
        super().__init__(l1=0.0, l2=l2, target=target)

    def get_config(self):
        """The regularizer's arguments, for ``from_config``."""
        return {"l2": self.l2, "target": self.target}


@keras.saving.register_keras_serializable(package="keras_spiking")
class Percentile(L1L2):
    r"""L1/L2 penalty on a percentile of the activity, along an axis.

    With ``p = percentile(x, percentile, axis=axis)`` (linear interpolation,
    as ``numpy.percentile``; the maximum for ``percentile=100``) and ``d`` the
    distance of ``p`` from the target, the penalty is
    :math:`\ell_1 \sum |d| + \ell_2 \sum d^2`.  For example
    ``Percentile(percentile=99, target=(0, 100), l2=1e-3)`` on time-averaged
    rates keeps the 99th-percentile rate (over the batch, per neuron) under
    100 Hz.  The arguments and defaults are keras-spiking 0.3's.

    Parameters
    ----------
    percentile : float
        The percentile, in ``[0, 100]``; 100 (the default) is the maximum.
    axis : int or tuple of int or None
        Axis (axes) the percentile is taken along; the default, 0, is the
        batch axis.  None takes it over all values.
    target : float or tuple of (float, float)
        Target value or ``(min, max)`` range of the percentile.
    l1, l2 : float
        Non-negative weights of the two penalties (both 0 warns: no effect).
    """

    def __init__(self, percentile=100, axis=0, target=0, l1=0.0, l2=0.0):
        if not (
            isinstance(percentile, numbers.Real)
            and not isinstance(percentile, bool)
            and 0 <= percentile <= 100
        ):
            raise ValueError(
                f"Percentile expects `percentile` to be a number in the range "
                f"[0, 100]; got {percentile!r}."
            )
        self.percentile = float(percentile)
        if isinstance(axis, list):
            axis = tuple(axis)
        if not (
            axis is None
            or (isinstance(axis, numbers.Integral) and not isinstance(axis, bool))
            or (
                isinstance(axis, tuple)
                and axis
                and all(
                    isinstance(a, numbers.Integral) and not isinstance(a, bool)
                    for a in axis
                )
            )
        ):
            raise TypeError(
                f"Percentile expects `axis` to be an int, a tuple of ints or "
                f"None; got {axis!r}."
            )
        if axis is not None:
            axis = tuple(int(a) for a in axis) if isinstance(axis, tuple) else int(axis)
        self.axis = axis
        super().__init__(l1=l1, l2=l2, target=target)

    def __call__(self, x):
        """The penalty on the percentile of ``x`` along ``axis``."""
        x = ops.convert_to_tensor(x)
        if self.percentile == 100:
            value = ops.max(x, axis=self.axis)
        else:
            value = ops.quantile(x, self.percentile / 100.0, axis=self.axis)
        return super().__call__(ops.cast(value, x.dtype))

    def get_config(self):
        """The regularizer's arguments, for ``from_config``."""
        return {
            "percentile": self.percentile,
            "axis": self.axis,
            "target": self.target,
            "l1": self.l1,
            "l2": self.l2,
        }
