"""Backend-specific pieces behind backend-neutral functions.

Each backend has one small module here; this is the only place that looks at
``keras.backend.backend()``.
"""

import keras

_BACKEND = keras.backend.backend()

if _BACKEND == "tensorflow":
    from keras_spiking.backend._tensorflow import straight_through
elif _BACKEND == "jax":
    from keras_spiking.backend._jax import straight_through
elif _BACKEND == "torch":
    from keras_spiking.backend._torch import straight_through
else:  # pragma: no cover - only the three backends are supported
    raise ImportError(
        f"keras_spiking supports the tensorflow, torch and jax backends, "
        f"not {_BACKEND!r}"
    )

__all__ = ["straight_through"]
