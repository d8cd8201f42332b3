"""Real-time inference: stream inputs step by step through stateful layers.

A small spiking classifier is trained briefly on the Fashion-MNIST subset in
``examples/data/`` (each image shown for ``TRAIN_STEPS`` steps, the loss on the
last step of a ``Lowpass`` filter of the output).  ``keras_spiking.stateful_copy``
then makes a *stateful* copy of the model, with a fixed batch size and the same
weights, which is fed one time step per call, as a sensor would deliver it:
each call continues from the voltages and filter states the previous call
ended in, so the output after ``t`` calls is exactly the output of the whole
``t``-step sequence.  The running prediction is printed as it evolves, then the
streamed output is checked against feeding the whole sequence at once, and the
accuracy of the running prediction over the test images is shown against time.

Run with any backend, e.g. ``KERAS_BACKEND=jax python
examples/streaming_inference.py``; it takes a few seconds.  ``--epochs``,
``--limit`` (training images) and ``--batch`` (test images streamed together)
make quick checks quicker.
"""

import argparse
import pathlib
import sys

import keras
import numpy as np

import keras_spiking

DATA = pathlib.Path(__file__).resolve().parent / "data" / "fashion_mnist_small.npz"
CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
DT = 0.01  # seconds per step
TRAIN_STEPS = 10  # steps per image in training
STREAM_STEPS = 30  # steps per image when streaming: more than in training


def build_model(return_sequences=True):
    """Dense -> spiking ReLU -> Dense -> Lowpass."""
    inp = keras.Input((None, 28 * 28))
    x = keras.layers.Dense(128, name="hidden")(inp)
    x = keras_spiking.SpikingActivation("relu", dt=DT, seed=0, name="spiking")(x)
    x = keras.layers.Dense(10, name="logits")(x)
    out = keras_spiking.Lowpass(
        0.1, dt=DT, return_sequences=return_sequences, name="filter"
    )(x)
    return keras.Model(inp, out)


def softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Stream inputs step by step through a stateful copy of a "
        "spiking classifier (backend: $KERAS_BACKEND)."
    )
    parser.add_argument("--epochs", type=int, default=5, help="training epochs")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="train on the first N training images only (quick checks)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=500,
        metavar="N",
        help="test images streamed together for the running accuracy",
    )
    args = parser.parse_args(argv)
    for name in ("epochs", "limit", "batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be >= 1; got {value}")
    return args


def run(epochs=5, limit=None, batch=500):
    """Train, stream, and print as described above.

    Returns a dict: ``model``, the trained model returning every step (not
    stateful); ``image``, the test image streamed, one step ``(1, 1, 784)``;
    ``streamed``, its outputs one call at a time ``(STREAM_STEPS, 10)``;
    ``at_once``, those of the whole sequence; ``test_images``, the images
    streamed together ``(batch, 1, 784)``; ``running``, their outputs after
    ``STREAM_STEPS`` calls ``(batch, 10)``.
    """
    keras.utils.set_random_seed(0)
    data = np.load(DATA)
    x_train = data["x_train"].reshape(-1, 1, 784).astype("float32") / 255
    x_test = data["x_test"].reshape(-1, 1, 784).astype("float32") / 255
    y_train, y_test = data["y_train"], data["y_test"]
    x_train, y_train = x_train[:limit], y_train[:limit]

    # -- train: each image repeated for TRAIN_STEPS steps, loss on the last step
    model = build_model(return_sequences=False)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(
        np.repeat(x_train, TRAIN_STEPS, axis=1),
        y_train,
        batch_size=128,
        epochs=epochs,
        verbose=2,
    )

    # -- stream: a stateful copy, one image at a time (batch 1), step by step
    whole = build_model()  # the trained model, returning every step
    whole.set_weights(model.get_weights())
    streaming = keras_spiking.stateful_copy(whole, batch_size=1)
    image, label = x_test[:1], int(y_test[0])
    print(f"\nStreaming test image 0 (a {CLASSES[label]}), one step per call:")
    streamed = []
    for t in range(STREAM_STEPS):
        out = streaming.predict_on_batch(image[:, :1])  # (1, 1, 10): one step
        streamed.append(out[:, -1])
        p = softmax(out[0, -1])
        if t < 10 or (t + 1) % 5 == 0:
            print(
                f"  t = {(t + 1) * DT:4.2f} s  prediction: {CLASSES[p.argmax()]:<11} "
                f"(p = {p.max():.2f})"
            )

    # the streamed outputs are those of the whole sequence fed at once
    at_once = whole.predict(np.repeat(image, STREAM_STEPS, axis=1), verbose=0)[0]
    streamed = np.concatenate(streamed)
    error = np.abs(streamed - at_once).max()
    print(f"max |streamed - whole sequence| = {error:.2g}")

    # -- running accuracy over the test set, streaming all images together
    images = x_test[:batch]
    streaming = keras_spiking.stateful_copy(whole, batch_size=len(images))
    print(f"\nRunning accuracy on {len(images)} test images, streamed step by step:")
    for t in range(STREAM_STEPS):
        out = streaming.predict_on_batch(images)
        if t + 1 in (1, 2, 3, 5, 10, 20, 30):
            accuracy = (out[:, -1].argmax(axis=-1) == y_test[: len(images)]).mean()
            print(f"  after {t + 1:2d} steps ({(t + 1) * DT:.2f} s): {accuracy:.1%}")
    return {
        "model": whole,
        "image": image,
        "streamed": streamed,
        "at_once": np.asarray(at_once),
        "test_images": images,
        "running": np.asarray(out[:, -1]),
    }


def main(argv=None):
    args = parse_args(argv)
    run(args.epochs, args.limit, args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
