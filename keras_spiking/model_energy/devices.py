"""Devices: energy per synaptic operation and per neuron update.

A device is ``{"energy_per_synop": joules, "energy_per_neuron": joules,
"spiking": bool}``.  A *spiking* (event-driven) device performs a synaptic
operation only when an input spike arrives; a non-spiking one computes every
synapse.  Device names are case-insensitive (stored in lower case).

Sources of the built-in figures: ``cpu`` (Intel i7-4960X), ``gpu`` (Nvidia GTX
Titan Black) and ``arm`` (ARM Cortex-A), one multiply-accumulate per synaptic
operation or neuron update: Degnan, Marr and Hasler, IEEE TVLSI 24(1), 2015.
``loihi``: Davies et al., IEEE Micro 38(1), 2018 (a synaptic operation,
23.6 pJ, plus a synaptic update, 3.5 pJ).  ``spinnaker``, ``spinnaker2``:
Höppner et al., IEEE TCAS-I 66(8), 2019.
"""

import numbers
import warnings

import numpy as np


def _spec(energy_per_synop, energy_per_neuron, spiking):
    return {
        "energy_per_synop": energy_per_synop,
        "energy_per_neuron": energy_per_neuron,
        "spiking": spiking,
    }


#: The known devices, name -> spec; ``ModelEnergy.devices`` is this dict.
DEVICES = {
    "cpu": _spec(8.6e-9, 8.6e-9, False),
    "gpu": _spec(0.3e-9, 0.3e-9, False),
    "arm": _spec(0.9e-9, 0.9e-9, False),
    "loihi": _spec((23.6 + 3.5) * 1e-12, 81e-12, True),
    "spinnaker": _spec(13.3e-9, 26e-9, True),
    "spinnaker2": _spec(450e-12, 2.19e-9, True),
}


def _check_energy(device_name, label, value):
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, (bool, np.bool_))
        or not value >= 0
    ):
        raise ValueError(
            f"Device '{device_name}' expects `{label}` to be a number >= 0 "
            f"(joules); got {value!r}."
        )


def register_device(device_name, energy_per_synop, energy_per_neuron, spiking):
    """Add a device, or replace one (with a warning).

    Parameters
    ----------
    device_name : str
        Name of the device (case-insensitive), used in ``layer_energy``,
        ``total_energy`` and the summary columns ``"energy <device_name>"``.
    energy_per_synop : float
        Joules per synaptic operation.
    energy_per_neuron : float
        Joules per neuron update.
    spiking : bool
        Whether the device is event-driven (a synaptic operation per input
        spike) or not (every synapse computed on every pass).
    """
    if not isinstance(device_name, str) or not device_name:
        raise TypeError(f"Device names must be non-empty strings; got {device_name!r}.")
    _check_energy(device_name, "energy_per_synop", energy_per_synop)
    _check_energy(device_name, "energy_per_neuron", energy_per_neuron)
    if not isinstance(spiking, (bool, np.bool_)):
        raise TypeError(
            f"Device '{device_name}' expects `spiking` to be a bool; got {spiking!r}."
        )
    key = device_name.lower()
    if key in DEVICES:
        warnings.warn(
            f"Device '{device_name}' already registered; replacing its figures.",
            stacklevel=3,
        )
    DEVICES[key] = _spec(
        float(energy_per_synop), float(energy_per_neuron), bool(spiking)
    )


def get_device(device):
    """The spec of ``device`` (a name, case-insensitive).

    Raises
    ------
    ValueError
        If no device of that name is known.
    """
    key = str(device).lower()
    if key not in DEVICES:
        raise ValueError(
            f"Energy specs unknown for device '{key}'; known devices: "
            f"{', '.join(sorted(DEVICES))} (add one with "
            f"ModelEnergy.register_device)."
        )
    return DEVICES[key]
