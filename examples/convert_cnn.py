"""Convert a trained CNN into a spiking network with ``keras_spiking.convert``.

1. Train a small CNN on Fashion-MNIST: two blocks of
   ``Conv2D -> BatchNormalization -> ReLU -> AveragePooling2D``, then
   ``Flatten -> Dense(64, relu) -> Dropout -> Dense(10)``.
2. Convert it four ways by default (all with the default ``dt = 0.001`` s;
   ``--variants`` chooses), the first three with rate neurons
   (``neuron="rate"``, ``SpikingActivation``'s default):

   * plain: ``convert(model, neuron="rate")``; the neurons fire at the
     ANN's activations in Hz, so a few spikes per second: far too few in 0.1 s;
   * ``scale_firing_rates=1000`` (= ``1 / dt``): an activation of 1 gives one
     spike per step;
   * percentile normalisation, ``normalize="99.9%"`` on 1,000 training
     images: in every layer the 99.9th percentile of the ANN's activations
     gives one spike per step;
   * the same with integrate-and-fire neurons (``neuron="if"``, the default
     of ``convert``), whose
     voltage also integrates negative input: the rate neurons rectify every
     step, so behind spiking layers (input fluctuating from step to step)
     they fire more than ``relu`` of the mean input, a bias that more steps
     do not remove;
   * (``--variants normalize_x10``) normalisation with
     ``scale_firing_rates=10`` and rate neurons: ten spikes per step at the
     percentile.

3. Test accuracy after 5, 10, 20, 50 and 100 steps (``--steps``), with the
   output averaged over the steps: the spiking networks run once for 100
   steps with ``output="sequence"``; the accuracy after ``n`` steps uses the
   mean of the first ``n`` outputs, which is what ``output="average"`` gives
   on ``n`` steps (the network is causal and its initial voltages are
   seeded).
4. ``keras_spiking.measure_activity`` of the last network converted (100
   steps, the first 100 test images).

Outputs, in ``--out`` (default ``out/convert_cnn``, not tracked):
``accuracy.md`` (the table), ``accuracy.png`` (the plot), ``accuracy.json``,
``activity.md``;
``--figure PATH`` also copies the plot there (e.g. ``docs/figures/``).

Run it (any backend, chosen with ``KERAS_BACKEND``)::

    python examples/convert_cnn.py                 # embedded 6,000 / 1,000 subset
    python examples/convert_cnn.py --data full     # 60,000 / 10,000 images

``--data full`` reads ``$KERAS_HOME/datasets/fashion-mnist/`` as
``keras.datasets.fashion_mnist.load_data()`` does (see
``spiking_fashion_mnist.py``).
"""

import argparse
import json
import pathlib
import shutil
import sys
import time

import keras
import matplotlib
import numpy as np

import keras_spiking

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from spiking_fashion_mnist import DataError, load  # noqa: E402

STEPS = (5, 10, 20, 50, 100)
SCALE = 1000.0
PERCENTILE = "99.9%"
BOOST = 10.0  # with normalisation: the percentile activation gives 10 spikes
N_CALIBRATION = 1000
N_ACTIVITY = 100


def cnn():
    """Conv-BN-ReLU-AvgPool blocks and a Dense head."""
    image = keras.Input((28, 28, 1), name="image")
    x = image
    for i, filters in enumerate((16, 32), start=1):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=False, name=f"conv{i}"
        )(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        x = keras.layers.AveragePooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="fc")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    logits = keras.layers.Dense(10, name="output")(x)
    model = keras.Model(image, logits, name="cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def accuracy_by_steps(model, x, y, batch_size, steps=STEPS):
    """Accuracy after each of ``steps`` steps, from one run of ``steps[-1]``."""
    correct = {n: 0 for n in steps}
    for start in range(0, len(x), batch_size):
        images = x[start : start + batch_size]
        frames = np.broadcast_to(images[:, None], (len(images), steps[-1], 28, 28, 1))
        seq = np.asarray(model.predict_on_batch(np.ascontiguousarray(frames)))
        running = np.cumsum(seq, axis=1)
        for n in steps:
            guess = np.argmax(running[:, n - 1], axis=-1)
            correct[n] += int(np.sum(guess == y[start : start + batch_size]))
    return {n: correct[n] / len(x) for n in steps}


def plot(results, ann, path, steps=STEPS):
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, accuracy in results.items():
        ax.plot(steps, [100 * accuracy[n] for n in steps], "o-", label=label)
    ax.axhline(100 * ann, color="k", linestyle="--", label="ANN")
    ax.set_xscale("log")
    ax.set_xticks(steps, [str(n) for n in steps])
    ax.set_xlabel("time steps (dt = 1 ms)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"converted CNN, Fashion-MNIST ({keras.backend.backend()})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def table(results, ann, steps=STEPS):
    labels = list(results)
    lines = [
        "| steps | " + " | ".join(labels) + " | ANN |",
        "|---|" + "---|" * (len(labels) + 1),
    ]
    for n in steps:
        cells = " | ".join(f"{100 * results[k][n]:.2f}" for k in labels)
        lines.append(f"| {n} | {cells} | {100 * ann:.2f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Convert a CNN to a spiking network (backend: $KERAS_BACKEND)."
    )
    parser.add_argument("--data", choices=("small", "full"), default="small")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs")
    parser.add_argument("--out", default="out/convert_cnn", help="output folder")
    parser.add_argument("--figure", default=None, help="also copy the plot here")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N", help="first N images only"
    )
    parser.add_argument(
        "--test-limit",
        type=int,
        default=None,
        metavar="N",
        help="first N test images only (quick checks; after --limit)",
    )
    parser.add_argument(
        "--variants",
        default="plain,scale,normalize,normalize_if",
        help="comma-separated conversions to run: plain, scale, normalize, "
        "normalize_x10, normalize_if",
    )
    parser.add_argument(
        "--previous",
        default=None,
        help="accuracy.json of an earlier run: its other variants join the "
        "table and plot",
    )
    parser.add_argument(
        "--batch-size", type=int, default=100, help="images per spiking batch"
    )
    parser.add_argument(
        "--steps",
        default=",".join(str(n) for n in STEPS),
        help="comma-separated, increasing numbers of steps to report the "
        "accuracy after (the networks run for the largest)",
    )
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1; got {args.epochs}")
    for name in ("limit", "test_limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} must be >= 1; got {value}")
    try:
        args.steps = tuple(int(n) for n in args.steps.split(","))
    except ValueError:
        parser.error(f"--steps must be comma-separated integers; got {args.steps!r}")
    if min(args.steps) < 1 or list(args.steps) != sorted(set(args.steps)):
        parser.error(f"--steps must be increasing and >= 1; got {args.steps}")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        data = load(args.data, args.limit)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    x_train, y_train, x_test, y_test = data
    if args.test_limit is not None:
        x_test, y_test = x_test[: args.test_limit], y_test[: args.test_limit]
    x_train = (x_train.astype("float32") / 255)[..., None]
    x_test = (x_test.astype("float32") / 255)[..., None]
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"backend {keras.backend.backend()}, {len(x_train)} training and "
        f"{len(x_test)} test images, {args.epochs} epochs, seed {args.seed}"
    )

    keras.utils.set_random_seed(args.seed)
    model = cnn()
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, verbose=2)
    print(f"training: {time.perf_counter() - start:.0f} s")
    _, ann = model.evaluate(x_test, y_test, batch_size=500, verbose=0)
    print(f"ANN test accuracy {100 * ann:.2f}%")

    calibration = x_train[:N_CALIBRATION]
    # convert's default neuron is "if"; the rate neurons are asked for by name
    rate = {"neuron": "rate"}
    normalized = {"normalize": PERCENTILE, "calibration_data": calibration}
    variants = {
        "plain": ('plain, neuron="rate"', rate),
        "scale": (
            f'scale_firing_rates={SCALE:g}, neuron="rate"',
            {"scale_firing_rates": SCALE, **rate},
        ),
        "normalize": (
            f'normalize="{PERCENTILE}", neuron="rate"',
            {**normalized, **rate},
        ),
        "normalize_x10": (
            f'normalize="{PERCENTILE}", scale_firing_rates={BOOST:g}, neuron="rate"',
            {**normalized, "scale_firing_rates": BOOST, **rate},
        ),
        "normalize_if": (
            f'normalize="{PERCENTILE}", neuron="if" (the default)',
            normalized,
        ),
    }
    chosen = args.variants.split(",")
    unknown = sorted(set(chosen) - set(variants))
    if unknown:
        print(f"error: unknown --variants {unknown}; choose from {list(variants)}")
        return 2
    variants = {variants[k][0]: variants[k][1] for k in chosen}
    results, converted = {}, {}
    for label, kwargs in variants.items():
        start = time.perf_counter()
        snn = keras_spiking.convert(
            model, output="sequence", seed=args.seed, n_steps=args.steps[-1], **kwargs
        )
        results[label] = accuracy_by_steps(
            snn, x_test, y_test, args.batch_size, args.steps
        )
        converted[label] = snn
        accuracies = ", ".join(f"{n}: {100 * a:.2f}" for n, a in results[label].items())
        print(
            f"{label}: test accuracy (%) by steps {accuracies} "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )

    (out / "accuracy.json").write_text(
        json.dumps({"ann": ann, "results": results}, indent=1)
    )
    if args.previous:  # earlier runs' variants (same seed, so the same ANN)
        previous = json.loads(pathlib.Path(args.previous).read_text())
        if abs(previous["ann"] - ann) > 1e-4:  # a different ANN
            print(f"warning: {args.previous} has ANN accuracy {previous['ann']}")
        earlier = {
            k: {int(n): a for n, a in v.items()}
            for k, v in previous["results"].items()
            if k not in results
        }
        results = {**earlier, **results}
    text = table(results, ann, args.steps)
    print(text, end="")
    (out / "accuracy.md").write_text(text)
    plot(results, ann, out / "accuracy.png", args.steps)
    if args.figure:
        pathlib.Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "accuracy.png", args.figure)

    frames = np.repeat(x_test[:N_ACTIVITY, None], args.steps[-1], axis=1)
    label = list(converted)[-1]
    activity = keras_spiking.measure_activity(
        converted[label], frames, batch_size=args.batch_size
    )
    activity_text = activity.table()
    print(f"activity of the {label} network ({args.steps[-1]} steps):")
    print(activity_text, end="")
    (out / "activity.md").write_text(activity_text)
    print(f"tables and plot in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
