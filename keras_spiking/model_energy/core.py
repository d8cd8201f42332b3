"""The ``ModelEnergy`` class."""

import numbers

import keras
import numpy as np

from keras_spiking import _graph
from keras_spiking.config import default
from keras_spiking.model_energy import graph, table
from keras_spiking.model_energy.counters import (
    ASSUMPTIONS,
    CONVERTED,
    LayerNode,
    find_counter,
    register_layer,
    run_counter,
)
from keras_spiking.model_energy.devices import DEVICES, get_device, register_device
from keras_spiking.model_energy.modes import AsBuilt, Converted

DEFAULT_COLUMNS = ("name", "output_shape", "params", "connections", "neurons")
DEFAULT_COLUMNS += ("energy cpu",)


def _check_run(timesteps_per_inference, dt):
    if (
        not isinstance(timesteps_per_inference, (int, np.integer))
        or isinstance(timesteps_per_inference, bool)
        or timesteps_per_inference < 1
    ):
        raise ValueError(
            f"`timesteps_per_inference` must be an int >= 1; got "
            f"{timesteps_per_inference!r}."
        )
    if dt is not None and not (isinstance(dt, numbers.Real) and dt > 0):
        raise ValueError(
            f"`dt` must be a positive number of seconds or None; got {dt!r}."
        )


class ModelEnergy:
    r"""Per-layer statistics and energy estimates of a Keras model.

    For every layer, counts its *connections* (synapses from its inputs to
    its outputs) and *neurons* (neuron updates per timestep), summed over the
    layer's calls in the model, and estimates the energy of one inference on
    a device from the device's energy per synaptic operation :math:`E_s` and
    per neuron update :math:`E_n` (see ``ModelEnergy.devices``).

    Parameters
    ----------
    model : keras.Model
        A functional or ``Sequential`` model built on ``keras.Input``.
    example_data : array_like, optional
        Inputs for ``model.predict``, to measure input rates; needed for
        energy on spiking devices.
    assume : {"converted", "as_built"}
        ``"converted"`` (default; keras-spiking 0.3's estimate): on a
        non-spiking device the model runs as a conventional network, one pass
        per inference, :math:`E = E_s C + E_n N`; on a spiking device the
        whole model is assumed converted to spiking neurons and event-driven
        synapses, :math:`E = T (E_s C r\,dt + E_n N)`, with :math:`r` the mean
        ``|input|`` of each layer over ``example_data`` (see
        ``keras_spiking.model_energy.converted`` for the counts).
        ``"as_built"``: the model as it is, simulated for :math:`T` timesteps
        on every device; only the outputs of spiking layers
        (``SpikingActivation``, ``LIF``, ``CubaLIF``, ``ALIF``) are spikes,
        other inputs cost every synapse every timestep (see
        ``keras_spiking.model_energy.modes.AsBuilt``).

    Attributes
    ----------
    model, example_data, assume
        As given.
    layer_stats : dict
        Layer object -> ``{"connections": int, "neurons": int, "spiking":
        bool}``, summed over its calls (``spiking``: False if the layer has a
        non-spiking non-linearity).
    layer_rates : dict
        Layer object -> input rate (converted: summed over its calls; empty
        without ``example_data``; as_built: only layers receiving measured
        spikes).
    node_stats : dict
        (converted only) Keras node -> the stats of that call.
    layer_details, rates : dict
        (as_built only) Layer name -> rich statistics, and spiking layer
        name -> firing rate; see ``modes.AsBuilt``.

    Examples
    --------
    >>> inp = keras.Input((784,))
    >>> model = keras.Model(inp, keras.layers.Dense(128, "relu")(inp))
    >>> ModelEnergy(model).summary(line_length=80)  # 100352 conn., 8.64e-04 J
    """

    #: Known devices, name -> ``{"energy_per_synop", "energy_per_neuron",
    #: "spiking"}`` (joules); see ``keras_spiking.model_energy.devices``.
    devices = DEVICES

    def __init__(self, model, example_data=None, *, assume=CONVERTED):
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"ModelEnergy expects a keras.Model; got {model!r} of type "
                f"{type(model).__name__}."
            )
        if assume not in ASSUMPTIONS:
            raise ValueError(f"`assume` must be one of {ASSUMPTIONS}; got {assume!r}.")
        self.model, self.example_data, self.assume = model, example_data, assume
        self._calls = graph.model_calls(model)
        mode = Converted if assume == CONVERTED else AsBuilt
        self._mode = mode(model, self._calls, example_data)
        self.layer_stats = self._mode.layer_stats
        self.layer_rates = self._mode.layer_rates
        for name in ("node_stats", "layer_details", "rates"):
            if hasattr(self._mode, name):
                setattr(self, name, getattr(self._mode, name))

    # ------------------------------------------------------- registration --

    @classmethod
    def compute_layer_stats(cls, layer, node=None):
        """Statistics of one call of ``layer`` (default assumption).

        Parameters
        ----------
        layer : keras.layers.Layer
            A layer that has been called.
        node : LayerNode or keras Node, optional
            The call; by default the layer's first.

        Returns
        -------
        dict
            What the layer's counter returns: any of ``"connections"``,
            ``"neurons"``, ``"spiking"``.
        """
        counter = (
            find_counter(layer, CONVERTED)
            if isinstance(layer, keras.layers.Layer)
            else None
        )
        if counter is None:
            raise ValueError(
                f"Cannot compute stats for layer of type '{type(layer).__name__}'"
            )
        if node is None:
            node = _graph.first_node(layer)
            if node is None:
                raise ValueError(
                    f"Layer '{layer.name}' has never been applied to any inputs, "
                    f"so its stats are undefined."
                )
        if not isinstance(node, LayerNode):
            node = LayerNode.from_keras_node(node)
        return run_counter(counter, node)

    register_layer = staticmethod(register_layer)
    register_device = staticmethod(register_device)

    # ------------------------------------------------------------- energy --

    def _layer(self, layer):
        if isinstance(layer, str):
            layer = next((x for x in self.layer_stats if x.name == layer), layer)
        if layer not in self.layer_stats:
            name = getattr(layer, "name", layer)
            raise ValueError(
                f"Model '{self.model.name}' has no layer {name!r}; its layers: "
                f"{', '.join(x.name for x in self.layer_stats)}."
            )
        return layer

    def _dt(self, dt):
        return dt if dt is not None or self.assume != CONVERTED else default.dt

    def layer_energy(self, layer, device, timesteps_per_inference=1, dt=None):
        """Energy of one layer per inference on ``device``.

        Parameters
        ----------
        layer : keras.layers.Layer or str
            A layer of the model (or its name); all its calls are counted.
        device : str
            A device name (case-insensitive), see ``ModelEnergy.devices``.
        timesteps_per_inference : int
            Timesteps of one inference on the device (converted: on spiking
            devices only; a non-spiking device does one pass).
        dt : float, optional
            The device's timestep (s), turning rates into events per timestep.
            Default: ``keras_spiking.default.dt`` (converted), the ``dt`` of
            the layers emitting the spikes (as_built).

        Returns
        -------
        synop_energy, neuron_energy : float
            Joules per inference for synaptic operations and neuron updates.
        """
        _check_run(timesteps_per_inference, dt)
        spec = get_device(device)
        return self._mode.layer_energy(
            self._layer(layer),
            str(device).lower(),
            spec,
            timesteps_per_inference,
            self._dt(dt),
        )

    def total_energy(self, device, timesteps_per_inference=1, dt=None):
        """Energy of the whole model per inference on ``device`` (joules).

        The sum of both parts of ``layer_energy`` over ``model.layers``; same
        parameters.
        """
        return sum(
            part
            for layer in self.layer_stats
            for part in self.layer_energy(layer, device, timesteps_per_inference, dt)
        )

    # ------------------------------------------------------------ summary --

    def summary(
        self,
        columns=DEFAULT_COLUMNS,
        timesteps_per_inference=1,
        dt=None,
        line_length=98,
        print_warnings=True,
        *,
        print_fn=None,
    ):
        """Print ``summary_string(...)`` (with ``print_fn``, default ``print``)."""
        text = self.summary_string(
            columns, timesteps_per_inference, dt, line_length, print_warnings
        )
        (print_fn or print)(text)

    def summary_string(
        self,
        columns=DEFAULT_COLUMNS,
        timesteps_per_inference=1,
        dt=None,
        line_length=98,
        print_warnings=True,
    ):
        """A table of per-layer statistics and energies, like ``model.summary``.

        Parameters
        ----------
        columns : sequence of str
            Any of ``"name"`` (``"<layer name> (<type>)"``),
            ``"output_shape"``, ``"params"``, ``"connections"``,
            ``"neurons"``, ``"rate"`` (input rate, Hz; nan if not measured),
            ``"calls"`` (calls of the layer in the model), ``"synops"``
            (connections x rate: synaptic operations per second on a spiking
            device) and, for any device, ``"synop_energy <device>"``,
            ``"neuron_energy <device>"`` and ``"energy <device>"`` (joules per
            inference; ``"energy_<device>"`` etc. are accepted too).
        timesteps_per_inference, dt
            As for ``layer_energy``.
        line_length : int
            Width of the table; columns are cut to fit.
        print_warnings : bool
            Whether to add the notes on the assumptions after the totals.

        Returns
        -------
        str
            The table, then (with an ``"energy <device>"`` column) a rule and
            the total energy per inference on each such device, then notes.
        """
        _check_run(timesteps_per_inference, dt)
        parsed = [table.parse_column(c) for c in columns]
        for column, (_, device) in zip(columns, parsed, strict=True):
            if device is not None and device.lower() not in DEVICES:
                raise ValueError(
                    f"Unknown column type '{column}': energy specs unknown for "
                    f"device '{device}'; known devices: {', '.join(sorted(DEVICES))}."
                )
        run = (timesteps_per_inference, dt)
        rows = [[table.header(kind, device) for kind, device in parsed]]
        rows += [self._row(layer, parsed, run) for layer in self.layer_stats]
        lines = table.render_table(
            rows, [kind == "name" for kind, _ in parsed], line_length
        )
        devices = [device for kind, device in parsed if kind == "energy"]
        totals = [(device, self._total_cell(device, run)) for device in devices]
        lines += table.totals_lines(totals, len(lines[0]))
        if print_warnings:
            missing = (
                any("n/a" in row for row in rows) or "n/a" in dict(totals).values()
            )
            lines += self._notes(devices, missing, line_length)
        return "\n".join(lines)

    def _row(self, layer, parsed, run):
        return [self._cell(layer, kind, device, run) for kind, device in parsed]

    def _output_shape(self, layer):
        shapes = set()
        for call in self._calls:
            if call.layer is layer:
                out = [tuple(t.shape) for t in call.outputs]
                shapes.add(str(out[0] if len(out) == 1 else out))
        return shapes.pop() if len(shapes) == 1 else "multiple"

    def _energy(self, layer, kind, device, run):
        try:
            synop, neuron = self.layer_energy(layer, device, *run)
        except ValueError:
            if self.assume == CONVERTED:
                raise
            return None
        return {"synop_energy": synop, "neuron_energy": neuron}.get(
            kind, synop + neuron
        )

    def _cell(self, layer, kind, device, run):
        if kind == "name":
            return f"{layer.name} ({type(layer).__name__})"
        if kind == "output_shape":
            return self._output_shape(layer)
        if kind == "params":
            return str(layer.count_params())
        if kind in ("connections", "neurons"):
            return str(self.layer_stats[layer][kind])
        if kind == "calls":
            return str(sum(call.layer is layer for call in self._calls))
        if kind in ("rate", "synops"):
            return getattr(self._mode, f"{kind}_cell")(layer)
        energy = self._energy(layer, kind, device, run)
        return "n/a" if energy is None else f"{energy:.2g}"

    def _total_cell(self, device, run):
        try:
            return self.total_energy(device, *run)
        except ValueError:
            if self.assume == CONVERTED:
                raise
            return "n/a"

    def _notes(self, devices, missing, line_length):
        if not devices and not missing:
            return []
        notes = [table.ESTIMATES_NOTE] if devices else []
        spiking = any(DEVICES[d.lower()]["spiking"] for d in devices)
        if (
            self.assume == CONVERTED
            and spiking
            and not all(s["spiking"] for s in self.layer_stats.values())
        ):
            notes.append(table.NON_SPIKING_NOTE)
        if missing:
            notes.append(
                "* n/a: spike rates not measured; pass example_data to ModelEnergy."
            )
        return [table.note(text, line_length) for text in notes]
