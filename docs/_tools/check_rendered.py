"""Check a finished HTML build: the API pages and the gallery pages.

``tests/test_docs.py`` checks the docstrings without building; this checks what Sphinx
actually rendered (a name autodoc skipped, e.g. a constant without a docstring or a
subpackage that failed to import, shows up here):

- each name of a subpackage's ``__all__`` has an entry with text in ``api/<subpackage>.html``;
- each script of ``examples/`` has its gallery page ``examples/<name>.html``, and the quick
  start ``tutorials/quickstart.html``, each with at least one figure, printed output, and
  downloads as a script and as a notebook.

``make docs`` runs it after the build::

    .venv/bin/python -m docs._tools.check_rendered [docs/_build/html]

Exits 1 and lists what is missing if anything is.
"""

from __future__ import annotations

import html
import importlib
import inspect
import os
import re
import sys

import captum_classpattern

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

EXAMPLES = os.path.join(ROOT, "examples")


def expected_names():
    """(subpackage, dotted name) of every name in every public subpackage's ``__all__``.

    The root's everyday names are the same objects; they are documented once, in their
    subpackage, and the root page links to those entries.
    """
    wanted = set()
    for sub in captum_classpattern.__all__:
        package = getattr(captum_classpattern, sub)
        if not inspect.ismodule(package):
            continue
        package = importlib.import_module(package.__name__)
        for name in package.__all__:
            wanted.add((sub, f"{package.__name__}.{name}"))
    return sorted(wanted)


def rendered_with_text(page: str, dotted: str) -> bool:
    """The page has an entry with this id and a non-empty description after it."""
    match = re.search(rf'<dt[^>]*id="{re.escape(dotted)}"[^>]*>.*?</dt>\s*<dd>(.*?)</dd>', page, re.S)
    if not match:
        return False
    text = html.unescape(re.sub(r"<[^>]+>", " ", match.group(1))).strip()
    return bool(text)


def gallery_pages():
    """(page, script name) of every gallery page the build must have."""
    names = sorted(os.path.splitext(n)[0] for n in os.listdir(EXAMPLES) if n.endswith(".py"))
    return [(f"examples/{name}.html", name) for name in names] + [("tutorials/quickstart.html", "quickstart")]


def gallery_page_problems(build: str, page: str, name: str):
    """What the gallery page of script ``name`` lacks: figures, output, downloads."""
    path = os.path.join(build, page)
    if not os.path.exists(path):
        return [f"{page}: no such page"]
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    problems = []
    if not re.search(rf'<img [^>]*src="[^"]*_images/sphx_glr_{re.escape(name)}_\d+\.png"', text):
        problems.append(f"{page}: no figure")
    if "sphx-glr-script-out" not in text:
        problems.append(f"{page}: no printed output")
    for suffix in (".py", ".ipynb"):
        if not re.search(rf'href="[^"]*_downloads/[^"]*/{re.escape(name + suffix)}"', text):
            problems.append(f"{page}: no {suffix} download")
    return problems


def main(argv=None) -> int:
    """Report the public names and the gallery pages the HTML build lacks."""
    argv = sys.argv[1:] if argv is None else argv
    build = argv[0] if argv else os.path.join(ROOT, "docs", "_build", "html")
    missing = []
    names = expected_names()
    for module, dotted in names:
        path = os.path.join(build, "api", f"{module}.html")
        page = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
        if not rendered_with_text(page, dotted):
            missing.append(dotted)
    print(f"{len(names) - len(missing)} of {len(names)} public names rendered with a description")
    for dotted in missing:
        print(f"missing: {dotted}")
    pages = gallery_pages()
    problems = [problem for page, name in pages for problem in gallery_page_problems(build, page, name)]
    print(f"{len(pages)} gallery pages, {len(problems)} problems")
    for problem in problems:
        print(f"gallery: {problem}")
    return 1 if missing or problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
