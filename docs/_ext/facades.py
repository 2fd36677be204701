"""Sphinx glue for the package's facades (public ``__init__.py`` files over private modules).

Each API page runs ``automodule`` on one public subpackage, so every name in its
``__all__`` is documented once, under its public path (``captum_classpattern.attr.ClassPattern``).
Three things autodoc does not do on its own for re-exported names, done here:

* constants (``DEFAULT_SCHEDULE``, ``IMAGE_METHODS``...) carry their documentation as a string
  literal after the assignment in the private module that defines them; autodoc reads such
  strings only from the module being documented, and skips the constant without one. Here
  the facade is given the defining module's string;
* the package root re-exports the everyday names: the ``everyday-names`` directive draws
  a table of them, each linked to its one entry in a subpackage page, instead of
  documenting them twice;
* napoleon would read a constant's "Summary: detail" docstring as a type and a description;
  it is kept as written;
* a reference to a root name (``:class:`captum_classpattern.ClassPattern```) resolves to
  that same entry.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import cache
from typing import Any, Dict, List, Tuple

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

PACKAGE = "captum_classpattern"


def _is_documented_object(obj: Any) -> bool:
    """Classes, functions and modules carry their own ``__doc__``; anything else is a constant."""
    return inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj)


@cache
def public_subpackages() -> Tuple[str, ...]:
    """The public subpackages: the modules listed in the root's ``__all__``, in that order."""
    root = importlib.import_module(PACKAGE)
    return tuple(name for name in root.__all__ if inspect.ismodule(getattr(root, name)))


@cache
def constant_docs() -> Dict[str, List[str]]:
    """``{"captum_classpattern.<sub>.NAME": docstring lines}`` for every exported constant."""
    docs: Dict[str, List[str]] = {}
    for sub in public_subpackages():
        package = importlib.import_module(f"{PACKAGE}.{sub}")
        for name in package.__all__:
            obj = getattr(package, name)
            if _is_documented_object(obj):
                continue
            for info in pkgutil.iter_modules(package.__path__, prefix=f"{package.__name__}."):
                module = importlib.import_module(info.name)
                if vars(module).get(name, None) is not obj:
                    continue
                lines = ModuleAnalyzer.for_module(info.name).find_attr_docs().get(("", name))
                if lines and "".join(lines).strip():
                    docs[f"{package.__name__}.{name}"] = list(lines)
                    break
    return docs


@cache
def canonical_homes() -> Dict[str, str]:
    """``{root name: subpackage}``: where each everyday name of the root is documented."""
    root = importlib.import_module(PACKAGE)
    homes: Dict[str, str] = {}
    for name in root.__all__:
        obj = getattr(root, name)
        if inspect.ismodule(obj):
            continue
        for sub in public_subpackages():
            package = importlib.import_module(f"{PACKAGE}.{sub}")
            if name in package.__all__ and getattr(package, name) is obj:
                homes[name] = sub
                break
    return homes


def _summary(full_name: str, obj: Any) -> str:
    """The first paragraph of an object's documentation, on one line."""
    if _is_documented_object(obj):
        lines = (inspect.getdoc(obj) or "").splitlines()
    else:
        lines = constant_docs().get(full_name, [])
    paragraph: List[str] = []
    for line in lines:
        if not line.strip():
            if paragraph:
                break
            continue
        paragraph.append(line.strip())
    return " ".join(paragraph)


def _teach_facades_their_constants(app) -> None:
    """Give each facade's source analyzer the attribute docstrings of the constants it exports.

    autodoc documents a module-level name as data only when the documented module's
    analyzer holds an attribute docstring for it; analyzers are cached per module, so
    adding the defining module's docstring to the facade's analyzer is enough.
    """
    for full_name, lines in constant_docs().items():
        module_name, name = full_name.rsplit(".", 1)
        analyzer = ModuleAnalyzer.for_module(module_name)
        analyzer.analyze()
        analyzer.attr_docs.setdefault(("", name), list(lines))


_COLON = "\ue000"  # stands in for ": " while napoleon reads a constant's docstring


def _hide_summary_colon(app, what, name, obj, options, lines: List[str]) -> None:
    """Stop napoleon from reading a constant's summary as ``type: description``.

    Google style lets an attribute docstring start with its type (``int: the count``), so
    napoleon would turn "Ground of a colour pattern: white..." into a type field. The
    constants' docstrings here are prose: their first line's ``": "`` is hidden from
    napoleon and put back after it (:func:`_restore_summary_colon`).
    """
    if what == "data" and name.startswith(f"{PACKAGE}.") and lines:
        lines[0] = lines[0].replace(": ", _COLON)


def _restore_summary_colon(app, what, name, obj, options, lines: List[str]) -> None:
    """Put back what :func:`_hide_summary_colon` hid."""
    if what == "data":
        lines[:] = [line.replace(_COLON, ": ") for line in lines]


def _resolve_root_names(app, env, node, contnode):
    """Resolve ``captum_classpattern.NAME`` (and ``NAME.member``) to NAME's subpackage entry.

    Also resolves a bare ``NAME`` written in the root's own docstring.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if target.startswith(f"{PACKAGE}."):
        target = target[len(PACKAGE) + 1 :]
    elif node.get("py:module") != PACKAGE:
        return None
    name = target.split(".", 1)[0]
    if name not in canonical_homes():
        return None
    new_target = f"{PACKAGE}.{canonical_homes()[name]}.{target}"
    domain = env.get_domain("py")
    return domain.resolve_xref(env, node.get("refdoc"), app.builder, node.get("reftype"), new_target, node, contnode)


class EverydayNames(SphinxDirective):
    """``.. everyday-names::``: a table of the root's names, each linked to its subpackage entry."""

    has_content = False

    def run(self) -> List[nodes.Node]:
        root = importlib.import_module(PACKAGE)
        rows = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 28 22 50",
            "",
            "   * - Name",
            "     - Documented in",
            "     - Summary",
        ]
        for name, sub in canonical_homes().items():
            full_name = f"{PACKAGE}.{sub}.{name}"
            rows += [
                f"   * - :py:obj:`~{full_name}`",
                f"     - :py:mod:`{PACKAGE}.{sub}`",
                f"     - {_summary(full_name, getattr(root, name)) or ' '}",
            ]
        container = nodes.container()
        nested_parse_with_titles(self.state, StringList(rows, source="everyday-names"), container)
        return container.children


def setup(app) -> Dict[str, Any]:
    """Register the events and the directive."""
    app.connect("builder-inited", _teach_facades_their_constants)
    # Around napoleon (priority 500), which turns Google-style docstrings into reST.
    app.connect("autodoc-process-docstring", _hide_summary_colon, priority=400)
    app.connect("autodoc-process-docstring", _restore_summary_colon, priority=600)
    app.connect("missing-reference", _resolve_root_names)
    app.add_directive("everyday-names", EverydayNames)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
