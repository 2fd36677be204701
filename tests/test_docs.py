"""Documentation: every public name has a docstring, and the Sphinx site covers everything.

Sphinx itself is not run here (too slow for the test suite; ``make docs`` builds with -W).
These checks catch what that build would not: names whose docstring is empty (autodoc
renders them silently without text), subpackages or examples that got no page, pages that
still cite working notes, and an intersphinx setup that would need the internet.

The public modules are the subpackages listed in ``captum_classpattern.__all__``; their
public names are the names in each subpackage's ``__all__``.
"""

from __future__ import annotations

import glob
import importlib
import inspect
import os
import re
import runpy

import pytest

import captum_classpattern

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
PACKAGE = captum_classpattern.__name__


def public_subpackages():
    """Names of the public subpackages: the modules in ``captum_classpattern.__all__``."""
    return [name for name in captum_classpattern.__all__ if inspect.ismodule(getattr(captum_classpattern, name))]


def _subpackage(name):
    return importlib.import_module(f"{PACKAGE}.{name}")


def _has_doc(obj) -> bool:
    # inspect.getdoc follows inheritance, as autodoc does (autodoc_inherit_docstrings).
    doc = inspect.getdoc(obj)
    return bool(doc and doc.strip())


def _is_documented_object(obj) -> bool:
    """Classes, functions and modules carry their own docstring; anything else is a constant."""
    return inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj)


def _members_of_class(qualified, cls):
    """(qualified name, object) of the public methods and properties a class defines itself."""
    for attr, member in vars(cls).items():
        if attr.startswith("_"):
            continue
        if isinstance(member, (staticmethod, classmethod)):
            yield f"{qualified}.{attr}", member.__func__
        elif isinstance(member, property):
            yield f"{qualified}.{attr}", member
        elif inspect.isfunction(member):
            yield f"{qualified}.{attr}", getattr(cls, attr)


def _attribute_docs(module_name: str):
    """Documented module-level variables (``NAME = ...`` followed by a string, or ``#:``)."""
    analyzer = pytest.importorskip("sphinx.pycode").ModuleAnalyzer.for_module(module_name)
    return {
        name for (scope, name), lines in analyzer.find_attr_docs().items() if scope == "" and "".join(lines).strip()
    }


def _constant_is_documented(package, name) -> bool:
    """A constant's own docstring would be its type's (tuple, dataclass...); autodoc renders
    the string literal after the assignment, in the private module that defines it."""
    obj = getattr(package, name)
    prefix = f"{package.__name__}."
    for module in list(vars(package).values()):
        if not inspect.ismodule(module) or not module.__name__.startswith(prefix):
            continue
        if vars(module).get(name, None) is obj and name in _attribute_docs(module.__name__):
            return True
    return False


def test_the_root_lists_its_subpackages():
    assert _has_doc(captum_classpattern), "captum_classpattern has no module docstring"
    subpackages = public_subpackages()
    assert {
        "attr",
        "metrics",
        "backdoor",
        "training",
        "data",
        "models",
        "dissection",
        "visualization",
        "pipeline",
        "cli",
    } <= set(subpackages)
    on_disk = {
        os.path.basename(os.path.dirname(path))
        for path in glob.glob(os.path.join(os.path.dirname(captum_classpattern.__file__), "*", "__init__.py"))
    }
    public_on_disk = {name for name in on_disk if not name.startswith("_")}
    assert public_on_disk == set(subpackages), "every public subpackage is listed in captum_classpattern.__all__"


@pytest.mark.parametrize("name", public_subpackages())
def test_every_name_of_each_subpackage_has_a_docstring(name):
    package = _subpackage(name)
    assert _has_doc(package), f"{package.__name__} has no module docstring"
    exported = getattr(package, "__all__", None)
    assert exported, f"{package.__name__}.__all__ lists the public names"
    missing = []
    for export in exported:
        obj = getattr(package, export)
        qualified = f"{package.__name__}.{export}"
        if not _is_documented_object(obj):
            if not _constant_is_documented(package, export):
                missing.append(qualified)
            continue
        if not _has_doc(obj):
            missing.append(qualified)
        if inspect.isclass(obj):
            missing += [member for member, value in _members_of_class(qualified, obj) if not _has_doc(value)]
    assert not missing, f"public names without a docstring: {missing}"


def test_root_exports_are_documented():
    exported = getattr(captum_classpattern, "__all__", None)
    assert exported, "captum_classpattern.__all__ lists the public names"
    homeless = []
    for name in exported:
        obj = getattr(captum_classpattern, name)
        if inspect.ismodule(obj):
            continue
        # Documented once, in a subpackage that exports the very same object.
        if not any(
            name in _subpackage(sub).__all__ and getattr(_subpackage(sub), name) is obj for sub in public_subpackages()
        ):
            homeless.append(name)
    assert not homeless, f"root names that no subpackage exports (so no API page documents them): {homeless}"


@pytest.mark.parametrize("name", public_subpackages())
def test_every_subpackage_has_an_api_page(name):
    page = os.path.join(DOCS, "api", f"{name}.rst")
    assert os.path.isfile(page), f"docs/api/{name}.rst is missing"
    with open(page) as stream:
        text = stream.read()
    assert re.search(rf"^\.\. automodule:: {PACKAGE}\.{name}$", text, re.M), f"docs/api/{name}.rst lacks automodule"
    with open(os.path.join(DOCS, "api", "index.rst")) as stream:
        assert re.search(rf"^\s+{name}$", stream.read(), re.M), f"{name} is not in api/index.rst"


def test_api_pages_are_the_subpackages_only():
    pages = {os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(DOCS, "api", "*.rst"))}
    stale = pages - set(public_subpackages()) - {"index"}
    assert not stale, f"API pages of modules that are no longer public: {sorted(stale)}"
    with open(os.path.join(DOCS, "api", "index.rst")) as stream:
        index = stream.read()
    assert f".. automodule:: {PACKAGE}\n" in index, "the index documents the package root"
    assert ".. everyday-names::" in index, "the index lists the root's everyday names"


@pytest.mark.parametrize(
    "script", sorted(glob.glob(os.path.join(ROOT, "examples", "*.py"))), ids=lambda p: os.path.basename(p)
)
def test_every_example_has_a_page_that_includes_it(script):
    name = os.path.splitext(os.path.basename(script))[0]
    page = os.path.join(DOCS, "examples", f"{name}.rst")
    assert os.path.isfile(page), f"docs/examples/{name}.rst is missing"
    with open(page) as stream:
        assert f".. literalinclude:: ../../examples/{name}.py" in stream.read()
    with open(os.path.join(DOCS, "examples", "index.rst")) as stream:
        assert re.search(rf"^\s+{name}$", stream.read(), re.M), f"{name} is not in examples/index.rst"


def test_design_page_is_in_the_toctree_and_includes_its_sections():
    with open(os.path.join(DOCS, "index.rst")) as stream:
        assert re.search(r"^\s+design$", stream.read(), re.M), "design is not in the main toctree"
    with open(os.path.join(DOCS, "design.rst")) as stream:
        design = stream.read()
    for section in ("backdoor", "dissection", "visualization"):
        assert f".. include:: design/{section}.rst" in design


def test_no_page_or_docstring_cites_working_notes():
    cited = re.compile(r"METHOD\.md|DESIGN\.md|notes/issue\d+|\bissue ?#?\d+\b", re.I)
    paths = glob.glob(os.path.join(DOCS, "**", "*.rst"), recursive=True)
    paths += glob.glob(os.path.join(DOCS, "**", "*.py"), recursive=True)
    paths += glob.glob(os.path.join(ROOT, "examples", "*.py")) + [os.path.join(ROOT, "README.md")]
    paths += glob.glob(os.path.join(os.path.dirname(captum_classpattern.__file__), "**", "*.py"), recursive=True)
    offenders = []
    for path in paths:
        if os.sep + "_build" + os.sep in path:
            continue
        with open(path, encoding="utf-8") as stream:
            for number, line in enumerate(stream, 1):
                if cited.search(line):
                    offenders.append(f"{os.path.relpath(path, ROOT)}:{number}")
    assert not offenders, f"citations of working notes (move their substance into docs/design.rst): {offenders}"
    assert not glob.glob(os.path.join(ROOT, "notes", "issue*.md")), "notes named by issue number belong in the docs"


def test_intersphinx_needs_no_internet(monkeypatch):
    monkeypatch.delenv("CLASSPATTERN_DOCS_ONLINE", raising=False)
    config = runpy.run_path(os.path.join(DOCS, "conf.py"))
    assert {"python", "torch", "captum"} <= set(config["intersphinx_mapping"])
    for name, (url, inventory) in config["intersphinx_mapping"].items():
        assert url.startswith("https://")
        assert inventory and os.path.isfile(inventory), f"{name}: the local inventory {inventory} is missing"
    assert config["html_theme"] == "alabaster", "a theme that ships with Sphinx: nothing extra to install"
    assert config["release"] == captum_classpattern.__version__


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


def test_citation_names_the_package_version():
    with open(os.path.join(ROOT, "CITATION.cff"), encoding="utf-8") as stream:
        citation = stream.read()
    assert re.search(rf"^version: \"?{re.escape(captum_classpattern.__version__)}\"?$", citation, re.M)
