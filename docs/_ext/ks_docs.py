"""Tables of the documentation generated from the package's own data.

At ``builder-inited`` this extension writes Markdown files into
``docs/_generated/`` (git-ignored), which the pages include:

* ``nir_mapping.md``: the Keras-to-NIR mapping, from
  ``keras_spiking.nir.mapping_table()`` (rows ``(keras_layer, nir_node,
  note)``);
* ``devices.md``: the energy figures of the built-in devices, from
  ``keras_spiking.model_energy.devices.DEVICES``.

So each table has one source: the code that uses it.  It also shows the
classes' ``__init__`` signatures (Keras layers define ``__new__(*args,
**kwargs)``, which autodoc would show instead).
"""

import inspect
import pathlib

from sphinx.errors import ExtensionError


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(text):
    """Names as code, each of a comma-separated list (Markdown kept as is)."""
    if "`" in text:
        return text
    return ", ".join(f"`{part}`" for part in text.split(", "))


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def nir_mapping():
    """The NIR mapping table, as Markdown."""
    from keras_spiking import nir

    if not hasattr(nir, "mapping_table"):
        raise ExtensionError(
            "keras_spiking.nir.mapping_table() is missing: the NIR page "
            "(docs/nir.md) takes its mapping table from it."
        )
    rows = list(nir.mapping_table())
    if not rows or any(len(row) != 3 for row in rows):
        raise ExtensionError(
            "keras_spiking.nir.mapping_table() must return rows "
            f"(keras_layer, nir_node, note); got {rows!r}."
        )
    rows = [
        (_code(keras_layer), _code(nir_node) if nir_node else "(left out)", note)
        for keras_layer, nir_node, note in rows
    ]
    return _table(("Keras", "NIR", "note"), rows)


def devices():
    """The built-in devices' energy figures, as Markdown."""
    from keras_spiking.model_energy.devices import DEVICES

    rows = [
        (
            f"`{name}`",
            f"{spec['energy_per_synop']:.3g}",
            f"{spec['energy_per_neuron']:.3g}",
            "spiking" if spec["spiking"] else "non-spiking",
        )
        for name, spec in DEVICES.items()
    ]
    return _table(("device", "`E_s` (J)", "`E_n` (J)", "kind"), rows)


GENERATED = {"nir_mapping.md": nir_mapping, "devices.md": devices}


def _write(app):
    out = pathlib.Path(app.srcdir) / "_generated"
    out.mkdir(exist_ok=True)
    for name, make in GENERATED.items():
        text = make()
        path = out / name
        # rewrite only on change, so that Sphinx re-reads only what changed
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def _init_signature(app, what, name, obj, options, signature, return_annotation):
    """Classes show their ``__init__`` arguments, not ``keras.layers.Layer``'s
    ``__new__(*args, **kwargs)``."""
    if what == "class" and signature == "(*args, **kwargs)":
        try:
            init = inspect.signature(obj.__init__)
        except (TypeError, ValueError):
            return None
        parameters = list(init.parameters.values())[1:]  # without self
        return str(init.replace(parameters=parameters)), return_annotation
    return None


def setup(app):
    app.connect("builder-inited", _write)
    app.connect("autodoc-process-signature", _init_signature)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
