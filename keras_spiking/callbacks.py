"""Training callbacks."""

import math

import keras
import numpy as np
from keras import ops

from keras_spiking.temporal import dt_value

__all__ = ["ActivityMonitor", "DtScheduler"]


class DtScheduler(keras.callbacks.Callback):
    """Change a ``dt`` variable during training, following a schedule.

    Give the layers one non-trainable ``keras.Variable`` as ``dt`` (it may
    hold 0 until the first batch, as in keras-spiking 0.3); before
    every training batch this callback sets it to ``scheduler(step)``, where
    ``step`` is the optimiser's iteration count (``optimizer.iterations``:
    the number of training steps taken so far, over all epochs and ``fit``
    calls).  The layers read the variable inside the compiled train step, so
    the new value takes effect at once, without retracing, under every
    backend (including ``jit_compile=True``).  After each epoch the value is
    added to the logs as ``"dt"`` (so it appears in ``History``).

    Example::

        dt = keras.Variable(0.001, trainable=False, name="dt")
        layer = keras_spiking.SpikingActivation("relu", dt=dt)
        ...
        model.fit(..., callbacks=[keras_spiking.callbacks.DtScheduler(
            dt, keras.optimizers.schedules.ExponentialDecay(
                0.01, decay_steps=100, decay_rate=0.5))])

    Parameters
    ----------
    dt : keras.Variable
        The (scalar, non-trainable) variable shared by the layers.
    scheduler : callable
        A ``keras.optimizers.schedules.LearningRateSchedule`` or any callable
        taking the step (an int) and returning the new ``dt`` (seconds, > 0).
    verbose : bool
        Print the new value whenever it changes.

    Notes
    -----
    On JAX, Keras keeps the model's variables outside the ``keras.Variable``
    objects during ``fit``; accessing ``Callback.model`` syncs them back and
    makes the trainer re-read them before the next step, which is how the
    assignment reaches the compiled step.  With ``steps_per_execution > 1``
    ``dt`` changes once per execution.  ``dt`` keeps its last value after
    training (for ``evaluate`` and ``predict``).
    """

    def __init__(self, dt, scheduler, verbose=False):
        super().__init__()
        if not isinstance(dt, keras.Variable):
            raise TypeError(
                f"DtScheduler expects `dt` to be a keras.Variable shared by the "
                f"layers, e.g. keras.Variable(0.001, trainable=False); got "
                f"{dt!r} of type {type(dt).__name__}.  A Python float cannot be "
                f"changed inside a compiled training step."
            )
        if dt.trainable:
            raise ValueError(
                f"DtScheduler expects a non-trainable `dt` variable (the "
                f"optimiser would otherwise update it); got trainable variable "
                f"'{dt.path}'.  Create it with keras.Variable(..., "
                f"trainable=False)."
            )
        if tuple(dt.shape) != () or "float" not in str(dt.dtype):
            raise ValueError(
                f"DtScheduler expects a scalar float `dt` variable; got "
                f"'{dt.path}' of shape {tuple(dt.shape)} and dtype {dt.dtype}."
            )
        if not callable(scheduler):
            raise TypeError(
                f"DtScheduler expects `scheduler` to be a LearningRateSchedule "
                f"or a callable of the training step; got {scheduler!r}."
            )
        self.dt = dt
        self.scheduler = scheduler
        self.verbose = verbose
        self._last = None

    def _step(self, model):
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            raise ValueError(
                "DtScheduler needs a compiled model (it reads the step from "
                "model.optimizer.iterations)."
            )
        return int(ops.convert_to_numpy(optimizer.iterations))

    def on_train_begin(self, logs=None):
        """Check that the model's layers use the scheduled ``dt`` variable."""
        if not any(v is self.dt for v in self.model.non_trainable_variables):
            raise ValueError(
                f"DtScheduler: no layer of model '{self.model.name}' uses the "
                f"variable '{self.dt.path}' as its `dt` (it is not among the "
                f"model's non-trainable variables); pass this variable as `dt` "
                f"when creating the layers."
            )
        self._last = None

    def on_train_batch_begin(self, batch, logs=None):
        """Set ``dt`` to the scheduler's value for the coming training step."""
        # ``self.model`` first: on JAX it syncs the trainer's state into the
        # variables and marks it for re-reading, so our assignment is used.
        model = self.model
        step = self._step(model)
        scheduled = self.scheduler(step)
        try:
            value = float(np.asarray(ops.convert_to_numpy(scheduled)))
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"DtScheduler's scheduler returned {scheduled!r} at step {step}; "
                f"it must return a number, the new dt in seconds (> 0)."
            ) from error
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(
                f"DtScheduler's scheduler returned dt={value} at step {step}; "
                f"dt must be > 0 and finite."
            )
        self.dt.assign(value)
        if self.verbose and value != self._last:
            print(f"DtScheduler: step {step}, setting dt to {value:.6g}")
        self._last = value

    def on_epoch_end(self, epoch, logs=None):
        """Log the current ``dt`` (as ``"dt"``)."""
        if logs is not None:
            logs["dt"] = dt_value(self.dt)


# Defined with the activity measurements; re-exported here with the callbacks.
from keras_spiking.activity import ActivityMonitor  # noqa: E402
