"""Rendering ``ModelEnergy.summary``: columns, layout, totals and notes.

The table is keras-spiking 0.3's: columns joined by ``|``, the header row
left-aligned, then a row of dashes, then one row per layer (values
right-aligned, names left-aligned).  If the cells fit in ``line_length``
(less one character per separator), each column is as wide as its widest
cell; otherwise each column gets at most an equal share of the width, the
width left over goes, one character at a time, to the column missing the
most characters, and longer cells are cut.
"""

import textwrap

#: column kind -> header (``{}``: the device)
HEADERS = {
    "name": "Layer (type)",
    "output_shape": "Output shape",
    "params": "Param #",
    "connections": "Conn #",
    "neurons": "Neuron #",
    "rate": "Rate [Hz]",
    "calls": "Calls",
    "synops": "Synops/s",
    "synop_energy": "Synop J/inf ({})",
    "neuron_energy": "Neuron J/inf ({})",
    "energy": "J/inf ({})",
}
DEVICE_COLUMNS = ("synop_energy", "neuron_energy", "energy")

ESTIMATES_NOTE = (
    "* These are estimates only: published energies per synaptic operation "
    "and neuron update; memory, communication and static power left out (see "
    '"Estimating energy on hardware" in docs/activity.md).'
)
NON_SPIKING_NOTE = (
    "* This model contains non-spiking activations, which a spiking device "
    "cannot run as they are: the spiking-device figures assume they are "
    "converted to spiking neurons. keras_spiking.SpikingActivation makes that "
    "conversion explicit."
)


def parse_column(column):
    """``(kind, device)`` of a column name; ``device`` is None if it has none.

    Accepts ``"energy cpu"`` (keras-spiking 0.3) and ``"energy_cpu"``.

    Raises
    ------
    ValueError
        If the column is not known.
    """
    words = str(column).split()
    if len(words) == 1 and words[0] in HEADERS and words[0] not in DEVICE_COLUMNS:
        return words[0], None
    if len(words) == 2 and words[0] in DEVICE_COLUMNS:
        return words[0], words[1]
    for kind in DEVICE_COLUMNS:  # "synop_energy_..." before "energy_..."
        if len(words) == 1 and column.startswith(kind + "_") and column != kind + "_":
            return kind, column[len(kind) + 1 :]
    raise ValueError(
        f"Unknown column type '{column}'; must be one of "
        f"{[k for k in HEADERS if k not in DEVICE_COLUMNS]} or "
        f"'<kind> <device>' with kind one of {list(DEVICE_COLUMNS)}."
    )


def header(kind, device):
    """The column header of ``kind`` for ``device``."""
    return HEADERS[kind].format(device)


def column_widths(rows, line_length):
    """Widths of the columns of ``rows`` (lists of cells) in ``line_length``."""
    wanted = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    usable = line_length - (len(wanted) - 1)
    if sum(wanted) <= usable:
        return wanted
    share = max(usable // len(wanted), 1)
    widths = [min(w, share) for w in wanted]
    for _ in range(max(usable - sum(widths), 0)):
        missing = [w - g for w, g in zip(wanted, widths, strict=True)]
        i = max(range(len(widths)), key=missing.__getitem__)
        if missing[i] <= 0:
            break
        widths[i] += 1
    return widths


def render_table(rows, left_aligned, line_length):
    """Lines of the table: ``rows[0]`` is the header row."""
    widths = column_widths(rows, line_length)
    lines = []
    for r, row in enumerate(rows):
        cells = []
        for cell, width, left in zip(row, widths, left_aligned, strict=True):
            cell = cell[:width]
            cells.append(cell.ljust(width) if r == 0 or left else cell.rjust(width))
        lines.append("|".join(cells))
        if r == 0:
            lines.append("|".join("-" * w for w in widths))
    return lines


def totals_lines(totals, width):
    """The rule of ``=`` and one line per ``(device, energy)`` of ``totals``."""
    if not totals:
        return []
    lines = ["=" * width]
    for device, energy in totals:
        value = energy if isinstance(energy, str) else f"{energy:0.2e}"
        lines.append(f"Total energy per inference [Joules/inf] ({device}): {value}")
    return lines


def note(text, line_length):
    """``text`` wrapped to ``line_length``, continuation lines indented."""
    return textwrap.fill(text, width=line_length, subsequent_indent="  ")
