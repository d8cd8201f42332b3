"""``keras_spiking.nir`` with the LIF layers: ``LIF``, ``CubaLIF``, recurrence.

Checked against a float64 NumPy simulator of NIR graphs (``simulate``,
below), written from the NIR node equations and the conventions that
``export`` records in the metadata: ``LIF`` is the exact zero-order hold of
``tau dv/dt = (v_leak - v) + r I`` over each step, a spike (height
``1 / dt``) when ``v >= v_threshold`` after the update and ``v = v_reset`` in
the same step; ``CubaLIF`` the synapse's zero-order hold, then the
membrane's driven by the new current; a ``Linear`` from a neuron back to it
carries the previous step's spikes.  Spikes are compared exactly where every
voltage stays at least ``MARGIN`` away from its threshold (checked), so that
float32 rounding cannot move a spike.  Also: export -> write -> read -> load
round trips give the same spikes and weights bit for bit, the cases NIR
cannot express raise, and a graph written by snnTorch reads back with
snnTorch's spikes.
"""

import keras
import numpy as np
import pytest

from tests.harness import optional_import

nir = optional_import("nir", "keras_spiking.nir")

import keras_spiking  # noqa: E402
from keras_spiking import nir as knir  # noqa: E402

DT = 0.001
MARGIN = 1e-5

# ------------------------------------------------------------- simulator ---


def loops_of(graph):
    """``{neuron: Linear node}`` for each Linear whose only edges are from
    and back to one node."""
    into, out = {}, {}
    for source, target in graph.edges:
        out.setdefault(source, []).append(target)
        into.setdefault(target, []).append(source)
    return {
        into[name][0]: node
        for name, node in graph.nodes.items()
        if isinstance(node, (nir.Linear, nir.Affine))
        and len(into.get(name, [])) == 1
        and out.get(name) == into[name]
    }


def chain_of(graph, loops):
    skip = {id(node) for node in loops.values()}
    following = {
        s: t
        for s, t in graph.edges
        if id(graph.nodes[s]) not in skip and id(graph.nodes[t]) not in skip
    }
    (name,) = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    names = [name]
    while names[-1] in following:
        names.append(following[names[-1]])
    return names


def f64(values):
    return np.asarray(values, np.float64)


def simulate(graph, x, dt, resets=None):
    """Run a NIR graph of Affine/Linear/LIF/CubaLIF nodes (and recurrent
    loops) on ``x`` (``(batch, time, features)``), float64.

    ``resets``: node -> ``"subtract"`` or ``"none"`` for the nodes that
    ``export(approximate=True)`` listed (the rest reset to ``v_reset``).
    Returns ``(outputs, margin)``: every node's outputs over time, and the
    smallest ``|v - v_threshold|`` of any neuron at any step.
    """
    resets = resets or {}
    loops = loops_of(graph)
    names = chain_of(graph, loops)
    states, last = {}, {}
    outputs = {name: [] for name in names}
    margin = np.inf
    for t in range(x.shape[1]):
        value = f64(x[:, t])
        for name in names:
            node = graph.nodes[name]
            if isinstance(node, nir.Affine):
                value = value @ f64(node.weight).T + f64(node.bias)
            elif isinstance(node, nir.Linear):
                value = value @ f64(node.weight).T
            elif isinstance(node, (nir.LIF, nir.CubaLIF)):
                if name in loops:  # the previous step's spikes, 0 at first
                    spikes = last.get(name, np.zeros_like(value))
                    value = value + spikes @ f64(loops[name].weight).T
                v, i = states.get(name, (0.0, 0.0))
                if isinstance(node, nir.CubaLIF):
                    a_syn = np.exp(-dt / f64(node.tau_syn))
                    i = a_syn * i + (1 - a_syn) * f64(node.w_in) * value
                    value, tau = i, f64(node.tau_mem)
                else:
                    tau = f64(node.tau)
                a = np.exp(-dt / tau)
                v = a * v + (1 - a) * (f64(node.v_leak) + f64(node.r) * value)
                threshold = f64(node.v_threshold)
                margin = min(margin, np.abs(v - threshold).min())
                spiked = v >= threshold
                reset = resets.get(name, "zero")
                if reset == "subtract":
                    v = v - threshold * spiked
                elif reset == "zero":
                    v = np.where(spiked, f64(node.v_reset), v)
                states[name] = (v, i)
                value = last[name] = spiked / dt
            elif not isinstance(node, (nir.Input, nir.Output)):
                raise NotImplementedError(type(node).__name__)
            outputs[name].append(value)
    return {n: np.stack(v, axis=1) for n, v in outputs.items()}, margin


# ---------------------------------------------------------------- models ---


def set_weights(model, seed):
    """Weights that make every neuron fire now and then; per-neuron time
    constants and thresholds.  A ``Dense`` after spikes (of height
    ``1 / dt``) has weights of the order of ``dt``."""
    rng = np.random.default_rng(seed)
    scale = 1.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            kernel, bias = layer.get_weights()
            layer.set_weights(
                [
                    (scale * rng.uniform(-0.5, 1.5, kernel.shape)).astype("f4"),
                    rng.uniform(0, 0.5, bias.shape).astype("f4"),
                ]
            )
        elif isinstance(layer, (keras_spiking.LIF, keras_spiking.CubaLIF)):
            units = layer.tau.shape
            layer.tau.assign(rng.uniform(0.004, 0.02, units).astype("f4"))
            layer.threshold.assign(rng.uniform(0.5, 1.0, units).astype("f4"))
            if isinstance(layer, keras_spiking.CubaLIF):
                layer.tau_syn.assign(rng.uniform(0.002, 0.01, units).astype("f4"))
            if layer.recurrent:
                shape = layer.recurrent_kernel.shape
                layer.recurrent_kernel.assign(rng.uniform(-1, 1, shape).astype("f4"))
            scale = 5 * DT


def two_layer_model(cls, recurrent=False, reset="zero", **kwargs):
    inputs = keras.Input((None, 3), name="x")
    x = keras.layers.Dense(5, name="dense0")(inputs)
    x = cls(reset=reset, recurrent=recurrent, dt=DT, name="lif0", **kwargs)(x)
    x = keras.layers.Dense(4, name="dense1")(x)
    x = cls(reset=reset, recurrent=recurrent, dt=DT, name="lif1", **kwargs)(x)
    model = keras.Model(inputs, x)
    set_weights(model, seed=1)
    return model


def probe(model, names):
    return keras.Model(model.inputs, [model.get_layer(n).output for n in names])


def inputs(seed=0, steps=80, features=3):
    shape = (2, steps, features)
    return np.random.default_rng(seed).uniform(0, 3, shape).astype("f4")


def assert_spikes_match_reference(model, graph, x, resets=None):
    names = ["lif0", "lif1"]
    got = probe(model, names).predict(x, verbose=0)
    want, margin = simulate(graph, x, DT, resets)
    assert margin > MARGIN, f"pick another seed: a voltage {margin} from threshold"
    for name, spikes in zip(names, got, strict=True):
        assert_same_spikes(spikes, want[name], name)


def assert_same_spikes(got, want, name):
    """The same spikes, of height ``1 / dt`` (float32's ``1 / dt``)."""
    np.testing.assert_array_equal(got > 0, want > 0, err_msg=name)
    np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)
    assert 0 < np.count_nonzero(got) < got.size, name  # fires, not always


CLASSES = {"LIF": keras_spiking.LIF, "CubaLIF": keras_spiking.CubaLIF}
CASES = [(c, r) for c in CLASSES for r in (False, True)]
IDS = [f"{c}{'-recurrent' if r else ''}" for c, r in CASES]


# ----------------------------------------------------------------- export ---


@pytest.mark.parametrize("kind", CLASSES)
def test_export_writes_the_nir_node(kind):
    model = two_layer_model(CLASSES[kind])
    graph = knir.export(model)
    for name in ("lif0", "lif1"):
        node, layer = graph.nodes[name], model.get_layer(name)
        assert type(node).__name__ == kind
        tau = node.tau if kind == "LIF" else node.tau_mem
        np.testing.assert_array_equal(tau, np.asarray(layer.tau))
        np.testing.assert_array_equal(node.v_threshold, np.asarray(layer.threshold))
        np.testing.assert_array_equal(node.r, 1)
        np.testing.assert_array_equal(node.v_leak, 0)
        np.testing.assert_array_equal(node.v_reset, 0)
        if kind == "CubaLIF":
            np.testing.assert_array_equal(node.tau_syn, np.asarray(layer.tau_syn))
            np.testing.assert_array_equal(node.w_in, 1)
    assert graph.metadata["dt"] == DT
    assert "v >= v_threshold" in graph.metadata["lif_spikes"]
    assert graph.metadata["lif_resets"] == ""


@pytest.mark.parametrize("kind, recurrent", CASES, ids=IDS)
def test_spikes_match_the_nir_reference(kind, recurrent):
    model = two_layer_model(CLASSES[kind], recurrent)
    graph = knir.export(model)
    assert_spikes_match_reference(model, graph, inputs())


@pytest.mark.parametrize("kind, recurrent", CASES, ids=IDS)
def test_round_trip(kind, recurrent, tmp_path):
    model = two_layer_model(CLASSES[kind], recurrent)
    path = tmp_path / "lif.nir"
    knir.export(model, path)
    graph = nir.read(path)
    loaded = knir.load(graph)
    assert_spikes_match_reference(loaded, graph, inputs(1))
    x = inputs(2)
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    for name in ("lif0", "lif1"):
        layer = loaded.get_layer(name)
        assert type(layer) is CLASSES[kind]
        assert (layer.reset, layer.recurrent, layer.dt) == ("zero", recurrent, DT)
    for a, b in zip(model.weights, loaded.weights, strict=True):
        assert a.path.split("/")[-1] == b.path.split("/")[-1]
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)


def test_recurrent_kernel_is_a_cycle_through_a_linear(tmp_path):
    """``W`` weighs spike counts, NIR's edges carry spikes of height
    ``1 / dt``: the loop's weight is ``dt * W.T``, kept in float64 so that
    ``load`` gets ``W`` back bit for bit (``dt`` is not a power of two)."""
    model = two_layer_model(keras_spiking.LIF, recurrent=True)
    path = tmp_path / "rec.nir"
    knir.export(model, path)
    graph = nir.read(path)
    for name in ("lif0", "lif1"):
        loop = f"{name}_recurrent"
        assert (name, loop) in graph.edges and (loop, name) in graph.edges
        assert isinstance(graph.nodes[loop], nir.Linear)
        kernel = np.asarray(model.get_layer(name).recurrent_kernel, np.float64)
        np.testing.assert_allclose(
            graph.nodes[loop].weight, DT * kernel.T, rtol=1e-15, atol=0
        )
    assert len(graph.edges) == 5 + 4  # the chain x-dense0-...-output, 2 loops


def test_cuba_lif_is_two_stages_per_step():
    """What the metadata's ``cuba_lif`` says: the membrane is driven by the
    current at the end of the step, held over the step (``LI`` feeding
    ``LIF``), not the exact solution of the coupled equations, in which the
    current rises during the step."""
    tau, tau_syn, steps = 0.01, 0.004, 3
    layer = keras_spiking.CubaLIF(
        tau=tau, tau_syn=tau_syn, threshold=100.0, dt=DT, return_state=True
    )
    _, v, _ = layer(np.ones((1, steps, 1), "f4"))
    a, a_syn = np.exp(-DT / tau), np.exp(-DT / tau_syn)
    two_stage = coupled = i = 0.0
    for _ in range(steps):
        # coupled: v(dt) for i(s) = 1 + (i0 - 1) exp(-s / tau_syn)
        k = (a_syn - a) * tau_syn / (tau_syn - tau)
        coupled = a * coupled + (1 - a) + k * (i - 1)
        i = a_syn * i + (1 - a_syn)
        two_stage = a * two_stage + (1 - a) * i
    v = keras.ops.convert_to_numpy(v)
    np.testing.assert_allclose(v[0, 0], two_stage, rtol=1e-5)
    assert abs(coupled - two_stage) > 0.1 * two_stage


# ---------------------------------------------- what NIR cannot express ---


def single(layer, approximate=False):
    inputs = keras.Input((None, 3))
    return knir.export(keras.Model(inputs, layer(inputs)), approximate=approximate)


@pytest.mark.parametrize("approximate", [False, True])
def test_alif_raises(approximate):
    with pytest.raises(ValueError, match="'ad' \\(ALIF\\).*adaptive threshold"):
        single(keras_spiking.ALIF(name="ad"), approximate)


@pytest.mark.parametrize(
    "option, match",
    [
        (dict(discretization="euler"), "discretization='euler'.*tau' = -dt"),
        (dict(scale_input=False), "scale_input=False.*unscaled"),
        (dict(reset_delay=True), "reset_delay=True.*one step after"),
    ],
)
@pytest.mark.parametrize("approximate", [False, True])
def test_inexact_options_raise(option, match, approximate):
    layer = keras_spiking.LIF(reset="zero", name="opt", **option)
    with pytest.raises(ValueError, match=f"'opt' \\(LIF\\).*{match}"):
        single(layer, approximate)


@pytest.mark.parametrize("reset", ["subtract", "none"])
@pytest.mark.parametrize("kind", CLASSES)
def test_other_resets_need_approximate(kind, reset, tmp_path):
    """NIR's LIF sets the voltage to ``v_reset``: only ``reset="zero"`` is
    it.  With ``approximate=True`` the graph says zero, the metadata keeps
    the reset, and ``load`` restores it (same spikes)."""
    model = two_layer_model(CLASSES[kind], reset=reset)
    with pytest.raises(ValueError, match=f"'lif0'.*reset='{reset}'.*v_reset"):
        knir.export(model)
    path = tmp_path / "reset.nir"
    graph = knir.export(model, path, approximate=True)
    assert f"lif0: reset='{reset}'" in graph.metadata["approximations"]
    assert graph.metadata["lif_resets"] == f"lif0={reset},lif1={reset}"
    loaded = knir.load(path)
    assert loaded.get_layer("lif1").reset == reset
    x = inputs(3)
    resets = {"lif0": reset, "lif1": reset}
    assert_spikes_match_reference(model, graph, x, resets)
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )


def test_initial_voltage_needs_approximate():
    def layer():
        return keras_spiking.LIF(reset="zero", initial_voltage=0.5, name="iv")

    with pytest.raises(ValueError, match="'iv'.*initial_voltage=0.5"):
        single(layer())
    assert "iv: initial_voltage" in single(layer(), True).metadata["approximations"]


def test_recurrent_on_images_raises():
    inputs = keras.Input((None, 2, 2, 3))
    layer = keras_spiking.LIF(reset="zero", recurrent=True, name="img")
    with pytest.raises(ValueError, match="'img'.*recurrent=True on \\(2, 2, 3\\)"):
        knir.export(keras.Model(inputs, layer(inputs)))


# ------------------------------------------------------------------ load ---


def lif_graph(recurrent=None, **lif):
    """Input(2) -> Affine -> LIF(3) -> Output, with ``lif`` overriding the
    node's parameters; ``recurrent``: a loop weight (``3 x 3``)."""
    three = np.ones(3, np.float32)
    params = dict(
        tau=np.array([0.005, 0.01, 0.02], "f4"),
        r=three,
        v_leak=0 * three,
        v_threshold=np.array([0.5, 1.0, 0.75], "f4"),
        v_reset=0 * three,
    )
    params.update({k: np.asarray(v, np.float32) for k, v in lif.items()})
    weight = np.array([[0.5, 0.25], [0.75, -0.25], [1.0, 0.5]], "f4")
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2])}),
        "affine": nir.Affine(weight=weight, bias=np.array([0.25, 0, 0.5], "f4")),
        "lif": nir.LIF(**params),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "affine"), ("affine", "lif"), ("lif", "output")]
    if recurrent is not None:
        nodes["loop"] = recurrent
        edges += [("lif", "loop"), ("loop", "lif")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT})


def load_and_compare(graph, seed=4):
    model = knir.load(graph)
    x = inputs(seed, features=2)
    got = model.predict(x, verbose=0)
    want, margin = simulate(graph, x, DT)
    assert margin > MARGIN, margin
    assert_same_spikes(got, want["lif"], "lif")
    return model


def test_load_folds_r_into_the_affine():
    r = np.array([2.0, 0.5, 4.0])
    model = load_and_compare(lif_graph(r=r))
    weight = np.asarray(lif_graph().nodes["affine"].weight, np.float64)
    np.testing.assert_array_equal(model.get_layer("affine").kernel, weight.T * r)
    lif = model.get_layer("lif")
    np.testing.assert_array_equal(lif.tau, np.float32([0.005, 0.01, 0.02]))
    np.testing.assert_array_equal(lif.threshold, [0.5, 1, 0.75])
    assert model.get_layer("lif").reset == "zero"


def test_load_scales_the_recurrent_loop_by_r():
    """The gain ``r`` multiplies the loop's current too: ``W = r * weight.T
    / dt`` per receiving neuron."""
    r = np.array([2.0, 0.5, 1.0])
    weight = np.array([[0, -0.5, 0.25], [0.5, 0, -0.25], [-0.25, 0.75, 0]]) * DT
    model = load_and_compare(lif_graph(nir.Linear(weight=weight), r=r))
    np.testing.assert_allclose(
        model.get_layer("lif").recurrent_kernel, weight.T / DT * r, rtol=1e-6
    )


def mismatched_loop():
    graph = lif_graph(nir.Linear(weight=np.eye(3)))
    graph.nodes["loop"].weight = np.eye(2)  # NIRGraph checked the shapes before
    return graph


REJECTED = {
    "v_leak": (lambda: lif_graph(v_leak=[0, 0.1, 0]), "\\(LIF\\).*v_leak other"),
    "v_reset": (lambda: lif_graph(v_reset=[0, 0, -1]), "\\(LIF\\).*v_reset other"),
    "threshold": (lambda: lif_graph(v_threshold=[1, 0, 1]), "v_threshold not pos"),
    "tau": (lambda: lif_graph(tau=[0.01, -1, 0.01]), "tau not positive"),
    "bias": (
        lambda: lif_graph(nir.Affine(weight=np.eye(3), bias=np.ones(3))),
        "recurrent loop 'loop' has a bias",
    ),
    "shape": (mismatched_loop, "loop 'loop' has a weight of shape \\(2, 2\\)"),
}


@pytest.mark.parametrize("graph, match", REJECTED.values(), ids=REJECTED.keys())
def test_load_rejects(graph, match):
    with pytest.raises(ValueError, match=f"node 'lif'.*{match}"):
        knir.load(graph())


def test_load_rejects_a_loop_into_another_node():
    graph = lif_graph()
    nodes = dict(graph.nodes)
    nodes["lif"] = nir.LI(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3))
    nodes["loop"] = nir.Linear(weight=np.eye(3))
    edges = list(graph.edges) + [("lif", "loop"), ("loop", "lif")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT})
    with pytest.raises(ValueError, match="'lif' \\(LI\\).*recurrent loop"):
        knir.load(graph)


def test_load_rejects_bad_arguments_and_metadata():
    with pytest.raises(ValueError, match="load.*discretization.*'zoh'"):
        knir.load(lif_graph(), discretization="zoh")
    graph = lif_graph()
    graph.metadata["lif_resets"] = "lif=sometimes"
    with pytest.raises(ValueError, match="lif_resets.*'lif=sometimes'"):
        knir.load(graph)


def test_load_euler():
    """``discretization="euler"``: LIF layers stepping by forward Euler with
    the graph's ``tau``; a LI node's ``tau`` read as the one whose exact
    decay is ``1 - dt / tau``."""
    model = knir.load(lif_graph(), discretization="euler")
    layer = model.get_layer("lif")
    assert layer.discretization == "euler"
    np.testing.assert_array_equal(layer.tau, np.float32([0.005, 0.01, 0.02]))
    nodes = dict(lif_graph().nodes)
    nodes["lif"] = nir.LI(tau=np.full(3, 0.004), r=np.ones(3), v_leak=np.zeros(3))
    graph = nir.NIRGraph(nodes=nodes, edges=lif_graph().edges, metadata={"dt": DT})
    tau = knir.load(graph, discretization="euler").get_layer("lif").tau
    np.testing.assert_allclose(np.exp(-DT / np.asarray(tau)), 1 - DT / 0.004)
    nodes["lif"].tau = np.full(3, DT / 2)
    with pytest.raises(ValueError, match="'lif' \\(LI\\).*tau <= dt"):
        knir.load(graph, discretization="euler")


# --------------------------------------------------------------- snnTorch ---


def test_snntorch_graph_reads_back_with_its_spikes():
    """snnTorch writes ``Leaky(beta)`` as ``LIF(tau = dt / (1 - beta),
    r = tau / dt, v_leak = 0, v_reset = 0)`` with ``dt = 1e-4`` and no dt
    in the metadata: forward Euler, ``v = beta v + x``.  Read with
    ``dt=1e-4, discretization="euler"`` it gives snnTorch's spikes for
    ``reset_mechanism="zero", reset_delay=False`` (the reset its graph
    says; its default subtracts one step late, which the graph does not
    say)."""
    snntorch = optional_import("snntorch", "the NIR cross-check against snnTorch")
    import torch
    from snntorch.export_nir import export_to_nir

    dt, steps = 1e-4, 60
    torch.manual_seed(0)
    beta = torch.tensor([0.9, 0.8, 0.75, 0.5])
    threshold = torch.tensor([1.0, 0.5, 0.75, 1.25])
    linear = torch.nn.Linear(3, 4)
    neuron = snntorch.Leaky(
        beta=beta,
        threshold=threshold,
        init_hidden=True,
        reset_mechanism="zero",
        reset_delay=False,
    )
    graph = export_to_nir(torch.nn.Sequential(linear, neuron), torch.zeros(3))
    lif_name = next(n for n, v in graph.nodes.items() if isinstance(v, nir.LIF))
    np.testing.assert_allclose(graph.nodes[lif_name].tau, dt / (1 - beta.numpy()))
    assert "dt" not in graph.metadata

    model = knir.load(graph, dt=dt, discretization="euler")
    layer = model.get_layer(lif_name)
    np.testing.assert_array_equal(layer.tau, graph.nodes[lif_name].tau)
    np.testing.assert_array_equal(layer.threshold, threshold.numpy())
    assert (layer.reset, layer.discretization) == ("zero", "euler")
    x = np.random.default_rng(5).uniform(-1, 3, (2, steps, 3)).astype("f4")

    # snnTorch in float64, one step at a time; its spikes are 0/1
    neuron.double()
    linear.double()
    neuron.reset_mem()
    with torch.no_grad():
        spikes = np.stack(
            [
                neuron(linear(torch.tensor(x[:, t], dtype=torch.float64))).numpy()
                for t in range(steps)
            ],
            axis=1,
        )
    # its equation in NumPy: the same spikes, and how close v came to threshold
    weight, bias = (p.detach().numpy() for p in (linear.weight, linear.bias))
    beta, threshold = beta.numpy().astype("f8"), threshold.numpy().astype("f8")
    v, margin = np.zeros((2, 4)), np.inf
    for t in range(steps):
        v = beta * v + x[:, t] @ weight.T + bias
        margin = min(margin, np.abs(v - threshold).min())
        np.testing.assert_array_equal(v > threshold, spikes[:, t] == 1)
        v = np.where(v > threshold, 0.0, v)
    assert margin > MARGIN, margin
    got = model.predict(x, verbose=0) * dt
    np.testing.assert_array_equal(np.round(got), spikes)
    np.testing.assert_allclose(got, spikes, atol=1e-3)
    assert 0 < spikes.sum() < spikes.size
