"""Documentation: every public name has a docstring, and the Sphinx site covers everything.

Sphinx itself is not run here (too slow for the test suite; ``make docs`` builds with -W).
These checks catch what that build would not: names whose docstring is empty (autodoc
renders them silently without text), modules or examples that got no page, and an
intersphinx setup that would need the internet.
"""
from __future__ import annotations

import glob
import importlib
import inspect
import os
import pkgutil
import re
import runpy

import pytest

import captum_classpattern

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
PACKAGE = captum_classpattern.__name__


def public_modules():
    """Names of the package's public submodules (no leading underscore)."""
    return sorted(info.name for info in pkgutil.iter_modules(captum_classpattern.__path__)
                  if not info.name.startswith("_"))


def _has_doc(obj) -> bool:
    # inspect.getdoc follows inheritance, as autodoc does (autodoc_inherit_docstrings).
    doc = inspect.getdoc(obj)
    return bool(doc and doc.strip())


def _public_members(module):
    """(qualified name, object) of every public class, function, method and property the module defines."""
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield f"{module.__name__}.{name}", obj
        elif inspect.isclass(obj):
            yield f"{module.__name__}.{name}", obj
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if inspect.isfunction(member) or isinstance(member, property):
                    yield f"{module.__name__}.{name}.{attr}", getattr(obj, attr) if not isinstance(
                        member, property) else member


def _attribute_docs(module_name: str):
    """Documented module-level variables (``NAME = ...`` followed by a string, or ``#:``)."""
    analyzer = pytest.importorskip("sphinx.pycode").ModuleAnalyzer.for_module(module_name)
    return {name for (scope, name), lines in analyzer.find_attr_docs().items()
            if scope == "" and "".join(lines).strip()}


@pytest.mark.parametrize("module_name", public_modules())
def test_every_public_name_of_each_module_has_a_docstring(module_name):
    module = importlib.import_module(f"{PACKAGE}.{module_name}")
    assert _has_doc(module), f"{module.__name__} has no module docstring"
    missing = [name for name, obj in _public_members(module) if not _has_doc(obj)]
    assert not missing, f"public names without a docstring: {missing}"


def test_package_exports_are_documented():
    assert _has_doc(captum_classpattern)
    exported = getattr(captum_classpattern, "__all__", None)
    assert exported, "captum_classpattern.__all__ lists the public names"
    missing = []
    for name in exported:
        obj = getattr(captum_classpattern, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
            if not _has_doc(obj):
                missing.append(name)
        elif not any(name in _attribute_docs(f"{PACKAGE}.{m}") for m in public_modules()
                     if hasattr(importlib.import_module(f"{PACKAGE}.{m}"), name)):
            # A constant's own docstring would be its type's (tuple, dataclass...); autodoc
            # renders the string literal after the assignment, so that is what must exist.
            missing.append(name)
    assert not missing, f"exported names without a docstring: {missing}"


@pytest.mark.parametrize("module_name", public_modules())
def test_every_public_module_has_an_api_page(module_name):
    page = os.path.join(DOCS, "api", f"{module_name}.rst")
    assert os.path.isfile(page), f"docs/api/{module_name}.rst is missing"
    with open(page) as stream:
        text = stream.read()
    assert f".. automodule:: {PACKAGE}.{module_name}" in text
    with open(os.path.join(DOCS, "api", "index.rst")) as stream:
        assert re.search(rf"^\s+{module_name}$", stream.read(), re.M), f"{module_name} is not in api/index.rst"


@pytest.mark.parametrize("script", sorted(glob.glob(os.path.join(ROOT, "examples", "*.py"))),
                         ids=lambda p: os.path.basename(p))
def test_every_example_has_a_page_that_includes_it(script):
    name = os.path.splitext(os.path.basename(script))[0]
    page = os.path.join(DOCS, "examples", f"{name}.rst")
    assert os.path.isfile(page), f"docs/examples/{name}.rst is missing"
    with open(page) as stream:
        assert f".. literalinclude:: ../../examples/{name}.py" in stream.read()
    with open(os.path.join(DOCS, "examples", "index.rst")) as stream:
        assert re.search(rf"^\s+{name}$", stream.read(), re.M), f"{name} is not in examples/index.rst"


def test_intersphinx_needs_no_internet(monkeypatch):
    monkeypatch.delenv("CLASSPATTERN_DOCS_ONLINE", raising=False)
    config = runpy.run_path(os.path.join(DOCS, "conf.py"))
    assert {"python", "torch", "captum"} <= set(config["intersphinx_mapping"])
    for name, (url, inventory) in config["intersphinx_mapping"].items():
        assert url.startswith("https://")
        assert inventory and os.path.isfile(inventory), f"{name}: the local inventory {inventory} is missing"
    assert config["html_theme"] == "alabaster", "a theme that ships with Sphinx: nothing extra to install"


def test_static_figures_are_small_and_present():
    figures = glob.glob(os.path.join(DOCS, "_static", "**", "*.png"), recursive=True)
    assert os.path.join(DOCS, "_static", "method.png") in figures
    too_big = [os.path.relpath(f, DOCS) for f in figures if os.path.getsize(f) > 200 * 1024]
    assert not too_big, f"figures over 200 KB: {too_big}"
    for page in glob.glob(os.path.join(DOCS, "**", "*.rst"), recursive=True):
        with open(page) as stream:
            for target in re.findall(r"^\.\. (?:figure|image):: (\S+)", stream.read(), re.M):
                path = os.path.normpath(os.path.join(os.path.dirname(page), target))
                assert os.path.isfile(path), f"{os.path.relpath(page, DOCS)} shows a missing figure {target}"
