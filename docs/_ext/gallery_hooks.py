"""Hooks of the example gallery (sphinx-gallery), named by string in ``conf.py``.

The scripts in ``examples/`` take ``--quick`` and ``--out DIR`` and save their figures as
PNG files into ``--out`` without pyplot (so a script never opens a window). Under the
gallery:

- :func:`example_argv` runs each script as ``script.py --quick --out <folder>``, the
  folder being ``docs/_build/gallery_out/<script name>``;
- :func:`clear_out_folder` empties that folder before the script runs;
- :func:`saved_figures` is an image scraper: after each cell it collects the PNG files the
  cell wrote into the folder and puts them on the page in the order they were written,
  one full-width image each.

The quick-start tutorial (``docs/snippets``) draws through pyplot instead, so sphinx-gallery's
own matplotlib scraper shows its figures; it takes no options.
"""

from __future__ import annotations

import glob
import os
import shutil

from sphinx_gallery.scrapers import figure_rst

DOCS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(os.path.dirname(DOCS), "examples")
OUT_ROOT = os.path.join(DOCS, "_build", "gallery_out")
#: The order of the examples on the gallery page: the story from patterns to units.
STORY = (
    "natural_patterns.py",
    "captum_baselines.py",
    "real_images.py",
    "backdoor_scan.py",
    "adversarial_patterns.py",
    "units_behind_a_class.py",
    "interventions.py",
    "adversarial_units.py",
    "generator_dissection.py",
)

# PNG files already put on a page (path -> modification time), so each is shown once.
_shown: dict = {}


def _is_example(src_file) -> bool:
    return os.path.dirname(os.path.abspath(str(src_file))) == EXAMPLES


def out_folder(src_file) -> str:
    """Where the example ``src_file`` writes its figures during the build."""
    return os.path.join(OUT_ROOT, os.path.splitext(os.path.basename(str(src_file)))[0])


def example_argv(gallery_conf, script_vars) -> list:
    """``sys.argv[1:]`` of a gallery run: quick settings and the build's out folder (none for tutorials).

    The folder is given relative to the script's folder, where sphinx-gallery runs it, so
    that the paths the script prints on its page do not name the build machine's folders.
    """
    src_file = script_vars["src_file"]
    if not _is_example(src_file):
        return []
    return ["--quick", "--out", os.path.relpath(out_folder(src_file), os.path.dirname(os.path.abspath(src_file)))]


def clear_out_folder(gallery_conf, fname, when) -> None:
    """Before an example runs, remove what an earlier build left in its out folder."""
    if fname is None or when != "before" or not _is_example(fname):
        return
    folder = out_folder(fname)
    shutil.rmtree(folder, ignore_errors=True)
    for path in [path for path in _shown if path.startswith(folder + os.sep)]:
        del _shown[path]


def saved_figures(block, block_vars, gallery_conf) -> str:
    """Image scraper: the PNG files the cell just wrote into the example's out folder."""
    src_file = block_vars["src_file"]
    if not _is_example(src_file):
        return ""
    new = []
    for path in glob.glob(os.path.join(out_folder(src_file), "**", "*.png"), recursive=True):
        stamp = os.stat(path).st_mtime_ns
        if _shown.get(path) != stamp:
            _shown[path] = stamp
            new.append((stamp, path))
    rst = ""
    # One full-width image per file (a wide figure stays readable), its file name as alt text.
    for (_, path), image_path in zip(sorted(new), block_vars["image_path_iterator"]):
        shutil.copyfile(path, image_path)
        rst += figure_rst([image_path], gallery_conf["src_dir"], os.path.basename(path))
    return rst


class StoryOrder:
    """Sort key of the examples within the gallery: :data:`STORY` first, then by name."""

    def __init__(self, src_dir) -> None:
        self.src_dir = src_dir

    def __call__(self, filename: str) -> tuple:
        name = os.path.basename(filename)
        return (STORY.index(name) if name in STORY else len(STORY), name)

    def __repr__(self) -> str:
        return "StoryOrder"
