"""Sequential Fashion-MNIST: LIF neurons trained through time.

Each 28 x 28 image is read one row per time step: 28 steps of 28 pixel
values in [0, 1], one step every ``DT`` = 1 ms of simulated time.  The model,
for ``H`` hidden neurons (``--hidden``)::

    rows (batch, 28, 28) -> Dense(H) -> spiking layer (H neurons)
        -> Dense(10) -> mean over the 28 steps -> logits

``Dense(H)`` is the synaptic weights of the hidden neurons (applied to every
row); the spiking layer is one of three variants (``--variants``):

* ``ff``: ``keras_spiking.LIF``, feed-forward;
* ``synapse``: ``keras_spiking.CubaLIF``, a first-order synaptic current
  (``tau_syn``) in front of the same membrane: a stateful synapse;
* ``recurrent``: ``keras_spiking.LIF(recurrent=True)``, each neuron also
  driven by the previous step's spikes of all hidden neurons.

The readout is not spiking: ``Dense(10)`` of the hidden spikes at every step,
averaged over time by ``keras_spiking.TemporalAvgPool``.  The spikes have
height ``1 / dt``; a ``Rescaling(DT)`` turns them into 0/1 counts for the
readout.  Everything trains with ``model.fit`` through time (backpropagation
through time), the spike's gradient being the arctangent surrogate
(``surrogate="atan"``).

SpikingJelly's tutorial on this task (28-32-10, integrate-and-fire neurons,
arctangent surrogate, 64 epochs) reports 70.45 % test accuracy feed-forward,
75.68 % with a stateful synapse and 77.19 % with recurrent feedback.

Run it (any backend, chosen with ``KERAS_BACKEND``)::

    python examples/sequential_fashion_mnist.py                # embedded subset
    python examples/sequential_fashion_mnist.py --data full --epochs 10

``--data small`` (the default) uses the 6,000 / 1,000 image subset shipped in
``examples/data/``; ``--data full`` uses
``keras.datasets.fashion_mnist.load_data()``, which reads (or downloads into)
``$KERAS_HOME/datasets/fashion-mnist/``.

It writes to ``--out``: ``summary.md`` and ``summary.csv`` (per model: test
and training accuracy, epochs, seconds per epoch, mean firing rate of the
hidden neurons in Hz), ``history.json`` (accuracy per epoch) and, with
matplotlib installed, ``raster.png`` (the hidden spikes over one test image),
``accuracy.png`` (test accuracy per epoch) and ``rates.png`` (histogram of
the hidden neurons' firing rates).
"""

import argparse
import csv
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

import keras
import numpy as np

import keras_spiking

try:
    import matplotlib
except ImportError:  # the figures are optional
    plt = None
else:
    import matplotlib.ticker

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

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
N_STEPS = 28  # one image row per step
DT = 0.001  # simulated seconds per step
TAU = 0.02  # membrane time constant (s), trainable
TAU_SYN = 0.005  # synaptic time constant of the "synapse" variant (s)
SURROGATE = "atan"
VARIANTS = {
    "ff": "feed-forward LIF",
    "synapse": "CubaLIF (stateful synapse)",
    "recurrent": "recurrent LIF",
}
PREDICT_BATCH_SIZE = 500  # inference only: any size gives the same numbers
RASTER_IMAGE = 0  # index of the test image shown in raster.png

SUMMARY_COLUMNS = (
    "variant",
    "hidden",
    "model",
    "epochs",
    "test_accuracy",
    "train_accuracy",
    "first_epoch_s",
    "epoch_s",
    "rate_mean_hz",
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
    """The stratified 6,000 / 1,000 image subset shipped with the examples."""
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


def load(which, limit=None):
    """``(x_train, y_train, x_test, y_test)`` scaled to [0, 1] (float32).

    ``which`` is ``"small"`` or ``"full"``; each array is cut to its first
    ``limit`` examples if given.  The images are ``(n, 28, 28)``: 28 steps
    of one 28-pixel row.
    """
    x_train, y_train, x_test, y_test = load_small() if which == "small" else load_full()
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_test, y_test = x_test[:limit], y_test[:limit]
    return (
        x_train.astype("float32") / 255,
        y_train.astype("int32"),
        x_test.astype("float32") / 255,
        y_test.astype("int32"),
    )


# ----------------------------------------------------------------- models --


def spiking_layer(variant):
    """The hidden neurons of ``variant`` (see the module docstring)."""
    common = {"dt": DT, "surrogate": SURROGATE, "name": "spikes"}
    if variant == "ff":
        return keras_spiking.LIF(tau=TAU, **common)
    if variant == "synapse":
        return keras_spiking.CubaLIF(tau=TAU, tau_syn=TAU_SYN, **common)
    if variant == "recurrent":
        return keras_spiking.LIF(tau=TAU, recurrent=True, **common)
    raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")


def build_model(variant, hidden):
    """``28 -> Dense(hidden) -> spiking layer -> Dense(10) -> mean over time``."""
    rows = keras.Input((N_STEPS, 28), name="rows")
    x = keras.layers.Dense(hidden, name="synapses")(rows)
    x = spiking_layer(variant)(x)
    # spikes of height 1 / DT -> 0/1 counts, so the readout starts well scaled
    x = keras.layers.Rescaling(DT, name="counts")(x)
    x = keras.layers.Dense(10, name="readout")(x)
    logits = keras_spiking.TemporalAvgPool(name="mean_over_time")(x)
    model = keras.Model(rows, logits, name=f"{variant}_{hidden}")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=5e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


class EpochTimer(keras.callbacks.Callback):
    """Seconds of training per epoch (without the evaluation on the test set)."""

    def __init__(self):
        super().__init__()
        self.seconds = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_test_begin(self, logs=None):
        # fit evaluates the validation data after the training steps of an epoch
        if self._start is not None:
            self.seconds.append(time.perf_counter() - self._start)
            self._start = None

    def on_epoch_end(self, epoch, logs=None):
        if self._start is not None:  # no validation data
            self.seconds.append(time.perf_counter() - self._start)
            self._start = None


def probe(model, x, y):
    """Test accuracy and hidden spikes (``(images, steps, hidden)``, in Hz)."""
    sub = keras.Model(model.input, [model.output, model.get_layer("spikes").output])
    logits, spikes = sub.predict(x, batch_size=PREDICT_BATCH_SIZE, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == y))
    return accuracy, np.asarray(spikes)


def train(variant, hidden, data, args):
    """Train one model; its summary row, accuracy history and hidden spikes."""
    x_train, y_train, x_test, y_test = data
    keras.utils.set_random_seed(args.seed)
    model = build_model(variant, hidden)
    timer = EpochTimer()
    history = model.fit(
        x_train,
        y_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        validation_data=(x_test, y_test),
        callbacks=[timer],
        verbose=2,
    )
    test_accuracy, spikes = probe(model, x_test, y_test)
    # spikes have height 1 / DT: their mean over steps is a rate in Hz
    rates = spikes.mean(axis=1)  # (images, hidden)
    later = timer.seconds[1:] or timer.seconds
    row = {
        "variant": variant,
        "hidden": hidden,
        "model": f"28-{hidden}-10 {VARIANTS[variant]}",
        "epochs": args.epochs,
        "test_accuracy": test_accuracy,
        "train_accuracy": float(history.history["accuracy"][-1]),
        "first_epoch_s": timer.seconds[0],
        "epoch_s": float(np.mean(later)),
        "rate_mean_hz": float(rates.mean()),
    }
    curves = {
        "loss": [float(v) for v in history.history["loss"]],
        "accuracy": [float(v) for v in history.history["accuracy"]],
        "val_accuracy": [float(v) for v in history.history["val_accuracy"]],
        "epoch_s": timer.seconds,
    }
    return row, curves, spikes


# ---------------------------------------------------------------- figures --


def plot_raster(spikes_by_model, image, label, path):
    """Hidden spikes of each model over one test image.

    ``spikes_by_model`` maps ``(hidden, variant)`` to the spikes of that
    model, ``(steps, hidden)``; one row of panels per number of hidden
    neurons, one column per variant, the image on the left.
    """
    sizes = sorted({hidden for hidden, _ in spikes_by_model})
    variants = list(dict.fromkeys(variant for _, variant in spikes_by_model))
    fig, axes = plt.subplots(
        len(sizes),
        len(variants) + 1,
        figsize=(2.2 + 3 * len(variants), 0.4 + 2.8 * len(sizes)),
        gridspec_kw={"width_ratios": [0.7] + [1] * len(variants)},
        squeeze=False,
    )
    for i, hidden in enumerate(sizes):
        axes[i, 0].imshow(image, cmap="gray")
        axes[i, 0].set_title(CLASS_NAMES[label], fontsize=9)
        axes[i, 0].set_ylabel("image row", fontsize=8)
        axes[i, 0].set_xticks([])
        for ax, variant in zip(axes[i, 1:], variants, strict=True):
            spikes = spikes_by_model.get((hidden, variant))
            if spikes is None:
                ax.axis("off")
                continue
            steps, neurons = np.nonzero(spikes > 0)
            ax.scatter(steps * DT * 1000, neurons, marker="|", s=12, color="k")
            ax.set_xlim(-0.5, N_STEPS - 0.5)
            ax.set_ylim(-0.5, hidden - 0.5)
            ax.set_xlabel("time (ms) = image row", fontsize=8)
            ax.set_ylabel("hidden neuron", fontsize=8)
            ax.set_title(f"28-{hidden}-10 {VARIANTS[variant]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def plot_accuracy(curves_by_model, path):
    """Test accuracy after each epoch."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, curves in curves_by_model.items():
        epochs = np.arange(1, len(curves["val_accuracy"]) + 1)
        ax.plot(epochs, 100 * np.asarray(curves["val_accuracy"]), "o-", label=name)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def plot_rates(rates_by_model, path):
    """Histogram of each hidden neuron's firing rate over the test images."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    top = max(float(r.max()) for r in rates_by_model.values())
    bins = np.linspace(0, max(top, 1.0), 30)
    for name, rates in rates_by_model.items():
        ax.hist(rates, bins=bins, histtype="step", density=True, label=name)
    ax.set_xlabel("firing rate of a hidden neuron, mean over the test images (Hz)")
    ax.set_ylabel("density (per Hz)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


# ---------------------------------------------------------------- summary --


def markdown_table(rows):
    lines = [
        "| model | epochs | test accuracy (%) | train accuracy (%) "
        "| first epoch (s) | later epochs (s each) | mean rate (Hz) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        later = f"{r['epoch_s']:.1f}" if r["epochs"] > 1 else "-"
        lines.append(
            f"| {r['model']} | {r['epochs']} | {100 * r['test_accuracy']:.2f} "
            f"| {100 * r['train_accuracy']:.2f} | {r['first_epoch_s']:.1f} "
            f"| {later} | {r['rate_mean_hz']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r[k] for k in SUMMARY_COLUMNS})


# ------------------------------------------------------------------- main --


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text}")
    return value


def _variants(text):
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(VARIANTS)}; got {text!r}"
        )
    return names


def _sizes(text):
    try:
        sizes = [int(v) for v in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of positive integers; got {text!r}"
        )
    return sizes


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Sequential Fashion-MNIST with LIF neurons trained through "
        "time (backend: $KERAS_BACKEND)."
    )
    parser.add_argument(
        "--variants",
        type=_variants,
        default=list(VARIANTS),
        help=f"comma-separated spiking layers to train, of {', '.join(VARIANTS)} "
        "(default: all)",
    )
    parser.add_argument(
        "--hidden",
        type=_sizes,
        default=[32],
        help="comma-separated numbers of hidden neurons, each trained with "
        "every variant (default: 32)",
    )
    parser.add_argument("--epochs", type=_positive, default=10, help="training epochs")
    parser.add_argument("--batch-size", type=_positive, default=64)
    parser.add_argument(
        "--data",
        choices=("small", "full"),
        default="small",
        help="embedded 6,000/1,000 subset (default) or the full data set",
    )
    parser.add_argument(
        "--out", default="out/sequential_fashion_mnist", help="output folder"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--limit",
        type=_positive,
        default=None,
        metavar="N",
        help="use only the first N training and N test images (quick checks)",
    )
    return parser.parse_args(argv)


def run(args, data, folder):
    """Train every (hidden, variant) pair; tables and figures go to ``folder``."""
    x_train, _, x_test, y_test = data
    print(
        f"backend {keras.backend.backend()}, {len(x_train)} training and "
        f"{len(x_test)} test images of {N_STEPS} steps, {args.epochs} epoch(s), "
        f"batches of {args.batch_size}, seed {args.seed}"
    )
    rows, curves, rates, raster = [], {}, {}, {}
    for hidden in args.hidden:
        for variant in args.variants:
            print(f"\n=== 28-{hidden}-10, {VARIANTS[variant]} ===", flush=True)
            row, history, spikes = train(variant, hidden, data, args)
            rows.append(row)
            curves[row["model"]] = history
            rates[row["model"]] = spikes.mean(axis=(0, 1))  # per neuron, Hz
            raster[hidden, variant] = spikes[RASTER_IMAGE]
            print(
                f"test accuracy {100 * row['test_accuracy']:.2f} %, mean hidden "
                f"rate {row['rate_mean_hz']:.1f} Hz",
                flush=True,
            )

    print()
    table = markdown_table(rows)
    print(table, end="")
    (folder / "summary.md").write_text(table)
    write_csv(rows, folder / "summary.csv")
    (folder / "history.json").write_text(json.dumps(curves, indent=1))
    if plt is None:
        print("matplotlib is not installed: no figures")
    else:
        plot_raster(
            raster,
            x_test[RASTER_IMAGE],
            y_test[RASTER_IMAGE],
            folder / "raster.png",
        )
        plot_accuracy(curves, folder / "accuracy.png")
        plot_rates(rates, folder / "rates.png")
    return rows


def main(argv=None):
    """Run the example; returns the exit status (0, or 1 for bad data)."""
    args = parse_args(argv)
    try:
        data = load(args.data, args.limit)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    out = pathlib.Path(args.out)
    # Everything is written to a temporary folder first and moved into `out`
    # at the end, so a failed run leaves nothing half-written there.
    with tempfile.TemporaryDirectory(prefix="sequential_fashion_mnist_") as tmp:
        rows = run(args, data, pathlib.Path(tmp))
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(pathlib.Path(tmp).iterdir()):
            shutil.move(str(path), str(out / path.name))
    print(f"\n{len(rows)} rows (summary.md, summary.csv) and figures in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
