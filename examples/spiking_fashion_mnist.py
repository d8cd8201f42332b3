"""Spiking Fashion-MNIST: turn a non-spiking classifier into a spiking one.

The walkthrough, in eight sections, each printing a short heading:

1. Load Fashion-MNIST, scale it to [0, 1], show 25 training images.
2. Train a non-spiking baseline, ``Dense(128, relu) -> Dense(10)``.
3. The same network with ``SpikingActivation("relu",
   spiking_aware_training=False)`` on ``n_steps = 10`` repeated frames: it
   trains exactly like the baseline, but spikes at test time, where its
   accuracy collapses at the default ``dt = 0.001``.
4. Evaluate that trained model with ``dt`` = 0.001, 0.01, 0.1 and 1 s (without
   retraining: ``dt`` is a ``keras.Variable``): longer simulated time gives
   more spikes per neuron and the accuracy comes back.
5. Spiking-aware training with ``dt = 0.01``.
6. Spike-rate regularisation: an L2 penalty (weight 1e-3) pulling the
   time-averaged firing rates toward 20 Hz.
7. A ``Lowpass`` filter (``tau = 0.1`` s) instead of the averaging.
8. A summary table (printed, and written as CSV and Markdown) and the figures
   (PNG) in the output folder.

Every accuracy is measured on the test set.  The spike rate of a neuron is the
number of spikes it emits divided by the simulated time (``n_steps * dt``), in
Hz; the tables give its minimum, mean and maximum over test images and the 128
neurons.

Run it (any backend, chosen with ``KERAS_BACKEND``)::

    python examples/spiking_fashion_mnist.py                 # embedded subset
    python examples/spiking_fashion_mnist.py --data full     # 60,000 / 10,000

``--data small`` (the default) uses the 6,000 / 1,000 image stratified subset
shipped in ``examples/data/``; ``--data full`` uses
``keras.datasets.fashion_mnist.load_data()``, which reads (or downloads into)
``$KERAS_HOME/datasets/fashion-mnist/``.
"""

import argparse
import csv
import os
import pathlib
import shutil
import sys
import tempfile
import time

import keras
import matplotlib
import numpy as np

import keras_spiking
import keras_spiking.regularizers

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

SMALL_DATA = (
    pathlib.Path(__file__).resolve().parent / "data" / "fashion_mnist_small.npz"
)
FULL_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)
CLASS_NAMES = (
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
)
N_STEPS = 10  # every image is shown for this many time steps
BATCH_SIZE = 32
PREDICT_BATCH_SIZE = 250  # inference only: any size gives the same numbers
DT_SWEEP = (0.001, 0.01, 0.1, 1.0)
RATE_TARGET_HZ = 20.0
RATE_WEIGHT = 1e-3
N_PLOTTED = 3  # test images shown in the dt-sweep figures

SUMMARY_COLUMNS = (
    "key",
    "model",
    "test_accuracy",
    "train_accuracy",
    "rate_min_hz",
    "rate_mean_hz",
    "rate_max_hz",
    "fit_s",
)


class DataError(Exception):
    """The data set is missing or unreadable."""


# ------------------------------------------------------------------- data --


def _check_arrays(x_train, y_train, x_test, y_test, source):
    for name, x, y in (("training", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (len(x),):
            raise DataError(
                f"{source} holds {name} arrays of shapes {x.shape} and "
                f"{y.shape}; expected (n, 28, 28) images and (n,) labels"
            )
        if len(x) == 0 or y.min() < 0 or y.max() > 9:
            raise DataError(f"{source} holds no {name} images or bad labels")


def load_small():
    """The stratified 6,000 / 1,000 image subset shipped with the example."""
    how = (
        "it ships with the project in examples/data/; restore it from the "
        "repository, or rebuild it from the full data set with "
        "`python examples/data/make_subset.py`"
    )
    if not SMALL_DATA.is_file():
        raise DataError(f"embedded data file {SMALL_DATA} not found: {how}")
    try:
        with np.load(SMALL_DATA) as data:
            arrays = [
                np.asarray(data[k]) for k in ("x_train", "y_train", "x_test", "y_test")
            ]
    except Exception as error:  # zip, pickle, key and I/O errors alike
        raise DataError(
            f"embedded data file {SMALL_DATA} is unreadable or corrupt "
            f"({type(error).__name__}: {error}): {how}"
        ) from error
    _check_arrays(*arrays, source=str(SMALL_DATA))
    return arrays


def load_full():
    """``keras.datasets.fashion_mnist.load_data()`` (60,000 / 10,000 images)."""
    home = os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras"))
    folder = os.path.join(home, "datasets", "fashion-mnist")
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    except Exception as error:  # download, gzip and shape errors alike
        message = " ".join(str(error).split())[:200]
        raise DataError(
            f"could not load Fashion-MNIST ({type(error).__name__}: {message}); "
            f"keras.datasets.fashion_mnist.load_data() expects the four files "
            f"{', '.join(FULL_FILES)} in {folder}/ (set KERAS_HOME to use "
            f"another folder) and downloads them there when it can"
        ) from error
    arrays = [x_train, y_train, x_test, y_test]
    _check_arrays(*arrays, source=folder)
    return arrays


# ----------------------------------------------------------------- models --


def load(which, limit=None):
    """``(x_train, y_train, x_test, y_test)`` of the ``"small"`` subset or the
    ``"full"`` data, each cut to its first ``limit`` examples if given."""
    data = load_small() if which == "small" else load_full()
    if limit is not None:
        data = [a[:limit] for a in data]
    return data


def compile_model(model):
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def baseline_model():
    """``Dense(128, relu) -> Dense(10)`` on the flattened image."""
    image = keras.Input((28, 28), name="image")
    x = keras.layers.Flatten()(image)
    x = keras.layers.Dense(128, activation="relu", name="hidden")(x)
    logits = keras.layers.Dense(10, name="output")(x)
    return compile_model(keras.Model(image, logits, name="baseline"))


def spiking_model(name, *, dt, spiking_aware_training, pool="average", rate_loss=None):
    """The baseline with spiking neurons, run for ``N_STEPS`` time steps.

    ``Flatten -> RepeatVector`` repeats each image for ``N_STEPS`` frames;
    ``Dense`` acts on every frame; the spiking layer outputs spikes of height
    ``1 / dt`` (its time average is the firing rate in Hz); then either
    ``TemporalAvgPool`` (``pool="average"``, with the optional
    ``activity_regularizer`` ``rate_loss`` on the averaged rates) or a
    ``Lowpass`` filter read out at the last step (``pool="lowpass"``).
    """
    image = keras.Input((28, 28), name="image")
    x = keras.layers.Flatten()(image)
    x = keras.layers.RepeatVector(N_STEPS, name="frames")(x)
    x = keras.layers.Dense(128, name="hidden")(x)
    x = keras_spiking.SpikingActivation(
        "relu", dt=dt, spiking_aware_training=spiking_aware_training, name="spikes"
    )(x)
    if pool == "average":
        x = keras_spiking.TemporalAvgPool(activity_regularizer=rate_loss, name="rates")(
            x
        )
    else:
        x = keras_spiking.Lowpass(0.1, dt=dt, return_sequences=False, name="lowpass")(x)
    logits = keras.layers.Dense(10, name="output")(x)
    return compile_model(keras.Model(image, logits, name=name))


def probe(model, x, y):
    """Test accuracy, spikes and per-(image, neuron) rates of ``model``.

    A sub-model with two outputs, the logits and the ``SpikingActivation``
    output (spikes of height ``1 / dt``), runs once over the test set; the
    time average of the spikes is each neuron's spike rate in Hz.
    """
    outputs = [model.output]
    if "spikes" in [layer.name for layer in model.layers]:
        outputs.append(model.get_layer("spikes").output)
    sub = keras.Model(model.input, outputs)
    start = time.perf_counter()
    results = sub.predict(x, batch_size=PREDICT_BATCH_SIZE, verbose=2)
    seconds = time.perf_counter() - start
    if len(outputs) == 1:
        results = [results]
    logits = np.asarray(results[0])
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == y))
    spikes = np.asarray(results[1]) if len(results) > 1 else None
    rates = None if spikes is None else spikes.mean(axis=1)  # (images, neurons)
    return {"accuracy": accuracy, "spikes": spikes, "rates": rates, "eval_s": seconds}


def fit(model, x, y, args):
    """``model.fit``: final training accuracy and wall-clock seconds."""
    start = time.perf_counter()
    history = model.fit(
        x,
        y,
        batch_size=BATCH_SIZE,
        epochs=args.epochs,
        shuffle=args.shuffle,
        verbose=1,
    )
    return history.history["accuracy"][-1], time.perf_counter() - start


def row(key, description, result, train_accuracy=None, fit_s=None):
    rates = result["rates"]
    return {
        "key": key,
        "model": description,
        "test_accuracy": result["accuracy"],
        "train_accuracy": train_accuracy,
        "rate_min_hz": None if rates is None else float(rates.min()),
        "rate_mean_hz": None if rates is None else float(rates.mean()),
        "rate_max_hz": None if rates is None else float(rates.max()),
        "fit_s": fit_s,
    }


def report(r):
    text = f"test accuracy {r['test_accuracy']:.4f}"
    if r["rate_mean_hz"] is not None:
        text += (
            f"; spike rate per neuron (Hz) min {r['rate_min_hz']:.2f} "
            f"mean {r['rate_mean_hz']:.2f} max {r['rate_max_hz']:.2f}"
        )
    print(text)


# ---------------------------------------------------------------- figures --


def plot_samples(x, y, path):
    fig, axes = plt.subplots(5, 5, figsize=(6, 6.6))
    for ax, image, label in zip(axes.flat, x[:25], y[:25], strict=True):
        ax.imshow(image, cmap="gray")
        ax.set_title(CLASS_NAMES[label], fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def plot_dt(model, x, y, spikes, dt, path):
    """Per image: the image, its spike-count histogram, softmax over time."""
    output = model.get_layer("output")
    steps = np.arange(1, N_STEPS + 1)
    fig, axes = plt.subplots(N_PLOTTED, 3, figsize=(9, 2.4 * N_PLOTTED))
    for i, (ax_image, ax_hist, ax_out) in enumerate(axes):
        ax_image.imshow(x[i], cmap="gray")
        ax_image.set_title(f"true: {CLASS_NAMES[y[i]]}", fontsize=9)
        ax_image.axis("off")

        counts = np.rint(spikes[i].sum(axis=0) * dt).astype(int)  # per neuron
        ax_hist.hist(counts, bins=np.arange(counts.min(), counts.max() + 2) - 0.5)
        ax_hist.set_xlabel("spikes per neuron", fontsize=8)
        ax_hist.set_ylabel("neurons", fontsize=8)

        # The network's answer had the simulation stopped after each step:
        # the output layer applied to the running average of the spikes.
        running = np.cumsum(spikes[i], axis=0) / steps[:, None]
        logits = keras.ops.convert_to_numpy(output(running.astype("float32")))
        logits = logits - logits.max(axis=-1, keepdims=True)
        softmax = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
        ax_out.plot(steps * dt, softmax)
        ax_out.set_ylim(-0.05, 1.05)
        ax_out.set_xlabel("simulated time (s)", fontsize=8)
        ax_out.set_ylabel("softmax", fontsize=8)
        if i == 0:
            ax_out.legend(CLASS_NAMES, fontsize=6, ncol=2, loc="upper left")
    fig.suptitle(f"spiking model (not spiking-aware), dt = {dt:g} s")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def plot_rates(named_rates, path):
    """Histogram of each neuron's mean spike rate over the test images."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    top = max(float(r.mean(axis=0).max()) for r in named_rates.values())
    bins = np.linspace(0, max(top, 1.0), 40)
    for name, rates in named_rates.items():
        ax.hist(rates.mean(axis=0), bins=bins, histtype="step", label=name)
    ax.set_xlabel("mean spike rate of a neuron over the test images (Hz)")
    ax.set_ylabel("neurons")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


# ---------------------------------------------------------------- summary --


def _fmt(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(rows):
    lines = [
        "| model | test accuracy (%) | train accuracy (%) | spike rate min / mean "
        "/ max (Hz) | fit (s) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if r["rate_mean_hz"] is None:
            rates = "-"
        else:
            rates = " / ".join(
                _fmt(r[k], 2) for k in ("rate_min_hz", "rate_mean_hz", "rate_max_hz")
            )
        train = None if r["train_accuracy"] is None else 100 * r["train_accuracy"]
        lines.append(
            f"| {r['model']} | {100 * r['test_accuracy']:.2f} | {_fmt(train, 2)} "
            f"| {rates} | {_fmt(r['fit_s'], 1)} |"
        )
    return "\n".join(lines) + "\n"


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if r[k] is None else r[k] for k in SUMMARY_COLUMNS})


# ------------------------------------------------------------------- main --


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="The spiking Fashion-MNIST walkthrough (backend: $KERAS_BACKEND)."
    )
    parser.add_argument("--epochs", type=int, default=10, help="training epochs")
    parser.add_argument(
        "--out", default="out/spiking_fashion_mnist", help="output folder"
    )
    parser.add_argument(
        "--data",
        choices=("small", "full"),
        default="small",
        help="embedded 6,000/1,000 subset (default) or the full data set",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--shuffle",
        action="store_true",
        help="shuffle the training images every epoch (default: data order, as "
        "in the reference walkthrough; shuffling gains up to a few accuracy points)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="use only the first N training and N test images (quick checks)",
    )
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1; got {args.epochs}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1; got {args.limit}")
    return args


def heading(text):
    print(f"\n=== {text} ===", flush=True)


def run(args, data, folder):
    """Sections 1-8; figures and tables go to ``folder``; returns the rows."""
    x_train, y_train, x_test, y_test = data
    rows = []
    print(
        f"backend {keras.backend.backend()}, {len(x_train)} training and "
        f"{len(x_test)} test images, {args.epochs} epoch(s), seed {args.seed}, "
        f"{'shuffled' if args.shuffle else 'data-order'} batches of {BATCH_SIZE}"
    )

    heading("1. Fashion-MNIST")
    plot_samples(x_train, y_train, folder / "samples.png")
    x_train = x_train.astype("float32") / 255
    x_test = x_test.astype("float32") / 255
    print("images scaled to [0, 1]; 25 training images in samples.png")

    heading("2. Non-spiking baseline")
    keras.utils.set_random_seed(args.seed)
    model = baseline_model()
    train_accuracy, fit_s = fit(model, x_train, y_train, args)
    rows.append(
        row(
            "baseline",
            "non-spiking baseline",
            probe(model, x_test, y_test),
            train_accuracy,
            fit_s,
        )
    )
    report(rows[-1])
    baseline_train = train_accuracy

    heading("3. Spiking model, trained without spikes")
    keras.utils.set_random_seed(args.seed)
    # dt is a variable so that section 4 can change it without retraining.
    dt = keras.Variable(DT_SWEEP[0], trainable=False, dtype="float32", name="dt")
    model = spiking_model("spiking", dt=dt, spiking_aware_training=False)
    train_accuracy, fit_s = fit(model, x_train, y_train, args)
    print(
        f"training accuracy {train_accuracy:.4f} (baseline {baseline_train:.4f}): "
        f"without spikes in training, the model trains like the baseline"
    )

    heading("4. Simulation time: the same model with dt = 0.001 ... 1 s")
    sweep_rates = {}
    for i, value in enumerate(DT_SWEEP):
        dt.assign(value)
        result = probe(model, x_test, y_test)
        rows.append(
            row(
                f"spiking_dt{value:g}",
                f"spiking, not spiking-aware, dt={value:g}",
                result,
                train_accuracy if i == 0 else None,
                fit_s if i == 0 else None,
            )
        )
        print(f"dt = {value:g} s ({N_STEPS * value:g} s simulated): ", end="")
        report(rows[-1])
        plot_dt(
            model,
            x_test,
            y_test,
            result["spikes"],
            value,
            folder / f"dt_sweep_{value:g}.png",
        )
        sweep_rates[f"not spiking-aware, dt={value:g}"] = result["rates"]
    dt.assign(DT_SWEEP[0])

    trained = {
        "5. Spiking-aware training, dt = 0.01": (
            "aware_dt0.01",
            "spiking-aware, dt=0.01",
            {},
        ),
        "6. Spike-rate regularisation toward 20 Hz": (
            "aware_dt0.01_l2rate",
            "spiking-aware, dt=0.01, L2 rate loss toward 20 Hz",
            {
                # Keras divides activity losses by the batch size, so this adds
                # 1e-3 * mean over images of sum over neurons (rate - 20)^2.
                "rate_loss": keras_spiking.regularizers.L2(
                    l2=RATE_WEIGHT, target=RATE_TARGET_HZ
                )
            },
        ),
        "7. Lowpass filter instead of averaging": (
            "aware_dt0.01_lowpass",
            "spiking-aware, dt=0.01, Lowpass(tau=0.1) last step",
            {"pool": "lowpass"},
        ),
    }
    aware_rates = {
        "not spiking-aware, dt=0.01": sweep_rates["not spiking-aware, dt=0.01"]
    }
    for title, (key, description, kwargs) in trained.items():
        heading(title)
        keras.utils.set_random_seed(args.seed)
        model = spiking_model(key, dt=0.01, spiking_aware_training=True, **kwargs)
        train_accuracy, fit_s = fit(model, x_train, y_train, args)
        result = probe(model, x_test, y_test)
        rows.append(row(key, description, result, train_accuracy, fit_s))
        report(rows[-1])
        aware_rates[description] = result["rates"]
    plot_rates(aware_rates, folder / "rates.png")

    heading("8. Summary")
    table = markdown_table(rows)
    print(table, end="")
    (folder / "summary.md").write_text(table)
    write_csv(rows, folder / "summary.csv")
    return rows


def main(argv=None):
    """Run the walkthrough; returns the exit status (0, or 1 for bad data)."""
    args = parse_args(argv)
    try:
        data = load(args.data, args.limit)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    out = pathlib.Path(args.out)
    # Everything is written to a temporary folder first and moved into `out`
    # at the end, so a failed run leaves nothing half-written there.
    with tempfile.TemporaryDirectory(prefix="spiking_fashion_mnist_") as tmp:
        rows = run(args, data, pathlib.Path(tmp))
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(pathlib.Path(tmp).iterdir()):
            shutil.move(str(path), str(out / path.name))
    print(f"\n{len(rows)} summary rows (summary.csv, summary.md) and figures in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
