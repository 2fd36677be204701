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
# Local extensions (docs/_ext): the API pages' handling of the package's facades, and the
# hooks of the example gallery.
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
    "sphinx_copybutton",
    "sphinx_gallery.gen_gallery",
    "facades",
]

# The files that design.rst and reliability.rst pull in with ``.. include:: FOLDER/NAME.rst``
# are sections of those pages, not pages of their own.
_included = []
for _page in ("design.rst", "reliability.rst"):
    with open(os.path.join(HERE, _page), encoding="utf-8") as _source:
        _included += re.findall(r"^\.\. include:: (\w+/\S+\.rst)\s*$", _source.read(), re.M)
exclude_patterns = [
    "_build",
    "_tools",
    "_ext",
    "_intersphinx",
    "snippets",
    "Thumbs.db",
    ".DS_Store",
    # The tutorials gallery holds the quick start only; the main toctree links to it directly.
    "tutorials/index.rst",
    *_included,
]
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

# -- The example gallery (sphinx-gallery) -------------------------------------------------
# The scripts in examples/ become the pages of examples/ (their figures, printed output, and
# downloads as a script and as a Jupyter notebook); docs/snippets/quickstart.py becomes the
# quick start, tutorials/quickstart. Both folders are generated; ``make clean`` removes them.
# Each example runs in its quick settings (``--quick --out docs/_build/gallery_out/NAME``)
# and saves its figures without pyplot; the ``saved_figures`` scraper shows the PNG files
# each cell wrote (docs/_ext/gallery_hooks.py). The quick start draws through pyplot.
# An unchanged script is not run again; ``-D plot_gallery=0`` builds without running any.
sphinx_gallery_conf = {
    "examples_dirs": [os.path.join(os.pardir, "examples"), "snippets"],
    "gallery_dirs": ["examples", "tutorials"],
    "filename_pattern": r"\.py$",  # run every script, not only plot_*.py
    "within_subsection_order": "gallery_hooks.StoryOrder",
    "reset_argv": "gallery_hooks.example_argv",
    "reset_modules": ("matplotlib", "gallery_hooks.clear_out_folder"),
    "image_scrapers": ("matplotlib", "gallery_hooks.saved_figures"),
    # Printed output only: a cell's last expression is not echoed (as it is not in a script).
    "capture_repr": (),
    "remove_config_comments": True,
    "download_all_examples": False,
    "min_reported_time": 1,
    # No sg_execution_times.rst pages (one would land in the root of docs/).
    "write_computation_times": False,
}

# -- HTML: furo, with a copy button on every code block ------------------------------------
html_theme = "furo"
html_static_path = ["_static"]
html_title = f"captum_classpattern {release}"
html_theme_options = {"navigation_with_keys": True}
# Copy code without prompts (">>> ", "... ", "$ ") or output lines.
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
