"""Check a finished HTML build: every public name has an entry with text in its API page.

``tests/test_docs.py`` checks the docstrings without building; this checks what Sphinx
actually rendered (a name autodoc skipped, e.g. a constant without a docstring or a
subpackage that failed to import, shows up here). Each name of a subpackage's ``__all__``
must have an entry in ``api/<subpackage>.html``. Run after ``make docs``::

    .venv/bin/python docs/_tools/check_rendered.py [docs/_build/html]

Exits 1 and lists the missing names if any.
"""

from __future__ import annotations

import html
import importlib
import inspect
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

import captum_classpattern  # noqa: E402


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


def main(argv=None) -> int:
    """Report the public names the HTML build lacks."""
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
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
