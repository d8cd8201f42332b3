"""Build ``fashion_mnist_small.npz``, the small data set shipped with the example.

A stratified random subset of the real Fashion-MNIST images: 600 training and
100 test images of each of the 10 classes, taken from the training and the test
split of ``keras.datasets.fashion_mnist.load_data()`` respectively, in random
order (so any prefix is roughly balanced), as ``uint8`` arrays in a compressed
``.npz`` (keys ``x_train``, ``y_train``, ``x_test``, ``y_test``).

Usage (needs the full data set in Keras' cache, ``$KERAS_HOME/datasets/
fashion-mnist/``, or internet access for Keras to download it)::

    python examples/data/make_subset.py

Fashion-MNIST is copyright Zalando SE and distributed under the MIT licence.
"""

import argparse
import pathlib

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent


def stratified(x, y, per_class, rng):
    """``per_class`` random examples of each class, shuffled together."""
    index = np.concatenate(
        [
            rng.choice(np.flatnonzero(y == c), per_class, replace=False)
            for c in range(10)
        ]
    )
    index = rng.permutation(index)
    return x[index], y[index]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-per-class", type=int, default=600)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(HERE / "fashion_mnist_small.npz"))
    args = parser.parse_args(argv)

    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    rng = np.random.default_rng(args.seed)
    x_train, y_train = stratified(x_train, y_train, args.train_per_class, rng)
    x_test, y_test = stratified(x_test, y_test, args.test_per_class, rng)
    np.savez_compressed(
        args.out, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test
    )
    print(f"wrote {args.out}: {len(x_train)} training and {len(x_test)} test images")


if __name__ == "__main__":
    main()
