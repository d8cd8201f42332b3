r"""The two estimates: ``assume="converted"`` (default) and ``"as_built"``.

Both give ``layer_stats`` (layer -> ``{"connections", "neurons",
"spiking"}``, summed over the layer's calls in the model) and
``layer_energy``, which returns ``(synop_energy, neuron_energy)`` in joules
per inference of :math:`T` timesteps, with :math:`E_s`, :math:`E_n` the
device's energy per synaptic operation and per neuron update, :math:`C` the
connections and :math:`N` the neurons.
"""

import math

import numpy as np

from keras_spiking.model_energy import graph
from keras_spiking.model_energy.counters import (
    CONVERTED,
    LayerNode,
    find_counter,
    run_counter,
)
from keras_spiking.model_energy.timeaxis import Analysis
from keras_spiking.temporal import dt_value

NO_EXAMPLE_DATA = (
    "example_data must be given to ModelEnergy to estimate energy on spiking "
    "device '{device}': the number of synaptic operations depends on the "
    "input rates it measures"
)


def _layers(model):
    """``model.layers`` without repeats."""
    return list({id(layer): layer for layer in model.layers}.values())


class Converted:
    r"""keras-spiking 0.3's estimate: the model, converted, on each device.

    On a non-spiking device the model runs as a conventional network, one pass
    per inference: :math:`E_{syn} = E_s C`, :math:`E_{neu} = E_n N` (the
    input rate is taken as :math:`1/dt`, one event per timestep, and
    :math:`T = 1`).  On a spiking device every layer is assumed converted to
    spiking neurons and event-driven synapses: :math:`E_{syn} = E_s C r\,dt\,T`
    and :math:`E_{neu} = E_n N T`, with :math:`r` the layer's input rate,
    :math:`\mathrm{mean}(|x|)` of its input over ``example_data`` (summed over
    its calls).
    """

    def __init__(self, model, calls, example_data):
        self.example_data = example_data
        self.node_stats = {}
        self.layer_stats = {
            layer: {"connections": 0, "neurons": 0, "spiking": True}
            for layer in _layers(model)
        }
        for call in calls:
            node = LayerNode.from_keras_node(call.node)
            stats = run_counter(find_counter(call.layer, CONVERTED), node)
            self.node_stats[call.node] = stats
            total = self.layer_stats[call.layer]
            total["connections"] += stats.get("connections", 0)
            total["neurons"] += stats.get("neurons", 0)
            total["spiking"] &= stats.get("spiking", True)
        self.layer_rates = {}
        if example_data is not None:
            groups = [call.inputs or call.outputs for call in calls]
            means = graph.measure(model, groups, example_data)
            for layer in self.layer_stats:
                self.layer_rates[layer] = 0.0
            for call, mean in zip(calls, means, strict=True):
                self.layer_rates[call.layer] += mean

    def layer_energy(self, layer, device, spec, timesteps, dt):
        """(synapse energy, neuron energy) of ``layer`` on ``device`` (J)."""
        stats = self.layer_stats[layer]
        if spec["spiking"]:
            if self.example_data is None:
                raise ValueError(NO_EXAMPLE_DATA.format(device=device))
            rate = self.layer_rates[layer]
        else:
            rate, timesteps = 1 / dt, 1
        synop = spec["energy_per_synop"] * stats["connections"] * rate * dt * timesteps
        neuron = spec["energy_per_neuron"] * stats["neurons"] * timesteps
        return synop, neuron

    def rate_cell(self, layer):
        """The summary table's input-rate cell of ``layer``."""
        return f"{self.layer_rates.get(layer, np.nan):.2g}"

    def synops_cell(self, layer):
        """The summary table's synops-per-second cell of ``layer``."""
        rate = self.layer_rates.get(layer, np.nan)
        return f"{self.layer_stats[layer]['connections'] * rate:.3g}"


def _mean_source(sources, values):
    """Mean of ``values(source)`` over spike sources, weighted by neurons."""
    total = sum(n for _, _, n in sources)
    return sum(values(key, layer) * n for key, layer, n in sources) / total


class AsBuilt:
    r"""The model as built, on each device.

    Only spiking layers' outputs are spikes (``SpikingActivation``, ``LIF``,
    ``CubaLIF``, ``ALIF``; see ``timeaxis``).  Per
    timestep, a call costs :math:`S E_s + N E_n` with :math:`S = C r\,dt` on
    a spiking device for a call receiving spikes (:math:`r` their measured
    mean rate, :math:`dt` the device's, by default the emitting layer's) and
    :math:`S = C` otherwise (every synapse, every timestep, on every device);
    an inference costs :math:`T` timesteps on every device.

    Attributes
    ----------
    layer_details : dict
        Layer name -> ``{"type", "output_shape", "params", "calls",
        "connections", "neurons", "spiking", "spiking_input", "input_rate",
        "input_dt", "synops_per_second", "per_call"}`` (counts per timestep,
        summed over calls; ``per_call`` lists each call's figures).
    rates : dict
        Spiking layer name -> mean firing rate (Hz) of its output.
    """

    def __init__(self, model, calls, example_data):
        self.model = model
        analysis = Analysis(model, calls)
        self.sources = analysis.sources
        self.call_rates, self.rates = {}, {}
        if example_data is not None and analysis.spike_outputs:
            keys = [key for key, _ in analysis.spike_outputs]
            groups = [[tensor] for _, tensor in analysis.spike_outputs]
            means = graph.measure(model, groups, example_data)
            self.call_rates = dict(zip(keys, means, strict=True))
            for (name, _), rate in self.call_rates.items():
                self.rates.setdefault(name, []).append(rate)
            self.rates = {k: float(np.mean(v)) for k, v in self.rates.items()}
        self.layer_details = self._details(model, calls, analysis.stats)
        self.layer_stats = {
            layer: {
                k: self.layer_details[layer.name][k]
                for k in ("connections", "neurons", "spiking")
            }
            for layer in _layers(model)
        }
        self.layer_rates = {
            layer: self.layer_details[layer.name]["input_rate"]
            for layer in self.layer_stats
            if self.layer_details[layer.name]["input_rate"] is not None
        }

    def _input_rate(self, sources):
        """``(dt, rate)`` of spike sources (rate None if not measured)."""
        dt = _mean_source(sources, lambda key, layer: dt_value(layer.dt))
        if not all(key in self.call_rates for key, _, _ in sources):
            return dt, None
        return dt, _mean_source(sources, lambda key, layer: self.call_rates[key])

    def _call_details(self, call, stats):
        details = {
            "output_shape": stats["output_shape"],
            "connections": stats["connections"],
            "neurons": stats["neurons"],
            "spiking": stats["spiking"],
            "spiking_input": stats["spiking_input"],
            "input_rate": None,
            "input_dt": None,
            "synops_per_second": None,
        }
        sources = self.sources.get(call.key)
        if sources:
            details["input_dt"], details["input_rate"] = self._input_rate(sources)
            if details["input_rate"] is not None:
                details["synops_per_second"] = (
                    details["connections"] * details["input_rate"]
                )
        return details

    def _details(self, model, calls, stats):
        per_call = {}
        for call in calls:
            per_call.setdefault(call.layer.name, []).append(
                self._call_details(call, stats[call.key])
            )
        details = {}
        for layer in _layers(model):
            layer_calls = per_call[layer.name]
            details[layer.name] = self._layer_details(layer, layer_calls)
        return details

    def _layer_details(self, layer, layer_calls):
        name = type(layer).__name__
        if hasattr(layer, "layer") and name == "TimeDistributed":
            name += f"({type(layer.layer).__name__})"
        sources = [
            x
            for i, _ in enumerate(layer_calls)
            for x in self.sources.get((layer.name, i), ())
        ]
        dt, rate = self._input_rate(sources) if sources else (None, None)
        synops = [c["synops_per_second"] for c in layer_calls if c["spiking_input"]]
        return {
            "type": name,
            "output_shape": layer_calls[0]["output_shape"],
            "params": int(layer.count_params()),
            "calls": len(layer_calls),
            "connections": sum(c["connections"] for c in layer_calls),
            "neurons": sum(c["neurons"] for c in layer_calls),
            "spiking": all(c["spiking"] for c in layer_calls),
            "spiking_input": bool(sources),
            "input_rate": rate,
            "input_dt": dt,
            "synops_per_second": (
                None if not synops or None in synops else math.fsum(synops)
            ),
            "per_call": layer_calls,
        }

    def layer_energy(self, layer, device, spec, timesteps, dt):
        """(synapse energy, neuron energy) of ``layer`` on ``device`` (J)."""
        synop = neuron = 0.0
        for call in self.layer_details[layer.name]["per_call"]:
            synops = call["connections"]
            if spec["spiking"] and call["spiking_input"] and synops:
                if call["input_rate"] is None:
                    raise ValueError(
                        f"Layer '{layer.name}' receives spikes, so its energy on "
                        f"spiking device '{device}' depends on their rate: "
                        + NO_EXAMPLE_DATA.format(device=device)
                        + "."
                    )
                synops = synops * call["input_rate"] * (dt or call["input_dt"])
            synop += synops * spec["energy_per_synop"]
            neuron += call["neurons"] * spec["energy_per_neuron"]
        return timesteps * synop, timesteps * neuron

    def _spike_cell(self, layer, key, fmt):
        details = self.layer_details[layer.name]
        if not details["spiking_input"]:
            return "-"
        return "n/a" if details[key] is None else fmt.format(details[key])

    def rate_cell(self, layer):
        """The summary table's input-rate cell of ``layer``."""
        return self._spike_cell(layer, "input_rate", "{:.2g}")

    def synops_cell(self, layer):
        """The summary table's synops-per-second cell of ``layer``."""
        return self._spike_cell(layer, "synops_per_second", "{:.3g}")
