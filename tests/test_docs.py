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
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.py")))
QUICKSTART = os.path.join(DOCS, "snippets", "quickstart.py")


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
    on_disk = {
        entry.name
        for entry in os.scandir(os.path.dirname(captum_classpattern.__file__))
        if entry.is_dir()
        and not entry.name.startswith(("_", "."))
        and os.path.isfile(os.path.join(entry.path, "__init__.py"))
    }
    assert len(on_disk) >= 10 and on_disk <= set(subpackages), "every subpackage folder is listed in the root's __all__"
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


def _gallery_conf():
    return runpy.run_path(os.path.join(DOCS, "conf.py"))["sphinx_gallery_conf"]


def _gallery_of(source_folder):
    """The generated folder (relative to docs/) of the gallery whose scripts are in ``source_folder``."""
    conf = _gallery_conf()
    folders = {
        os.path.normpath(os.path.join(DOCS, src)): out for src, out in zip(conf["examples_dirs"], conf["gallery_dirs"])
    }
    assert source_folder in folders, f"{os.path.relpath(source_folder, ROOT)} is not a gallery of docs/conf.py"
    return folders[source_folder]


def _generated_folders():
    return [os.path.join(DOCS, out) for out in _gallery_conf()["gallery_dirs"]]


def _is_generated(path):
    return any(path.startswith(folder + os.sep) for folder in _generated_folders())


@pytest.mark.parametrize("script", [*EXAMPLES, QUICKSTART], ids=lambda p: os.path.basename(p))
def test_every_example_is_a_gallery_script(script, monkeypatch):
    """Each example, and the quick start, is a sphinx-gallery script the gallery runs: a page of its own."""
    parser = pytest.importorskip("sphinx_gallery.py_source_parser")
    conf = _gallery_conf()
    folder = _gallery_of(os.path.dirname(script))
    assert re.search(conf["filename_pattern"], script), "the gallery runs it, so its page shows figures and output"
    _, blocks = parser.split_code_and_text_blocks(script)
    title = blocks[0].content.strip().splitlines()
    assert blocks[0].type == "text" and len(title) > 1 and set(title[1]) == {"="} and len(title[1]) == len(title[0])
    kinds = [block.type for block in blocks]
    assert kinds.count("code") >= 3 and kinds.count("text") >= 3, "cells with reST text between them"
    with open(script, encoding="utf-8") as stream:
        assert "__main__" not in stream.read(), "top-level cells, so each cell's output shows below it"
    with open(os.path.join(DOCS, "index.rst")) as stream:
        index = stream.read()
    name = os.path.splitext(os.path.basename(script))[0]
    if folder == "tutorials":  # the main toctree links the tutorial itself
        assert re.search(rf"^\s+tutorials/{name}$", index, re.M), f"tutorials/{name} is not in the main toctree"
    else:
        assert re.search(rf"^\s+{folder}/index$", index, re.M), f"{folder}/index is not in the main toctree"
        assert os.path.basename(script) in _gallery_hooks(monkeypatch).STORY, "STORY orders every example"


def _gallery_hooks(monkeypatch):
    pytest.importorskip("sphinx_gallery")
    monkeypatch.syspath_prepend(os.path.join(DOCS, "_ext"))
    return importlib.import_module("gallery_hooks")


def test_the_gallery_runs_examples_quick(monkeypatch):
    gallery_hooks = _gallery_hooks(monkeypatch)
    conf = _gallery_conf()
    assert conf["reset_argv"] == "gallery_hooks.example_argv"
    argv = gallery_hooks.example_argv(conf, {"src_file": EXAMPLES[0]})
    assert argv[:2] == ["--quick", "--out"] and not os.path.isabs(argv[2])
    out = os.path.normpath(os.path.join(os.path.dirname(EXAMPLES[0]), argv[2]))
    assert out.startswith(os.path.join(DOCS, "_build") + os.sep), "the build's files stay in docs/_build"
    assert gallery_hooks.example_argv(conf, {"src_file": QUICKSTART}) == []
    assert "gallery_hooks.saved_figures" in conf["image_scrapers"] and "matplotlib" in conf["image_scrapers"]


def test_make_clean_removes_the_generated_gallery():
    with open(os.path.join(ROOT, "Makefile")) as stream:
        clean = re.search(r"^clean:.*\n\t(.*)$", stream.read(), re.M).group(1)
    for folder in _generated_folders():
        assert os.path.relpath(folder, ROOT) in clean.split(), f"make clean leaves {folder}"
        stale = [page for page in glob.glob(os.path.join(folder, "*.rst")) if not _generated_by_gallery(page)]
        assert not stale, f"hand-written pages in a generated folder: {stale}"


def _generated_by_gallery(page):
    with open(page, encoding="utf-8") as stream:
        text = stream.read()
    return "sphx_glr" in text or "sphx-glr" in text


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
        if os.sep + "_build" + os.sep in path or _is_generated(path):
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
    assert config["release"] == captum_classpattern.__version__


def test_theme_and_extensions():
    config = runpy.run_path(os.path.join(DOCS, "conf.py"))
    assert config["html_theme"] == "furo"
    assert {"sphinx_copybutton", "sphinx_gallery.gen_gallery"} <= set(config["extensions"])
    for module in ("furo", "sphinx_copybutton", "sphinx_gallery", "nbformat"):
        pytest.importorskip(module, reason=f"{module} comes with the docs extra")


def test_static_figures_are_small_and_present():
    figures = glob.glob(os.path.join(DOCS, "_static", "**", "*.png"), recursive=True)
    assert os.path.join(DOCS, "_static", "method.png") in figures
    too_big = [os.path.relpath(f, DOCS) for f in figures if os.path.getsize(f) > 200 * 1024]
    assert not too_big, f"figures over 200 KB: {too_big}"
    for page in glob.glob(os.path.join(DOCS, "**", "*.rst"), recursive=True):
        if _is_generated(page) or os.sep + "_build" + os.sep in page:
            continue
        with open(page) as stream:
            for target in re.findall(r"^\.\. (?:figure|image):: (\S+)", stream.read(), re.M):
                path = os.path.normpath(os.path.join(os.path.dirname(page), target))
                assert os.path.isfile(path), f"{os.path.relpath(page, DOCS)} shows a missing figure {target}"


def test_citation_names_the_package_version():
    with open(os.path.join(ROOT, "CITATION.cff"), encoding="utf-8") as stream:
        citation = stream.read()
    assert re.search(rf"^version: \"?{re.escape(captum_classpattern.__version__)}\"?$", citation, re.M)


def test_the_gallery_shows_each_saved_figure_once_in_order(monkeypatch, tmp_path):
    gallery_hooks = _gallery_hooks(monkeypatch)
    monkeypatch.setattr(gallery_hooks, "OUT_ROOT", str(tmp_path / "out"))
    monkeypatch.setattr(gallery_hooks, "_shown", {})
    script = EXAMPLES[0]
    gallery_hooks.clear_out_folder({}, script, when="before")
    folder = gallery_hooks.out_folder(script)
    os.makedirs(folder)
    for stamp, name in ((2, "b_first.png"), (3, "a_second.png")):
        path = os.path.join(folder, name)
        with open(path, "wb") as stream:
            stream.write(b"\x89PNG\r\n\x1a\n")
        os.utime(path, ns=(stamp * 10**9, stamp * 10**9))
    images = [str(tmp_path / "images" / f"sphx_glr_x_{i:03d}.png") for i in (1, 2, 3)]
    os.makedirs(tmp_path / "images")
    block_vars = {"src_file": script, "image_path_iterator": iter(images)}
    rst = gallery_hooks.saved_figures(None, block_vars, {"src_dir": str(tmp_path)})
    # In the order they were written (not by name), each with its file name as alt text.
    assert rst.index("sphx_glr_x_001.png") < rst.index("b_first.png") < rst.index("sphx_glr_x_002.png"), rst
    assert rst.index("sphx_glr_x_002.png") < rst.index("a_second.png"), rst
    assert os.path.isfile(images[0]) and os.path.isfile(images[1]) and not os.path.exists(images[2])
    assert gallery_hooks.saved_figures(None, block_vars, {"src_dir": str(tmp_path)}) == "", "each figure once"
    quickstart_vars = {"src_file": QUICKSTART, "image_path_iterator": iter(images)}
    assert gallery_hooks.saved_figures(None, quickstart_vars, {"src_dir": str(tmp_path)}) == ""
