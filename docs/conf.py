"""Sphinx configuration of the captum_classpattern documentation.

Build (offline, warnings are errors)::

    .venv/bin/python -m sphinx -E -W --keep-going -q -b html docs docs/_build/html

(what ``make docs`` runs).
"""

from __future__ import annotations

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# Document the checkout being built, also when an older copy of the package is installed.
sys.path.insert(0, os.path.dirname(HERE))
# Local extensions (docs/_ext): the API pages' handling of the package's facades.
sys.path.insert(0, os.path.join(HERE, "_ext"))
# Examples and the method figure import matplotlib; never open a window while building.
os.environ.setdefault("MPLBACKEND", "Agg")

import captum_classpattern  # noqa: E402

project = "captum_classpattern"
author = "the captum_classpattern developers"
copyright = "2026, the captum_classpattern developers"
# The version of the checkout being documented (also when another copy is installed).
release = captum_classpattern.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    "facades",
]

# The files that design.rst and reliability.rst pull in with ``.. include:: FOLDER/NAME.rst``
# are sections of those pages, not pages of their own.
_included = []
for _page in ("design.rst", "reliability.rst"):
    with open(os.path.join(HERE, _page), encoding="utf-8") as _source:
        _included += re.findall(r"^\.\. include:: (\w+/\S+\.rst)\s*$", _source.read(), re.M)
exclude_patterns = ["_build", "_tools", "_ext", "_intersphinx", "Thumbs.db", ".DS_Store", *_included]
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
