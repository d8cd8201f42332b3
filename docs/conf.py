"""Sphinx configuration of the keras-spiking documentation.

Build (warnings are errors, unresolved references too)::

    python -m sphinx -W --keep-going -n -b html docs docs/_build/html

The tools come from the ``docs`` extra: ``pip install -e ".[docs,jax,nir]"``
(any one backend; the API reference is generated from the installed package).
"""

import os
import pathlib
import sys

# Keras picks its backend when it is imported; the docs need any one of them.
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import keras_spiking  # noqa: E402

project = "keras-spiking"
author = "the keras-spiking authors"
copyright = keras_spiking.version.copyright.removeprefix("Copyright (c) ")
release = keras_spiking.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "numpydoc",
    "myst_parser",
    "ks_docs",  # docs/_ext/ks_docs.py: the generated tables
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", ".gitignore"]

# Every cross-reference must resolve (Markdown links to pages and headings too)
nitpicky = True
# Objects outside this package that docstrings and signatures name
nitpick_ignore_regex = [
    ("py:class", r"(keras|numpy|np|nir|tf|torch|jax)\..*"),
]

myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

autodoc_member_order = "bysource"
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "furo"
html_title = f"keras-spiking {release}"
# No page of this site fetches anything at build time.
html_show_sourcelink = False
