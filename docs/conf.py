"""Sphinx configuration of the captum_classpattern documentation.

Build (offline, warnings are errors)::

    .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html
"""
from __future__ import annotations

import os
import sys
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
# Document the checkout being built, also when an older copy of the package is installed.
sys.path.insert(0, os.path.dirname(HERE))
# Examples and the method figure import matplotlib; never open a window while building.
os.environ.setdefault("MPLBACKEND", "Agg")

project = "captum_classpattern"
author = "captum_classpattern developers"
copyright = "2025, captum_classpattern developers"
try:
    release = metadata.version("captum_classpattern")
except metadata.PackageNotFoundError:  # building from a checkout that is not installed
    release = "0.1.0"
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
]

exclude_patterns = ["_build", "_tools", "_intersphinx", "Thumbs.db", ".DS_Store"]
templates_path: list = []

# -- autodoc and napoleon (Google-style docstrings) ------------------------------------
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Types go into the parameter list, next to each documented argument, instead of making
# signatures three lines long.
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# -- intersphinx, offline ---------------------------------------------------------------
# The build must pass with -W on machines without internet, where fetching objects.inv
# fails with a warning. Each project therefore gets a small local inventory
# (docs/_intersphinx/*.inv, written by docs/_tools/make_inventories.py) listing the names
# our docs refer to, with addresses on the real sites. CLASSPATTERN_DOCS_ONLINE=1 fetches
# the full inventories instead.
_ONLINE = os.environ.get("CLASSPATTERN_DOCS_ONLINE") == "1"


def _inventory(name: str):
    return None if _ONLINE else os.path.join(HERE, "_intersphinx", f"{name}.inv")


intersphinx_mapping = {
    "python": ("https://docs.python.org/3", _inventory("python")),
    "torch": ("https://docs.pytorch.org/docs/stable", _inventory("torch")),
    "captum": ("https://captum.ai/api", _inventory("captum")),
    "numpy": ("https://numpy.org/doc/stable", _inventory("numpy")),
    "matplotlib": ("https://matplotlib.org/stable", _inventory("matplotlib")),
}
intersphinx_timeout = 10

# -- HTML: Sphinx's built-in theme, nothing extra to install -----------------------------
html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"captum_classpattern {release}"
html_theme_options = {
    "description": "Class-wise patterns as a Captum attribution",
    "page_width": "1100px",
    "sidebar_width": "230px",
    "fixed_sidebar": True,
}
