"""Sphinx configuration of the lstm_accum documentation.

Built by ``./run.sh docs`` with warnings as errors (``-W --keep-going``):
every cross-reference must resolve and every public name be documented.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))           # lstm_accum itself
sys.path.insert(0, os.path.join(HERE, "_ext"))      # our two directives

project = "lstm_accum"
author = "the lstm_accum authors"
copyright = "the lstm_accum authors, MIT licence"
from lstm_accum.version import __version__ as release  # noqa: E402
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "lstm_accum_docs",
]
exclude_patterns = ["_build"]
root_doc = "index"
html_theme = "alabaster"
html_theme_options = {"description": "Gradient accumulation for "
                                     "Theano/Lasagne language models",
                      "page_width": "1100px"}
html_static_path = []
pygments_style = "sphinx"

# numpydoc-style docstrings, read by napoleon
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_param = False       # parameter types as text, not references
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {"members": True, "show-inheritance": False}

# A cross-reference that does not resolve is an error (with -W), in the
# pages and in the docstrings; _ext/lstm_accum_docs.py resolves those that
# name real code documented under another name. Not checked: types written
# as prose in the docstrings ("shared variables", "Theano scalar"; the
# parameter types are text, napoleon_use_param = False) and the names of
# Theano, Lasagne, NumPy and the standard library, which these docs do not
# hold.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:class", r".*\s.*"),                       # prose: "shared variables"
    (r"py:class", r"(int64|float32|float64|Layer|array_like|callable)"),
    (r"py:\w+",
     r"(theano|lasagne|numpy|np|mpi4py|argparse|os|collections)(\..*)?"),
]
