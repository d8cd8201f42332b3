"""Estimate the energy of spiking and non-spiking Fashion-MNIST models.

Builds the walkthrough's two classifiers,

- non-spiking: ``Dense(128, relu) -> Dense(10)`` on a flattened image;
- spiking: ``Dense(128) -> SpikingActivation("relu") -> TemporalAvgPool ->
  Dense(10)`` on the image repeated for ``N_STEPS = 10`` timesteps,
  ``dt = 0.01`` s, with spiking-aware training.  Its input is
  ``keras.Input((None, 784))``: ModelEnergy takes an undefined axis 1 as
  time, so its counts are per timestep;

trains each briefly, then uses ``keras_spiking.ModelEnergy`` with its default
assumptions (keras-spiking 0.3's; test images as ``example_data``, to measure
the input rates) to print their per-layer statistics and compare their energy
per inference on every known device.  A non-spiking device (CPU, GPU, ARM)
runs a model as a conventional network, one pass per inference; a spiking
device (Loihi, SpiNNaker) runs it for ``N_STEPS`` timesteps of ``dt`` and
pays a synaptic operation per input event.  As in keras-spiking 0.3's
notebook, the spiking model on Loihi costs thousands of times less than its
non-spiking twin on a CPU or GPU.  The comparison is printed and drawn as a
bar chart, ``model_energy.png`` in the output folder.  The last lines show
the same spiking model priced with ``assume="as_built"`` (only spikes are
events; the first layer, fed images, pays every synapse every timestep).

Run it (any backend, chosen with ``KERAS_BACKEND``)::

    python examples/model_energy.py                # embedded data subset
    python examples/model_energy.py --data synthetic --epochs 1

``--data small`` (the default) uses the 6,000 / 1,000 image subset shipped in
``examples/data/`` and falls back to random images (with a note) if that file
is missing; ``--data synthetic`` always uses random images, whose accuracy is
meaningless but whose energy estimates are still computed the same way.
"""

import argparse
import pathlib
import sys

import keras
import matplotlib
import numpy as np

import keras_spiking

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

SMALL_DATA = (
    pathlib.Path(__file__).resolve().parent / "data" / "fashion_mnist_small.npz"
)
N_STEPS = 10
DT = 0.01
N_EXAMPLE = 200  # test images used to measure firing rates
LINE_LENGTH = 120  # summary width
COLUMNS = (
    "name",
    "output_shape",
    "params",
    "connections",
    "neurons",
    "rate",
    "energy cpu",
    "energy gpu",
    "energy loihi",
)


def load_data(which, limit, seed):
    """Images scaled to [0, 1], shape (n, 784), and labels; plus a note."""
    if which == "small" and SMALL_DATA.is_file():
        with np.load(SMALL_DATA) as data:
            x_train, y_train, x_test, y_test = (
                data[k] for k in ("x_train", "y_train", "x_test", "y_test")
            )
        note = f"Fashion-MNIST subset from {SMALL_DATA.name}"
    else:
        rng = np.random.default_rng(seed)
        x_train = rng.integers(0, 256, (6000, 28, 28), dtype=np.uint8)
        y_train = rng.integers(0, 10, 6000, dtype=np.uint8)
        x_test = rng.integers(0, 256, (1000, 28, 28), dtype=np.uint8)
        y_test = rng.integers(0, 10, 1000, dtype=np.uint8)
        note = "synthetic random images (accuracy is meaningless)"
        if which == "small":
            note += f"; {SMALL_DATA} not found"
    arrays = []
    for x, y in ((x_train, y_train), (x_test, y_test)):
        x = (x.reshape(len(x), -1) / 255.0).astype("float32")[:limit]
        arrays += [x, y.astype("int32")[:limit]]
    return arrays, note


def tile(x):
    """(n, 784) -> (n, N_STEPS, 784): the image at every timestep."""
    return np.repeat(x[:, None, :], N_STEPS, axis=1)


def non_spiking_model():
    inp = keras.Input((784,), name="image")
    x = keras.layers.Dense(128, activation="relu", name="hidden")(inp)
    out = keras.layers.Dense(10, name="output")(x)
    return keras.Model(inp, out, name="non_spiking")


def spiking_model():
    inp = keras.Input((None, 784), name="frames")  # axis 1: time
    x = keras.layers.Dense(128, name="hidden")(inp)
    x = keras_spiking.SpikingActivation("relu", dt=DT, name="spikes")(x)
    x = keras_spiking.TemporalAvgPool(name="rates")(x)
    out = keras.layers.Dense(10, name="output")(x)
    return keras.Model(inp, out, name="spiking")


def train(model, x, y, x_test, y_test, epochs):
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, batch_size=250, verbose=0)
    return accuracy


def compare(energies, devices):
    """Rows (device, spiking?, non-spiking J, spiking J) per inference.

    Both models get ``N_STEPS`` timesteps of ``DT`` per inference (which a
    non-spiking device ignores: one pass).
    """
    rows = []
    for device in devices:
        plain, spiking = (
            energies[name].total_energy(device, timesteps_per_inference=N_STEPS, dt=DT)
            for name in ("non_spiking", "spiking")
        )
        rows.append(
            (
                device,
                keras_spiking.ModelEnergy.devices[device]["spiking"],
                plain,
                spiking,
            )
        )
    return rows


def plot(rows, path):
    devices = [r[0] for r in rows]
    index = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.bar(index - 0.2, [r[2] for r in rows], 0.4, label="non-spiking model")
    ax.bar(index + 0.2, [r[3] for r in rows], 0.4, label="spiking model")
    ax.set_xticks(
        index,
        [
            f"{d}\n({'spiking' if r[1] else 'non-spiking'})"
            for d, r in zip(devices, rows, strict=True)
        ],
    )
    ax.set_yscale("log")
    ax.set_ylabel("energy per inference (J)")
    ax.set_title("Estimated energy per Fashion-MNIST inference")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Energy estimates of the Fashion-MNIST models "
        "(backend: $KERAS_BACKEND)."
    )
    parser.add_argument("--epochs", type=int, default=2, help="training epochs")
    parser.add_argument(
        "--data",
        choices=("small", "synthetic"),
        default="small",
        help="embedded Fashion-MNIST subset (default) or random images",
    )
    parser.add_argument("--out", default="out/model_energy", help="output folder")
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N", help="use only N images"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    if args.epochs < 0:
        parser.error(f"--epochs must be >= 0; got {args.epochs}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1; got {args.limit}")
    return args


def main(argv=None):
    """Train, estimate, print and plot; returns the comparison rows."""
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    (x_train, y_train, x_test, y_test), note = load_data(
        args.data, args.limit, args.seed
    )
    print(f"Data: {note}; {len(x_train)} training and {len(x_test)} test images.")

    models = {"non_spiking": non_spiking_model(), "spiking": spiking_model()}
    inputs = {
        "non_spiking": (x_train, x_test),
        "spiking": (tile(x_train), tile(x_test)),
    }
    energies = {}
    for name, model in models.items():
        train_x, test_x = inputs[name]
        if args.epochs:
            accuracy = train(model, train_x, y_train, test_x, y_test, args.epochs)
            print(
                f"\n{name}: test accuracy {accuracy:.3f} after {args.epochs} epoch(s)"
            )
        energies[name] = keras_spiking.ModelEnergy(
            model, example_data=test_x[:N_EXAMPLE]
        )
        print(f"\n{name} model (spiking devices: {N_STEPS} timesteps of {DT} s):")
        energies[name].summary(
            columns=COLUMNS,
            timesteps_per_inference=N_STEPS,
            dt=DT,
            line_length=LINE_LENGTH,
        )

    devices = list(keras_spiking.ModelEnergy.devices)
    rows = compare(energies, devices)
    print("\nEnergy per inference (J)")
    print(f"{'device':<12}{'type':<13}{'non-spiking':>13}{'spiking':>13}{'ratio':>9}")
    for device, spiking, plain, spiking_energy in rows:
        kind = "spiking" if spiking else "non-spiking"
        print(
            f"{device:<12}{kind:<13}{plain:>13.3g}{spiking_energy:>13.3g}"
            f"{spiking_energy / plain:>9.3g}"
        )

    by_device = {row[0]: row for row in rows}
    loihi = by_device["loihi"][3]
    print(
        f"\nSpiking model on loihi: {loihi:.3g} J per inference, "
        f"{by_device['cpu'][2] / loihi:,.0f} times less than the non-spiking "
        f"model on a CPU\nand {by_device['gpu'][2] / loihi:,.0f} times less "
        f"than on a GPU."
    )
    as_built = keras_spiking.ModelEnergy(
        models["spiking"], example_data=tile(x_test[:N_EXAMPLE]), assume="as_built"
    )
    print(
        '\nWith assume="as_built" (only SpikingActivation outputs are events; the '
        "first Dense\nlayer receives images, so it pays every synapse every "
        "timestep), the spiking model costs\n"
        + ", ".join(
            f"{as_built.total_energy(device, N_STEPS):.3g} J on {device}"
            for device in ("cpu", "loihi")
        )
        + " per inference."
    )

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(rows, out / "model_energy.png")
    print(f"\nBar chart: {out / 'model_energy.png'}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
