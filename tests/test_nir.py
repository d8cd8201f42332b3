"""``keras_spiking.nir``: export to and load from NIR graphs.

Three kinds of checks:

* round trips (``export``, ``nir.write``, ``nir.read``, ``load``): the
  reloaded model computes what the original did, and every array in the
  graph is the Keras weight under the documented transposes;
* a NumPy simulator of NIR graphs (``simulate``, below, written from the NIR
  node equations and the conventions ``export`` records in the metadata:
  ``dt``, inputs held over each step, subtractive reset, several spikes per
  step of height ``1 / dt``, voltages starting at 0) against the Keras
  model: spikes exactly on inputs where float32 is exact (dyadic weights and
  inputs), filters to 1e-6;
* layouts (channels-last Keras against channels-first NIR) against the
  simulator's NCHW convolution, pooling and flattening to 1e-5, and the
  cases NIR cannot express;
* models from ``keras_spiking.convert`` (their ``Rescaling`` layers as
  ``Scale`` nodes, or folded into the weights), layer names that the
  graph's Input/Output nodes would take, and what ``load`` does with gains
  (``r / v_threshold``) and ``Flatten`` dims, against the simulator.
"""

import keras
import numpy as np
import pytest

from tests.harness import optional_import

nir = optional_import("nir", "keras_spiking.nir")

import keras_spiking  # noqa: E402
from keras_spiking import SpikingActivation  # noqa: E402
from keras_spiking import nir as knir  # noqa: E402

TD = keras.layers.TimeDistributed

# ------------------------------------------------------------- simulator ---


def chain(graph):
    following = dict(graph.edges)
    (name,) = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    names = [name]
    while names[-1] in following:
        names.append(following[names[-1]])
    return names


def conv2d(x, node):
    """NCHW convolution, symmetric integer padding (float64)."""
    weight = np.asarray(node.weight, np.float64)
    stride, dilation = (
        np.broadcast_to(node.stride, 2),
        np.broadcast_to(node.dilation, 2),
    )
    pad = np.broadcast_to(node.padding, 2)
    x = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    out_c, _, kh, kw = weight.shape
    height = (x.shape[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    width = (x.shape[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((x.shape[0], out_c, height, width))
    for i in range(kh):
        for j in range(kw):
            top, left = i * dilation[0], j * dilation[1]
            patch = x[
                :,
                :,
                top : top + stride[0] * (height - 1) + 1 : stride[0],
                left : left + stride[1] * (width - 1) + 1 : stride[1],
            ]
            out += np.einsum("bchw,oc->bohw", patch, weight[:, :, i, j])
    return out + np.asarray(node.bias, np.float64).reshape(1, -1, 1, 1)


def avg_pool(x, node):
    (kh, kw), (sh, sw) = (
        np.broadcast_to(node.kernel_size, 2),
        np.broadcast_to(node.stride, 2),
    )
    assert not np.any(node.padding)
    height, width = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    out = np.zeros(x.shape[:2] + (height, width))
    for i in range(kh):
        for j in range(kw):
            out += x[
                :,
                :,
                i : i + sh * (height - 1) + 1 : sh,
                j : j + sw * (width - 1) + 1 : sw,
            ]
    return out / (kh * kw)


def flatten(x, start, end):
    """NIR's Flatten: axes ``start..end`` of the features (the axes after
    the batch axis) merged into one."""
    features = x.shape[1:]
    start, end = (d + len(features) if d < 0 else d for d in (start, end))
    merged = int(np.prod(features[start : end + 1]))
    return x.reshape((x.shape[0], *features[:start], merged, *features[end + 1 :]))


def simulate(graph, x, dt):
    """Run a chain-shaped NIR graph on ``x`` (``(batch, time, *input shape)``,
    channels first), under the conventions ``export`` records.

    Each step, every node reads its input (held over the step) and its
    output is its state at the end of the step: ``IF``: ``v += r I dt``,
    ``n = max(floor(v / v_threshold), 0)``, ``v -= n v_threshold``, output
    ``n / dt``; ``LI``: exact solution of ``tau dv/dt = v_leak - v + r I``
    over the step; ``CubaLI`` (equal time constants): exact solution of the
    two-state system.  Returns every node's outputs over time, float64.
    """
    names = chain(graph)
    assert graph.metadata.get("if_reset", "").startswith("subtract")
    states, outputs = {}, {name: [] for name in names}
    for t in range(x.shape[1]):
        value = np.asarray(x[:, t], np.float64)
        for name in names:
            node = graph.nodes[name]
            if isinstance(node, nir.Affine):
                value = value @ np.asarray(node.weight, np.float64).T + node.bias
            elif isinstance(node, nir.Linear):
                value = value @ np.asarray(node.weight, np.float64).T
            elif isinstance(node, nir.Conv2d):
                value = conv2d(value, node)
            elif isinstance(node, nir.AvgPool2d):
                value = avg_pool(value, node)
            elif isinstance(node, nir.Flatten):
                value = flatten(value, node.start_dim, node.end_dim)
            elif isinstance(node, nir.Scale):
                value = value * np.asarray(node.scale, np.float64)
            elif isinstance(node, nir.IF):
                v = states.get(name, 0.0) + node.r * value * dt
                n = np.maximum(np.floor(v / node.v_threshold), 0)
                states[name] = v - n * node.v_threshold
                value = n / dt
            elif isinstance(node, nir.LI):
                a = np.exp(-dt / np.asarray(node.tau, np.float64))
                drive = node.r * value + node.v_leak
                value = states[name] = a * states.get(name, 0.0) + (1 - a) * drive
            elif isinstance(node, nir.CubaLI):
                tau = np.asarray(node.tau_mem, np.float64)
                assert np.array_equal(tau, node.tau_syn) and not np.any(node.v_leak)
                a, rho = np.exp(-dt / tau), dt / tau
                u = node.w_in * value
                p, q = states.get(name, (0.0, 0.0))
                q = a * q + (1 - a - rho * a) * u + rho * a * p
                p = a * p + (1 - a) * u
                states[name] = (p, q)
                value = node.r * q
            outputs[name].append(value)
    return {name: np.stack(values, axis=1) for name, values in outputs.items()}


# --------------------------------------------------------------- helpers ---


def dyadic(rng, shape, low, high, bits=4):
    """Multiples of ``2**-bits`` in ``[low, high]``: exact in float32."""
    scale = 2**bits
    return (rng.integers(low * scale, high * scale + 1, shape) / scale).astype(
        "float32"
    )


def set_dyadic_weights(model, seed, low=-1.0, high=1.0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, (keras.layers.Dense, keras.layers.Conv2D)):
            layer.set_weights(
                [dyadic(rng, w.shape, low, high) for w in layer.get_weights()]
            )


def spiking(**kwargs):
    kwargs.setdefault("dt", 1.0)
    return SpikingActivation("relu", neuron="if", initial_voltage=0.0, **kwargs)


def dense_model(dt=1.0):
    inputs = keras.Input((None, 3), name="x")
    x = keras.layers.Dense(5, name="dense0")(inputs)
    x = spiking(dt=dt, name="if0")(x)
    x = keras_spiking.Lowpass(
        keras.initializers.RandomUniform(2 * dt, 8 * dt, seed=1), dt=dt, name="low"
    )(x)
    x = keras.layers.Dense(4, use_bias=False, name="dense1")(x)
    x = spiking(dt=dt, name="if1")(x)
    x = keras.layers.Dense(3, name="dense2")(x)
    x = spiking(dt=dt, name="if2")(x)
    x = keras_spiking.Alpha(3 * dt, dt=dt, name="alpha")(x)
    return keras.Model(inputs, x)


def conv_model(dt=1.0):
    inputs = keras.Input((None, 8, 8, 2), name="x")
    x = TD(keras.layers.Conv2D(3, 3, padding="same"), name="conv")(inputs)
    x = spiking(dt=dt, name="if0")(x)
    x = TD(keras.layers.AveragePooling2D(2), name="pool")(x)
    x = keras_spiking.Lowpass(
        keras.initializers.RandomUniform(2 * dt, 8 * dt, seed=2), dt=dt, name="low"
    )(x)
    x = TD(keras.layers.Flatten(), name="flat")(x)
    x = keras.layers.Dense(4, name="dense")(x)
    x = spiking(dt=dt, name="if1")(x)
    x = keras_spiking.Alpha(
        keras.initializers.RandomUniform(2 * dt, 8 * dt, seed=3), dt=dt, name="alpha"
    )(x)
    return keras.Model(inputs, x)


def probe(model, names):
    """A model giving the outputs of the layers ``names`` of ``model``."""
    return keras.Model(model.inputs, [model.get_layer(n).output for n in names])


def to_nchw(x):
    return np.moveaxis(x, -1, 2) if x.ndim == 5 else x


# ------------------------------------------------------------ the fixture ---


def fixture_graph(dt=1.0):
    """The issue's fixture, with the conventions in its metadata (and ``dt``
    unless None)."""
    w1 = np.array([[0.5, 0.2], [0.1, 0.3], [-0.2, 0.4]], np.float32)
    b1 = np.array([0.05, 0.0, 0.1], np.float32)
    w2 = np.array([[1.0, -0.5, 2.0]], np.float32)
    ones, one = np.ones(3, np.float32), np.ones(1, np.float32)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2])}),
        "affine1": nir.Affine(weight=w1, bias=b1),
        "if1": nir.IF(r=ones, v_threshold=ones, v_reset=0 * ones),
        "affine2": nir.Affine(weight=w2, bias=np.zeros(1, np.float32)),
        "li": nir.LI(tau=5 * one, r=one, v_leak=0 * one),
        "output": nir.Output(output_type={"output": np.array([1])}),
    }
    names = list(nodes)
    metadata = dict(knir.CONVENTIONS) | ({} if dt is None else {"dt": dt})
    edges = list(zip(names[:-1], names[1:], strict=True))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def test_fixture_graph_spike_counts(tmp_path):
    """The issue's fixture at dt = 1: 12, 4 and 1 spikes in 20 steps."""
    path = tmp_path / "fixture.nir"
    nir.write(path, fixture_graph())
    model = knir.load(path)  # dt from the metadata
    x = np.tile(np.array([1.0, 0.48], np.float32), (1, 20, 1))
    spikes, out = probe(model, ["if1", "li"]).predict(x, verbose=0)
    np.testing.assert_array_equal(spikes.sum(axis=1)[0], [12, 4, 1])
    reference = simulate(nir.read(path), x, 1.0)
    np.testing.assert_array_equal(spikes, reference["if1"])
    np.testing.assert_allclose(out, reference["li"], rtol=0, atol=1e-6)


# ------------------------------------------------------------- round trip ---


def assert_arrays_are_keras_weights(graph, model):
    """Every array of the graph is the matching Keras weight, transposed."""
    for layer in model.layers:
        if layer.name not in graph.nodes:
            continue
        node, inner = graph.nodes[layer.name], getattr(layer, "layer", layer)
        if isinstance(inner, keras.layers.Conv2D):
            kernel, bias = (np.asarray(w) for w in inner.get_weights())
            np.testing.assert_array_equal(node.weight, kernel.transpose(3, 2, 0, 1))
            np.testing.assert_array_equal(node.bias, bias)
        elif isinstance(inner, keras.layers.Dense):
            kernel = np.asarray(inner.kernel)
            previous = model.layers[model.layers.index(layer) - 1]
            if previous.name == "flat":  # rows (h, w, c) -> (c, h, w)
                h, w, c = previous.input.shape[2:]
                kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3)
                kernel = kernel.reshape(h * w * c, -1)
            np.testing.assert_array_equal(node.weight, kernel.T)
            if inner.use_bias:
                np.testing.assert_array_equal(node.bias, np.asarray(inner.bias))
            else:
                assert isinstance(node, nir.Linear)
        elif isinstance(inner, (keras_spiking.Lowpass, keras_spiking.Alpha)):
            tau = np.asarray(inner.tau)
            if tau.ndim == 3:
                tau = tau.transpose(2, 0, 1)
            node_tau = node.tau if isinstance(node, nir.LI) else node.tau_mem
            np.testing.assert_array_equal(node_tau, tau)
            if isinstance(node, nir.CubaLI):
                np.testing.assert_array_equal(node.tau_syn, tau)
        elif isinstance(inner, SpikingActivation):
            assert isinstance(node, nir.IF)
            np.testing.assert_array_equal(node.r, 1)
            np.testing.assert_array_equal(node.v_threshold, 1)
            np.testing.assert_array_equal(node.v_reset, 0)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_round_trip(kind, tmp_path):
    dt = 0.001
    model = (dense_model if kind == "dense" else conv_model)(dt)
    set_dyadic_weights(model, seed=0, low=-0.25, high=1.0)  # every layer fires
    rng = np.random.default_rng(0)
    shape = (2, 60) + tuple(model.inputs[0].shape[2:])
    x = rng.uniform(0, 2000, shape).astype("float32")
    path = tmp_path / "model.nir"
    graph = knir.export(model, path)
    assert_arrays_are_keras_weights(graph, model)
    read = nir.read(path)
    assert read.metadata["dt"] == dt and read.metadata["time_unit"] == "s"
    assert_arrays_are_keras_weights(read, model)
    loaded = knir.load(read)
    names = [n for n in ("if0", "if1", "if2", "alpha") if n in graph.nodes]
    want = probe(model, names).predict(x, verbose=0)
    got = probe(loaded, names).predict(x, verbose=0)
    for name, g, w in zip(names, got, want, strict=True):
        if name.startswith("if"):
            np.testing.assert_array_equal(g, w, err_msg=name)
            assert w.sum() > 0, name
        else:
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6, err_msg=name)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert_arrays_are_keras_weights(knir.export(loaded), loaded)


# --------------------------------------------------- against the simulator ---


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_simulator_matches_every_depth(kind):
    """The IF mode at every depth: exact spikes; filters to 1e-6."""
    model = (dense_model if kind == "dense" else conv_model)(1.0)
    set_dyadic_weights(model, seed=1)
    rng = np.random.default_rng(2)
    x = dyadic(rng, (2, 40) + tuple(model.inputs[0].shape[2:]), -1.0, 2.0)
    graph = knir.export(model)
    reference = simulate(graph, to_nchw(x), 1.0)
    names = [n for n in ("if0", "if1", "if2", "low", "alpha") if n in graph.nodes]
    for name, got in zip(names, probe(model, names).predict(x, verbose=0), strict=True):
        want = reference[name]
        if got.ndim == 5:
            got = np.moveaxis(got, -1, 2)
        if name.startswith("if"):
            np.testing.assert_array_equal(got, want, err_msg=name)
            assert want.sum() > 10, name
        else:
            np.testing.assert_allclose(
                got, want, rtol=0, atol=1e-6 * np.abs(want).max()
            )


def test_rate_mode_first_layer_with_non_negative_input():
    """The default (rectifying) mode is exported as IF only on request, and
    is then exact on a first layer whose input is non-negative."""
    inputs = keras.Input((None, 3))
    x = keras.layers.Dense(4, name="dense")(inputs)
    x = SpikingActivation("relu", dt=1.0, initial_voltage=0.0, name="rate")(x)
    model = keras.Model(inputs, x)
    set_dyadic_weights(model, seed=3, low=0.0, high=1.0)
    with pytest.raises(ValueError, match="'rate'.*rectifies.*neuron='if'"):
        knir.export(model)
    graph = knir.export(model, approximate=True)
    assert graph.metadata["rectified_if_nodes"] == "rate"
    assert "rectifies" in graph.metadata["approximations"]
    x = dyadic(np.random.default_rng(4), (2, 50, 3), 0.0, 2.0)
    want = simulate(graph, x, 1.0)["rate"]
    np.testing.assert_array_equal(model.predict(x, verbose=0), want)
    assert want.sum() > 10
    # load restores the rectifying mode from the metadata
    assert knir.load(graph).get_layer("rate").neuron == "rate"


# ----------------------------------------------------------------- layout ---

LAYOUTS = {
    "valid": dict(conv=dict(padding="valid"), size=9),
    "same, stride 1": dict(conv=dict(padding="same"), size=9),
    "same, stride 2": dict(conv=dict(padding="same", strides=2), size=9),
    "valid, dilated, pooled": dict(
        conv=dict(padding="valid", dilation_rate=2), size=10, pool=True
    ),
    "valid, stride 2, pooled": dict(
        conv=dict(padding="valid", strides=2), size=11, pool=True
    ),
}


@pytest.mark.parametrize("case", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_layout_against_nchw_reference(case):
    size = case["size"]
    inputs = keras.Input((None, size, size, 2))
    x = TD(keras.layers.Conv2D(3, 3, **case["conv"]), name="conv")(inputs)
    if case.get("pool"):
        x = TD(keras.layers.AveragePooling2D(2), name="pool")(x)
    x = TD(keras.layers.Flatten(), name="flat")(x)
    x = keras.layers.Dense(5, name="dense")(x)
    model = keras.Model(inputs, x)
    x = np.random.default_rng(5).normal(size=(2, 3, size, size, 2)).astype("float32")
    want = simulate(knir.export(model), to_nchw(x), 1.0)["dense"]
    got = model.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize(
    "layer, size, match",
    [
        (keras.layers.Conv2D(3, 3, padding="same", strides=2), 8, "padding='same'"),
        (keras.layers.Conv2D(3, 4, padding="same"), 8, "padding='same'"),
        (keras.layers.AveragePooling2D(2, padding="same"), 5, "padding='same'"),
        (keras.layers.Conv2D(3, 3, activation="relu"), 8, "activation 'relu'"),
    ],
)
def test_inexpressible_layouts_raise(layer, size, match):
    inputs = keras.Input((None, size, size, 2))
    model = keras.Model(inputs, TD(layer, name="odd")(inputs))
    with pytest.raises(ValueError, match=f"'odd'.*{match}"):
        knir.export(model)


# ---------------------------------------------- what NIR cannot express ---


def single(layer, approximate=False):
    inputs = keras.Input((None, 3))
    return knir.export(keras.Model(inputs, layer(inputs)), approximate=approximate)


def test_random_initial_voltage_needs_approximate():
    with pytest.raises(ValueError, match="'rand'.*initial_voltage='uniform'"):
        single(SpikingActivation("relu", neuron="if", name="rand"))
    graph = single(SpikingActivation("relu", neuron="if", name="rand"), True)
    assert "rand: initial_voltage" in graph.metadata["approximations"]


def test_other_activations_raise():
    with pytest.raises(ValueError, match="'th'.*activation 'tanh'"):
        single(SpikingActivation("tanh", initial_voltage=0.0, name="th"), True)


def test_non_zero_initial_level_needs_approximate():
    layer = keras_spiking.Lowpass(0.01, level_initializer="ones", name="lvl")
    with pytest.raises(ValueError, match="'lvl'.*initial level"):
        single(layer)


def test_temporal_avg_pool_needs_approximate():
    inputs = keras.Input((None, 3))
    x = spiking(name="s")(inputs)
    model = keras.Model(inputs, keras_spiking.TemporalAvgPool(name="avg")(x))
    with pytest.raises(ValueError, match="'avg'.*TemporalAvgPool"):
        knir.export(model)
    graph = knir.export(model, approximate=True)
    assert (
        "avg" not in graph.nodes and "avg: left out" in graph.metadata["approximations"]
    )


def test_different_dts_raise():
    inputs = keras.Input((None, 3))
    x = spiking(dt=0.001)(inputs)
    model = keras.Model(inputs, spiking(dt=0.002)(x))
    with pytest.raises(ValueError, match="same dt"):
        knir.export(model)


def test_load_needs_dt_and_rejects_resets():
    with pytest.raises(ValueError, match="dt"):
        knir.load(fixture_graph(dt=None))
    graph = fixture_graph()
    graph.nodes["if1"].v_reset = np.full(3, 0.5, np.float32)
    with pytest.raises(ValueError, match="'if1'.*v_reset"):
        knir.load(graph, dt=1.0)


def test_load_folds_gain_into_weights():
    """``IF(r, v_threshold)`` with ``r / v_threshold`` = 2 spikes as a unit
    IF fed twice the input: the gain goes into the Affine before it."""
    graph = fixture_graph()
    graph.nodes["if1"].r = np.full(3, 4.0, np.float32)
    graph.nodes["if1"].v_threshold = np.full(3, 2.0, np.float32)
    model = knir.load(graph, dt=1.0)
    x = np.tile(np.array([1.0, 0.48], np.float32), (1, 20, 1))
    spikes = probe(model, ["if1"]).predict(x, verbose=0)
    np.testing.assert_array_equal(spikes, simulate(graph, x, 1.0)["if1"])
    np.testing.assert_array_equal(spikes.sum(axis=1)[0], [25, 9, 3])


def test_import_does_not_need_nir():
    """``import keras_spiking`` does not import ``nir`` (an optional extra)."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['nir'] = None; import keras_spiking; "
        "import keras_spiking.nir; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


@pytest.mark.parametrize("neuron", ["if", "rate"])
def test_sinabs_reads_the_first_layer_spike_for_spike(neuron):
    """sinabs' ``from_nir`` (IAF: subtractive reset, several spikes per step,
    ``min_v_mem = -v_threshold``) gives the same first-layer spike trains at
    dt = 1 on non-negative input, for both modes (exported with
    ``approximate=True`` for the rectifying one).  sinabs pins
    ``nir<=1.0.4``: install it beside nir 1.0.8 with ``--no-deps``."""
    sinabs_nir = optional_import("sinabs.nir", "the NIR cross-check against sinabs")
    import torch

    inputs = keras.Input((None, 3))
    x = keras.layers.Dense(4, name="dense")(inputs)
    x = SpikingActivation(
        "relu", neuron=neuron, dt=1.0, initial_voltage=0.0, name="first"
    )(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(6)
    model.get_layer("dense").set_weights(
        [rng.uniform(0, 1, (3, 4)).astype("float32"), np.full(4, 0.1, "float32")]
    )
    batch, steps = 2, 40
    x = rng.uniform(0, 2, (batch, steps, 3)).astype("float32")
    net = sinabs_nir.from_nir(knir.export(model, approximate=True), batch_size=batch)
    with torch.no_grad():
        out = net(torch.tensor(x.reshape(batch * steps, 3)))
    if isinstance(out, tuple):  # nirtorch >= 2 also returns its state
        out = out[0]
    want = model.predict(x, verbose=0)
    np.testing.assert_array_equal(out.numpy().reshape(want.shape), want)
    assert (want >= 2).any()  # several spikes per step occur


# -------------------------------------------------------- converted models ---


def dense_ann():
    inputs = keras.Input((6,), name="x")
    x = keras.layers.Dense(8, activation="relu", name="fc1")(inputs)
    x = keras.layers.Dense(5, activation="relu", name="fc2")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="output")(x))


def conv_ann():
    """The shape of examples/convert_cnn.py, small: its head is named
    "output", the name of the graph's own Output node."""
    inputs = keras.Input((6, 6, 2), name="image")
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(
        inputs
    )
    x = keras.layers.AveragePooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(5, activation="relu", name="fc")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="output")(x))


ANNS = {"dense": dense_ann, "conv": conv_ann}


def spiking_names(model):
    return [
        layer.name for layer in model.layers if isinstance(layer, SpikingActivation)
    ]


def repeated(images, steps):
    return np.repeat(images[:, None], steps, axis=1)


@pytest.mark.parametrize("kind", ANNS)
def test_converted_model_round_trip(kind, tmp_path):
    """``convert(normalize="max")`` wraps each spiking layer in ``Rescaling``
    layers: they export as ``Scale`` nodes and load back as ``Rescaling``,
    and the loaded model spikes as the converted one does, exactly."""
    ann = ANNS[kind]()
    rng = np.random.default_rng(7)
    for layer in ann.layers:
        if layer.weights:
            layer.set_weights([rng.normal(0, 0.5, w.shape) for w in layer.weights])
    shape = tuple(ann.inputs[0].shape[1:])
    calibration = rng.uniform(0, 1, (16, *shape)).astype("float32")
    # NIR neurons start at 0, as convert's do with initial_voltage=0
    model = keras_spiking.convert(
        ann,
        normalize="max",
        calibration_data=calibration,
        output="sequence",
        initial_voltage=0.0,
    )
    path = tmp_path / "converted.nir"
    graph = knir.export(model, path)
    scales = [name for name, node in graph.nodes.items() if isinstance(node, nir.Scale)]
    assert len(scales) == 2 * len(spiking_names(model)) and scales
    assert graph.metadata["approximations"] == ""
    loaded = knir.load(path)
    assert [(layer.name, type(layer)) for layer in loaded.layers[1:]] == [
        (layer.name, type(layer)) for layer in model.layers[1:]
    ]
    x = repeated(calibration[:4], 30)
    names = spiking_names(model)
    outputs = [model.get_layer(n).output for n in names] + [model.outputs[0]]
    want = keras.Model(model.inputs, outputs).predict(x, verbose=0)
    outputs = [loaded.get_layer(n).output for n in names] + [loaded.outputs[0]]
    got = keras.Model(loaded.inputs, outputs).predict(x, verbose=0)
    for name, g, w in zip(names + ["output"], got, want, strict=True):
        np.testing.assert_array_equal(g, w, err_msg=name)
        assert np.abs(w).sum() > 0, name


def scaled_dyadic_conversion(kind, scale=4.0, dt=0.125):
    """A converted model whose arithmetic is exact in float32: dyadic
    weights and a power-of-two rate scale."""
    ann = ANNS[kind]()
    set_dyadic_weights(ann, seed=8, low=-0.5, high=1.0)
    return keras_spiking.convert(
        ann, scale_firing_rates=scale, dt=dt, output="sequence", initial_voltage=0.0
    )


@pytest.mark.parametrize("kind", ANNS)
def test_fold_scales(kind):
    """``fold_scales=True`` folds each ``Scale`` into the weights before it
    (the rate scale ``s`` on the way in) or after it (``1 / s`` on the way
    out, across pooling and flattening): same spikes, with power-of-two
    scales exactly."""
    model = scaled_dyadic_conversion(kind)
    graph = knir.export(model, fold_scales=True)
    assert not any(isinstance(node, nir.Scale) for node in graph.nodes.values())
    folded = graph.metadata["folded_scales"].split(",")
    assert folded == [n for n in knir.export(model).nodes if "_scale_" in n]
    if kind == "dense":  # by hand: fc1 * 4 (in); fc2 / 4 (in), * 4 (out)
        for name, factor in (("fc1", 4.0), ("fc2", 1.0), ("output", 0.25)):
            kernel, bias = model.get_layer(name).get_weights()
            np.testing.assert_array_equal(graph.nodes[name].weight, factor * kernel.T)
            bias_factor = 1.0 if name == "output" else 4.0
            np.testing.assert_array_equal(graph.nodes[name].bias, bias_factor * bias)
    loaded = knir.load(graph)
    rng = np.random.default_rng(9)
    x = repeated(dyadic(rng, (3, *model.inputs[0].shape[2:]), 0.0, 1.0), 40)
    names = spiking_names(model)
    want = probe(model, names).predict(x, verbose=0)
    got = probe(loaded, names).predict(x, verbose=0)
    for name, g, w in zip(names, got, want, strict=True):
        np.testing.assert_array_equal(g, w, err_msg=name)
        assert w.sum() > 0, name
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )


def test_fold_scales_needs_weights_to_fold_into():
    inputs = keras.Input((None, 3))
    x = keras.layers.Dense(4, name="dense")(inputs)
    x = spiking(name="if")(x)
    model = keras.Model(inputs, keras.layers.Rescaling(0.5, name="out_scale")(x))
    assert isinstance(knir.export(model).nodes["out_scale"], nir.Scale)
    with pytest.raises(ValueError, match="fold_scales.*'out_scale'.*into weights"):
        knir.export(model, fold_scales=True)


def test_rescaling_per_feature_and_offset():
    """A per-feature scale keeps its features (CHW in the graph) through
    export and load; an offset has no NIR node."""
    inputs = keras.Input((None, 2, 2, 3))
    scale = np.arange(1, 13, dtype="float32").reshape(2, 2, 3) / 4
    x = keras.layers.Rescaling(scale, name="scale")(inputs)
    model = keras.Model(inputs, x)
    graph = knir.export(model)
    np.testing.assert_array_equal(graph.nodes["scale"].scale, scale.transpose(2, 0, 1))
    x = np.random.default_rng(10).normal(size=(2, 3, 2, 2, 3)).astype("float32")
    np.testing.assert_array_equal(
        knir.load(graph, dt=1.0).predict(x, verbose=0), model.predict(x, verbose=0)
    )
    offset = keras.layers.Rescaling(2.0, offset=1.0, name="shift")
    with pytest.raises(ValueError, match="'shift'.*offset=1.0"):
        single(offset)


# ------------------------------------------------------------ node names ---


def test_layers_named_input_and_output(tmp_path):
    """Layers named like the graph's Input/Output nodes keep their names
    (the IO nodes give way) through export, nir.write/read and load."""
    inputs = keras.Input((None, 3), name="x")
    x = keras.layers.Dense(4, name="input")(inputs)
    x = spiking(name="if")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="output")(x))
    set_dyadic_weights(model, seed=11)
    path = tmp_path / "names.nir"
    graph = knir.export(model, path)
    assert isinstance(graph.nodes["input"], nir.Affine)
    assert isinstance(graph.nodes["output"], nir.Affine)
    assert isinstance(graph.nodes["input_0"], nir.Input)
    assert isinstance(graph.nodes["output_0"], nir.Output)
    loaded = knir.load(path)
    assert [layer.name for layer in loaded.layers] == [
        "input_0",
        "input",
        "if",
        "output",
    ]
    x = dyadic(np.random.default_rng(12), (2, 20, 3), 0.0, 2.0)
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )


# --------------------------------------------------------- gains on load ---


def conv_if_graph(v_threshold):
    """Conv2d (dyadic weights) then IF(r=1, v_threshold), from a model."""
    inputs = keras.Input((None, 6, 6, 2))
    x = TD(keras.layers.Conv2D(3, 3, padding="same"), name="conv")(inputs)
    model = keras.Model(inputs, spiking(name="if")(x))
    set_dyadic_weights(model, seed=13)
    graph = knir.export(model)
    shape = graph.nodes["if"].v_threshold.shape  # (C, H, W)
    graph.nodes["if"].v_threshold = np.broadcast_to(
        np.asarray(v_threshold, np.float32), shape
    ).copy()
    return graph


# v_threshold (broadcast to (C, H, W)), and whether load needs a Rescaling
THRESHOLDS = {
    "uniform": (0.5, False),
    "per channel": (np.array([0.5, 1.0, 2.0]).reshape(3, 1, 1), False),
    "within a channel": (np.array([0.5, 2.0] * 3).reshape(1, 6, 1), True),
}


@pytest.mark.parametrize(
    "threshold, rescaling", THRESHOLDS.values(), ids=THRESHOLDS.keys()
)
def test_load_conv_if_with_threshold(threshold, rescaling):
    """An IF after a Conv2d with v_threshold != 1: the gain 1 / v_threshold
    goes into the convolution (the same in each channel) or a Rescaling
    (varying within a channel); spikes as the NumPy IF, exactly."""
    graph = conv_if_graph(threshold)
    model = knir.load(graph, dt=1.0)
    x = dyadic(np.random.default_rng(14), (2, 30, 6, 6, 2), -1.0, 2.0)
    got = np.moveaxis(model.predict(x, verbose=0), -1, 2)
    want = simulate(graph, to_nchw(x), 1.0)["if"]
    np.testing.assert_array_equal(got, want)
    assert want.sum() > 10
    layers = [type(layer).__name__ for layer in model.layers]
    assert ("Rescaling" in layers) == rescaling, layers


def filter_graph(nodes):
    """Input(3) -> Affine -> ``nodes`` -> Output, dyadic weights."""
    rng = np.random.default_rng(15)
    weight = dyadic(rng, (3, 3), -0.5, 1.0)
    named = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "affine": nir.Affine(weight=weight, bias=dyadic(rng, (3,), 0.0, 0.5)),
        **nodes,
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    names = list(named)
    edges = list(zip(names[:-1], names[1:], strict=True))
    return nir.NIRGraph(
        nodes=named, edges=edges, metadata=dict(knir.CONVENTIONS, dt=1.0)
    )


def unit_if(threshold=1.0):
    ones = np.ones(3, np.float32)
    return nir.IF(r=ones, v_threshold=threshold * ones, v_reset=0 * ones)


def unit_li(r=1.0):
    ones = np.ones(3, np.float32)
    return nir.LI(tau=4 * ones, r=r * ones, v_leak=0 * ones)


GAINS_AFTER = {
    "LI after LI": {"li1": unit_li(), "li2": unit_li(r=2.0)},
    "LI after IF": {"if1": unit_if(), "li2": unit_li(r=2.0)},
    "IF after IF": {"if1": unit_if(), "if2": unit_if(threshold=0.5)},
}


@pytest.mark.parametrize("nodes", GAINS_AFTER.values(), ids=GAINS_AFTER.keys())
def test_load_gain_after_a_node_without_weights(nodes):
    """A gain on a node that does not follow weights becomes a Rescaling
    named after the node: the same as the NumPy simulator."""
    graph = filter_graph(nodes)
    model = knir.load(graph)
    last = list(nodes)[-1]
    assert isinstance(model.get_layer(f"{last}_gain"), keras.layers.Rescaling)
    x = dyadic(np.random.default_rng(16), (2, 30, 3), 0.0, 2.0)
    got = model.predict(x, verbose=0)
    want = simulate(graph, x, 1.0)[last]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())
    assert np.abs(want).max() > 0


# --------------------------------------------------------------- Flatten ---


def flatten_graph(*flattens):
    """Input(2, 4, 4) -> the Flatten nodes ``(start_dim, end_dim)`` ->
    Affine(5) -> Output."""
    shape = np.array([2, 4, 4])
    nodes = {"input": nir.Input(input_type={"input": shape})}
    for i, (start, end) in enumerate(flattens):
        node = nir.Flatten(input_type={"input": shape}, start_dim=start, end_dim=end)
        nodes[f"flat{i}"] = node
        shape = node.output_type["output"]
    rng = np.random.default_rng(20)
    weight = rng.normal(size=(5, int(np.prod(shape)))).astype("float32")
    nodes["affine"] = nir.Affine(weight=weight, bias=np.zeros(5, np.float32))
    nodes["output"] = nir.Output(output_type={"output": np.array([5])})
    names = list(nodes)
    edges = list(zip(names[:-1], names[1:], strict=True))
    return nir.NIRGraph(
        nodes=nodes, edges=edges, metadata=dict(knir.CONVENTIONS, dt=1.0)
    )


@pytest.mark.parametrize(
    "flattens",
    [[(0, -1)], [(0, 2)], [(-3, -1)], [(1, 1), (0, -1)], [(0, -1), (0, 0)]],
    ids=str,
)
def test_load_flatten_dims(flattens):
    """NIR's Flatten dims count the axes after the batch axis: all of them
    flattened is Keras' Flatten, one of them is nothing."""
    graph = flatten_graph(*flattens)
    model = knir.load(graph)
    x = np.random.default_rng(17).normal(size=(2, 3, 4, 4, 2)).astype("float32")
    want = simulate(graph, to_nchw(x), 1.0)["affine"]
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "dims, match",
    [((1, -1), "start_dim=1, end_dim=-1 flattens only some"), ((0, 3), "end_dim=3")],
)
def test_load_flatten_dims_keras_cannot_build(dims, match):
    graph = flatten_graph((0, -1))
    graph.nodes["flat0"].start_dim, graph.nodes["flat0"].end_dim = dims
    with pytest.raises(ValueError, match=f"'flat0' \\(Flatten\\).*{match}"):
        knir.load(graph)


# -------------------------------------------------------------- the chain ---


def test_export_needs_a_chain():
    inputs = keras.Input((None, 3))
    x = keras.layers.Dense(3, name="a")(inputs)
    model = keras.Model(inputs, keras.layers.Add(name="skip")([x, inputs]))
    with pytest.raises(ValueError, match="keras_spiking.nir.export.*chain"):
        knir.export(model)
    with pytest.raises(TypeError, match="keras_spiking.nir.export.*keras.Model"):
        knir.export(keras.layers.Dense(3))


# ---------------------------------------------------------- mapping table ---


def test_mapping_table_covers_the_lookup_tables():
    rows = knir.mapping_table()
    assert all(len(row) == 3 and all(isinstance(c, str) for c in row) for row in rows)
    keras_layers = {row[0] for row in rows}
    assert {cls.__name__ for cls in knir._EXPORTERS} <= keras_layers
    nir_nodes = {node for row in rows for node in row[1].split(", ") if node}
    assert set(knir._LOADERS) <= nir_nodes
    for name in nir_nodes:
        assert issubclass(getattr(nir, name), nir.NIRNode), name


def test_sinabs_reads_a_converted_model_with_folded_scales():
    """sinabs has no Scale node: a converted model exported with
    ``fold_scales=True`` (scales in the weights) runs there, with the same
    first-layer spikes (dt = 1, non-negative input and weights)."""
    sinabs_nir = optional_import("sinabs.nir", "the NIR cross-check against sinabs")
    import torch

    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, activation="relu", name="fc")(inputs)
    ann = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    set_dyadic_weights(ann, seed=18, low=0.0, high=1.0)
    model = keras_spiking.convert(
        ann, scale_firing_rates=2.0, dt=1.0, output="sequence", initial_voltage=0.0
    )
    graph = knir.export(model, fold_scales=True)
    batch, steps = 2, 30
    x = dyadic(np.random.default_rng(19), (batch, steps, 3), 0.0, 2.0)
    net = sinabs_nir.from_nir(graph, batch_size=batch)
    with torch.no_grad():
        out = net(torch.tensor(x.reshape(batch * steps, 3)))
    if isinstance(out, tuple):  # nirtorch >= 2 also returns its state
        out = out[0]
    want = model.predict(x, verbose=0)
    np.testing.assert_allclose(out.numpy().reshape(want.shape), want, rtol=1e-6)
    assert (want != 0).any()
